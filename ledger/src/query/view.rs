//! Read views that answer beside the ledger's one writer.
//!
//! A [`LedgerView`] is what a node's HTTP API reads: a clone of the sled index handle and the
//! block log's directory, shared by any number of threads while the ledger's one writer
//! commits. Each request takes a [`ViewAt`] with [`LedgerView::at_tip`]: the tip record the
//! index holds at that moment, read once. Because a block reaches the log (fsynced) before
//! its index batch, and the batch (with its tip record) is atomic, every block, event and
//! reference at or below that tip is readable; anything of a later block that becomes
//! visible while the request runs is left out, so one answer never mixes two tips. State
//! values (an order's record, which [`trade_status`] reads) are read as they are now, which
//! may already include the next block.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tradeloop_crypto::Hash;

use crate::model::block::{CertifiedBlock, Header, Tip};
use crate::model::event::SignedEvent;
use crate::model::genesis::Genesis;
use crate::query::read::{committed_event, event, trace, trace_committed, trade_status, ChainRead};
use crate::query::record::{CommittedEvent, EventRecord, TradeStatus};
use crate::rules::state::StateRead;
use crate::storage::blocklog::{map_frame, read_block, read_mapped_events, FrameMap, Location};
use crate::storage::index::{IndexStore, SledIndex};
use crate::storage::schema::{table_key, tables, META_TIP_KEY};
use crate::storage::store::Ledger;
use crate::{encoding::codec, LedgerError};

/// An index that can be shared with read views (a cheap clone of the same engine handle).
pub trait ViewIndex: IndexStore {
    /// Another handle on the same index.
    fn view_index(&self) -> SledIndex;
}

impl ViewIndex for SledIndex {
    fn view_index(&self) -> SledIndex {
        self.clone()
    }
}

/// A read view of a ledger, shared across threads (`Clone` is cheap). See the module docs.
#[derive(Clone, Debug)]
pub struct LedgerView {
    genesis: Arc<Genesis>,
    blocks_dir: PathBuf,
    index: SledIndex,
    frames: Arc<FrameMaps>,
}

/// Most memory the frame maps of a [`LedgerView`] hold, over all their blocks: 64 MiB
/// ([`FrameMap::footprint`]: 8 bytes an event and ~500 bytes a block, so some 8 million events
/// in blocks of 1,000, or 120,000 small blocks). The blocks mapped first are dropped first.
pub const MAX_FRAME_MAP_BYTES: usize = 64 << 20;

/// The [`FrameMap`]s of the blocks a view's readers read, shared by its clones: the first read
/// of a block reads its whole frame and checks its checksum; later reads of its events read only
/// their bytes, each checked against its CRC32C (see [`ViewAt::events_at`]).
#[derive(Debug)]
struct FrameMaps {
    inner: Mutex<MappedFrames>,
    /// Most bytes the maps hold ([`MAX_FRAME_MAP_BYTES`]; smaller in tests).
    max_bytes: usize,
}

impl Default for FrameMaps {
    fn default() -> FrameMaps {
        FrameMaps { inner: Mutex::default(), max_bytes: MAX_FRAME_MAP_BYTES }
    }
}

#[derive(Debug, Default)]
struct MappedFrames {
    by_height: HashMap<u64, Arc<FrameMap>>,
    /// Heights in the order they were mapped: the first mapped is dropped first.
    order: VecDeque<u64>,
    /// Bytes the maps hold ([`FrameMap::footprint`]).
    bytes: usize,
}

impl FrameMaps {
    fn get(&self, height: u64) -> Option<Arc<FrameMap>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).by_height.get(&height).cloned()
    }

    fn insert(&self, height: u64, map: Arc<FrameMap>) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let bytes = map.footprint();
        if bytes > self.max_bytes || inner.by_height.contains_key(&height) {
            return;
        }
        while inner.bytes + bytes > self.max_bytes {
            let Some(oldest) = inner.order.pop_front() else { break };
            if let Some(old) = inner.by_height.remove(&oldest) {
                inner.bytes -= old.footprint();
            }
        }
        inner.bytes += bytes;
        inner.order.push_back(height);
        inner.by_height.insert(height, map);
    }
}

impl LedgerView {
    pub(crate) fn new(genesis: Genesis, blocks_dir: &Path, index: SledIndex) -> LedgerView {
        LedgerView {
            genesis: Arc::new(genesis),
            blocks_dir: blocks_dir.to_path_buf(),
            index,
            frames: Arc::default(),
        }
    }

    /// The chain's genesis.
    pub fn genesis(&self) -> &Genesis {
        &self.genesis
    }

    /// The view at the tip the index holds now.
    pub fn at_tip(&self) -> Result<ViewAt<'_>, LedgerError> {
        let tip = match self.index.get(META_TIP_KEY)? {
            Some(bytes) => codec::decode::<Tip>(bytes.as_ref()).map_err(|e| {
                LedgerError::IndexInconsistent(format!("tip record does not decode: {e}"))
            })?,
            None => Tip::genesis(&self.genesis),
        };
        Ok(ViewAt { view: self, tip })
    }
}

/// A [`LedgerView`] fixed at one tip: every answer is of the chain up to that tip.
#[derive(Debug)]
pub struct ViewAt<'a> {
    view: &'a LedgerView,
    tip: Tip,
}

impl ViewAt<'_> {
    /// The tip this view answers for.
    pub fn tip(&self) -> &Tip {
        &self.tip
    }

    /// An event by id.
    pub fn event(&self, id: &Hash) -> Result<Option<EventRecord>, LedgerError> {
        event(self, id)
    }

    /// See [`trace`].
    pub fn trace(&self, reference: &str) -> Result<Vec<EventRecord>, LedgerError> {
        trace(self, reference)
    }

    /// See [`committed_event`].
    pub fn committed_event(&self, id: &Hash) -> Result<Option<CommittedEvent>, LedgerError> {
        committed_event(self, id)
    }

    /// See [`trace_committed`].
    pub fn trace_committed(&self, reference: &str) -> Result<Vec<CommittedEvent>, LedgerError> {
        trace_committed(self, reference)
    }

    /// See [`trade_status`].
    pub fn trade_status(&self, order_id: &str) -> Result<TradeStatus, LedgerError> {
        trade_status(self, order_id)
    }

    /// The headers of at most `limit` blocks from height `from` (at least 1) on, in order.
    pub fn headers(&self, from: u64, limit: usize) -> Result<Vec<Header>, LedgerError> {
        let mut out = Vec::new();
        let mut height = from.max(1);
        while height <= self.tip.height && out.len() < limit {
            out.push(ChainRead::block(self, height)?.block.header);
            height = height.saturating_add(1);
        }
        Ok(out)
    }

    /// The certified block at `height`.
    pub fn block(&self, height: u64) -> Result<CertifiedBlock, LedgerError> {
        ChainRead::block(self, height)
    }
}

impl StateRead for ViewAt<'_> {
    fn get_state(&self, key: &[u8]) -> Result<Option<Vec<u8>>, LedgerError> {
        Ok(self.view.index.get(&table_key(tables::STATE, key))?.map(|v| v.to_vec()))
    }
}

impl ViewAt<'_> {
    /// Where the block at `height` is in the log (`NotFound` above the tip).
    fn location(&self, height: u64) -> Result<Location, LedgerError> {
        if height == 0 || height > self.tip.height {
            return Err(LedgerError::NotFound(format!(
                "block at height {height} (the chain's height is {})",
                self.tip.height
            )));
        }
        let Some(bytes) = self.view.index.get(&table_key(tables::BLOCKS, &height.to_be_bytes()))?
        else {
            return Err(LedgerError::IndexInconsistent(format!(
                "the index has no location for block {height}, below its tip {}",
                self.tip.height
            )));
        };
        codec::decode(bytes.as_ref()).map_err(|e| {
            LedgerError::IndexInconsistent(format!(
                "location of block {height} does not decode: {e}"
            ))
        })
    }
}

impl ChainRead for ViewAt<'_> {
    type Index = SledIndex;
    fn genesis(&self) -> &Genesis {
        &self.view.genesis
    }
    fn index(&self) -> &SledIndex {
        &self.view.index
    }
    /// The first read of a block reads its whole frame (checksum checked) and keeps its
    /// [`FrameMap`]; later reads read only the wanted events' bytes, each checked against the
    /// CRC32C the map took of it.
    fn events_at(
        &self,
        height: u64,
        indexes: &[u32],
    ) -> Result<(Header, Vec<SignedEvent>), LedgerError> {
        if height == 0 || height > self.tip.height {
            // Never beyond the tip this view was taken at, mapped or not.
            self.location(height)?;
        }
        let map = match self.view.frames.get(height) {
            Some(map) => map,
            None => {
                let loc = self.location(height)?;
                let map = Arc::new(map_frame(&self.view.blocks_dir, loc, height)?);
                if map.header.height != height {
                    return Err(LedgerError::IndexInconsistent(format!(
                        "the index places block {height} where the log holds block {}",
                        map.header.height
                    )));
                }
                self.view.frames.insert(height, Arc::clone(&map));
                map
            }
        };
        let events = read_mapped_events(&self.view.blocks_dir, &map, indexes)?;
        Ok((map.header.clone(), events))
    }
    fn block(&self, height: u64) -> Result<CertifiedBlock, LedgerError> {
        let loc = self.location(height)?;
        let block = read_block(&self.view.blocks_dir, loc, height)?;
        if block.block.header.height != height {
            return Err(LedgerError::IndexInconsistent(format!(
                "the index places block {height} where the log holds block {}",
                block.block.header.height
            )));
        }
        Ok(block)
    }
    fn visible_height(&self) -> u64 {
        self.tip.height
    }
}

impl<S: IndexStore> Ledger<S> {
    /// A read view of this ledger for other threads (the node's HTTP API): it answers from
    /// the index and the block log as committed, concurrently with this ledger's commits.
    pub fn view(&self) -> LedgerView
    where
        S: ViewIndex,
    {
        LedgerView::new(
            Ledger::genesis(self).clone(),
            self.log().dir(),
            Ledger::index(self).view_index(),
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::model::event::SignedEvent;
    use crate::sample::{trade_events, Cast};
    use crate::Ledger;
    use crate::LedgerError;

    const T0: u64 = 1_780_000_000_000;

    #[test]
    fn a_view_answers_like_the_ledger_and_never_beyond_the_tip_it_was_taken_at() {
        let cast = Cast::deterministic(1, T0).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut ledger = Ledger::open(&dir.path().join("d"), cast.genesis.clone()).unwrap();
        let view = ledger.view();
        assert_eq!(view.at_tip().unwrap().tip().height, 0);
        let events = trade_events(&cast, 1, T0 + 1_000);
        ledger.append_local(&events[..7], T0 + 2_000, &cast.validator_keys[0]).unwrap();

        // Taken before the second block: it keeps answering for height 1 only.
        let before = view.at_tip().unwrap();
        assert_eq!(before.tip(), ledger.tip());
        ledger.append_local(&events[7..], T0 + 3_000, &cast.validator_keys[0]).unwrap();
        let after = view.at_tip().unwrap();
        assert_eq!(after.tip(), ledger.tip());
        assert_eq!(after.tip().height, 2);

        for (i, e) in events.iter().enumerate() {
            let id = e.id();
            let from_ledger = ledger.event(&id).unwrap().unwrap();
            let from_view = after.event(&id).unwrap().unwrap();
            assert_eq!(
                (from_view.height, from_view.index, &from_view.body),
                (from_ledger.height, from_ledger.index, &from_ledger.body)
            );
            assert_eq!(before.event(&id).unwrap().is_some(), i < 7, "event {i}");
        }
        let order = "order:PO-1";
        let ids = |records: Vec<EventRecord>| records.into_iter().map(|r| r.id).collect::<Vec<_>>();
        assert_eq!(ids(after.trace(order).unwrap()), ids(ledger.trace(order).unwrap()));
        assert!(before.trace(order).unwrap().iter().all(|r| r.height == 1));
        assert_eq!(
            after.trade_status("PO-1").unwrap().closed,
            ledger.trade_status("PO-1").unwrap().closed
        );
        assert_eq!(after.headers(1, 10).unwrap().len(), 2);
        assert_eq!(after.headers(2, 10).unwrap()[0], ledger.block(2).unwrap().block.header);
        assert_eq!(before.headers(1, 10).unwrap().len(), 1);
        assert!(matches!(before.block(2), Err(LedgerError::NotFound(_))));
        assert!(matches!(after.block(0), Err(LedgerError::NotFound(_))));
        assert_eq!(after.block(1).unwrap(), ledger.block(1).unwrap());
    }

    /// A ledger (in a temporary dir, kept alive by the returned guard) holding the first
    /// `trades` sample trades in blocks of `per_block` events, and those events.
    fn chain_of(trades: u64, per_block: usize) -> (tempfile::TempDir, Ledger, Vec<SignedEvent>) {
        let cast = Cast::deterministic(1, T0).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut ledger = Ledger::open(&dir.path().join("d"), cast.genesis.clone()).unwrap();
        let events: Vec<SignedEvent> =
            (1..=trades).flat_map(|n| trade_events(&cast, n, T0 + 1_000)).collect();
        for (i, chunk) in events.chunks(per_block).enumerate() {
            ledger.append_local(chunk, T0 + 2_000 + i as u64, &cast.validator_keys[0]).unwrap();
        }
        (dir, ledger, events)
    }

    /// Reading some events of a block by skipping the others gives exactly the events a full
    /// decode gives, and the same records; a position past the end is refused.
    #[test]
    fn events_read_by_skipping_are_the_events_of_the_decoded_block() {
        let (_dir, ledger, events) = chain_of(3, 13);
        let view = ledger.view();
        let at = view.at_tip().unwrap();
        for height in 1..=at.tip().height {
            let block = at.block(height).unwrap();
            let n = u32::try_from(block.block.events.len()).unwrap();
            let all: Vec<u32> = (0..n).collect();
            let (header, read) = at.events_at(height, &all).unwrap();
            assert_eq!(header, block.block.header);
            assert_eq!(read, block.block.events);
            for mut subset in [vec![0], vec![n - 1], vec![1, 4, n - 1], vec![2, 3]] {
                subset.dedup();
                let (_, some) = at.events_at(height, &subset).unwrap();
                let want: Vec<SignedEvent> =
                    subset.iter().map(|&i| block.block.events[i as usize].clone()).collect();
                assert_eq!(some, want, "height {height} events {subset:?}");
            }
            assert!(matches!(at.events_at(height, &[n]), Err(LedgerError::IndexInconsistent(_))));
            assert!(matches!(
                at.events_at(height, &[2, 1]),
                Err(LedgerError::IndexInconsistent(_))
            ));
        }
        for e in &events {
            let from_view = at.event(&e.id()).unwrap().unwrap();
            let from_ledger = ledger.event(&e.id()).unwrap().unwrap();
            assert_eq!(
                serde_json::to_value(&from_view).unwrap(),
                serde_json::to_value(&from_ledger).unwrap()
            );
        }
        for r in ["order:PO-2", "shipment:SHP-3", "invoice:INV-1"] {
            let a = serde_json::to_value(at.trace(r).unwrap()).unwrap();
            let b = serde_json::to_value(ledger.trace(r).unwrap()).unwrap();
            assert_eq!(a, b, "{r}");
        }
    }

    /// After a block is mapped, reads take only the wanted events' bytes: a byte changed in a
    /// wanted event is reported as damage to the log (never answered), a byte changed in
    /// another event of the block does not stop the intact ones from being read, exactly.
    #[test]
    fn mapped_reads_report_a_damaged_event_and_still_read_the_intact_ones() {
        use std::os::unix::fs::FileExt;
        let cast = Cast::deterministic(1, T0).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("d");
        let mut ledger = Ledger::open(&data, cast.genesis.clone()).unwrap();
        let events: Vec<SignedEvent> =
            (1..=2).flat_map(|n| trade_events(&cast, n, T0 + 1_000)).collect();
        ledger.append_local(&events, T0 + 2_000, &cast.validator_keys[0]).unwrap();
        let view = ledger.view();
        let at = view.at_tip().unwrap();
        // Maps block 1.
        assert_eq!(at.events_at(1, &[0]).unwrap().1, vec![events[0].clone()]);
        let map = view.frames.get(1).expect("block 1 is mapped after a read");
        assert_eq!(map.events(), events.len());

        // Damage event 5's body in the log, after the map was made.
        let (offset, len) = map.event_span(5).unwrap();
        let segment = data.join("blocks").join("blocks-00000000.log");
        let file = std::fs::OpenOptions::new().read(true).write(true).open(&segment).unwrap();
        let mut byte = [0u8; 1];
        let at_byte = offset + len as u64 / 2;
        file.read_exact_at(&mut byte, at_byte).unwrap();
        file.write_all_at(&[byte[0] ^ 0x01], at_byte).unwrap();

        let damaged = events[5].id();
        assert!(
            matches!(at.event(&damaged), Err(LedgerError::CorruptLog { .. })),
            "{:?}",
            at.event(&damaged)
        );
        assert!(matches!(at.events_at(1, &[4, 5, 6]), Err(LedgerError::CorruptLog { .. })));
        assert!(matches!(at.trace("order:PO-1"), Err(LedgerError::CorruptLog { .. })));
        // Read into a buffer of its own (a run longer than the thread keeps), the same.
        let map = view.frames.get(1).unwrap();
        let dir = data.join("blocks");
        assert!(matches!(
            crate::storage::blocklog::read_mapped_events_keeping(&dir, &map, &[4, 5, 6], 0),
            Err(LedgerError::CorruptLog { .. })
        ));
        let fresh_buffer =
            crate::storage::blocklog::read_mapped_events_keeping(&dir, &map, &[0, 1, 7, 9], 0)
                .unwrap();
        let want: Vec<SignedEvent> = [0, 1, 7, 9].iter().map(|&i| events[i].clone()).collect();
        assert_eq!(fresh_buffer, want);
        // The intact events of the block are still read, byte for byte.
        let intact: Vec<u32> =
            (0..u32::try_from(events.len()).unwrap()).filter(|&i| i != 5).collect();
        let (_, read) = at.events_at(1, &intact).unwrap();
        let want: Vec<SignedEvent> = intact.iter().map(|&i| events[i as usize].clone()).collect();
        assert_eq!(read, want);
        let other = events[events.len() - 1].id();
        assert_eq!(at.event(&other).unwrap().unwrap().id, other);
        // A fresh view (no map) reads the whole frame, whose checksum fails.
        let fresh = ledger.view();
        assert!(matches!(
            fresh.at_tip().unwrap().event(&other),
            Err(LedgerError::CorruptLog { .. })
        ));
    }

    /// The maps hold at most their bound of bytes: the blocks mapped longest ago go first,
    /// and reads of a dropped block map it again.
    #[test]
    fn frame_maps_stay_within_their_bound() {
        let (_dir, ledger, events) = chain_of(2, 10);
        // A map of n events: the struct and two tables of u32 (n + 1 bounds, n checksums).
        let footprint = |n: usize| std::mem::size_of::<FrameMap>() + (2 * n + 1) * 4;
        let max = footprint(10) + footprint(8);
        let mut view = ledger.view();
        view.frames = Arc::new(FrameMaps { inner: Mutex::default(), max_bytes: max });
        let at = view.at_tip().unwrap();
        let mapped = || {
            let inner = view.frames.inner.lock().unwrap();
            let mut heights: Vec<u64> = inner.by_height.keys().copied().collect();
            heights.sort_unstable();
            (heights, inner.bytes)
        };
        for height in 1..=at.tip().height {
            at.events_at(height, &[0]).unwrap();
        }
        // 38 events in blocks of 10, 10, 10, 8: only the last two blocks fit together.
        assert_eq!(at.tip().height, 4);
        assert_eq!(view.frames.get(1).map(|m| m.footprint()), None);
        assert_eq!(view.frames.get(4).unwrap().footprint(), footprint(8));
        assert_eq!(mapped(), (vec![3, 4], max));
        assert_eq!(at.events_at(1, &[9]).unwrap().1, vec![events[9].clone()]);
        assert_eq!(mapped(), (vec![1, 4], max));
        for e in &events {
            assert_eq!(at.event(&e.id()).unwrap().unwrap().id, e.id());
        }
        assert!(mapped().1 <= max);
    }
}
