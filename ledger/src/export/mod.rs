//! Copies of the chain for other tools: the binary export file (the exit guarantee), JSONL,
//! and EPCIS 2.0 JSON-LD for the shipment and customs events.

pub mod binary;
pub mod epcis;
pub mod file;
pub mod jsonl;
pub mod reader;

pub use file::{ExportItem, ExportTrailer, WriteError};
pub use reader::{open_export, AnyExport};
