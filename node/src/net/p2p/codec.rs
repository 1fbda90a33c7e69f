//! The request-response byte codec: one frame per request and per response, a `u32` big-endian
//! length followed by that many opaque bytes. Every read is capped: the length is checked against
//! the bound before anything is allocated, and the body is read through `take(len)`, so a peer
//! cannot make this node buffer more than the bound however it frames its bytes.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::request_response;
use libp2p::StreamProtocol;

/// Bytes of the length prefix in front of every frame.
const LENGTH_PREFIX_BYTES: usize = 4;

/// The codec; cloned by libp2p for every stream.
#[derive(Clone, Debug)]
pub(crate) struct ByteCodec {
    /// Largest request body accepted or sent, in bytes.
    pub(crate) max_request_bytes: u32,
    /// Largest response body accepted or sent, in bytes.
    pub(crate) max_response_bytes: u32,
}

impl ByteCodec {
    /// A codec with the given bounds; bounds above `u32::MAX` are clamped (the prefix is a `u32`).
    pub(crate) fn new(max_request_bytes: usize, max_response_bytes: usize) -> ByteCodec {
        ByteCodec {
            max_request_bytes: u32::try_from(max_request_bytes).unwrap_or(u32::MAX),
            max_response_bytes: u32::try_from(max_response_bytes).unwrap_or(u32::MAX),
        }
    }
}

/// Reads one frame of at most `max` body bytes.
pub(crate) async fn read_frame<T>(io: &mut T, max: u32) -> io::Result<Vec<u8>>
where
    T: AsyncRead + Unpin + Send,
{
    let mut prefix = [0u8; LENGTH_PREFIX_BYTES];
    io.read_exact(&mut prefix).await?;
    let len = u32::from_be_bytes(prefix);
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds the bound of {max} bytes"),
        ));
    }
    let capacity = usize::try_from(len).map_err(|_| io::ErrorKind::InvalidData)?;
    let mut body = Vec::with_capacity(capacity);
    io.take(u64::from(len)).read_to_end(&mut body).await?;
    if body.len() != capacity {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("frame announced {len} bytes but the stream ended after {}", body.len()),
        ));
    }
    Ok(body)
}

/// Writes one frame, refusing a body above `max` bytes (the peer would refuse it anyway).
pub(crate) async fn write_frame<T>(io: &mut T, body: &[u8], max: u32) -> io::Result<()>
where
    T: AsyncWrite + Unpin + Send,
{
    let len = u32::try_from(body.len()).ok().filter(|len| *len <= max).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("frame of {} bytes exceeds the bound of {max} bytes", body.len()),
        )
    })?;
    io.write_all(&len.to_be_bytes()).await?;
    io.write_all(body).await?;
    io.close().await
}

impl request_response::Codec for ByteCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, self.max_request_bytes).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, self.max_response_bytes).await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &request, self.max_request_bytes).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        response: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &response, self.max_response_bytes).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        futures::executor::block_on(future)
    }

    #[test]
    fn frame_round_trip() {
        let mut wire = Vec::new();
        block_on(write_frame(&mut futures::io::Cursor::new(&mut wire), b"hello", 16)).unwrap();
        assert_eq!(wire, [0, 0, 0, 5, b'h', b'e', b'l', b'l', b'o']);
        let body = block_on(read_frame(&mut futures::io::Cursor::new(wire), 16)).unwrap();
        assert_eq!(body, b"hello");
    }

    #[test]
    fn oversize_prefix_is_refused_before_reading_the_body() {
        // Announces 4 GiB - 1 with no body: refused on the prefix alone, nothing allocated.
        let wire = vec![0xff, 0xff, 0xff, 0xff];
        let err = block_on(read_frame(&mut futures::io::Cursor::new(wire), 1024)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn short_body_is_an_error() {
        let wire = vec![0, 0, 0, 9, 1, 2, 3];
        let err = block_on(read_frame(&mut futures::io::Cursor::new(wire), 1024)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn oversize_write_is_refused() {
        let mut wire = Vec::new();
        let err = block_on(write_frame(&mut futures::io::Cursor::new(&mut wire), &[0; 17], 16))
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(wire.is_empty(), "nothing is written for a refused frame");
    }
}
