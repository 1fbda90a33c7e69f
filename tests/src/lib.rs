//! Workspace-level integration tests live in `tests/`; [`cluster`] runs devnets of real node
//! processes for them, [`proxy`] puts faults on their links and [`load`] keeps clients
//! submitting to them.

#![forbid(unsafe_code)]

pub mod cluster;
pub mod disk;
pub mod fakeclock;
pub mod flood;
pub mod load;
pub mod modules;
pub mod proxy;
