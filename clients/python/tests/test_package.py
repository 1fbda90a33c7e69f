"""Tests of the package as a package: it builds without writing into its source tree, and its
modules import alone, with no import circle between them. They need no node; building the wheel
needs the pinned build backend (flit_core) from PyPI or pip's cache."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Dict, List, Set, Tuple

import pytest

from conftest import REPO

PACKAGE_DIR = REPO / "clients" / "python"
"""The project directory: what `pip install ./clients/python` builds."""
SOURCE = PACKAGE_DIR / "src" / "tradeloop_client"
"""The import package's source."""
MODULES = sorted(p.stem for p in SOURCE.glob("*.py") if p.stem != "__init__")
"""The package's modules (``client``, ``signing``, ``verify``, ...)."""
BUILD_TIMEOUT = 200
"""Seconds for `pip wheel` (it may fetch the build backend); under the suite's per-test bound."""


def tree_state(root: Path) -> Dict[str, Tuple[int, int]]:
    """Every file under ``root``, ignored ones included (``git status`` would hide ``build/``
    and ``*.egg-info``, which clients/python/.gitignore listed), with its size and mtime."""
    state = {}
    for path in root.rglob("*"):
        if path.is_file() or path.is_symlink():
            st = path.lstat()
            state[str(path.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return state


def test_building_the_package_writes_nothing_into_its_source_tree(tmp_path: Path) -> None:
    """`pip wheel` (the build that `pip install ./clients/python` runs) leaves the source tree
    as it was: no build/, no .egg-info, no file changed; and the wheel holds every module and the
    py.typed marker."""
    before = tree_state(PACKAGE_DIR)
    out = tmp_path / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check",
         "--no-input", "-w", str(out), str(PACKAGE_DIR)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
    )
    assert build.returncode == 0, f"pip wheel failed:\n{build.stdout}\n{build.stderr}"
    after = tree_state(PACKAGE_DIR)
    added = sorted(set(after) - set(before))
    changed = sorted(p for p in set(before) & set(after) if before[p] != after[p])
    removed = sorted(set(before) - set(after))
    assert (added, changed, removed) == ([], [], []), "the build wrote into the source tree"

    wheels = list(out.glob("tradeloop_client-*.whl"))
    assert len(wheels) == 1, list(out.iterdir())
    with zipfile.ZipFile(wheels[0]) as wheel:
        names = set(wheel.namelist())
        metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
        text = wheel.read(metadata).decode()
    expected = {f"tradeloop_client/{m}.py" for m in [*MODULES, "__init__"]}
    assert expected | {"tradeloop_client/py.typed"} <= names, sorted(names)
    assert not any("__pycache__" in n or n.startswith("tests/") for n in names), sorted(names)
    assert "Name: tradeloop-client" in text
    for requirement in ("cryptography", "rfc8785", "httpx"):
        assert f"Requires-Dist: {requirement}" in text


def relative_imports(module: str) -> Set[str]:
    """The package modules ``module`` imports anywhere in its code (at the top or inside a
    function, where an import circle hides from an import-time check)."""
    tree = ast.parse((SOURCE / f"{module}.py").read_text(), filename=f"{module}.py")
    found: Set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:  # from . import _json
                found.update(a.name for a in node.names)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [
                a.name for a in node.names]
            found.update(n.split(".")[1] for n in names if n.startswith("tradeloop_client."))
    return found & set(MODULES)


def needed(module: str) -> Set[str]:
    """``module`` and every package module it imports, directly or through another."""
    found = {module}
    todo = [module]
    while todo:
        for imported in relative_imports(todo.pop()):
            if imported not in found:
                found.add(imported)
                todo.append(imported)
    return found


def test_the_modules_import_one_another_without_a_circle() -> None:
    """signing.py and verify.py share the genesis and domain tags through _chain.py: neither
    imports the other, and no other module closes a circle."""
    graph = {m: relative_imports(m) for m in MODULES}
    assert "verify" not in graph["signing"] and "signing" not in graph["verify"], graph
    done: Set[str] = set()

    def visit(module: str, path: List[str]) -> None:
        if module in path:
            cycle = path[path.index(module):] + [module]
            pytest.fail(f"import circle: {' -> '.join(cycle)}")
        if module in done:
            return
        for imported in sorted(graph[module]):
            visit(imported, path + [module])
        done.add(module)

    for module in MODULES:
        visit(module, [])


ALONE = """
import importlib, sys, types
# The package without its __init__ (which imports every module): only what NAME itself needs.
package = types.ModuleType("tradeloop_client")
package.__path__ = [sys.argv[1]]
sys.modules["tradeloop_client"] = package
importlib.import_module("tradeloop_client." + sys.argv[2])
print(" ".join(sorted(m.split(".")[1] for m in sys.modules if m.startswith("tradeloop_client."))))
"""


@pytest.mark.parametrize("module", MODULES)
def test_each_module_imports_alone_in_a_fresh_interpreter(module: str, tmp_path: Path) -> None:
    """Each module imported first, alone, in a new interpreter: no half-initialised partner
    module. Then the whole package the usual way. -B: no bytecode written into the source."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    alone = subprocess.run(
        [sys.executable, "-B", "-c", ALONE, str(SOURCE), module],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, env=env,
    )
    assert alone.returncode == 0, alone.stderr
    loaded = set(alone.stdout.split())
    assert loaded == needed(module), "the modules loaded are not those its imports name"
    if module == "signing":
        assert "verify" not in loaded, loaded
    if module == "verify":
        assert "signing" not in loaded, loaded
    whole = subprocess.run(
        [sys.executable, "-B", "-c", f"import tradeloop_client.{module}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={**env, "PYTHONPATH": str(SOURCE.parent)},
    )
    assert whole.returncode == 0, whole.stderr
