//! Consensus (DESIGN §4). This first piece: the sign-state guard that makes a
//! validator's double-signing impossible across restarts. The Malachite-based round logic, the
//! WAL and the simulator follow (issue 3).

pub mod guard;
pub mod wal;
