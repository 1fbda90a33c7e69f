//! Framed records, shared by the block log and the export file.
//!
//! ```text
//! frame = kind (u8) || length (u32 BE) || crc32c(kind || payload) (u32 BE) || payload
//! ```
//!
//! The checksum covers the kind byte so a flipped kind is caught too. A reader distinguishes a
//! frame cut short by the end of the data (a torn write) from one that is complete but damaged.

/// Bytes before the payload.
pub const FRAME_HEADER_BYTES: usize = 9;
/// Largest payload a frame may carry: 64 MiB (the codec's decode limit).
pub const MAX_FRAME_PAYLOAD: u32 = 64 * 1024 * 1024;

/// Frame kinds.
pub mod kind {
    /// The genesis JSON (export files).
    pub const GENESIS: u8 = 1;
    /// A certified block (block log and export files).
    pub const BLOCK: u8 = 2;
    /// The export trailer: block count and tip hash.
    pub const END: u8 = 3;
    /// A validator's sign-state record (node crate, consensus guard).
    pub const SIGN_STATE: u8 = 4;
    /// A consensus write-ahead-log record (node crate).
    pub const WAL_RECORD: u8 = 5;
}

/// Encodes one frame.
pub fn encode(kind: u8, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(FRAME_HEADER_BYTES + payload.len());
    out.push(kind);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&checksum(kind, payload).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

fn checksum(kind: u8, payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&[kind]), payload)
}

/// What reading a frame at an offset found.
#[derive(Debug, PartialEq, Eq)]
pub enum FrameRead<'a> {
    /// A whole, intact frame and the offset just after it.
    Frame {
        /// The kind byte.
        kind: u8,
        /// The payload.
        payload: &'a [u8],
        /// Offset of the next frame.
        next: usize,
    },
    /// No bytes left.
    End,
    /// The data ends inside this frame: a torn write if this is the end of a log.
    Torn,
    /// The frame is complete but its checksum or length is wrong.
    Corrupt(String),
}

/// Reads the frame at `offset` of `data`.
pub fn read(data: &[u8], offset: usize) -> FrameRead<'_> {
    let rest = &data[offset.min(data.len())..];
    if rest.is_empty() {
        return FrameRead::End;
    }
    if rest.len() < FRAME_HEADER_BYTES {
        return FrameRead::Torn;
    }
    let kind = rest[0];
    let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]);
    let crc = u32::from_be_bytes([rest[5], rest[6], rest[7], rest[8]]);
    if len == 0 || len > MAX_FRAME_PAYLOAD {
        // A preallocated, zero-filled tail is what a crash leaves behind on some file systems.
        if rest.iter().all(|b| *b == 0) {
            return FrameRead::Torn;
        }
        return FrameRead::Corrupt(format!("frame length {len} is out of range"));
    }
    let end = FRAME_HEADER_BYTES + len as usize;
    if rest.len() < end {
        return FrameRead::Torn;
    }
    let payload = &rest[FRAME_HEADER_BYTES..end];
    if checksum(kind, payload) != crc {
        return FrameRead::Corrupt("frame checksum (CRC32C) mismatch".into());
    }
    FrameRead::Frame { kind, payload, next: offset + end }
}

/// An owned frame read from a stream.
#[derive(Debug, PartialEq, Eq)]
pub enum StreamFrame {
    /// A whole, intact frame.
    Frame {
        /// The kind byte.
        kind: u8,
        /// The payload.
        payload: Vec<u8>,
    },
    /// The stream ended cleanly before a frame.
    End,
    /// The stream ended inside a frame.
    Torn,
    /// The frame is complete but damaged.
    Corrupt(String),
}

/// Reads one frame from a stream. Memory grows with the bytes actually read, never with the
/// length the header claims: a 9-byte header claiming 64 MiB followed by nothing costs a small
/// buffer, not 64 MiB. At most [`MAX_FRAME_PAYLOAD`] bytes are held.
pub fn read_stream<R: std::io::Read>(reader: &mut R) -> std::io::Result<StreamFrame> {
    let mut header = [0u8; FRAME_HEADER_BYTES];
    let got = read_full(reader, &mut header)?;
    if got == 0 {
        return Ok(StreamFrame::End);
    }
    if got < FRAME_HEADER_BYTES {
        return Ok(StreamFrame::Torn);
    }
    let kind = header[0];
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
    let crc = u32::from_be_bytes([header[5], header[6], header[7], header[8]]);
    if len == 0 || len > MAX_FRAME_PAYLOAD {
        return Ok(StreamFrame::Corrupt(format!("frame length {len} is out of range")));
    }
    use std::io::Read as _;
    let mut payload = Vec::with_capacity((len as usize).min(STREAM_CHUNK_BYTES));
    reader.by_ref().take(u64::from(len)).read_to_end(&mut payload)?;
    if payload.len() < len as usize {
        return Ok(StreamFrame::Torn);
    }
    if checksum(kind, &payload) != crc {
        return Ok(StreamFrame::Corrupt("frame checksum (CRC32C) mismatch".into()));
    }
    Ok(StreamFrame::Frame { kind, payload })
}

/// What [`read_stream`] reserves before the payload's bytes arrive.
const STREAM_CHUNK_BYTES: usize = 64 * 1024;

fn read_full<R: std::io::Read>(reader: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_torn_and_corrupt() {
        let mut data = encode(kind::BLOCK, b"hello");
        data.extend(encode(kind::END, b"x"));
        let FrameRead::Frame { kind: k, payload, next } = read(&data, 0) else {
            panic!("expected a frame");
        };
        assert_eq!((k, payload), (kind::BLOCK, &b"hello"[..]));
        assert!(matches!(read(&data, next), FrameRead::Frame { kind: kind::END, .. }));
        assert_eq!(read(&data, data.len()), FrameRead::End);
        assert_eq!(read(&data[..next - 1], 0), FrameRead::Torn);
        assert_eq!(read(&data[..4], 0), FrameRead::Torn);
        let mut bad = data.clone();
        bad[FRAME_HEADER_BYTES] ^= 1;
        assert!(matches!(read(&bad, 0), FrameRead::Corrupt(_)));
        let mut bad_kind = data.clone();
        bad_kind[0] = kind::END;
        assert!(matches!(read(&bad_kind, 0), FrameRead::Corrupt(_)));
        assert_eq!(read(&[0u8; 40], 0), FrameRead::Torn);
    }

    #[test]
    fn a_stream_claiming_a_large_frame_is_torn_when_its_bytes_do_not_come() {
        // A header claiming the largest payload, then 10 bytes: torn (the buffer grows only with
        // what arrives, see read_stream).
        let mut data = vec![kind::BLOCK];
        data.extend_from_slice(&MAX_FRAME_PAYLOAD.to_be_bytes());
        data.extend_from_slice(&[0; 4]);
        data.extend_from_slice(&[1; 10]);
        assert_eq!(read_stream(&mut &data[..]).unwrap(), StreamFrame::Torn);
        // Whole frames still read, one after another, and the stream then ends.
        let mut two = encode(kind::BLOCK, &vec![9u8; 200_000]);
        two.extend(encode(kind::END, b"x"));
        let mut reader = &two[..];
        let StreamFrame::Frame { kind: k, payload } = read_stream(&mut reader).unwrap() else {
            panic!("expected a frame");
        };
        assert_eq!((k, payload.len()), (kind::BLOCK, 200_000));
        assert!(matches!(
            read_stream(&mut reader).unwrap(),
            StreamFrame::Frame { kind: kind::END, .. }
        ));
        assert_eq!(read_stream(&mut reader).unwrap(), StreamFrame::End);
        let mut cut = &two[..5000];
        assert_eq!(read_stream(&mut cut).unwrap(), StreamFrame::Torn);
    }
}
