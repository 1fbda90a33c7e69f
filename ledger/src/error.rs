//! Errors of the ledger crate.
//!
//! Two layers: a [`Rejection`] is the verdict of the rules on one event (a normal outcome, with a
//! stable code and a sentence for a person); a [`LedgerError`] is an operation that failed
//! (corrupt storage, a bad block, an I/O error) and says what to do.

use std::fmt;

/// Stable, machine-readable rejection codes. Integrations match on the string form; never rename
/// one, only add.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[allow(missing_docs)] // each code is documented in docs/events.md
pub enum RejectCode {
    // Envelope and signature.
    MalformedEvent,
    EventTooLarge,
    UnknownKind,
    WrongChain,
    UnknownParticipant,
    KeyNotAuthorized,
    BadSignature,
    DuplicateEvent,
    DuplicateNonce,
    TimeSkew,
    RoleNotPermitted,
    InvalidField,
    // Orders and invoices.
    DuplicateOrder,
    UnknownOrder,
    SellerNotExporter,
    NotOrderSeller,
    NotOrderBuyer,
    OrderNotAccepted,
    OrderAlreadyAccepted,
    DuplicateInvoice,
    UnknownInvoice,
    CurrencyMismatch,
    InvoiceExceedsOrder,
    // Shipments.
    DuplicateShipment,
    UnknownShipment,
    NotBookedForwarder,
    UnknownForwarder,
    ShipmentOutOfOrder,
    ExportNotCleared,
    ImportNotCleared,
    // Customs.
    DuplicateDeclaration,
    UnknownDeclaration,
    DeclarationCountryMismatch,
    DeclarationExists,
    NotDeclarant,
    CustomsWrongCountry,
    DeclarationHeld,
    DeclarationAlreadyDecided,
    // Documents.
    DuplicateDocument,
    UnknownDocument,
    UnknownReference,
    NotAParty,
    // Letters of credit and payments.
    DuplicateLc,
    UnknownLc,
    LcPartyMismatch,
    LcExpired,
    LcDocumentsNotPresented,
    LcOverdrawn,
    NotIssuingBank,
    DuplicatePayment,
    PaymentPartyMismatch,
    Overpayment,
}

impl RejectCode {
    /// The stable string form, e.g. `ROLE_NOT_PERMITTED`.
    pub fn as_str(&self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

impl fmt::Display for RejectCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str())
    }
}

/// The rules' verdict on an event that may not be appended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// Stable code.
    pub code: RejectCode,
    /// What was wrong and what to do, for a person.
    pub message: String,
}

impl Rejection {
    /// A rejection with a code and a message.
    pub fn new(code: RejectCode, message: impl Into<String>) -> Rejection {
        Rejection { code, message: message.into() }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Rejection {}

/// Shorthand for returning a rejection.
pub(crate) fn reject<T>(code: RejectCode, message: impl Into<String>) -> Result<T, Rejection> {
    Err(Rejection::new(code, message))
}

/// Operations of the ledger that failed.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The genesis file is invalid.
    #[error("genesis is invalid: {0}")]
    Genesis(String),
    /// An I/O operation failed.
    ///
    /// The OS error is part of the message and deliberately not exposed as `source()`: a
    /// caller printing the cause chain (anyhow's `{:#}`) would otherwise show it twice.
    #[error("{context}: {}", readable_io_error(error))]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        error: std::io::Error,
    },
    /// The block log is damaged in a way that truncating a torn tail cannot repair.
    #[error("block log corrupt at {location} (block at height {height}): {detail}. Nothing was changed. Restore the data dir from an export (`tradeloop restore --export FILE --genesis FILE --data-dir NEW_DIR`) or resync it from peers; or, to drop block {height} and everything after it, run `tradeloop reindex --discard-from {height}` (it says how many blocks it drops)")]
    CorruptLog {
        /// Segment file and offset.
        location: String,
        /// Height of the first block that cannot be read.
        height: u64,
        /// What is wrong.
        detail: String,
    },
    /// The block log holds fewer blocks than are known to be committed.
    #[error("the block log ends at height {log_height}, but blocks up to height {committed} were committed: blocks {} to {committed} are missing from the log (it was truncated or replaced). Nothing was changed. Restore the data dir from an export (`tradeloop restore`) or resync it from peers; `tradeloop reindex` will not make the chain shorter unless told to with --discard-from", log_height + 1)]
    LogTruncated {
        /// The last height the log holds.
        log_height: u64,
        /// The highest height known as committed.
        committed: u64,
    },
    /// The path is not a data dir.
    #[error("{0} is not a tradeloop data dir (no blocks/ directory in it). Check --data-dir: read commands never create one")]
    NotADataDir(String),
    /// Another process holds the index.
    #[error("the index {path} is in use by another process; stop the node running on this data dir and retry, or ask that node over its API")]
    IndexInUse {
        /// The index directory.
        path: String,
    },
    /// A restore was pointed at a directory that already holds something.
    #[error("{0} already exists and is not empty; restore writes a new data dir and never overwrites one: choose a new --data-dir, or move the old one away first")]
    DataDirNotEmpty(String),
    /// The sled index disagrees with the block log or cannot be read.
    #[error("index inconsistent with the block log: {0}. Run `tradeloop reindex --data-dir DIR --genesis FILE` to rebuild it from the log")]
    IndexInconsistent(String),
    /// The index store failed in a way of its own (an injected fault, a lost thread).
    #[error("index store error: {0}")]
    Store(String),
    /// sled reported an error.
    #[error("index store error: {0}")]
    Index(#[source] sled::Error),
    /// A block or certificate failed validation.
    #[error("block at height {height} is invalid: {detail}")]
    InvalidBlock {
        /// The height of the block.
        height: u64,
        /// What is wrong.
        detail: String,
    },
    /// A block contained an event that the rules reject.
    #[error("block at height {height}, event {index}: {rejection}")]
    RejectedEvent {
        /// Height of the block.
        height: u64,
        /// Position of the event in the block.
        index: u32,
        /// The rules' verdict.
        rejection: Rejection,
    },
    /// The data dir belongs to another chain.
    #[error("data dir belongs to chain {found}, but the genesis names chain {expected}; point --data-dir and --genesis at the same network")]
    WrongChain {
        /// The chain in the genesis.
        expected: String,
        /// The chain recorded in the data dir.
        found: String,
    },
    /// An export file is malformed.
    #[error("export file is malformed: {0}")]
    Export(String),
    /// A key or signature operation failed.
    #[error(transparent)]
    Crypto(#[from] tradeloop_crypto::CryptoError),
    /// Something that was looked up does not exist.
    #[error("{0} not found")]
    NotFound(String),
}

impl LedgerError {
    /// A stable machine-readable code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            LedgerError::Genesis(_) => "GENESIS_INVALID",
            LedgerError::Io { .. } => "IO",
            LedgerError::CorruptLog { .. } => "LOG_CORRUPT",
            LedgerError::IndexInconsistent(_) => "INDEX_INCONSISTENT",
            LedgerError::LogTruncated { .. } => "LOG_TRUNCATED",
            LedgerError::NotADataDir(_) => "NOT_A_DATA_DIR",
            LedgerError::IndexInUse { .. } => "INDEX_IN_USE",
            LedgerError::DataDirNotEmpty(_) => "DATA_DIR_NOT_EMPTY",
            LedgerError::Store(_) | LedgerError::Index(_) => "STORE",
            LedgerError::InvalidBlock { .. } => "BLOCK_INVALID",
            LedgerError::RejectedEvent { .. } => "BLOCK_EVENT_REJECTED",
            LedgerError::WrongChain { .. } => "WRONG_CHAIN",
            LedgerError::Export(_) => "EXPORT_MALFORMED",
            LedgerError::NotFound(_) => "NOT_FOUND",
            LedgerError::Crypto(e) => e.code(),
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> LedgerError {
        LedgerError::Io { context: context.into(), error: source }
    }
}

impl From<sled::Error> for LedgerError {
    fn from(e: sled::Error) -> LedgerError {
        LedgerError::Store(e.to_string())
    }
}

/// An I/O error as a user reads it. Some libraries (sled's lock error) put an OS error's Debug
/// form into their message, `Os { code: 11, kind: WouldBlock, message: "Resource temporarily
/// unavailable" }`; that part is shown as std shows an OS error: `Resource temporarily
/// unavailable (os error 11)`.
fn readable_io_error(error: &std::io::Error) -> String {
    let text = error.to_string();
    let Some(start) = text.find("Os { code: ") else {
        return text;
    };
    let rest = &text[start..];
    let code = rest["Os { code: ".len()..].split(',').next().unwrap_or_default();
    let message = rest.split_once("message: \"").and_then(|(_, m)| m.split_once("\" }"));
    match message {
        Some((message, after)) => format!("{}{message} (os error {code}){after}", &text[..start]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_os_error_is_shown_once_and_without_its_debug_form() {
        let sled_like = std::io::Error::other(
            "could not acquire lock on \"d/index/db\": Os { code: 11, kind: WouldBlock, message: \"Resource temporarily unavailable\" }",
        );
        let e = LedgerError::io("the index d/index is in use", sled_like);
        assert_eq!(
            e.to_string(),
            "the index d/index is in use: could not acquire lock on \"d/index/db\": Resource temporarily unavailable (os error 11)"
        );
        assert!(std::error::Error::source(&e).is_none(), "the OS error is not repeated as a cause");
        let plain = LedgerError::io("cannot read x", std::io::Error::from_raw_os_error(2));
        assert_eq!(plain.to_string(), "cannot read x: No such file or directory (os error 2)");
    }
}
