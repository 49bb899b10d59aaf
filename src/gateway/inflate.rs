//! zlib-stream transport decompression.
//!
//! With `compress=zlib-stream` Discord keeps one deflate context for the
//! whole connection and ends every gateway message with a `Z_SYNC_FLUSH`, so
//! a message is complete when the bytes received so far end in
//! `00 00 FF FF` (Discord docs, "Transport Compression"). A message may span
//! several WebSocket messages; the context must be reset on every new
//! connection.
//!
//! Frames are inflated as they arrive, straight into the buffer that becomes
//! the published message body: there is no compressed accumulation buffer
//! and no copy of the inflated bytes. The output buffer is handed off whole
//! at the end of each message, so nothing stays allocated between messages
//! and a 5 MB GUILD_CREATE does not leave a 5 MB buffer behind (the bug of
//! discord-api-docs PR #1279). What a connection keeps is zlib's own state:
//! the 32 KiB window and the inflate tables.

use bytes::Bytes;
use flate2::{Decompress, FlushDecompress, Status};

/// The `Z_SYNC_FLUSH` marker that ends every zlib-stream gateway message.
pub const SYNC_FLUSH_SUFFIX: [u8; 4] = [0x00, 0x00, 0xFF, 0xFF];

/// Smallest output reservation, so tiny frames (heartbeat ACKs) do not
/// trigger a chain of reallocations.
const MIN_RESERVE: usize = 256;

/// Typical inflation ratio of gateway JSON with a warm window, used to size
/// the first reservation for a message.
const EXPECTED_RATIO: usize = 6;

/// Why a frame could not be inflated.
#[derive(Debug, thiserror::Error)]
pub enum InflateError {
    /// The compressed stream is corrupt.
    #[error("corrupt zlib stream: {0}")]
    Corrupt(#[from] flate2::DecompressError),
    /// The stream signalled its end; Discord never ends the stream.
    #[error("zlib stream ended unexpectedly")]
    StreamEnded,
    /// The message inflated past the configured limit.
    #[error("inflated message exceeds {limit} bytes")]
    Oversized {
        /// The configured limit, in bytes.
        limit: usize,
    },
}

/// Per-connection zlib-stream decompressor.
pub struct Inflater {
    zlib: Decompress,
    message: Vec<u8>,
    tail: [u8; 4],
    max_message: usize,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater")
            .field("total_in", &self.zlib.total_in())
            .field("total_out", &self.zlib.total_out())
            .field("pending", &self.message.len())
            .finish_non_exhaustive()
    }
}

impl Inflater {
    /// Creates an inflater that rejects messages larger than `max_message`
    /// bytes once inflated.
    #[must_use]
    pub fn new(max_message: usize) -> Self {
        Self {
            zlib: Decompress::new(true),
            message: Vec::new(),
            tail: [0xAA; 4],
            max_message,
        }
    }

    /// Forgets the context and any partial message, for a new connection.
    pub fn reset(&mut self) {
        self.zlib.reset(true);
        self.message = Vec::new();
        self.tail = [0xAA; 4];
    }

    /// Bytes of a partly received message held right now.
    #[must_use]
    pub fn pending_len(&self) -> usize {
        self.message.len()
    }

    /// Feeds one WebSocket message and returns the gateway message it
    /// completes, if any.
    ///
    /// # Errors
    ///
    /// Returns [`InflateError`] if the stream is corrupt or the message grows
    /// past the limit. The context is then unusable; the caller must drop the
    /// connection (and resume on a new one).
    pub fn push(&mut self, frame: &[u8]) -> Result<Option<Bytes>, InflateError> {
        self.remember_tail(frame);
        let mut input = frame;
        if self.message.capacity() == 0 {
            // Not `clamp`: it panics when the limit is below MIN_RESERVE.
            let guess = (frame.len().saturating_mul(EXPECTED_RATIO))
                .max(MIN_RESERVE)
                .min(self.max_message.max(1));
            self.message.reserve_exact(guess);
        }
        loop {
            if self.message.len() == self.message.capacity() {
                self.grow()?;
            }
            let before = self.zlib.total_in();
            let status =
                self.zlib
                    .decompress_vec(input, &mut self.message, FlushDecompress::Sync)?;
            let consumed = usize::try_from(self.zlib.total_in() - before).unwrap_or(input.len());
            input = &input[consumed..];
            if status == Status::StreamEnd {
                return Err(InflateError::StreamEnded);
            }
            // Done once all input is consumed and zlib stopped for lack of
            // input rather than lack of room.
            if input.is_empty() && self.message.len() < self.message.capacity() {
                break;
            }
            if consumed == 0 && self.message.len() < self.message.capacity() {
                // No progress with room to spare: zlib needs more input.
                break;
            }
        }
        if self.message.len() > self.max_message {
            return Err(InflateError::Oversized {
                limit: self.max_message,
            });
        }
        if self.tail != SYNC_FLUSH_SUFFIX {
            return Ok(None);
        }
        self.tail = [0xAA; 4];
        Ok(Some(Bytes::from(std::mem::take(&mut self.message))))
    }

    fn grow(&mut self) -> Result<(), InflateError> {
        let len = self.message.len();
        // A full buffer of exactly `max_message` bytes may be the whole
        // message: grow by one byte to find out, and fail only past it.
        if len > self.max_message {
            return Err(InflateError::Oversized {
                limit: self.max_message,
            });
        }
        let extra = len.max(MIN_RESERVE).min(self.max_message + 1 - len);
        self.message.reserve_exact(extra);
        Ok(())
    }

    fn remember_tail(&mut self, frame: &[u8]) {
        if frame.len() >= 4 {
            self.tail.copy_from_slice(&frame[frame.len() - 4..]);
        } else {
            let keep = 4 - frame.len();
            self.tail.copy_within(frame.len().., 0);
            self.tail[keep..].copy_from_slice(frame);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compress, Compression, FlushCompress};

    /// A server-side zlib-stream: one context, each message sync-flushed.
    struct Deflater(Compress);

    impl Deflater {
        fn new() -> Self {
            Self(Compress::new(Compression::default(), true))
        }
        fn message(&mut self, payload: &[u8]) -> Vec<u8> {
            let mut out = Vec::with_capacity(payload.len() + 64);
            let mut input = payload;
            loop {
                if out.len() == out.capacity() {
                    out.reserve(1024);
                }
                let before = self.0.total_in();
                self.0
                    .compress_vec(input, &mut out, FlushCompress::Sync)
                    .unwrap();
                input = &input[usize::try_from(self.0.total_in() - before).unwrap()..];
                if input.is_empty() && out.len() < out.capacity() {
                    break;
                }
            }
            assert!(out.ends_with(&SYNC_FLUSH_SUFFIX));
            out
        }
    }

    #[test]
    fn messages_share_one_context() {
        let mut tx = Deflater::new();
        let mut rx = Inflater::new(1 << 20);
        for i in 0..50 {
            let payload =
                format!(r#"{{"op":0,"s":{i},"t":"MESSAGE_CREATE","d":{{"content":"hello {i}"}}}}"#);
            let frame = tx.message(payload.as_bytes());
            let got = rx.push(&frame).unwrap().expect("complete message");
            assert_eq!(&got[..], payload.as_bytes());
        }
    }

    #[test]
    fn message_split_across_frames_including_inside_the_suffix() {
        let mut tx = Deflater::new();
        let payload = "x".repeat(10_000) + "💥";
        let frame = tx.message(payload.as_bytes());
        for split in [1, 2, 3, frame.len() / 2, frame.len() - 3, frame.len() - 1] {
            let mut tx = Deflater::new();
            let frame = tx.message(payload.as_bytes());
            let mut rx = Inflater::new(1 << 20);
            assert!(rx.push(&frame[..split]).unwrap().is_none(), "split {split}");
            let got = rx.push(&frame[split..]).unwrap().expect("complete");
            assert_eq!(&got[..], payload.as_bytes());
        }
        let _ = frame;
    }

    #[test]
    fn large_message_leaves_no_buffer_behind() {
        let mut tx = Deflater::new();
        let mut rx = Inflater::new(64 << 20);
        let big = format!(r#"{{"op":0,"d":"{}"}}"#, "ab".repeat(2 << 20));
        let got = rx.push(&tx.message(big.as_bytes())).unwrap().unwrap();
        assert_eq!(got.len(), big.len());
        assert_eq!(rx.message.capacity(), 0);
        let small = rx.push(&tx.message(br#"{"op":11}"#)).unwrap().unwrap();
        assert_eq!(&small[..], br#"{"op":11}"#);
    }

    #[test]
    fn corrupt_stream_is_an_error() {
        let mut rx = Inflater::new(1 << 20);
        let err = rx
            .push(b"\x78\x9c\xde\xad\xbe\xef\x00\x00\xff\xff")
            .unwrap_err();
        assert!(matches!(err, InflateError::Corrupt(_)), "{err}");
    }

    #[test]
    fn oversized_message_is_an_error() {
        let mut tx = Deflater::new();
        let mut rx = Inflater::new(4096);
        let err = rx.push(&tx.message(&[b'a'; 10_000])).unwrap_err();
        assert!(
            matches!(err, InflateError::Oversized { limit: 4096 }),
            "{err}"
        );
    }

    /// Found by the `inflate` fuzz target's oracle on a seed: when the
    /// buffer doubled to exactly the limit, a message of exactly
    /// `max_message` bytes was rejected.
    #[test]
    fn message_of_exactly_the_limit_is_accepted() {
        let mut tx = Deflater::new();
        let mut rx = Inflater::new(4096);
        let got = rx.push(&tx.message(&[b'x'; 4096])).unwrap().unwrap();
        assert_eq!(got.len(), 4096);
        let err = rx.push(&tx.message(&[b'x'; 4097])).unwrap_err();
        assert!(
            matches!(err, InflateError::Oversized { limit: 4096 }),
            "{err}"
        );
    }

    /// Found by the `inflate` fuzz target on a seed: a limit below the 256-byte
    /// minimum reservation made `clamp` panic on the first frame.
    #[test]
    fn limit_below_the_minimum_reservation_does_not_panic() {
        for limit in [0, 1, 100, 255] {
            let mut tx = Deflater::new();
            let mut rx = Inflater::new(limit);
            let got = rx.push(&tx.message(&b"{\"op\":11}"[..limit.min(9)]));
            if limit >= 9 {
                assert_eq!(&got.unwrap().unwrap()[..], br#"{"op":11}"#);
            }
            let err = rx.push(&tx.message(&[b'a'; 300])).unwrap_err();
            assert!(matches!(err, InflateError::Oversized { .. }), "{err}");
        }
    }

    #[test]
    fn reset_starts_a_new_context() {
        let mut rx = Inflater::new(1 << 20);
        let mut tx = Deflater::new();
        rx.push(&tx.message(b"first")).unwrap().unwrap();
        // Half a message, then the connection drops.
        let partial = tx.message(b"second message");
        rx.push(&partial[..partial.len() / 2]).unwrap();
        rx.reset();
        let mut tx = Deflater::new();
        assert_eq!(
            &rx.push(&tx.message(b"third")).unwrap().unwrap()[..],
            b"third"
        );
    }
}
