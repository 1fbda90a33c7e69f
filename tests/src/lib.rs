//! Workspace-level integration tests live in `tests/`; [`cluster`] runs devnets of real node
//! processes for them.

#![forbid(unsafe_code)]

pub mod cluster;
