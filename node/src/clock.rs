//! Whether this node's clock agrees with the network's, judged from the blocks it commits.
//!
//! A block's time is its proposer's clock when it built the block, so a block committed as it
//! is decided is a little older than the node's clock: the time consensus took, well under a
//! second on a healthy network. [`ClockWatch`] keeps the latest offset (this node's clock minus
//! the block time) of each proposer and takes their median, so one proposer with a wrong clock
//! does not move it, while this node's own wrong clock moves every proposer's offset but its
//! own. Blocks committed while catching up are old by nature and are not counted (the caller
//! passes only blocks committed at the network's tip).
//!
//! Pure: the caller supplies both clocks' readings.

use std::collections::BTreeMap;

use tradeloop_crypto::PublicKey;

/// An offset beyond this, either way, is reported: far above the time consensus takes, far
/// below the chain's event time window (`consensus.max_time_skew_ms`, 10 minutes by default).
pub const CLOCK_OFFSET_WARN_MS: i64 = 5_000;
/// Proposers whose latest offset is kept (the validator set is at most this size in practice;
/// beyond it the oldest entries are dropped).
pub const MAX_PROPOSERS: usize = 64;
/// Offsets needed before the estimate is reported at all.
pub const MIN_SAMPLES: usize = 3;

/// The estimate of this node's clock offset.
#[derive(Debug, Default)]
pub struct ClockWatch {
    latest: BTreeMap<PublicKey, (u64, i64)>,
    sequence: u64,
    reported_off: bool,
}

/// What changed with one block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClockChange {
    /// Nothing to say.
    Same,
    /// The offset crossed [`CLOCK_OFFSET_WARN_MS`]: the clock is off by this many ms.
    Off(i64),
    /// It came back within the bound.
    BackInLine(i64),
}

impl ClockWatch {
    /// Counts a block by `proposer` with time `block_time_ms`, committed when this node's clock
    /// read `now_ms`.
    pub fn observe(&mut self, proposer: PublicKey, block_time_ms: u64, now_ms: u64) -> ClockChange {
        let offset = i64::try_from(now_ms).unwrap_or(i64::MAX)
            - i64::try_from(block_time_ms).unwrap_or(i64::MAX);
        self.sequence += 1;
        self.latest.insert(proposer, (self.sequence, offset));
        if self.latest.len() > MAX_PROPOSERS {
            let oldest = self.latest.iter().min_by_key(|(_, (seq, _))| *seq).map(|(k, _)| *k);
            if let Some(oldest) = oldest {
                self.latest.remove(&oldest);
            }
        }
        let Some(estimate) = self.offset_ms() else { return ClockChange::Same };
        let off = estimate.abs() > CLOCK_OFFSET_WARN_MS;
        match (off, self.reported_off) {
            (true, false) => {
                self.reported_off = true;
                ClockChange::Off(estimate)
            }
            (false, true) => {
                self.reported_off = false;
                ClockChange::BackInLine(estimate)
            }
            _ => ClockChange::Same,
        }
    }

    /// The median of the proposers' latest offsets, in ms (positive: this node's clock is
    /// ahead of the block times), once [`MIN_SAMPLES`] proposers were seen.
    pub fn offset_ms(&self) -> Option<i64> {
        if self.latest.len() < MIN_SAMPLES {
            return None;
        }
        let mut offsets: Vec<i64> = self.latest.values().map(|(_, o)| *o).collect();
        offsets.sort_unstable();
        Some(offsets[offsets.len() / 2])
    }
}

#[cfg(test)]
mod tests {
    use tradeloop_crypto::SigningKey;

    use super::*;

    fn proposers(n: usize) -> Vec<PublicKey> {
        (0..n).map(|i| SigningKey::from_seed_label(&format!("proposer {i}")).public_key()).collect()
    }

    const T: u64 = 1_800_000_000_000;

    #[test]
    fn one_proposer_with_a_wrong_clock_does_not_move_the_estimate() {
        let p = proposers(4);
        let mut watch = ClockWatch::default();
        for round in 0..5u64 {
            for (i, key) in p.iter().enumerate() {
                let block_time = if i == 3 { T + 20_000 } else { T + round * 1000 };
                assert_eq!(
                    watch.observe(*key, block_time, T + round * 1000 + 80),
                    ClockChange::Same
                );
            }
        }
        assert!(watch.offset_ms().unwrap().abs() < 1000);
    }

    #[test]
    fn this_nodes_wrong_clock_is_reported_once_and_its_return_too() {
        let p = proposers(4);
        let mut watch = ClockWatch::default();
        let mut changes = Vec::new();
        // This node's clock runs 20 s ahead; its own blocks carry its own clock.
        for (i, key) in p.iter().enumerate() {
            let block_time = if i == 0 { T + 20_000 } else { T };
            changes.push(watch.observe(*key, block_time, T + 20_050));
        }
        assert_eq!(watch.offset_ms(), Some(20_050));
        for key in &p {
            changes.push(watch.observe(*key, T + 30_000, T + 30_100));
        }
        let reported: Vec<ClockChange> =
            changes.into_iter().filter(|c| *c != ClockChange::Same).collect();
        assert_eq!(reported, vec![ClockChange::Off(20_050), ClockChange::BackInLine(100)]);
    }

    #[test]
    fn a_clock_that_jumped_back_shows_a_negative_offset() {
        let p = proposers(4);
        let mut watch = ClockWatch::default();
        let mut last = ClockChange::Same;
        for key in &p {
            let change = watch.observe(*key, T, T - 60_000);
            if change != ClockChange::Same {
                last = change;
            }
        }
        assert_eq!(last, ClockChange::Off(-60_000));
    }
}
