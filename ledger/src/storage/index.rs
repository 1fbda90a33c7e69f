//! The index behind a narrow storage trait (docs/formats.md, "Index").
//!
//! The ledger needs five things of its index: read a key, test a key, scan a key prefix in
//! order, apply one atomic batch, and make what was applied durable. [`IndexStore`] is exactly
//! that; [`SledIndex`] is the production engine (sled `=0.34.7`), and [`FaultyIndex`] wraps it
//! for tests that inject I/O errors and lost writes at chosen operations. Nothing above this
//! trait knows which engine it talks to.
//!
//! The index is derived data: every value in it can be rebuilt from the block log, which is why
//! a lost write here is survivable (the open catches the index up from the log) while a lost
//! block in the log is not.

use std::fmt::Debug;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::LedgerError;

/// One atomic set of writes.
#[derive(Debug, Default)]
pub struct IndexBatch {
    writes: Vec<(Vec<u8>, Vec<u8>)>,
}

impl IndexBatch {
    /// An empty batch with room for `n` writes.
    pub fn with_capacity(n: usize) -> IndexBatch {
        IndexBatch { writes: Vec::with_capacity(n) }
    }

    /// Adds a write.
    pub fn insert(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.writes.push((key.into(), value.into()));
    }

    /// Number of writes.
    pub fn len(&self) -> usize {
        self.writes.len()
    }

    /// Whether the batch holds no write.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }
}

/// A key-value pair from a prefix scan.
pub type ScanItem<V> = Result<(Vec<u8>, V), LedgerError>;

/// What the ledger needs of its index.
pub trait IndexStore: Debug + Send + Sync {
    /// A value as the engine hands it out (no copy where the engine can avoid one).
    type Value: AsRef<[u8]>;

    /// The value at `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Self::Value>, LedgerError>;
    /// Whether `key` has a value.
    fn contains(&self, key: &[u8]) -> Result<bool, LedgerError>;
    /// Every pair whose key starts with `prefix`, in key order.
    fn scan_prefix<'a>(
        &'a self,
        prefix: &[u8],
    ) -> Box<dyn Iterator<Item = ScanItem<Self::Value>> + 'a>;
    /// Applies every write of `batch` or none of them.
    fn apply(&self, batch: IndexBatch) -> Result<(), LedgerError>;
    /// Makes every applied batch durable.
    fn flush(&self) -> Result<(), LedgerError>;
}

fn store_err(e: sled::Error) -> LedgerError {
    LedgerError::Index(e)
}

/// The name of the sled tree that holds every table.
pub const INDEX_TREE: &str = "ledger";

/// How long opening the index waits for sled's directory lock. A ledger dropped in this
/// process releases it a moment later (sled closes its files on a background thread); a
/// running node holds it for good, and the open then fails.
const INDEX_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// The sled index (a clone is another handle on the same database).
#[derive(Clone, Debug)]
pub struct SledIndex {
    db: sled::Db,
    tree: sled::Tree,
}

/// Whether sled failed to open because another open handle holds its directory lock. sled
/// 0.34.7 (pinned exactly) reports that only as an `Other` I/O error with this text; the test
/// `verify_refuses_an_index_in_use_and_waits_for_a_dropped_one` pins it.
fn is_lock_error(e: &std::io::Error) -> bool {
    e.to_string().starts_with("could not acquire lock on")
}

impl SledIndex {
    /// Opens (creating if missing) the sled index at `path`.
    pub fn open(path: &Path) -> Result<SledIndex, LedgerError> {
        let db = open_sled(path)?;
        let tree = db.open_tree(INDEX_TREE).map_err(store_err)?;
        Ok(SledIndex { db, tree })
    }
}

/// Opens the sled database, waiting up to [`INDEX_LOCK_WAIT`] for its lock.
fn open_sled(path: &Path) -> Result<sled::Db, LedgerError> {
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
                    return Err(LedgerError::IndexInUse { path: path.display().to_string() });
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

impl IndexStore for SledIndex {
    type Value = sled::IVec;

    fn get(&self, key: &[u8]) -> Result<Option<sled::IVec>, LedgerError> {
        self.tree.get(key).map_err(store_err)
    }

    fn contains(&self, key: &[u8]) -> Result<bool, LedgerError> {
        self.tree.contains_key(key).map_err(store_err)
    }

    fn scan_prefix<'a>(
        &'a self,
        prefix: &[u8],
    ) -> Box<dyn Iterator<Item = ScanItem<sled::IVec>> + 'a> {
        Box::new(
            self.tree
                .scan_prefix(prefix)
                .map(|item| item.map(|(k, v)| (k.to_vec(), v)).map_err(store_err)),
        )
    }

    fn apply(&self, batch: IndexBatch) -> Result<(), LedgerError> {
        let mut sled_batch = sled::Batch::default();
        for (k, v) in batch.writes {
            sled_batch.insert(k, v);
        }
        fail::fail_point!("index::before-apply", crate::storage::failpoint::hit);
        self.tree.apply_batch(sled_batch).map_err(store_err)?;
        fail::fail_point!("index::after-apply", crate::storage::failpoint::hit);
        Ok(())
    }

    fn flush(&self) -> Result<(), LedgerError> {
        self.db.flush().map_err(store_err)?;
        fail::fail_point!("index::after-flush", crate::storage::failpoint::hit);
        Ok(())
    }
}

/// A fault to inject at one operation of a [`FaultyIndex`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The operation fails with an I/O error and changes nothing.
    Error,
    /// The operation reports success but its writes are lost (a write the engine acknowledged
    /// that never reached the disk before power was lost). Only meaningful for `apply`.
    LostWrite,
}

/// Which operation of a [`FaultyIndex`] fails, and how.
#[derive(Clone, Debug, Default)]
pub struct FaultPlan {
    /// The `apply` call (counted from 1) to fail.
    pub apply: Option<(u64, Fault)>,
    /// The `flush` call (counted from 1) to fail.
    pub flush: Option<u64>,
    /// Every `get` fails once this many have succeeded.
    pub get_after: Option<u64>,
}

/// A [`SledIndex`] that injects the faults of a [`FaultPlan`], for tests.
#[derive(Debug)]
pub struct FaultyIndex {
    inner: SledIndex,
    plan: FaultPlan,
    applies: AtomicU64,
    flushes: AtomicU64,
    gets: AtomicU64,
    /// How many faults were injected so far (shared with the test).
    pub injected: Arc<AtomicU64>,
}

impl FaultyIndex {
    /// Wraps the sled index at `path`.
    pub fn open(path: &Path, plan: FaultPlan) -> Result<FaultyIndex, LedgerError> {
        Ok(FaultyIndex {
            inner: SledIndex::open(path)?,
            plan,
            applies: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
            gets: AtomicU64::new(0),
            injected: Arc::default(),
        })
    }

    fn injected_error(&self, what: &str) -> LedgerError {
        self.injected.fetch_add(1, Ordering::SeqCst);
        LedgerError::Store(format!("injected fault: {what} failed"))
    }
}

impl IndexStore for FaultyIndex {
    type Value = sled::IVec;

    fn get(&self, key: &[u8]) -> Result<Option<sled::IVec>, LedgerError> {
        let n = self.gets.fetch_add(1, Ordering::SeqCst);
        if self.plan.get_after.is_some_and(|after| n >= after) {
            return Err(self.injected_error("get"));
        }
        self.inner.get(key)
    }

    fn contains(&self, key: &[u8]) -> Result<bool, LedgerError> {
        self.inner.contains(key)
    }

    fn scan_prefix<'a>(
        &'a self,
        prefix: &[u8],
    ) -> Box<dyn Iterator<Item = ScanItem<sled::IVec>> + 'a> {
        self.inner.scan_prefix(prefix)
    }

    fn apply(&self, batch: IndexBatch) -> Result<(), LedgerError> {
        let n = self.applies.fetch_add(1, Ordering::SeqCst) + 1;
        match self.plan.apply {
            Some((at, Fault::Error)) if at == n => Err(self.injected_error("apply")),
            Some((at, Fault::LostWrite)) if at == n => {
                self.injected.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
            _ => self.inner.apply(batch),
        }
    }

    fn flush(&self) -> Result<(), LedgerError> {
        let n = self.flushes.fetch_add(1, Ordering::SeqCst) + 1;
        if self.plan.flush == Some(n) {
            return Err(self.injected_error("flush"));
        }
        self.inner.flush()
    }
}
