//! The ledger on disk: the block log as the source of truth, sled as a rebuildable index.
//!
//! Data dir layout:
//!
//! ```text
//! DIR/blocks/blocks-00000000.log ...   the block log (crate::storage::blocklog)
//! DIR/index/                           sled: one tree `ledger`, tables as key prefixes
//! ```
//!
//! Commit order: append + fsync the log, then one atomic `apply_batch` of the block's index
//! writes on the one sled tree, then `flush`. A crash between the two leaves sled behind the
//! log; [`Ledger::open`] catches it up by re-validating the missing blocks from the log. sled is
//! never trusted over the log.

use std::path::{Path, PathBuf};

use tradeloop_crypto::{Hash, SigningKey};

use crate::execute::{build_block, validate_block, BuiltBlock, ValidatedBlock};
use crate::model::block::{CertifiedBlock, CommitCertificate, Tip};
use crate::model::event::SignedEvent;
use crate::model::genesis::Genesis;
use crate::rules::state::*;
use crate::storage::blocklog::{Access, BlockLog, Location, TornTail};
use crate::storage::index::{IndexBatch, IndexStore, SledIndex};
use crate::storage::schema::{ref_prefix, table_key, tables, META_GENESIS_KEY, META_TIP_KEY};
use crate::{encoding::codec, LedgerError, Rejection};

/// What appending local candidates produced: the committed blocks (none if no candidate was
/// valid; more than one if they did not fit in one block) and the rejected candidates by index.
pub type LocalAppend = (Vec<CertifiedBlock>, Vec<(usize, Rejection)>);

/// What [`Ledger::prepare_block`] gives: the block, its kept execution, and the candidates the
/// checks or the rules refused (by index, with the reason).
pub type PreparedBuild = (crate::model::block::Block, Prepared, Vec<(usize, Rejection)>);

/// Called after each chunk of [`Ledger::append_local_stream`] with the chunk, the blocks it
/// became, and its rejections.
pub type OnBlock<'a> = dyn FnMut(&[SignedEvent], &[CertifiedBlock], Vec<(usize, Rejection)>) + 'a;

/// The ledger of one node: the block log and an index (sled unless a test passes another
/// [`IndexStore`]).
#[derive(Debug)]
pub struct Ledger<S: IndexStore = SledIndex> {
    genesis: Genesis,
    dir: PathBuf,
    log: BlockLog,
    index: S,
    tip: Tip,
    /// Blocks replayed from the log into the index when opening.
    pub caught_up_on_open: u64,
    /// Bytes of torn tail truncated from the log when opening (0 for a read-only open).
    pub torn_tail_truncated: u64,
    /// The torn tail found on open: cut by a writer, left alone (and not read) read-only.
    pub torn_tail: Option<TornTail>,
    /// The private copy of the index a read-only open reads, held so that it is deleted when
    /// the ledger is dropped (not before).
    _snapshot: Option<tempfile::TempDir>,
    /// Set when a commit failed after its block reached the log: the in-memory tip and the
    /// index may now disagree with the log, so every further commit is refused until the data
    /// dir is reopened (which catches the index up from the log).
    failed_commit: bool,
    /// Committed state read recently, in front of sled (see [`StateCache`]).
    state_cache: StateCache,
    /// Signatures already verified by this process (a node's consensus votes), consulted
    /// when a commit certificate is checked ([`Ledger::remember_signatures`]).
    verified: Option<std::sync::Arc<tradeloop_crypto::VerifiedSignatures>>,
}

/// Most state keys kept by a ledger's [`StateCache`]. State values are small (an order's,
/// a shipment's or a party's record, typically under 300 bytes), so this is tens of MB at
/// most.
pub const STATE_CACHE_ENTRIES: usize = 200_000;

/// Committed state in memory in front of the sled index: the rules read a handful of state
/// keys per event, and a node runs them on every event several times (admission, the
/// mempool's recheck after each commit, block validation), which through sled cost more than
/// the signature checks. The cache holds what sled holds (present or absent) for the keys
/// read or written recently: filled on a read, updated with a block's state writes only after
/// sled took the block's batch. It keeps two generations of at most half of
/// [`STATE_CACHE_ENTRIES`] each: when the current one is full it becomes the previous one (the
/// older is dropped), and a key found in the previous generation moves back to the current.
/// So a full cache forgets the keys not used for a generation, never its whole working set at
/// once (emptying it made every node slow down at the same height, all at once). The block log
/// and sled stay the truth; a reopened ledger starts with an empty cache.
#[derive(Debug, Default)]
struct StateCache {
    entries: std::sync::Mutex<Generations>,
}

/// State key -> its committed value, or `None` for a key known to be absent. foldhash (seeded
/// per process, so keys chosen by a chain's participants cannot aim at one bucket) instead of
/// SipHash: a node looks each key up at admission, in the block and on recheck.
type CachedState =
    std::collections::HashMap<Vec<u8>, Option<std::sync::Arc<[u8]>>, foldhash::fast::RandomState>;

/// The cache's two generations.
#[derive(Debug, Default)]
struct Generations {
    current: CachedState,
    previous: CachedState,
}

impl Generations {
    fn insert(&mut self, key: Vec<u8>, value: Option<std::sync::Arc<[u8]>>) {
        if self.current.len() >= STATE_CACHE_ENTRIES / 2 {
            // The oldest generation goes; its table is reused for the new one.
            let mut emptied = std::mem::take(&mut self.previous);
            emptied.clear();
            self.previous = std::mem::replace(&mut self.current, emptied);
        }
        self.current.insert(key, value);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }
}

impl StateCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Generations> {
        // A panic elsewhere cannot leave the maps half-written: every change completes under
        // the lock without calling out.
        self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The value under `key`, from the cache or else from `load` (then cached).
    fn get(
        &self,
        key: &[u8],
        load: impl FnOnce() -> Result<Option<Vec<u8>>, LedgerError>,
    ) -> Result<Option<std::sync::Arc<[u8]>>, LedgerError> {
        {
            let mut cache = self.lock();
            if let Some(hit) = cache.current.get(key) {
                return Ok(hit.clone());
            }
            if let Some(hit) = cache.previous.remove(key) {
                cache.insert(key.to_vec(), hit.clone());
                return Ok(hit);
            }
        }
        let value: Option<std::sync::Arc<[u8]>> = load()?.map(Into::into);
        self.lock().insert(key.to_vec(), value.clone());
        Ok(value)
    }

    /// Records writes that sled now holds (only keys already cached are updated; others are
    /// read from sled when first needed).
    fn written(&self, writes: &std::collections::BTreeMap<Vec<u8>, Vec<u8>>) {
        let mut cache = self.lock();
        for (k, v) in writes {
            let slot = match cache.current.get_mut(k.as_slice()) {
                Some(slot) => Some(slot),
                None => cache.previous.get_mut(k.as_slice()),
            };
            if let Some(slot) = slot {
                *slot = Some(v.as_slice().into());
            }
        }
    }
}

/// Checks that `dir` is a data dir (it has `blocks/`), without creating anything.
pub(crate) fn check_data_dir(dir: &Path) -> Result<(), LedgerError> {
    if dir.join("blocks").is_dir() {
        Ok(())
    } else {
        Err(LedgerError::NotADataDir(dir.display().to_string()))
    }
}

/// Copies the index at `index_dir` into a private temporary directory, holding a shared lock
/// on sled's lock file meanwhile: a running node (which holds it exclusively) makes this fail
/// instead of yielding a torn copy, and no node can start while the copy is taken. Nothing in
/// `index_dir` is written. The copy lives under the system temp dir (`TMPDIR`).
pub(crate) fn snapshot_index(index_dir: &Path) -> Result<tempfile::TempDir, LedgerError> {
    use fs2::FileExt;
    let lock_path = index_dir.join("db");
    let lock = std::fs::File::open(&lock_path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            LedgerError::IndexInconsistent(format!(
                "the data dir has no complete index ({} is missing)",
                lock_path.display()
            ))
        } else {
            LedgerError::io(format!("cannot open {}", lock_path.display()), e)
        }
    })?;
    let started = std::time::Instant::now();
    while FileExt::try_lock_shared(&lock).is_err() {
        // A ledger dropped in this process lets go of its lock a moment later.
        if started.elapsed() >= std::time::Duration::from_secs(1) {
            return Err(LedgerError::IndexInUse { path: index_dir.display().to_string() });
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let copy = tempfile::Builder::new()
        .prefix("tradeloop-index-")
        .tempdir()
        .map_err(|e| LedgerError::io("cannot create a temporary directory for the index", e))?;
    copy_tree(index_dir, copy.path())?;
    drop(lock);
    Ok(copy)
}

fn copy_tree(from: &Path, to: &Path) -> Result<(), LedgerError> {
    let err = |what: &Path| {
        let shown = what.display().to_string();
        move |e| LedgerError::io(format!("cannot copy the index ({shown})"), e)
    };
    std::fs::create_dir_all(to).map_err(err(to))?;
    for entry in std::fs::read_dir(from).map_err(err(from))? {
        let entry = entry.map_err(err(from))?;
        let target = to.join(entry.file_name());
        let kind = entry.file_type().map_err(err(&entry.path()))?;
        if kind.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target).map_err(err(&entry.path()))?;
            // A read-only original gives a read-only copy; the copy is ours to write.
            let mut perms = std::fs::metadata(&target).map_err(err(&target))?.permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perms.set_readonly(false);
            std::fs::set_permissions(&target, perms).map_err(err(&target))?;
        }
    }
    Ok(())
}

/// What [`Ledger::reindex`] did.
#[derive(Clone, Debug, Default)]
pub struct ReindexReport {
    /// The height the old index recorded as committed, if it could be read.
    pub old_index_tip: Option<u64>,
    /// What `--discard-from` removed.
    pub discarded: Option<crate::storage::blocklog::Discarded>,
}

impl Ledger<SledIndex> {
    /// Opens (or creates) the data dir for the chain of `genesis`, as its one writer.
    pub fn open(dir: &Path, genesis: Genesis) -> Result<Ledger, LedgerError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| LedgerError::io(format!("cannot create {}", dir.display()), e))?;
        // sled takes an exclusive lock on its directory, so a second process fails here before
        // touching the log.
        let index = SledIndex::open(&dir.join("index"))?;
        Ledger::open_inner(dir, genesis, index, Access::Writer, None, 0)
    }

    /// [`Ledger::open`] for a node that knows from elsewhere (its sign-state: a validator signs
    /// at height h only after committing h - 1) that at least `known_committed` blocks were
    /// committed: a damaged frame at or below that height is corruption, never a torn tail,
    /// even if the index is behind, and a log shorter than that is refused (`LOG_TRUNCATED`).
    pub fn open_known_committed(
        dir: &Path,
        genesis: Genesis,
        known_committed: u64,
    ) -> Result<Ledger, LedgerError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| LedgerError::io(format!("cannot create {}", dir.display()), e))?;
        let index = SledIndex::open(&dir.join("index"))?;
        Ledger::open_inner(dir, genesis, index, Access::Writer, None, known_committed)
    }

    /// Opens a data dir for reading only (the read commands and audits): nothing in `dir` is
    /// created, written, truncated or repaired, so it works on a read-only copy. The index is
    /// read from a private copy (which also takes any catch-up from the log); a torn tail is
    /// reported in [`Ledger::torn_tail`] and left in place; any damage is an error.
    pub fn open_read_only(dir: &Path, genesis: Genesis) -> Result<Ledger, LedgerError> {
        check_data_dir(dir)?;
        let index_dir = dir.join("index");
        if !index_dir.is_dir() {
            return Err(LedgerError::IndexInconsistent(format!(
                "the data dir has no index ({} is missing)",
                index_dir.display()
            )));
        }
        let snapshot = snapshot_index(&index_dir)?;
        let index = SledIndex::open(snapshot.path())?;
        Ledger::open_inner(dir, genesis, index, Access::ReadOnly, Some(snapshot), 0)
    }

    /// Rebuilds the index from the block log, re-validating every block. Refuses (changing
    /// nothing) when the log is damaged or shorter than the old index recorded as committed,
    /// unless `discard_from` names the first height to drop: those blocks (and any damage after
    /// them) are removed from the log and saved under `DIR/discarded/`.
    pub fn reindex(
        dir: &Path,
        genesis: Genesis,
        discard_from: Option<u64>,
    ) -> Result<(Ledger, ReindexReport), LedgerError> {
        check_data_dir(dir)?;
        let index_dir = dir.join("index");
        let mut report = ReindexReport::default();
        if index_dir.exists() {
            match SledIndex::open(&index_dir) {
                Ok(old) => {
                    report.old_index_tip = old
                        .get(META_TIP_KEY)
                        .ok()
                        .flatten()
                        .and_then(|b| codec::decode::<Tip>(&b).ok())
                        .map(|t| t.height);
                }
                Err(e @ LedgerError::IndexInUse { .. }) => return Err(e),
                Err(_) => {}
            }
        }
        let blocks = dir.join("blocks");
        let mut committed = report.old_index_tip.unwrap_or(0);
        if let Some(height) = discard_from {
            report.discarded =
                Some(BlockLog::discard_from(&blocks, height, &dir.join("discarded"))?);
            committed = committed.min(height - 1);
        }
        let (log, _) = BlockLog::open(&blocks, Access::ReadOnly, committed)?;
        if log.len() < committed {
            return Err(LedgerError::LogTruncated { log_height: log.len(), committed });
        }
        drop(log);
        if index_dir.exists() {
            std::fs::remove_dir_all(&index_dir).map_err(|e| {
                LedgerError::io(format!("cannot remove {}", index_dir.display()), e)
            })?;
        }
        let ledger = Ledger::open(dir, genesis)?;
        Ok((ledger, report))
    }
}

impl<S: IndexStore> Ledger<S> {
    /// Opens the data dir as its writer over a given index (tests pass a fault-injecting one).
    pub fn open_with_index(
        dir: &Path,
        genesis: Genesis,
        index: S,
    ) -> Result<Ledger<S>, LedgerError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| LedgerError::io(format!("cannot create {}", dir.display()), e))?;
        Ledger::open_inner(dir, genesis, index, Access::Writer, None, 0)
    }

    fn open_inner(
        dir: &Path,
        genesis: Genesis,
        index: S,
        access: Access,
        snapshot: Option<tempfile::TempDir>,
        known_committed: u64,
    ) -> Result<Ledger<S>, LedgerError> {
        // The index is read first: what it records as committed decides what in the log may
        // be a torn tail. Nothing is written before every check has passed.
        match index.get(META_GENESIS_KEY)? {
            Some(g) if g.as_ref() != genesis.hash.0 => {
                return Err(LedgerError::WrongChain {
                    expected: genesis.hash.to_hex(),
                    found: hex::encode(g.as_ref()),
                })
            }
            _ => {}
        }
        let tip = match index.get(META_TIP_KEY)? {
            Some(bytes) => codec::decode::<Tip>(bytes.as_ref()).map_err(|e| {
                LedgerError::IndexInconsistent(format!("tip record does not decode: {e}"))
            })?,
            None => Tip::genesis(&genesis),
        };
        let committed = tip.height.max(known_committed);
        let (log, report) = BlockLog::open(&dir.join("blocks"), access, committed)?;
        if committed > log.len() {
            return Err(LedgerError::LogTruncated { log_height: log.len(), committed });
        }
        let torn_tail_truncated = match access {
            Access::Writer => report.torn_tail_bytes(),
            Access::ReadOnly => 0,
        };
        let mut ledger = Ledger {
            index,
            tip: Tip::genesis(&genesis),
            dir: dir.to_path_buf(),
            genesis,
            log,
            caught_up_on_open: 0,
            torn_tail_truncated,
            torn_tail: report.torn_tail,
            _snapshot: snapshot,
            failed_commit: false,
            state_cache: StateCache::default(),
            verified: None,
        };
        ledger.check_and_catch_up(tip)?;
        Ok(ledger)
    }

    fn check_and_catch_up(&mut self, tip: Tip) -> Result<(), LedgerError> {
        if self.index.get(META_GENESIS_KEY)?.is_none() {
            let mut batch = IndexBatch::with_capacity(1);
            batch.insert(META_GENESIS_KEY, self.genesis.hash.0.to_vec());
            self.index.apply(batch)?;
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
        if tip.height > 0 {
            let block = self.log.read(tip.height)?;
            let stored_loc =
                self.index.get(&table_key(tables::BLOCKS, &tip.height.to_be_bytes()))?;
            let loc_ok = stored_loc
                .and_then(|b| codec::decode::<Location>(b.as_ref()).ok())
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

    fn refuse_after_failed_commit(&self) -> Result<(), LedgerError> {
        if self.failed_commit {
            return Err(LedgerError::Store(
                "an earlier commit failed after its block was written to the log; reopen the \
                 data dir (it catches the index up from the log) before committing more"
                    .into(),
            ));
        }
        Ok(())
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

    /// The index (sled unless a test passes another [`IndexStore`]).
    pub fn index(&self) -> &S {
        &self.index
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
    pub fn validate_proposal(
        &self,
        block: &crate::model::block::Block,
    ) -> Result<Hash, LedgerError> {
        crate::execute::validate_proposal(&self.genesis, self, &self.tip, block).map(|v| v.hash)
    }

    /// Validates a certified block fully and commits it (catch-up, sync, and local chains).
    pub fn commit_block(&mut self, certified: &CertifiedBlock) -> Result<Hash, LedgerError> {
        let checks = crate::execute::check_events(&self.genesis, &certified.block.events);
        self.commit_block_checked(certified, checks)
    }

    /// [`Ledger::validate_proposal`] with the events' stateless checks already run
    /// (`checks[i]` belongs to event `i`; see [`crate::execute::validate_proposal_checked`]).
    pub fn validate_proposal_checked(
        &self,
        block: &crate::model::block::Block,
        checks: Vec<CheckResult>,
    ) -> Result<Hash, LedgerError> {
        crate::execute::validate_proposal_checked(
            &self.genesis,
            self,
            &self.tip,
            block,
            checks,
            &[],
        )
        .map(|v| v.hash)
    }

    /// Lets [`Ledger::commit_prepared`] answer a commit certificate's signatures from `memo`,
    /// the signatures this process verified already (a member node's consensus votes: the
    /// precommits of a certificate arrived as votes and were checked then). A signature not
    /// in `memo` is verified as always.
    pub fn remember_signatures(
        &mut self,
        memo: std::sync::Arc<tradeloop_crypto::VerifiedSignatures>,
    ) {
        self.verified = Some(memo);
    }

    /// [`Ledger::validate_proposal_checked`], keeping the execution for the block's commit: a
    /// validator that voted for a block commits it with [`Ledger::commit_prepared`] without
    /// executing its events a second time.
    /// `memos` are the events' recorded evaluations, reused where they still hold
    /// ([`crate::execute::Memos`]).
    pub fn prepare_proposal(
        &self,
        block: &crate::model::block::Block,
        checks: Vec<CheckResult>,
        memos: &crate::execute::Memos<'_>,
    ) -> Result<Prepared, LedgerError> {
        let validated = crate::execute::validate_proposal_checked(
            &self.genesis,
            self,
            &self.tip,
            block,
            checks,
            memos,
        )?;
        let ids = validated.events.iter().map(|e| e.id).collect();
        Ok(Prepared {
            parent: self.tip.clone(),
            hash: validated.hash,
            ids,
            outcome: validated.outcome,
        })
    }

    /// Builds the next block from checked candidates (see
    /// [`crate::execute::build_block_checked`]) and keeps its execution for its commit;
    /// `memos` as for [`Ledger::prepare_proposal`]. Also returns the candidates the checks or
    /// the rules refused, by index into `candidates`, with the reason.
    pub fn prepare_block(
        &self,
        candidates: &[SignedEvent],
        checks: Vec<CheckResult>,
        memos: &crate::execute::Memos<'_>,
        time_ms: u64,
        proposer: &SigningKey,
    ) -> Result<PreparedBuild, LedgerError> {
        let built = crate::execute::build_block_checked(
            &self.genesis,
            self,
            &self.tip,
            candidates,
            checks,
            memos,
            time_ms,
            proposer,
        )?;
        let prepared = Prepared {
            parent: self.tip.clone(),
            hash: built.hash,
            ids: built.ids,
            outcome: built.outcome,
        };
        Ok((built.block, prepared, built.rejected))
    }

    /// Commits a certified block whose body was executed by [`Ledger::prepare_proposal`] or
    /// [`Ledger::prepare_block`] against the current tip: the certificate is checked here,
    /// then the block is written to the log (fsync) and the index with the kept execution.
    /// A preparation for another block, or made against another tip, is refused
    /// (`INVALID_BLOCK`); the caller then commits with [`Ledger::commit_block_checked`].
    pub fn commit_prepared(
        &mut self,
        certified: &CertifiedBlock,
        prepared: Prepared,
    ) -> Result<Hash, LedgerError> {
        self.refuse_after_failed_commit()?;
        let height = certified.block.header.height;
        let invalid = |detail: String| LedgerError::InvalidBlock { height, detail };
        if prepared.parent != self.tip {
            return Err(invalid(format!(
                "prepared on top of height {} but the tip is height {}",
                prepared.parent.height, self.tip.height
            )));
        }
        let hash = certified.block.header.hash();
        if prepared.hash != hash {
            return Err(invalid(format!(
                "prepared for block {} but this block is {hash}",
                prepared.hash
            )));
        }
        certified
            .certificate
            .verify_with(
                &self.genesis.hash,
                &self.genesis.validators,
                height,
                &hash,
                self.verified.as_deref(),
            )
            .map_err(|e| invalid(format!("commit certificate invalid: {e}")))?;
        let loc = self.log.append(certified)?;
        self.index_outcome(certified, hash, &prepared.ids, &prepared.outcome, loc)?;
        Ok(hash)
    }

    /// [`Ledger::commit_block`] with the events' stateless checks already run: everything
    /// else (header, certificate, rules, app hash) is checked here, then the block is written
    /// to the log (fsync) and the index.
    pub fn commit_block_checked(
        &mut self,
        certified: &CertifiedBlock,
        checks: Vec<CheckResult>,
    ) -> Result<Hash, LedgerError> {
        self.refuse_after_failed_commit()?;
        let validated = crate::execute::validate_checked(
            &self.genesis,
            &*self,
            &self.tip,
            certified,
            checks,
            crate::execute::Refs::Track,
        )?;
        let loc = self.log.append(certified)?;
        self.index_block(certified, &validated, loc)?;
        Ok(validated.hash)
    }

    /// Builds, self-certifies and commits blocks of `candidates` on a one-validator chain (one
    /// block, or more if they do not fit in one). Returns the committed blocks and the
    /// rejections by candidate index.
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
        checked: Vec<Result<crate::model::event::Event, Rejection>>,
        time_ms: u64,
        validator: &SigningKey,
    ) -> Result<LocalAppend, LedgerError> {
        let mut blocks = Vec::new();
        let mut rejected = Vec::new();
        let mut pending: Vec<usize> = (0..candidates.len()).collect();
        let mut checked: Vec<Option<Result<crate::model::event::Event, Rejection>>> =
            checked.into_iter().map(Some).collect();
        while !pending.is_empty() {
            let round: Vec<SignedEvent> = pending.iter().map(|&i| candidates[i].clone()).collect();
            let round_checked = pending
                .iter()
                .map(|&i| {
                    checked[i].take().unwrap_or_else(|| {
                        Err(Rejection::new(crate::RejectCode::MalformedEvent, "checked twice"))
                    })
                })
                .collect();
            let (block, round_rejected, deferred) =
                self.append_one_local(&round, round_checked, time_ms, validator)?;
            rejected.extend(round_rejected.into_iter().map(|(j, r)| (pending[j], r)));
            let Some(block) = block else {
                // Nothing fitted at all (cannot happen within the genesis bounds): say so
                // rather than drop the candidates.
                for &j in &deferred {
                    rejected.push((
                        pending[j],
                        Rejection::new(
                            crate::RejectCode::EventTooLarge,
                            "the event does not fit in a block of this chain",
                        ),
                    ));
                }
                break;
            };
            blocks.push(block);
            // What did not fit goes into the next block; its checks are still valid.
            let next: Vec<usize> = deferred.iter().map(|&j| pending[j]).collect();
            for (&j, &i) in deferred.iter().zip(&next) {
                checked[i] = Some(crate::model::event::check_event(&self.genesis, &round[j]));
            }
            pending = next;
        }
        rejected.sort_by_key(|(i, _)| *i);
        Ok((blocks, rejected))
    }

    /// One block of [`Ledger::append_local_checked`]: the block (None if no candidate was
    /// valid), the rejections and the deferred candidates, by index into `candidates`.
    #[allow(clippy::type_complexity)]
    fn append_one_local(
        &mut self,
        candidates: &[SignedEvent],
        checked: Vec<Result<crate::model::event::Event, Rejection>>,
        time_ms: u64,
        validator: &SigningKey,
    ) -> Result<(Option<CertifiedBlock>, Vec<(usize, Rejection)>, Vec<usize>), LedgerError> {
        self.refuse_after_failed_commit()?;
        let built = crate::execute::build_block_checked(
            &self.genesis,
            &*self,
            &self.tip,
            candidates,
            checked,
            &[],
            time_ms,
            validator,
        )?;
        if built.block.events.is_empty() {
            return Ok((None, built.rejected, built.deferred));
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
        Ok((Some(certified), built.rejected, built.deferred))
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
            let (blocks, rejected) = appended?;
            on_block(&chunk, &blocks, rejected);
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
        let tip_bytes = codec::encode_small(&tip);
        let loc_bytes = codec::encode_small(&loc);
        // One atomic batch: after a crash the index holds the whole block or none of it.
        let mut batch = IndexBatch::with_capacity(2 + ids.len() * 3 + outcome.writes.len());
        batch.insert(table_key(tables::BLOCKS, &height.to_be_bytes()), loc_bytes);
        for (index, id) in ids.iter().enumerate() {
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            let mut position = [0u8; 12];
            position[..8].copy_from_slice(&height.to_be_bytes());
            position[8..].copy_from_slice(&index.to_be_bytes());
            batch.insert(table_key(tables::EVENTS, &id.0), position.to_vec());
            for entity in &outcome.refs[index as usize] {
                let mut key = table_key(tables::REFS, &ref_prefix(entity));
                key.extend_from_slice(&position);
                batch.insert(key, id.0.to_vec());
            }
        }
        for (k, v) in &outcome.writes {
            batch.insert(table_key(tables::STATE, k), v.clone());
        }
        batch.insert(META_TIP_KEY, tip_bytes);
        let durable = self.index.apply(batch).and_then(|()| self.index.flush());
        if let Err(e) = durable {
            self.failed_commit = true;
            return Err(e);
        }
        self.state_cache.written(&outcome.writes);
        self.tip = tip;
        Ok(())
    }

    /// The certified block at a height.
    pub fn block(&self, height: u64) -> Result<CertifiedBlock, LedgerError> {
        self.log.read(height)
    }
}

type CheckResult = Result<crate::model::event::Event, Rejection>;

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
            let results = crate::model::event::check_event_batch(self.genesis, chunk);
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

/// A block executed against a tip and not yet committed: what [`Ledger::commit_prepared`]
/// writes to the index. Made only by [`Ledger::prepare_proposal`] and
/// [`Ledger::prepare_block`], so it always holds a real execution.
#[derive(Debug)]
pub struct Prepared {
    parent: Tip,
    hash: Hash,
    ids: Vec<Hash>,
    outcome: crate::rules::BlockOutcome,
}

impl Prepared {
    /// The block's hash.
    pub fn hash(&self) -> Hash {
        self.hash
    }

    /// The ids of the block's events, in block order.
    pub fn ids(&self) -> &[Hash] {
        &self.ids
    }

    /// The tip it was executed on.
    pub fn parent(&self) -> &Tip {
        &self.parent
    }

    /// Every state key the block writes (a mempool's "what this commit changed").
    pub fn written_keys(&self) -> impl Iterator<Item = &[u8]> {
        self.outcome.writes.keys().map(Vec::as_slice)
    }
}

impl<S: IndexStore> StateRead for Ledger<S> {
    fn get_state(&self, key: &[u8]) -> Result<Option<Vec<u8>>, LedgerError> {
        Ok(self.cached_state(key)?.map(|v| v.to_vec()))
    }
    fn with_state<R>(
        &self,
        key: &[u8],
        f: impl FnOnce(Option<&[u8]>) -> R,
    ) -> Result<R, LedgerError> {
        Ok(f(self.cached_state(key)?.as_deref()))
    }
    fn has_state(&self, key: &[u8]) -> Result<bool, LedgerError> {
        Ok(self.cached_state(key)?.is_some())
    }
}

impl<S: IndexStore> Ledger<S> {
    /// Committed state under `key`, through the [`StateCache`].
    fn cached_state(&self, key: &[u8]) -> Result<Option<std::sync::Arc<[u8]>>, LedgerError> {
        self.state_cache.get(key, || {
            Ok(self.index.get(&table_key(tables::STATE, key))?.map(|v| v.as_ref().to_vec()))
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn key(i: usize) -> Vec<u8> {
        format!("k{i}").into_bytes()
    }

    /// Reads `key(i)` through the cache; whether sled (here: a counter) was asked.
    fn read(cache: &StateCache, i: usize, loads: &mut usize) -> Option<std::sync::Arc<[u8]>> {
        cache
            .get(&key(i), || {
                *loads += 1;
                Ok(Some(format!("v{i}").into_bytes()))
            })
            .unwrap()
    }

    /// A full cache forgets the keys unused for a generation, never its whole working set:
    /// a key read again in the next generation stays, writes reach either generation, and the
    /// cache never holds more than `STATE_CACHE_ENTRIES`.
    #[test]
    fn the_state_cache_keeps_what_was_used_in_the_last_generation() {
        let cache = StateCache::default();
        let half = STATE_CACHE_ENTRIES / 2;
        let mut loads = 0;
        for i in 0..half {
            read(&cache, i, &mut loads);
        }
        assert_eq!(loads, half);
        // The next generation starts: key 0 is in the previous one now.
        read(&cache, half, &mut loads);
        assert_eq!(cache.lock().previous.len(), half);
        let mut writes = std::collections::BTreeMap::new();
        writes.insert(key(1), b"written".to_vec());
        cache.written(&writes);
        let before = loads;
        assert_eq!(read(&cache, 0, &mut loads).unwrap().as_ref(), b"v0");
        assert_eq!(read(&cache, 1, &mut loads).unwrap().as_ref(), b"written");
        assert_eq!(loads, before, "keys of the previous generation are hits");
        // Fill a whole further generation: keys 0 and 1 were used in it (moved to it), key 2
        // was not and is forgotten.
        for i in half + 1..2 * half + 1 {
            read(&cache, i, &mut loads);
        }
        read(&cache, 2 * half + 1, &mut loads);
        assert!(cache.lock().len() <= STATE_CACHE_ENTRIES);
        let before = loads;
        read(&cache, 0, &mut loads);
        assert_eq!(read(&cache, 1, &mut loads).unwrap().as_ref(), b"written");
        assert_eq!(loads, before, "keys used in the last generation are kept");
        read(&cache, 2, &mut loads);
        assert_eq!(loads, before + 1, "a key unused for a generation is read from sled again");
    }
}
