//! Helpers shared by the CLI's integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod python;
