//! The inbound half of the frame guard, without I/O: bytes in, sanitized bytes and verdicts out.
//!
//! RabbitMQ relays what publishers wrote, mostly unchecked: a routing key or a short-string
//! property with bytes that are not UTF-8, a header table nested thousands of levels deep, a
//! content header whose fields do not parse. amiquip's parser (amq-protocol) either recurses
//! once per nesting level (a stack overflow aborts the process) or refuses the frame (the
//! connection dies, the message is requeued, and the next consumer dies the same way). The
//! guard reads every frame first, iteratively and within fixed limits, and makes it safe:
//!
//! - bytes that are not UTF-8 in short strings, table keys and long strings are replaced,
//!   byte for byte, with `?` (the frame keeps its length);
//! - a table or array nested deeper than [`MAX_DEPTH`] levels is retyped as a byte array of
//!   the same length (`F`/`A` become `x`: the layout is the same), so nothing below it is parsed;
//! - a content header that still does not parse (an unknown field type, a length that overruns
//!   its table, stray bytes) is replaced by a minimal valid one: the same class and body size,
//!   no properties.
//!
//! Each delivery (or `basic.get-ok`) whose frames were changed is reported as an
//! [`Altered`], with the reasons in words. Body frames are never touched: an altered delivery
//! keeps its original body.

use std::fmt;

/// How deeply header tables and arrays may nest (the `headers` table itself is level 1).
pub const MAX_DEPTH: usize = 32;

/// The largest frame accepted; RabbitMQ's own limit on `frame_max` is far below.
pub const MAX_FRAME: usize = 16 * 1024 * 1024;

const FRAME_METHOD: u8 = 1;
const FRAME_HEADER: u8 = 2;
const FRAME_END: u8 = 0xCE;
/// Frame type, channel, payload size.
const FRAME_HEADER_LEN: usize = 7;
/// Class, weight, body size, property flags.
const CONTENT_HEADER_MIN: usize = 14;
const CLASS_BASIC: u16 = 60;

/// A delivery whose frames the guard had to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Altered {
    /// The channel it arrived on.
    pub channel: u16,
    /// Its delivery tag on that channel.
    pub delivery_tag: u64,
    /// What was wrong, in words (`routing key is not UTF-8`); several are joined by `; `.
    pub reason: String,
}

/// A fault the guard cannot repair: the byte stream is not AMQP frames at all. Only a broken
/// broker (or something that is not a broker) sends these; the connection must end.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// A frame announces more bytes than [`MAX_FRAME`].
    TooLarge {
        /// The announced payload size.
        size: usize,
    },
    /// A frame does not end with the frame-end octet.
    NoFrameEnd {
        /// The frame type.
        frame_type: u8,
        /// The channel.
        channel: u16,
    },
    /// A content header too short to hold its class and body size.
    ShortContentHeader {
        /// The channel.
        channel: u16,
        /// The payload size.
        size: usize,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooLarge { size } => write!(
                f,
                "malformed AMQP frame: it announces {size} bytes, more than the {MAX_FRAME} accepted"
            ),
            FrameError::NoFrameEnd {
                frame_type,
                channel,
            } => write!(
                f,
                "malformed AMQP frame (type {frame_type}, channel {channel}): no frame-end octet"
            ),
            FrameError::ShortContentHeader { channel, size } => write!(
                f,
                "malformed AMQP content header on channel {channel}: {size} bytes is too short"
            ),
        }
    }
}

impl std::error::Error for FrameError {}

/// How far [`InboundGuard::process`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// The end of the last complete frame: the bytes before it are safe to hand on.
    pub ready: usize,
    /// The length of the data after rewriting (a replaced content header is shorter).
    pub len: usize,
}

/// The inbound guard of one connection: sanitizes the frames the broker sends.
///
/// It is a state machine over a byte buffer: [`process`](Self::process) takes the bytes read
/// so far and sanitizes every complete frame in place. It remembers, per channel, the delivery
/// whose content header comes next, to report alterations by delivery tag.
///
/// ```
/// use pubsub_amqp::guard::InboundGuard;
///
/// let mut guard = InboundGuard::new();
/// let mut altered = Vec::new();
/// // A heartbeat frame passes unchanged.
/// let mut bytes = vec![8, 0, 0, 0, 0, 0, 0, 0xCE];
/// let progress = guard.process(&mut bytes, 0, &mut altered)?;
/// assert_eq!((progress.ready, progress.len), (8, 8));
/// assert!(altered.is_empty());
/// # Ok::<(), pubsub_amqp::guard::FrameError>(())
/// ```
#[derive(Debug)]
pub struct InboundGuard {
    /// Channels whose next content header belongs to a delivery, a get-ok or a return.
    pending: Vec<(u16, Pending)>,
    /// Whether the first bytes were checked for a protocol header.
    started: bool,
}

#[derive(Debug)]
struct Pending {
    /// `None` for a returned message (it has no delivery tag).
    delivery_tag: Option<u64>,
    reasons: Vec<String>,
}

impl Default for InboundGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl InboundGuard {
    /// A guard for a new connection.
    pub fn new() -> Self {
        InboundGuard {
            pending: Vec::new(),
            started: false,
        }
    }

    /// Sanitizes the complete frames of `buf[from..]` in place; `buf[..from]` was processed
    /// before. Returns where the complete frames end and the new length of the data (a
    /// replaced content header shrinks it: the bytes after it move left). Deliveries that
    /// were changed are pushed onto `altered`.
    ///
    /// # Errors
    ///
    /// A [`FrameError`] when the bytes are not AMQP frames; nothing can be handed on then.
    pub fn process(
        &mut self,
        buf: &mut [u8],
        from: usize,
        altered: &mut Vec<Altered>,
    ) -> Result<Progress, FrameError> {
        let mut len = buf.len();
        let mut pos = from.min(len);
        if !self.started {
            if len - pos < 8 {
                return Ok(Progress { ready: pos, len });
            }
            self.started = true;
            // A broker that refuses our protocol version answers with its own header.
            if buf[pos..pos + 4] == *b"AMQP" {
                pos += 8;
            }
        }
        while len - pos >= FRAME_HEADER_LEN {
            let frame_type = buf[pos];
            let channel = u16::from_be_bytes([buf[pos + 1], buf[pos + 2]]);
            let size = u32::from_be_bytes([buf[pos + 3], buf[pos + 4], buf[pos + 5], buf[pos + 6]])
                as usize;
            if size > MAX_FRAME {
                return Err(FrameError::TooLarge { size });
            }
            let total = size + FRAME_HEADER_LEN + 1;
            if len - pos < total {
                break;
            }
            if buf[pos + total - 1] != FRAME_END {
                return Err(FrameError::NoFrameEnd {
                    frame_type,
                    channel,
                });
            }
            let payload = pos + FRAME_HEADER_LEN..pos + FRAME_HEADER_LEN + size;
            match frame_type {
                FRAME_METHOD => self.method(channel, &mut buf[payload]),
                FRAME_HEADER => {
                    if let Some(new_size) = self.header(channel, &mut buf[payload], altered)? {
                        // Shrink the frame: new size, payload already rewritten, frame end,
                        // then everything after it moves left.
                        let new_total = new_size + FRAME_HEADER_LEN + 1;
                        let size_bytes = u32::try_from(new_size).unwrap_or(0).to_be_bytes();
                        buf[pos + 3..pos + 7].copy_from_slice(&size_bytes);
                        buf[pos + new_total - 1] = FRAME_END;
                        buf.copy_within(pos + total..len, pos + new_total);
                        len -= total - new_total;
                        pos += new_total;
                        continue;
                    }
                }
                _ => {}
            }
            pos += total;
        }
        Ok(Progress { ready: pos, len })
    }

    /// Sanitizes the strings of the methods that carry text a publisher chose, and notes the
    /// delivery whose content header comes next.
    fn method(&mut self, channel: u16, p: &mut [u8]) {
        if p.len() < 4 {
            return;
        }
        let class = u16::from_be_bytes([p[0], p[1]]);
        let method = u16::from_be_bytes([p[2], p[3]]);
        let mut r = Reader { pos: 4 };
        let mut reasons = Vec::new();
        let delivery_tag = match (class, method) {
            // basic.deliver: consumer tag, delivery tag, redelivered, exchange, routing key.
            (CLASS_BASIC, 60) => {
                let (Some(_), Some(tag)) = (r.short_str(p, "consumer tag", &mut reasons), r.u64(p))
                else {
                    return;
                };
                r.skip(p, 1);
                r.short_str(p, "exchange name", &mut reasons);
                r.short_str(p, "routing key", &mut reasons);
                Some(tag)
            }
            // basic.get-ok: delivery tag, redelivered, exchange, routing key, message count.
            (CLASS_BASIC, 71) => {
                let Some(tag) = r.u64(p) else { return };
                r.skip(p, 1);
                r.short_str(p, "exchange name", &mut reasons);
                r.short_str(p, "routing key", &mut reasons);
                Some(tag)
            }
            // basic.return: reply code, reply text, exchange, routing key.
            (CLASS_BASIC, 50) => {
                r.skip(p, 2);
                r.short_str(p, "reply text", &mut reasons);
                r.short_str(p, "exchange name", &mut reasons);
                r.short_str(p, "routing key", &mut reasons);
                None
            }
            // basic.cancel from the broker: consumer tag.
            (CLASS_BASIC, 30) => {
                r.short_str(p, "consumer tag", &mut reasons);
                return;
            }
            // connection.close, channel.close: reply code, reply text (it can quote names).
            (10, 50) | (20, 40) => {
                r.skip(p, 2);
                r.short_str(p, "reply text", &mut reasons);
                return;
            }
            _ => return,
        };
        let pending = Pending {
            delivery_tag,
            reasons,
        };
        match self.pending.iter_mut().find(|(c, _)| *c == channel) {
            Some((_, slot)) => *slot = pending,
            None => self.pending.push((channel, pending)),
        }
    }

    /// Sanitizes a content header; `Some(size)` when it was replaced by a minimal one of
    /// `size` bytes (already written at the start of `p`).
    fn header(
        &mut self,
        channel: u16,
        p: &mut [u8],
        altered: &mut Vec<Altered>,
    ) -> Result<Option<usize>, FrameError> {
        let pending = self
            .pending
            .iter()
            .position(|(c, _)| *c == channel)
            .map(|i| self.pending.swap_remove(i).1);
        if p.len() < CONTENT_HEADER_MIN {
            return Err(FrameError::ShortContentHeader {
                channel,
                size: p.len(),
            });
        }
        let (delivery_tag, mut reasons) = match pending {
            Some(pending) => (pending.delivery_tag, pending.reasons),
            None => (None, Vec::new()),
        };
        let class = u16::from_be_bytes([p[0], p[1]]);
        let mut replaced = None;
        if class == CLASS_BASIC {
            if let Err(why) = sanitize_properties(&mut p[12..], &mut reasons) {
                reasons.push(format!("content header is unparseable ({why})"));
                p[12] = 0;
                p[13] = 0;
                replaced = Some(CONTENT_HEADER_MIN);
            }
        }
        if !reasons.is_empty() {
            reasons.dedup();
            let reason = reasons.join("; ");
            match delivery_tag {
                Some(delivery_tag) => altered.push(Altered {
                    channel,
                    delivery_tag,
                    reason,
                }),
                None => log::warn!("a returned message on channel {channel} was altered: {reason}"),
            }
        }
        Ok(replaced)
    }
}

/// The basic class's properties, in flag order (bit 15 first).
const PROPERTIES: [(Kind, &str); 14] = [
    (Kind::Short, "content_type"),
    (Kind::Short, "content_encoding"),
    (Kind::Table, "headers"),
    (Kind::Octet, "delivery_mode"),
    (Kind::Octet, "priority"),
    (Kind::Short, "correlation_id"),
    (Kind::Short, "reply_to"),
    (Kind::Short, "expiration"),
    (Kind::Short, "message_id"),
    (Kind::Timestamp, "timestamp"),
    (Kind::Short, "type"),
    (Kind::Short, "user_id"),
    (Kind::Short, "app_id"),
    (Kind::Short, "cluster_id"),
];

#[derive(Debug, Clone, Copy)]
enum Kind {
    Short,
    Table,
    Octet,
    Timestamp,
}

/// Sanitizes the property flags and properties of a basic content header, in place. An
/// error says why they cannot be parsed at all.
fn sanitize_properties(p: &mut [u8], reasons: &mut Vec<String>) -> Result<(), String> {
    let flags = u16::from_be_bytes([p[0], p[1]]);
    if flags & 0b11 != 0 {
        return Err(format!(
            "property flags {flags:#06x} set reserved or continuation bits"
        ));
    }
    let mut r = Reader { pos: 2 };
    for (i, (kind, name)) in PROPERTIES.iter().enumerate() {
        if flags & (1 << (15 - i)) == 0 {
            continue;
        }
        let ok = match kind {
            Kind::Short => r.short_str(p, name, reasons).is_some(),
            Kind::Octet => r.skip(p, 1),
            Kind::Timestamp => r.skip(p, 8),
            Kind::Table => {
                r.pos = sanitize_table(p, r.pos, reasons)?;
                true
            }
        };
        if !ok {
            return Err(format!("property {name} overruns the frame"));
        }
    }
    if r.pos != p.len() {
        return Err(format!(
            "{} unexpected bytes after the properties",
            p.len() - r.pos
        ));
    }
    Ok(())
}

/// Sanitizes the field table at `p[start..]` without recursion; returns where it ends.
///
/// Tables and arrays deeper than [`MAX_DEPTH`] are retyped as byte arrays (`x`), which have
/// the same layout (a 32-bit length, then the bytes), so nothing below them is parsed.
fn sanitize_table(p: &mut [u8], start: usize, reasons: &mut Vec<String>) -> Result<usize, String> {
    // The open tables and arrays: (end offset, is a table).
    let mut stack = [(0usize, false); MAX_DEPTH];
    let mut depth = 0;
    let mut r = Reader { pos: start };
    let end = r
        .len32(p, p.len())
        .ok_or("the headers table overruns the frame")?;
    stack[0] = (end, true);
    depth += 1;
    let mut key_not_utf8 = false;
    let mut value_not_utf8 = false;
    let mut too_deep = false;
    while depth > 0 {
        let (end, is_table) = stack[depth - 1];
        if r.pos == end {
            depth -= 1;
            continue;
        }
        if is_table {
            let len = usize::from(*p.get(r.pos).ok_or("a header name overruns its table")?);
            if r.pos + 1 + len > end {
                return Err("a header name overruns its table".to_owned());
            }
            key_not_utf8 |= replace_invalid_utf8(&mut p[r.pos + 1..r.pos + 1 + len]);
            r.pos += 1 + len;
        }
        let field_type = *p
            .get(r.pos)
            .filter(|_| r.pos < end)
            .ok_or("a header has no value")?;
        r.pos += 1;
        let fixed = match field_type {
            b't' | b'b' | b'B' => 1,
            b's' | b'U' | b'u' => 2,
            b'I' | b'i' | b'f' => 4,
            b'D' => 5,
            b'l' | b'L' | b'd' | b'T' => 8,
            b'V' => 0,
            b'S' => {
                let value_end = r.len32(p, end).ok_or("a header value overruns its table")?;
                value_not_utf8 |= replace_invalid_utf8(&mut p[r.pos..value_end]);
                r.pos = value_end;
                continue;
            }
            b'x' => {
                r.pos = r.len32(p, end).ok_or("a header value overruns its table")?;
                continue;
            }
            b'F' | b'A' => {
                let type_at = r.pos - 1;
                let nested_end = r.len32(p, end).ok_or("a header value overruns its table")?;
                if depth == MAX_DEPTH {
                    p[type_at] = b'x';
                    too_deep = true;
                    r.pos = nested_end;
                } else {
                    stack[depth] = (nested_end, field_type == b'F');
                    depth += 1;
                }
                continue;
            }
            other => {
                return Err(format!(
                    "unknown header field type {:?}",
                    char::from(other).escape_default().to_string()
                ))
            }
        };
        if r.pos + fixed > end {
            return Err("a header value overruns its table".to_owned());
        }
        r.pos += fixed;
    }
    if key_not_utf8 {
        reasons.push("a header name is not UTF-8".to_owned());
    }
    if value_not_utf8 {
        reasons.push("a header value is not UTF-8".to_owned());
    }
    if too_deep {
        reasons.push(format!("headers nested deeper than {MAX_DEPTH} levels"));
    }
    Ok(r.pos)
}

/// A cursor over a payload; every read is bounds-checked.
struct Reader {
    pos: usize,
}

impl Reader {
    /// Skips `n` bytes; false if they are not there.
    fn skip(&mut self, p: &[u8], n: usize) -> bool {
        if self.pos + n > p.len() {
            self.pos = p.len();
            return false;
        }
        self.pos += n;
        true
    }

    fn u64(&mut self, p: &[u8]) -> Option<u64> {
        let bytes = p.get(self.pos..self.pos + 8)?;
        self.pos += 8;
        let mut array = [0u8; 8];
        array.copy_from_slice(bytes);
        Some(u64::from_be_bytes(array))
    }

    /// Reads a 32-bit length and returns the end of what it measures, if that is within
    /// `limit`; the cursor moves past the length.
    fn len32(&mut self, p: &[u8], limit: usize) -> Option<usize> {
        let bytes = p.get(self.pos..self.pos + 4)?;
        let len = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        self.pos += 4;
        let end = self.pos.checked_add(len)?;
        (end <= limit).then_some(end)
    }

    /// Sanitizes a short string in place; `None` if it overruns the payload. A string that
    /// was not UTF-8 adds "`name` is not UTF-8" to the reasons.
    fn short_str(&mut self, p: &mut [u8], name: &str, reasons: &mut Vec<String>) -> Option<()> {
        let len = usize::from(*p.get(self.pos)?);
        let bytes = p.get_mut(self.pos + 1..self.pos + 1 + len)?;
        if replace_invalid_utf8(bytes) {
            reasons.push(format!("{name} is not UTF-8"));
        }
        self.pos += 1 + len;
        Some(())
    }
}

/// Replaces every byte of every invalid UTF-8 sequence with `?`; true if there was one.
pub(crate) fn replace_invalid_utf8(bytes: &mut [u8]) -> bool {
    if bytes.is_ascii() {
        return false;
    }
    let mut changed = false;
    let mut at = 0;
    while at < bytes.len() {
        match std::str::from_utf8(&bytes[at..]) {
            Ok(_) => break,
            Err(e) => {
                let bad_start = at + e.valid_up_to();
                let bad_len = e.error_len().unwrap_or(bytes.len() - bad_start);
                bytes[bad_start..bad_start + bad_len].fill(b'?');
                changed = true;
                at = bad_start + bad_len;
            }
        }
    }
    changed
}

#[cfg(test)]
mod tests;
