//! Hostile header tables, and one hostile message of every class (issue 10: what another
//! client on the exchange can send that amiquip cannot read).
//!
//! Each table has a valid entry before and after the hostile one, so that a reader that
//! drops "the rest of the table" shows it.

use super::{ContentHeader, FieldArray, FieldTable, RawProperties, ShortStringProperty};

/// Bytes that are not UTF-8 (a lone continuation byte, then an invalid lead byte).
pub const NOT_UTF8: &[u8] = b"\x80\xff";

/// The depth of the nested-header messages in [`every_class`]: enough to overflow
/// amiquip's I/O thread stack (a few thousand levels).
pub const DEEP: usize = 3000;

/// A table with `before`, then `nested` holding tables nested `depth` levels deep
/// (`{"a": {"a": ... {}}}`), then `after`.
pub fn nested_tables(depth: usize) -> FieldTable {
    let mut inner = FieldTable::new();
    for _ in 1..depth {
        inner = FieldTable::new().table("a", &inner);
    }
    around(
        FieldTable::new()
            .long_string("before", "ok")
            .table("nested", &inner),
    )
}

/// A table with `before`, then `nested` holding arrays nested `depth` levels deep
/// (`[[...[]]]`), then `after`.
pub fn nested_arrays(depth: usize) -> FieldTable {
    let mut inner = FieldArray::new();
    for _ in 1..depth {
        inner = FieldArray::new().array(&inner);
    }
    around(
        FieldTable::new()
            .long_string("before", "ok")
            .array("nested", &inner),
    )
}

/// A table whose middle key is not UTF-8.
pub fn non_utf8_key() -> FieldTable {
    let mut key = b"key-".to_vec();
    key.extend_from_slice(NOT_UTF8);
    around(
        FieldTable::new()
            .long_string("before", "ok")
            .long_string(key, "value"),
    )
}

/// A table whose middle long-string value is not UTF-8.
pub fn non_utf8_long_string() -> FieldTable {
    let mut value = b"value-".to_vec();
    value.extend_from_slice(NOT_UTF8);
    around(
        FieldTable::new()
            .long_string("before", "ok")
            .long_string("bad", value),
    )
}

/// A table whose middle entry has a field type no AMQP reader knows (`Z`), with four
/// bytes of value.
pub fn unknown_field_type() -> FieldTable {
    around(
        FieldTable::new()
            .long_string("before", "ok")
            .raw_field("unknown", b'Z', &[0, 0, 0, 0]),
    )
}

/// A valid table whose length says it is 64 KiB longer than it is: it overruns the
/// content header frame.
pub fn overrunning_length() -> FieldTable {
    let table = around(FieldTable::new().long_string("before", "ok"));
    let true_len = table.encode().len() as u32 - 4;
    table.declared_length(true_len + 64 * 1024)
}

fn around(table: FieldTable) -> FieldTable {
    table.long_string("after", "ok")
}

/// One hostile message: its routing key and content header. Its body is the caller's
/// (a valid event, so that only the frames are wrong).
#[derive(Debug, Clone, PartialEq)]
pub struct HostileMessage {
    /// A short name for the class (`routing-key`, `message_id`, `nested-tables`).
    pub class: &'static str,
    /// The routing key, as bytes.
    pub routing_key: Vec<u8>,
    /// The content header.
    pub header: ContentHeader,
}

/// The properties of a valid event message (`content_type` JSON, persistent), to which
/// each hostile class adds its one fault.
pub fn event_properties() -> RawProperties {
    RawProperties::new()
        .content_type("application/json")
        .delivery_mode(2)
}

/// `routing_key` with bytes that are not UTF-8 in its last word
/// (`order.created` → `order.created\x80\xff`), still matching the same bindings of
/// `*` and `#`.
pub fn non_utf8_routing_key(routing_key: &str) -> Vec<u8> {
    let mut key = routing_key.as_bytes().to_vec();
    key.extend_from_slice(NOT_UTF8);
    key
}

/// One message of every hostile class the broker passes through, for an event published
/// with `routing_key`: a routing key that is not UTF-8; each short-string property the
/// broker does not check, not UTF-8; a header key and a long-string header value that
/// are not UTF-8; tables and arrays nested [`DEEP`] levels.
///
/// Not here: what RabbitMQ (3.10) itself refuses, closing the publisher's connection with
/// 541 INTERNAL_ERROR before anything is queued: an unknown field type
/// ([`unknown_field_type`]), a table length that overruns the frame
/// ([`overrunning_length`]), a truncated property list or bytes after it; and with 406,
/// a `user_id` other than the connection's user or an `expiration` that is not a number.
pub fn every_class(routing_key: &str) -> Vec<HostileMessage> {
    let message = |class, routing_key: Vec<u8>, properties: RawProperties| HostileMessage {
        class,
        routing_key,
        header: properties.into(),
    };
    let key = || routing_key.as_bytes().to_vec();
    let mut out = vec![message(
        "routing-key",
        non_utf8_routing_key(routing_key),
        event_properties(),
    )];
    for property in ShortStringProperty::UNCHECKED_BY_BROKER {
        let mut value = b"x-".to_vec();
        value.extend_from_slice(NOT_UTF8);
        out.push(message(
            property.name(),
            key(),
            event_properties().short_string(property, value),
        ));
    }
    for (class, table) in [
        ("header-key", non_utf8_key()),
        ("header-long-string", non_utf8_long_string()),
        ("nested-tables", nested_tables(DEEP)),
        ("nested-arrays", nested_arrays(DEEP)),
    ] {
        out.push(message(class, key(), event_properties().headers(table)));
    }
    out
}
