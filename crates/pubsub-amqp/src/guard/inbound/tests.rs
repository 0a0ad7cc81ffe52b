use amq_protocol::frame::{parse_frame, AMQPFrame};

use super::*;

fn frame(frame_type: u8, channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![frame_type];
    f.extend_from_slice(&channel.to_be_bytes());
    f.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes());
    f.extend_from_slice(payload);
    f.push(FRAME_END);
    f
}

fn short(bytes: &[u8]) -> Vec<u8> {
    let mut s = vec![u8::try_from(bytes.len()).unwrap()];
    s.extend_from_slice(bytes);
    s
}

fn long(bytes: &[u8]) -> Vec<u8> {
    let mut s = u32::try_from(bytes.len()).unwrap().to_be_bytes().to_vec();
    s.extend_from_slice(bytes);
    s
}

fn deliver(channel: u16, tag: u64, routing_key: &[u8]) -> Vec<u8> {
    let mut p = vec![0, 60, 0, 60];
    p.extend(short(b"ctag"));
    p.extend_from_slice(&tag.to_be_bytes());
    p.push(0);
    p.extend(short(b"events"));
    p.extend(short(routing_key));
    frame(FRAME_METHOD, channel, &p)
}

/// A content header with the given property flags and raw property bytes.
fn header(channel: u16, body_size: u64, flags: u16, properties: &[u8]) -> Vec<u8> {
    let mut p = vec![0, 60, 0, 0];
    p.extend_from_slice(&body_size.to_be_bytes());
    p.extend_from_slice(&flags.to_be_bytes());
    p.extend_from_slice(properties);
    frame(FRAME_HEADER, channel, &p)
}

fn body(channel: u16, bytes: &[u8]) -> Vec<u8> {
    frame(3, channel, bytes)
}

const CONTENT_TYPE: u16 = 1 << 15;
const HEADERS: u16 = 1 << 13;
const DELIVERY_MODE: u16 = 1 << 12;
const MESSAGE_ID: u16 = 1 << 7;
const APP_ID: u16 = 1 << 3;

/// A headers table holding `entries` (already encoded).
fn table(entries: &[u8]) -> Vec<u8> {
    long(entries)
}

fn entry(key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut e = short(key);
    e.extend_from_slice(value);
    e
}

/// `{"a": {"a": ... }}` nested `depth` tables deep (the outer headers table included).
fn nested_tables(depth: usize) -> Vec<u8> {
    let mut inner = table(&[]);
    for _ in 1..depth {
        let mut value = vec![b'F'];
        value.extend(inner);
        inner = table(&entry(b"a", &value));
    }
    inner
}

/// A headers table whose one entry is an array nested `depth - 1` levels.
fn nested_arrays(depth: usize) -> Vec<u8> {
    let mut inner = long(&[]);
    for _ in 2..depth {
        let mut value = vec![b'A'];
        value.extend(inner);
        inner = long(&value);
    }
    let mut value = vec![b'A'];
    value.extend(inner);
    table(&entry(b"a", &value))
}

/// Runs the guard over `bytes`, fed in pieces of `chunk` bytes, and returns the output and
/// the alterations.
fn run_chunked(bytes: &[u8], chunk: usize) -> (Vec<u8>, Vec<Altered>) {
    let mut guard = InboundGuard::new();
    let mut altered = Vec::new();
    let mut buf = Vec::new();
    let mut out = Vec::new();
    for piece in bytes.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        // What is left after a pass is an incomplete frame, untouched: processed again
        // from its start with more bytes.
        let progress = guard.process(&mut buf, 0, &mut altered).unwrap();
        buf.truncate(progress.len);
        out.extend_from_slice(&buf[..progress.ready]);
        buf.drain(..progress.ready);
    }
    assert!(buf.is_empty(), "{} bytes left over", buf.len());
    (out, altered)
}

fn run(bytes: &[u8]) -> (Vec<u8>, Vec<Altered>) {
    run_chunked(bytes, bytes.len())
}

/// A stream of frames starts after the 8-byte window the guard checks for a protocol header:
/// a heartbeat on channel 0 comes first in every test stream.
fn stream(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut s = frame(8, 0, &[]);
    for f in frames {
        s.extend_from_slice(f);
    }
    s
}

/// Parses every frame of `bytes` as amiquip does.
fn parse_all(mut bytes: &[u8]) -> Vec<AMQPFrame> {
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        let (rest, frame) = parse_frame(bytes).expect("amq-protocol parses the guard's output");
        frames.push(frame);
        bytes = rest;
    }
    frames
}

fn delivery(routing_key: &[u8], flags: u16, properties: &[u8]) -> Vec<u8> {
    stream(&[
        deliver(1, 7, routing_key),
        header(1, 2, flags, properties),
        body(1, b"{}"),
    ])
}

#[test]
fn intact_frames_pass_unchanged() {
    let mut props = short(b"application/json");
    let mut headers = entry(b"x-pubsub-attempt", &[b'l', 0, 0, 0, 0, 0, 0, 0, 2]);
    headers.extend(entry(
        b"s",
        &[b'S']
            .iter()
            .copied()
            .chain(long(b"caf\xc3\xa9"))
            .collect::<Vec<_>>(),
    ));
    props.extend(table(&headers));
    props.push(2);
    let input = delivery(
        b"order.created",
        CONTENT_TYPE | HEADERS | DELIVERY_MODE,
        &props,
    );
    let (out, altered) = run(&input);
    assert_eq!(out, input);
    assert!(altered.is_empty());
    assert_eq!(parse_all(&out).len(), 4);
}

#[test]
fn every_split_point_gives_the_same_result() {
    let input = delivery(b"order.\xffcreated", MESSAGE_ID, &short(b"id-\xfe"));
    let (whole, whole_altered) = run(&input);
    for chunk in 1..input.len() {
        let (out, altered) = run_chunked(&input, chunk);
        assert_eq!(out, whole, "chunk {chunk}");
        assert_eq!(altered, whole_altered, "chunk {chunk}");
    }
}

/// (what is wrong, routing key, property flags, properties, expected reason)
#[test]
fn hostile_deliveries_are_repaired_and_reported() {
    let not_utf8_key_table = table(&entry(b"k\xff", b"V"));
    let mut long_value = vec![b'S'];
    long_value.extend(long(b"\xc3\x28 bad"));
    let not_utf8_value_table = table(&entry(b"k", &long_value));
    type Case<'a> = (&'a str, &'a [u8], u16, Vec<u8>, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (
            "routing key",
            b"order.\xff",
            0,
            vec![],
            "routing key is not UTF-8",
        ),
        (
            "message id",
            b"a.b",
            MESSAGE_ID,
            short(b"\xff\xfe"),
            "message_id is not UTF-8",
        ),
        (
            "app id",
            b"a.b",
            APP_ID,
            short(b"svc\x80"),
            "app_id is not UTF-8",
        ),
        (
            "content type",
            b"a.b",
            CONTENT_TYPE,
            short(b"\xe2\x82"),
            "content_type is not UTF-8",
        ),
        (
            "header name",
            b"a.b",
            HEADERS,
            not_utf8_key_table,
            "a header name is not UTF-8",
        ),
        (
            "header value",
            b"a.b",
            HEADERS,
            not_utf8_value_table,
            "a header value is not UTF-8",
        ),
        (
            "deep tables",
            b"a.b",
            HEADERS,
            nested_tables(3000),
            "headers nested deeper than 32 levels",
        ),
        (
            "deep arrays",
            b"a.b",
            HEADERS,
            nested_arrays(3000),
            "headers nested deeper than 32 levels",
        ),
    ];
    for (what, routing_key, flags, properties, reason) in cases {
        let input = delivery(routing_key, flags, &properties);
        let (out, altered) = run(&input);
        assert_eq!(
            out.len(),
            input.len(),
            "{what}: the frames keep their length"
        );
        assert_eq!(
            altered,
            [Altered {
                channel: 1,
                delivery_tag: 7,
                reason: reason.to_owned()
            }],
            "{what}"
        );
        let frames = parse_all(&out);
        assert!(
            matches!(frames.last(), Some(AMQPFrame::Body(1, b)) if b == b"{}"),
            "{what}"
        );
    }
}

#[test]
fn nesting_up_to_the_limit_is_left_alone() {
    for depth in [1, 2, MAX_DEPTH] {
        let input = delivery(b"a.b", HEADERS, &nested_tables(depth));
        let (out, altered) = run(&input);
        assert_eq!(out, input, "depth {depth}");
        assert!(altered.is_empty(), "depth {depth}");
    }
    let (_, altered) = run(&delivery(b"a.b", HEADERS, &nested_tables(MAX_DEPTH + 1)));
    assert_eq!(altered.len(), 1);
}

#[test]
fn unparseable_content_headers_are_replaced_by_minimal_ones() {
    let mut unknown_type = table(&entry(b"k", b"Z"));
    unknown_type.extend(short(b"x"));
    let overrun = {
        let mut t = 1000u32.to_be_bytes().to_vec();
        t.extend(entry(b"k", b"V"));
        t
    };
    let cases: Vec<(&str, u16, Vec<u8>, &str)> = vec![
        (
            "unknown field type",
            HEADERS,
            table(&entry(b"k", b"Z")),
            "unknown header field type",
        ),
        ("table overrun", HEADERS, overrun, "overruns"),
        (
            "short string overrun",
            MESSAGE_ID,
            vec![200, b'a'],
            "property message_id overruns",
        ),
        (
            "stray bytes",
            MESSAGE_ID,
            [short(b"id"), vec![1, 2, 3]].concat(),
            "3 unexpected bytes",
        ),
        (
            "continuation flag",
            1,
            vec![0, 0],
            "reserved or continuation",
        ),
        (
            "value overruns a table",
            HEADERS,
            table(&entry(b"k", b"l\x00")),
            "overruns",
        ),
    ];
    for (what, flags, properties, reason) in cases {
        let input = delivery(b"a.b", flags, &properties);
        let (out, altered) = run(&input);
        assert_eq!(altered.len(), 1, "{what}");
        assert!(
            altered[0]
                .reason
                .starts_with("content header is unparseable"),
            "{what}: {}",
            altered[0].reason
        );
        assert!(
            altered[0].reason.contains(reason),
            "{what}: {}",
            altered[0].reason
        );
        let frames = parse_all(&out);
        match &frames[2] {
            AMQPFrame::Header(1, 60, h) => assert_eq!(h.body_size, 2, "{what}"),
            other => panic!("{what}: {other:?}"),
        }
        assert!(
            matches!(&frames[3], AMQPFrame::Body(1, b) if b == b"{}"),
            "{what}"
        );
    }
}

#[test]
fn a_replaced_header_keeps_the_frames_after_it() {
    let input = stream(&[
        deliver(1, 1, b"a.b"),
        header(1, 2, HEADERS, &table(&entry(b"k", b"Z"))),
        body(1, b"{}"),
        deliver(1, 2, b"c.d"),
        header(1, 2, 0, &[]),
        body(1, b"[]"),
    ]);
    for chunk in [1, 5, input.len()] {
        let (out, altered) = run_chunked(&input, chunk);
        assert_eq!(altered.len(), 1);
        assert_eq!(altered[0].delivery_tag, 1);
        let frames = parse_all(&out);
        assert_eq!(frames.len(), 7);
        assert!(matches!(&frames[6], AMQPFrame::Body(1, b) if b == b"[]"));
    }
}

#[test]
fn alterations_are_reported_per_channel_and_delivery() {
    let input = stream(&[
        deliver(1, 5, b"a.\xff"),
        deliver(2, 9, b"ok"),
        header(2, 0, 0, &[]),
        header(1, 0, 0, &[]),
    ]);
    let (_, altered) = run(&input);
    assert_eq!(
        altered,
        [Altered {
            channel: 1,
            delivery_tag: 5,
            reason: "routing key is not UTF-8".to_owned()
        }]
    );
}

#[test]
fn broken_framing_is_an_error() {
    let mut guard = InboundGuard::new();
    let mut no_end = stream(&[frame(1, 0, &[0, 10, 0, 10])]);
    let last = no_end.len() - 1;
    no_end[last] = 0;
    assert!(matches!(
        guard.process(&mut no_end, 0, &mut Vec::new()),
        Err(FrameError::NoFrameEnd { .. })
    ));
    let mut huge = stream(&[]);
    huge.extend_from_slice(&[3, 0, 1, 0xff, 0xff, 0xff, 0xff]);
    assert!(matches!(
        InboundGuard::new().process(&mut huge, 0, &mut Vec::new()),
        Err(FrameError::TooLarge { .. })
    ));
    let mut short_header = stream(&[frame(2, 1, &[0, 60, 0, 0])]);
    assert!(matches!(
        InboundGuard::new().process(&mut short_header, 0, &mut Vec::new()),
        Err(FrameError::ShortContentHeader { .. })
    ));
}

#[test]
fn a_protocol_header_from_the_broker_is_passed_on() {
    let mut bytes = b"AMQP\x00\x00\x09\x01".to_vec();
    let progress = InboundGuard::new()
        .process(&mut bytes, 0, &mut Vec::new())
        .unwrap();
    assert_eq!(progress.ready, 8);
}

#[test]
fn invalid_utf8_is_replaced_byte_for_byte() {
    let check = |input: &[u8], expected: &[u8], changed: bool| {
        let mut bytes = input.to_vec();
        assert_eq!(replace_invalid_utf8(&mut bytes), changed, "{input:?}");
        assert_eq!(bytes, expected, "{input:?}");
    };
    check(b"plain", b"plain", false);
    check("café".as_bytes(), "café".as_bytes(), false);
    check(b"\xff", b"?", true);
    check(b"a\xc3(b", b"a?(b", true);
    check(b"\xe2\x82", b"??", true);
    check(b"x\xf0\x9f\x98\x80\xff", "x😀?".as_bytes(), true);
}

#[test]
fn returned_messages_are_sanitized_without_a_delivery_tag() {
    let mut p = vec![0, 60, 0, 50, 1, 56];
    p.extend(short(b"NO_ROUTE"));
    p.extend(short(b"events"));
    p.extend(short(b"bad.\xff"));
    let input = stream(&[frame(1, 1, &p), header(1, 0, 0, &[])]);
    let (out, altered) = run(&input);
    assert!(altered.is_empty());
    assert_eq!(parse_all(&out).len(), 3);
}

/// The fuzz target's seed corpus (and whatever a fuzz run added and was committed), replayed
/// through the same invariants the fuzz target checks.
#[test]
fn the_fuzz_corpus_keeps_the_invariants() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/inbound");
    let mut count = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        if let Some((&split, frames)) = data.split_first() {
            crate::guard::check(frames, usize::from(split) + 1);
            count += 1;
        }
    }
    assert!(count >= 10, "the seed corpus is missing: {count} files");
}

#[test]
fn the_invariants_hold_for_every_seed_split_every_way() {
    let seeds = [
        delivery(b"a.\xff", HEADERS, &nested_tables(100)),
        delivery(b"a.b", HEADERS, &table(&entry(b"k", b"Z"))),
        delivery(b"a.b", MESSAGE_ID, &short(b"\xff")),
    ];
    for seed in seeds {
        for chunk in 1..40 {
            crate::guard::check(&seed, chunk);
        }
    }
}
