//! The task that owns the swarm: builds it, then runs one `tokio::select!` loop over swarm
//! events, commands from handles, responses from the runtime and the redial timer.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use libp2p::allow_block_list::{self, AllowedPeers};
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, MessageAuthenticity, TopicHash};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport, ResponseChannel};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{DialError, ListenError, NetworkBehaviour, SwarmEvent};
use libp2p::{
    connection_limits, identify, noise, ping, tcp, yamux, Multiaddr, PeerId, StreamProtocol, Swarm,
};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tradeloop_crypto::PublicKey;

use super::codec::ByteCodec;
use crate::net::p2p::command::Command;
use crate::net::p2p::config::{P2pConfig, P2pLimits, GOSSIP_FRAMING_BYTES};
use crate::net::p2p::handle::P2pHandle;
use crate::net::p2p::protocol::{
    peer_id, public_key, topic_of, GossipId, GossipVerdict, P2pError, P2pEvent, P2pStats,
    Responder, Topic,
};

/// Weight of gossipsub's invalid-message term (P4): a peer's topic score is this times the
/// square of its recent rejected messages (module doc: 4 rejects lose gossip, 9 graylist it).
const INVALID_MESSAGE_WEIGHT: f64 = -1.0;
/// Factor by which the rejected-message count decays each decay interval (1 s): about 7 s to
/// halve, so a peer that stops sending invalid messages recovers within a minute.
const INVALID_MESSAGE_DECAY: f64 = 0.9;
/// How often due bootstrap redials are checked and the stats gauges refreshed (gossipsub's
/// heartbeat changes the mesh without an event), in milliseconds.
const TICK_MS: u64 = 100;
/// The bound on one gossipsub stream frame, as a multiple of the bound on one message (see
/// `gossipsub_behaviour`).
const GOSSIP_FRAME_FACTOR: usize = 2;
/// Identify protocol version string.
const IDENTIFY_PROTOCOL: &str = "/tradeloop/id/1";

#[derive(NetworkBehaviour)]
struct Behaviour {
    // Gating first: a denied connection is refused before any other behaviour sees it.
    allowed: allow_block_list::Behaviour<AllowedPeers>,
    limits: connection_limits::Behaviour,
    gossipsub: gossipsub::Behaviour,
    rpc: request_response::Behaviour<ByteCodec>,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
}

/// A bootstrap peer and when to dial it next.
struct Bootstrap {
    peer: PeerId,
    addr: Multiaddr,
    next_dial: Instant,
    backoff: Duration,
}

/// A response the runtime is preparing: resolves to the channel and the body, or `None` if the
/// [`Responder`] was dropped or did not answer within the request timeout.
type PendingResponse = BoxFuture<'static, (ResponseChannel<Vec<u8>>, Option<Vec<u8>>)>;

/// Where the response to an outbound request goes.
type RequestReply = oneshot::Sender<Result<Vec<u8>, P2pError>>;

struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<P2pEvent>,
    stats: watch::Sender<P2pStats>,
    limits: P2pLimits,
    topics: [(Topic, TopicHash); 2],
    bootstrap: Vec<Bootstrap>,
    requests: HashMap<OutboundRequestId, (PublicKey, RequestReply)>,
    responses: FuturesUnordered<PendingResponse>,
    listen_waiters: Vec<oneshot::Sender<Vec<Multiaddr>>>,
    connected: HashSet<PeerId>,
    refused_connections: u64,
    rejected_messages: u64,
    dropped_events: u64,
}

pub(crate) fn spawn(
    config: P2pConfig,
) -> Result<(P2pHandle, mpsc::Receiver<P2pEvent>, tokio::task::JoinHandle<()>), P2pError> {
    let limits = config.limits.clone();
    check_limits(&limits)?;
    let members: HashSet<PublicKey> = config.members.iter().copied().collect();
    let bootstrap = bootstrap_peers(&config.bootstrap, &members, &limits)?;
    let topics = Topic::ALL.map(|t| (t, IdentTopic::new(t.name(&config.chain)).hash()));
    let mut swarm = build_swarm(&config, &topics)?;
    for addr in &config.listen {
        swarm
            .listen_on(addr.clone())
            .map_err(|e| P2pError::Listen { addr: addr.clone(), reason: e.to_string() })?;
    }
    for b in &bootstrap {
        swarm.add_peer_address(b.peer, b.addr.clone());
    }

    let (command_tx, commands) = mpsc::channel(limits.command_channel);
    let (events, event_rx) = mpsc::channel(limits.event_channel);
    let (stats, stats_rx) = watch::channel(P2pStats::default());
    let handle = P2pHandle {
        commands: command_tx,
        stats: stats_rx,
        members: Arc::new(members),
        limits: Arc::new(limits.clone()),
    };
    let event_loop = EventLoop {
        swarm,
        commands,
        events,
        stats,
        limits,
        topics,
        bootstrap,
        requests: HashMap::new(),
        responses: FuturesUnordered::new(),
        listen_waiters: Vec::new(),
        connected: HashSet::new(),
        refused_connections: 0,
        rejected_messages: 0,
        dropped_events: 0,
    };
    let task = tokio::spawn(event_loop.run());
    Ok((handle, event_rx, task))
}

fn check_limits(limits: &P2pLimits) -> Result<(), P2pError> {
    let nonzero = [
        ("command_channel", limits.command_channel),
        ("event_channel", limits.event_channel),
        ("max_concurrent_streams", limits.max_concurrent_streams),
        ("max_pending_requests", limits.max_pending_requests),
        ("max_queued_messages_per_connection", limits.max_queued_messages_per_connection),
    ];
    if let Some((name, _)) = nonzero.iter().find(|(_, v)| *v == 0) {
        return Err(P2pError::ZeroLimit(name));
    }
    if limits.request_timeout_ms == 0 {
        return Err(P2pError::ZeroLimit("request_timeout_ms"));
    }
    if limits.redial_initial_ms == 0 {
        return Err(P2pError::ZeroLimit("redial_initial_ms"));
    }
    Ok(())
}

/// Wraps a libp2p setup error with the part that failed.
fn setup<E: Into<Box<dyn std::error::Error + Send + Sync>>>(
    what: &'static str,
) -> impl FnOnce(E) -> P2pError {
    move |e| P2pError::Setup { what, source: e.into() }
}

/// Parses the bootstrap addresses: each must end with `/p2p/<peer id>` of a member.
fn bootstrap_peers(
    addrs: &[Multiaddr],
    members: &HashSet<PublicKey>,
    limits: &P2pLimits,
) -> Result<Vec<Bootstrap>, P2pError> {
    let now = Instant::now();
    addrs
        .iter()
        .map(|addr| {
            let Some(Protocol::P2p(peer)) = addr.iter().last() else {
                return Err(P2pError::BootstrapAddress(addr.clone()));
            };
            if !public_key(&peer).is_some_and(|key| members.contains(&key)) {
                return Err(P2pError::BootstrapNotMember(peer));
            }
            Ok(Bootstrap {
                peer,
                addr: addr.clone(),
                next_dial: now,
                backoff: Duration::from_millis(limits.redial_initial_ms),
            })
        })
        .collect()
}

/// The message id: SHA-256 of `len(topic) as u32 BE ‖ topic ‖ data` (the length keeps topic
/// and data from running into each other).
fn message_id(message: &gossipsub::Message) -> gossipsub::MessageId {
    let topic = message.topic.as_str().as_bytes();
    let topic_len = u32::try_from(topic.len()).unwrap_or(u32::MAX);
    let mut hasher = Sha256::new();
    hasher.update(topic_len.to_be_bytes());
    hasher.update(topic);
    hasher.update(&message.data);
    gossipsub::MessageId::new(&hasher.finalize())
}

fn gossipsub_behaviour(
    config: &P2pConfig,
    topics: &[(Topic, TopicHash); 2],
) -> Result<gossipsub::Behaviour, P2pError> {
    // Two bounds, because gossipsub enforces them differently: a message above its topic's
    // bound is dropped as invalid (its sender penalised) and the stream goes on; a frame above
    // the stream bound is a decoding error that resets the peer's stream, losing whatever that
    // peer had queued behind it. So the stream bound sits above the message bound.
    let message_bound = config.limits.max_gossip_bytes.saturating_add(GOSSIP_FRAMING_BYTES);
    let mut builder = gossipsub::ConfigBuilder::default();
    builder
        .validation_mode(gossipsub::ValidationMode::Anonymous)
        .message_id_fn(message_id)
        .validate_messages()
        .connection_handler_queue_len(config.limits.max_queued_messages_per_connection)
        .duplicate_cache_time(Duration::from_millis(config.limits.duplicate_window_ms))
        .max_transmit_size(message_bound.saturating_mul(GOSSIP_FRAME_FACTOR));
    for (_, hash) in topics {
        builder.max_transmit_size_for_topic(message_bound, hash.clone());
    }
    let gossip_config = builder.build().map_err(setup("gossipsub configuration"))?;
    let mut gossipsub = gossipsub::Behaviour::new(MessageAuthenticity::Anonymous, gossip_config)
        .map_err(setup("gossipsub"))?;

    let score = peer_score_params(topics);
    gossipsub
        .with_peer_score(score, gossipsub::PeerScoreThresholds::default())
        .map_err(setup("gossipsub peer scoring"))?;
    for topic in Topic::ALL {
        gossipsub
            .subscribe(&IdentTopic::new(topic.name(&config.chain)))
            .map_err(setup("subscribing to a topic"))?;
    }
    Ok(gossipsub)
}

/// Gossipsub peer scoring with only the invalid-message term (P4) weighted (module doc of
/// `p2p`): members are known, so no other behaviour of theirs is held against them.
pub(crate) fn peer_score_params(topics: &[(Topic, TopicHash); 2]) -> gossipsub::PeerScoreParams {
    let mut score = gossipsub::PeerScoreParams {
        // Members are known; several may share a host (and tests share 127.0.0.1).
        ip_colocation_factor_weight: 0.0,
        // A member slow to drain its send queue is not misbehaving; by default each message its
        // full queue refuses costs -0.2, so a burst of 250 would stop us publishing to it at all.
        // Backpressure reaches the publisher as `P2pError::QueuesFull` instead.
        slow_peer_weight: 0.0,
        // Broken IWANT promises and GRAFTs during a prune backoff (P7). A member behind a link
        // that black-holed for a while breaks every promise it had made, and at the default
        // weight of -10 x n^2 three of them graylist it: every message it sends, its own votes
        // included, would be ignored while it is level with the chain by sync.
        behaviour_penalty_weight: 0.0,
        ..Default::default()
    };
    for (_, hash) in topics {
        let topic_score = gossipsub::TopicScoreParams {
            topic_weight: 1.0,
            // Only the invalid-message term (P4) counts; the delivery terms would penalise a
            // quiet member, and time in mesh rewards nothing we need.
            time_in_mesh_weight: 0.0,
            first_message_deliveries_weight: 0.0,
            mesh_message_deliveries_weight: 0.0,
            mesh_failure_penalty_weight: 0.0,
            invalid_message_deliveries_weight: INVALID_MESSAGE_WEIGHT,
            invalid_message_deliveries_decay: INVALID_MESSAGE_DECAY,
            ..Default::default()
        };
        score.topics.insert(hash.clone(), topic_score);
    }
    score
}

fn build_swarm(
    config: &P2pConfig,
    topics: &[(Topic, TopicHash); 2],
) -> Result<Swarm<Behaviour>, P2pError> {
    let mut secret = config.node_secret;
    let keypair =
        libp2p::identity::Keypair::ed25519_from_bytes(&mut secret).map_err(P2pError::NodeSecret)?;
    let limits = &config.limits;

    let mut allowed = allow_block_list::Behaviour::<AllowedPeers>::default();
    for member in &config.members {
        allowed.allow_peer(peer_id(member));
    }
    let connection_limits = connection_limits::Behaviour::new(
        connection_limits::ConnectionLimits::default()
            .with_max_established(Some(limits.max_established_connections))
            .with_max_established_per_peer(Some(limits.max_connections_per_peer))
            .with_max_pending_incoming(Some(limits.max_pending_incoming_connections)),
    );
    let gossipsub = gossipsub_behaviour(config, topics)?;
    let protocol = StreamProtocol::try_from_owned(format!(
        "/tradeloop/{}/rpc/1",
        hex::encode(&config.chain.as_bytes()[..8])
    ))
    .map_err(setup("the request-response protocol name"))?;
    let rpc = request_response::Behaviour::with_codec(
        ByteCodec::new(limits.max_request_bytes, limits.max_response_bytes),
        [(protocol, ProtocolSupport::Full)],
        request_response::Config::default()
            .with_request_timeout(Duration::from_millis(limits.request_timeout_ms))
            .with_max_concurrent_streams(limits.max_concurrent_streams),
    );
    let identify =
        identify::Behaviour::new(identify::Config::new(IDENTIFY_PROTOCOL.into(), keypair.public()));
    let ping = ping::Behaviour::new(ping::Config::new());
    let behaviour =
        Behaviour { allowed, limits: connection_limits, gossipsub, rpc, identify, ping };

    let idle = Duration::from_millis(limits.idle_connection_timeout_ms);
    let swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)
        .map_err(setup("noise"))?
        .with_behaviour(|_| behaviour)
        .map_err(|e| setup("the behaviour")(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
        .build();
    Ok(swarm)
}

impl EventLoop {
    async fn run(mut self) {
        let mut tick = tokio::time::interval(Duration::from_millis(TICK_MS));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let shutdown = loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown(ack)) => break Some(ack),
                    Some(command) => self.on_command(command),
                    // Every handle is gone: nobody can use the network any more.
                    None => break None,
                },
                Some((channel, body)) = self.responses.next(), if !self.responses.is_empty() => {
                    self.on_response_ready(channel, body);
                }
                _ = tick.tick() => self.redial_due(),
            }
            self.refresh_stats();
        };
        // Drop the swarm (connections, listeners) before acknowledging the shutdown.
        drop(self);
        if let Some(ack) = shutdown {
            let _ = ack.send(());
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Publish { topic, data, reply } => {
                let _ = reply.send(self.publish(topic, data));
            }
            Command::Request { peer, data, reply } => self.send_request(peer, data, reply),
            Command::Report { id, verdict } => self.report(&id, verdict),
            Command::Peers(reply) => {
                let _ = reply.send(self.connected.iter().filter_map(public_key).collect());
            }
            Command::PeerScore { peer, reply } => {
                let _ = reply.send(self.swarm.behaviour().gossipsub.peer_score(&peer_id(&peer)));
            }
            Command::ListenAddrs(reply) => {
                if self.swarm.listeners().next().is_some() {
                    let _ = reply.send(self.swarm.listeners().cloned().collect());
                } else {
                    self.listen_waiters.push(reply);
                }
            }
            // Handled in `run`, which ends the loop.
            Command::Shutdown(_) => {}
        }
    }

    fn publish(&mut self, topic: Topic, data: Vec<u8>) -> Result<(), P2pError> {
        let hash = self.topic_hash(topic);
        let bytes = data.len();
        match self.swarm.behaviour_mut().gossipsub.publish(hash, data) {
            Ok(_) => Ok(()),
            Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => {
                Err(P2pError::NoPeers { topic })
            }
            Err(gossipsub::PublishError::Duplicate) => Err(P2pError::Duplicate { topic }),
            Err(gossipsub::PublishError::AllQueuesFull(peers)) => {
                Err(P2pError::QueuesFull { peers })
            }
            // The handle checked the payload; this is the payload plus its framing.
            Err(gossipsub::PublishError::MessageTooLarge) => {
                Err(P2pError::TooLarge { what: "gossip", bytes, max: self.limits.max_gossip_bytes })
            }
            Err(e) => Err(P2pError::Publish(e.to_string())),
        }
    }

    fn topic_hash(&self, topic: Topic) -> TopicHash {
        let index = Topic::ALL.iter().position(|t| *t == topic).unwrap_or(0);
        self.topics[index].1.clone()
    }

    fn send_request(
        &mut self,
        peer: PublicKey,
        data: Vec<u8>,
        reply: oneshot::Sender<Result<Vec<u8>, P2pError>>,
    ) {
        if self.requests.len() >= self.limits.max_pending_requests {
            let _ = reply.send(Err(P2pError::Busy(self.requests.len())));
            return;
        }
        let id = self.swarm.behaviour_mut().rpc.send_request(&peer_id(&peer), data);
        self.requests.insert(id, (peer, reply));
    }

    fn report(&mut self, id: &GossipId, verdict: GossipVerdict) {
        let acceptance = match verdict {
            GossipVerdict::Accept => MessageAcceptance::Accept,
            GossipVerdict::Reject => {
                self.rejected_messages = self.rejected_messages.saturating_add(1);
                MessageAcceptance::Reject
            }
            GossipVerdict::Ignore => MessageAcceptance::Ignore,
        };
        // `false` means the message already left the cache (reported twice, or expired): nothing
        // to do.
        let _ = self.swarm.behaviour_mut().gossipsub.report_message_validation_result(
            &id.message_id,
            &id.source,
            acceptance,
        );
    }

    fn on_response_ready(&mut self, channel: ResponseChannel<Vec<u8>>, body: Option<Vec<u8>>) {
        // No body: the responder was dropped or too slow; dropping the channel fails the
        // request at the requester.
        if let Some(body) = body {
            // Err: the connection closed meanwhile; the requester already saw a failure.
            let _ = self.swarm.behaviour_mut().rpc.send_response(channel, body);
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(event)) => self.on_gossip(event),
            SwarmEvent::Behaviour(BehaviourEvent::Rpc(event)) => self.on_rpc(event),
            SwarmEvent::ConnectionEstablished { peer_id, num_established, .. } => {
                self.on_connected(peer_id, num_established.get());
            }
            SwarmEvent::ConnectionClosed { peer_id, num_established, .. } => {
                self.on_disconnected(peer_id, num_established);
            }
            SwarmEvent::IncomingConnectionError { error: ListenError::Denied { .. }, .. }
            | SwarmEvent::OutgoingConnectionError { error: DialError::Denied { .. }, .. } => {
                self.refused_connections = self.refused_connections.saturating_add(1);
            }
            SwarmEvent::NewListenAddr { .. } => {
                let addrs: Vec<Multiaddr> = self.swarm.listeners().cloned().collect();
                for waiter in self.listen_waiters.drain(..) {
                    let _ = waiter.send(addrs.clone());
                }
            }
            _ => {}
        }
    }

    fn on_connected(&mut self, peer: PeerId, connections: u32) {
        if let Some(b) = self.bootstrap.iter_mut().find(|b| b.peer == peer) {
            b.backoff = Duration::from_millis(self.limits.redial_initial_ms);
        }
        // Gating admits only members, so `public_key` succeeds; checked anyway.
        let Some(key) = public_key(&peer) else { return };
        if connections == 1 && self.connected.insert(peer) {
            self.emit(P2pEvent::Connected(key));
        }
    }

    fn on_disconnected(&mut self, peer: PeerId, remaining: u32) {
        if remaining > 0 || !self.connected.remove(&peer) {
            return;
        }
        let now = Instant::now();
        if let Some(b) = self.bootstrap.iter_mut().find(|b| b.peer == peer) {
            b.next_dial = now + b.backoff;
        }
        if let Some(key) = public_key(&peer) {
            self.emit(P2pEvent::Disconnected(key));
        }
    }

    fn on_gossip(&mut self, event: gossipsub::Event) {
        let gossipsub::Event::Message { propagation_source, message_id, message } = event else {
            return;
        };
        let id = GossipId { message_id, source: propagation_source };
        let (Some(topic), Some(from)) =
            (topic_of(&message.topic, &self.topics), public_key(&propagation_source))
        else {
            self.report(&id, GossipVerdict::Ignore);
            return;
        };
        let event = P2pEvent::Gossip { topic, from, id: id.clone(), data: message.data };
        if !self.emit(event) {
            // Not judged, so not forwarded; Ignore frees it from the cache now.
            self.report(&id, GossipVerdict::Ignore);
        }
    }

    fn on_rpc(&mut self, event: request_response::Event<Vec<u8>, Vec<u8>>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request { request, channel, .. } => {
                    self.on_request(peer, request, channel);
                }
                request_response::Message::Response { request_id, response } => {
                    if let Some((_, reply)) = self.requests.remove(&request_id) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure { request_id, error, .. } => {
                if let Some((peer, reply)) = self.requests.remove(&request_id) {
                    let _ = reply.send(Err(outbound_error(peer, error)));
                }
            }
            // Inbound failures (timeouts, oversize frames, closed streams) are the requester's
            // to report; nothing is pending here.
            request_response::Event::InboundFailure { .. }
            | request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn on_request(&mut self, peer: PeerId, data: Vec<u8>, channel: ResponseChannel<Vec<u8>>) {
        let Some(from) = public_key(&peer) else { return };
        let (reply, body) = oneshot::channel();
        let timeout = Duration::from_millis(self.limits.request_timeout_ms);
        self.responses.push(Box::pin(async move {
            let body = tokio::time::timeout(timeout, body).await.ok().and_then(Result::ok);
            (channel, body)
        }));
        let responder = Responder { reply, max_response_bytes: self.limits.max_response_bytes };
        // If the event is dropped the responder goes with it and the pending response resolves
        // to `None` at once.
        self.emit(P2pEvent::Request { from, data, reply: responder });
    }

    /// Hands an event to the runtime without waiting; `false` (and counted) if it was dropped.
    fn emit(&mut self, event: P2pEvent) -> bool {
        match self.events.try_send(event) {
            Ok(()) => true,
            Err(_) => {
                self.dropped_events = self.dropped_events.saturating_add(1);
                false
            }
        }
    }

    fn redial_due(&mut self) {
        let now = Instant::now();
        let max = Duration::from_millis(self.limits.redial_max_ms);
        for b in &mut self.bootstrap {
            if now < b.next_dial || self.swarm.is_connected(&b.peer) {
                continue;
            }
            let opts = DialOpts::peer_id(b.peer)
                .addresses(vec![b.addr.clone()])
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build();
            // An error here (already dialling, denied) is retried at the next due time.
            let _ = self.swarm.dial(opts);
            b.next_dial = now + b.backoff;
            b.backoff = b.backoff.saturating_mul(2).min(max);
        }
    }

    fn refresh_stats(&mut self) {
        let gossipsub = &self.swarm.behaviour().gossipsub;
        let [(_, events), (_, consensus)] = &self.topics;
        let topic_peers = |hash: &TopicHash| {
            gossipsub.all_peers().filter(|(_, topics)| topics.contains(&hash)).count()
        };
        let stats = P2pStats {
            connected_members: self.connected.len(),
            events_topic_peers: topic_peers(events),
            events_mesh_peers: gossipsub.mesh_peers(events).count(),
            consensus_topic_peers: topic_peers(consensus),
            consensus_mesh_peers: gossipsub.mesh_peers(consensus).count(),
            refused_connections: self.refused_connections,
            rejected_messages: self.rejected_messages,
            dropped_events: self.dropped_events,
        };
        self.stats.send_if_modified(|current| {
            let changed = *current != stats;
            *current = stats;
            changed
        });
    }
}

fn outbound_error(peer: PublicKey, error: request_response::OutboundFailure) -> P2pError {
    let peer = Box::new(peer);
    match error {
        request_response::OutboundFailure::DialFailure => {
            P2pError::Unreachable { peer, reason: "dial failed".into() }
        }
        request_response::OutboundFailure::Timeout => P2pError::Timeout { peer },
        other => P2pError::RequestFailed { peer, reason: other.to_string() },
    }
}

#[cfg(test)]
mod score_tests {
    use super::*;

    #[test]
    fn only_invalid_messages_count_against_a_member() {
        let chain = tradeloop_crypto::Hash([7; 32]);
        let topics = Topic::ALL.map(|t| (t, IdentTopic::new(t.name(&chain)).hash()));
        let score = peer_score_params(&topics);
        assert_eq!(score.behaviour_penalty_weight, 0.0);
        assert_eq!(score.ip_colocation_factor_weight, 0.0);
        assert_eq!(score.slow_peer_weight, 0.0);
        assert_eq!(score.topics.len(), 2);
        for topic in score.topics.values() {
            assert_eq!(topic.time_in_mesh_weight, 0.0);
            assert_eq!(topic.first_message_deliveries_weight, 0.0);
            assert_eq!(topic.mesh_message_deliveries_weight, 0.0);
            assert_eq!(topic.mesh_failure_penalty_weight, 0.0);
            assert_eq!(topic.invalid_message_deliveries_weight, INVALID_MESSAGE_WEIGHT);
        }
    }
}
