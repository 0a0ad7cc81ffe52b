//! Decoding what the broker sends (pure, bounded).

use super::*;

/// One frame read from the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The frame type (1 method, 2 content header, 3 body, 8 heartbeat).
    pub kind: u8,
    /// The channel.
    pub channel: u16,
    /// The payload.
    pub payload: Vec<u8>,
}

/// Reads one frame from the front of `buf`: `Ok(None)` when more bytes are needed,
/// `Ok(Some((frame, used)))` when one is complete.
///
/// # Errors
///
/// [`Error::Protocol`] when the frame announces more than `max_payload` bytes or does not
/// end with the frame-end octet.
pub fn parse_frame(buf: &[u8], max_payload: u32) -> Result<Option<(Frame, usize)>> {
    let Some(head) = buf.get(..7) else {
        return Ok(None);
    };
    let kind = head[0];
    let channel = u16::from_be_bytes([head[1], head[2]]);
    let size = u32::from_be_bytes([head[3], head[4], head[5], head[6]]);
    if size > max_payload {
        return Err(Error::Protocol(format!(
            "a frame of {size} bytes, over the limit of {max_payload}"
        )));
    }
    let end = 7 + size as usize;
    let Some(&end_octet) = buf.get(end) else {
        return Ok(None);
    };
    if end_octet != FRAME_END {
        return Err(Error::Protocol(format!(
            "a frame ends with {end_octet:#04x}, not {FRAME_END:#04x}"
        )));
    }
    Ok(Some((
        Frame {
            kind,
            channel,
            payload: buf[7..end].to_vec(),
        },
        end + 1,
    )))
}

/// A bounds-checked reader over a method's arguments.
#[derive(Debug)]
pub(super) struct Args<'a> {
    pub(super) bytes: &'a [u8],
}

impl<'a> Args<'a> {
    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.bytes.len() {
            return Err(Error::Protocol(format!(
                "a method's arguments end {} bytes early",
                n - self.bytes.len()
            )));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    pub(super) fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    pub(super) fn u16(&mut self) -> Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub(super) fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(super) fn u64(&mut self) -> Result<u64> {
        let mut v = [0; 8];
        v.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(v))
    }

    pub(super) fn short_str(&mut self) -> Result<&'a [u8]> {
        let n = self.u8()?;
        self.take(usize::from(n))
    }

    /// A long string, or a table skipped whole (same layout: a 32-bit length, then bytes).
    pub(super) fn long_str(&mut self) -> Result<&'a [u8]> {
        let n = self.u32()?;
        self.take(n as usize)
    }
}

/// A method frame's class, method and arguments.
pub(super) fn parse_method(payload: &[u8]) -> Result<(u16, u16, Args<'_>)> {
    let mut args = Args { bytes: payload };
    let class = args.u16()?;
    let id = args.u16()?;
    Ok((class, id, args))
}

/// `connection.close` or `channel.close` arguments: reply code and text.
pub(super) fn parse_close(mut args: Args<'_>) -> Result<(u16, String)> {
    let code = args.u16()?;
    let text = String::from_utf8_lossy(args.short_str()?).into_owned();
    Ok((code, text))
}

/// The frame size to agree on, given the broker's (0: no limit).
pub(super) fn negotiate_frame_max(server: u32) -> u32 {
    if server == 0 {
        DEFAULT_FRAME_MAX
    } else {
        server.min(DEFAULT_FRAME_MAX)
    }
}

/// The SASL PLAIN response: `\0user\0password`.
pub(super) fn plain_response(username: &str, password: &str) -> Vec<u8> {
    let mut r = Vec::with_capacity(username.len() + password.len() + 2);
    r.push(0);
    r.extend_from_slice(username.as_bytes());
    r.push(0);
    r.extend_from_slice(password.as_bytes());
    r
}
