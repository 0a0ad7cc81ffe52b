//! Encoding frames and properties (pure): what the raw publisher writes.

use super::*;

pub(super) fn put_u16(buf: &mut Vec<u8>, v: u16) {
    buf.extend_from_slice(&v.to_be_bytes());
}

pub(super) fn put_u32(buf: &mut Vec<u8>, v: u32) {
    buf.extend_from_slice(&v.to_be_bytes());
}

pub(super) fn put_u64(buf: &mut Vec<u8>, v: u64) {
    buf.extend_from_slice(&v.to_be_bytes());
}

/// A short string: one length octet, then the bytes (as given: not checked for UTF-8).
pub(super) fn put_short_str(buf: &mut Vec<u8>, field: &'static str, s: &[u8]) -> Result<()> {
    let len = u8::try_from(s.len()).map_err(|_| Error::TooLong {
        field,
        len: s.len(),
    })?;
    buf.push(len);
    buf.extend_from_slice(s);
    Ok(())
}

/// A long string: a 32-bit length, then the bytes.
pub(super) fn put_long_str(buf: &mut Vec<u8>, s: &[u8]) {
    put_u32(buf, len_u32(s.len()));
    buf.extend_from_slice(s);
}

/// A length as AMQP's 32 bits, saturating (a longer value cannot be sent anyway).
pub(super) fn len_u32(len: usize) -> u32 {
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
pub(super) fn method(class: u16, id: u16, args: &[u8]) -> Vec<u8> {
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
pub(super) fn short_property(
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
