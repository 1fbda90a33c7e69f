//! The mempool: events accepted by this node and not yet in a block (docs/architecture.md,
//! "The node runtime: from submit to commit").
//!
//! Admission of an event this node's own clients submit ([`Mempool::admit`]) is the stateless
//! check (signature, envelope, fields) plus the rules against the tip and every checked
//! pending event before it, so that the client hears a rule's refusal at once. An event
//! relayed by a peer ([`Mempool::relay`]) gets the stateless check only: the node that took
//! it from its client ran the rules, and every node runs them again on any block that holds
//! it (as `append` does), so running them a third time at admission would only cost CPU. A
//! relayed event is *unchecked* until its block: a proposer's build leaves out the relayed
//! events the rules refuse and evicts them ([`Mempool::evict_refused`]), and a relayed event
//! still pending [`RELAYED_CHECK_AFTER_COMMITS`] commits after it came, or whose time leaves
//! the skew window, is run through the rules at that commit (a member node that never
//! proposes evicts it then). So the pool in arrival order is no longer valid as a whole; the
//! checked events are valid against the tip and the checked events before them.
//!
//! An event's signature is verified once per node: the checked event is kept beside the
//! envelope and reused when this node builds or validates a block that holds it. Bounds by
//! count and bytes; a full pool answers "full" and the caller says "retry" — an accepted event
//! is never dropped silently, only by a commit that includes it or makes it invalid, or a build
//! that refuses it (reported by [`Mempool::on_commit`] and [`Mempool::evict_refused`]).
//!
//! Each checked pending event keeps its [`Footprint`]: the state keys its admission read and what it
//! wrote. The pending writes are kept by key and version ([`Versions`]: for each key, the
//! values pending events wrote, tagged with their arrival number), so an event is evaluated
//! against the tip and exactly the events that arrived before it, wherever it is in the pool.
//! After a commit, only the events that read or wrote a key the block (or an event evicted or
//! changed before them) wrote, or whose time left the skew window, are run through the rules
//! again; the others are not touched at all. The rules are deterministic, so this gives
//! exactly the verdicts of re-running every pending event (the full recheck, kept for a commit
//! whose writes are not known, and checked against it by a property test).
//! Whether an event meets a changed key is tested on 64-bit digests of the keys, kept beside
//! each footprint: two keys with one digest only make an event be re-checked needlessly.
//!
//! Pure and synchronous: the chain worker owns it next to the ledger.

use std::collections::{BTreeMap, VecDeque};

use foldhash::{HashMap, HashMapExt, HashSet};

use tradeloop_crypto::Hash;
use tradeloop_ledger::rules::state::StateRead;
use tradeloop_ledger::rules::{ApplyError, BlockExecutor, Footprint};
use tradeloop_ledger::{Event, Genesis, LedgerError, RejectCode, Rejection, SignedEvent};

use crate::chain::notice::Committed;

/// The pending events' state writes: key -> the values written to it, each tagged with its
/// writer's arrival number, in arrival order (a key is written by a handful of pending events
/// at most: an entity's next steps).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Versions(HashMap<Vec<u8>, Vec<(u64, Vec<u8>)>>);

impl Versions {
    /// The value pending under `key` for an event arriving as `seq`: the last written by an
    /// event that arrived before it.
    fn before(&self, key: &[u8], seq: u64) -> Option<&[u8]> {
        let versions = self.0.get(key)?;
        versions.iter().rev().find(|(s, _)| *s < seq).map(|(_, v)| v.as_slice())
    }

    /// Records the writes of the event that arrived as `seq`.
    fn insert(&mut self, seq: u64, footprint: &Footprint) {
        for (key, value) in footprint.writes() {
            // A key already pending (an entity's next step) is not copied again.
            let versions = match self.0.get_mut(key) {
                Some(versions) => versions,
                None => self.0.entry(key.to_vec()).or_default(),
            };
            // Admission appends the newest; a recheck rewrites one in the middle.
            let at = versions.partition_point(|(s, _)| *s < seq);
            match versions.get_mut(at) {
                Some(slot) if slot.0 == seq => slot.1 = value.to_vec(),
                _ => versions.insert(at, (seq, value.to_vec())),
            }
        }
    }

    /// Forgets the writes of the event that arrived as `seq`.
    fn remove(&mut self, seq: u64, footprint: &Footprint) {
        for key in footprint.write_keys() {
            let Some(versions) = self.0.get_mut(key) else { continue };
            versions.retain(|(s, _)| *s != seq);
            if versions.is_empty() {
                self.0.remove(key);
            }
        }
    }
}

/// The state an event arriving as `seq` is evaluated against: the committed tip under the
/// writes of the pending events that arrived before it.
struct PendingView<'a, S: StateRead> {
    base: &'a S,
    versions: &'a Versions,
    seq: u64,
}

impl<S: StateRead> StateRead for PendingView<'_, S> {
    fn get_state(&self, key: &[u8]) -> Result<Option<Vec<u8>>, LedgerError> {
        match self.versions.before(key, self.seq) {
            Some(value) => Ok(Some(value.to_vec())),
            None => self.base.get_state(key),
        }
    }

    fn with_state<R>(
        &self,
        key: &[u8],
        f: impl FnOnce(Option<&[u8]>) -> R,
    ) -> Result<R, LedgerError> {
        match self.versions.before(key, self.seq) {
            Some(value) => Ok(f(Some(value))),
            None => self.base.with_state(key, f),
        }
    }

    fn has_state(&self, key: &[u8]) -> Result<bool, LedgerError> {
        match self.versions.before(key, self.seq) {
            Some(_) => Ok(true),
            None => self.base.has_state(key),
        }
    }
}

/// A state key's 64-bit digest, for the recheck's "does this event meet a changed key" test.
/// Two keys with the same digest only make an event be re-checked needlessly: the recheck is
/// exact wherever it runs, so a collision costs time, never a wrong verdict.
fn key_digest(key: &[u8]) -> u64 {
    use std::hash::BuildHasher;
    foldhash::fast::FixedState::with_seed(0x7472_6164_656c_6f6f).hash_one(key)
}

/// The state keys a committed block wrote, as digests ([`Mempool::on_commit`]): taken from
/// the block's kept execution before the commit consumes it, without copying the keys.
#[derive(Clone, Debug, Default)]
pub struct WrittenKeys(HashSet<u64>);

impl WrittenKeys {
    /// The digests of `keys`.
    pub fn of<'k>(keys: impl IntoIterator<Item = &'k [u8]>) -> WrittenKeys {
        WrittenKeys(keys.into_iter().map(key_digest).collect())
    }
}

/// The digests of every key a footprint read or wrote.
fn key_digests(footprint: &Footprint) -> Vec<u64> {
    footprint.keys().map(key_digest).collect()
}

/// Applies `event` as the pending event arriving as `seq`, recording its footprint.
fn evaluate<S: StateRead>(
    genesis: &Genesis,
    state: &S,
    versions: &Versions,
    now_ms: u64,
    seq: u64,
    event: &Event,
) -> Result<Footprint, ApplyError> {
    let view = PendingView { base: state, versions, seq };
    BlockExecutor::for_pool(genesis, &view, now_ms).record(event)
}

/// Bounds of one mempool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MempoolLimits {
    /// Most events pending.
    pub max_events: usize,
    /// Most bytes of pending events (their encoded size).
    pub max_bytes: u64,
}

/// What admission decided for one event: the pool's verdict, and the chain worker's answer
/// to a submission ([`crate::chain::Admitted`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    /// In the pool now.
    Accepted,
    /// Already in the pool (accepted earlier, by this node or through gossip).
    AlreadyPending,
    /// Already in a committed block, there. The pool itself answers `Rejected` with
    /// `DUPLICATE_EVENT` for such an event; the chain worker, which can read the index, locates
    /// it and answers this instead.
    AlreadyCommitted(Committed),
    /// The pool is at its bound; the event was not taken and may be sent again later.
    Full,
    /// Refused by the checks or the rules.
    Rejected(Rejection),
}

/// Commits a relayed event may stay pending unchecked: at the 16th commit after it came, it is
/// run through the rules (and evicted if they refuse it). A valid event is in a block long
/// before (a saturated network commits a backlog in about four heights), so this only bounds
/// how long a refused one can hold pool space on a node that does not propose.
pub const RELAYED_CHECK_AFTER_COMMITS: u64 = 16;

/// Most evictions made outside a commit kept for the next commit's report (a network that
/// commits nothing for a long time while its pools evict): the oldest are dropped beyond it.
pub const MAX_UNREPORTED_EVICTIONS: usize = 65_536;

#[derive(Clone, Debug)]
struct Entry {
    signed: SignedEvent,
    event: Event,
    bytes: u64,
    /// What the rules read and wrote for it, against the tip and the checked events before
    /// it; `None` while a relayed event is unchecked.
    footprint: Option<Footprint>,
    /// [`key_digest`] of each of the footprint's keys.
    digests: Vec<u64>,
    /// The pool's commit count when it came ([`RELAYED_CHECK_AFTER_COMMITS`]).
    since: u64,
}

/// A proposer's candidates ([`Mempool::candidates`]), in arrival order.
#[derive(Debug, Default)]
pub struct Candidates<'a> {
    /// The envelopes.
    pub signed: Vec<SignedEvent>,
    /// Their checked forms.
    pub events: Vec<Event>,
    /// The records of their evaluations at admission (`None` for an unchecked relayed event;
    /// the ledger's memo form).
    pub footprints: Vec<Option<&'a Footprint>>,
}

/// The pending events of one node.
#[derive(Clone, Debug)]
pub struct Mempool {
    limits: MempoolLimits,
    /// Arrival order: sequence number -> entry.
    order: BTreeMap<u64, Entry>,
    by_id: HashMap<Hash, u64>,
    next_seq: u64,
    bytes: u64,
    /// The state writes of every checked pending event, by key and arrival.
    versions: Versions,
    /// Commits seen ([`Mempool::on_commit`] calls).
    commits: u64,
    /// Unchecked relayed events pending.
    unchecked: usize,
    /// Events evicted outside a commit (by a build's refusal, or when a client's event made the
    /// pool check its relayed events), reported with the next commit's evictions; at most
    /// [`MAX_UNREPORTED_EVICTIONS`], the oldest dropped first (its waiter then times out).
    unreported: VecDeque<(Hash, Rejection)>,
}

impl Mempool {
    /// An empty pool.
    pub fn new(limits: MempoolLimits) -> Mempool {
        Mempool {
            limits,
            order: BTreeMap::new(),
            by_id: HashMap::new(),
            next_seq: 0,
            bytes: 0,
            versions: Versions::default(),
            commits: 0,
            unchecked: 0,
            unreported: VecDeque::new(),
        }
    }

    /// Events pending.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether none is pending.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Bytes of the pending events.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Whether an event with this id is pending (checked before any cryptography, so a
    /// duplicate from gossip costs a lookup).
    pub fn contains(&self, id: &Hash) -> bool {
        self.by_id.contains_key(id)
    }

    /// The checked form of a pending event, if `signed` is exactly the pending envelope (same
    /// body and signature): its verdict is reused instead of verifying it again.
    pub fn checked(&self, signed: &SignedEvent) -> Option<&Event> {
        let id = signed.id();
        let entry = self.by_id.get(&id).and_then(|seq| self.order.get(seq))?;
        (entry.signed == *signed).then_some(&entry.event)
    }

    /// A pending event by id, with its checked form and the record of its evaluation (which
    /// a block holding it may reuse: [`BlockExecutor::apply_remembered`]; `None` while a
    /// relayed event is unchecked).
    pub fn pending(&self, id: &Hash) -> Option<(&SignedEvent, &Event, Option<&Footprint>)> {
        let entry = self.by_id.get(id).and_then(|seq| self.order.get(seq))?;
        Some((&entry.signed, &entry.event, entry.footprint.as_ref()))
    }

    /// Unchecked relayed events pending (the others passed the rules at admission).
    pub fn unchecked(&self) -> usize {
        self.unchecked
    }

    /// Admits one event of this node's clients whose stateless check already ran (`checked`),
    /// against `state` (the committed tip) and the checked pending events, at block time
    /// `now_ms`. If the rules refuse it (other than for its time) while relayed events wait
    /// unchecked, those are checked first (evicting the refused, reported with the next
    /// commit) and it is evaluated again over every pending event.
    pub fn admit<S: StateRead>(
        &mut self,
        genesis: &Genesis,
        state: &S,
        now_ms: u64,
        signed: SignedEvent,
        checked: Result<Event, Rejection>,
    ) -> Result<Admission, LedgerError> {
        let event = match checked {
            Ok(event) => event,
            Err(rejection) => return Ok(Admission::Rejected(rejection)),
        };
        let bytes = match self.room_for(&signed, &event) {
            Ok(bytes) => bytes,
            Err(answer) => return Ok(answer),
        };
        let mut footprint = evaluate(genesis, state, &self.versions, now_ms, self.next_seq, &event);
        // Refused against the checked events: the unchecked relayed ones may hold what it
        // needs (its order, placed at another node a moment ago). They are checked now, in
        // order, and the event is evaluated again over all of them.
        // (A time outside the window is refused whatever is pending.)
        if matches!(&footprint, Err(ApplyError::Rejected(r)) if r.code != RejectCode::TimeSkew)
            && self.unchecked > 0
        {
            let evicted = self.recheck(genesis, state, now_ms, Some(HashSet::default()), true)?;
            self.report(evicted);
            footprint = evaluate(genesis, state, &self.versions, now_ms, self.next_seq, &event);
        }
        let footprint = match footprint {
            Ok(footprint) => footprint,
            Err(ApplyError::Rejected(rejection)) => return Ok(Admission::Rejected(rejection)),
            Err(ApplyError::Store(e)) => return Err(e),
        };
        let seq = self.next_seq;
        self.versions.insert(seq, &footprint);
        let digests = key_digests(&footprint);
        self.insert(signed, event, bytes, Some(footprint), digests);
        Ok(Admission::Accepted)
    }

    /// Admits one event a peer relayed, whose stateless check already ran (`checked`): the
    /// rules are not run now (see the module's documentation), unless the event's time is
    /// outside the skew window around `now_ms`, where they refuse it with their own code.
    pub fn relay<S: StateRead>(
        &mut self,
        genesis: &Genesis,
        state: &S,
        now_ms: u64,
        signed: SignedEvent,
        checked: Result<Event, Rejection>,
    ) -> Result<Admission, LedgerError> {
        let event = match checked {
            Ok(event) => event,
            Err(rejection) => return Ok(Admission::Rejected(rejection)),
        };
        if !BlockExecutor::for_pool(genesis, state, now_ms).time_in_window(&event) {
            return self.admit(genesis, state, now_ms, signed, Ok(event));
        }
        let bytes = match self.room_for(&signed, &event) {
            Ok(bytes) => bytes,
            Err(answer) => return Ok(answer),
        };
        self.insert(signed, event, bytes, None, Vec::new());
        Ok(Admission::Accepted)
    }

    /// The encoded size of an event the pool has room for and does not hold yet; else the
    /// answer (`AlreadyPending` or `Full`).
    fn room_for(&self, signed: &SignedEvent, event: &Event) -> Result<u64, Admission> {
        if self.by_id.contains_key(&event.id) {
            return Err(Admission::AlreadyPending);
        }
        let bytes = tradeloop_ledger::encoding::codec::encoded_len(signed).unwrap_or(u64::MAX);
        if self.order.len() >= self.limits.max_events
            || self.bytes.saturating_add(bytes) > self.limits.max_bytes
        {
            return Err(Admission::Full);
        }
        Ok(bytes)
    }

    fn insert(
        &mut self,
        signed: SignedEvent,
        event: Event,
        bytes: u64,
        footprint: Option<Footprint>,
        digests: Vec<u64>,
    ) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.by_id.insert(event.id, seq);
        if footprint.is_none() {
            self.unchecked += 1;
        }
        let since = self.commits;
        self.order.insert(seq, Entry { signed, event, bytes, footprint, digests, since });
        self.bytes += bytes;
    }

    /// After a proposer's build: evicts the unchecked relayed events among `refused` (the
    /// build's refusals, by id), which the rules have now refused against the tip and the
    /// events before them in the pool — as admission would have. Checked events the build
    /// refused stay: they passed the rules against the tip, and the block that made them
    /// invalid may not commit; the recheck after a commit decides. The evicted are reported
    /// with the next commit's evictions; returns how many there were.
    pub fn evict_refused(&mut self, refused: Vec<(Hash, Rejection)>) -> usize {
        let mut evicted = Vec::new();
        for (id, rejection) in refused {
            let Some(&seq) = self.by_id.get(&id) else { continue };
            if self.order.get(&seq).is_some_and(|e| e.footprint.is_none()) {
                if let Some(entry) = self.order.remove(&seq) {
                    self.by_id.remove(&id);
                    self.bytes -= entry.bytes;
                    self.unchecked -= 1;
                    evicted.push((id, rejection));
                }
            }
        }
        let n = evicted.len();
        self.report(evicted);
        n
    }

    /// Keeps evictions made outside a commit for the next commit's report.
    fn report(&mut self, evicted: Vec<(Hash, Rejection)>) {
        for e in evicted {
            if self.unreported.len() >= MAX_UNREPORTED_EVICTIONS {
                self.unreported.pop_front();
            }
            self.unreported.push_back(e);
        }
    }

    /// Up to `max_events` pending events of at most `max_bytes` in all, in arrival order, with
    /// their checked forms and the records of their evaluations: a proposer's candidates.
    pub fn candidates(&self, max_events: usize, max_bytes: u64) -> Candidates<'_> {
        let mut c = Candidates::default();
        let mut bytes = 0u64;
        for entry in self.order.values() {
            if c.signed.len() >= max_events || bytes.saturating_add(entry.bytes) > max_bytes {
                break;
            }
            bytes += entry.bytes;
            c.signed.push(entry.signed.clone());
            c.events.push(entry.event.clone());
            c.footprints.push(entry.footprint.as_ref());
        }
        c
    }

    /// After a block is committed: removes its events (`committed`), then re-checks the
    /// other pending events, in order, against the new tip (`state`), evicting those the block
    /// made invalid. Returns the evicted events' ids with the reason, after those evicted
    /// since the last commit outside it ([`Mempool::evict_refused`], and a client's event that
    /// made the pool check its relayed events).
    ///
    /// `written` is every state key the block wrote, when the caller knows it (the kept
    /// execution of the block): then only the pending events whose footprint meets a changed
    /// key are run through the rules again. Without it, or when the block holds an event this
    /// pool did not have, every checked pending event is. An unchecked relayed event is run
    /// through them only once it has waited [`RELAYED_CHECK_AFTER_COMMITS`] commits or its time
    /// left the skew window.
    pub fn on_commit<S: StateRead>(
        &mut self,
        genesis: &Genesis,
        state: &S,
        now_ms: u64,
        committed: &[Hash],
        written: Option<WrittenKeys>,
    ) -> Result<Vec<(Hash, Rejection)>, LedgerError> {
        self.commits += 1;
        let changed = self.remove_committed(committed, written);
        let mut evicted: Vec<(Hash, Rejection)> = self.unreported.drain(..).collect();
        evicted.extend(self.recheck(genesis, state, now_ms, changed, false)?);
        Ok(evicted)
    }

    /// [`Mempool::on_commit`] without its re-check: the defect the simulator's negative control
    /// `skip-mempool-recheck` plants, which [`Mempool::stale`] must find.
    pub(crate) fn on_commit_without_recheck(&mut self, committed: &[Hash]) {
        self.commits += 1;
        self.remove_committed(committed, None);
    }

    /// Removes committed events; returns the keys whose pending readers must be re-checked
    /// (`None`: all of them).
    fn remove_committed(
        &mut self,
        committed: &[Hash],
        written: Option<WrittenKeys>,
    ) -> Option<HashSet<u64>> {
        let mut changed: Option<HashSet<u64>> = written.map(|w| w.0);
        for id in committed {
            let removed = self.by_id.remove(id).and_then(|seq| self.order.remove_entry(&seq));
            match removed {
                Some((seq, entry)) => {
                    self.bytes -= entry.bytes;
                    if entry.footprint.is_none() {
                        self.unchecked -= 1;
                    }
                    // An unchecked event's writes were never pending: no later event saw them.
                    if let Some(footprint) = &entry.footprint {
                        // The block wrote these keys (or, where it did not, they now read the
                        // tip).
                        self.versions.remove(seq, footprint);
                        // Later events saw this one's pending writes; the block may have
                        // written other values (another order, another time), or not these
                        // keys at all.
                        if let Some(changed) = changed.as_mut() {
                            changed.extend(footprint.write_keys().map(key_digest));
                        }
                    }
                }
                // Its writes are known only from `written`, but its effect on the pending
                // events' view is not: check them all.
                None => changed = None,
            }
        }
        changed
    }

    /// The pending events the rules would refuse over `state` if every checked one (and every
    /// relayed one due for its check) were run through them again, in order. Empty after a
    /// correct [`Mempool::on_commit`]: the simulator's check that the re-check after a commit
    /// misses nothing. Works on a copy; the pool is unchanged.
    pub fn stale<S: StateRead>(
        &self,
        genesis: &Genesis,
        state: &S,
        now_ms: u64,
    ) -> Result<Vec<(Hash, Rejection)>, LedgerError> {
        self.clone().recheck(genesis, state, now_ms, None, false)
    }

    /// Re-checks the pending events in order over `state`: all of them when `changed` is
    /// `None`, else those that meet a key in `changed` (which grows by the writes of every
    /// event evicted or re-checked with other writes) or whose time left the window. An event
    /// is evaluated against the tip and the writes of the events before it, which this pass
    /// has already brought up to date. Unchecked relayed events are checked when
    /// `all_relayed`, when they have waited [`RELAYED_CHECK_AFTER_COMMITS`] commits, or when
    /// their time left the window.
    fn recheck<S: StateRead>(
        &mut self,
        genesis: &Genesis,
        state: &S,
        now_ms: u64,
        mut changed: Option<HashSet<u64>>,
        all_relayed: bool,
    ) -> Result<Vec<(Hash, Rejection)>, LedgerError> {
        let window = BlockExecutor::for_pool(genesis, state, now_ms);
        let mut evicted = Vec::new();
        let mut gone = Vec::new();
        let commits = self.commits;
        for (&seq, entry) in &mut self.order {
            let stale = match (&entry.footprint, &changed) {
                // An unchecked relayed event is checked when it has waited long enough or its
                // time left the window; no pending event saw its writes, so none depends on it.
                (None, _) => {
                    all_relayed
                        || !window.time_in_window(&entry.event)
                        || commits.saturating_sub(entry.since) >= RELAYED_CHECK_AFTER_COMMITS
                }
                (Some(_), None) => true,
                (Some(_), Some(changed)) => {
                    !window.time_in_window(&entry.event)
                        || entry.digests.iter().any(|d| changed.contains(d))
                }
            };
            if !stale {
                continue;
            }
            match evaluate(genesis, state, &self.versions, now_ms, seq, &entry.event) {
                Ok(footprint) => {
                    let same =
                        entry.footprint.as_ref().is_some_and(|old| footprint.same_writes(old));
                    if !same {
                        if let Some(changed) = changed.as_mut() {
                            if let Some(old) = &entry.footprint {
                                changed.extend(old.write_keys().map(key_digest));
                            }
                            changed.extend(footprint.write_keys().map(key_digest));
                        }
                        if let Some(old) = &entry.footprint {
                            self.versions.remove(seq, old);
                        }
                        self.versions.insert(seq, &footprint);
                    }
                    entry.digests = key_digests(&footprint);
                    if entry.footprint.is_none() {
                        self.unchecked -= 1;
                    }
                    entry.footprint = Some(footprint);
                }
                Err(ApplyError::Rejected(rejection)) => {
                    match &entry.footprint {
                        Some(old) => {
                            if let Some(changed) = changed.as_mut() {
                                changed.extend(old.write_keys().map(key_digest));
                            }
                            self.versions.remove(seq, old);
                        }
                        None => self.unchecked -= 1,
                    }
                    evicted.push((entry.event.id, rejection));
                    gone.push(seq);
                }
                Err(ApplyError::Store(e)) => return Err(e),
            }
        }
        for seq in gone {
            if let Some(entry) = self.order.remove(&seq) {
                self.by_id.remove(&entry.event.id);
                self.bytes -= entry.bytes;
            }
        }
        Ok(evicted)
    }
}

#[cfg(test)]
mod tests;
