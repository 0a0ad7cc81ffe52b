use super::hostile::{self, NOT_UTF8};
use super::*;

fn frames(mut bytes: &[u8]) -> Vec<Frame> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (frame, used) = parse_frame(bytes, 1 << 20).unwrap().unwrap();
        out.push(frame);
        bytes = &bytes[used..];
    }
    out
}

#[test]
fn a_frame_is_type_channel_size_payload_end() {
    assert_eq!(
        encode_frame(1, 0x0102, b"ab"),
        [1, 1, 2, 0, 0, 0, 2, b'a', b'b', 0xCE]
    );
    assert_eq!(encode_frame(8, 0, b""), [8, 0, 0, 0, 0, 0, 0, 0xCE]);
}

#[test]
fn each_property_sets_its_flag_in_spec_order() {
    fn check(properties: RawProperties, flags: u16, list: &[u8]) {
        let encoded = properties.encode().unwrap();
        assert_eq!(
            u16::from_be_bytes([encoded[0], encoded[1]]),
            flags,
            "{properties:?}"
        );
        assert_eq!(&encoded[2..], list, "{properties:?}");
    }
    let p = RawProperties::new;
    check(p(), 0, b"");
    check(p().content_type("a"), 0x8000, b"\x01a");
    check(p().content_encoding("a"), 0x4000, b"\x01a");
    check(p().headers(FieldTable::new()), 0x2000, b"\0\0\0\0");
    check(p().delivery_mode(2), 0x1000, b"\x02");
    check(p().priority(9), 0x0800, b"\x09");
    check(p().correlation_id("a"), 0x0400, b"\x01a");
    check(p().reply_to("a"), 0x0200, b"\x01a");
    check(p().expiration("6"), 0x0100, b"\x016");
    check(p().message_id(NOT_UTF8), 0x0080, b"\x02\x80\xff");
    check(p().timestamp(1), 0x0040, b"\0\0\0\0\0\0\0\x01");
    check(p().kind("a"), 0x0020, b"\x01a");
    check(p().user_id("a"), 0x0010, b"\x01a");
    check(p().app_id("a"), 0x0008, b"\x01a");
    check(
        p().app_id("z")
            .content_type("c")
            .message_id("m")
            .delivery_mode(2),
        0x8000 | 0x1000 | 0x0080 | 0x0008,
        b"\x01c\x02\x01m\x01z",
    );
}

#[test]
fn every_short_string_property_has_a_distinct_flag() {
    let mut seen = 0u16;
    for property in ShortStringProperty::ALL {
        let encoded = RawProperties::new()
            .short_string(property, "x")
            .encode()
            .unwrap();
        let flag = u16::from_be_bytes([encoded[0], encoded[1]]);
        assert_eq!(flag.count_ones(), 1, "{}", property.name());
        assert_eq!(seen & flag, 0, "{}", property.name());
        seen |= flag;
    }
    assert_eq!(seen.count_ones(), 9);
}

#[test]
fn a_short_string_over_255_bytes_is_refused() {
    let err = RawProperties::new()
        .correlation_id(vec![b'x'; 256])
        .encode()
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::TooLong {
                field: "correlation_id",
                len: 256
            }
        ),
        "{err:?}"
    );
    assert!(encode_publish(b"", &[b'k'; 256], &RawProperties::new().into(), b"", 4096).is_err());
}

#[test]
fn tables_and_arrays_are_written_byte_for_byte() {
    let table = FieldTable::new()
        .long_string(b"k\xff", b"\xfe")
        .int("n", -2)
        .boolean("t", true)
        .raw_field("z", b'Z', &[7]);
    let mut expected = vec![0, 0, 0, 0];
    expected.extend_from_slice(b"\x02k\xffS\0\0\0\x01\xfe");
    expected.extend_from_slice(b"\x01nl\xff\xff\xff\xff\xff\xff\xff\xfe");
    expected.extend_from_slice(b"\x01tt\x01");
    expected.extend_from_slice(b"\x01zZ\x07");
    let len = (expected.len() - 4) as u8;
    expected[3] = len;
    assert_eq!(table.encode(), expected);

    let array = FieldArray::new()
        .long_string("a")
        .int(1)
        .table(&FieldTable::new())
        .array(&FieldArray::new());
    assert_eq!(
        array.encode(),
        b"\0\0\0\x19S\0\0\0\x01al\0\0\0\0\0\0\0\x01F\0\0\0\0A\0\0\0\0"
    );
    assert_eq!(
        FieldTable::new().declared_length(1000).encode(),
        [0, 0, 0x03, 0xe8]
    );
}

/// Walks a table written by `hostile::nested_*`: the number of levels under `nested`.
fn nesting_depth(encoded: &[u8], kind: u8) -> usize {
    // before (S "ok"), then nested.
    let prefix = 4 + (1 + 6 + 1 + 4 + 2) + (1 + 6 + 1);
    assert_eq!(&encoded[prefix - 7..prefix - 1], b"nested");
    assert_eq!(encoded[prefix - 1], kind);
    let mut at = prefix;
    let mut depth = 0;
    loop {
        let len = u32::from_be_bytes(encoded[at..at + 4].try_into().unwrap()) as usize;
        depth += 1;
        let body = &encoded[at + 4..at + 4 + len];
        if body.is_empty() {
            break;
        }
        at += 4;
        if kind == b'F' {
            assert_eq!(&body[..3], b"\x01aF");
            at += 3;
        } else {
            assert_eq!(body[0], b'A');
            at += 1;
        }
    }
    depth
}

#[test]
fn nested_tables_and_arrays_have_the_depth_asked_for() {
    for depth in [1, 2, 33, hostile::DEEP] {
        let tables = hostile::nested_tables(depth).encode();
        assert_eq!(nesting_depth(&tables, b'F'), depth);
        let arrays = hostile::nested_arrays(depth).encode();
        assert_eq!(nesting_depth(&arrays, b'A'), depth);
    }
    // A few KiB per thousand levels: it fits a content header frame.
    let deep = hostile::nested_tables(hostile::DEEP).encode().len();
    assert!(deep < 32 * 1024, "{deep}");
    // The entry after the nested one is there.
    assert!(hostile::nested_arrays(5)
        .encode()
        .ends_with(b"\x05afterS\0\0\0\x02ok"));
}

#[test]
fn hostile_tables_carry_their_fault_between_valid_entries() {
    let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    let key = hostile::non_utf8_key().encode();
    assert!(contains(&key, b"\x06key-\x80\xffS"));
    let value = hostile::non_utf8_long_string().encode();
    assert!(contains(&value, b"\x03badS\0\0\0\x08value-\x80\xff"));
    let unknown = hostile::unknown_field_type().encode();
    assert!(contains(&unknown, b"\x07unknownZ\0\0\0\0"));
    for table in [key, value, unknown] {
        assert!(contains(&table, b"\x06beforeS"));
        assert!(table.ends_with(b"\x05afterS\0\0\0\x02ok"));
    }
    let overrun = hostile::overrunning_length().encode();
    let declared = u32::from_be_bytes(overrun[..4].try_into().unwrap()) as usize;
    assert_eq!(declared, overrun.len() - 4 + 64 * 1024);
}

#[test]
fn every_class_has_one_message_per_class() {
    let all = hostile::every_class("order.created");
    let mut classes: Vec<&str> = all.iter().map(|m| m.class).collect();
    classes.sort_unstable();
    classes.dedup();
    assert_eq!(classes.len(), all.len());
    assert_eq!(all.len(), 1 + 7 + 4);
    for message in &all {
        let header = message.header.encode().unwrap();
        let bad_key = std::str::from_utf8(&message.routing_key).is_err();
        assert_eq!(bad_key, message.class == "routing-key", "{}", message.class);
        if !bad_key {
            assert_eq!(message.routing_key, b"order.created");
            // Every other class has its fault in the content header.
            assert_ne!(header, hostile::event_properties().encode().unwrap());
        }
    }
}

#[test]
fn a_publish_is_a_method_a_header_and_body_frames() {
    let properties = RawProperties::new().content_type("application/json");
    let body = vec![b'x'; 10_000];
    let bytes = encode_publish(b"ex", b"a.\xff", &properties.clone().into(), &body, 4096).unwrap();
    let got = frames(&bytes);
    assert_eq!(got.len(), 5);
    assert!(got.iter().all(|f| f.channel == 1));
    assert_eq!(got[0].kind, 1);
    assert_eq!(got[0].payload, b"\0\x3c\0\x28\0\0\x02ex\x03a.\xff\0");
    assert_eq!(got[1].kind, 2);
    let mut header = b"\0\x3c\0\0".to_vec();
    header.extend_from_slice(&10_000u64.to_be_bytes());
    header.extend_from_slice(&properties.encode().unwrap());
    assert_eq!(got[1].payload, header);
    let sizes: Vec<usize> = got[2..].iter().map(|f| f.payload.len()).collect();
    assert_eq!(sizes, [4088, 4088, 1824]);
    assert!(got[2..].iter().all(|f| f.kind == 3));

    // An empty body has no body frame; a raw header goes out as given.
    let bytes = encode_publish(
        b"",
        b"k",
        &ContentHeader::Raw(b"\x20\x00".to_vec()),
        b"",
        4096,
    )
    .unwrap();
    let got = frames(&bytes);
    assert_eq!(got.len(), 2);
    assert_eq!(&got[1].payload[12..], b"\x20\x00");
}

#[test]
fn frames_are_read_with_bounds() {
    let frame = encode_frame(1, 3, b"hello");
    for cut in 0..frame.len() {
        assert_eq!(
            parse_frame(&frame[..cut], 100).unwrap(),
            None,
            "cut at {cut}"
        );
    }
    let mut two = frame.clone();
    two.extend_from_slice(&encode_frame(8, 0, b""));
    let (first, used) = parse_frame(&two, 100).unwrap().unwrap();
    assert_eq!(
        first,
        Frame {
            kind: 1,
            channel: 3,
            payload: b"hello".to_vec()
        }
    );
    assert_eq!(used, frame.len());

    let mut bad_end = frame.clone();
    *bad_end.last_mut().unwrap() = 0;
    assert!(matches!(
        parse_frame(&bad_end, 100),
        Err(Error::Protocol(_))
    ));
    // A frame announcing more than the limit is refused before its bytes arrive.
    assert!(matches!(
        parse_frame(&[1, 0, 0, 0xff, 0xff, 0xff, 0xff], 100),
        Err(Error::Protocol(_))
    ));
}

#[test]
fn method_arguments_are_read_without_panicking() {
    // connection.start: version, server properties, mechanisms, locales.
    let mut start = method(10, 10, &[0, 9]);
    start.extend_from_slice(&FieldTable::new().long_string("product", "x").encode());
    put_long_str(&mut start, b"AMQPLAIN PLAIN");
    put_long_str(&mut start, b"en_US");
    let read = |payload: &[u8]| -> Result<Vec<u8>> {
        let (_, _, mut args) = parse_method(payload)?;
        args.u8()?;
        args.u8()?;
        args.long_str()?;
        let mechanisms = args.long_str()?.to_vec();
        args.long_str()?;
        Ok(mechanisms)
    };
    assert_eq!(read(&start).unwrap(), b"AMQPLAIN PLAIN");
    for cut in 0..start.len() {
        assert!(read(&start[..cut]).is_err(), "cut at {cut}");
    }
    let mut huge = method(10, 10, &[0, 9]);
    huge.extend_from_slice(&[0xff; 4]);
    assert!(read(&huge).is_err());

    let mut close = method(20, 40, &[]);
    put_u16(&mut close, 406);
    close.extend_from_slice(b"\x05bad \xff");
    let (_, _, args) = parse_method(&close).unwrap();
    assert_eq!(parse_close(args).unwrap(), (406, "bad \u{fffd}".to_owned()));
}

#[test]
fn handshake_values() {
    assert_eq!(plain_response("guest", "pw"), b"\0guest\0pw");
    for (server, agreed) in [
        (0, 131_072),
        (4096, 4096),
        (131_072, 131_072),
        (1 << 24, 131_072),
    ] {
        assert_eq!(negotiate_frame_max(server), agreed, "{server}");
    }
}
