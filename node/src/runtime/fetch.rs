//! Fetching a proposal's missing events from its proposer.
//!
//! The driver asks for a fetch ([`super::driver::Outbound::Fetch`]); whoever carries its
//! outbound messages runs [`fetch_events`] and hands the answer back as
//! [`super::driver::DriverInput::Fetched`]. In a node that is a task per fetch ([`Fetches`]);
//! in the simulator, a future it polls itself. Either way the driver sees the same inputs.

use std::collections::HashSet;
use std::time::Duration;

use tradeloop_crypto::{Hash, PublicKey};
use tradeloop_ledger::SignedEvent;

use super::driver::{DriverInput, MAX_FETCHES_IN_FLIGHT};
use crate::consensus::parts::Assembled;
use crate::net::message::{Request, Response, MAX_FETCH_IDS};
use crate::net::p2p::PeerRequests;

/// Most fetch requests for one proposal (each answers up to [`MAX_FETCH_IDS`] events, or fewer
/// when its byte bound stops it).
pub const MAX_FETCH_REQUESTS: usize = 64;
/// How long one proposal's fetch may take in all; then what it has is given up on, and the
/// proposal gets no vote. Fetches of a height are also aborted when a later height's starts.
pub const FETCH_DEADLINE: Duration = Duration::from_secs(5);
/// How long one fetch request may take.
pub const FETCH_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Asks `proposer` for the `missing` events, [`MAX_FETCH_IDS`] at a time, until it has sent
/// them all, stops sending any, or [`MAX_FETCH_REQUESTS`] were made. Only events with a wanted
/// id are kept (the chain worker checks them like any other).
pub async fn fetch_events<R: PeerRequests>(
    peers: &R,
    proposer: PublicKey,
    missing: Vec<Hash>,
) -> Vec<SignedEvent> {
    let mut wanted: Vec<Hash> = missing;
    let mut got = Vec::new();
    for _ in 0..MAX_FETCH_REQUESTS {
        if wanted.is_empty() {
            break;
        }
        let ask = wanted[..wanted.len().min(MAX_FETCH_IDS)].to_vec();
        let Ok(request) = (Request::Events { ids: ask.clone() }).encode() else { break };
        let answer = match peers.request(proposer, request, FETCH_REQUEST_TIMEOUT).await {
            Ok(answer) => answer,
            Err(e) => {
                tracing::debug!(%proposer, "event fetch failed: {e}");
                break;
            }
        };
        let events = match Response::decode(&answer) {
            Ok(Response::Events(events)) => events,
            _ => break,
        };
        let asked: HashSet<Hash> = ask.into_iter().collect();
        let before = got.len();
        for e in events {
            let id = e.id();
            if asked.contains(&id) {
                wanted.retain(|w| *w != id);
                got.push(e);
            }
        }
        if got.len() == before {
            break;
        }
    }
    got
}

/// The answer to a fetch, as the driver's input.
pub async fn fetched<R: PeerRequests>(
    peers: &R,
    assembled: Assembled,
    missing: Vec<Hash>,
) -> DriverInput {
    let events = fetch_events(peers, assembled.proposer, missing).await;
    DriverInput::Fetched { assembled: Box::new(assembled), events }
}

/// A node's running fetches: each on a task of its own, whose answer goes to the driver.
/// Fetches of heights below the newest one asked for are aborted (the driver has moved on).
#[derive(Debug, Default)]
pub struct Fetches {
    running: Vec<(u64, tokio::task::AbortHandle)>,
}

impl Fetches {
    /// Starts a fetch of `missing` for `assembled`, answering on `driver`.
    pub fn start<R: PeerRequests>(
        &mut self,
        peers: &R,
        assembled: Assembled,
        missing: Vec<Hash>,
        driver: tokio::sync::mpsc::Sender<DriverInput>,
    ) {
        let height = assembled.proposal.header.height;
        self.running.retain(|(h, task)| {
            let keep = *h >= height && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        if self.running.len() >= MAX_FETCHES_IN_FLIGHT {
            return;
        }
        let peers = peers.clone();
        let task = tokio::spawn(async move {
            let given_up =
                DriverInput::Fetched { assembled: Box::new(assembled.clone()), events: Vec::new() };
            let input = tokio::time::timeout(FETCH_DEADLINE, fetched(&peers, assembled, missing))
                .await
                .unwrap_or(given_up);
            // The driver being gone means the node is stopping.
            let _ = driver.send(input).await;
        });
        self.running.push((height, task.abort_handle()));
    }
}
