//! The process's allocator: mimalloc, with its purging of freed memory turned off.
//!
//! Event checks allocate many small strings on several threads at once, and blocks are decoded
//! on one thread and freed on another; glibc's allocator serialises much of that, so the binary
//! uses mimalloc.
//!
//! mimalloc by default gives memory that stayed free for a while back to the kernel ("purging",
//! `madvise`), and a node reuses it a block later: freed and touched again every few hundred
//! milliseconds, so the pages come back as page faults, inside the index write of the next commit.
//! With purging off a saturated devnet took a third fewer page faults and its nodes spent less CPU
//! per event (docs/performance.md, "mimalloc's purging off"). The cost: the process keeps the
//! memory of its busiest moment instead of giving it back. An operator who prefers the default sets
//! `MIMALLOC_PURGE_DELAY` (milliseconds; mimalloc's own variable), which is then left alone.
//!
//! This is the only `unsafe` code of the workspace: the library crates forbid it, the
//! workspace denies it, and this module allows it for one call into mimalloc's C API.

/// The allocator of every thread of the process.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's own environment variable for the purge delay; set, it wins over [`configure`].
pub const PURGE_DELAY_ENV: &str = "MIMALLOC_PURGE_DELAY";

/// `mi_option_purge_delay` in mimalloc's `mi_option_t` (include/mimalloc.h of the v3 sources
/// that libmimalloc-sys 0.1.49 builds: the 16th option, after `eager_commit_delay` = 14, which
/// libmimalloc-sys names). The test below checks it reads mimalloc's documented default.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// mimalloc's value for "never purge".
const NEVER: std::ffi::c_long = -1;

/// Turns purging off, unless the operator set [`PURGE_DELAY_ENV`]. Called first thing in
/// `main`; mimalloc reads the option whenever it considers purging, so it applies from then on.
pub fn configure() {
    if std::env::var_os(PURGE_DELAY_ENV).is_some() {
        return;
    }
    set_purge_delay(NEVER);
}

fn set_purge_delay(ms: std::ffi::c_long) {
    // SAFETY: `mi_option_set` takes an option index and a value and has no other
    // preconditions; mimalloc stores the value in its option table (an atomic store). The
    // index is checked by `purge_delay_option_is_mimallocs` below.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, ms)
    }
}

#[cfg(test)]
fn purge_delay() -> std::ffi::c_long {
    // SAFETY: as for `mi_option_set`: an index in, a value out, no other preconditions.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The index is mimalloc's purge delay: before any change it holds the value of the
    /// environment variable if the test runs with one, else mimalloc v3's default of 1000 ms
    /// (no other option near it defaults to 1000). Then `configure` sets "never".
    #[test]
    fn purge_delay_option_is_mimallocs() {
        let from_env = std::env::var(PURGE_DELAY_ENV).ok().and_then(|v| v.parse().ok());
        assert_eq!(purge_delay(), from_env.unwrap_or(1000));
        configure();
        assert_eq!(purge_delay(), from_env.unwrap_or(NEVER));
        set_purge_delay(1000);
    }
}
