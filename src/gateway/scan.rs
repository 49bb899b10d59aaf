//! Zero-copy scanner for gateway payloads.
//!
//! The ingestor forwards Discord's bytes untouched, so all it needs from a
//! payload is the envelope (`op`, `t`, `s`) and, for dispatches, the id of
//! the guild the event belongs to. Building a DOM for a 500 KB GUILD_CREATE
//! just to read four fields would dominate the ingest path, so this module
//! walks the JSON text once, skipping values it does not need, and returns
//! byte ranges and small integers instead of a tree.
//!
//! The scanner makes no assumption about key order (Discord does not promise
//! one; `d` often comes before `s` and `t`), handles escapes inside strings
//! (a message whose content is `"op":1` must not confuse it) and rejects
//! anything that is not a single well-formed JSON object, so that a corrupt
//! frame ends in a resume instead of a wrong routing decision. Of duplicate
//! keys the last one wins, for `d` and the ids inside it as for `op`, `s`
//! and `t`, so routing agrees with what serde_json in a worker reads.

use std::ops::Range;

/// Maximum nesting depth accepted inside a payload.
///
/// Discord payloads nest a handful of levels (GUILD_CREATE members → user →
/// avatar decoration data); 128 leaves room while keeping hostile input from
/// costing anything but a linear pass.
const MAX_DEPTH: usize = 128;

/// The envelope of one gateway payload, as byte ranges into the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Gateway opcode (`op`).
    pub op: u8,
    /// Sequence number (`s`), when present and not `null`.
    pub seq: Option<u64>,
    /// Byte range of the event name (`t`) without its quotes, when it is a string.
    pub event_name: Option<Range<usize>>,
    /// Byte range of the whole `d` value, when present.
    pub data: Option<Range<usize>>,
    /// Byte range of `d.guild_id` (string contents or digits), when present.
    pub data_guild_id: Option<Range<usize>>,
    /// Byte range of `d.id` (string contents or digits), when present.
    pub data_id: Option<Range<usize>>,
    /// Byte range of `d.joined_at` (string contents), when present: on
    /// GUILD_CREATE it tells a new join from a guild the bot was already in.
    pub data_joined_at: Option<Range<usize>>,
}

impl Envelope {
    /// The event name, borrowed from `payload`.
    #[must_use]
    pub fn event_name<'p>(&self, payload: &'p [u8]) -> Option<&'p str> {
        self.event_name
            .clone()
            .and_then(|r| std::str::from_utf8(&payload[r]).ok())
    }

    /// The guild this dispatch belongs to, per the message contract: `d.id`
    /// for GUILD_CREATE/UPDATE/DELETE (the guild object itself), otherwise
    /// `d.guild_id`.
    #[must_use]
    pub fn guild_id<'p>(&self, payload: &'p [u8]) -> Option<&'p str> {
        self.guild_id_range(payload)
            .and_then(|r| std::str::from_utf8(&payload[r]).ok())
    }

    /// The byte range of [`guild_id`](Self::guild_id).
    #[must_use]
    pub fn guild_id_range(&self, payload: &[u8]) -> Option<Range<usize>> {
        match self.event_name(payload) {
            Some("GUILD_CREATE" | "GUILD_UPDATE" | "GUILD_DELETE") => self.data_id.clone(),
            _ => self.data_guild_id.clone(),
        }
    }
}

/// Why a payload could not be scanned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    /// The JSON text ended before the object was complete.
    #[error("payload truncated at byte {0}")]
    Truncated(usize),
    /// A byte that cannot appear at this position.
    #[error("unexpected byte {byte:#04x} at {at}")]
    Unexpected {
        /// The offending byte.
        byte: u8,
        /// Its offset in the payload.
        at: usize,
    },
    /// Nesting deeper than the scanner accepts.
    #[error("payload nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// `op` missing or not a small non-negative integer.
    #[error("payload has no valid `op`")]
    BadOpcode,
    /// `s` present but neither `null` nor an integer that fits in 64 bits.
    #[error("payload has an invalid `s`")]
    BadSequence,
    /// Bytes after the closing brace of the top-level object.
    #[error("trailing bytes after the payload at {0}")]
    Trailing(usize),
}

/// Scans one gateway payload without allocating.
///
/// # Errors
///
/// Returns a [`ScanError`] if `payload` is not exactly one JSON object, or
/// if its `op` or `s` is malformed.
pub fn scan(payload: &[u8]) -> Result<Envelope, ScanError> {
    let mut cur = Cursor {
        buf: payload,
        pos: 0,
    };
    cur.skip_ws();
    cur.expect(b'{')?;
    let mut op = None;
    let mut seq = None;
    let mut event_name = None;
    let mut data = None;
    let mut data_guild_id = None;
    let mut data_id = None;
    let mut data_joined_at = None;

    cur.skip_ws();
    if cur.peek()? == b'}' {
        cur.pos += 1;
    } else {
        loop {
            cur.skip_ws();
            let key = cur.string()?;
            cur.skip_ws();
            cur.expect(b':')?;
            cur.skip_ws();
            match &payload[key] {
                b"op" => op = Some(cur.integer()?.ok_or(ScanError::BadOpcode)?),
                b"s" => {
                    seq = match cur.peek()? {
                        b'n' => {
                            cur.literal(b"null")?;
                            None
                        }
                        _ => Some(cur.integer()?.ok_or(ScanError::BadSequence)?),
                    };
                }
                b"t" => {
                    event_name = match cur.peek()? {
                        b'"' => Some(cur.string()?),
                        _ => {
                            cur.skip_value(0)?;
                            None
                        }
                    };
                }
                b"d" => {
                    let start = cur.pos;
                    // A later `d` replaces an earlier one entirely, ids
                    // included (last duplicate wins, as in serde_json).
                    let ids = if cur.peek()? == b'{' {
                        cur.data_object()?
                    } else {
                        cur.skip_value(0)?;
                        DataIds::default()
                    };
                    data_guild_id = ids.guild_id;
                    data_id = ids.id;
                    data_joined_at = ids.joined_at;
                    data = Some(start..cur.pos);
                }
                _ => cur.skip_value(0)?,
            }
            cur.skip_ws();
            match cur.next()? {
                b',' => {}
                b'}' => break,
                byte => {
                    return Err(ScanError::Unexpected {
                        byte,
                        at: cur.pos - 1,
                    });
                }
            }
        }
    }
    cur.skip_ws();
    if cur.pos != payload.len() {
        return Err(ScanError::Trailing(cur.pos));
    }
    let op = op
        .and_then(|op| u8::try_from(op).ok())
        .ok_or(ScanError::BadOpcode)?;
    Ok(Envelope {
        op,
        seq,
        event_name,
        data,
        data_guild_id,
        data_id,
        data_joined_at,
    })
}

/// Ids captured from the top level of `d`.
#[derive(Default)]
struct DataIds {
    guild_id: Option<Range<usize>>,
    id: Option<Range<usize>>,
    joined_at: Option<Range<usize>>,
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Result<u8, ScanError> {
        self.buf
            .get(self.pos)
            .copied()
            .ok_or(ScanError::Truncated(self.pos))
    }

    fn next(&mut self) -> Result<u8, ScanError> {
        let byte = self.peek()?;
        self.pos += 1;
        Ok(byte)
    }

    fn expect(&mut self, want: u8) -> Result<(), ScanError> {
        match self.next()? {
            byte if byte == want => Ok(()),
            byte => Err(ScanError::Unexpected {
                byte,
                at: self.pos - 1,
            }),
        }
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.buf.get(self.pos) {
            self.pos += 1;
        }
    }

    /// Consumes a string and returns the range of its contents (escapes left as is).
    fn string(&mut self) -> Result<Range<usize>, ScanError> {
        self.expect(b'"')?;
        let start = self.pos;
        loop {
            let rest = &self.buf[self.pos..];
            let Some(offset) = memchr::memchr2(b'"', b'\\', rest) else {
                return Err(ScanError::Truncated(self.buf.len()));
            };
            self.pos += offset;
            if self.buf[self.pos] == b'"' {
                let end = self.pos;
                self.pos += 1;
                return Ok(start..end);
            }
            // A backslash escapes exactly the next byte for our purposes:
            // `\"` and `\\` are the only escapes that matter to framing, and
            // `\uXXXX` contains no quote or backslash.
            self.pos += 2;
            if self.pos > self.buf.len() {
                return Err(ScanError::Truncated(self.buf.len()));
            }
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), ScanError> {
        if self.buf[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(())
        } else if self.buf.len() - self.pos < word.len() && word.starts_with(&self.buf[self.pos..])
        {
            Err(ScanError::Truncated(self.buf.len()))
        } else {
            Err(ScanError::Unexpected {
                byte: self.buf[self.pos],
                at: self.pos,
            })
        }
    }

    /// Consumes a JSON number; returns its value when it is a non-negative
    /// integer that fits in 64 bits, `None` for any other number.
    fn integer(&mut self) -> Result<Option<u64>, ScanError> {
        let start = self.pos;
        let range = self.number()?;
        let digits = &self.buf[range];
        if digits.is_empty() || digits.iter().any(|b| !b.is_ascii_digit()) {
            return Ok(None);
        }
        let mut value: u64 = 0;
        for &d in digits {
            value = match value
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(d - b'0')))
            {
                Some(v) => v,
                None => return Ok(None),
            };
        }
        debug_assert!(self.pos > start);
        Ok(Some(value))
    }

    fn number(&mut self) -> Result<Range<usize>, ScanError> {
        let start = self.pos;
        while let Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') = self.buf.get(self.pos) {
            self.pos += 1;
        }
        if self.pos == start {
            return Err(match self.buf.get(self.pos) {
                Some(&byte) => ScanError::Unexpected { byte, at: self.pos },
                None => ScanError::Truncated(self.pos),
            });
        }
        Ok(start..self.pos)
    }

    /// Consumes the top-level `d` object, remembering `guild_id` and `id`.
    fn data_object(&mut self) -> Result<DataIds, ScanError> {
        let mut ids = DataIds::default();
        self.expect(b'{')?;
        self.skip_ws();
        if self.peek()? == b'}' {
            self.pos += 1;
            return Ok(ids);
        }
        loop {
            self.skip_ws();
            let key = self.string()?;
            self.skip_ws();
            self.expect(b':')?;
            self.skip_ws();
            let slot = match &self.buf[key] {
                b"guild_id" => Some(&mut ids.guild_id),
                b"id" => Some(&mut ids.id),
                b"joined_at" => Some(&mut ids.joined_at),
                _ => None,
            };
            match (slot, self.peek()?) {
                (Some(slot), b'"') => *slot = Some(self.string()?),
                (Some(slot), b'0'..=b'9') => *slot = Some(self.number()?),
                // A later duplicate that is no id (`null`, an object)
                // still replaces the earlier one.
                (Some(slot), _) => {
                    *slot = None;
                    self.skip_value(1)?;
                }
                (None, _) => self.skip_value(1)?,
            }
            self.skip_ws();
            match self.next()? {
                b',' => {}
                b'}' => return Ok(ids),
                byte => {
                    return Err(ScanError::Unexpected {
                        byte,
                        at: self.pos - 1,
                    });
                }
            }
        }
    }

    /// Skips one value of any type, checking its structure.
    fn skip_value(&mut self, depth: usize) -> Result<(), ScanError> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' => self.skip_container(depth, b'}', true),
            b'[' => self.skip_container(depth, b']', false),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number().map(drop),
            byte => Err(ScanError::Unexpected { byte, at: self.pos }),
        }
    }

    fn skip_container(&mut self, depth: usize, close: u8, keyed: bool) -> Result<(), ScanError> {
        if depth >= MAX_DEPTH {
            return Err(ScanError::TooDeep);
        }
        self.pos += 1;
        self.skip_ws();
        if self.peek()? == close {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.skip_ws();
            if keyed {
                self.string()?;
                self.skip_ws();
                self.expect(b':')?;
                self.skip_ws();
            }
            self.skip_value(depth + 1)?;
            self.skip_ws();
            match self.next()? {
                b',' => {}
                byte if byte == close => return Ok(()),
                byte => {
                    return Err(ScanError::Unexpected {
                        byte,
                        at: self.pos - 1,
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
