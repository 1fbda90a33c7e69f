//! Checked output. Data goes to standard output through [`Out`], whose `write_fmt` returns a
//! [`StdoutError`] instead of panicking as `println!` does when stdout is a closed pipe
//! (`tradeloop trace ... | head -1`) or a full disk (`> /dev/full`). `main` ends a command whose
//! reader went away (EPIPE) quietly with exit status 0 and prints any other write error once.
//! Diagnostics go to standard error through [`Diag`], which ignores its own write errors: there
//! is nowhere left to report them.

use std::fmt;
use std::io::{self, Write};

/// Standard output for data; `writeln!(out, ...)?` is checked.
#[derive(Debug, Default)]
pub struct Out;

impl Out {
    /// Writes formatted text (what `write!`/`writeln!` call).
    pub fn write_fmt(&mut self, args: fmt::Arguments<'_>) -> Result<(), StdoutError> {
        io::stdout().lock().write_fmt(args).map_err(StdoutError)
    }

    /// Flushes what standard output still buffers (a last line without a newline).
    pub fn flush(&mut self) -> Result<(), StdoutError> {
        io::stdout().lock().flush().map_err(StdoutError)
    }
}

/// Standard error for notes and rejections; best effort.
#[derive(Debug, Default)]
pub struct Diag;

impl Diag {
    /// Writes formatted text, ignoring a failure.
    pub fn write_fmt(&mut self, args: fmt::Arguments<'_>) {
        let _ = io::stderr().lock().write_fmt(args);
    }
}

/// Writing to standard output failed.
#[derive(Debug)]
pub struct StdoutError(pub io::Error);

impl StdoutError {
    /// The reader of standard output went away (a closed pipe): not worth an error message.
    pub fn is_closed_pipe(&self) -> bool {
        self.0.kind() == io::ErrorKind::BrokenPipe
    }
}

impl fmt::Display for StdoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot write to standard output: {}", self.0)
    }
}

impl std::error::Error for StdoutError {}

/// The [`StdoutError`] in an error chain, if writing to standard output is what failed.
pub fn stdout_error(e: &anyhow::Error) -> Option<&StdoutError> {
    e.chain().find_map(|cause| cause.downcast_ref::<StdoutError>())
}
