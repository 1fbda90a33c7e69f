# Shared by scripts/fuzz-ci and scripts/fuzz-long (sourced, not run).
# shellcheck shell=bash

# cargo-fuzz, pinned: the version whose flags these scripts use.
CARGO_FUZZ_VERSION=0.13.2
# The limits every target must meet (docs/fuzzing.md): no input over 1 s or 2 GiB.
FUZZ_LIMITS=(-timeout=1 -rss_limit_mb=2048 -malloc_limit_mb=2048)

fuzz_setup() {
    if ! cargo fuzz --version 2>/dev/null | grep -qF "$CARGO_FUZZ_VERSION"; then
        cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
    fi
    cd "$(dirname "${BASH_SOURCE[0]}")/../fuzz"
    # The fuzz build has its own flags (nightly, sanitizers) and lives in fuzz/target, whatever
    # target dir the workspace build was given; fuzz_bin relies on it.
    export CARGO_TARGET_DIR="$PWD/target"
    # The fuzz package is outside the workspace and has its own lock file; refuse to build if it
    # is stale rather than let cargo-fuzz (which has no --locked) rewrite it.
    cargo +nightly metadata --locked --format-version 1 >/dev/null
    # Targets that write files (block log, WAL, sign-state, export) do one scratch directory per
    # input, with fsyncs: keep them in memory when the machine has a tmpfs.
    if [ -d /dev/shm ] && [ -w /dev/shm ]; then
        export TMPDIR=/dev/shm
    fi
    # Release build with debug assertions and overflow checks, AddressSanitizer (the default).
    cargo +nightly fuzz build --debug-assertions
    mapfile -t FUZZ_TARGETS < <(cargo +nightly fuzz list)
}

# fuzz_bin TARGET: the built binary.
fuzz_bin() {
    echo "target/x86_64-unknown-linux-gnu/release/$1"
}
