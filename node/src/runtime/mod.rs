//! The node runtime: opens what a member node owns and wires the tasks that move messages
//! between them (docs/architecture.md, "The node runtime").
//!
//! ```text
//!   HTTP POST /v1/events ──ApiCommand──> api task ──admit──> chain worker (thread: Ledger + Mempool)
//!        accepted events ──> gossip batcher ──publish(events)──> p2p event loop (owns the Swarm)
//!   p2p events ──> network task: events → admit; consensus → check → driver; requests → chain
//!   consensus driver (validators): ConsensusCore + timers ──build/validate/commit──> chain worker
//!   sync task: status polls and hints ──request blocks──> p2p ──commit──> chain worker
//!   chain worker ──CommitNotice──> broadcast (wait=commit answers)
//! ```
//!
//! Every channel has a named bound. Shutdown (SIGINT/SIGTERM, or the caller's future): the API
//! stops taking requests, the driver stops at a safe point (everything it signed is already in
//! its WAL and sign-state), the network closes, and the chain worker finishes its command and
//! closes the ledger.

pub mod driver;
pub mod fetch;

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use libp2p::Multiaddr;
use malachite_core_consensus::SignedConsensusMsg;
use tokio::sync::{broadcast, mpsc, watch};
use tradeloop_crypto::{PublicKey, SigningKey};
use tradeloop_ledger::model::genesis::ConsensusParams;
use tradeloop_ledger::{Genesis, Ledger, LedgerError, SignedEvent};

use crate::api::{ApiCommand, EventResult, NodeStatus};
use crate::chain::{self, Admitted, ChainHandle, CommitNotice, MempoolStats};
use crate::config::NodeConfig;
use crate::consensus::context::{TradeContext, Validators};
use crate::consensus::core::ConsensusCore;
use crate::consensus::guard::SignGuard;
use crate::consensus::inbound::{check_consensus, consensus_height, InboundError};
use crate::consensus::streamed::StreamedBlocks;
use crate::mempool::Admission;
use crate::mempool::MempoolLimits;
use crate::metrics::Metrics;
use crate::net::message::{self, ConsensusWire, EventBatch};
use crate::net::p2p::{self, GossipVerdict, P2pConfig, P2pEvent, P2pHandle, P2pLimits, Topic};
use crate::net::serve::answer;
use crate::net::sync::decisions::DecisionWatch;
use crate::net::sync::{self, SyncContext, SyncHint};
use crate::time::now_ms;
use driver::{DriverConfig, DriverInput, Outbound};

/// Bound on commit notices buffered for slow listeners (they then look up instead).
pub const COMMIT_NOTICE_CHANNEL: usize = 1024;
/// Bound on API commands waiting for the runtime.
pub const API_COMMAND_CHANNEL: usize = 256;
/// Bound on accepted events waiting to be gossiped.
pub const GOSSIP_QUEUE: usize = 65_536;
/// How long the gossip batcher waits for more events before publishing a batch.
pub const GOSSIP_LINGER: Duration = Duration::from_millis(10);
/// Bytes of events in one gossip batch at most (below the gossip message bound).
pub const MAX_BATCH_BYTES: usize = 2 * 1024 * 1024;
/// How long a validator that has never signed waits for its peers' tips before it starts
/// consensus anyway (the first node of a new network has no peer to ask).
pub const INITIAL_SYNC_WAIT: Duration = Duration::from_secs(10);

/// How long `Retry-After` tells a client to wait when the mempool is full.
pub const FULL_RETRY_AFTER_MS: u64 = 1000;

/// Why the node could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The configuration.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The genesis, the data dir or the ledger.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The node key file.
    #[error(transparent)]
    Key(#[from] tradeloop_crypto::CryptoError),
    /// The node key is not a member node of this chain.
    #[error("this node's key {key} is not a member node in the genesis {genesis}; list it under `validators` or `member_nodes`, or point `node_key` at this node's own key file")]
    NotAMember {
        /// The key.
        key: Box<PublicKey>,
        /// The genesis file.
        genesis: String,
    },
    /// The sign-state guard.
    #[error(transparent)]
    Guard(#[from] crate::consensus::guard::GuardError),
    /// The consensus core or its WAL.
    #[error(transparent)]
    Core(#[from] crate::consensus::core::CoreError),
    /// The network layer.
    #[error(transparent)]
    P2p(#[from] p2p::P2pError),
    /// A listen address or thread could not be set up.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The consensus driver stopped with an error.
    #[error(transparent)]
    Driver(#[from] crate::runtime::driver::DriverError),
    /// A write to the data dir failed (a full disk, an I/O error): the node stopped before
    /// anything could be half done. [`crate::outage`] waits for the disk, then it starts again.
    #[error("the node's storage failed: {0}")]
    Storage(String),
}

impl NodeError {
    /// Whether the node stopped because its data dir could not be written (a full disk, an I/O
    /// error): starting again once it can be written is safe, since every durable step is
    /// all-or-nothing (block log frames, the index batch, the WAL, the sign-state).
    pub fn is_storage(&self) -> bool {
        use crate::consensus::core::CoreError;
        use crate::runtime::driver::DriverError;
        match self {
            NodeError::Storage(_) => true,
            NodeError::Ledger(e) => chain::is_storage_failure(e),
            NodeError::Guard(e) | NodeError::Driver(DriverError::Core(CoreError::Guard(e))) => {
                e.is_io()
            }
            NodeError::Core(CoreError::Wal(_))
            | NodeError::Driver(DriverError::Core(CoreError::Wal(_))) => true,
            _ => false,
        }
    }

    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            NodeError::Config(e) => e.code(),
            NodeError::Ledger(e) => e.code(),
            NodeError::Key(e) => e.code(),
            NodeError::NotAMember { .. } => "NOT_A_MEMBER",
            NodeError::Guard(e) => e.code(),
            NodeError::Core(e) => e.code(),
            NodeError::P2p(e) => e.code(),
            NodeError::Io { .. } => "NODE_IO",
            NodeError::Driver(e) => e.code(),
            NodeError::Storage(_) => "STORAGE_FAILED",
        }
    }
}

/// Where a started node can be reached (for `devnet`, tests and logs).
#[derive(Clone, Debug)]
pub struct Started {
    /// The node key.
    pub node_key: PublicKey,
    /// Whether it votes.
    pub validator: bool,
    /// Its libp2p listen addresses (with the ports actually bound).
    pub p2p: Vec<Multiaddr>,
    /// Its HTTP API address.
    pub api: std::net::SocketAddr,
}

/// The node's genesis and key, and whether the key is a validator's; refused when the key is
/// not a member node of the genesis.
fn member_identity(config: &NodeConfig) -> Result<(Genesis, SigningKey, bool), NodeError> {
    let genesis = Genesis::load(&config.genesis)?;
    let key = tradeloop_crypto::keyfile::read_key_file(&config.node_key)?;
    let me = genesis.member_node(&key.public_key()).ok_or_else(|| NodeError::NotAMember {
        key: Box::new(key.public_key()),
        genesis: config.genesis.display().to_string(),
    })?;
    let validator = me.power > 0;
    Ok((genesis, key, validator))
}

/// Runs a member node until `stop` completes. `on_started` is called once everything listens.
pub async fn run(
    config: NodeConfig,
    stop: impl Future<Output = ()> + Send + 'static,
    on_started: impl FnOnce(&Started) + Send,
) -> Result<(), NodeError> {
    let (genesis, key, validator) = member_identity(&config)?;
    let (guard, ledger, ctx) = open_data_dir(&config, &genesis, &key, validator)?;
    let tip = ledger.tip().clone();
    let view = ledger.view();
    tracing::info!(chain = %genesis.doc.chain_id, genesis = %genesis.hash, height = tip.height, validator, node = %key.public_key(), "opening member node");

    let (stop_tx, stop_rx) = watch::channel(false);
    let (commits_tx, _) = broadcast::channel::<CommitNotice>(COMMIT_NOTICE_CHANNEL);
    let (mempool_tx, mempool_rx) = watch::channel(MempoolStats::default());
    let metrics = std::sync::Arc::new(Metrics::new());
    metrics.height.set(crate::metrics::gauge_value(tip.height));
    let (storage_tx, storage_rx) = watch::channel::<Option<String>>(None);
    let reports = chain::WorkerReports {
        commits: commits_tx.clone(),
        stats: mempool_tx,
        metrics: metrics.clone(),
        storage: storage_tx,
    };
    let (chain, chain_thread) = start_chain_worker(&config, ledger, &key, reports)?;
    let (p2p, p2p_events, p2p_task) = start_p2p(&config, &genesis, &key)?;

    let (sync_tx, sync_rx) = mpsc::channel(sync::SYNC_HINT_CHANNEL);
    let (syncing_tx, syncing_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    // The blocks this validator streams, for peers to fetch missing events from.
    let streamed = StreamedBlocks::new();
    let links = ValidatorLinks {
        chain: chain.clone(),
        p2p: p2p.clone(),
        mempool: mempool_rx.clone(),
        stop: stop_rx.clone(),
        streamed: streamed.clone(),
        metrics: metrics.clone(),
    };
    let validating =
        guard.map(|guard| start_validator(&config, &genesis, &key, &ctx, guard, links));
    let (driver_task, driver_tx) = match validating {
        Some((task, driver_tx, out_rx)) => {
            tasks.spawn(outbound(out_rx, p2p.clone(), sync_tx.clone(), driver_tx.clone()));
            (Some(task), Some(driver_tx))
        }
        None => (None, None),
    };

    let (gossip_tx, gossip_rx) = mpsc::channel::<SignedEvent>(GOSSIP_QUEUE);
    tasks.spawn(gossip_batcher(gossip_rx, p2p.clone()));
    tasks.spawn(network(
        NetworkCtx {
            genesis: genesis.clone(),
            ctx: ctx.clone(),
            validators: Validators::from_ledger(&genesis.validators),
            p2p: p2p.clone(),
            chain: chain.clone(),
            driver: driver_tx.clone(),
            sync: sync_tx.clone(),
            streamed,
        },
        p2p_events,
    ));
    tasks.spawn(sync::run(
        SyncContext {
            p2p: p2p.clone(),
            chain: chain.clone(),
            chain_id: genesis.hash,
            driver: driver_tx,
            syncing: syncing_tx,
            metrics: metrics.clone(),
        },
        sync_rx,
        stop_rx.clone(),
    ));

    let shared = crate::api::ApiShared { access: config.api.access(), metrics: metrics.clone() };
    let (api_addr, api_task, api_rx) =
        start_api(&config, commits_tx.clone(), view, shared, stop_rx.clone()).await?;
    tasks.spawn(api_commands(
        ApiCtx {
            genesis: genesis.clone(),
            node_key: key.public_key(),
            validator,
            chain: chain.clone(),
            p2p: p2p.clone(),
            gossip: gossip_tx,
            mempool: mempool_rx,
            syncing: syncing_rx,
            metrics,
        },
        api_rx,
    ));

    let p2p_addrs = p2p.listen_addrs().await.unwrap_or_default();
    let started = Started { node_key: key.public_key(), validator, p2p: p2p_addrs, api: api_addr };
    tracing::info!(api = %started.api, p2p = ?started.p2p, "node started");
    on_started(&started);

    let running = Running {
        stop_tx,
        storage_rx,
        driver_task,
        api_task,
        p2p,
        p2p_task,
        tasks,
        chain,
        chain_thread,
    };
    running.until_stopped(stop).await
}

/// A started node's parts, to be stopped in order.
struct Running {
    stop_tx: watch::Sender<bool>,
    storage_rx: watch::Receiver<Option<String>>,
    driver_task: Option<tokio::task::JoinHandle<Result<(), driver::DriverError>>>,
    api_task: tokio::task::JoinHandle<std::io::Result<()>>,
    p2p: P2pHandle,
    p2p_task: tokio::task::JoinHandle<()>,
    tasks: tokio::task::JoinSet<()>,
    chain: ChainHandle,
    chain_thread: std::thread::JoinHandle<()>,
}

impl Running {
    /// Runs until told to stop, until the driver fails, or until a write to the data dir fails;
    /// then stops everything: the API first (no new requests), the driver (the block in flight
    /// is abandoned safely: its votes are in the WAL), p2p, the tasks, the chain worker last.
    async fn until_stopped(mut self, stop: impl Future<Output = ()>) -> Result<(), NodeError> {
        let mut driver_result = Ok(());
        let driver_task = &mut self.driver_task;
        tokio::select! {
            () = stop => {}
            result = async { match driver_task { Some(t) => t.await, None => std::future::pending().await } } => {
                driver_result = result.unwrap_or(Ok(()));
                self.driver_task = None;
            }
            _ = self.storage_rx.wait_for(Option::is_some) => {}
        }
        let storage_failure = self.storage_rx.borrow().clone();
        if let Some(reason) = &storage_failure {
            tracing::error!(
                "a write to the data dir failed: {reason}; stopping before anything is half done"
            );
        }
        tracing::info!("stopping: no new requests; the block in flight is abandoned safely (its votes are in the WAL)");
        let _ = self.stop_tx.send(true);
        let _ = self.api_task.await;
        if let Some(t) = self.driver_task {
            if let Ok(Err(e)) = t.await {
                driver_result = Err(e);
            }
        }
        self.p2p.shutdown().await;
        let _ = self.p2p_task.await;
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        drop(self.chain);
        // The chain thread ends once its last handle is gone, after finishing its command.
        let chain_thread = self.chain_thread;
        let _ = tokio::task::spawn_blocking(move || chain_thread.join()).await;
        tracing::info!("stopped");
        match storage_failure {
            Some(reason) => Err(NodeError::Storage(reason)),
            None => driver_result.map_err(NodeError::from),
        }
    }
}

/// Opens the data dir: the sign-state first (a validator signs at height h only after
/// committing h - 1, so it bounds what the block log must hold), then the ledger, which
/// shares one memory of verified consensus signatures with gossip validation and the consensus
/// core (the context returned).
fn open_data_dir(
    config: &NodeConfig,
    genesis: &Genesis,
    key: &tradeloop_crypto::SigningKey,
    validator: bool,
) -> Result<(Option<SignGuard>, Ledger, TradeContext), NodeError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|source| NodeError::Io {
        what: format!("cannot create data dir {}", config.data_dir.display()),
        source,
    })?;
    let guard = if validator {
        Some(SignGuard::open(&sign_state_path(config), genesis.hash, key.public_key())?)
    } else {
        None
    };
    let known_committed =
        guard.as_ref().and_then(|g| g.last()).map_or(0, |r| r.position.height.saturating_sub(1));
    let mut ledger =
        Ledger::open_known_committed(&config.data_dir, genesis.clone(), known_committed)?;
    let ctx = TradeContext::new(genesis.hash);
    ledger.remember_signatures(ctx.verified.clone());
    if let Some(torn) = &ledger.torn_tail {
        tracing::warn!(
            segment = torn.segment,
            offset = torn.offset,
            bytes = torn.bytes,
            height = torn.height,
            "cut an unfinished block write at the end of the log (a crash during an append)"
        );
    }
    Ok((guard, ledger, ctx))
}

/// Starts the chain worker thread over the opened ledger, with its signature-check threads.
fn start_chain_worker(
    config: &NodeConfig,
    ledger: Ledger,
    key: &tradeloop_crypto::SigningKey,
    reports: chain::WorkerReports,
) -> Result<(ChainHandle, std::thread::JoinHandle<()>), NodeError> {
    let limits = MempoolLimits {
        max_events: config.mempool.max_events,
        max_bytes: config.mempool.max_bytes,
    };
    let verifier = chain::Verifier::new(config.runtime.verify_threads).map_err(|source| {
        NodeError::Io { what: "cannot start the signature-check threads".into(), source }
    })?;
    chain::spawn(ledger, limits, verifier, key.clone(), reports).map_err(|source| NodeError::Io {
        what: "cannot start the chain worker thread".into(),
        source,
    })
}

/// Starts the libp2p swarm with the genesis's member nodes as the only peers it admits.
fn start_p2p(
    config: &NodeConfig,
    genesis: &Genesis,
    key: &tradeloop_crypto::SigningKey,
) -> Result<(P2pHandle, mpsc::Receiver<P2pEvent>, tokio::task::JoinHandle<()>), NodeError> {
    Ok(p2p::spawn(P2pConfig {
        node_secret: key.secret_bytes(),
        listen: parse_addrs(&config.p2p.listen)?,
        bootstrap: parse_addrs(&config.p2p.bootstrap)?,
        members: genesis.member_nodes().iter().map(|m| m.node_key).collect(),
        chain: genesis.hash,
        limits: P2pLimits {
            max_established_connections: config.p2p.max_connections,
            ..P2pLimits::default()
        },
    })?)
}

/// What a validator's consensus driver talks to.
struct ValidatorLinks {
    chain: ChainHandle,
    p2p: P2pHandle,
    mempool: watch::Receiver<MempoolStats>,
    stop: watch::Receiver<bool>,
    streamed: StreamedBlocks,
    metrics: std::sync::Arc<Metrics>,
}

/// The driver's task, its input and what it sends out.
type Validating = (
    tokio::task::JoinHandle<Result<(), driver::DriverError>>,
    mpsc::Sender<DriverInput>,
    mpsc::Receiver<Outbound>,
);

/// Starts the consensus driver of a validator. A validator that has never signed (a new
/// network, or a lost sign-state) first catches up with its peers, so that it never votes at a
/// height it may have signed before; then it opens its WAL and replays it.
fn start_validator(
    config: &NodeConfig,
    genesis: &Genesis,
    key: &tradeloop_crypto::SigningKey,
    ctx: &TradeContext,
    guard: SignGuard,
    links: ValidatorLinks,
) -> Validating {
    let (driver_tx, driver_rx) = mpsc::channel(driver::DRIVER_INPUT_CHANNEL);
    let (out_tx, out_rx) = mpsc::channel(driver::OUTBOUND_CHANNEL);
    let params = consensus_params(&genesis.doc.consensus, config);
    let dc = DriverConfig {
        key: key.clone(),
        ctx: ctx.clone(),
        empty_block_wait: Duration::from_millis(config.empty_block_wait_ms()),
        block_linger: Duration::from_millis(config.block_linger_ms()),
        full_block_events: genesis.doc.consensus.max_block_events as usize,
        metrics: links.metrics,
        planted: chain::PlantedFaults::default(),
    };
    let (genesis, key, wal_dir) = (genesis.clone(), key.clone(), config.data_dir.join("wal"));
    let core_ctx = ctx.clone();
    let ValidatorLinks { chain, p2p, mempool, stop, streamed, .. } = links;
    let task = tokio::spawn(async move {
        if waits_for_peers(&genesis, &key.public_key(), guard.last().is_some()) {
            wait_for_network_tip(&p2p, &chain, genesis.hash, INITIAL_SYNC_WAIT).await;
        }
        let tip = chain.tip().await.map_err(|_| driver::DriverError::ChainStopped)?;
        let height = tip.height + 1;
        let core = ConsensusCore::new(
            core_ctx,
            key,
            guard,
            Validators::from_ledger(&genesis.validators),
            &params,
            height,
        );
        let (core, records) = core.with_wal(&wal_dir)?;
        let clock = crate::time::Clock::System;
        let links = driver::DriverLinks { chain, mempool, out: out_tx, streamed, clock };
        let d = driver::Driver::new(dc, core, height, links);
        driver::run(d, records, driver_rx, stop).await
    });
    (task, driver_tx, out_rx)
}

/// Listens on `api.listen` and serves the HTTP API until `stop` turns true: its address, its
/// task, and the commands its handlers send to the node.
async fn start_api(
    config: &NodeConfig,
    commits: broadcast::Sender<CommitNotice>,
    view: tradeloop_ledger::query::LedgerView,
    shared: crate::api::ApiShared,
    mut stop: watch::Receiver<bool>,
) -> Result<
    (
        std::net::SocketAddr,
        tokio::task::JoinHandle<std::io::Result<()>>,
        mpsc::Receiver<ApiCommand>,
    ),
    NodeError,
> {
    let listener =
        tokio::net::TcpListener::bind(config.api.listen).await.map_err(|source| NodeError::Io {
            what: format!(
                "cannot listen on api.listen {} (is another node using it?)",
                config.api.listen
            ),
            source,
        })?;
    let api_addr = listener
        .local_addr()
        .map_err(|source| NodeError::Io { what: "api address".into(), source })?;
    let (api_tx, api_rx) = mpsc::channel(API_COMMAND_CHANNEL);
    let task = tokio::spawn(crate::api::serve(
        listener,
        api_tx,
        commits,
        view,
        config.api.limits(),
        shared,
        async move {
            let _ = stop.wait_for(|s| *s).await;
        },
    ));
    Ok((api_addr, task, api_rx))
}

/// Whether a validator first waits for its peers' tip ([`wait_for_network_tip`]) before it
/// joins consensus: when it has never signed, unless the genesis names no other member node
/// (a network of this node alone has no one to ask, and would only start 10 s late).
fn waits_for_peers(genesis: &Genesis, node: &PublicKey, has_signed: bool) -> bool {
    !has_signed && genesis.member_nodes().iter().any(|m| m.node_key != *node)
}

/// Waits until at least one peer answered its tip and this node's tip is at the highest seen,
/// or `wait` has passed. The sync task does the fetching meanwhile.
async fn wait_for_network_tip(
    p2p: &P2pHandle,
    chain: &ChainHandle,
    chain_id: tradeloop_crypto::Hash,
    wait: Duration,
) {
    let deadline = tokio::time::Instant::now() + wait;
    while tokio::time::Instant::now() < deadline {
        let mut answered = 0;
        let mut best = 0;
        for peer in p2p.peers().await.unwrap_or_default() {
            if let Some(h) = sync::peer_height(p2p, chain_id, peer).await {
                answered += 1;
                best = best.max(h);
            }
        }
        let Ok(tip) = chain.tip().await else { return };
        if answered > 0 && tip.height >= best {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tracing::info!(
        "no peer answered within {}s; starting consensus from the local tip",
        wait.as_secs()
    );
}

fn sign_state_path(config: &NodeConfig) -> PathBuf {
    config.data_dir.join("sign-state.bin")
}

fn parse_addrs(addrs: &[String]) -> Result<Vec<Multiaddr>, NodeError> {
    addrs
        .iter()
        .map(|a| {
            a.parse::<Multiaddr>().map_err(|e| {
                NodeError::Config(crate::config::ConfigError::Invalid {
                    path: "node.toml".into(),
                    key: "p2p".into(),
                    detail: format!("{a:?} is not a multiaddr: {e}"),
                })
            })
        })
        .collect()
}

fn consensus_params(genesis: &ConsensusParams, config: &NodeConfig) -> ConsensusParams {
    let c = &config.consensus;
    ConsensusParams {
        timeout_propose_ms: c.timeout_propose_ms.unwrap_or(genesis.timeout_propose_ms),
        timeout_prevote_ms: c.timeout_prevote_ms.unwrap_or(genesis.timeout_prevote_ms),
        timeout_precommit_ms: c.timeout_precommit_ms.unwrap_or(genesis.timeout_precommit_ms),
        ..genesis.clone()
    }
}

/// Publishes what the driver sends; turns "a peer is ahead" into a sync hint; runs the
/// fetches it asks for.
async fn outbound(
    mut rx: mpsc::Receiver<Outbound>,
    p2p: P2pHandle,
    sync: mpsc::Sender<SyncHint>,
    driver: mpsc::Sender<DriverInput>,
) {
    let mut fetches = crate::runtime::fetch::Fetches::default();
    // Starts at the clock so that a restarted node's counter does not repeat its earlier ones.
    let mut counter = now_ms().saturating_mul(1000);
    while let Some(msg) = rx.recv().await {
        match msg {
            Outbound::Consensus(bytes) => {
                counter += 1;
                if let Err(e) =
                    p2p.publish(Topic::Consensus, message::gossip_frame(counter, &bytes)).await
                {
                    tracing::debug!(code = e.code(), "consensus message not published: {e}");
                }
            }
            Outbound::Behind { height } => {
                let _ =
                    sync.try_send(SyncHint::Ahead { peer: None, height: height.saturating_sub(1) });
            }
            Outbound::Fetch { assembled, missing } => {
                fetches.start(&p2p, *assembled, missing, driver.clone());
            }
        }
    }
}

/// Gossips accepted events in batches: up to [`message::MAX_BATCH_EVENTS`] events or
/// [`MAX_BATCH_BYTES`], waiting at most [`GOSSIP_LINGER`] for more.
async fn gossip_batcher(mut rx: mpsc::Receiver<SignedEvent>, p2p: P2pHandle) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        let mut bytes = batch[0].body.len() + 72;
        let deadline = tokio::time::Instant::now() + GOSSIP_LINGER;
        while batch.len() < message::MAX_BATCH_EVENTS && bytes < MAX_BATCH_BYTES {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(e)) => {
                    bytes += e.body.len() + 72;
                    batch.push(e);
                }
                Ok(None) | Err(_) => break,
            }
        }
        match (EventBatch { events: batch }).encode() {
            Ok(data) => {
                if let Err(e) = p2p.publish(Topic::Events, data).await {
                    tracing::debug!(code = e.code(), "event batch not published: {e}");
                }
            }
            Err(e) => tracing::error!("cannot encode an event batch: {e}"),
        }
    }
}

struct NetworkCtx {
    genesis: Genesis,
    ctx: TradeContext,
    validators: Validators,
    p2p: P2pHandle,
    chain: ChainHandle,
    driver: Option<mpsc::Sender<DriverInput>>,
    sync: mpsc::Sender<SyncHint>,
    streamed: StreamedBlocks,
}

/// Handles what the network delivers: gossip is checked before it is forwarded (a verdict for
/// each message), requests are answered from the chain.
async fn network(n: NetworkCtx, mut events: mpsc::Receiver<P2pEvent>) {
    // A member node that does not vote watches the precommits to learn of each decision.
    let mut decisions = n.driver.is_none().then(|| DecisionWatch::new(n.validators.clone(), 0));
    while let Some(event) = events.recv().await {
        match event {
            P2pEvent::Gossip { topic: Topic::Events, from, id, data } => {
                let verdict = match EventBatch::decode(&data) {
                    Err(e) => {
                        tracing::debug!(%from, "malformed event batch: {e}");
                        GossipVerdict::Reject
                    }
                    Ok(batch) => match n.chain.relay(batch.events, now_ms()).await {
                        Err(_) => GossipVerdict::Ignore,
                        Ok(results) => batch_verdict(&results),
                    },
                };
                n.p2p.report(id, verdict);
            }
            P2pEvent::Gossip { topic: Topic::Consensus, from, id, data } => {
                let checked = message::gossip_unframe(&data)
                    .and_then(message::decode_consensus)
                    .map_err(InboundError::from)
                    .and_then(|m| check_consensus(&n.ctx, &n.validators, m));
                match checked {
                    Err(detail) => {
                        tracing::debug!(%from, "consensus message refused: {detail}");
                        n.p2p.report(id, GossipVerdict::Reject);
                    }
                    Ok(msg) => {
                        n.p2p.report(id, GossipVerdict::Accept);
                        match &n.driver {
                            // A full driver queue drops the message; rebroadcasts make up for it.
                            Some(driver) => {
                                let _ = driver.try_send(DriverInput::Consensus(Box::new(msg)));
                            }
                            None => follow(&n, decisions.as_mut(), from, &msg),
                        }
                    }
                }
            }
            P2pEvent::Request { from, data, reply } => {
                let chain = n.chain.clone();
                let streamed = n.streamed.clone();
                let genesis_hash = n.genesis.hash;
                tokio::spawn(async move {
                    let response = answer(&chain, &streamed, genesis_hash, &data).await;
                    match response.encode() {
                        Ok(bytes) => {
                            if let Err(e) = reply.send(bytes) {
                                tracing::debug!(%from, "response not sent: {e}");
                            }
                        }
                        Err(e) => tracing::error!("cannot encode a response: {e}"),
                    }
                });
            }
            P2pEvent::Connected(peer) => {
                tracing::info!(%peer, "peer connected");
                let _ = n.sync.try_send(SyncHint::Connected(peer));
            }
            P2pEvent::Disconnected(peer) => tracing::info!(%peer, "peer disconnected"),
        }
    }
}

/// A member node that does not vote follows the chain by sync: a message of height h says its
/// signer committed h - 1, and a quorum of precommits says the validators are committing h now.
fn follow(
    n: &NetworkCtx,
    decisions: Option<&mut DecisionWatch>,
    from: PublicKey,
    msg: &ConsensusWire,
) {
    let Some(h) = consensus_height(msg) else { return };
    let decided = decisions.and_then(|watch| {
        watch.committed(h.saturating_sub(1));
        match msg {
            ConsensusWire::Signed(SignedConsensusMsg::Vote(v)) => watch.on_vote(&v.message),
            _ => None,
        }
    });
    let hint = match decided {
        Some(height) => SyncHint::Decided { peer: from, height, attempt: 0 },
        None => SyncHint::Ahead { peer: Some(from), height: h.saturating_sub(1) },
    };
    let _ = n.sync.try_send(hint);
}

fn batch_verdict(results: &[Admitted]) -> GossipVerdict {
    // A bad signature or envelope is the sender's fault; a rule refusal may be ordering (an
    // event that depends on one this node has not seen yet) and is not penalised.
    let forged = results.iter().any(|r| {
        matches!(&r.admission, Admission::Rejected(rej) if matches!(rej.code,
            tradeloop_ledger::RejectCode::BadSignature
            | tradeloop_ledger::RejectCode::MalformedEvent
            | tradeloop_ledger::RejectCode::WrongChain
            | tradeloop_ledger::RejectCode::UnknownParticipant
            | tradeloop_ledger::RejectCode::KeyNotAuthorized
            | tradeloop_ledger::RejectCode::UnknownKind
            | tradeloop_ledger::RejectCode::EventTooLarge))
    });
    if forged {
        GossipVerdict::Reject
    } else if results.iter().any(Admitted::is_accepted) {
        GossipVerdict::Accept
    } else {
        GossipVerdict::Ignore
    }
}

struct ApiCtx {
    genesis: Genesis,
    node_key: PublicKey,
    validator: bool,
    chain: ChainHandle,
    p2p: P2pHandle,
    gossip: mpsc::Sender<SignedEvent>,
    mempool: watch::Receiver<MempoolStats>,
    syncing: watch::Receiver<bool>,
    metrics: std::sync::Arc<Metrics>,
}

/// The answer to a client for one admitted event: pending in the mempool (newly or already)
/// is `accepted`.
fn event_result(Admitted { id, admission }: Admitted) -> EventResult {
    match admission {
        Admission::Accepted | Admission::AlreadyPending => EventResult::Accepted { id },
        Admission::AlreadyCommitted(at) => EventResult::committed(id, at),
        Admission::Full => EventResult::Full { id, retry_after_ms: FULL_RETRY_AFTER_MS },
        Admission::Rejected(r) => {
            EventResult::Rejected { id: Some(id), code: r.code.as_str(), message: r.message }
        }
    }
}

/// Admits one coalesced batch and answers each request its share of the verdicts, in order;
/// accepted events go to gossip.
async fn admit_and_answer(
    a: std::sync::Arc<ApiCtx>,
    events: Vec<SignedEvent>,
    replies: Vec<(usize, tokio::sync::oneshot::Sender<Vec<EventResult>>)>,
) {
    let verdicts = match a.chain.admit(events.clone(), now_ms()).await {
        Err(e) => events
            .iter()
            .map(|ev| EventResult::Rejected {
                id: Some(ev.id()),
                code: e.code().into(),
                message: e.to_string(),
            })
            .collect(),
        Ok(results) => {
            let mut verdicts = Vec::with_capacity(results.len());
            for (result, event) in results.into_iter().zip(events) {
                if result.is_accepted() {
                    // A full gossip queue leaves the event to this node's own proposals (or
                    // the next proposer's validation).
                    let _ = a.gossip.try_send(event);
                }
                verdicts.push(event_result(result));
            }
            verdicts
        }
    };
    for v in &verdicts {
        match v {
            EventResult::Accepted { .. } => a.metrics.on_submitted(None),
            EventResult::Rejected { code, .. } => a.metrics.on_submitted(Some(code)),
            EventResult::Full { .. } => a.metrics.on_submitted(Some("MEMPOOL_FULL")),
            EventResult::Committed { .. } | EventResult::Pending { .. } => {}
        }
    }
    let mut verdicts = verdicts.into_iter();
    for (count, reply) in replies {
        let _ = reply.send(verdicts.by_ref().take(count).collect());
    }
}

/// Events admitted in one call to the chain worker at most, when submits are coalesced.
pub const MAX_COALESCED_EVENTS: usize = 4096;
/// Coalesced admissions the API task has sent to the chain worker and not yet answered: 2. The
/// worker then has the next batch queued while it admits one (with one, it idled while the
/// answers went out and the next requests came in), and submits arriving meanwhile wait in the
/// channel, to be coalesced into the batch after.
pub const MAX_ADMISSIONS_IN_FLIGHT: usize = 2;

/// Answers the HTTP API's commands. Submits waiting in the channel are coalesced (up to
/// [`MAX_COALESCED_EVENTS`]) into one admission, in arrival order, which is what the rules
/// would see one by one: many single-event requests then cost the chain worker one command and
/// share one parallel signature check. Up to [`MAX_ADMISSIONS_IN_FLIGHT`] admissions are in
/// flight; the chain worker takes its commands in order, so they are admitted in arrival order.
async fn api_commands(a: ApiCtx, mut rx: mpsc::Receiver<ApiCommand>) {
    use futures::stream::{FuturesOrdered, StreamExt};
    let a = std::sync::Arc::new(a);
    let mut deferred: Option<ApiCommand> = None;
    let mut in_flight = FuturesOrdered::new();
    loop {
        let command = if let Some(c) = deferred.take() {
            c
        } else if in_flight.len() >= MAX_ADMISSIONS_IN_FLIGHT {
            in_flight.next().await;
            continue;
        } else {
            tokio::select! {
                Some(()) = in_flight.next(), if !in_flight.is_empty() => continue,
                c = rx.recv() => match c {
                    Some(c) => c,
                    None => {
                        while in_flight.next().await.is_some() {}
                        return;
                    }
                },
            }
        };
        match command {
            ApiCommand::Submit { events, reply } => {
                let mut replies = vec![(events.len(), reply)];
                let mut events = events;
                while events.len() < MAX_COALESCED_EVENTS {
                    match rx.try_recv() {
                        Ok(ApiCommand::Submit { events: more, reply }) => {
                            replies.push((more.len(), reply));
                            events.extend(more);
                        }
                        Ok(other) => {
                            deferred = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                in_flight.push_back(admit_and_answer(std::sync::Arc::clone(&a), events, replies));
            }
            ApiCommand::Lookup { ids, reply } => {
                let found =
                    a.chain.lookup(ids.clone()).await.unwrap_or_else(|_| vec![None; ids.len()]);
                let _ = reply.send(found);
            }
            ApiCommand::Status { reply } => {
                let chain = a.chain.clone();
                let p2p = a.p2p.clone();
                let (genesis, node_key, validator) = (a.genesis.clone(), a.node_key, a.validator);
                let mempool = *a.mempool.borrow();
                let syncing = *a.syncing.borrow();
                let net = a.p2p.stats().borrow().clone();
                tokio::spawn(async move {
                    let tip = chain.tip().await;
                    let peers = p2p.peers().await.unwrap_or_default();
                    let (height, tip_hash) = match tip {
                        Ok(t) => (t.height, t.hash),
                        Err(_) => (0, tradeloop_crypto::Hash::ZERO),
                    };
                    let _ = reply.send(NodeStatus {
                        chain_id: genesis.doc.chain_id.clone(),
                        genesis_hash: genesis.hash,
                        height,
                        tip_hash,
                        validator,
                        node_key: node_key.to_hex(),
                        connected_peers: peers.iter().map(|p| p.to_hex()).collect(),
                        mempool_events: mempool.events as u64,
                        mempool_bytes: mempool.bytes,
                        syncing,
                        refused_connections: net.refused_connections,
                        rejected_gossip: net.rejected_messages,
                    });
                });
            }
        }
    }
}

/// Waits for SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use malachite_core_types::{
        NilOrVal, PolkaCertificate, PolkaSignature, Round, SignedMessage, VoteType,
    };
    use tradeloop_crypto::{Hash, SigningKey};
    use tradeloop_ledger::sample::Cast;

    use super::*;
    use crate::consensus::context::{Address, BlockHash, Height, Vote};

    /// A validator that never signed waits for its peers' tip, unless it is the genesis's only
    /// member node; one that has signed never waits.
    #[test]
    fn only_a_validator_with_peers_waits_for_their_tip_at_start() {
        let alone = Cast::deterministic(1, 1_700_000_000_000).unwrap();
        let me = alone.validator_keys[0].public_key();
        assert!(!waits_for_peers(&alone.genesis, &me, false));
        let four = Cast::deterministic(4, 1_700_000_000_000).unwrap();
        let me = four.validator_keys[0].public_key();
        assert!(waits_for_peers(&four.genesis, &me, false));
        assert!(!waits_for_peers(&four.genesis, &me, true));
    }

    /// Validator `validator`'s prevote at height 3, round 0, for block 0x04...
    fn vote(cast: &Cast, validator: usize) -> Vote {
        Vote {
            vote_type: VoteType::Prevote,
            height: Height(3),
            round: Round::new(0),
            value: NilOrVal::Val(BlockHash(Hash([4; 32]))),
            validator: Address(cast.validator_keys[validator].public_key()),
        }
    }

    #[test]
    fn gossip_is_forwarded_only_when_its_signer_and_signature_hold() {
        let cast = Cast::deterministic(4, 1_700_000_000_000).unwrap();
        let ctx = TradeContext::new(cast.genesis.hash);
        let validators = Validators::from_ledger(&cast.genesis.validators);
        let check = |m| check_consensus(&ctx, &validators, m);
        let key = &cast.validator_keys[1];
        let v = vote(&cast, 1);
        let good = SignedMessage::new(v.clone(), key.sign(&ctx.vote_bytes(&v)));
        assert!(check(ConsensusWire::Signed(SignedConsensusMsg::Vote(good.clone()))).is_ok());
        // Signed by another validator's key in its name, or by a stranger.
        let forged =
            SignedMessage::new(v.clone(), cast.validator_keys[2].sign(&ctx.vote_bytes(&v)));
        assert!(check(ConsensusWire::Signed(SignedConsensusMsg::Vote(forged))).is_err());
        let stranger = SigningKey::from_seed_label("stranger");
        let sv = Vote { validator: Address(stranger.public_key()), ..v.clone() };
        let signed = SignedMessage::new(sv.clone(), stranger.sign(&ctx.vote_bytes(&sv)));
        assert!(check(ConsensusWire::Signed(SignedConsensusMsg::Vote(signed))).is_err());
        // The good vote's signature is remembered for the core and the commit certificate;
        // the refused ones are not.
        assert_eq!(ctx.verified.len(), 1);
        assert!(check(ConsensusWire::Signed(SignedConsensusMsg::Vote(good.clone()))).is_ok());
        assert_eq!(ctx.verified.len(), 1);
        // A polka certificate with one bad signature among good ones is not forwarded.
        let sig = |i: usize, signer: usize| {
            let vi = vote(&cast, i);
            PolkaSignature::new(
                vi.validator,
                cast.validator_keys[signer].sign(&ctx.vote_bytes(&vi)),
            )
        };
        let cert = |sigs| PolkaCertificate {
            height: Height(3),
            round: Round::new(0),
            value_id: BlockHash(Hash([4; 32])),
            polka_signatures: sigs,
        };
        assert!(check(ConsensusWire::Polka(cert(vec![sig(0, 0), sig(1, 1), sig(2, 2)]))).is_ok());
        assert!(check(ConsensusWire::Polka(cert(vec![sig(0, 0), sig(1, 3), sig(2, 2)]))).is_err());
        // A proposal part from a validator that is not the round's proposer.
        let block = tradeloop_ledger::Block {
            header: tradeloop_ledger::Header {
                chain: ctx.chain,
                height: 3,
                prev_hash: Hash::ZERO,
                time_ms: 1,
                proposer: key.public_key(),
                events_root: Hash::ZERO,
                event_count: 0,
                app_hash: Hash::ZERO,
                validators_hash: Hash::ZERO,
            },
            events: vec![],
        };
        use malachite_core_types::Context as _;
        let proposer = ctx.select_proposer(&validators, Height(3), Round::new(0)).public_key;
        let signer_of = |k: &tradeloop_crypto::PublicKey| {
            cast.validator_keys.iter().find(|s| s.public_key() == *k).unwrap().clone()
        };
        let other = cast.validator_keys.iter().find(|s| s.public_key() != proposer).unwrap();
        let right = crate::net::message::split_block(
            &block,
            Round::new(0),
            Round::Nil,
            &signer_of(&proposer),
            &ctx.chain,
        )
        .unwrap();
        let wrong =
            crate::net::message::split_block(&block, Round::new(0), Round::Nil, other, &ctx.chain)
                .unwrap();
        assert!(check(ConsensusWire::Part(right[0].clone())).is_ok());
        assert!(check(ConsensusWire::Part(wrong[0].clone())).is_err());
    }
}
