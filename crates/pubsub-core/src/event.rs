//! [`Event`], the unit that crosses the bus, and its builder.

use std::fmt;

use serde_json::{Map, Value};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::text::{json_type, quote};
use crate::typed::{major_version, TypedEvent};

/// Version an event gets when none is given, as in the original design.
pub const DEFAULT_VERSION: &str = "1.0";

/// Longest routing key AMQP can carry (a short string).
const MAX_ROUTING_KEY_LEN: usize = 255;

/// Longest version string accepted.
const MAX_VERSION_LEN: usize = 64;

/// An event: a fact that happened in one domain, published for any service to react to.
///
/// An event has exactly the six fields of the wire format shared with the Python services of the
/// original design: `domain`, `action`, `data` (a JSON object), `event_id` (a UUID v4),
/// `timestamp` (UTC) and `version` (`"1.0"` unless set). Its routing key is `domain.action`.
///
/// Events are immutable: fields are set once, when the event is built, and read through getters.
/// Construction validates every field, so any `Event` value is one that can be published.
///
/// ```
/// use pubsub_core::Event;
/// use serde_json::json;
///
/// let event = Event::new("order", "created", json!({ "order_id": "ORD-1" }))?;
/// assert_eq!(event.routing_key(), "order.created");
/// assert_eq!(event.version(), "1.0");
/// assert_eq!(event.data()["order_id"], "ORD-1");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, PartialEq)]
pub struct Event {
    /// `domain.action`, kept whole so that routing needs no allocation.
    routing_key: String,
    /// Byte offset of the dot in `routing_key`.
    dot: usize,
    data: Map<String, Value>,
    event_id: Uuid,
    timestamp: OffsetDateTime,
    version: String,
}

impl Event {
    /// Creates an event of `domain` and `action` carrying `data`, with a new event id, the
    /// current time and version `"1.0"`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidField`] if `domain` or `action` is empty or has a character outside
    /// `[A-Za-z0-9_-]` (they become words of the routing key, so dots, spaces and wildcards are
    /// refused), or if `data` is not a JSON object.
    pub fn new(domain: &str, action: &str, data: Value) -> Result<Event> {
        Event::builder(domain, action).data(data).build()
    }

    /// Starts building an event of `domain` and `action`; see [`EventBuilder`].
    pub fn builder(domain: &str, action: &str) -> EventBuilder {
        EventBuilder {
            domain: domain.to_owned(),
            action: action.to_owned(),
            data: Ok(Map::new()),
            event_id: None,
            timestamp: None,
            version: DEFAULT_VERSION.to_owned(),
        }
    }

    /// Creates the event that carries the typed event `data`, with its domain, action and
    /// version.
    ///
    /// # Errors
    ///
    /// [`Error::Encode`] if `data` cannot be serialized, [`Error::InvalidField`] if it does not
    /// serialize to a JSON object or if the type's domain, action or version is invalid.
    pub fn from_typed<T: TypedEvent>(data: &T) -> Result<Event> {
        let value = serde_json::to_value(data).map_err(|e| Error::Encode {
            message: e.to_string(),
        })?;
        Event::builder(T::DOMAIN, T::ACTION)
            .version(T::VERSION)
            .data(value)
            .build()
    }

    /// Decodes the event's data as the typed event `T`.
    ///
    /// # Errors
    ///
    /// [`Error::SchemaMismatch`] if the event's domain or action is not `T`'s,
    /// [`Error::VersionMismatch`] if its major version differs from `T::VERSION`'s, and
    /// [`Error::WrongType`] naming the path of the field (`data.items[0].quantity`) if the data
    /// does not fit `T`.
    pub fn decode<T: TypedEvent>(&self) -> Result<T> {
        if self.domain() != T::DOMAIN || self.action() != T::ACTION {
            return Err(Error::SchemaMismatch {
                expected: format!("{}.{}", T::DOMAIN, T::ACTION),
                found: quote(&self.routing_key),
            });
        }
        let found = self.major_version();
        if found.is_none() || found != major_version(T::VERSION) {
            return Err(Error::VersionMismatch {
                expected: T::VERSION.to_owned(),
                found: quote(&self.version),
            });
        }
        serde_path_to_error::deserialize(&self.data).map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." {
                "data".to_owned()
            } else {
                format!("data.{path}")
            };
            Error::WrongType {
                field,
                message: e.into_inner().to_string(),
            }
        })
    }

    /// The domain the event belongs to, e.g. `order`.
    pub fn domain(&self) -> &str {
        &self.routing_key[..self.dot]
    }

    /// What happened, e.g. `created`.
    pub fn action(&self) -> &str {
        &self.routing_key[self.dot + 1..]
    }

    /// The routing key, `domain.action`.
    pub fn routing_key(&self) -> &str {
        &self.routing_key
    }

    /// The event's payload, a JSON object.
    pub fn data(&self) -> &Map<String, Value> {
        &self.data
    }

    /// The unique id of this event, a UUID v4 unless the event came from elsewhere.
    pub fn event_id(&self) -> Uuid {
        self.event_id
    }

    /// When the event was created, in UTC, to the microsecond.
    pub fn timestamp(&self) -> OffsetDateTime {
        self.timestamp
    }

    /// The version of the event's schema, `"1.0"` by default.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The major number of the event's version: the digits before the first `.` (`2` for
    /// `"2.1"`, `12` for `"12"`).
    ///
    /// `None` when the version does not start with a number (`"v1"`, `".1"`, `"+1.0"`) or the
    /// number does not fit a `u64`: an event built here always has one, but decoding accepts
    /// other versions from the wire.
    ///
    /// # Example
    ///
    /// ```
    /// let event = pubsub_core::Event::builder("order", "created").version("2.1").build()?;
    /// assert_eq!(event.major_version(), Some(2));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn major_version(&self) -> Option<u64> {
        major_version(&self.version)
    }

    /// Takes the event apart into its data, for callers that want to keep the payload without
    /// cloning it.
    pub fn into_data(self) -> Map<String, Value> {
        self.data
    }

    /// Builds an event from already-separated fields, validating each. Used by the decoder.
    pub(crate) fn from_parts(
        domain: &str,
        action: &str,
        data: Map<String, Value>,
        event_id: Uuid,
        timestamp: OffsetDateTime,
        version: &str,
    ) -> Result<Event> {
        check_word("domain", domain)?;
        check_word("action", action)?;
        check_version(version)?;
        let mut routing_key = String::with_capacity(domain.len() + 1 + action.len());
        routing_key.push_str(domain);
        routing_key.push('.');
        routing_key.push_str(action);
        if routing_key.len() > MAX_ROUTING_KEY_LEN {
            return Err(Error::invalid(
                "domain",
                &routing_key,
                "the routing key `domain.action` is longer than 255 bytes",
            ));
        }
        // The wire format carries microseconds; keeping no more makes an encoded and decoded
        // event equal to the original.
        let micros = timestamp.nanosecond() / 1_000 * 1_000;
        let timestamp = timestamp.replace_nanosecond(micros).unwrap_or(timestamp);
        Ok(Event {
            dot: domain.len(),
            routing_key,
            data,
            event_id,
            timestamp,
            version: version.to_owned(),
        })
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("domain", &self.domain())
            .field("action", &self.action())
            .field("data", &self.data)
            .field("event_id", &self.event_id)
            .field("timestamp", &self.timestamp)
            .field("version", &self.version)
            .finish()
    }
}

/// A short, log-friendly form: `order.created 2b0c...-... v1.0`. It never includes the data.
impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} v{}",
            self.routing_key,
            self.event_id.hyphenated(),
            self.version
        )
    }
}

/// Builds an [`Event`] field by field; the fields not set get their defaults (a new UUID v4,
/// the current UTC time, version `"1.0"`, empty data).
///
/// Setting the id and timestamp is meant for tests and for re-creating an event that exists
/// elsewhere; new events should keep the generated ones.
///
/// ```
/// use pubsub_core::Event;
/// use serde_json::json;
///
/// let event = Event::builder("user", "registered")
///     .data(json!({ "user_id": "U-1" }))
///     .version("2.1")
///     .build()?;
/// assert_eq!(event.version(), "2.1");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
#[must_use = "an EventBuilder does nothing until `build` is called"]
pub struct EventBuilder {
    domain: String,
    action: String,
    /// `Err` holds the JSON type name of a non-object value, reported by `build`.
    data: std::result::Result<Map<String, Value>, &'static str>,
    event_id: Option<Uuid>,
    timestamp: Option<OffsetDateTime>,
    version: String,
}

impl EventBuilder {
    /// Sets the payload; it must be a JSON object (checked by [`build`](Self::build)).
    pub fn data(mut self, data: Value) -> Self {
        self.data = match data {
            Value::Object(map) => Ok(map),
            other => Err(json_type(&other)),
        };
        self
    }

    /// Sets the payload from a JSON object.
    pub fn data_map(mut self, data: Map<String, Value>) -> Self {
        self.data = Ok(data);
        self
    }

    /// Sets the event id instead of generating one.
    pub fn event_id(mut self, event_id: Uuid) -> Self {
        self.event_id = Some(event_id);
        self
    }

    /// Sets the timestamp instead of taking the current time.
    pub fn timestamp(mut self, timestamp: OffsetDateTime) -> Self {
        self.timestamp = Some(timestamp);
        self
    }

    /// Sets the schema version (`"1.0"` by default); it starts with the major version number,
    /// e.g. `"2"` or `"2.1"`.
    pub fn version(mut self, version: &str) -> Self {
        self.version = version.to_owned();
        self
    }

    /// Validates the fields and builds the event.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidField`] naming the field and the value if `domain` or `action` is empty
    /// or has characters outside `[A-Za-z0-9_-]`, if the data is not a JSON object, or if the
    /// version does not start with a number.
    pub fn build(self) -> Result<Event> {
        let data = self
            .data
            .map_err(|found| Error::invalid("data", found, "data must be a JSON object"))?;
        if major_version(&self.version).is_none() {
            return Err(Error::invalid(
                "version",
                &self.version,
                "a version starts with its major number, e.g. \"1.0\"",
            ));
        }
        Event::from_parts(
            &self.domain,
            &self.action,
            data,
            self.event_id.unwrap_or_else(Uuid::new_v4),
            self.timestamp.unwrap_or_else(OffsetDateTime::now_utc),
            &self.version,
        )
    }
}

/// Checks a `domain` or `action`: non-empty, `[A-Za-z0-9_-]` only.
fn check_word(field: &'static str, value: &str) -> Result<()> {
    if value.is_empty() {
        return Err(Error::invalid(field, value, "must not be empty"));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(Error::invalid(
            field,
            value,
            "only letters, digits, '_' and '-' are allowed (it becomes a word of the routing key)",
        ));
    }
    Ok(())
}

/// Checks a version: non-empty, printable, at most [`MAX_VERSION_LEN`] bytes.
///
/// Decoding stays liberal about the rest of the version's shape; only [`Event::decode`] needs
/// its major number.
fn check_version(value: &str) -> Result<()> {
    if value.is_empty() || value.len() > MAX_VERSION_LEN {
        return Err(Error::invalid(
            "version",
            value,
            "must be 1 to 64 characters long",
        ));
    }
    if value.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(Error::invalid(
            "version",
            value,
            "must not contain whitespace or control characters",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn new_event_has_generated_fields_and_routing_key() {
        let event = Event::new("order", "created", json!({"order_id": "ORD-1"})).unwrap();
        assert_eq!(event.domain(), "order");
        assert_eq!(event.action(), "created");
        assert_eq!(event.routing_key(), "order.created");
        assert_eq!(event.version(), DEFAULT_VERSION);
        assert_eq!(event.event_id().get_version_num(), 4);
        assert_eq!(event.timestamp().offset(), time::UtcOffset::UTC);
        assert_eq!(event.data()["order_id"], "ORD-1");
        let other = Event::new("order", "created", json!({})).unwrap();
        assert_ne!(event.event_id(), other.event_id());
    }

    fn check_invalid(domain: &str, action: &str, data: Value, field: &str) {
        match Event::new(domain, action, data) {
            Err(Error::InvalidField { field: f, .. }) => assert_eq!(f, field, "{domain}.{action}"),
            other => panic!("{domain:?}.{action:?}: expected invalid {field}, got {other:?}"),
        }
    }

    #[test]
    fn construction_validates_every_field() {
        check_invalid("", "created", json!({}), "domain");
        check_invalid("order", "", json!({}), "action");
        check_invalid("or.der", "created", json!({}), "domain");
        check_invalid("order", "created.v2", json!({}), "action");
        check_invalid("order", "*", json!({}), "action");
        check_invalid("#", "created", json!({}), "domain");
        check_invalid("or der", "created", json!({}), "domain");
        check_invalid("order", "crèated", json!({}), "action");
        check_invalid("order", "created", json!([1, 2]), "data");
        check_invalid("order", "created", json!("text"), "data");
        check_invalid("order", "created", Value::Null, "data");
        check_invalid(&"d".repeat(200), &"a".repeat(60), json!({}), "domain");
        assert!(Event::new("Order_2", "created-v2", json!({})).is_ok());
    }

    #[test]
    fn invalid_field_error_names_field_and_value() {
        let err = Event::new("order", "created.v2", json!({})).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("action"), "{text}");
        assert!(text.contains("created.v2"), "{text}");
    }

    #[test]
    fn builder_validates_version() {
        let build = |v: &str| Event::builder("a", "b").version(v).build();
        assert!(build("2").is_ok());
        assert!(build("2.1.3").is_ok());
        assert!(build("").is_err());
        assert!(build("v1").is_err());
        assert!(build("1 .0").is_err());
    }

    #[test]
    fn display_is_short_and_has_no_data() {
        let event = Event::new("order", "created", json!({"secret": "x"})).unwrap();
        let text = event.to_string();
        assert!(text.starts_with("order.created "));
        assert!(!text.contains("secret"));
    }
}
