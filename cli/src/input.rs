//! Bounded input: every file or stream is read with a cap before it is parsed, so one huge line
//! or file costs at most the cap in memory and is refused by name, never an allocation failure.

use std::io::{self, BufRead, Read};
use std::path::Path;

use anyhow::{bail, Context, Result};

/// Reads all of `path` (`-` for standard input) if it is at most `limit` bytes; a longer input is
/// refused after reading `limit + 1` bytes. `what` names the input in messages and `limit_name`
/// the constant, so a user can find the limit.
pub fn read_bounded(path: &Path, limit: usize, what: &str, limit_name: &str) -> Result<Vec<u8>> {
    let shown =
        if path == Path::new("-") { "standard input".into() } else { path.display().to_string() };
    let reader: Box<dyn Read> = if path == Path::new("-") {
        Box::new(io::stdin().lock())
    } else {
        Box::new(std::fs::File::open(path).with_context(|| format!("cannot open {what} {shown}"))?)
    };
    let mut bytes = Vec::new();
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {what} {shown}"))?;
    if bytes.len() > limit {
        bail!("{what} {shown} is larger than {limit} bytes ({limit_name}); it was not read");
    }
    Ok(bytes)
}

/// One line of a line-oriented input, numbered from 1.
#[derive(Debug)]
pub enum Line {
    /// The line's bytes, without the line ending.
    Text { number: usize, bytes: Vec<u8> },
    /// The line was longer than the limit; it was skipped without being kept in memory.
    TooLong { number: usize },
    /// Reading failed at this line; nothing after it can be read.
    Failed { number: usize, error: io::Error },
}

/// The lines of `reader`, each read with a cap of `limit` bytes.
#[derive(Debug)]
pub struct BoundedLines<R> {
    reader: R,
    limit: usize,
    number: usize,
    failed: bool,
}

impl<R: BufRead> BoundedLines<R> {
    pub fn new(reader: R, limit: usize) -> Self {
        BoundedLines { reader, limit, number: 0, failed: false }
    }

    /// Discards the rest of an overlong line, a buffer at a time.
    fn skip_rest_of_line(&mut self) -> io::Result<()> {
        loop {
            let buf = match self.reader.fill_buf() {
                Ok(buf) => buf,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if buf.is_empty() {
                return Ok(());
            }
            if let Some(end) = buf.iter().position(|&b| b == b'\n') {
                self.reader.consume(end + 1);
                return Ok(());
            }
            let n = buf.len();
            self.reader.consume(n);
        }
    }
}

impl<R: BufRead> Iterator for BoundedLines<R> {
    type Item = Line;

    fn next(&mut self) -> Option<Line> {
        if self.failed {
            return None;
        }
        self.number += 1;
        let number = self.number;
        let mut bytes = Vec::new();
        let read = (&mut self.reader).take(self.limit as u64 + 1).read_until(b'\n', &mut bytes);
        let fail = |this: &mut Self, error| {
            this.failed = true;
            Some(Line::Failed { number, error })
        };
        match read {
            Err(error) => return fail(self, error),
            Ok(0) => return None,
            Ok(_) => {}
        }
        if bytes.last() == Some(&b'\n') {
            bytes.pop();
            if bytes.last() == Some(&b'\r') {
                bytes.pop();
            }
            return Some(Line::Text { number, bytes });
        }
        if bytes.len() > self.limit {
            if let Err(error) = self.skip_rest_of_line() {
                return fail(self, error);
            }
            return Some(Line::TooLong { number });
        }
        Some(Line::Text { number, bytes })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn lines(input: &[u8], limit: usize) -> Vec<String> {
        BoundedLines::new(input, limit)
            .map(|l| match l {
                Line::Text { number, bytes } => {
                    format!("{number}:{}", String::from_utf8_lossy(&bytes))
                }
                Line::TooLong { number } => format!("{number}:too long"),
                Line::Failed { number, .. } => format!("{number}:failed"),
            })
            .collect()
    }

    #[test]
    fn an_overlong_line_is_skipped_by_number_and_reading_goes_on() {
        assert_eq!(
            lines(b"abc\n0123456789\nxy\r\n\nlast", 4),
            ["1:abc", "2:too long", "3:xy", "4:", "5:last"]
        );
        // Exactly the limit is accepted, with or without a line ending; one more byte is not.
        assert_eq!(lines(b"abcd\nabcd", 4), ["1:abcd", "2:abcd"]);
        assert_eq!(lines(b"abcde", 4), ["1:too long"]);
    }

    #[test]
    fn a_read_error_ends_the_lines_at_its_line() {
        struct Failing(usize);
        impl Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::other("disk on fire"));
                }
                self.0 -= 1;
                buf[0] = b'\n';
                Ok(1)
            }
        }
        let got: Vec<_> = BoundedLines::new(io::BufReader::new(Failing(2)), 10).collect();
        assert!(
            matches!(
                got.as_slice(),
                [
                    Line::Text { number: 1, .. },
                    Line::Text { number: 2, .. },
                    Line::Failed { number: 3, .. }
                ]
            ),
            "{got:?}"
        );
    }
}
