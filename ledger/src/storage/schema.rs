//! The index's key layout (docs/formats.md, "Index"): its tables, the keys of the tip and
//! genesis records, and the reference and position encodings that both the writer
//! ([`crate::storage::store`]) and the queries ([`crate::query`]) use.

use crate::LedgerError;

/// The index's tables (docs/formats.md, "Index"), each a one-byte key prefix in the single sled
/// tree [`INDEX_TREE`]. One tree, because sled's only atomic write across trees is its transaction
/// API, which tracks a read for every write and cost more CPU than all signature checks of a block;
/// a `Batch` on one tree is atomic and cheap. See docs/formats.md.
pub mod tables {
    /// `'B' || height (u64 BE)` -> [`crate::storage::blocklog::Location`]
    pub const BLOCKS: u8 = b'B';
    /// `'E' || event id (32)` -> height (u64 BE) || index (u32 BE)
    pub const EVENTS: u8 = b'E';
    /// `'R' || len (u16 BE) || entity key || height (u64 BE) || index (u32 BE)` -> event id
    pub const REFS: u8 = b'R';
    /// `'S' || state key` -> state value (crate::rules::state)
    pub const STATE: u8 = b'S';
    /// `'M' || "genesis"` -> genesis hash; `'M' || "tip"` -> [`crate::model::block::Tip`]
    pub const META: u8 = b'M';
}

pub use crate::storage::index::INDEX_TREE;
/// Key of the tip record.
pub const META_TIP_KEY: &[u8] = b"Mtip";
pub(crate) const META_GENESIS_KEY: &[u8] = b"Mgenesis";

/// The key of `key` in `table`.
pub(crate) fn table_key(table: u8, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + key.len());
    out.push(table);
    out.extend_from_slice(key);
    out
}

/// The prefix of every reference key of `entity`: its length (u16 BE) and its bytes.
pub(crate) fn ref_prefix(entity: &[u8]) -> Vec<u8> {
    let len = u16::try_from(entity.len()).unwrap_or(u16::MAX);
    let mut key = Vec::with_capacity(2 + entity.len() + 12);
    key.extend_from_slice(&len.to_be_bytes());
    key.extend_from_slice(entity);
    key
}

/// A position value: height (u64 BE) || index in the block (u32 BE).
pub(crate) fn decode_position(bytes: &[u8]) -> Result<(u64, u32), LedgerError> {
    if bytes.len() != 12 {
        return Err(LedgerError::IndexInconsistent("event position is not 12 bytes".into()));
    }
    let mut h = [0u8; 8];
    h.copy_from_slice(&bytes[..8]);
    let mut i = [0u8; 4];
    i.copy_from_slice(&bytes[8..]);
    Ok((u64::from_be_bytes(h), u32::from_be_bytes(i)))
}
