//! The guard's invariants, checked on any input: the fuzz target (`fuzz/`) and the replay of
//! its corpus (a unit test) run this.

use amq_protocol::frame::{parse_frame, AMQPFrame};

use super::inbound::{InboundGuard, Progress};

/// Runs the guard over `data` fed in pieces of `chunk` bytes and checks what must hold for
/// any input: no panic, the same output whatever the chunking, and every content header
/// it hands on parses with amiquip's parser (amq-protocol) without recursing deeper than the
/// guard allows.
///
/// # Panics
///
/// When an invariant does not hold: that is a bug in the guard.
pub fn check(data: &[u8], chunk: usize) {
    let whole = run(data, data.len().max(1));
    let chunked = run(data, chunk.max(1));
    assert_eq!(
        whole, chunked,
        "the output depends on how the input was split"
    );
    let Some((out, _)) = whole else { return };
    let mut rest = &out[..];
    // The first 8 bytes may be a protocol header; frames follow.
    if rest.len() >= 8 && rest[..4] == *b"AMQP" {
        rest = &rest[8..];
    }
    while rest.len() >= 7 {
        let size = u32::from_be_bytes([rest[3], rest[4], rest[5], rest[6]]) as usize;
        let total = size + 8;
        let frame = &rest[..total];
        if frame[0] == 2 && frame.len() >= 9 && frame[7..9] == [0, 60] {
            match parse_frame(frame) {
                Ok((_, AMQPFrame::Header(..))) => {}
                other => panic!("a content header the guard passed does not parse: {other:?}"),
            }
        }
        rest = &rest[total..];
    }
}

type Output = Option<(Vec<u8>, Vec<(u16, u64, String)>)>;

fn run(data: &[u8], chunk: usize) -> Output {
    let mut guard = InboundGuard::new();
    let mut altered = Vec::new();
    let mut buf = Vec::new();
    let mut out = Vec::new();
    for piece in data.chunks(chunk) {
        buf.extend_from_slice(piece);
        let Ok(Progress { ready, len }) = guard.process(&mut buf, 0, &mut altered) else {
            return None;
        };
        assert!(ready <= len && len <= buf.len(), "progress out of bounds");
        buf.truncate(len);
        out.extend_from_slice(&buf[..ready]);
        buf.drain(..ready);
    }
    let altered = altered
        .into_iter()
        .map(|a| (a.channel, a.delivery_tag, a.reason))
        .collect();
    Some((out, altered))
}
