//! `compress=zlib-stream` transport compression, server side (PROTOCOL.md
//! §1.6).
//!
//! One deflate context per connection, shared by every message on it; each
//! message is flushed with `Z_SYNC_FLUSH`, so its bytes end with
//! `00 00 FF FF` and a client inflating the concatenation of all messages
//! gets each payload back in turn. The first message starts with the zlib
//! header. Compression level 1: the simulator must push 50,000 events/s on
//! one core, and the level does not change what a client has to handle.

use bytes::Bytes;
use flate2::{Compress, Compression, FlushCompress, Status};

/// The four bytes every zlib-stream message ends with.
pub const ZLIB_SUFFIX: [u8; 4] = [0x00, 0x00, 0xFF, 0xFF];

/// A connection's deflate context.
pub(crate) struct ZlibStream {
    ctx: Compress,
}

impl ZlibStream {
    /// A fresh context (zlib header on the first message).
    pub(crate) fn new() -> Self {
        Self {
            ctx: Compress::new(Compression::new(1), true),
        }
    }

    /// Compress one whole message and sync-flush it.
    pub(crate) fn compress(&mut self, input: &[u8]) -> Bytes {
        let mut out = Vec::with_capacity(input.len() / 3 + 64);
        let mut consumed = 0;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(256));
            }
            let before = self.ctx.total_in();
            let status = self
                .ctx
                .compress_vec(&input[consumed..], &mut out, FlushCompress::Sync)
                .expect("deflate on an in-memory buffer cannot fail");
            consumed += (self.ctx.total_in() - before) as usize;
            debug_assert!(matches!(status, Status::Ok | Status::BufError));
            // The flush is complete once all input is in and deflate stopped
            // with output space left over.
            if consumed == input.len() && out.len() < out.capacity() {
                break;
            }
        }
        debug_assert!(out.ends_with(&ZLIB_SUFFIX));
        Bytes::from(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Decompress, FlushDecompress};

    fn inflate(ctx: &mut Decompress, input: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(input.len() * 4 + 64);
        let mut consumed = 0;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity());
            }
            let before = ctx.total_in();
            ctx.decompress_vec(&input[consumed..], &mut out, FlushDecompress::Sync)
                .unwrap();
            consumed += (ctx.total_in() - before) as usize;
            if consumed == input.len() && out.len() < out.capacity() {
                return out;
            }
        }
    }

    #[test]
    fn messages_share_one_context_and_end_with_the_suffix() {
        let mut z = ZlibStream::new();
        let mut d = Decompress::new(true);
        let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        for msg in [&b"{\"op\":10}"[..], &big, b"{\"op\":11}"] {
            let c = z.compress(msg);
            assert!(c.ends_with(&ZLIB_SUFFIX));
            assert_eq!(inflate(&mut d, &c), msg);
        }
    }
}
