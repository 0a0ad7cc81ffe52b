//! A raw AMQP 0-9-1 publisher, for hostile-client tests: it writes the frames itself on a
//! [`TcpStream`], so the caller controls every byte a well-behaved client (amiquip included)
//! would refuse to send.
//!
//! # Overview
//!
//! - [`RawPublisher`]: connects (protocol header, `connection.start`/`start-ok` with PLAIN,
//!   `tune`/`tune-ok`, `connection.open`, `channel.open`, `confirm.select`), then
//!   [`publish`](RawPublisher::publish)es one message at a time (`basic.publish`, a content
//!   header frame, body frames) and waits for the broker's `basic.ack`.
//! - [`ContentHeader`]: what follows the body size in the content header frame, either built
//!   from [`RawProperties`] (each short string given as raw bytes) or given byte for byte
//!   ([`ContentHeader::Raw`]).
//! - [`FieldTable`] and [`FieldArray`]: header tables and arrays encoded as the caller says,
//!   including keys and strings that are not UTF-8, unknown field types and lying lengths.
//! - [`hostile`]: ready-made hostile header tables and one hostile message of every class.
//!
//! What the broker sends back is parsed only as far as needed, with bounds on every length
//! and a timeout on the socket ([`IO_TIMEOUT`]); nothing here panics on what it reads. The
//! encoders and the frame parser are pure functions, tested without a broker.
//!
//! Plain TCP only: an `amqps://` configuration is refused ([`Error::Unsupported`]).
//!
//! # Example
//!
//! ```no_run
//! use pubsub_testkit::raw::{RawProperties, RawPublisher};
//!
//! let Some(config) = pubsub_testkit::broker() else { return Ok(()) };
//! let mut publisher = RawPublisher::connect(&config)?;
//! let properties = RawProperties::new()
//!     .content_type("application/json")
//!     .message_id(b"id-\xff".to_vec()); // not UTF-8
//! publisher.publish("events", b"order.\xffcreated", &properties.into(), b"{}")?;
//! publisher.close()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use pubsub_amqp::AmqpConfig;

use crate::error::{Error, Result};

/// How long a read or write on the socket may block before the publisher gives up.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest frame read before `tune` has set the connection's frame size.
const MAX_FRAME_BEFORE_TUNE: u32 = 128 * 1024;
/// The frame size asked for when the broker sets no limit (RabbitMQ's default).
const DEFAULT_FRAME_MAX: u32 = 128 * 1024;
/// The smallest frame size AMQP allows.
const MIN_FRAME_MAX: u32 = 4096;

const PROTOCOL_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";
const FRAME_METHOD: u8 = 1;
const FRAME_HEADER: u8 = 2;
const FRAME_BODY: u8 = 3;
const FRAME_END: u8 = 0xCE;
/// Frame type, channel and size; then the payload and the end octet.
const FRAME_OVERHEAD: usize = 8;

const CLASS_CONNECTION: u16 = 10;
const CLASS_CHANNEL: u16 = 20;
const CLASS_BASIC: u16 = 60;
const CLASS_CONFIRM: u16 = 85;

/// The one channel the publisher uses.
const CHANNEL: u16 = 1;

// ---------------------------------------------------------------------------------------------
// Encoding (pure).

fn put_u16(buf: &mut Vec<u8>, v: u16) {
    buf.extend_from_slice(&v.to_be_bytes());
}

fn put_u32(buf: &mut Vec<u8>, v: u32) {
    buf.extend_from_slice(&v.to_be_bytes());
}

fn put_u64(buf: &mut Vec<u8>, v: u64) {
    buf.extend_from_slice(&v.to_be_bytes());
}

/// A short string: one length octet, then the bytes (as given: not checked for UTF-8).
fn put_short_str(buf: &mut Vec<u8>, field: &'static str, s: &[u8]) -> Result<()> {
    let len = u8::try_from(s.len()).map_err(|_| Error::TooLong {
        field,
        len: s.len(),
    })?;
    buf.push(len);
    buf.extend_from_slice(s);
    Ok(())
}

/// A long string: a 32-bit length, then the bytes.
fn put_long_str(buf: &mut Vec<u8>, s: &[u8]) {
    put_u32(buf, len_u32(s.len()));
    buf.extend_from_slice(s);
}

/// A length as AMQP's 32 bits, saturating (a longer value cannot be sent anyway).
fn len_u32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// One frame: type, channel, payload size, payload, end octet.
pub fn encode_frame(kind: u8, channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(payload.len() + FRAME_OVERHEAD);
    frame.push(kind);
    put_u16(&mut frame, channel);
    put_u32(&mut frame, len_u32(payload.len()));
    frame.extend_from_slice(payload);
    frame.push(FRAME_END);
    frame
}

/// A method frame's payload: class id, method id, then the arguments.
fn method(class: u16, id: u16, args: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(args.len() + 4);
    put_u16(&mut payload, class);
    put_u16(&mut payload, id);
    payload.extend_from_slice(args);
    payload
}

/// The frames of one `basic.publish`: the method frame, the content header frame and as
/// many body frames as `frame_max` needs (none for an empty body).
///
/// # Errors
///
/// [`Error::TooLong`] when the exchange, the routing key or a short-string property is
/// over 255 bytes.
pub fn encode_publish(
    exchange: &[u8],
    routing_key: &[u8],
    header: &ContentHeader,
    body: &[u8],
    frame_max: u32,
) -> Result<Vec<u8>> {
    let mut args = Vec::new();
    put_u16(&mut args, 0); // reserved (ticket)
    put_short_str(&mut args, "exchange", exchange)?;
    put_short_str(&mut args, "routing key", routing_key)?;
    args.push(0); // mandatory, immediate: off
    let mut out = encode_frame(FRAME_METHOD, CHANNEL, &method(CLASS_BASIC, 40, &args));

    let mut content = Vec::new();
    put_u16(&mut content, CLASS_BASIC);
    put_u16(&mut content, 0); // weight
    put_u64(&mut content, body.len() as u64);
    content.extend_from_slice(&header.encode()?);
    out.extend_from_slice(&encode_frame(FRAME_HEADER, CHANNEL, &content));

    let chunk = (frame_max.max(MIN_FRAME_MAX) as usize) - FRAME_OVERHEAD;
    for part in body.chunks(chunk) {
        out.extend_from_slice(&encode_frame(FRAME_BODY, CHANNEL, part));
    }
    Ok(out)
}

/// What follows the class, weight and body size in a content header frame.
#[derive(Debug, Clone, PartialEq)]
pub enum ContentHeader {
    /// Property flags and property list built from properties.
    Properties(Box<RawProperties>),
    /// The property flags and property list, byte for byte, for a header no encoder would
    /// write (flags announcing properties that are not there, a truncated table).
    Raw(Vec<u8>),
}

impl ContentHeader {
    /// The property flags and property list.
    ///
    /// # Errors
    ///
    /// [`Error::TooLong`] when a short-string property is over 255 bytes.
    pub fn encode(&self) -> Result<Vec<u8>> {
        match self {
            ContentHeader::Properties(p) => p.encode(),
            ContentHeader::Raw(bytes) => Ok(bytes.clone()),
        }
    }
}

impl From<RawProperties> for ContentHeader {
    fn from(properties: RawProperties) -> Self {
        ContentHeader::Properties(Box::new(properties))
    }
}

/// The `basic` class's properties, each short string as raw bytes (not checked for UTF-8)
/// and the headers as an encoded [`FieldTable`]. Unset properties are left out of the frame.
///
/// Note that RabbitMQ itself checks `user_id` (it must name the connection's user) and
/// `expiration` (a number of milliseconds): a message with other values there is refused
/// with 406 PRECONDITION_FAILED.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawProperties {
    content_type: Option<Vec<u8>>,
    content_encoding: Option<Vec<u8>>,
    headers: Option<FieldTable>,
    delivery_mode: Option<u8>,
    priority: Option<u8>,
    correlation_id: Option<Vec<u8>>,
    reply_to: Option<Vec<u8>>,
    expiration: Option<Vec<u8>>,
    message_id: Option<Vec<u8>>,
    timestamp: Option<u64>,
    kind: Option<Vec<u8>>,
    user_id: Option<Vec<u8>>,
    app_id: Option<Vec<u8>>,
}

/// The short-string properties, by name (as in the AMQP spec, with `_`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShortStringProperty {
    /// `content_type`.
    ContentType,
    /// `content_encoding`.
    ContentEncoding,
    /// `correlation_id`.
    CorrelationId,
    /// `reply_to`.
    ReplyTo,
    /// `expiration` (RabbitMQ refuses one that is not a number).
    Expiration,
    /// `message_id`.
    MessageId,
    /// `type`.
    Type,
    /// `user_id` (RabbitMQ refuses one that is not the connection's user).
    UserId,
    /// `app_id`.
    AppId,
}

impl ShortStringProperty {
    /// Every short-string property.
    pub const ALL: [ShortStringProperty; 9] = [
        ShortStringProperty::ContentType,
        ShortStringProperty::ContentEncoding,
        ShortStringProperty::CorrelationId,
        ShortStringProperty::ReplyTo,
        ShortStringProperty::Expiration,
        ShortStringProperty::MessageId,
        ShortStringProperty::Type,
        ShortStringProperty::UserId,
        ShortStringProperty::AppId,
    ];

    /// Those the broker passes through unchecked (all but `expiration` and `user_id`).
    pub const UNCHECKED_BY_BROKER: [ShortStringProperty; 7] = [
        ShortStringProperty::ContentType,
        ShortStringProperty::ContentEncoding,
        ShortStringProperty::CorrelationId,
        ShortStringProperty::ReplyTo,
        ShortStringProperty::MessageId,
        ShortStringProperty::Type,
        ShortStringProperty::AppId,
    ];

    /// The name, as in the AMQP spec (`message_id`, `type`).
    pub fn name(self) -> &'static str {
        match self {
            ShortStringProperty::ContentType => "content_type",
            ShortStringProperty::ContentEncoding => "content_encoding",
            ShortStringProperty::CorrelationId => "correlation_id",
            ShortStringProperty::ReplyTo => "reply_to",
            ShortStringProperty::Expiration => "expiration",
            ShortStringProperty::MessageId => "message_id",
            ShortStringProperty::Type => "type",
            ShortStringProperty::UserId => "user_id",
            ShortStringProperty::AppId => "app_id",
        }
    }
}

impl RawProperties {
    /// No properties.
    pub fn new() -> Self {
        RawProperties::default()
    }

    /// Sets a short-string property by name.
    pub fn short_string(
        mut self,
        property: ShortStringProperty,
        value: impl Into<Vec<u8>>,
    ) -> Self {
        let value = Some(value.into());
        match property {
            ShortStringProperty::ContentType => self.content_type = value,
            ShortStringProperty::ContentEncoding => self.content_encoding = value,
            ShortStringProperty::CorrelationId => self.correlation_id = value,
            ShortStringProperty::ReplyTo => self.reply_to = value,
            ShortStringProperty::Expiration => self.expiration = value,
            ShortStringProperty::MessageId => self.message_id = value,
            ShortStringProperty::Type => self.kind = value,
            ShortStringProperty::UserId => self.user_id = value,
            ShortStringProperty::AppId => self.app_id = value,
        }
        self
    }

    /// `content_type`.
    pub fn content_type(self, value: impl Into<Vec<u8>>) -> Self {
        self.short_string(ShortStringProperty::ContentType, value)
    }

    /// `content_encoding`.
    pub fn content_encoding(self, value: impl Into<Vec<u8>>) -> Self {
        self.short_string(ShortStringProperty::ContentEncoding, value)
    }

    /// `correlation_id`.
    pub fn correlation_id(self, value: impl Into<Vec<u8>>) -> Self {
        self.short_string(ShortStringProperty::CorrelationId, value)
    }

    /// `reply_to`.
    pub fn reply_to(self, value: impl Into<Vec<u8>>) -> Self {
        self.short_string(ShortStringProperty::ReplyTo, value)
    }

    /// `expiration`.
    pub fn expiration(self, value: impl Into<Vec<u8>>) -> Self {
        self.short_string(ShortStringProperty::Expiration, value)
    }

    /// `message_id`.
    pub fn message_id(self, value: impl Into<Vec<u8>>) -> Self {
        self.short_string(ShortStringProperty::MessageId, value)
    }

    /// `type`.
    pub fn kind(self, value: impl Into<Vec<u8>>) -> Self {
        self.short_string(ShortStringProperty::Type, value)
    }

    /// `user_id`.
    pub fn user_id(self, value: impl Into<Vec<u8>>) -> Self {
        self.short_string(ShortStringProperty::UserId, value)
    }

    /// `app_id`.
    pub fn app_id(self, value: impl Into<Vec<u8>>) -> Self {
        self.short_string(ShortStringProperty::AppId, value)
    }

    /// The headers table.
    pub fn headers(mut self, table: FieldTable) -> Self {
        self.headers = Some(table);
        self
    }

    /// `delivery_mode` (2: persistent).
    pub fn delivery_mode(mut self, mode: u8) -> Self {
        self.delivery_mode = Some(mode);
        self
    }

    /// `priority`.
    pub fn priority(mut self, priority: u8) -> Self {
        self.priority = Some(priority);
        self
    }

    /// `timestamp`, in seconds since the Unix epoch.
    pub fn timestamp(mut self, seconds: u64) -> Self {
        self.timestamp = Some(seconds);
        self
    }

    /// The property flags and the property list, in the order of the AMQP spec.
    ///
    /// # Errors
    ///
    /// [`Error::TooLong`] when a short string is over 255 bytes.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut flags: u16 = 0;
        let mut list = Vec::new();
        short_property(
            &mut flags,
            &mut list,
            15,
            "content_type",
            &self.content_type,
        )?;
        short_property(
            &mut flags,
            &mut list,
            14,
            "content_encoding",
            &self.content_encoding,
        )?;
        if let Some(table) = &self.headers {
            flags |= 1 << 13;
            list.extend_from_slice(&table.encode());
        }
        if let Some(mode) = self.delivery_mode {
            flags |= 1 << 12;
            list.push(mode);
        }
        if let Some(priority) = self.priority {
            flags |= 1 << 11;
            list.push(priority);
        }
        short_property(
            &mut flags,
            &mut list,
            10,
            "correlation_id",
            &self.correlation_id,
        )?;
        short_property(&mut flags, &mut list, 9, "reply_to", &self.reply_to)?;
        short_property(&mut flags, &mut list, 8, "expiration", &self.expiration)?;
        short_property(&mut flags, &mut list, 7, "message_id", &self.message_id)?;
        if let Some(ts) = self.timestamp {
            flags |= 1 << 6;
            put_u64(&mut list, ts);
        }
        short_property(&mut flags, &mut list, 5, "type", &self.kind)?;
        short_property(&mut flags, &mut list, 4, "user_id", &self.user_id)?;
        short_property(&mut flags, &mut list, 3, "app_id", &self.app_id)?;
        let mut out = Vec::with_capacity(list.len() + 2);
        put_u16(&mut out, flags);
        out.extend_from_slice(&list);
        Ok(out)
    }
}

/// Sets `bit` of `flags` and appends the short string, when the property is set.
fn short_property(
    flags: &mut u16,
    list: &mut Vec<u8>,
    bit: u16,
    field: &'static str,
    value: &Option<Vec<u8>>,
) -> Result<()> {
    if let Some(v) = value {
        *flags |= 1 << bit;
        put_short_str(list, field, v)?;
    }
    Ok(())
}

/// An AMQP field table (as RabbitMQ reads it), encoded as it is built: each key and string
/// as raw bytes, nested tables and arrays already encoded (so nesting thousands of levels
/// deep needs no recursion).
///
/// Field types written: `S` long string, `l` 64-bit integer, `t` boolean, `F` table, `A`
/// array, `V` void, and any type byte given to [`raw_field`](Self::raw_field).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldTable {
    entries: Vec<u8>,
    declared_len: Option<u32>,
}

impl FieldTable {
    /// An empty table.
    pub fn new() -> Self {
        FieldTable::default()
    }

    /// Adds an entry of type `kind` whose value is `value`, byte for byte.
    ///
    /// The key is a short string; one over 255 bytes is cut to 255 (a hostile test wants the
    /// bytes on the wire, not an error).
    pub fn raw_field(mut self, key: impl AsRef<[u8]>, kind: u8, value: &[u8]) -> Self {
        let key = key.as_ref();
        let key = &key[..key.len().min(255)];
        self.entries.push(key.len() as u8);
        self.entries.extend_from_slice(key);
        self.entries.push(kind);
        self.entries.extend_from_slice(value);
        self
    }

    /// Adds a long string (`S`).
    pub fn long_string(self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Self {
        let mut v = Vec::new();
        put_long_str(&mut v, value.as_ref());
        self.raw_field(key, b'S', &v)
    }

    /// Adds a 64-bit integer (`l`).
    pub fn int(self, key: impl AsRef<[u8]>, value: i64) -> Self {
        self.raw_field(key, b'l', &value.to_be_bytes())
    }

    /// Adds a boolean (`t`).
    pub fn boolean(self, key: impl AsRef<[u8]>, value: bool) -> Self {
        self.raw_field(key, b't', &[u8::from(value)])
    }

    /// Adds a nested table (`F`).
    pub fn table(self, key: impl AsRef<[u8]>, table: &FieldTable) -> Self {
        self.raw_field(key, b'F', &table.encode())
    }

    /// Adds an array (`A`).
    pub fn array(self, key: impl AsRef<[u8]>, array: &FieldArray) -> Self {
        self.raw_field(key, b'A', &array.encode())
    }

    /// Makes the table's 32-bit length say `len` instead of the true length of its entries
    /// (a length that overruns the frame, for example).
    pub fn declared_length(mut self, len: u32) -> Self {
        self.declared_len = Some(len);
        self
    }

    /// The table on the wire: its length, then its entries.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() + 4);
        put_u32(
            &mut out,
            self.declared_len
                .unwrap_or_else(|| len_u32(self.entries.len())),
        );
        out.extend_from_slice(&self.entries);
        out
    }
}

/// An AMQP field array, encoded as it is built (see [`FieldTable`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldArray {
    values: Vec<u8>,
}

impl FieldArray {
    /// An empty array.
    pub fn new() -> Self {
        FieldArray::default()
    }

    /// Adds a value of type `kind`, byte for byte.
    pub fn raw_value(mut self, kind: u8, value: &[u8]) -> Self {
        self.values.push(kind);
        self.values.extend_from_slice(value);
        self
    }

    /// Adds a long string (`S`).
    pub fn long_string(self, value: impl AsRef<[u8]>) -> Self {
        let mut v = Vec::new();
        put_long_str(&mut v, value.as_ref());
        self.raw_value(b'S', &v)
    }

    /// Adds a 64-bit integer (`l`).
    pub fn int(self, value: i64) -> Self {
        self.raw_value(b'l', &value.to_be_bytes())
    }

    /// Adds a table (`F`).
    pub fn table(self, table: &FieldTable) -> Self {
        self.raw_value(b'F', &table.encode())
    }

    /// Adds an array (`A`).
    pub fn array(self, array: &FieldArray) -> Self {
        self.raw_value(b'A', &array.encode())
    }

    /// The array on the wire: its length, then its values.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.values.len() + 4);
        put_u32(&mut out, len_u32(self.values.len()));
        out.extend_from_slice(&self.values);
        out
    }
}

pub mod hostile {
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
        around(FieldTable::new().long_string("before", "ok").raw_field(
            "unknown",
            b'Z',
            &[0, 0, 0, 0],
        ))
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
}

// ---------------------------------------------------------------------------------------------
// Decoding what the broker sends (pure, bounded).

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
struct Args<'a> {
    bytes: &'a [u8],
}

impl<'a> Args<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
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

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64> {
        let mut v = [0; 8];
        v.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(v))
    }

    fn short_str(&mut self) -> Result<&'a [u8]> {
        let n = self.u8()?;
        self.take(usize::from(n))
    }

    /// A long string, or a table skipped whole (same layout: a 32-bit length, then bytes).
    fn long_str(&mut self) -> Result<&'a [u8]> {
        let n = self.u32()?;
        self.take(n as usize)
    }
}

/// A method frame's class, method and arguments.
fn parse_method(payload: &[u8]) -> Result<(u16, u16, Args<'_>)> {
    let mut args = Args { bytes: payload };
    let class = args.u16()?;
    let id = args.u16()?;
    Ok((class, id, args))
}

/// `connection.close` or `channel.close` arguments: reply code and text.
fn parse_close(mut args: Args<'_>) -> Result<(u16, String)> {
    let code = args.u16()?;
    let text = String::from_utf8_lossy(args.short_str()?).into_owned();
    Ok((code, text))
}

/// The frame size to agree on, given the broker's (0: no limit).
fn negotiate_frame_max(server: u32) -> u32 {
    if server == 0 {
        DEFAULT_FRAME_MAX
    } else {
        server.min(DEFAULT_FRAME_MAX)
    }
}

/// The SASL PLAIN response: `\0user\0password`.
fn plain_response(username: &str, password: &str) -> Vec<u8> {
    let mut r = Vec::with_capacity(username.len() + password.len() + 2);
    r.push(0);
    r.extend_from_slice(username.as_bytes());
    r.push(0);
    r.extend_from_slice(password.as_bytes());
    r
}

// ---------------------------------------------------------------------------------------------
// The publisher (I/O).

/// A publisher that speaks AMQP 0-9-1 itself on a plain TCP socket, with publisher confirms
/// on channel 1, heartbeats off. One thread, one message at a time.
///
/// The connection names itself `pubsub-testkit-raw` (or the configuration's connection
/// name). Dropping it just closes the socket; [`close`](Self::close) closes the connection
/// properly.
#[derive(Debug)]
pub struct RawPublisher {
    stream: TcpStream,
    buf: Vec<u8>,
    frame_max: u32,
    published: u64,
}

impl RawPublisher {
    /// Connects to the broker of `config` (host, port, username, password, virtual host),
    /// opens channel 1 and turns publisher confirms on.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the broker cannot be reached or stops answering for
    /// [`IO_TIMEOUT`], [`Error::Closed`] when it refuses the login or the virtual host,
    /// [`Error::Unsupported`] for TLS.
    pub fn connect(config: &AmqpConfig) -> Result<RawPublisher> {
        if config.tls().is_some() {
            return Err(Error::Unsupported("TLS (amqps)"));
        }
        let io = |doing| move |source| Error::Io { doing, source };
        let addrs = (config.host(), config.port())
            .to_socket_addrs()
            .map_err(io("resolving the broker's address"))?;
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
        let mut stream = None;
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, config.connection_timeout()) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = e,
            }
        }
        let stream = stream.ok_or(Error::Io {
            doing: "connecting",
            source: last,
        })?;
        stream
            .set_read_timeout(Some(IO_TIMEOUT))
            .and_then(|()| stream.set_write_timeout(Some(IO_TIMEOUT)))
            .and_then(|()| stream.set_nodelay(true))
            .map_err(io("setting socket options"))?;
        let mut publisher = RawPublisher {
            stream,
            buf: Vec::new(),
            frame_max: MAX_FRAME_BEFORE_TUNE,
            published: 0,
        };
        publisher.handshake(config)?;
        Ok(publisher)
    }

    fn handshake(&mut self, config: &AmqpConfig) -> Result<()> {
        self.write(PROTOCOL_HEADER, "sending the protocol header")?;

        let start = self.expect(0, CLASS_CONNECTION, 10)?;
        let mut start = Args { bytes: &start };
        let (_major, _minor) = (start.u8()?, start.u8()?);
        let _server_properties = start.long_str()?;
        let mechanisms = start.long_str()?;
        if !mechanisms.split(|&b| b == b' ').any(|m| m == b"PLAIN") {
            return Err(Error::Protocol(format!(
                "the broker does not offer PLAIN (it offers {})",
                String::from_utf8_lossy(mechanisms)
            )));
        }

        let name = config.connection_name().unwrap_or("pubsub-testkit-raw");
        let client_properties = FieldTable::new()
            .long_string("product", "pubsub-testkit raw publisher")
            .long_string("information", name);
        let mut args = client_properties.encode();
        put_short_str(&mut args, "mechanism", b"PLAIN")?;
        put_long_str(
            &mut args,
            &plain_response(config.username(), config.password()),
        );
        put_short_str(&mut args, "locale", b"en_US")?;
        self.send_method(0, CLASS_CONNECTION, 11, &args)?;

        let tune = self.expect(0, CLASS_CONNECTION, 30)?;
        let mut tune = Args { bytes: &tune };
        let _channel_max = tune.u16()?; // one channel is all it uses
        let frame_max = negotiate_frame_max(tune.u32()?);
        let mut args = Vec::new();
        put_u16(&mut args, 1);
        put_u32(&mut args, frame_max);
        put_u16(&mut args, 0); // heartbeats off
        self.send_method(0, CLASS_CONNECTION, 31, &args)?;
        self.frame_max = frame_max;

        let mut args = Vec::new();
        put_short_str(&mut args, "virtual host", config.virtual_host().as_bytes())?;
        put_short_str(&mut args, "capabilities", b"")?;
        args.push(0); // insist
        self.send_method(0, CLASS_CONNECTION, 40, &args)?;
        self.expect(0, CLASS_CONNECTION, 41)?;

        self.send_method(CHANNEL, CLASS_CHANNEL, 10, &[0])?; // reserved short string ""
        self.expect(CHANNEL, CLASS_CHANNEL, 11)?;
        self.send_method(CHANNEL, CLASS_CONFIRM, 10, &[0])?; // nowait off
        self.expect(CHANNEL, CLASS_CONFIRM, 11)?;
        Ok(())
    }

    /// Publishes one message to `exchange` with `routing_key` (any bytes), `header` and
    /// `body`, and waits for the broker's confirm.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the broker closes the channel or the connection over the
    /// message (the publisher is then unusable), [`Error::Nacked`] when it refuses it,
    /// [`Error::TooLong`] for a short string over 255 bytes, [`Error::Io`] when the
    /// broker stops answering.
    pub fn publish(
        &mut self,
        exchange: &str,
        routing_key: &[u8],
        header: &ContentHeader,
        body: &[u8],
    ) -> Result<()> {
        let frames = encode_publish(
            exchange.as_bytes(),
            routing_key,
            header,
            body,
            self.frame_max,
        )?;
        self.write(&frames, "publishing")?;
        self.published += 1;
        let tag = self.published;
        loop {
            let (channel, class, id, args) = self.next_method()?;
            let mut args = Args { bytes: &args };
            match (channel, class, id) {
                (CHANNEL, CLASS_BASIC, 80) => {
                    let acked = args.u64()?;
                    let multiple = args.u8()? & 1 == 1;
                    if acked == tag || (multiple && acked >= tag) {
                        return Ok(());
                    }
                }
                (CHANNEL, CLASS_BASIC, 120) => {
                    let nacked = args.u64()?;
                    let multiple = args.u8()? & 1 == 1;
                    if nacked == tag || (multiple && nacked >= tag) {
                        return Err(Error::Nacked { delivery_tag: tag });
                    }
                }
                // basic.return and anything else on the way: not ours to answer.
                _ => {}
            }
        }
    }

    /// Closes the connection (`connection.close`, then waits for `close-ok`, bounded by
    /// [`IO_TIMEOUT`]).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the broker does not answer.
    pub fn close(mut self) -> Result<()> {
        let mut args = Vec::new();
        put_u16(&mut args, 200);
        put_short_str(&mut args, "reply text", b"bye")?;
        put_u16(&mut args, 0);
        put_u16(&mut args, 0);
        self.send_method(0, CLASS_CONNECTION, 50, &args)?;
        let deadline = Instant::now() + IO_TIMEOUT;
        while Instant::now() < deadline {
            let frame = self.read_frame()?;
            if frame.kind == FRAME_METHOD && frame.channel == 0 {
                if let Ok((CLASS_CONNECTION, 51, _)) = parse_method(&frame.payload) {
                    return Ok(());
                }
            }
        }
        Err(Error::Protocol(
            "the broker did not answer connection.close".to_owned(),
        ))
    }

    fn write(&mut self, bytes: &[u8], doing: &'static str) -> Result<()> {
        self.stream
            .write_all(bytes)
            .map_err(|source| Error::Io { doing, source })
    }

    fn send_method(&mut self, channel: u16, class: u16, id: u16, args: &[u8]) -> Result<()> {
        let frame = encode_frame(FRAME_METHOD, channel, &method(class, id, args));
        self.write(&frame, "sending a method")
    }

    fn read_frame(&mut self) -> Result<Frame> {
        loop {
            if let Some((frame, used)) = parse_frame(&self.buf, self.frame_max)? {
                self.buf.drain(..used);
                return Ok(frame);
            }
            let mut chunk = [0u8; 8192];
            let n = self.stream.read(&mut chunk).map_err(|source| Error::Io {
                doing: "reading from the broker",
                source,
            })?;
            if n == 0 {
                return Err(Error::Io {
                    doing: "reading from the broker",
                    source: io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the broker closed the socket",
                    ),
                });
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The next method frame, skipping heartbeats and content; a `connection.close` or
    /// `channel.close` is answered and returned as [`Error::Closed`].
    fn next_method(&mut self) -> Result<(u16, u16, u16, Vec<u8>)> {
        loop {
            let frame = self.read_frame()?;
            if frame.kind != FRAME_METHOD {
                continue; // heartbeat, or the content of a basic.return
            }
            let (class, id, args) = parse_method(&frame.payload)?;
            match (class, id) {
                (CLASS_CONNECTION, 50) => {
                    let (code, text) = parse_close(args)?;
                    let _ = self.send_method(0, CLASS_CONNECTION, 51, &[]);
                    return Err(Error::Closed {
                        scope: "connection",
                        code,
                        text,
                    });
                }
                (CLASS_CHANNEL, 40) => {
                    let (code, text) = parse_close(args)?;
                    let _ = self.send_method(frame.channel, CLASS_CHANNEL, 41, &[]);
                    return Err(Error::Closed {
                        scope: "channel",
                        code,
                        text,
                    });
                }
                _ => return Ok((frame.channel, class, id, args.bytes.to_vec())),
            }
        }
    }

    /// Reads methods until `class.id` on `channel`; anything else is a protocol error.
    fn expect(&mut self, channel: u16, class: u16, id: u16) -> Result<Vec<u8>> {
        let (ch, c, m, args) = self.next_method()?;
        if (ch, c, m) != (channel, class, id) {
            return Err(Error::Protocol(format!(
                "expected method {class}.{id} on channel {channel}, got {c}.{m} on channel {ch}"
            )));
        }
        Ok(args)
    }
}

#[cfg(test)]
mod tests;
