//! Integration tests of the ledger crate, one module per area.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::cast_possible_truncation)]

mod support;

mod audit;
mod chain;
mod envelope;
mod evidence;
mod integrity;
mod members;
mod robustness;
mod rules;
mod storage;
mod vectors;
