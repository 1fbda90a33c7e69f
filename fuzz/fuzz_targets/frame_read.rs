//! The frame reader shared by the block log, export, WAL and sign-state files: `frame::read`
//! over a byte slice and `frame::read_stream` over the same bytes as a stream.
//!
//! Asserts: no panic, any offset (also past the end); the two readers agree frame by frame
//! (same kind and payload, same End and Torn), except that the slice reader calls a zero-filled
//! tail torn (a preallocated file after a crash) where the stream reader calls its length out of
//! range; every frame read re-encodes to the bytes it was read from.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use tradeloop_ledger::encoding::frame::{self, FrameRead, StreamFrame};

fuzz_target!(|data: &[u8]| {
    assert_eq!(frame::read(data, data.len()), FrameRead::End);
    assert_eq!(frame::read(data, usize::MAX), FrameRead::End);
    let mut stream = Cursor::new(data);
    let mut offset = 0usize;
    loop {
        let slice = frame::read(data, offset);
        let streamed = match frame::read_stream(&mut stream) {
            Ok(s) => s,
            Err(e) => panic!("reading from memory cannot fail: {e}"),
        };
        match (slice, streamed) {
            (
                FrameRead::Frame { kind, payload, next },
                StreamFrame::Frame { kind: k, payload: p },
            ) => {
                assert_eq!((kind, payload), (k, p.as_slice()));
                assert!(next > offset && next <= data.len());
                assert_eq!(frame::encode(kind, payload), &data[offset..next]);
                offset = next;
            }
            (FrameRead::End, StreamFrame::End) | (FrameRead::Torn, StreamFrame::Torn) => break,
            (FrameRead::Corrupt(_), StreamFrame::Corrupt(_)) => break,
            (FrameRead::Torn, StreamFrame::Corrupt(_))
                if data[offset..].iter().all(|b| *b == 0) =>
            {
                break
            }
            (slice, streamed) => {
                panic!("at offset {offset} the slice reader found {slice:?}, the stream reader {streamed:?}")
            }
        }
    }
});
