//! Integration tests of the `tradeloop` binary, one module per area, in one test binary (one link
//! of the whole dependency tree instead of one per file).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::cast_possible_truncation)]

mod support;

mod cli;
mod client;
mod evidence;
mod hostile;
mod integrity;
