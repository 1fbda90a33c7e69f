//! The clients: each trade's events (the sample cast's, really signed) are submitted in order
//! to one honest validator, which gossips those it accepts. For some trades a second client
//! places a rival order (the same order, another nonce) at another validator at the same time:
//! the rules let one of the two in, and every mempool must drop the other. A client whose trade
//! is not committed at its validator after [`RETRY_MS`] submits what is missing again, to a
//! validator that is up, as a client whose `?wait=commit` timed out would.

use std::collections::HashSet;

use tradeloop_crypto::Hash;
use tradeloop_ledger::sample::{trade_events, trade_steps, Cast};
use tradeloop_ledger::SignedEvent;

use super::config::Rng;

/// A new trade every this many ms.
pub(super) const TRADE_EVERY_MS: u64 = 200;
/// How long a client waits for its trade to commit before it submits it again.
pub(super) const RETRY_MS: u64 = 5_000;

/// One trade's events, and the rival order if a second client places one.
pub(super) struct Trade {
    pub events: Vec<SignedEvent>,
    pub rival: Option<SignedEvent>,
}

/// Every trade of a run.
pub(super) struct Workload {
    pub trades: Vec<Trade>,
}

impl Workload {
    /// `count` trades, the n-th timed when it is submitted (genesis time `t0` + n x
    /// [`TRADE_EVERY_MS`]); one in `rival_one_in` with a rival order (none if 0).
    pub(super) fn new(
        cast: &Cast,
        t0: u64,
        count: u64,
        rival_one_in: u64,
        rng: &mut Rng,
    ) -> Workload {
        let trades = (1..=count)
            .map(|n| {
                let time = t0 + Workload::submit_at(n);
                let rival = (rival_one_in > 0 && rng.below(rival_one_in) == 0).then(|| {
                    let (author, kind, fields) = trade_steps(n).swap_remove(0);
                    cast.sign(author, kind, fields, time, &format!("rival-{n}"))
                });
                Trade { events: trade_events(cast, n, time), rival }
            })
            .collect();
        Workload { trades }
    }

    /// When trade `n` (from 1) is submitted, virtual ms.
    pub(super) fn submit_at(n: u64) -> u64 {
        n * TRADE_EVERY_MS
    }

    /// Whether trade `t` is wholly in a chain whose committed ids are `ids`: every event but
    /// the order, and one of the order and its rival.
    pub(super) fn settled(&self, t: usize, ids: &HashSet<Hash>) -> bool {
        let trade = &self.trades[t];
        let order = ids.contains(&trade.events[0].id());
        let rival = trade.rival.as_ref().is_some_and(|r| ids.contains(&r.id()));
        (order ^ rival) && trade.events[1..].iter().all(|e| ids.contains(&e.id()))
    }

    /// The events of trade `t` not yet in a chain whose committed ids are `ids` (the order
    /// too, though the rules refuse it again once its rival is in).
    pub(super) fn missing(&self, t: usize, ids: &HashSet<Hash>) -> Vec<SignedEvent> {
        self.trades[t].events.iter().filter(|e| !ids.contains(&e.id())).cloned().collect()
    }
}
