"""Fixtures: a devnet of real tradeloop nodes on loopback, started once per test session.

The binary is ``$TRADELOOP_BIN``, else ``<repo>/target/debug/tradeloop`` (built with
``cargo build -p tradeloop`` when absent). ``tradeloop devnet init --validators 4 --full-nodes 3``
writes the network (every port a free loopback port), ``tradeloop devnet run`` runs it in a
process group of its own, which is stopped (SIGINT, then SIGKILL) at the end of the session,
also when a test or the start fails.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

import pytest

from tradeloop_client import (
    Client,
    Genesis,
    Signer,
    TradeloopError,
    load_key,
)

REPO = Path(__file__).resolve().parents[3]
"""The repository root (clients/python/tests/conftest.py is three levels below it)."""
START_TIMEOUT = 120.0
"""Seconds for the devnet to come up with every node connected to all the others."""
STOP_GRACE = 20.0
"""Seconds the devnet has to stop after SIGINT before its process group is killed."""
BUILD_TIMEOUT = 3600.0
"""Seconds for `cargo build -p tradeloop` when the binary is absent."""
TEST_TIMEOUT = int(os.environ.get("TRADELOOP_TEST_TIMEOUT", "240"))
"""Seconds one test may take (SIGALRM)."""


def tradeloop_binary() -> Path:
    """``$TRADELOOP_BIN``, else the repository's debug build, built if absent."""
    env = os.environ.get("TRADELOOP_BIN")
    if env:
        path = Path(env)
        if not path.is_file():
            pytest.fail(f"TRADELOOP_BIN={env} is not a file")
        return path
    path = REPO / "target" / "debug" / "tradeloop"
    if not path.is_file():
        subprocess.run(
            ["cargo", "build", "-p", "tradeloop"], cwd=REPO, check=True, timeout=BUILD_TIMEOUT
        )
    if not path.is_file():
        pytest.fail(f"`cargo build -p tradeloop` did not produce {path}")
    return path


@dataclass(frozen=True)
class Node:
    """One node of the devnet."""

    name: str
    participant: str
    validator: bool
    url: str


@dataclass
class Devnet:
    """A running devnet: its directory, genesis, nodes and the participants' keys."""

    dir: Path
    genesis_path: Path
    genesis: Genesis
    nodes: List[Node]
    log: Path
    tokens: Dict[str, Dict[str, str]] = field(default_factory=dict)
    """Per node name, the tokens its node.toml lists, by scope set (``"read,submit"``,
    ``"read"``): the node given them refuses requests without one."""
    clients: Dict[str, Client] = field(default_factory=dict)

    def node_of(self, participant: str) -> Node:
        """The node that serves ``participant``: its own member node, else the (first)
        validator it runs (as `tradeloop demo` picks them)."""
        own = [n for n in self.nodes if n.participant == participant]
        members = [n for n in own if not n.validator]
        if members:
            return members[0]
        if own:
            return own[0]
        raise KeyError(f"no node serves {participant}")

    def client(self, node: Node) -> Client:
        """A client of ``node`` (one per node, closed at the end of the session)."""
        if node.name not in self.clients:
            token = self.tokens.get(node.name, {}).get("read,submit")
            self.clients[node.name] = Client(node.url, timeout=15.0, token=token)
        return self.clients[node.name]

    def client_of(self, participant: str) -> Client:
        """A client of the node that serves ``participant``."""
        return self.client(self.node_of(participant))

    def signer(self, participant: str) -> Signer:
        """The participant's signer, with its key file from ``devnet init``."""
        key = load_key(self.dir / "keys" / f"{participant}.json")
        return Signer(participant, key, self.genesis.hash_hex)

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(text[-lines:])


def _api_listen(toml_text: str) -> str:
    """The `[api] listen` address of a node.toml."""
    try:
        import tomllib  # Python 3.11+

        listen = tomllib.loads(toml_text)["api"]["listen"]
        return str(listen)
    except ImportError:  # pragma: no cover - older Pythons
        m = re.search(r'^\[api\][^\[]*?^listen\s*=\s*"([^"]+)"', toml_text, re.M | re.S)
        if not m:
            raise ValueError("no [api] listen") from None
        return m.group(1)


def _node_key_path(toml_text: str, config: Path) -> Path:
    m = re.search(r'^node_key\s*=\s*"([^"]+)"', toml_text, re.M)
    if not m:
        raise ValueError(f"{config} names no node_key")
    return (config.parent / m.group(1)).resolve()


def read_nodes(net: Path, genesis: Genesis) -> List[Node]:
    """The devnet's nodes from its node.toml files; each node's participant and role from the
    genesis entry of its node key (validators, else member_nodes)."""
    validators = {v["node_key"]: v["participant"] for v in genesis.doc["validators"]}
    members = {m["node_key"]: m["participant"] for m in genesis.doc.get("member_nodes", [])}
    nodes = []
    for config in sorted((net / "nodes").glob("*/node.toml")):
        text = config.read_text()
        listen = _api_listen(text)
        host = listen.rsplit(":", 1)[0].strip("[]")
        assert host in ("127.0.0.1", "::1", "localhost"), f"{config} listens on {listen}"
        node_key = load_key(_node_key_path(text, config)).public_key
        if node_key in validators:
            participant, validator = validators[node_key], True
        elif node_key in members:
            participant, validator = members[node_key], False
        else:
            raise ValueError(f"{config}: its node key is not in the genesis")
        nodes.append(Node(config.parent.name, participant, validator, f"http://{listen}"))
    return nodes


def _set_parent_death_signal() -> None:
    """Runs in the child before exec: a new session (its own process group), and on Linux a
    SIGKILL when the test process dies, so that no devnet outlives a killed pytest (the nodes
    stop when their parent's pipe to them closes)."""
    os.setsid()
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


def _stop(proc: "subprocess.Popen[bytes]") -> None:
    """SIGINT to the devnet's process group (the nodes stop cleanly), then SIGKILL to whatever
    is left of the group."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGINT)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=STOP_GRACE)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:  # pragma: no cover
        pass


def _wait_up(devnet: Devnet, proc: "subprocess.Popen[bytes]") -> None:
    """Every node answers GET /v1/status with every other node connected."""
    deadline = time.monotonic() + START_TIMEOUT
    for node in devnet.nodes:
        client = devnet.client(node)
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"tradeloop devnet run exited ({proc.returncode}) while starting:\n"
                    + devnet.log_tail()
                )
            try:
                status = client.status()
                if status.genesis_hash != devnet.genesis.hash_hex:
                    raise RuntimeError(f"{node.name} serves another chain: {status.genesis_hash}")
                if len(status.connected_peers) + 1 >= len(devnet.nodes):
                    break
            except TradeloopError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"node {node.name} ({node.url}) was not up with its peers within "
                    f"{START_TIMEOUT} s:\n" + devnet.log_tail()
                )
            time.sleep(0.2)


TOKEN_NODE_OF = "de-importer-hanse"
"""The participant whose member node requires bearer tokens."""


def _add_tokens(
    binary: Path, net: Path, genesis: Genesis, nodes: List[Node], participant: str
) -> Dict[str, str]:
    """Makes tokens with ``tradeloop token new`` (scopes read+submit, and read only), lists
    their hashes in the member node of ``participant``'s node.toml, and returns the tokens by
    scope set; the key of the dict the fixture keeps is that node's name."""
    node = next(n for n in nodes if n.participant == participant and not n.validator)
    config = net / "nodes" / node.name / "node.toml"
    made: Dict[str, str] = {}
    entries = []
    for name, scopes in (("py-client", "read,submit"), ("py-reader", "read")):
        out = subprocess.run(
            [str(binary), "token", "new", "--name", name, "--scopes", scopes, "--json"],
            check=True,
            timeout=60,
            capture_output=True,
        )
        token = json.loads(out.stdout)
        made[scopes] = token["token"]
        scope_list = ", ".join(f'"{s}"' for s in token["scopes"])
        entries.append(
            f'\n[[api.tokens]]\nname = "{name}"\nsha256 = "{token["sha256"]}"\n'
            f"scopes = [{scope_list}]\n"
        )
    with config.open("a") as f:
        f.write("".join(entries))
    return made


@pytest.fixture(scope="session")
def devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devnet]:
    """A running devnet: 4 validators (the customs authorities and the banks) and a member node
    each for the exporter, the importer and the forwarder."""
    binary = tradeloop_binary()
    root = tmp_path_factory.mktemp("devnet")
    net = root / "net"
    subprocess.run(
        [str(binary), "devnet", "init", "--validators", "4", "--full-nodes", "3", "--dir", str(net)],
        check=True,
        timeout=120,
        stdout=subprocess.DEVNULL,
    )
    genesis_path = net / "genesis.json"
    genesis = Genesis.from_file(genesis_path)
    nodes = read_nodes(net, genesis)
    assert len(nodes) == 7, nodes
    # The importer's node requires tokens (as a node listening beyond loopback must): every test
    # through it then goes through the node's token check.
    token_node = next(n for n in nodes if n.participant == TOKEN_NODE_OF and not n.validator)
    tokens = {token_node.name: _add_tokens(binary, net, genesis, nodes, TOKEN_NODE_OF)}
    log = root / "devnet.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(binary), "devnet", "run", "--dir", str(net)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_set_parent_death_signal,
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "info,libp2p=warn")},
        )
    atexit.register(_stop, proc)
    net_ = Devnet(net, genesis_path, genesis, nodes, log, tokens)
    try:
        _wait_up(net_, proc)
        yield net_
    finally:
        for client in net_.clients.values():
            client.close()
        _stop(proc)


@pytest.fixture(autouse=True)
def _bounded_test() -> Iterator[None]:
    """Each test is bounded in time: SIGALRM after TEST_TIMEOUT seconds fails it."""
    if not hasattr(signal, "SIGALRM"):  # pragma: no cover - not on Windows
        yield
        return

    def expired(signum: int, frame: Any) -> None:
        raise TimeoutError(f"the test took longer than {TEST_TIMEOUT} s")

    previous: Optional[Callable[..., Any]] = signal.signal(signal.SIGALRM, expired)  # type: ignore[assignment]
    signal.alarm(TEST_TIMEOUT)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
