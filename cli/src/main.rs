//! `tradeloop`: the command line of the tradeloop trade ledger.

use std::process::ExitCode;

use clap::Parser;

/// Turns transparent huge pages off for this process and its children (docs/performance.md,
/// "Transparent huge pages"). mimalloc asks the kernel for huge pages for its arenas; where
/// the kernel has them, the first touch of each 2 MiB page zeroes all of it, and memory that
/// mimalloc returns and reuses is zeroed again. That was up to 60% of the CPU of a saturated
/// devnet and made every timing depend on how many huge pages the kernel had free. Failing to
/// turn them off (an old kernel) only costs speed.
fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    let _ = rustix::thread::disable_transparent_huge_pages(true);
}

mod alloc;
mod cmd;
mod input;
mod output;

/// A permissioned, BFT-finalised ledger of signed trade events.
#[derive(Debug, Parser)]
#[command(name = "tradeloop", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: cmd::Command,
}

fn main() -> ExitCode {
    alloc::configure();
    no_transparent_huge_pages();
    // Crash tests configure failpoints through FAILPOINTS. Every build, release included, has
    // them compiled in (the workspace turns on the `fail` crate's `failpoints` feature); they
    // do nothing unless that variable is set.
    let _failpoints = tradeloop_ledger::storage::failpoint::from_env();
    let cli = Cli::parse();
    let result = cmd::run(cli.command).and_then(|code| {
        output::Out.flush()?;
        Ok(code)
    });
    match result {
        Ok(code) => code,
        // The reader of our output went away (`| head -1`): it has what it wanted.
        Err(e) if output::stdout_error(&e).is_some_and(output::StdoutError::is_closed_pipe) => {
            ExitCode::SUCCESS
        }
        Err(e) => {
            output::Diag.write_fmt(format_args!("error: {}\n", output::error_chain(&e)));
            ExitCode::FAILURE
        }
    }
}
