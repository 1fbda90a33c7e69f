//! A devnet of real `tradeloop node` processes on loopback, for the cluster tests.
//!
//! Every process a [`Cluster`] starts is killed when the cluster is dropped, also when a test
//! fails; every wait has a deadline and polls a condition (never a bare sleep).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;
use tradeloop_crypto::keyfile::read_key_file;
use tradeloop_crypto::Hash;
use tradeloop_ledger::sample::Cast;
use tradeloop_ledger::{Genesis, Ledger, SignedEvent};

use crate::proxy::{LinkFault, LinkProxy};

/// How long a node has to answer its status after starting.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one event has to commit.
pub const COMMIT_TIMEOUT: Duration = Duration::from_secs(30);

/// The `tradeloop` binary of this source tree, built (once per test process) by the same
/// cargo and profile that built this test, so that a test never runs a stale binary: `cargo test
/// -p tradeloop-tests` alone does not rebuild other packages' binaries.
pub fn binary() -> Result<PathBuf> {
    static BUILT: std::sync::OnceLock<std::result::Result<PathBuf, String>> =
        std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| build_binary().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

fn build_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/<test> -> target/<profile>/tradeloop
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("test binary is not under target/<profile>/deps")?;
    let target_dir = profile_dir.parent().context("no target dir above the profile dir")?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .args(["build", "--quiet", "-p", "tradeloop", "--bin", "tradeloop", "--manifest-path"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir);
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        build.arg("--release");
    }
    let status = build.status().context("cannot run cargo to build the tradeloop binary")?;
    let bin = profile_dir.join("tradeloop");
    if !status.success() || !bin.is_file() {
        bail!("the tradeloop binary could not be built at {}", bin.display());
    }
    Ok(bin)
}

/// One node of the cluster.
#[derive(Debug)]
pub struct ClusterNode {
    /// Its name (`<participant>-node`).
    pub name: String,
    /// Its directory (node.toml, data/, log).
    pub dir: PathBuf,
    /// Its HTTP API base URL.
    pub url: String,
    /// Whether it is a validator.
    pub validator: bool,
    /// The participant it serves.
    pub participant: String,
    /// Environment variables its process starts with (e.g. a fake clock).
    pub env: Vec<(String, String)>,
    child: Option<Child>,
}

/// A running devnet.
#[derive(Debug)]
pub struct Cluster {
    /// Its directory.
    pub dir: PathBuf,
    /// The nodes, validators first.
    pub nodes: Vec<ClusterNode>,
    /// The genesis.
    pub genesis: Genesis,
    /// Event-signing keys of the cast, read from the devnet's key files.
    pub cast: Cast,
    bin: PathBuf,
    /// The proxy of every ordered pair of nodes `(from, to)`, when started proxied.
    links: BTreeMap<(usize, usize), LinkProxy>,
    /// File systems mounted for nodes (unmounted when the cluster is dropped).
    mounts: Vec<PathBuf>,
    _temp: tempfile::TempDir,
}

impl Cluster {
    /// `tradeloop devnet init` with these counts, then every node started and answering.
    pub fn start(validators: usize, full_nodes: usize) -> Result<Cluster> {
        let mut cluster = Cluster::init(validators, full_nodes)?;
        cluster.start_all()?;
        Ok(cluster)
    }

    /// Starts every node and waits until each answers its status.
    pub fn start_all(&mut self) -> Result<()> {
        for i in 0..self.nodes.len() {
            self.start_node(i)?;
        }
        for i in 0..self.nodes.len() {
            self.wait_status(i, START_TIMEOUT)?;
        }
        Ok(())
    }

    /// As [`Cluster::start`], with every p2p connection through a [`LinkProxy`] of its ordered
    /// pair of nodes, so that links can be cut and slowed ([`Cluster::set_link`]); `seed` drives
    /// the proxies' delays.
    pub fn start_proxied(validators: usize, full_nodes: usize, seed: u64) -> Result<Cluster> {
        let mut cluster = Cluster::init(validators, full_nodes)?;
        cluster.route_through_proxies(seed)?;
        cluster.start_all()?;
        Ok(cluster)
    }

    /// Starts a proxy for every ordered pair of nodes and rewrites each node's bootstrap list to
    /// dial its peers through them (nodes dial no address learned from peers).
    fn route_through_proxies(&mut self, seed: u64) -> Result<()> {
        let ports: Vec<u16> =
            (0..self.nodes.len()).map(|i| self.p2p_port(i)).collect::<Result<_>>()?;
        for from in 0..self.nodes.len() {
            for (to, port) in ports.iter().enumerate() {
                if from != to {
                    let target = std::net::SocketAddr::from(([127, 0, 0, 1], *port));
                    let proxy = LinkProxy::start(target, seed ^ ((from as u64) << 32 | to as u64))?;
                    self.links.insert((from, to), proxy);
                }
            }
        }
        for from in 0..self.nodes.len() {
            let path = self.nodes[from].dir.join("node.toml");
            let toml = std::fs::read_to_string(&path)?;
            let mut rewritten = String::new();
            for line in toml.lines() {
                let mut line = line.to_string();
                if line.starts_with("bootstrap = [") {
                    for (to, port) in ports.iter().enumerate() {
                        if let Some(proxy) = self.links.get(&(from, to)) {
                            line = line.replace(
                                &format!("/tcp/{port}/"),
                                &format!("/tcp/{}/", proxy.addr.port()),
                            );
                        }
                    }
                }
                rewritten.push_str(&line);
                rewritten.push('\n');
            }
            std::fs::write(&path, rewritten)?;
        }
        Ok(())
    }

    /// Node `i`'s p2p listen port, from its node.toml.
    pub fn p2p_port(&self, i: usize) -> Result<u16> {
        let toml = std::fs::read_to_string(self.nodes[i].dir.join("node.toml"))?;
        toml.lines()
            .find_map(|l| l.strip_prefix("listen = [\"/ip4/127.0.0.1/tcp/"))
            .and_then(|r| r.strip_suffix("\"]"))
            .context("node.toml has no p2p listen port")?
            .parse()
            .context("node.toml's p2p listen port")
    }

    /// Applies `fault` to both directions between nodes `a` and `b` (a proxied cluster).
    pub fn set_link(&self, a: usize, b: usize, fault: LinkFault) -> Result<()> {
        for pair in [(a, b), (b, a)] {
            self.links.get(&pair).context("the cluster was not started proxied")?.set(fault);
        }
        Ok(())
    }

    /// Applies `fault` to every link of the cluster.
    pub fn set_every_link(&self, fault: LinkFault) {
        for proxy in self.links.values() {
            proxy.set(fault);
        }
    }

    /// Cuts every link between nodes of different `groups` (nodes in no group keep their
    /// links to all); heals every other link.
    pub fn partition(&self, groups: &[&[usize]]) -> Result<()> {
        let group_of = |i: usize| groups.iter().position(|g| g.contains(&i));
        for a in 0..self.nodes.len() {
            for b in (a + 1)..self.nodes.len() {
                let apart = matches!((group_of(a), group_of(b)), (Some(x), Some(y)) if x != y);
                self.set_link(a, b, if apart { LinkFault::Cut } else { LinkFault::None })?;
            }
        }
        Ok(())
    }

    /// Cuts every link of node `i`.
    pub fn isolate(&self, i: usize) -> Result<()> {
        for other in 0..self.nodes.len() {
            if other != i {
                self.set_link(i, other, LinkFault::Cut)?;
            }
        }
        Ok(())
    }

    /// Puts node `i`'s data dir (before it starts) on a tmpfs of `mib` MiB, so that its disk can
    /// be filled; needs root (CI runs as root).
    pub fn small_disk(&mut self, i: usize, mib: u32) -> Result<PathBuf> {
        let data = self.data_dir(i);
        std::fs::create_dir_all(&data)?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(&data)
            .output()
            .context("cannot run mount")?;
        if !out.status.success() {
            bail!(
                "cannot mount a {mib} MiB tmpfs on {} (this test needs root): {}",
                data.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        self.mounts.push(data.clone());
        Ok(data)
    }

    /// Node `i`'s process id, while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.nodes[i].child.as_ref().map(Child::id)
    }

    /// Pauses node `i` (SIGSTOP): alive at the TCP level, silent above it.
    pub fn pause(&self, i: usize) -> Result<()> {
        self.signal(i, "-STOP")
    }

    /// Resumes a paused node `i` (SIGCONT).
    pub fn resume(&self, i: usize) -> Result<()> {
        self.signal(i, "-CONT")
    }

    fn signal(&self, i: usize, signal: &str) -> Result<()> {
        let child = self.nodes[i].child.as_ref().context("the node is not running")?;
        let status = Command::new("kill").arg(signal).arg(child.id().to_string()).status()?;
        if !status.success() {
            bail!("kill {signal} {} failed", self.nodes[i].name);
        }
        Ok(())
    }

    /// Node `i`'s metric `name` (a gauge or counter without labels), from `GET /metrics`.
    pub fn metric(&self, i: usize, name: &str) -> Result<f64> {
        let text = self.get(i, "/metrics", true)?;
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
            .with_context(|| format!("{} has no metric {name}", self.nodes[i].name))?
            .trim()
            .parse()
            .with_context(|| format!("metric {name}"))
    }

    /// `tradeloop compare` of the data dirs of nodes `a` and `b` (stopped); its exit code and
    /// output (0: the same chain, 3: one is a prefix of the other, 4: a split view).
    pub fn compare(&self, a: usize, b: usize) -> Result<(i32, String)> {
        let out = Command::new(&self.bin)
            .arg("compare")
            .arg(self.data_dir(a))
            .arg(self.data_dir(b))
            .arg("--genesis")
            .arg(self.dir.join("genesis.json"))
            .output()?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok((out.status.code().unwrap_or(-1), text))
    }

    /// `tradeloop devnet init` with these counts, on ports of this process's own range; no node
    /// started yet.
    pub fn init(validators: usize, full_nodes: usize) -> Result<Cluster> {
        let temp = tempfile::tempdir()?;
        let dir = temp.path().join("net");
        let bin = binary()?;
        let out = Command::new(&bin)
            .args(["devnet", "init", "--validators", &validators.to_string()])
            .args([
                "--full-nodes",
                &full_nodes.to_string(),
                "--timeout-propose-ms",
                "1000",
                "--base-port",
                &cluster_base_port(validators + full_nodes)?.to_string(),
                "--dir",
            ])
            .arg(&dir)
            .output()?;
        if !out.status.success() {
            bail!("devnet init failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let genesis = Genesis::load(&dir.join("genesis.json"))?;
        let mut keys = BTreeMap::new();
        for p in genesis.participants() {
            keys.insert(
                p.id.clone(),
                read_key_file(&dir.join("keys").join(format!("{}.json", p.id)))?,
            );
        }
        let cast = Cast {
            genesis: genesis.clone(),
            keys,
            validator_keys: Vec::new(),
            member_keys: Vec::new(),
        };
        let mut nodes = Vec::new();
        for m in genesis.member_nodes() {
            let name = node_name(&nodes, m.participant);
            let node_dir = dir.join("nodes").join(&name);
            let toml = std::fs::read_to_string(node_dir.join("node.toml"))?;
            let api = toml
                .lines()
                .find_map(|l| l.strip_prefix("listen = \"").and_then(|r| r.strip_suffix('"')))
                .context("node.toml has no api listen")?
                .to_string();
            nodes.push(ClusterNode {
                name,
                dir: node_dir,
                url: format!("http://{api}"),
                validator: m.power > 0,
                participant: m.participant.to_string(),
                env: Vec::new(),
                child: None,
            });
        }
        Ok(Cluster {
            dir,
            nodes,
            genesis,
            cast,
            bin,
            links: BTreeMap::new(),
            mounts: Vec::new(),
            _temp: temp,
        })
    }

    /// Whether node `i` runs (as far as this harness knows).
    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i].child.is_some()
    }

    /// Submits each event to a running node of its author (else any running node) and waits
    /// for its commit; the acknowledged `(id, height)`s.
    pub fn submit_all(&self, events: &[SignedEvent]) -> Result<Vec<(Hash, u64)>> {
        let mut acknowledged = Vec::new();
        for event in events {
            let body: Value = serde_json::from_slice(&event.body)?;
            let author = body["author"].as_str().unwrap_or_default();
            let node = self
                .nodes
                .iter()
                .position(|n| n.participant == author && n.child.is_some())
                .or_else(|| self.nodes.iter().position(|n| n.child.is_some()))
                .context("no node is running")?;
            let answer = self.submit_wait(node, std::slice::from_ref(event))?;
            let committed = committed_ids(&answer);
            if committed.len() != 1 {
                bail!(
                    "{author} via {}: not committed: {answer}\n{}",
                    self.nodes[node].name,
                    self.log(node)
                );
            }
            acknowledged.extend(committed);
        }
        Ok(acknowledged)
    }

    /// Removes node `i`'s data dir (the node must be stopped).
    pub fn wipe(&self, i: usize) -> Result<()> {
        std::fs::remove_dir_all(self.data_dir(i))
            .with_context(|| format!("wipe {}", self.nodes[i].name))
    }

    /// Starts node `i` (again), appending to its log.
    pub fn start_node(&mut self, i: usize) -> Result<()> {
        let node = &mut self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node.dir.join("node.log"))?;
        let child = Command::new(&self.bin)
            .args(["node", "--stop-on-stdin-eof", "--config"])
            .arg(node.dir.join("node.toml"))
            .env(
                "RUST_LOG",
                std::env::var("TRADELOOP_NODE_LOG").unwrap_or_else(|_| "info,libp2p=warn".into()),
            )
            .envs(node.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        node.child = Some(child);
        Ok(())
    }

    /// Stops node `i` cleanly (closes its stdin) and waits for it; its exit status.
    pub fn stop_node(&mut self, i: usize) -> Result<std::process::ExitStatus> {
        let Some(mut child) = self.nodes[i].child.take() else { bail!("node {i} is not running") };
        drop(child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("node {} did not stop within 20 s of its stdin closing", self.nodes[i].name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills node `i` with SIGKILL.
    pub fn kill_node(&mut self, i: usize) -> Result<()> {
        if let Some(mut child) = self.nodes[i].child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// The node's log, for failure messages.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.nodes[i].dir.join("node.log")).unwrap_or_default()
    }

    /// Copies every node's log to `dest/<node>.log` (to read after a failed run); the folder.
    pub fn save_logs(&self, dest: &Path) -> Result<PathBuf> {
        std::fs::create_dir_all(dest)?;
        for node in &self.nodes {
            let _ =
                std::fs::copy(node.dir.join("node.log"), dest.join(format!("{}.log", node.name)));
        }
        Ok(dest.to_path_buf())
    }

    /// Its `GET /v1/status`.
    pub fn status(&self, i: usize) -> Result<Value> {
        Ok(serde_json::from_str(&self.get(i, "/v1/status", true)?)?)
    }

    /// Its `GET /v1/status` answer whatever its HTTP status (a node waiting for its disk
    /// answers 503 with the reason).
    pub fn status_answer(&self, i: usize) -> Result<Value> {
        Ok(serde_json::from_str(&self.get(i, "/v1/status", false)?)?)
    }

    /// The body of `GET path` on node `i`; an error status is an error if `ok_only`.
    fn get(&self, i: usize, path: &str, ok_only: bool) -> Result<String> {
        Ok(ureq::get(&format!("{}{path}", self.nodes[i].url))
            .config()
            .timeout_global(Some(Duration::from_secs(5)))
            .http_status_as_error(ok_only)
            .build()
            .call()?
            .into_body()
            .read_to_string()?)
    }

    /// Waits until node `i` answers its status.
    pub fn wait_status(&self, i: usize, timeout: Duration) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.status(i) {
                Ok(s) => return Ok(s),
                Err(e) if Instant::now() > deadline => {
                    bail!(
                        "node {} did not answer within {timeout:?}: {e}\n{}",
                        self.nodes[i].name,
                        self.log(i)
                    )
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Waits until every running node's height is at least `height`.
    pub fn wait_height(&self, height: u64, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        for i in 0..self.nodes.len() {
            if self.nodes[i].child.is_none() {
                continue;
            }
            loop {
                let h = self.status(i).ok().and_then(|s| s["height"].as_u64()).unwrap_or(0);
                if h >= height {
                    break;
                }
                if Instant::now() > deadline {
                    bail!(
                        "node {} is at height {h}, not {height}, after {timeout:?}\n{}",
                        self.nodes[i].name,
                        self.log(i)
                    );
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(())
    }

    /// The node serving `participant`: its own member node, or one of its validators, or else
    /// the first node.
    pub fn node_for(&self, participant: &str) -> usize {
        self.nodes
            .iter()
            .position(|n| n.participant == participant && !n.validator)
            .or_else(|| self.nodes.iter().position(|n| n.participant == participant))
            .unwrap_or(0)
    }

    /// Submits events to node `i` with `?wait=commit`; the JSON answer.
    pub fn submit_wait(&self, i: usize, events: &[SignedEvent]) -> Result<Value> {
        submit_wait_url(&self.nodes[i].url, events)
    }

    /// Stops every node cleanly and returns their exit statuses.
    /// Waits until every running node has committed the highest acknowledged height, then
    /// stops them all. An acknowledgement comes from one node; the others may still be a block
    /// behind when it arrives, and a node stopped then holds that block only after its next sync.
    pub fn stop_all_synced(
        &mut self,
        acknowledged: &[(Hash, u64)],
    ) -> Result<Vec<std::process::ExitStatus>> {
        let top = acknowledged.iter().map(|(_, h)| *h).max().unwrap_or(0);
        self.wait_height(top, Duration::from_secs(60))?;
        self.stop_all()
    }

    pub fn stop_all(&mut self) -> Result<Vec<std::process::ExitStatus>> {
        let mut statuses = Vec::new();
        for i in 0..self.nodes.len() {
            if self.nodes[i].child.is_some() {
                statuses.push(self.stop_node(i)?);
            }
        }
        Ok(statuses)
    }

    /// Runs `tradeloop verify` on node `i`'s data dir (the node must be stopped).
    pub fn verify(&self, i: usize) -> Result<String> {
        let out = Command::new(&self.bin)
            .args(["verify", "--data-dir"])
            .arg(self.nodes[i].dir.join("data"))
            .arg("--genesis")
            .arg(self.dir.join("genesis.json"))
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!(
                "verify of {} failed: {text}{}",
                self.nodes[i].name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(text)
    }

    /// The data dir of node `i`.
    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.nodes[i].dir.join("data")
    }

    /// The cast's keys, to sign events on other threads.
    pub fn signer(&self) -> std::sync::Arc<Cast> {
        std::sync::Arc::new(Cast {
            genesis: self.genesis.clone(),
            keys: self.cast.keys.clone(),
            validator_keys: Vec::new(),
            member_keys: Vec::new(),
        })
    }

    /// The HTTP API base URL of every node, in order.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.url.clone()).collect()
    }

    /// Signs the events of sample trade `n` with the cast's keys.
    pub fn trade_events(&self, n: u64) -> Vec<SignedEvent> {
        tradeloop_ledger::sample::trade_events(&self.cast, n, now_ms())
    }
}

/// The checker every cluster scenario ends with (the nodes must be stopped): `verify` passes on
/// every copy; every acknowledged event is in every copy once, at its acknowledged height;
/// `tradeloop compare` finds every pair of copies the same chain or one a prefix of the other,
/// never a split view.
pub fn check_chains_agree(cluster: &Cluster, acknowledged: &[(Hash, u64)]) -> Result<()> {
    for i in 0..cluster.nodes.len() {
        let report = cluster.verify(i)?;
        if !report.contains("OK") {
            bail!("verify of {}: {report}", cluster.nodes[i].name);
        }
        let ledger = Ledger::open_read_only(&cluster.data_dir(i), cluster.genesis.clone())?;
        for (id, height) in acknowledged {
            let Some(record) = ledger.event(id)? else {
                bail!("{}: acknowledged event {id} is missing", cluster.nodes[i].name);
            };
            if record.height != *height {
                bail!(
                    "{}: event {id} at height {}, acknowledged at {height}",
                    cluster.nodes[i].name,
                    record.height
                );
            }
        }
    }
    for a in 0..cluster.nodes.len() {
        for b in (a + 1)..cluster.nodes.len() {
            let (code, text) = cluster.compare(a, b)?;
            if code != 0 && code != 3 {
                bail!(
                    "compare {} {}: exit {code}: {text}",
                    cluster.nodes[a].name,
                    cluster.nodes[b].name
                );
            }
        }
    }
    Ok(())
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        for mount in &self.mounts {
            let _ = Command::new("umount").arg("--lazy").arg(mount).status();
        }
    }
}

fn node_name(existing: &[ClusterNode], participant: &str) -> String {
    let n = existing.iter().filter(|x| x.participant == participant).count();
    if n == 0 {
        format!("{participant}-node")
    } else {
        format!("{participant}-node-{}", n + 1)
    }
}

/// Submits events to the node at `url` with `?wait=commit` (for threads that do not hold the
/// cluster); the JSON answer.
pub fn submit_wait_url(url: &str, events: &[SignedEvent]) -> Result<Value> {
    let body = format!(
        "[{}]",
        events.iter().map(SignedEvent::to_envelope_json).collect::<Vec<_>>().join(",")
    );
    let url = format!("{url}/v1/events?wait=commit&timeout_ms={}", COMMIT_TIMEOUT.as_millis());
    // A node catching up after a restart answers 503 NOT_SYNCED until it is near its peers'
    // tip: a client waits and sends again, within the commit timeout.
    let deadline = Instant::now() + COMMIT_TIMEOUT;
    let (status, text) = loop {
        let answer = ureq::post(&url)
            .config()
            .timeout_global(Some(COMMIT_TIMEOUT + Duration::from_secs(10)))
            .http_status_as_error(false)
            .build()
            .header("content-type", "application/json")
            .send(body.as_str())?;
        let status = answer.status().as_u16();
        let text = answer.into_body().read_to_string()?;
        if status == 503 && text.contains("NOT_SYNCED") && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        }
        break (status, text);
    };
    // 409, 422 and 429 answer a request that admitted nothing; they carry its results too.
    if !matches!(status, 200 | 409 | 422 | 429) {
        bail!("POST {url} answered {status}: {text}");
    }
    Ok(serde_json::from_str(&text)?)
}

/// Wall-clock Unix milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The ids in a submit answer that are reported committed, with their heights.
pub fn committed_ids(answer: &Value) -> Vec<(Hash, u64)> {
    answer["results"]
        .as_array()
        .map(|rs| {
            rs.iter()
                .filter(|r| r["status"] == "committed")
                .filter_map(|r| {
                    Some((Hash::from_hex(r["id"].as_str()?).ok()?, r["height"].as_u64()?))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Ports of one test process: a block of `PROCESS_PORTS` below the kernel's ephemeral range
/// chosen by the process id, a slot of `CLUSTER_PORTS` in it per cluster. Clusters of one test
/// binary run side by side: free ports picked by each one's `devnet init` could meet between
/// the pick and the nodes' start (and an outgoing connection can take an ephemeral one).
const PROCESS_PORTS: u32 = 320;
const CLUSTER_PORTS: u32 = 32;

fn cluster_base_port(nodes: usize) -> Result<u16> {
    static NEXT_SLOT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    if 2 * nodes > CLUSTER_PORTS as usize {
        bail!("a test cluster has at most {} nodes", CLUSTER_PORTS / 2);
    }
    let slot = NEXT_SLOT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        % (PROCESS_PORTS / CLUSTER_PORTS);
    let block = std::process::id() % 37;
    Ok(u16::try_from(20_000 + block * PROCESS_PORTS + slot * CLUSTER_PORTS)?)
}
