//! Bytes in and out: strict canonical JSON, the one bincode configuration, and the framed
//! records of the block log and the export file (docs/formats.md).

pub mod canonical;
pub mod codec;
pub mod frame;
