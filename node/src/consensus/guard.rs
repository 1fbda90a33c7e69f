//! The sign-state guard (docs/formats.md, "Validator sign-state"): the last `(height, round, step)`
//! this validator signed, and what it signed, kept in its own small file that is written and
//! fsynced **before** any signature leaves the node.
//!
//! The rule is a high-water mark, as CometBFT's privval keeps it: a signature is allowed only
//! for a position strictly after the last one, or for exactly the last position with exactly
//! the same value (re-sending a vote is harmless). Anything else (a second, different vote for
//! one step, or any vote below the mark) is refused, also after a crash and restart, because the
//! mark is durable before the signature exists.
//!
//! File format (docs/formats.md): one frame (kind SIGN_STATE) whose payload is
//! `bincode(SignRecord)`. It is replaced atomically: write `guard.tmp`, fsync, rename over the
//! file, fsync the directory. A damaged file is never guessed at: the guard refuses to open and
//! the operator must decide (a node that cannot prove what it signed must not sign).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tradeloop_crypto::{Hash, PublicKey};
use tradeloop_ledger::encoding::frame::{self, FrameRead};
use tradeloop_ledger::{encoding::codec, storage::failpoint};

/// What is being signed, in the order a validator signs them within a round.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Step {
    /// A block proposal.
    Propose = 1,
    /// A prevote.
    Prevote = 2,
    /// A precommit.
    Precommit = 3,
}

/// A position in the consensus protocol; ordered lexicographically.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Position {
    /// Height.
    pub height: u64,
    /// Round.
    pub round: u32,
    /// Step.
    pub step: Step,
}

/// The durable record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignRecord {
    /// The chain this guard belongs to.
    pub chain: Hash,
    /// The validator's node key.
    pub validator: PublicKey,
    /// The last position signed.
    pub position: Position,
    /// What was signed there: the block hash, or `None` for nil.
    pub value: Option<Hash>,
}

/// Why a signature was refused or the guard could not be used.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    /// A different value at the last signed position: this would be equivocation.
    #[error("refusing to sign {value:?} at {position:?}: {signed:?} was already signed there (equivocation)")]
    Conflict {
        /// The position.
        position: Position,
        /// The value asked for.
        value: Option<Hash>,
        /// The value signed before.
        signed: Option<Hash>,
    },
    /// A position below the last signed one.
    #[error("refusing to sign at {asked:?}: this validator already signed at {last:?}, a later position")]
    Regression {
        /// The position asked for.
        asked: Position,
        /// The last position signed.
        last: Position,
    },
    /// The file belongs to another chain or validator.
    #[error("sign-state file {path} belongs to another chain or validator key; point the node at its own file")]
    Foreign {
        /// The file.
        path: String,
    },
    /// The file is damaged.
    #[error("sign-state file {path} is damaged ({detail}); the node cannot prove what it signed and will not sign. Restore the file, or after confirming with the other validators start from a height above any this key signed")]
    Damaged {
        /// The file.
        path: String,
        /// What is wrong.
        detail: String,
    },
    /// An I/O error; nothing was signed.
    #[error("sign-state file {path}: {source}; nothing was signed")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// An earlier write of the file failed, so what is on disk is not known; the guard permits
    /// nothing until it is reopened (a restart of the node), which reads what is durable.
    #[error("sign-state file {path}: an earlier write failed ({detail}); nothing will be signed until the node restarts and re-reads the file")]
    Uncertain {
        /// The file.
        path: String,
        /// The failure that left the file uncertain.
        detail: String,
    },
}

impl GuardError {
    /// Whether the file could not be written (a full disk, an I/O error), rather than a
    /// refusal on the merits: the node stops and starts again once its disk takes writes.
    pub fn is_io(&self) -> bool {
        matches!(self, GuardError::Io { .. } | GuardError::Uncertain { .. })
    }

    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            GuardError::Conflict { .. } => "SIGN_CONFLICT",
            GuardError::Regression { .. } => "SIGN_REGRESSION",
            GuardError::Foreign { .. } => "SIGN_STATE_FOREIGN",
            GuardError::Damaged { .. } => "SIGN_STATE_DAMAGED",
            GuardError::Io { .. } => "SIGN_STATE_IO",
            GuardError::Uncertain { .. } => "SIGN_STATE_UNCERTAIN",
        }
    }
}

/// The guard of one validator key.
#[derive(Debug)]
pub struct SignGuard {
    path: PathBuf,
    chain: Hash,
    validator: PublicKey,
    last: Option<SignRecord>,
    /// Set when a write failed part-way: the file holds the old or the new record, and which
    /// is not known until it is read again.
    uncertain: Option<String>,
}

impl SignGuard {
    /// Opens (or starts) the guard file at `path` for `validator` on `chain`.
    pub fn open(path: &Path, chain: Hash, validator: PublicKey) -> Result<SignGuard, GuardError> {
        let shown = path.display().to_string();
        let io = |source| GuardError::Io { path: shown.clone(), source };
        let last = match std::fs::read(path) {
            Ok(bytes) => Some(
                decode_record(&bytes)
                    .map_err(|detail| GuardError::Damaged { path: shown.clone(), detail })?,
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io(e)),
        };
        if let Some(r) = &last {
            if r.chain != chain || r.validator != validator {
                return Err(GuardError::Foreign { path: shown });
            }
        }
        Ok(SignGuard { path: path.to_path_buf(), chain, validator, last, uncertain: None })
    }

    /// The last position signed, if any.
    pub fn last(&self) -> Option<&SignRecord> {
        self.last.as_ref()
    }

    /// Asks to sign `value` at `position`. On `Ok` the record is durable and the caller may
    /// sign and send; on `Err` it must not sign.
    pub fn permit(&mut self, position: Position, value: Option<Hash>) -> Result<(), GuardError> {
        if let Some(detail) = &self.uncertain {
            return Err(GuardError::Uncertain {
                path: self.path.display().to_string(),
                detail: detail.clone(),
            });
        }
        if let Some(last) = &self.last {
            if position == last.position {
                if value == last.value {
                    return Ok(()); // the same vote again: re-sending is harmless
                }
                return Err(GuardError::Conflict { position, value, signed: last.value });
            }
            if position < last.position {
                return Err(GuardError::Regression { asked: position, last: last.position });
            }
        }
        let record = SignRecord { chain: self.chain, validator: self.validator, position, value };
        if let Err(e) = self.persist(&record) {
            self.uncertain = Some(e.to_string());
            return Err(e);
        }
        self.last = Some(record);
        Ok(())
    }

    fn persist(&self, record: &SignRecord) -> Result<(), GuardError> {
        let shown = self.path.display().to_string();
        let io = |source| GuardError::Io { path: shown.clone(), source };
        let injected = |detail: String| GuardError::Io {
            path: shown.clone(),
            source: std::io::Error::other(detail),
        };
        let payload = codec::encode(record)
            .map_err(|e| GuardError::Damaged { path: shown.clone(), detail: e.to_string() })?;
        let bytes = frame::encode(frame::kind::SIGN_STATE, &payload);
        let tmp = self.path.with_extension("tmp");
        fail::fail_point!("signstate::before-write", |a| failpoint::hit_with(a, injected));
        let mut file =
            OpenOptions::new().create(true).truncate(true).write(true).open(&tmp).map_err(io)?;
        file.write_all(&bytes).and_then(|()| file.sync_all()).map_err(io)?;
        fail::fail_point!("signstate::after-write", |a| failpoint::hit_with(a, injected));
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        fail::fail_point!("signstate::after-rename", |a| failpoint::hit_with(a, injected));
        let dir =
            self.path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        Ok(())
    }
}

fn decode_record(bytes: &[u8]) -> Result<SignRecord, String> {
    match frame::read(bytes, 0) {
        FrameRead::Frame { kind: frame::kind::SIGN_STATE, payload, next }
            if next == bytes.len() =>
        {
            codec::decode(payload).map_err(|e| format!("record does not decode: {e}"))
        }
        FrameRead::Frame { .. } => Err("unexpected frame kind or trailing bytes".into()),
        FrameRead::Torn | FrameRead::End => Err("the file is cut short".into()),
        FrameRead::Corrupt(d) => Err(d),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tradeloop_crypto::SigningKey;

    fn at(height: u64, round: u32, step: Step) -> Position {
        Position { height, round, step }
    }

    fn setup() -> (tempfile::TempDir, PathBuf, Hash, PublicKey) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sign-state.bin");
        (dir, path, Hash([7; 32]), SigningKey::from_seed_label("v").public_key())
    }

    #[test]
    fn signs_forward_and_refuses_equivocation_and_regression() {
        let (_d, path, chain, key) = setup();
        let mut g = SignGuard::open(&path, chain, key).unwrap();
        let a = Some(Hash([1; 32]));
        let b = Some(Hash([2; 32]));
        g.permit(at(5, 0, Step::Propose), a).unwrap();
        g.permit(at(5, 0, Step::Prevote), a).unwrap();
        g.permit(at(5, 0, Step::Prevote), a).unwrap(); // resend
        assert_eq!(g.permit(at(5, 0, Step::Prevote), b).unwrap_err().code(), "SIGN_CONFLICT");
        assert_eq!(g.permit(at(5, 0, Step::Prevote), None).unwrap_err().code(), "SIGN_CONFLICT");
        g.permit(at(5, 0, Step::Precommit), None).unwrap();
        assert_eq!(g.permit(at(5, 0, Step::Prevote), a).unwrap_err().code(), "SIGN_REGRESSION");
        g.permit(at(5, 1, Step::Prevote), b).unwrap();
        assert_eq!(g.permit(at(4, 9, Step::Precommit), b).unwrap_err().code(), "SIGN_REGRESSION");
        g.permit(at(6, 0, Step::Prevote), a).unwrap();
    }

    #[test]
    fn the_mark_survives_a_restart() {
        let (_d, path, chain, key) = setup();
        let a = Some(Hash([1; 32]));
        {
            let mut g = SignGuard::open(&path, chain, key).unwrap();
            g.permit(at(9, 2, Step::Precommit), a).unwrap();
        } // the process dies here
        let mut g = SignGuard::open(&path, chain, key).unwrap();
        assert_eq!(g.last().unwrap().position, at(9, 2, Step::Precommit));
        assert_eq!(
            g.permit(at(9, 2, Step::Precommit), Some(Hash([3; 32]))).unwrap_err().code(),
            "SIGN_CONFLICT"
        );
        assert_eq!(g.permit(at(9, 2, Step::Prevote), a).unwrap_err().code(), "SIGN_REGRESSION");
        g.permit(at(9, 2, Step::Precommit), a).unwrap();
        // A leftover temporary file from a crash mid-write changes nothing.
        std::fs::write(path.with_extension("tmp"), b"partial").unwrap();
        let g = SignGuard::open(&path, chain, key).unwrap();
        assert_eq!(g.last().unwrap().value, a);
    }

    #[test]
    fn damaged_or_foreign_files_are_refused() {
        let (_d, path, chain, key) = setup();
        let mut g = SignGuard::open(&path, chain, key).unwrap();
        g.permit(at(1, 0, Step::Prevote), None).unwrap();
        let other = SigningKey::from_seed_label("w").public_key();
        assert_eq!(SignGuard::open(&path, chain, other).unwrap_err().code(), "SIGN_STATE_FOREIGN");
        assert_eq!(
            SignGuard::open(&path, Hash([8; 32]), key).unwrap_err().code(),
            "SIGN_STATE_FOREIGN"
        );
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(SignGuard::open(&path, chain, key).unwrap_err().code(), "SIGN_STATE_DAMAGED");
        std::fs::write(&path, &bytes[..5]).unwrap();
        assert_eq!(SignGuard::open(&path, chain, key).unwrap_err().code(), "SIGN_STATE_DAMAGED");
    }
}
