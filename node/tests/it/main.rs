//! Integration tests of the node crate, one module per area, in one test binary (one link of the
//! whole dependency tree instead of one per file).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api;
mod durability;
mod round_scenarios;
mod sim;
mod single_validator;
mod wal_replay;
