//! Failpoints (the `fail` crate) at every durable step of a commit, for crash tests.
//!
//! Compiled in only with the `failpoints` feature of this crate (the test builds turn it on;
//! release builds do not), and configured from the `FAIL_POINTS` environment variable, e.g.
//! `FAIL_POINTS='blocklog::after-write=2*off->return(abort)'`: the third time the point is
//! reached, the process aborts on the spot (no destructor runs, as in a crash); `return` without
//! `abort` makes the step fail with an error instead.
//!
//! | point | where |
//! |---|---|
//! | `blocklog::before-write` | a block's frame is about to be written |
//! | `blocklog::after-write` | written, not yet fsynced |
//! | `blocklog::after-fsync` | durable in the log, not yet in the index |
//! | `index::before-apply` | the index batch is about to be applied |
//! | `index::after-apply` | applied, not yet flushed |
//! | `index::after-flush` | flushed |
//!
//! The node crate adds `signstate::*` and `wal::*` points (docs/operations.md lists them all).

use crate::LedgerError;

/// What a reached failpoint does: abort the process for `return(abort)`, else fail the step.
#[cfg_attr(not(feature = "failpoints"), allow(dead_code))]
pub(crate) fn hit<T>(arg: Option<String>) -> Result<T, LedgerError> {
    if arg.as_deref() == Some("abort") {
        std::process::abort();
    }
    Err(LedgerError::Store(format!("injected failure ({})", arg.unwrap_or_default())))
}

/// Whether failpoints are compiled into this build.
pub fn enabled() -> bool {
    fail::has_failpoints()
}

/// Configures failpoints from `FAIL_POINTS` when they are compiled in; keep the returned guard
/// for the life of the process. Does nothing in a build without them.
pub fn from_env() -> Option<fail::FailScenario<'static>> {
    enabled().then(fail::FailScenario::setup)
}
