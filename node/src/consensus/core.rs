//! `ConsensusCore`: our sans-IO adapter around Malachite's round logic (docs/consensus.md).
//!
//! `handle(input) -> Vec<Action>`: every effect Malachite yields is answered on the spot
//! (signing through the sign-state guard, signature and certificate checks) or turned into an
//! [`Action`] for the caller (broadcast, timers, build a block, decided). No I/O besides the
//! guard's fsync, no clock, no randomness: time arrives as `TimeoutElapsed` inputs.
//!
//! With a WAL attached ([`ConsensusCore::with_wal`]), every input Malachite asks to persist is
//! written before it acts and fsynced before anything is signed, and
//! [`ConsensusCore::recover`] replays them after a restart.

use std::path::Path;

use malachite_core_consensus::{
    self as mcc, Effect, Input, LivenessMsg, Params, Resumable, SignedConsensusMsg, State,
};
use malachite_core_types::{
    self as mc, CertificateError, NilOrVal, Round, SignedMessage, ThresholdParam, ThresholdParams,
    Timeout, ValuePayload, VoteType,
};
use tradeloop_crypto::{Hash, PublicKey, SigningKey};
use tradeloop_ledger::model::block::{Block, CommitCertificate as LedgerCertificate, CommitSig};
use tradeloop_ledger::model::genesis::ConsensusParams;

use super::context::{Address, BlockHash, Height, TradeContext, Validators, Vote};
use super::guard::{GuardError, Position, SignGuard, Step};
use super::wal::{Wal, WalError};
use super::walrecord::{RecordError, WalRecord};

/// Bound on inputs Malachite may queue for future rounds and heights.
pub const INPUT_QUEUE_CAPACITY: usize = 1024;
/// Bound on inputs queued per future height.
pub const INPUT_QUEUE_PER_HEIGHT: usize = 512;

/// What the caller must do.
#[derive(Debug)]
pub enum Action {
    /// Send a signed proposal or vote to every peer.
    Broadcast(Box<SignedConsensusMsg<TradeContext>>),
    /// Send a liveness message (a vote or a round/polka certificate) to every peer, so validators
    /// that missed messages catch up on rounds.
    Liveness(Box<LivenessMsg<TradeContext>>),
    /// Stream the block with this hash again as a proposal at `(height, round)` with POL round
    /// `valid_round` (we propose a value locked in an earlier round).
    Restream {
        /// Height.
        height: u64,
        /// Round of the new proposal.
        round: Round,
        /// Its proof-of-lock round.
        valid_round: Round,
        /// The block hash.
        block_hash: Hash,
    },
    /// Start a timer of `duration_ms` (from the genesis timeouts, [`Timeouts`]); feed
    /// `Input::TimeoutElapsed(timeout)` when it fires.
    ScheduleTimeout {
        /// Which timeout.
        timeout: Timeout,
        /// How long, in milliseconds.
        duration_ms: u64,
    },
    /// Stop a timer.
    CancelTimeout(Timeout),
    /// Stop all timers.
    CancelAllTimeouts,
    /// We propose at `(height, round)`: build a block and feed `Input::Propose` with its hash.
    BuildBlock {
        /// Height.
        height: u64,
        /// Round.
        round: Round,
    },
    /// A validator signed two different proposals or votes for one (height, round, step): the
    /// two signed messages, which anyone can check offline with the validator's key. Reported
    /// once per (validator, height, round, step).
    Evidence(Box<Evidence>),
    /// A block was decided; commit it with this certificate (in the ledger's format).
    Decided {
        /// Height.
        height: u64,
        /// The decided block hash.
        block_hash: Hash,
        /// The commit certificate.
        certificate: LedgerCertificate,
    },
}

/// Proof that a validator equivocated.
#[derive(Clone, Debug)]
pub enum Evidence {
    /// Two votes of one type, height and round for different values.
    DoubleVote(mc::SignedVote<TradeContext>, mc::SignedVote<TradeContext>),
    /// Two proposals for one height and round with different values.
    DoubleProposal(mc::SignedProposal<TradeContext>, mc::SignedProposal<TradeContext>),
}

impl Evidence {
    /// The validator that equivocated.
    pub fn validator(&self) -> PublicKey {
        match self {
            Evidence::DoubleVote(a, _) => a.message.validator.0,
            Evidence::DoubleProposal(a, _) => a.message.proposer.0,
        }
    }

    /// `(height, round, step)` with step 0 proposal, 1 prevote, 2 precommit.
    pub fn position(&self) -> (u64, i64, u8) {
        match self {
            Evidence::DoubleVote(a, _) => {
                let step = match a.message.vote_type {
                    VoteType::Prevote => 1,
                    VoteType::Precommit => 2,
                };
                (a.message.height.0, a.message.round.as_i64(), step)
            }
            Evidence::DoubleProposal(a, _) => (a.message.height.0, a.message.round.as_i64(), 0),
        }
    }

    /// Whether both messages are validly signed by the named validator, for one position, with
    /// different values: what makes it evidence rather than a claim.
    pub fn verify(&self, ctx: &TradeContext) -> bool {
        match self {
            Evidence::DoubleVote(a, b) => {
                let (x, y) = (&a.message, &b.message);
                x.validator == y.validator
                    && x.vote_type == y.vote_type
                    && x.height == y.height
                    && x.round == y.round
                    && x.value != y.value
                    && x.validator.0.verify(&ctx.vote_bytes(x), &a.signature).is_ok()
                    && y.validator.0.verify(&ctx.vote_bytes(y), &b.signature).is_ok()
            }
            Evidence::DoubleProposal(a, b) => {
                let (x, y) = (&a.message, &b.message);
                x.proposer == y.proposer
                    && x.height == y.height
                    && x.round == y.round
                    && x.value != y.value
                    && x.proposer.0.verify(&ctx.proposal_bytes(x), &a.signature).is_ok()
                    && y.proposer.0.verify(&ctx.proposal_bytes(y), &b.signature).is_ok()
            }
        }
    }
}

/// Most evidence positions remembered (to report each once); beyond it the oldest are dropped.
pub const MAX_EVIDENCE_REMEMBERED: usize = 4096;

/// Errors of the adapter.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The sign-state guard refused or failed; nothing was signed.
    #[error("signing refused: {0}")]
    Guard(#[from] GuardError),
    /// Malachite reported an error.
    #[error("consensus: {0}")]
    Consensus(String),
    /// The WAL could not be written or read; nothing that depended on it was done.
    #[error("consensus WAL: {0}")]
    Wal(#[from] WalError),
    /// A block could not be encoded as a WAL record; nothing was written.
    #[error("consensus WAL record: {0}")]
    WalRecord(#[from] RecordError),
    /// A WAL write failed inside a step, which stopped before anything was signed; the step
    /// answers with that failure ([`CoreError::Wal`] or [`CoreError::WalRecord`]), not this.
    #[error("consensus WAL: a write failed and the step stopped before signing")]
    WalStopped,
    /// The core has no open WAL: it was asked to record before starting a height.
    #[error("consensus WAL: none is open; the core records only after it has started a height")]
    WalNotOpen,
}

impl CoreError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            CoreError::Guard(e) => e.code(),
            CoreError::Consensus(_) => "CONSENSUS",
            CoreError::Wal(_)
            | CoreError::WalRecord(_)
            | CoreError::WalStopped
            | CoreError::WalNotOpen => "WAL",
        }
    }
}

/// One validator's consensus state machine.
pub struct ConsensusCore {
    ctx: TradeContext,
    key: SigningKey,
    guard: SignGuard,
    validators: Validators,
    state: State<TradeContext>,
    /// Votes restored from the sign-state after a restart: republished on every rebroadcast
    /// timeout, because Malachite's fresh state does not know it signed them.
    restored: Vec<mc::SignedVote<TradeContext>>,
    /// Evidence already reported: (validator, height, round, step).
    reported: std::collections::BTreeSet<(PublicKey, u64, i64, u8)>,
    /// The write-ahead log of the current height, once attached.
    wal: Option<Wal>,
    /// How long each timeout lasts: the genesis consensus parameters.
    timeouts: Timeouts,
}

/// The round timeouts of a chain: Tendermint's `timeoutPropose(r)`, `timeoutPrevote(r)` and
/// `timeoutPrecommit(r)` (Algorithm 1, lines 21, 36-44, 47-48: each grows with the round so that
/// after GST a round eventually lasts long enough). Round 0's durations are the genesis
/// `consensus.timeout_propose_ms`, `timeout_prevote_ms` and `timeout_precommit_ms`; each later
/// round adds Malachite's default increment (500 ms per round), capped at 60 s; the liveness
/// rebroadcast waits a whole round (propose + prevote + precommit), as Malachite's default does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts(mc::LinearTimeouts);

impl Timeouts {
    /// The timeouts of a genesis.
    pub fn from_genesis(params: &ConsensusParams) -> Timeouts {
        let ms = std::time::Duration::from_millis;
        let (propose, prevote, precommit) = (
            ms(params.timeout_propose_ms),
            ms(params.timeout_prevote_ms),
            ms(params.timeout_precommit_ms),
        );
        let defaults = mc::LinearTimeouts::default();
        Timeouts(mc::LinearTimeouts {
            propose,
            prevote,
            precommit,
            rebroadcast: propose.saturating_add(prevote).saturating_add(precommit),
            max_timeout: defaults.max_timeout.max(propose).max(prevote).max(precommit),
            ..defaults
        })
    }

    /// How long `timeout` lasts, in milliseconds.
    pub fn duration_ms(&self, timeout: Timeout) -> u64 {
        // A timeout without a round (`Round::Nil`) is never scheduled by Malachite; it would
        // panic in `duration_for`, so it is given the cap instead.
        if timeout.round.as_u32().is_none() {
            return u64::try_from(self.0.max_timeout.as_millis()).unwrap_or(u64::MAX);
        }
        u64::try_from(self.0.duration_for(timeout).as_millis()).unwrap_or(u64::MAX)
    }
}

impl std::fmt::Debug for ConsensusCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsensusCore")
            .field("validator", &self.key.public_key())
            .field("height", &self.state.height())
            .field("round", &self.state.round())
            .finish()
    }
}

impl ConsensusCore {
    /// A core for the validator `key` starting at `height`, with the timeouts of the genesis
    /// consensus parameters `consensus`.
    pub fn new(
        ctx: TradeContext,
        key: SigningKey,
        guard: SignGuard,
        validators: Validators,
        consensus: &ConsensusParams,
        height: u64,
    ) -> Self {
        let timeouts = Timeouts::from_genesis(consensus);
        Self::with_thresholds(
            ctx,
            key,
            guard,
            validators,
            timeouts,
            height,
            ThresholdParams::default(),
        )
    }

    fn with_thresholds(
        ctx: TradeContext,
        key: SigningKey,
        guard: SignGuard,
        validators: Validators,
        timeouts: Timeouts,
        height: u64,
        threshold_params: ThresholdParams,
    ) -> Self {
        let params = Params {
            address: Address(key.public_key()),
            threshold_params,
            value_payload: ValuePayload::ProposalAndParts,
            enabled: true,
        };
        let state = State::new(
            ctx.clone(),
            Height(height),
            validators.clone(),
            params,
            INPUT_QUEUE_CAPACITY,
            INPUT_QUEUE_PER_HEIGHT,
        );
        ConsensusCore {
            ctx,
            key,
            guard,
            validators,
            state,
            restored: Vec::new(),
            reported: Default::default(),
            wal: None,
            timeouts,
        }
    }

    /// The same core with the quorum threshold lowered or raised to `numerator / denominator`
    /// of voting power. Only the simulator's `majority-quorum` negative control uses this; a
    /// real validator always runs with Malachite's 2/3.
    pub fn with_quorum(self, numerator: u64, denominator: u64) -> Self {
        let height = self.state.height().0;
        let thresholds = ThresholdParams {
            quorum: ThresholdParam { numerator, denominator },
            ..ThresholdParams::default()
        };
        Self::with_thresholds(
            self.ctx,
            self.key,
            self.guard,
            self.validators,
            self.timeouts,
            height,
            thresholds,
        )
    }

    /// Attaches the write-ahead log kept in `dir`: opens the file of this core's height and
    /// returns the records already in it (empty on a fresh start), for [`Self::recover`].
    pub fn with_wal(mut self, dir: &Path) -> Result<(Self, Vec<WalRecord>), CoreError> {
        let (wal, raw) = Wal::open(dir, self.state.height().0)?;
        let records =
            raw.iter().map(|bytes| WalRecord::decode(bytes)).collect::<Result<Vec<_>, _>>()?;
        self.wal = Some(wal);
        Ok((self, records))
    }

    /// Writes a block of the current height (one this validator built, or received and found
    /// valid) to the WAL before the caller proposes or reports it; it is durable before any
    /// vote or proposal is signed, so a restarted validator still has every block it may have
    /// voted for. Blocks of other heights are not written.
    pub fn persist_block(&mut self, block: &Block) -> Result<(), CoreError> {
        let Some(wal) = self.wal.as_mut().filter(|w| w.height() == block.header.height) else {
            return Ok(());
        };
        let bytes = WalRecord::encode_block(block)?;
        Ok(wal.write(&bytes)?)
    }

    /// After a restart at `height`: starts the height and feeds every WAL record back in order,
    /// so Malachite reaches the round, step, lock and votes it had. Returns the actions to
    /// carry out (timers, re-sent votes; a `BuildBlock` for a round whose proposal was already
    /// made is dropped, since building a different block would be refused by the guard) and the
    /// blocks the WAL held. An input the guard refuses to re-sign is skipped: the guard, not
    /// the WAL, is the last word on what may be signed.
    pub fn recover(
        &mut self,
        height: u64,
        records: Vec<WalRecord>,
    ) -> Result<(Vec<Action>, Vec<Block>), CoreError> {
        let mut actions = self.handle(self.start_height(height))?;
        let mut blocks = Vec::new();
        let mut proposed = Vec::new();
        let me = Address(self.key.public_key());
        // Malachite's own replay mode: our recorded votes and proposal are indexed, so that what
        // replay re-derives reuses the recorded signature, and a re-derived message that differs
        // from the recorded one is an error rather than a second signature.
        self.state.index_wal_entries(records.iter().filter_map(|r| match r {
            WalRecord::Input(input) => Some(input),
            WalRecord::Block(_) => None,
        }));
        let mut result = Ok(());
        for record in records {
            let input = match record {
                WalRecord::Block(block) => {
                    blocks.push(*block);
                    continue;
                }
                WalRecord::Input(input) => input,
            };
            if let Input::ProposedValue(pv, _) = &input {
                if pv.proposer == me {
                    proposed.push((pv.height.0, pv.round));
                }
            }
            match self.handle(input) {
                Ok(more) => actions.extend(more),
                Err(CoreError::Guard(_)) => {}
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        self.state.reset_entries_index();
        result?;
        actions.retain(|a| {
            !matches!(a, Action::BuildBlock { height, round } if proposed.contains(&(*height, *round)))
        });
        Ok((actions, blocks))
    }

    /// After a restart: if the sign-state records a vote at `height`, re-sign exactly that vote
    /// (ed25519 is deterministic, and the guard permits the identical vote at its position),
    /// count it in our own fresh state, and broadcast it. Without this, validators restarted in
    /// the middle of a round are silent for that round, and enough of them stall it (the
    /// simulator's crash-restart finding). Call after `start_height(height)` was handled.
    pub fn restore_last_vote(&mut self, height: u64) -> Result<Vec<Action>, CoreError> {
        let Some(record) = self.guard.last().cloned() else { return Ok(Vec::new()) };
        let vote_type = match record.position.step {
            Step::Prevote => VoteType::Prevote,
            Step::Precommit => VoteType::Precommit,
            Step::Propose => return Ok(Vec::new()),
        };
        if record.position.height != height {
            return Ok(Vec::new());
        }
        let vote = Vote {
            vote_type,
            height: Height(height),
            round: Round::new(record.position.round),
            value: record.value.map_or(NilOrVal::Nil, |h| NilOrVal::Val(BlockHash(h))),
            validator: Address(self.key.public_key()),
        };
        let position =
            Position { height, round: record.position.round, step: record.position.step };
        self.guard.permit(position, record.value)?;
        let signed = SignedMessage::new(vote.clone(), self.key.sign(&self.ctx.vote_bytes(&vote)));
        self.restored = vec![signed.clone()];
        let mut actions =
            vec![Action::Broadcast(Box::new(SignedConsensusMsg::Vote(signed.clone())))];
        actions.extend(self.handle(Input::Vote(signed))?);
        Ok(actions)
    }

    /// The input that starts `height` with our validator set.
    pub fn start_height(&self, height: u64) -> Input<TradeContext> {
        Input::StartHeight(
            Height(height),
            self.validators.clone(),
            false,
            None,
            mc::VoteExtensionPolicy::Disabled,
        )
    }

    /// Feeds one input; returns what the caller must do.
    pub fn handle(&mut self, input: Input<TradeContext>) -> Result<Vec<Action>, CoreError> {
        let mut actions = Vec::new();
        if let Input::StartHeight(..) = &input {
            self.restored.clear();
        }
        if let Input::TimeoutElapsed(t) = &input {
            if t.kind == mc::TimeoutKind::Rebroadcast {
                for vote in &self.restored {
                    actions
                        .push(Action::Broadcast(Box::new(SignedConsensusMsg::Vote(vote.clone()))));
                }
            }
        }
        if let (Input::StartHeight(height, ..), Some(wal)) = (&input, &self.wal) {
            if wal.height() != height.0 {
                // The previous height's block is committed (the caller's contract): its WAL
                // file goes, this height's begins.
                let wal = self.wal.take().ok_or(CoreError::WalNotOpen)?;
                self.wal = Some(wal.advance(height.0)?);
            }
        }
        // While Malachite replays the WAL, what it asks to persist is already there.
        let replaying = self.state.is_replaying_wal();
        let mut io = EffectIo {
            ctx: &self.ctx,
            key: &self.key,
            timeouts: self.timeouts,
            guard: &mut self.guard,
            wal: if replaying { None } else { self.wal.as_mut() },
            actions: &mut actions,
            guard_error: None,
            wal_error: None,
        };
        let result = mcc::process!(
            input: input,
            state: &mut self.state,
            metrics: &(),
            with: effect => on_effect(&mut io, effect)
        );
        if let Some(e) = io.guard_error {
            return Err(CoreError::Guard(e));
        }
        if let Some(e) = io.wal_error {
            return Err(e);
        }
        result.map_err(|e: mcc::Error<TradeContext>| CoreError::Consensus(e.to_string()))?;
        self.collect_evidence(&mut actions);
        Ok(actions)
    }

    /// Turns what Malachite's vote and proposal keepers recorded into `Evidence` actions.
    fn collect_evidence(&mut self, actions: &mut Vec<Action>) {
        let mut found = Vec::new();
        for (_, pairs) in self.state.driver.take_vote_evidence() {
            found.extend(pairs.into_iter().map(|(a, b)| Evidence::DoubleVote(a, b)));
        }
        for (_, pairs) in self.state.driver.take_proposal_evidence() {
            found.extend(pairs.into_iter().map(|(a, b)| Evidence::DoubleProposal(a, b)));
        }
        for evidence in found {
            let (height, round, step) = evidence.position();
            if self.reported.len() >= MAX_EVIDENCE_REMEMBERED {
                self.reported.pop_first();
            }
            if self.reported.insert((evidence.validator(), height, round, step)) {
                actions.push(Action::Evidence(Box::new(evidence)));
            }
        }
    }
}

type Resume = mcc::Resume<TradeContext>;

/// What effects are answered with: keys, the guard, the WAL, and where actions and errors go.
struct EffectIo<'a> {
    ctx: &'a TradeContext,
    key: &'a SigningKey,
    timeouts: Timeouts,
    guard: &'a mut SignGuard,
    /// `None` while replaying (nothing is appended twice) or when no WAL is attached.
    wal: Option<&'a mut Wal>,
    actions: &'a mut Vec<Action>,
    guard_error: Option<GuardError>,
    /// The WAL failure that stopped the step (the effect's own error only says it stopped).
    wal_error: Option<CoreError>,
}

/// Fsyncs the WAL's written inputs (if any) before a signature: every vote or proposal this
/// validator signs is preceded on disk by the inputs that led to it.
fn sync_wal(io: &mut EffectIo<'_>) -> Result<(), CoreError> {
    if let Some(wal) = io.wal.as_deref_mut() {
        if let Err(e) = wal.sync() {
            io.wal_error = Some(CoreError::Wal(e));
            return Err(CoreError::WalStopped);
        }
    }
    Ok(())
}

fn on_effect(io: &mut EffectIo<'_>, effect: Effect<TradeContext>) -> Result<Resume, CoreError> {
    let (ctx, key, timeouts) = (io.ctx, io.key, io.timeouts);
    let actions = &mut *io.actions;
    Ok(match effect {
        Effect::CancelAllTimeouts(r) => {
            actions.push(Action::CancelAllTimeouts);
            r.resume_with(())
        }
        Effect::CancelTimeout(t, r) => {
            actions.push(Action::CancelTimeout(t));
            r.resume_with(())
        }
        Effect::ScheduleTimeout(t, r) => {
            actions
                .push(Action::ScheduleTimeout { timeout: t, duration_ms: timeouts.duration_ms(t) });
            r.resume_with(())
        }
        Effect::StartRound(_, _, _, _, r) => r.resume_with(()),
        Effect::PublishConsensusMsg(msg, r) => {
            actions.push(Action::Broadcast(Box::new(msg)));
            r.resume_with(())
        }
        Effect::PublishLivenessMsg(msg, r) => {
            actions.push(Action::Liveness(Box::new(msg)));
            r.resume_with(())
        }
        Effect::RepublishVote(vote, r) => {
            actions.push(Action::Broadcast(Box::new(SignedConsensusMsg::Vote(vote))));
            r.resume_with(())
        }
        Effect::RepublishRoundCertificate(cert, r) => {
            actions.push(Action::Liveness(Box::new(LivenessMsg::SkipRoundCertificate(cert))));
            r.resume_with(())
        }
        Effect::GetValue(height, round, _, r) => {
            actions.push(Action::BuildBlock { height: height.0, round });
            r.resume_with(())
        }
        Effect::RestreamProposal(height, round, valid_round, _, value, r) => {
            actions.push(Action::Restream {
                height: height.0,
                round,
                valid_round,
                block_hash: value.0,
            });
            r.resume_with(())
        }
        Effect::CertVerifiedSyncValue(.., r) => r.resume_with(()),
        Effect::CertRejectedSyncValue(.., r) => r.resume_with(()),
        Effect::Decide(certificate, _, r) => {
            actions.push(decided(&certificate));
            r.resume_with(())
        }
        Effect::Finalize(.., r) => r.resume_with(()),
        Effect::SignVote(vote, r) => {
            let step = match vote.vote_type {
                VoteType::Prevote => Step::Prevote,
                VoteType::Precommit => Step::Precommit,
            };
            let position =
                Position { height: vote.height.0, round: vote.round.as_u32().unwrap_or(0), step };
            let value = match &vote.value {
                NilOrVal::Nil => None,
                NilOrVal::Val(h) => Some(h.0),
            };
            permit_signature(io, position, value)?;
            let signature = key.sign(&ctx.vote_bytes(&vote));
            r.resume_with(SignedMessage::new(vote, signature))
        }
        Effect::SignProposal(proposal, r) => {
            let position = Position {
                height: proposal.height.0,
                round: proposal.round.as_u32().unwrap_or(0),
                step: Step::Propose,
            };
            permit_signature(io, position, Some(proposal.value.0))?;
            let signature = key.sign(&ctx.proposal_bytes(&proposal));
            r.resume_with(SignedMessage::new(proposal, signature))
        }
        Effect::VerifySignature(msg, public_key, r) => {
            let bytes = match &msg.message {
                mcc::ConsensusMsg::Vote(v) => ctx.vote_bytes(v),
                mcc::ConsensusMsg::Proposal(p) => ctx.proposal_bytes(p),
            };
            r.resume_with(ctx.verify(&public_key, &bytes, &msg.signature))
        }
        Effect::VerifyCommitCertificate(cert, validators, thresholds, r) => {
            r.resume_with(check_commit_certificate(ctx, &cert, &validators, thresholds.quorum))
        }
        Effect::VerifyPolkaCertificate(cert, validators, thresholds, r) => {
            r.resume_with(check_polka_certificate(ctx, &cert, &validators, thresholds.quorum))
        }
        Effect::VerifyRoundCertificate(cert, validators, thresholds, r) => {
            r.resume_with(check_round_certificate(ctx, &cert, &validators, thresholds))
        }
        Effect::VerifyExtendedCommitCertificate(.., r) => {
            // Vote extensions are disabled on this chain; an extended certificate is never valid.
            r.resume_with(Err(CertificateError::VerificationError(None)))
        }
        Effect::WalAppend(height, input, r) => {
            wal_append(io, height.0, input)?;
            r.resume_with(())
        }
        Effect::ExtendVote(.., r) => r.resume_with(None),
        Effect::VerifyVoteExtension(.., r) => r.resume_with(Ok(())),
    })
}

/// The decision as the ledger commits it: the block hash and the certificate in the ledger's
/// form.
fn decided(certificate: &mc::CommitCertificate<TradeContext>) -> Action {
    let round = certificate.round.as_u32().unwrap_or(0);
    let sigs = certificate
        .commit_signatures
        .iter()
        .map(|s| CommitSig { validator: s.address.0, signature: s.signature })
        .collect();
    let block_hash = certificate.value_id.0;
    Action::Decided {
        height: certificate.height.0,
        block_hash,
        certificate: LedgerCertificate::from_signatures(
            certificate.height.0,
            round,
            block_hash,
            sigs,
        ),
    }
}

/// Makes the WAL's inputs, then the sign-state guard's record of `position`, durable before
/// a signature exists; refused if the guard holds another value signed there.
fn permit_signature(
    io: &mut EffectIo<'_>,
    position: Position,
    value: Option<Hash>,
) -> Result<(), CoreError> {
    sync_wal(io)?;
    if let Err(e) = io.guard.permit(position, value) {
        io.guard_error = Some(e);
        return Err(CoreError::Consensus("signing refused by the sign-state guard".into()));
    }
    Ok(())
}

/// Writes an input to the WAL of its height (none while replaying); fsynced before anything
/// is signed (`sync_wal`). A failure stops the step.
fn wal_append(
    io: &mut EffectIo<'_>,
    height: u64,
    input: Input<TradeContext>,
) -> Result<(), CoreError> {
    if let Some(wal) = io.wal.as_deref_mut().filter(|w| w.height() == height) {
        let written = WalRecord::Input(input)
            .encode()
            .map_err(CoreError::WalRecord)
            .and_then(|bytes| wal.write(&bytes).map_err(CoreError::Wal));
        if let Err(e) = written {
            io.wal_error = Some(e);
            return Err(CoreError::WalStopped);
        }
    }
    Ok(())
}

/// A commit certificate: precommits for its value by `threshold` of the power.
#[allow(clippy::result_large_err)] // Malachite's error type, fixed by the resume value.
fn check_commit_certificate(
    ctx: &TradeContext,
    cert: &mc::CommitCertificate<TradeContext>,
    validators: &Validators,
    threshold: ThresholdParam,
) -> Result<(), CertificateError<TradeContext>> {
    let votes = cert.commit_signatures.iter().map(|s| {
        let vote = Vote {
            vote_type: VoteType::Precommit,
            height: cert.height,
            round: cert.round,
            value: NilOrVal::Val(cert.value_id),
            validator: s.address,
        };
        (s.address, vote, s.signature, CertificateError::InvalidCommitSignature(s.clone()))
    });
    check_votes(ctx, validators, threshold, votes)
}

/// A polka certificate: prevotes for its value by `threshold` of the power.
#[allow(clippy::result_large_err)] // Malachite's error type, fixed by the resume value.
fn check_polka_certificate(
    ctx: &TradeContext,
    cert: &mc::PolkaCertificate<TradeContext>,
    validators: &Validators,
    threshold: ThresholdParam,
) -> Result<(), CertificateError<TradeContext>> {
    let votes = cert.polka_signatures.iter().map(|s| {
        let vote = Vote {
            vote_type: VoteType::Prevote,
            height: cert.height,
            round: cert.round,
            value: NilOrVal::Val(cert.value_id),
            validator: s.address,
        };
        (s.address, vote, s.signature, CertificateError::InvalidPolkaSignature(s.clone()))
    });
    check_votes(ctx, validators, threshold, votes)
}

/// A round certificate: a skip needs the honest threshold (f + 1), a precommit one a quorum.
#[allow(clippy::result_large_err)] // Malachite's error type, fixed by the resume value.
fn check_round_certificate(
    ctx: &TradeContext,
    cert: &mc::RoundCertificate<TradeContext>,
    validators: &Validators,
    thresholds: ThresholdParams,
) -> Result<(), CertificateError<TradeContext>> {
    let threshold = match cert.cert_type {
        mc::RoundCertificateType::Skip => thresholds.honest,
        mc::RoundCertificateType::Precommit => thresholds.quorum,
    };
    let votes = cert.round_signatures.iter().map(|s| {
        let vote = Vote {
            vote_type: s.vote_type,
            height: cert.height,
            round: cert.round,
            value: s.value_id,
            validator: s.address,
        };
        (s.address, vote, s.signature, CertificateError::InvalidRoundSignature(s.clone()))
    });
    check_votes(ctx, validators, threshold, votes)
}

/// Every signer known and distinct, every signature valid, and `threshold` of power met.
// The error type is Malachite's, fixed by the resume value it expects.
#[allow(clippy::result_large_err)]
fn check_votes(
    ctx: &TradeContext,
    validators: &Validators,
    threshold: ThresholdParam,
    votes: impl Iterator<
        Item = (Address, Vote, tradeloop_crypto::Signature, CertificateError<TradeContext>),
    >,
) -> Result<(), CertificateError<TradeContext>> {
    let mut seen: Vec<Address> = Vec::new();
    let mut signed: u64 = 0;
    for (address, vote, signature, invalid) in votes {
        let Some(validator) = validators.0.iter().find(|v| v.address == address) else {
            return Err(CertificateError::UnknownValidator(address));
        };
        if seen.contains(&address) {
            return Err(CertificateError::DuplicateVote(address));
        }
        seen.push(address);
        let key: &PublicKey = &validator.public_key;
        if !ctx.verify(key, &ctx.vote_bytes(&vote), &signature) {
            return Err(invalid);
        }
        signed = signed.saturating_add(validator.power);
    }
    let total: u64 = validators.0.iter().map(|v| v.power).sum();
    if !threshold.is_met(signed, total) {
        let expected = total.saturating_mul(threshold.numerator) / threshold.denominator.max(1) + 1;
        return Err(CertificateError::NotEnoughVotingPower { signed, total, expected });
    }
    Ok(())
}

/// A locally proposed block hash for `Input::Propose`.
pub fn propose(height: u64, round: Round, block_hash: Hash) -> Input<TradeContext> {
    Input::Propose(mcc::LocallyProposedValue::new(Height(height), round, BlockHash(block_hash)))
}

/// The input that reports a received (proposed) block: its hash, who proposed it at which round
/// (and with which proof-of-lock round), and whether the ledger found it valid. In
/// proposal-and-parts mode a validator prevotes for a value only after this input.
pub fn received_block(
    height: u64,
    round: Round,
    valid_round: Round,
    proposer: PublicKey,
    block_hash: Hash,
    valid: bool,
) -> Input<TradeContext> {
    Input::ProposedValue(
        mcc::ProposedValue {
            height: Height(height),
            round,
            valid_round,
            proposer: Address(proposer),
            value: BlockHash(block_hash),
            validity: mc::Validity::from_bool(valid),
        },
        mc::ValueOrigin::Consensus,
    )
}

/// Feeds a signed message from a peer.
pub fn from_peer(msg: SignedConsensusMsg<TradeContext>) -> Input<TradeContext> {
    match msg {
        SignedConsensusMsg::Vote(v) => Input::Vote(v),
        SignedConsensusMsg::Proposal(p) => Input::Proposal(p),
    }
}

/// Feeds a liveness message from a peer.
pub fn liveness_from_peer(msg: LivenessMsg<TradeContext>) -> Input<TradeContext> {
    match msg {
        LivenessMsg::Vote(v) => Input::Vote(v),
        LivenessMsg::PolkaCertificate(c) => Input::PolkaCertificate(c),
        LivenessMsg::SkipRoundCertificate(c) => Input::RoundCertificate(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(kind: mc::TimeoutKind, round: u32) -> Timeout {
        Timeout { kind, round: Round::new(round) }
    }

    #[test]
    fn timeouts_come_from_the_genesis_and_grow_with_the_round() {
        let params = ConsensusParams {
            timeout_propose_ms: 2000,
            timeout_prevote_ms: 700,
            timeout_precommit_ms: 900,
            ..ConsensusParams::default()
        };
        let timeouts = Timeouts::from_genesis(&params);
        use mc::TimeoutKind::{Precommit, Prevote, Propose, Rebroadcast};
        assert_eq!(timeouts.duration_ms(t(Propose, 0)), 2000);
        assert_eq!(timeouts.duration_ms(t(Prevote, 0)), 700);
        assert_eq!(timeouts.duration_ms(t(Precommit, 0)), 900);
        assert_eq!(timeouts.duration_ms(t(Propose, 2)), 3000, "500 ms more per round");
        assert_eq!(timeouts.duration_ms(t(Rebroadcast, 0)), 3600, "a whole round");
        assert_eq!(timeouts.duration_ms(t(Propose, 1_000_000)), 60_000, "capped");
        assert_eq!(timeouts.duration_ms(Timeout { kind: Propose, round: Round::Nil }), 60_000);
    }
}
