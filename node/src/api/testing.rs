//! A stand-in for the node runtime, for tests of the API and of its clients (the CLI).
//!
//! It answers [`ApiCommand`]s from a script and serves them through the real [`super::serve`],
//! so a test exercises the real HTTP layer. It is no node: it checks nothing and commits
//! nothing to any ledger. The end-to-end test comes with the node runtime.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::thread::JoinHandle;

use tokio::sync::{broadcast, mpsc, oneshot};
use tradeloop_crypto::Hash;
use tradeloop_ledger::query::LedgerView;
use tradeloop_ledger::sample::Cast;
use tradeloop_ledger::{Ledger, SignedEvent};

use super::{ApiCommand, ApiLimits, EventResult, NodeStatus};
use crate::chain::notice::{CommitNotice, Committed};

/// Capacity of the fake's commit broadcast.
pub const FAKE_COMMIT_BROADCAST: usize = 64;

/// Decides the verdict on one event.
pub type Script = Box<dyn FnMut(&SignedEvent) -> EventResult + Send>;

/// How the fake runtime answers.
pub struct FakeRuntime {
    /// The verdict on each submitted event.
    pub verdict: Script,
    /// Whether accepted events are committed right after the submit is answered (one block per
    /// submit, one notice).
    pub commit_accepted: bool,
    /// The answer to `Status` (its height follows the fake's commits).
    pub status: NodeStatus,
}

impl std::fmt::Debug for FakeRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeRuntime")
            .field("commit_accepted", &self.commit_accepted)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

impl FakeRuntime {
    /// Accepts every event; commits them when `commit_accepted`.
    pub fn accept_all(commit_accepted: bool) -> FakeRuntime {
        FakeRuntime {
            verdict: Box::new(|e| EventResult::Accepted { id: e.id() }),
            commit_accepted,
            status: sample_status(),
        }
    }
}

/// A status with recognisable values.
pub fn sample_status() -> NodeStatus {
    NodeStatus {
        chain_id: "tradeloop-test".into(),
        genesis_hash: Hash::sha256(b"genesis"),
        height: 0,
        tip_hash: Hash::ZERO,
        validator: true,
        node_key: "00".repeat(32),
        connected_peers: vec!["12D3KooWPeerOne".into()],
        mempool_events: 0,
        mempool_bytes: 0,
        syncing: false,
        refused_connections: 0,
        rejected_gossip: 0,
    }
}

/// The block hash the fake gives height `height`.
pub fn fake_block_hash(height: u64) -> Hash {
    Hash::sha256(&height.to_be_bytes())
}

/// Answers commands until the channel closes.
pub async fn run_fake_runtime(
    mut runtime: FakeRuntime,
    mut commands: mpsc::Receiver<ApiCommand>,
    commits: broadcast::Sender<CommitNotice>,
) {
    let mut committed: HashMap<Hash, Committed> = HashMap::new();
    while let Some(command) = commands.recv().await {
        match command {
            ApiCommand::Submit { events, reply } => {
                let verdicts: Vec<EventResult> = events.iter().map(&mut runtime.verdict).collect();
                let accepted: Vec<Hash> = verdicts
                    .iter()
                    .filter_map(|v| match v {
                        EventResult::Accepted { id } => Some(*id),
                        _ => None,
                    })
                    .collect();
                let _ = reply.send(verdicts);
                if runtime.commit_accepted && !accepted.is_empty() {
                    runtime.status.height += 1;
                    let height = runtime.status.height;
                    let block_hash = fake_block_hash(height);
                    runtime.status.tip_hash = block_hash;
                    for (index, id) in accepted.iter().enumerate() {
                        let index = u32::try_from(index).unwrap_or(u32::MAX);
                        committed.insert(*id, Committed { height, block_hash, index });
                    }
                    // No subscriber is not an error: nobody is waiting.
                    let _ = commits.send(CommitNotice {
                        height,
                        block_hash,
                        event_ids: accepted,
                        evicted: vec![],
                    });
                }
            }
            ApiCommand::Lookup { ids, reply } => {
                let _ = reply.send(ids.iter().map(|id| committed.get(id).copied()).collect());
            }
            ApiCommand::Status { reply } => {
                let _ = reply.send(runtime.status.clone());
            }
        }
    }
}

/// The real API served on 127.0.0.1 (an OS-chosen port) by a thread of its own, over a
/// [`FakeRuntime`]. Dropping it stops the server and joins the thread.
#[derive(Debug)]
pub struct FakeNode {
    /// The address it listens on.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    /// The ledger's directory, when the fake made its own.
    dir: Option<tempfile::TempDir>,
}

impl FakeNode {
    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for FakeNode {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// An empty one-validator ledger in a temporary directory (the deterministic sample cast's
/// genesis), for an API whose read endpoints need a ledger to read.
pub fn empty_ledger() -> std::io::Result<(tempfile::TempDir, Ledger)> {
    let cast = Cast::deterministic(1, SAMPLE_GENESIS_MS).map_err(std::io::Error::other)?;
    let dir = tempfile::tempdir()?;
    let ledger =
        Ledger::open(&dir.path().join("data"), cast.genesis).map_err(std::io::Error::other)?;
    Ok((dir, ledger))
}

/// Genesis time of [`empty_ledger`]'s chain.
pub const SAMPLE_GENESIS_MS: u64 = 1_700_000_000_000;

/// Starts a [`FakeNode`] whose read endpoints answer from an empty ledger.
pub fn spawn_fake_node(runtime: FakeRuntime, limits: ApiLimits) -> std::io::Result<FakeNode> {
    let (dir, ledger) = empty_ledger()?;
    let mut node = spawn_fake_node_with_view(runtime, limits, ledger.view())?;
    node.dir = Some(dir);
    Ok(node)
}

/// Starts a [`FakeNode`] whose read endpoints answer from `view`.
pub fn spawn_fake_node_with_view(
    runtime: FakeRuntime,
    limits: ApiLimits,
    view: LedgerView,
) -> std::io::Result<FakeNode> {
    spawn_fake_node_with_shared(runtime, limits, view, super::ApiShared::open())
}

/// Starts a [`FakeNode`] with the bearer tokens and metrics of `shared`; its read endpoints
/// answer from `view`.
pub fn spawn_fake_node_with_shared(
    runtime: FakeRuntime,
    limits: ApiLimits,
    view: LedgerView,
    shared: super::ApiShared,
) -> std::io::Result<FakeNode> {
    limits.check()?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let tokio_runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        tokio_runtime.block_on(async move {
            let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { return };
            let (commands, receiver) = mpsc::channel(limits.command_channel);
            let (commits, _) = broadcast::channel(FAKE_COMMIT_BROADCAST);
            let fake = tokio::spawn(run_fake_runtime(runtime, receiver, commits.clone()));
            let shutdown = async move {
                let _ = stopped.await;
            };
            let _ = super::serve(listener, commands, commits, view, limits, shared, shutdown).await;
            fake.abort();
        });
    });
    Ok(FakeNode { addr, stop: Some(stop), thread: Some(thread), dir: None })
}
