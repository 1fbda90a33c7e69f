//! `tradeloop devnet`: a local network of member nodes on loopback (the demo cast).
//!
//! `init` writes `DIR/genesis.json`, `DIR/keys/<participant>.json` (event-signing keys),
//! `DIR/keys/nodes/<node>.json` (node keys) and `DIR/nodes/<node>/node.toml` on free loopback
//! ports; `run` starts every node as a child process and prefixes its log lines with its name.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use tradeloop_crypto::keyfile::write_key_file;
use tradeloop_crypto::SigningKey;
use tradeloop_ledger::sample::Cast;

use crate::cmd::now_ms;
use crate::output::Out;

/// Most validators a devnet has (the cast's validator hosts).
pub const MAX_DEVNET_VALIDATORS: usize = 7;
/// Most non-validating member nodes a devnet has.
pub const MAX_DEVNET_FULL_NODES: usize = 16;
/// How long `run` waits for its nodes to stop after Ctrl-C before killing them.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, Subcommand)]
pub enum DevnetCommand {
    /// Write a genesis, keys and one node.toml per node on free loopback ports.
    Init(InitArgs),
    /// Run every node of a devnet as a child process until Ctrl-C.
    Run {
        /// The devnet directory (from `devnet init`).
        #[arg(long)]
        dir: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Validators (1 to 7: the two customs authorities, the two banks, the forwarder, then
    /// second nodes of the customs authorities).
    #[arg(long, default_value_t = 4)]
    pub validators: usize,
    /// Non-validating member nodes (the exporter's, the importer's, the forwarder's, then
    /// second nodes of theirs).
    #[arg(long, default_value_t = 0)]
    pub full_nodes: usize,
    /// The directory to create; it must not exist or be empty.
    #[arg(long)]
    pub dir: PathBuf,
    /// Consensus timeouts of round 0 in the genesis, ms (propose; prevote and precommit are
    /// half of it).
    #[arg(long)]
    pub timeout_propose_ms: Option<u64>,
    /// How long a proposer with an empty mempool waits before proposing an empty block, ms
    /// (written to each node.toml's `[consensus] empty_block_wait_ms`; the node's default
    /// otherwise).
    #[arg(long)]
    pub empty_block_wait_ms: Option<u64>,
    /// The first of the devnet's loopback ports (two per node: p2p, then API); the devnet
    /// fails if any of them is taken. Default: free ports found below the kernel's ephemeral
    /// range.
    #[arg(long)]
    pub base_port: Option<u16>,
}

pub fn run(command: DevnetCommand) -> Result<ExitCode> {
    match command {
        DevnetCommand::Init(args) => {
            let nodes = init(&args)?;
            writeln!(Out, "devnet in {}: {} nodes", args.dir.display(), nodes.len())?;
            for n in &nodes {
                writeln!(
                    Out,
                    "  {:<32} {:<10} api http://{}  p2p {}",
                    n.name,
                    if n.validator { "validator" } else { "member" },
                    n.api,
                    n.p2p
                )?;
            }
            writeln!(Out, "run it with: tradeloop devnet run --dir {}", args.dir.display())?;
            Ok(ExitCode::SUCCESS)
        }
        DevnetCommand::Run { dir } => run_devnet(&dir),
    }
}

/// One node of a devnet, as written by [`init`].
#[derive(Clone, Debug)]
pub struct DevnetNode {
    /// Its name (`<participant>-node`).
    pub name: String,
    /// Whether it votes.
    pub validator: bool,
    /// The participant it serves.
    pub participant: String,
    /// Its HTTP API address.
    pub api: std::net::SocketAddr,
    /// Its libp2p address with peer id.
    pub p2p: String,
    /// Its node.toml.
    pub config: PathBuf,
}

/// Where a devnet without `--base-port` looks for free ports: below Linux's default ephemeral
/// range (32768 to 60999), so no outgoing connection is given a devnet port between `init` and
/// the nodes' start.
const DEVNET_PORTS: std::ops::Range<u16> = 20000..32000;

/// `n` distinct free loopback ports, held open together while they are picked so that none
/// repeats: `base..base + n` when a base is given (every one must be free), otherwise the first
/// free ones of `DEVNET_PORTS` from a random start.
fn free_ports(n: usize, base: Option<u16>) -> Result<Vec<u16>> {
    let mut held = Vec::with_capacity(n);
    if let Some(base) = base {
        for offset in 0..n {
            let port = u16::try_from(usize::from(base) + offset)
                .ok()
                .with_context(|| format!("--base-port {base} leaves no room for {n} ports"))?;
            let listener = TcpListener::bind(("127.0.0.1", port)).with_context(|| {
                format!("port {port} is taken; give a --base-port with {n} free ports after it")
            })?;
            held.push(listener);
        }
    } else {
        let span = DEVNET_PORTS.end - DEVNET_PORTS.start;
        let start = rand::random::<u16>() % span;
        for step in 0..span {
            let port = DEVNET_PORTS.start + (start + step) % span;
            if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
                held.push(listener);
                if held.len() == n {
                    break;
                }
            }
        }
        if held.len() < n {
            bail!("found only {} free loopback ports of {n}; give --base-port", held.len());
        }
    }
    Ok(held.iter().map(|l| l.local_addr().map(|a| a.port())).collect::<std::io::Result<_>>()?)
}

/// Writes a devnet; returns its nodes. Also used by the networked demo and the cluster tests.
pub fn init(args: &InitArgs) -> Result<Vec<DevnetNode>> {
    if !(1..=MAX_DEVNET_VALIDATORS).contains(&args.validators) {
        bail!("--validators must be 1 to {MAX_DEVNET_VALIDATORS}, not {}", args.validators);
    }
    if args.full_nodes > MAX_DEVNET_FULL_NODES {
        bail!("--full-nodes must be 0 to {MAX_DEVNET_FULL_NODES}, not {}", args.full_nodes);
    }
    let dir = &args.dir;
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        bail!("{} is not empty; give a new or empty directory to --dir", dir.display());
    }
    let mut cast = Cast::networked(args.validators, args.full_nodes, now_ms(), &mut |_| {
        Ok(SigningKey::generate()?)
    })?;
    if let Some(ms) = args.timeout_propose_ms {
        let mut doc = cast.genesis.doc.clone();
        doc.consensus.timeout_propose_ms = ms;
        doc.consensus.timeout_prevote_ms = (ms / 2).max(1);
        doc.consensus.timeout_precommit_ms = (ms / 2).max(1);
        cast.genesis = tradeloop_ledger::Genesis::from_doc(doc)?;
    }
    std::fs::create_dir_all(dir.join("keys/nodes"))?;
    std::fs::write(dir.join("genesis.json"), cast.genesis.doc.to_json_bytes())?;
    for (id, key) in &cast.keys {
        write_key_file(&dir.join("keys").join(format!("{id}.json")), key)?;
    }
    let names = cast.node_names();
    let keys = cast.node_keys();
    let members = cast.genesis.member_nodes();
    let ports = free_ports(2 * names.len(), args.base_port)?;
    let verify_threads = verify_threads_per_node(names.len());
    let mut nodes = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let peer = tradeloop_node::net::p2p::peer_id(&keys[i].public_key());
        nodes.push(DevnetNode {
            name: name.clone(),
            validator: members[i].power > 0,
            participant: members[i].participant.to_string(),
            api: std::net::SocketAddr::from(([127, 0, 0, 1], ports[2 * i + 1])),
            p2p: format!("/ip4/127.0.0.1/tcp/{}/p2p/{peer}", ports[2 * i]),
            config: dir.join("nodes").join(name).join("node.toml"),
        });
    }
    for (i, node) in nodes.iter().enumerate() {
        write_key_file(&dir.join("keys/nodes").join(format!("{}.json", node.name)), keys[i])?;
        let bootstrap: Vec<String> = nodes
            .iter()
            .filter(|other| other.name != node.name)
            .map(|other| format!("{:?}", other.p2p))
            .collect();
        let toml = format!(
            "# {name}: {role} of {participant} (tradeloop devnet)\n\
             data_dir = \"data\"\n\
             genesis = \"../../genesis.json\"\n\
             node_key = \"../../keys/nodes/{name}.json\"\n\n\
             [p2p]\n\
             listen = [\"/ip4/127.0.0.1/tcp/{port}\"]\n\
             bootstrap = [{bootstrap}]\n\n\
             [api]\n\
             listen = \"{api}\"\n\n\
             {consensus}\
             [runtime]\n\
             # the devnet's nodes share this machine's cores\n\
             verify_threads = {verify_threads}\n\n\
             [log]\n\
             format = \"pretty\"\n",
            name = node.name,
            role = if node.validator { "validator" } else { "member node" },
            participant = node.participant,
            port = ports[2 * i],
            bootstrap = bootstrap.join(", "),
            api = node.api,
            consensus = match args.empty_block_wait_ms {
                Some(ms) => format!("[consensus]\nempty_block_wait_ms = {ms}\n\n"),
                None => String::new(),
            },
        );
        std::fs::create_dir_all(node.config.parent().unwrap_or(Path::new(".")))?;
        std::fs::write(&node.config, toml)?;
    }
    Ok(nodes)
}

/// `[runtime] verify_threads` for each of `nodes` nodes on this machine: its cores split
/// between them, at least 1 (then each node checks on its chain worker, with no hand-off).
fn verify_threads_per_node(nodes: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    (cores / nodes.max(1)).max(1)
}

/// The nodes of a devnet directory, from its node.toml files.
pub fn nodes_of(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let nodes_dir = dir.join("nodes");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&nodes_dir).with_context(|| {
        format!("{} has no nodes/ (run `tradeloop devnet init` first)", dir.display())
    })? {
        let entry = entry?;
        let config = entry.path().join("node.toml");
        if config.is_file() {
            out.push((entry.file_name().to_string_lossy().into_owned(), config));
        }
    }
    out.sort();
    if out.is_empty() {
        bail!("{} holds no node.toml files", nodes_dir.display());
    }
    Ok(out)
}

/// Node processes that are stopped (or killed) when this is dropped, also when the command
/// that started them fails half-way.
#[derive(Default)]
pub struct Running {
    /// Each node's name and process.
    pub children: Vec<(String, Child)>,
}

impl Drop for Running {
    fn drop(&mut self) {
        stop_all(&mut self.children);
    }
}

impl Running {
    /// Starts every node of `nodes` with its output in `node.log` beside its node.toml.
    pub fn start(nodes: &[DevnetNode], rust_log: &str) -> Result<Running> {
        let mut running = Running::default();
        for n in nodes {
            let log = std::fs::File::create(n.config.with_file_name("node.log"))?;
            let child = Command::new(std::env::current_exe()?)
                .args(["node", "--stop-on-stdin-eof", "--config"])
                .arg(&n.config)
                .env("RUST_LOG", rust_log)
                .stdin(Stdio::piped())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .with_context(|| format!("cannot start node {}", n.name))?;
            running.children.push((n.name.clone(), child));
        }
        Ok(running)
    }

    /// Stops every node cleanly (closing its stdin) and fails if one exits unsuccessfully.
    pub fn stop(mut self) -> Result<()> {
        let mut children = std::mem::take(&mut self.children);
        for (_, child) in children.iter_mut() {
            drop(child.stdin.take());
        }
        for (name, child) in children.iter_mut() {
            let status = child.wait()?;
            if !status.success() {
                bail!("node {name} exited with {status} when stopped");
            }
        }
        Ok(())
    }
}

/// `GET /v1/status` of a node.
pub fn status(agent: &ureq::Agent, node: &DevnetNode) -> Result<tradeloop_node::api::NodeStatus> {
    let body = agent
        .get(&format!("http://{}/v1/status", node.api))
        .call()?
        .into_body()
        .read_to_string()?;
    Ok(serde_json::from_str(&body)?)
}

/// Waits until every node is connected to all the others.
pub fn wait_connected(agent: &ureq::Agent, nodes: &[DevnetNode], within: Duration) -> Result<()> {
    let deadline = Instant::now() + within;
    for n in nodes {
        loop {
            let peers = status(agent, n).map(|s| s.connected_peers.len()).unwrap_or(0);
            if peers + 1 >= nodes.len() {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "node {} did not come up with its peers within {}s; see {}",
                    n.name,
                    within.as_secs(),
                    n.config.with_file_name("node.log").display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(())
}

/// The devnet's cast: its genesis and the participants' event-signing keys from `DIR/keys/`.
pub fn load_cast(dir: &Path) -> Result<Cast> {
    let genesis = crate::cmd::load_genesis(&dir.join("genesis.json"))?;
    let mut keys = std::collections::BTreeMap::new();
    for p in genesis.participants() {
        let file = dir.join("keys").join(format!("{}.json", p.id));
        keys.insert(p.id.clone(), tradeloop_crypto::keyfile::read_key_file(&file)?);
    }
    Ok(Cast { genesis, keys, validator_keys: Vec::new(), member_keys: Vec::new() })
}

/// Starts one node process, its stdin held open so that it stops if this process dies.
pub fn spawn_node(config: &Path) -> Result<Child> {
    let exe = std::env::current_exe().context("cannot find the tradeloop binary")?;
    Command::new(exe)
        .args(["node", "--stop-on-stdin-eof", "--config"])
        .arg(config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start the node of {}", config.display()))
}

/// Copies a child's output to ours, each line prefixed with the node's name.
fn prefix_lines(name: String, child: &mut Child) {
    let width = 30;
    if let Some(out) = child.stdout.take() {
        let name = name.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                println!("{name:<width$} | {line}");
            }
        });
    }
    if let Some(err) = child.stderr.take() {
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                println!("{name:<width$} | {line}");
            }
        });
    }
}

fn run_devnet(dir: &Path) -> Result<ExitCode> {
    let nodes = nodes_of(dir)?;
    let mut children: Vec<(String, Child)> = Vec::new();
    for (name, config) in &nodes {
        match spawn_node(config) {
            Ok(mut child) => {
                prefix_lines(name.clone(), &mut child);
                children.push((name.clone(), child));
            }
            Err(e) => {
                stop_all(&mut children);
                return Err(e);
            }
        }
    }
    writeln!(Out, "devnet: {} nodes running; Ctrl-C stops them", children.len())?;
    Out.flush()?;
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    ctrlc_channel(tx);
    let mut failed = false;
    loop {
        if rx.recv_timeout(Duration::from_millis(200)).is_ok() {
            break;
        }
        if let Some((name, status)) = children
            .iter_mut()
            .find_map(|(n, c)| c.try_wait().ok().flatten().map(|s| (n.clone(), s)))
        {
            eprintln!("devnet: node {name} exited ({status}); stopping the others");
            failed = !status.success();
            break;
        }
    }
    stop_all(&mut children);
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// Closes each node's stdin (it stops cleanly), waits up to [`STOP_GRACE`], then kills what is
/// left.
pub fn stop_all(children: &mut Vec<(String, Child)>) {
    for (_, child) in children.iter_mut() {
        drop(child.stdin.take());
    }
    let deadline = Instant::now() + STOP_GRACE;
    for (name, child) in children.iter_mut() {
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() >= deadline => {
                    eprintln!(
                        "devnet: node {name} did not stop in {}s; killing it",
                        STOP_GRACE.as_secs()
                    );
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
    children.clear();
}

/// Sends on `tx` at SIGINT or SIGTERM (through tokio's signal handling on its own thread).
fn ctrlc_channel(tx: std::sync::mpsc::SyncSender<()>) {
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
            return;
        };
        rt.block_on(tradeloop_node::runtime::shutdown_signal());
        let _ = tx.send(());
    });
}
