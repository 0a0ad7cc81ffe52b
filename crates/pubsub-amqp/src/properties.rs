//! Message properties and headers, in this crate's own types.

use std::collections::BTreeMap;

use amiquip::{AmqpProperties, AmqpValue, FieldTable};

use crate::error::{Error, Result};

/// Message headers: names to values, as in an AMQP field table.
pub type Headers = BTreeMap<String, HeaderValue>;

/// A header value.
#[derive(Debug, Clone, PartialEq)]
pub enum HeaderValue {
    /// A boolean.
    Bool(bool),
    /// Any AMQP integer type.
    Int(i64),
    /// A float, double or decimal.
    Float(f64),
    /// A string.
    Str(String),
    /// Raw bytes.
    Bytes(Vec<u8>),
    /// An array.
    Array(Vec<HeaderValue>),
    /// A nested table.
    Table(Headers),
    /// A timestamp, in seconds since the Unix epoch.
    Timestamp(u64),
    /// No value.
    Void,
}

impl HeaderValue {
    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            HeaderValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, if this is one.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            HeaderValue::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The strings of an array of strings (other elements skipped); empty if not an array.
    pub fn string_items(&self) -> Vec<&str> {
        match self {
            HeaderValue::Array(items) => items.iter().filter_map(HeaderValue::as_str).collect(),
            _ => Vec::new(),
        }
    }
}

impl From<&str> for HeaderValue {
    fn from(s: &str) -> Self {
        HeaderValue::Str(s.to_owned())
    }
}

impl From<String> for HeaderValue {
    fn from(s: String) -> Self {
        HeaderValue::Str(s)
    }
}

impl From<i64> for HeaderValue {
    fn from(i: i64) -> Self {
        HeaderValue::Int(i)
    }
}

impl From<bool> for HeaderValue {
    fn from(b: bool) -> Self {
        HeaderValue::Bool(b)
    }
}

impl From<Vec<String>> for HeaderValue {
    fn from(items: Vec<String>) -> Self {
        HeaderValue::Array(items.into_iter().map(HeaderValue::Str).collect())
    }
}

/// The properties of a message this crate publishes or receives.
///
/// Only the properties this workspace uses are here; the others are left unset on publish and
/// ignored on receipt.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Properties {
    /// MIME type of the body, e.g. `application/json`.
    pub content_type: Option<String>,
    /// Whether the broker stores the message on disk (delivery mode 2).
    pub persistent: bool,
    /// The message's id; events use their `event_id`.
    pub message_id: Option<String>,
    /// When the message was created, in seconds since the Unix epoch.
    pub timestamp: Option<u64>,
    /// The AMQP `type` property; events use their routing key.
    pub kind: Option<String>,
    /// The publishing application's name.
    pub app_id: Option<String>,
    /// Ties related messages together.
    pub correlation_id: Option<String>,
    /// Application headers.
    pub headers: Headers,
    /// How long the message may wait in a queue before it expires (the AMQP `expiration`
    /// property, per-message TTL, in whole milliseconds). Publish-only: a received message's
    /// properties never carry it, so that a copy republished from them (a retry, a dead
    /// letter, a replay) does not inherit the original's time to live.
    pub expiration: Option<std::time::Duration>,
    /// The message's priority (the AMQP `priority` property, 0 to 255): a queue declared
    /// with `x-max-priority` delivers higher ones first; other queues ignore it.
    pub priority: Option<u8>,
}

impl Properties {
    /// Converts to amiquip's properties.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidMessage`] if a property or header name is longer than the 255 bytes an
    /// AMQP short string can hold.
    pub(crate) fn to_amqp(&self) -> Result<AmqpProperties> {
        let mut props = AmqpProperties::default();
        if let Some(v) = &self.content_type {
            props = props.with_content_type(short("content_type", v)?);
        }
        if self.persistent {
            props = props.with_delivery_mode(2);
        }
        if let Some(v) = &self.message_id {
            props = props.with_message_id(short("message_id", v)?);
        }
        if let Some(v) = self.timestamp {
            props = props.with_timestamp(v);
        }
        if let Some(v) = &self.kind {
            props = props.with_type_(short("type", v)?);
        }
        if let Some(v) = &self.app_id {
            props = props.with_app_id(short("app_id", v)?);
        }
        if let Some(v) = &self.correlation_id {
            props = props.with_correlation_id(short("correlation_id", v)?);
        }
        if !self.headers.is_empty() {
            props = props.with_headers(table_to_amqp(&self.headers)?);
        }
        if let Some(priority) = self.priority {
            props = props.with_priority(priority);
        }
        if let Some(ttl) = self.expiration {
            // Whole milliseconds, as AMQP's `expiration` wants them written.
            props = props.with_expiration(ttl.as_millis().to_string());
        }
        Ok(props)
    }

    /// Converts from amiquip's properties.
    pub(crate) fn from_amqp(props: &AmqpProperties) -> Properties {
        Properties {
            content_type: props.content_type().clone(),
            persistent: *props.delivery_mode() == Some(2),
            message_id: props.message_id().clone(),
            timestamp: *props.timestamp(),
            kind: props.type_().clone(),
            app_id: props.app_id().clone(),
            correlation_id: props.correlation_id().clone(),
            headers: props
                .headers()
                .as_ref()
                .map(table_from_amqp)
                .unwrap_or_default(),
            expiration: None,
            priority: *props.priority(),
        }
    }
}

fn short(field: &'static str, value: &str) -> Result<String> {
    if value.len() > 255 {
        return Err(Error::InvalidMessage {
            field,
            message: format!("{field} is {} bytes long; AMQP allows 255", value.len()),
        });
    }
    Ok(value.to_owned())
}

pub(crate) fn table_to_amqp(headers: &Headers) -> Result<FieldTable> {
    let mut table = FieldTable::new();
    for (k, v) in headers {
        table.insert(short("headers", k)?, value_to_amqp(v)?);
    }
    Ok(table)
}

fn value_to_amqp(value: &HeaderValue) -> Result<AmqpValue> {
    Ok(match value {
        HeaderValue::Bool(b) => AmqpValue::Boolean(*b),
        HeaderValue::Int(i) => AmqpValue::LongLongInt(*i),
        HeaderValue::Float(f) => AmqpValue::Double(*f),
        HeaderValue::Str(s) => AmqpValue::LongString(s.clone()),
        HeaderValue::Bytes(b) => AmqpValue::ByteArray(b.clone()),
        HeaderValue::Array(items) => {
            AmqpValue::FieldArray(items.iter().map(value_to_amqp).collect::<Result<_>>()?)
        }
        HeaderValue::Table(t) => AmqpValue::FieldTable(table_to_amqp(t)?),
        HeaderValue::Timestamp(t) => AmqpValue::Timestamp(*t),
        HeaderValue::Void => AmqpValue::Void,
    })
}

pub(crate) fn table_from_amqp(table: &FieldTable) -> Headers {
    table
        .iter()
        .map(|(k, v)| (k.clone(), value_from_amqp(v)))
        .collect()
}

pub(crate) fn value_from_amqp(value: &AmqpValue) -> HeaderValue {
    match value {
        AmqpValue::Boolean(b) => HeaderValue::Bool(*b),
        AmqpValue::ShortShortInt(i) => HeaderValue::Int(i64::from(*i)),
        AmqpValue::ShortShortUInt(i) => HeaderValue::Int(i64::from(*i)),
        AmqpValue::ShortInt(i) => HeaderValue::Int(i64::from(*i)),
        AmqpValue::ShortUInt(i) => HeaderValue::Int(i64::from(*i)),
        AmqpValue::LongInt(i) => HeaderValue::Int(i64::from(*i)),
        AmqpValue::LongUInt(i) => HeaderValue::Int(i64::from(*i)),
        AmqpValue::LongLongInt(i) => HeaderValue::Int(*i),
        AmqpValue::Float(f) => HeaderValue::Float(f64::from(*f)),
        AmqpValue::Double(f) => HeaderValue::Float(*f),
        AmqpValue::DecimalValue(d) => {
            HeaderValue::Float(f64::from(d.value) / 10f64.powi(i32::from(d.scale)))
        }
        AmqpValue::LongString(s) => HeaderValue::Str(s.clone()),
        AmqpValue::FieldArray(items) => {
            HeaderValue::Array(items.iter().map(value_from_amqp).collect())
        }
        AmqpValue::Timestamp(t) => HeaderValue::Timestamp(*t),
        AmqpValue::FieldTable(t) => HeaderValue::Table(table_from_amqp(t)),
        AmqpValue::ByteArray(b) => HeaderValue::Bytes(b.clone()),
        AmqpValue::Void => HeaderValue::Void,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_amqp_properties() {
        let mut headers = Headers::new();
        headers.insert("attempt".into(), HeaderValue::Int(2));
        headers.insert("done".into(), vec!["a@#".to_owned()].into());
        headers.insert("nested".into(), HeaderValue::Table(Headers::new()));
        let props = Properties {
            content_type: Some("application/json".into()),
            persistent: true,
            message_id: Some("id".into()),
            timestamp: Some(1_700_000_000),
            kind: Some("order.created".into()),
            app_id: Some("orders".into()),
            correlation_id: Some("c-1".into()),
            headers,
            expiration: None,
            priority: Some(7),
        };
        let back = Properties::from_amqp(&props.to_amqp().unwrap());
        assert_eq!(back, props);
        assert_eq!(back.headers["done"].string_items(), ["a@#"]);
    }

    #[test]
    fn expiration_is_sent_in_milliseconds_and_never_read_back() {
        let props = Properties {
            expiration: Some(std::time::Duration::from_micros(1_500_900)),
            ..Properties::default()
        };
        let amqp = props.to_amqp().unwrap();
        assert_eq!(amqp.expiration().as_deref(), Some("1500"));
        // A copy made from received properties must not expire where the original would.
        assert_eq!(Properties::from_amqp(&amqp).expiration, None);
    }

    #[test]
    fn refuses_short_strings_over_255_bytes() {
        let props = Properties {
            correlation_id: Some("x".repeat(256)),
            ..Properties::default()
        };
        let err = props.to_amqp().unwrap_err();
        assert!(err.to_string().contains("correlation_id"), "{err}");
    }
}
