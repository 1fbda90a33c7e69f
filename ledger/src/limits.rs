//! Hard bounds of the chain's formats, whatever a genesis says: a genesis may set lower ones
//! (`consensus.max_block_events`, `max_event_bytes`, `max_block_bytes`), never higher.
//!
//! They live apart from the types they bound so the model and the block log can each check
//! them without importing one another.

use crate::encoding::frame;

/// Most events in one block.
pub const MAX_BLOCK_EVENTS: u32 = 10_000;
/// Most signatures in one commit certificate.
pub const MAX_CERTIFICATE_SIGNATURES: usize = 1_000;
/// Largest canonical event body: 256 KiB.
pub const MAX_EVENT_BYTES: u32 = 256 * 1024;
/// Largest encoded block (header and events, without the certificate): 32 MiB. Proposers build
/// blocks within the genesis bound, validation refuses larger ones, and a frame
/// ([`frame::MAX_FRAME_PAYLOAD`], 64 MiB) holds the largest block with its largest certificate
/// (at most [`MAX_CERTIFICATE_SIGNATURES`] signatures of about 110 bytes).
pub const MAX_BLOCK_BYTES: u32 = 32 * 1024 * 1024;
const _: () = assert!(
    MAX_BLOCK_BYTES as usize + MAX_CERTIFICATE_SIGNATURES * 256
        <= frame::MAX_FRAME_PAYLOAD as usize
);
