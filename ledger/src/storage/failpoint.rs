//! Failpoints (the `fail` crate) at every durable step of a commit, for crash tests.
//!
//! Compiled into every build and inert unless the `FAILPOINTS` environment variable is set
//! when the process starts (an unset registry costs one lookup per durable step, six per block;
//! the crash tests need them in the very binary a user runs). Configured like this:
//! `FAILPOINTS='blocklog::after-write=2*off->return(abort)'`: the third time the point is
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
//! The node crate adds, through [`hit_with`]:
//!
//! | point | where |
//! |---|---|
//! | `signstate::before-write` | a new sign-state record is about to be written to `*.tmp` |
//! | `signstate::after-write` | the temporary file is written and fsynced, not yet renamed |
//! | `signstate::after-rename` | renamed over the file, the directory not yet fsynced |
//! | `wal::before-append` | a WAL record is about to be written |
//! | `wal::after-write` | written, not yet fsynced |
//! | `wal::after-fsync` | durable, not yet reported to the caller |

use crate::LedgerError;

/// What a reached failpoint does: abort the process for `return(abort)`, else fail the step.
pub(crate) fn hit<T>(arg: Option<String>) -> Result<T, LedgerError> {
    hit_with(arg, LedgerError::Store)
}

/// As [`hit`], for a step whose error type is not [`LedgerError`]: aborts the process for
/// `return(abort)`, else fails the step with `error("injected failure (ARG)")`.
pub fn hit_with<T, E>(arg: Option<String>, error: impl FnOnce(String) -> E) -> Result<T, E> {
    if arg.as_deref() == Some("abort") {
        std::process::abort();
    }
    Err(error(format!("injected failure ({})", arg.unwrap_or_default())))
}

/// Whether failpoints are compiled into this build.
pub fn enabled() -> bool {
    fail::has_failpoints()
}

/// Configures failpoints from `FAILPOINTS` if it is set (a malformed value panics at start,
/// naming it); keep the returned guard for the life of the process.
pub fn from_env() -> Option<fail::FailScenario<'static>> {
    (enabled() && std::env::var_os("FAILPOINTS").is_some()).then(fail::FailScenario::setup)
}
