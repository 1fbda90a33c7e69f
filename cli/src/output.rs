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

/// An error and its causes on one line, `error: cause: cause's cause`, the way anyhow's `{:#}`
/// prints them, except that a cause whose text the message before it already ends with is not
/// repeated. The libraries' messages are complete on their own (a node's log and the HTTP API
/// show only the message), and many of them also keep their cause as `source()`.
pub fn error_chain(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.ends_with(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("index store error: {0}")]
    struct Shows(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("index store error")]
    struct Names(#[source] std::io::Error);

    fn disk_full() -> std::io::Error {
        std::io::Error::other("no space left on device")
    }

    #[test]
    fn a_cause_is_printed_once_whether_or_not_the_message_shows_it() {
        let shows = anyhow::Error::from(Shows(disk_full())).context("commit failed");
        let names = anyhow::Error::from(Names(disk_full())).context("commit failed");
        let expected = "commit failed: index store error: no space left on device";
        assert_eq!(error_chain(&shows), expected);
        assert_eq!(error_chain(&names), expected);
        assert_eq!(format!("{shows:#}"), format!("{expected}: no space left on device"));
    }
}
