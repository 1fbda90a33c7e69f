//! The ledger on disk: the block log as the source of truth, sled as a rebuildable index.
//!
//! Data dir layout:
//!
//! ```text
//! DIR/blocks/blocks-00000000.log ...   the block log (crate::blocklog)
//! DIR/index/                           sled: trees blocks, events, refs, state, meta
//! ```
//!
//! Commit order: append + fsync the log, then one sled transaction for the block, then
//! `flush`. A crash between the two leaves sled behind the log; [`Ledger::open`] catches it up
//! by re-validating the missing blocks from the log. sled is never trusted over the log.

use std::path::{Path, PathBuf};

use serde::Serialize;
use tradeloop_crypto::{Hash, SigningKey};

use crate::block::{CertifiedBlock, CommitCertificate, Tip};
use crate::blocklog::{BlockLog, Location};
use crate::event::{parse_ref, RefKind, SignedEvent};
use crate::execute::{build_block, validate_block, BuiltBlock, ValidatedBlock};
use crate::genesis::Genesis;
use crate::state::*;
use crate::{codec, LedgerError, Rejection};

/// The index's tables (DESIGN §5), each a one-byte key prefix in the single sled tree
/// [`INDEX_TREE`]. One tree, because sled's only atomic write across trees is its transaction
/// API, which tracks a read for every write and cost more CPU than all signature checks of a
/// block; a `Batch` on one tree is atomic and cheap. See docs/formats.md.
pub mod tables {
    /// `'B' || height (u64 BE)` -> [`crate::blocklog::Location`]
    pub const BLOCKS: u8 = b'B';
    /// `'E' || event id (32)` -> height (u64 BE) || index (u32 BE)
    pub const EVENTS: u8 = b'E';
    /// `'R' || len (u16 BE) || entity key || height (u64 BE) || index (u32 BE)` -> event id
    pub const REFS: u8 = b'R';
    /// `'S' || state key` -> state value (crate::state)
    pub const STATE: u8 = b'S';
    /// `'M' || "genesis"` -> genesis hash; `'M' || "tip"` -> [`crate::block::Tip`]
    pub const META: u8 = b'M';
}

/// The name of the sled tree that holds every table.
pub const INDEX_TREE: &str = "ledger";
/// Key of the tip record.
pub const META_TIP_KEY: &[u8] = b"Mtip";
const META_GENESIS_KEY: &[u8] = b"Mgenesis";

fn table_key(table: u8, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + key.len());
    out.push(table);
    out.extend_from_slice(key);
    out
}

/// What appending one local block produced: the block (None if no candidate was valid) and
/// the rejected candidates by index.
pub type LocalAppend = (Option<CertifiedBlock>, Vec<(usize, Rejection)>);

/// Called after each block of [`Ledger::append_local_stream`].
pub type OnBlock<'a> =
    dyn FnMut(&[SignedEvent], Option<&CertifiedBlock>, Vec<(usize, Rejection)>) + 'a;

/// The ledger of one node.
#[derive(Debug)]
pub struct Ledger {
    genesis: Genesis,
    dir: PathBuf,
    log: BlockLog,
    db: sled::Db,
    index: sled::Tree,
    tip: Tip,
    /// Blocks replayed from the log into the index when opening.
    pub caught_up_on_open: u64,
    /// Bytes of torn tail truncated from the log when opening.
    pub torn_tail_truncated: u64,
}

/// An event as found on the ledger.
#[derive(Clone, Debug, Serialize)]
pub struct EventRecord {
    /// Event id.
    pub id: Hash,
    /// Block height.
    pub height: u64,
    /// Position in the block.
    pub index: u32,
    /// The block's time.
    pub block_time_ms: u64,
    /// Kind.
    pub kind: String,
    /// Author.
    pub author: String,
    /// The body as signed (canonical JSON).
    pub body: serde_json::Value,
    /// Signature (hex).
    pub signature: String,
}

/// One leg of a trade's closed loop.
#[derive(Clone, Debug, Serialize)]
pub struct Leg {
    /// Leg name, e.g. `export_cleared`.
    pub leg: &'static str,
    /// Whether it is done.
    pub done: bool,
    /// Detail for a person.
    pub detail: String,
}

/// Where a trade (an order and everything hanging off it) stands.
#[derive(Clone, Debug, Serialize)]
pub struct TradeStatus {
    /// The order.
    pub order_id: String,
    /// Buyer.
    pub buyer: String,
    /// Seller.
    pub seller: String,
    /// Whether the loop is closed: goods received, import cleared, invoices fully settled.
    pub closed: bool,
    /// Every leg in order.
    pub legs: Vec<Leg>,
    /// Names of legs still open.
    pub open_legs: Vec<&'static str>,
}

fn store_err(e: impl std::fmt::Display) -> LedgerError {
    LedgerError::Store(e.to_string())
}

/// How long opening the index waits for sled's directory lock. A `Ledger` dropped in this
/// process releases it a moment later (sled closes its files on a background thread); a
/// running node holds it for good, and the open then fails.
const INDEX_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Whether sled failed to open because another open handle holds its directory lock. sled
/// 0.34.7 (pinned exactly) reports that only as an `Other` I/O error with this text; the test
/// `verify_refuses_an_index_in_use_and_waits_for_a_dropped_one` pins it.
fn is_lock_error(e: &std::io::Error) -> bool {
    e.to_string().starts_with("could not acquire lock on")
}

/// Opens the sled index (used by `Ledger::open` and by the audit's index-tip check).
pub(crate) fn open_sled(path: &Path) -> Result<sled::Db, LedgerError> {
    let started = std::time::Instant::now();
    loop {
        // sled 0.34 can panic on some damaged files instead of returning an error; never let
        // a damaged index take the process down.
        let owned = path.to_path_buf();
        // Every block is flushed explicitly after its batch, so the background flusher is
        // off; HighThroughput favours the write-heavy commit path.
        let result = std::panic::catch_unwind(move || {
            sled::Config::new()
                .path(owned)
                .mode(sled::Mode::HighThroughput)
                .flush_every_ms(None)
                .open()
        });
        match result {
            Ok(Ok(db)) => return Ok(db),
            Ok(Err(sled::Error::Io(e))) if is_lock_error(&e) => {
                if started.elapsed() >= INDEX_LOCK_WAIT {
                    return Err(LedgerError::io(
                        format!(
                            "the index {} is in use by another process; stop the node running on this data dir and retry",
                            path.display()
                        ),
                        e,
                    ));
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Ok(Err(e)) => {
                return Err(LedgerError::IndexInconsistent(format!(
                    "cannot open the sled index: {e}"
                )))
            }
            Err(_) => {
                return Err(LedgerError::IndexInconsistent(
                    "the sled index is damaged (sled panicked opening it)".into(),
                ))
            }
        }
    }
}

impl Ledger {
    /// Opens (or creates) the data dir for the chain of `genesis`.
    pub fn open(dir: &Path, genesis: Genesis) -> Result<Ledger, LedgerError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| LedgerError::io(format!("cannot create {}", dir.display()), e))?;
        // sled takes an exclusive lock on its directory, so a second process fails here before
        // touching the log.
        let db = open_sled(&dir.join("index"))?;
        let (log, report) = BlockLog::open(&dir.join("blocks"), true)?;
        let mut ledger = Ledger {
            index: db.open_tree(INDEX_TREE).map_err(store_err)?,
            tip: Tip::genesis(&genesis),
            dir: dir.to_path_buf(),
            genesis,
            log,
            db,
            caught_up_on_open: 0,
            torn_tail_truncated: report.torn_tail_bytes,
        };
        ledger.check_and_catch_up()?;
        Ok(ledger)
    }

    fn check_and_catch_up(&mut self) -> Result<(), LedgerError> {
        match self.index.get(META_GENESIS_KEY).map_err(store_err)? {
            Some(g) if g.as_ref() != self.genesis.hash.0 => {
                return Err(LedgerError::WrongChain {
                    expected: self.genesis.hash.to_hex(),
                    found: hex::encode(&g),
                })
            }
            Some(_) => {}
            None => {
                self.index.insert(META_GENESIS_KEY, &self.genesis.hash.0).map_err(store_err)?;
            }
        }
        if !self.log.is_empty() {
            let first = self.log.read(1)?;
            if first.block.header.chain != self.genesis.hash {
                return Err(LedgerError::WrongChain {
                    expected: self.genesis.hash.to_hex(),
                    found: first.block.header.chain.to_hex(),
                });
            }
        }
        let tip = match self.index.get(META_TIP_KEY).map_err(store_err)? {
            Some(bytes) => codec::decode::<Tip>(&bytes).map_err(|e| {
                LedgerError::IndexInconsistent(format!("tip record does not decode: {e}"))
            })?,
            None => Tip::genesis(&self.genesis),
        };
        if tip.height > self.log.len() {
            return Err(LedgerError::IndexInconsistent(format!(
                "the index records height {} but the block log ends at height {}: blocks are missing \
                 from the log (it was truncated or replaced)",
                tip.height,
                self.log.len()
            )));
        }
        if tip.height > 0 {
            let block = self.log.read(tip.height)?;
            let stored_loc = self
                .index
                .get(table_key(tables::BLOCKS, &tip.height.to_be_bytes()))
                .map_err(store_err)?;
            let loc_ok = stored_loc
                .and_then(|b| codec::decode::<Location>(&b).ok())
                .is_some_and(|l| Some(l) == self.log.location(tip.height));
            if block.block.header.hash() != tip.hash
                || block.block.header.app_hash != tip.app_hash
                || !loc_ok
            {
                return Err(LedgerError::IndexInconsistent(format!(
                    "the index's tip at height {} does not match the block log",
                    tip.height
                )));
            }
        }
        self.tip = tip;
        while self.tip.height < self.log.len() {
            let certified = self.log.read(self.tip.height + 1)?;
            let validated = validate_block(&self.genesis, &*self, &self.tip, &certified)?;
            let loc = self.log.location(self.tip.height + 1).ok_or_else(|| {
                LedgerError::IndexInconsistent("log location vanished during catch-up".into())
            })?;
            self.index_block(&certified, &validated, loc)?;
            self.caught_up_on_open += 1;
        }
        Ok(())
    }

    /// Deletes the index and rebuilds it from the block log, re-validating every block.
    pub fn reindex(dir: &Path, genesis: Genesis) -> Result<Ledger, LedgerError> {
        let index = dir.join("index");
        if index.exists() {
            std::fs::remove_dir_all(&index)
                .map_err(|e| LedgerError::io(format!("cannot remove {}", index.display()), e))?;
        }
        Ledger::open(dir, genesis)
    }

    /// The genesis.
    pub fn genesis(&self) -> &Genesis {
        &self.genesis
    }

    /// The data dir.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The last committed block.
    pub fn tip(&self) -> &Tip {
        &self.tip
    }

    /// The block log.
    pub fn log(&self) -> &BlockLog {
        &self.log
    }

    /// Builds the next block from candidate events (see [`build_block`]).
    pub fn build_block(
        &self,
        candidates: &[SignedEvent],
        time_ms: u64,
        proposer: &SigningKey,
    ) -> Result<BuiltBlock, LedgerError> {
        build_block(&self.genesis, self, &self.tip, candidates, time_ms, proposer)
    }

    /// Validates a proposed block (without certificate) against this ledger's tip and state.
    pub fn validate_proposal(&self, block: &crate::block::Block) -> Result<Hash, LedgerError> {
        crate::execute::validate_proposal(&self.genesis, self, &self.tip, block).map(|v| v.hash)
    }

    /// Validates a certified block fully and commits it (catch-up, sync, and local chains).
    pub fn commit_block(&mut self, certified: &CertifiedBlock) -> Result<Hash, LedgerError> {
        let validated = validate_block(&self.genesis, &*self, &self.tip, certified)?;
        let loc = self.log.append(certified)?;
        self.index_block(certified, &validated, loc)?;
        Ok(validated.hash)
    }

    /// Builds, self-certifies and commits one block on a one-validator chain. Returns the
    /// committed block's hash (None if no candidate was valid) and the rejections.
    pub fn append_local(
        &mut self,
        candidates: &[SignedEvent],
        time_ms: u64,
        validator: &SigningKey,
    ) -> Result<LocalAppend, LedgerError> {
        let checked = crate::execute::check_events(&self.genesis, candidates);
        self.append_local_checked(candidates, checked, time_ms, validator)
    }

    /// [`Ledger::append_local`] for candidates already passed through
    /// [`crate::execute::check_events`].
    pub fn append_local_checked(
        &mut self,
        candidates: &[SignedEvent],
        checked: Vec<Result<crate::event::Event, Rejection>>,
        time_ms: u64,
        validator: &SigningKey,
    ) -> Result<LocalAppend, LedgerError> {
        let built = crate::execute::build_block_checked(
            &self.genesis,
            &*self,
            &self.tip,
            candidates,
            checked,
            time_ms,
            validator,
        )?;
        if built.block.events.is_empty() {
            return Ok((None, built.rejected));
        }
        let certificate = CommitCertificate::sign(
            &self.genesis.hash,
            built.block.header.height,
            0,
            built.hash,
            &[validator],
        );
        let ids = built.ids;
        let certified = CertifiedBlock { block: built.block, certificate };
        // The certificate must satisfy the chain's validator set; check before writing.
        certified
            .certificate
            .verify(
                &self.genesis.hash,
                &self.genesis.validators,
                certified.block.header.height,
                &built.hash,
            )
            .map_err(|detail| LedgerError::InvalidBlock {
                height: certified.block.header.height,
                detail: format!("this key cannot certify blocks alone: {detail}"),
            })?;
        let loc = self.log.append(&certified)?;
        self.index_outcome(&certified, built.hash, &ids, &built.outcome, loc)?;
        Ok((Some(certified), built.rejected))
    }

    /// Appends chunks of candidates as consecutive self-certified blocks (the bulk path of
    /// `tradeloop append`). While this thread executes and durably commits chunk k (rules, log
    /// fsync, index batch), a checker thread runs the stateless checks of chunk k+1; when the
    /// commit is done this thread joins in on the checks. Both cores stay busy without either
    /// phase waiting on a thread pool. `on_block(chunk, committed block, rejections)` is called
    /// after each chunk.
    pub fn append_local_stream(
        &mut self,
        mut chunks: impl Iterator<Item = Vec<SignedEvent>>,
        validator: &SigningKey,
        clock: &dyn Fn() -> u64,
        on_block: &mut OnBlock<'_>,
    ) -> Result<(), LedgerError> {
        let genesis = self.genesis.clone();
        let mut current: Option<(Vec<SignedEvent>, Vec<CheckResult>)> =
            chunks.next().map(|chunk| {
                let checked = crate::execute::check_events(&genesis, &chunk);
                (chunk, checked)
            });
        while let Some((chunk, checked)) = current.take() {
            let next = chunks.next().unwrap_or_default();
            let work = SharedChecks::new(&genesis, &next);
            let time_ms = clock();
            let (helper_part, appended, own_part) = std::thread::scope(|scope| {
                let helper = scope.spawn(|| work.run());
                let appended = self.append_local_checked(&chunk, checked, time_ms, validator);
                let own_part = work.run();
                (helper.join(), appended, own_part)
            });
            let (block, rejected) = appended?;
            on_block(&chunk, block.as_ref(), rejected);
            let helper_part = helper_part
                .map_err(|_| LedgerError::Store("the event checker thread panicked".into()))?;
            if !next.is_empty() {
                let checked = SharedChecks::merge(next.len(), helper_part, own_part);
                current = Some((next, checked));
            }
        }
        Ok(())
    }

    fn index_block(
        &mut self,
        certified: &CertifiedBlock,
        validated: &ValidatedBlock,
        loc: Location,
    ) -> Result<(), LedgerError> {
        let ids: Vec<Hash> = validated.events.iter().map(|e| e.id).collect();
        self.index_outcome(certified, validated.hash, &ids, &validated.outcome, loc)
    }

    fn index_outcome(
        &mut self,
        certified: &CertifiedBlock,
        hash: Hash,
        ids: &[Hash],
        outcome: &crate::rules::BlockOutcome,
        loc: Location,
    ) -> Result<(), LedgerError> {
        let header = &certified.block.header;
        let height = header.height;
        let tip = Tip { height, hash, time_ms: header.time_ms, app_hash: header.app_hash };
        let tip_bytes = codec::encode(&tip);
        let loc_bytes = codec::encode(&loc);
        // One atomic batch: after a crash the index holds the whole block or none of it.
        let mut batch = sled::Batch::default();
        batch.insert(table_key(tables::BLOCKS, &height.to_be_bytes()), loc_bytes);
        for (index, id) in ids.iter().enumerate() {
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            let mut position = [0u8; 12];
            position[..8].copy_from_slice(&height.to_be_bytes());
            position[8..].copy_from_slice(&index.to_be_bytes());
            batch.insert(table_key(tables::EVENTS, &id.0), &position);
            for entity in &outcome.refs[index as usize] {
                let mut key = table_key(tables::REFS, &ref_prefix(entity));
                key.extend_from_slice(&position);
                batch.insert(key, &id.0);
            }
        }
        for (k, v) in &outcome.writes {
            batch.insert(table_key(tables::STATE, k), v.as_slice());
        }
        batch.insert(META_TIP_KEY, tip_bytes);
        self.index.apply_batch(batch).map_err(store_err)?;
        self.db.flush().map_err(store_err)?;
        self.tip = tip;
        Ok(())
    }

    /// The certified block at a height.
    pub fn block(&self, height: u64) -> Result<CertifiedBlock, LedgerError> {
        self.log.read(height)
    }

    /// An event by id.
    pub fn event(&self, id: &Hash) -> Result<Option<EventRecord>, LedgerError> {
        let Some(position) = self.index.get(table_key(tables::EVENTS, &id.0)).map_err(store_err)?
        else {
            return Ok(None);
        };
        let (height, index) = decode_position(&position)?;
        let block = self.log.read(height)?;
        Ok(Some(record_of(&block, index)?))
    }

    /// Every event that touches an entity (`order`, `invoice`, `shipment`, `declaration`,
    /// `lc`, `document`, `payment`), in ledger order.
    pub fn trace_entity(&self, entity: &[u8]) -> Result<Vec<EventRecord>, LedgerError> {
        let mut out = Vec::new();
        let mut cached: Option<CertifiedBlock> = None;
        for item in self.index.scan_prefix(table_key(tables::REFS, &ref_prefix(entity))) {
            let (key, _) = item.map_err(store_err)?;
            let position = key.len().checked_sub(12).map(|at| &key[at..]).unwrap_or(&key[..]);
            let (height, index) = decode_position(position)?;
            if cached.as_ref().is_none_or(|b| b.block.header.height != height) {
                cached = Some(self.log.read(height)?);
            }
            if let Some(block) = &cached {
                out.push(record_of(block, index)?);
            }
        }
        Ok(out)
    }

    /// A trace by reference `shipment:ID`, `order:ID`, `declaration:ID`, `lc:ID` or
    /// `invoice:ID`. An order's trace includes the events of its shipments and declarations, so
    /// it shows the whole closed loop.
    pub fn trace(&self, reference: &str) -> Result<Vec<EventRecord>, LedgerError> {
        let (kind, id) = parse_ref(reference).map_err(LedgerError::NotFound)?;
        let prefix = match kind {
            RefKind::Order => "order",
            RefKind::Invoice => "invoice",
            RefKind::Shipment => "shipment",
            RefKind::Declaration => "declaration",
            RefKind::Lc => "lc",
        };
        let key = entity_key(prefix, id);
        if self.get_state(&key)?.is_none() {
            return Err(LedgerError::NotFound(format!("{reference} on this ledger")));
        }
        let mut records = self.trace_entity(&key)?;
        if kind == RefKind::Order {
            let order: OrderState = self.load(&key)?;
            for shipment in &order.shipments {
                records.extend(self.trace_entity(&entity_key("shipment", shipment))?);
            }
            records.sort_by_key(|r| (r.height, r.index));
            records.dedup_by_key(|r| (r.height, r.index));
        }
        Ok(records)
    }

    fn load<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> Result<T, LedgerError> {
        let bytes = self
            .get_state(key)?
            .ok_or_else(|| LedgerError::NotFound(String::from_utf8_lossy(key).into_owned()))?;
        codec::decode(&bytes).map_err(|e| {
            LedgerError::IndexInconsistent(format!("state value does not decode: {e}"))
        })
    }

    /// Where the trade of an order stands: which legs of the closed loop are done.
    pub fn trade_status(&self, order_id: &str) -> Result<TradeStatus, LedgerError> {
        let order: OrderState = self.load(&entity_key("order", order_id))?;
        let mut invoices = Vec::new();
        for id in &order.invoices {
            invoices.push((id.clone(), self.load::<InvoiceState>(&entity_key("invoice", id))?));
        }
        let mut shipments = Vec::new();
        for id in &order.shipments {
            shipments.push((id.clone(), self.load::<ShipmentState>(&entity_key("shipment", id))?));
        }
        Ok(trade_status_of(order_id, &order, &invoices, &shipments))
    }
}

fn trade_status_of(
    order_id: &str,
    order: &OrderState,
    invoices: &[(String, InvoiceState)],
    shipments: &[(String, ShipmentState)],
) -> TradeStatus {
    use ShipmentStatus::*;
    let all = |f: &dyn Fn(&ShipmentState) -> bool| {
        !shipments.is_empty() && shipments.iter().all(|(_, s)| f(s))
    };
    let reached = |s: &ShipmentState, at: &[ShipmentStatus]| at.contains(&s.status);
    let names = |f: &dyn Fn(&ShipmentState) -> bool| -> String {
        let open: Vec<&str> =
            shipments.iter().filter(|(_, s)| !f(s)).map(|(id, _)| id.as_str()).collect();
        if shipments.is_empty() {
            "no shipment booked".into()
        } else if open.is_empty() {
            format!("all {} shipment(s)", shipments.len())
        } else {
            format!("open: {}", open.join(", "))
        }
    };
    let settled_all = !invoices.is_empty() && invoices.iter().all(|(_, i)| i.settled == i.amount);
    let settled: crate::fields::Decimal =
        invoices.iter().fold(Default::default(), |a, (_, i)| a.plus(i.settled));
    let mut legs = vec![
        Leg {
            leg: "order_placed",
            done: true,
            detail: format!(
                "{} {} from {} to {}",
                order.amount, order.currency, order.buyer, order.seller
            ),
        },
        Leg {
            leg: "order_accepted",
            done: order.accepted,
            detail: if order.accepted {
                "accepted by the seller".into()
            } else {
                "awaiting the seller".into()
            },
        },
        Leg {
            leg: "invoiced",
            done: !invoices.is_empty(),
            detail: format!("{} of {} {} invoiced", order.invoiced, order.amount, order.currency),
        },
        Leg {
            leg: "booked",
            done: !shipments.is_empty(),
            detail: format!("{} shipment(s)", shipments.len()),
        },
    ];
    type LegTest<'t> = &'t dyn Fn(&ShipmentState) -> bool;
    let shipment_legs: [(&'static str, LegTest<'_>); 6] = [
        ("export_cleared", &|s| s.export_cleared),
        ("departed", &|s| reached(s, &[Departed, Arrived, Delivered, Received])),
        ("arrived", &|s| reached(s, &[Arrived, Delivered, Received])),
        ("import_cleared", &|s| s.import_cleared),
        ("delivered", &|s| reached(s, &[Delivered, Received])),
        ("received", &|s| s.status == Received),
    ];
    for (leg, f) in shipment_legs {
        legs.push(Leg { leg, done: all(f), detail: names(f) });
    }
    legs.push(Leg {
        leg: "paid",
        done: settled_all,
        detail: format!("{settled} of {} {} invoiced settled", order.invoiced, order.currency),
    });
    let closed = all(&|s| s.status == Received) && all(&|s| s.import_cleared) && settled_all;
    let open_legs = legs.iter().filter(|l| !l.done).map(|l| l.leg).collect();
    TradeStatus {
        order_id: order_id.into(),
        buyer: order.buyer.clone(),
        seller: order.seller.clone(),
        closed,
        legs,
        open_legs,
    }
}

type CheckResult = Result<crate::event::Event, Rejection>;

/// Events one thread of [`SharedChecks`] takes at a time (checked as one batch).
const SHARED_CHECK_CHUNK: usize = 32;

/// Stateless checks of one chunk, shared by two threads through an atomic cursor.
struct SharedChecks<'a> {
    genesis: &'a Genesis,
    events: &'a [SignedEvent],
    cursor: std::sync::atomic::AtomicUsize,
}

impl<'a> SharedChecks<'a> {
    fn new(genesis: &'a Genesis, events: &'a [SignedEvent]) -> Self {
        SharedChecks { genesis, events, cursor: std::sync::atomic::AtomicUsize::new(0) }
    }

    /// Checks chunks of [`SHARED_CHECK_CHUNK`] events until none is left; returns
    /// `(index, result)` pairs.
    fn run(&self) -> Vec<(usize, CheckResult)> {
        let mut out = Vec::new();
        loop {
            let start =
                self.cursor.fetch_add(SHARED_CHECK_CHUNK, std::sync::atomic::Ordering::Relaxed);
            let Some(chunk) = self.events.get(start..) else { return out };
            if chunk.is_empty() {
                return out;
            }
            let chunk = &chunk[..chunk.len().min(SHARED_CHECK_CHUNK)];
            let results = crate::event::check_event_batch(self.genesis, chunk);
            out.extend(results.into_iter().enumerate().map(|(j, r)| (start + j, r)));
        }
    }

    fn merge(
        len: usize,
        a: Vec<(usize, CheckResult)>,
        b: Vec<(usize, CheckResult)>,
    ) -> Vec<CheckResult> {
        let mut slots: Vec<Option<CheckResult>> = (0..len).map(|_| None).collect();
        for (i, r) in a.into_iter().chain(b) {
            slots[i] = Some(r);
        }
        // Every index below len was taken by exactly one of the two threads.
        slots
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(Rejection::new(crate::RejectCode::MalformedEvent, "event was not checked"))
                })
            })
            .collect()
    }
}

fn ref_prefix(entity: &[u8]) -> Vec<u8> {
    let len = u16::try_from(entity.len()).unwrap_or(u16::MAX);
    let mut key = Vec::with_capacity(2 + entity.len() + 12);
    key.extend_from_slice(&len.to_be_bytes());
    key.extend_from_slice(entity);
    key
}

fn decode_position(bytes: &[u8]) -> Result<(u64, u32), LedgerError> {
    if bytes.len() != 12 {
        return Err(LedgerError::IndexInconsistent("event position is not 12 bytes".into()));
    }
    let mut h = [0u8; 8];
    h.copy_from_slice(&bytes[..8]);
    let mut i = [0u8; 4];
    i.copy_from_slice(&bytes[8..]);
    Ok((u64::from_be_bytes(h), u32::from_be_bytes(i)))
}

/// An event of a block as a record for display.
pub fn record_of(block: &CertifiedBlock, index: u32) -> Result<EventRecord, LedgerError> {
    let height = block.block.header.height;
    let signed = block.block.events.get(index as usize).ok_or_else(|| {
        LedgerError::IndexInconsistent(format!(
            "index points at event {index} of block {height}, which has fewer"
        ))
    })?;
    let body: serde_json::Value =
        serde_json::from_slice(&signed.body).map_err(|e| LedgerError::CorruptLog {
            location: format!("height {height}"),
            height,
            detail: e.to_string(),
        })?;
    let text = |k: &str| body.get(k).and_then(|v| v.as_str()).unwrap_or("").to_owned();
    Ok(EventRecord {
        id: signed.id(),
        height,
        index,
        block_time_ms: block.block.header.time_ms,
        kind: text("kind"),
        author: text("author"),
        signature: signed.signature.to_hex(),
        body,
    })
}

impl StateRead for Ledger {
    fn get_state(&self, key: &[u8]) -> Result<Option<Vec<u8>>, LedgerError> {
        Ok(self.index.get(table_key(tables::STATE, key)).map_err(store_err)?.map(|v| v.to_vec()))
    }
    fn with_state<R>(
        &self,
        key: &[u8],
        f: impl FnOnce(Option<&[u8]>) -> R,
    ) -> Result<R, LedgerError> {
        Ok(f(self.index.get(table_key(tables::STATE, key)).map_err(store_err)?.as_deref()))
    }
    fn has_state(&self, key: &[u8]) -> Result<bool, LedgerError> {
        self.index.contains_key(table_key(tables::STATE, key)).map_err(store_err)
    }
}
