//! The outbound half of the frame guard, without I/O: puts the real credentials into the
//! client's `connection.start-ok`.
//!
//! amiquip logs the frames of the handshake at debug level, the SASL response (`\0user\0password`)
//! included. So amiquip is given a placeholder password, and the guard, which sees the bytes
//! on their way to the socket, writes the real one into the start-ok frame. After that frame
//! every byte passes through untouched.

use std::fmt;

const FRAME_METHOD: u8 = 1;
const FRAME_END: u8 = 0xCE;
const PROTOCOL_HEADER_LEN: usize = 8;

/// The password amiquip is given instead of the real one.
pub(crate) const PLACEHOLDER_PASSWORD: &str = "<password withheld from amiquip>";

/// Rewrites the handshake's outgoing frames; see the module docs.
pub(crate) struct OutboundGuard {
    username: String,
    password: String,
    /// Bytes of the protocol header still to pass.
    header_left: usize,
    /// An incomplete frame.
    pending: Vec<u8>,
    /// The start-ok was rewritten: everything passes through.
    done: bool,
}

impl fmt::Debug for OutboundGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboundGuard")
            .field("username", &self.username)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl OutboundGuard {
    /// A guard that sends `password` for `username` (SASL PLAIN).
    pub(crate) fn new(username: &str, password: &str) -> Self {
        OutboundGuard {
            username: username.to_owned(),
            password: password.to_owned(),
            header_left: PROTOCOL_HEADER_LEN,
            pending: Vec::new(),
            done: false,
        }
    }

    /// Whether the handshake's start-ok is behind: bytes may go straight to the socket.
    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    /// Takes bytes the client wrote and appends what must be sent to `out`.
    pub(crate) fn push(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        if self.done {
            out.extend_from_slice(input);
            return;
        }
        let header = self.header_left.min(input.len());
        out.extend_from_slice(&input[..header]);
        self.header_left -= header;
        input = &input[header..];
        self.pending.extend_from_slice(input);
        let mut pos = 0;
        while !self.done && self.pending.len() - pos >= 7 {
            let p = &self.pending[pos..];
            let size = u32::from_be_bytes([p[3], p[4], p[5], p[6]]) as usize;
            let total = size + 8;
            if p.len() < total {
                break;
            }
            match rewrite_start_ok(&p[..total], &self.username, &self.password) {
                Some(frame) => {
                    out.extend_from_slice(&frame);
                    self.done = true;
                }
                None => out.extend_from_slice(&p[..total]),
            }
            pos += total;
        }
        if self.done {
            out.extend_from_slice(&self.pending[pos..]);
            self.pending = Vec::new();
            // The password is no longer needed.
            self.password.clear();
        } else {
            self.pending.drain(..pos);
        }
    }
}

/// If `frame` is a `connection.start-ok` with the PLAIN mechanism, the same frame with the
/// response `\0username\0password`.
fn rewrite_start_ok(frame: &[u8], username: &str, password: &str) -> Option<Vec<u8>> {
    if frame.first() != Some(&FRAME_METHOD) || frame.len() < 12 {
        return None;
    }
    let payload = &frame[7..frame.len() - 1];
    // connection (10) start-ok (11)
    if payload[..4] != [0, 10, 0, 11] {
        return None;
    }
    let mut pos = 4;
    let table_len = u32::from_be_bytes(payload.get(pos..pos + 4)?.try_into().ok()?) as usize;
    pos += 4 + table_len;
    let mechanism_len = usize::from(*payload.get(pos)?);
    let mechanism = payload.get(pos + 1..pos + 1 + mechanism_len)?;
    if mechanism != b"PLAIN" {
        return None;
    }
    pos += 1 + mechanism_len;
    let response_start = pos;
    let response_len = u32::from_be_bytes(payload.get(pos..pos + 4)?.try_into().ok()?) as usize;
    let rest = payload.get(pos + 4 + response_len..)?;

    let response = [b"\0", username.as_bytes(), b"\0", password.as_bytes()].concat();
    let mut new_payload = Vec::with_capacity(payload.len() + response.len());
    new_payload.extend_from_slice(&payload[..response_start]);
    new_payload.extend_from_slice(&u32::try_from(response.len()).ok()?.to_be_bytes());
    new_payload.extend_from_slice(&response);
    new_payload.extend_from_slice(rest);

    let mut out = Vec::with_capacity(new_payload.len() + 8);
    out.extend_from_slice(&frame[..3]);
    out.extend_from_slice(&u32::try_from(new_payload.len()).ok()?.to_be_bytes());
    out.extend_from_slice(&new_payload);
    out.push(FRAME_END);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start_ok(response: &[u8]) -> Vec<u8> {
        let mut p = vec![0, 10, 0, 11];
        p.extend_from_slice(&[0, 0, 0, 3, 1, b'a', b'V']); // client properties {"a": void}
        p.push(5);
        p.extend_from_slice(b"PLAIN");
        p.extend_from_slice(&u32::try_from(response.len()).unwrap().to_be_bytes());
        p.extend_from_slice(response);
        p.push(5);
        p.extend_from_slice(b"en_US");
        let mut f = vec![1, 0, 0];
        f.extend_from_slice(&u32::try_from(p.len()).unwrap().to_be_bytes());
        f.extend_from_slice(&p);
        f.push(FRAME_END);
        f
    }

    fn handshake(password: &[u8]) -> Vec<u8> {
        let mut bytes = b"AMQP\x00\x00\x09\x01".to_vec();
        bytes.extend(start_ok(&[b"\0guest\0", password].concat()));
        // tune-ok, then something else
        bytes.extend_from_slice(&[1, 0, 0, 0, 0, 0, 4, 0, 10, 0, 31, FRAME_END]);
        bytes
    }

    #[test]
    fn the_placeholder_is_replaced_by_the_password_whatever_the_chunking() {
        let input = handshake(PLACEHOLDER_PASSWORD.as_bytes());
        let expected = handshake(b"s3cr\xc3\xa9t");
        for chunk in [1, 2, 7, 13, input.len()] {
            let mut guard = OutboundGuard::new("guest", "s3cr\u{e9}t");
            let mut out = Vec::new();
            for piece in input.chunks(chunk) {
                guard.push(piece, &mut out);
            }
            assert_eq!(out, expected, "chunk {chunk}");
            assert!(guard.is_done());
            assert!(guard.password.is_empty());
        }
    }

    #[test]
    fn other_mechanisms_and_frames_pass_unchanged() {
        let mut frame = start_ok(b"\0guest\0x");
        frame[7 + 4 + 7 + 1..7 + 4 + 7 + 6].copy_from_slice(b"EXTER");
        assert_eq!(rewrite_start_ok(&frame, "u", "p"), None);
        assert_eq!(
            rewrite_start_ok(&[8, 0, 0, 0, 0, 0, 0, FRAME_END], "u", "p"),
            None
        );
        assert_eq!(
            rewrite_start_ok(&[1, 0, 0, 0, 0, 0, 1, 9, FRAME_END], "u", "p"),
            None
        );
    }

    #[test]
    fn debug_never_shows_the_password() {
        let guard = OutboundGuard::new("guest", "hunter2");
        assert!(!format!("{guard:?}").contains("hunter2"));
    }
}
