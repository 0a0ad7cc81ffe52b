//! [`Event`], the unit that crosses the bus, and its builder.

use std::fmt;

use serde_json::{Map, Value};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::text::{json_type, quote};
use crate::typed::TypedEvent;
use crate::version::major_version;
pub use crate::version::DEFAULT_VERSION;

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
    /// `domain.action`, or `domain.action.vN` for a versioned routing key, kept whole so that
    /// routing needs no allocation.
    routing_key: String,
    /// Byte offset of the dot in `routing_key`.
    dot: usize,
    /// Byte offset of the end of the action in `routing_key`.
    action_end: usize,
    /// `N` of a versioned routing key's `.vN` word.
    key_version: Option<u32>,
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
            version: None,
            key: None,
            key_version: None,
        }
    }

    /// Starts building an event from its routing key: `domain.action`, or `domain.action.vN`
    /// for a versioned routing key (seed 002's `resource.accessed.v2`), whose version defaults
    /// to `"N.0"`. The key is checked by [`EventBuilder::build`].
    ///
    /// ```
    /// use pubsub_core::Event;
    ///
    /// let event = Event::from_routing_key("order.created.v2").build()?;
    /// assert_eq!((event.domain(), event.action()), ("order", "created"));
    /// assert_eq!(event.routing_key(), "order.created.v2");
    /// assert_eq!(event.key_version(), Some(2));
    /// assert_eq!(event.version(), "2.0");
    /// assert!(Event::from_routing_key("order.created.final").build().is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_routing_key(routing_key: &str) -> EventBuilder {
        let mut builder = Event::builder("", "");
        builder.key = Some(routing_key.to_owned());
        builder
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
        let builder = Event::builder(T::DOMAIN, T::ACTION)
            .version(T::VERSION)
            .data(value);
        match T::key_version() {
            Some(n) => builder.key_version(n).build(),
            None => builder.build(),
        }
    }

    /// Decodes the event's data as the typed event `T`.
    ///
    /// # Errors
    ///
    /// [`Error::SchemaMismatch`] if the event's domain or action is not `T`'s,
    /// [`Error::VersionMismatch`] if its major version (the routing key's `vN` when it has
    /// one, else the `version` field's) differs from `T::VERSION`'s, and
    /// [`Error::WrongType`] naming the path of the field (`data.items[0].quantity`) if the data
    /// does not fit `T`.
    pub fn decode<T: TypedEvent>(&self) -> Result<T> {
        if self.domain() != T::DOMAIN || self.action() != T::ACTION {
            return Err(Error::SchemaMismatch {
                expected: format!("{}.{}", T::DOMAIN, T::ACTION),
                found: quote(&self.routing_key),
            });
        }
        let found = self.schema_major();
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

    /// Whether this event is one of the typed event `T`: same domain and action, and the same
    /// major version (the routing key's `vN` when it has one, else the `version` field's).
    /// This is how a handler picks the struct by version before [`decode`](Self::decode):
    ///
    /// ```
    /// use pubsub_core::{Event, TypedEvent};
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Serialize, Deserialize)]
    /// struct AccessedV1 { resource_id: String }
    /// impl TypedEvent for AccessedV1 {
    ///     const DOMAIN: &'static str = "resource";
    ///     const ACTION: &'static str = "accessed";
    /// }
    ///
    /// #[derive(Serialize, Deserialize)]
    /// struct AccessedV2 { resource_id: String, resource_name: String }
    /// impl TypedEvent for AccessedV2 {
    ///     const DOMAIN: &'static str = "resource";
    ///     const ACTION: &'static str = "accessed";
    ///     const VERSION: &'static str = "2.0";
    ///     const VERSIONED_KEY: bool = true; // routing key resource.accessed.v2
    /// }
    ///
    /// let event = Event::from_typed(&AccessedV2 { resource_id: "r".into(), resource_name: "n".into() })?;
    /// assert_eq!(event.routing_key(), "resource.accessed.v2");
    /// let name = if event.is::<AccessedV2>() {
    ///     event.decode::<AccessedV2>()?.resource_name
    /// } else {
    ///     event.decode::<AccessedV1>()?.resource_id
    /// };
    /// assert_eq!(name, "n");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is<T: TypedEvent>(&self) -> bool {
        self.domain() == T::DOMAIN
            && self.action() == T::ACTION
            && self.schema_major().is_some()
            && self.schema_major() == major_version(T::VERSION)
    }

    /// The major version typed decoding goes by: the routing key's, else the field's.
    fn schema_major(&self) -> Option<u64> {
        match self.key_version {
            Some(n) => Some(u64::from(n)),
            None => major_version(&self.version),
        }
    }

    /// The domain the event belongs to, e.g. `order`.
    pub fn domain(&self) -> &str {
        &self.routing_key[..self.dot]
    }

    /// What happened, e.g. `created`.
    pub fn action(&self) -> &str {
        &self.routing_key[self.dot + 1..self.action_end]
    }

    /// The routing key: `domain.action`, or `domain.action.vN` when the event has a versioned
    /// routing key (see [`key_version`](Self::key_version)).
    pub fn routing_key(&self) -> &str {
        &self.routing_key
    }

    /// `N` when the routing key is versioned (`order.created.v2`: `Some(2)`), else `None`.
    ///
    /// The version word is a property of the message's routing key, not of the six-field
    /// body: the body keeps `domain` and `action` as they are (`order`, `created`), and its
    /// `version` field says `"N.0"` unless set otherwise.
    pub fn key_version(&self) -> Option<u32> {
        self.key_version
    }

    /// The same event under the routing key it arrived with, when that key names the same
    /// domain and action: `domain.action` (kept as it is) or `domain.action.vN` (the event
    /// then has key version `N`). Other keys are refused: what the body says and what the
    /// key says disagree, and the caller must decide (the subscriber dead-letters the message
    /// with that reason).
    ///
    /// # Errors
    ///
    /// [`Error::KeyMismatch`] naming both when `routing_key` is neither.
    pub fn with_arrival_key(mut self, routing_key: &str) -> Result<Event> {
        if routing_key == self.routing_key {
            return Ok(self);
        }
        let base_len = self.action_end;
        let versioned = routing_key
            .strip_prefix(&self.routing_key[..base_len])
            .and_then(|rest| rest.strip_prefix('.'))
            .and_then(parse_key_version);
        match versioned {
            Some(n) => {
                self.routing_key.truncate(base_len);
                self.routing_key.push_str(&format!(".v{n}"));
                self.key_version = Some(n);
                Ok(self)
            }
            None => Err(Error::KeyMismatch {
                routing_key: quote(routing_key),
                body: quote(&self.routing_key),
            }),
        }
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
        Event::from_key_parts(domain, action, None, data, event_id, timestamp, version)
    }

    /// [`from_parts`](Self::from_parts) with the key version of a versioned routing key.
    pub(crate) fn from_key_parts(
        domain: &str,
        action: &str,
        key_version: Option<u32>,
        data: Map<String, Value>,
        event_id: Uuid,
        timestamp: OffsetDateTime,
        version: &str,
    ) -> Result<Event> {
        check_word("domain", domain)?;
        check_word("action", action)?;
        check_version(version)?;
        let mut routing_key = String::with_capacity(domain.len() + 1 + action.len() + 4);
        routing_key.push_str(domain);
        routing_key.push('.');
        routing_key.push_str(action);
        let action_end = routing_key.len();
        if let Some(n) = key_version {
            routing_key.push_str(&format!(".v{n}"));
        }
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
            action_end,
            key_version,
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
    /// `None`: `"1.0"`, or `"N.0"` for key version `N`.
    version: Option<String>,
    /// A whole routing key to parse, from [`Event::from_routing_key`].
    key: Option<String>,
    key_version: Option<u32>,
}

impl EventBuilder {
    /// Gives the event a versioned routing key, `domain.action.vN` (seed 002's way of
    /// publishing a breaking change beside the old key). The body's `domain` and `action` stay
    /// as they are; the version defaults to `"N.0"`.
    pub fn key_version(mut self, n: u32) -> Self {
        self.key_version = Some(n);
        self
    }

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
        self.version = Some(version.to_owned());
        self
    }

    /// Validates the fields and builds the event.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidField`] naming the field and the value if `domain` or `action` is empty
    /// or has characters outside `[A-Za-z0-9_-]`, if the data is not a JSON object, or if the
    /// version does not start with a number; [`Error::InvalidField`] for `routing_key` if a key
    /// given to [`Event::from_routing_key`] is not `domain.action` or `domain.action.vN`.
    pub fn build(self) -> Result<Event> {
        let data = self
            .data
            .map_err(|found| Error::invalid("data", found, "data must be a JSON object"))?;
        let (domain, action, key_version) = match &self.key {
            Some(key) => parse_routing_key(key)?,
            None => (self.domain.as_str(), self.action.as_str(), None),
        };
        let key_version = self.key_version.or(key_version);
        let version = match (self.version, key_version) {
            (Some(version), _) => version,
            (None, Some(n)) => format!("{n}.0"),
            (None, None) => DEFAULT_VERSION.to_owned(),
        };
        if major_version(&version).is_none() {
            return Err(Error::invalid(
                "version",
                &version,
                "a version starts with its major number, e.g. \"1.0\"",
            ));
        }
        Event::from_key_parts(
            domain,
            action,
            key_version,
            data,
            self.event_id.unwrap_or_else(Uuid::new_v4),
            self.timestamp.unwrap_or_else(OffsetDateTime::now_utc),
            &version,
        )
    }
}

/// Splits an event's routing key: `domain.action` or `domain.action.vN`.
///
/// # Errors
///
/// [`Error::InvalidField`] for `routing_key` when it has another shape; the words themselves
/// are checked when the event is built.
pub(crate) fn parse_routing_key(key: &str) -> Result<(&str, &str, Option<u32>)> {
    let mut words = key.split('.');
    let shape = "an event's routing key is `domain.action` or `domain.action.vN` (N a number)";
    match (words.next(), words.next(), words.next(), words.next()) {
        (Some(domain), Some(action), None, None) => Ok((domain, action, None)),
        (Some(domain), Some(action), Some(word), None) => match parse_key_version(word) {
            Some(n) => Ok((domain, action, Some(n))),
            None => Err(Error::invalid("routing_key", key, shape)),
        },
        _ => Err(Error::invalid("routing_key", key, shape)),
    }
}

/// `N` of a routing key's version word `vN` (`v2`, `V2`; no sign, no leading zero).
pub(crate) fn parse_key_version(word: &str) -> Option<u32> {
    let digits = word.strip_prefix(['v', 'V'])?;
    if digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || (digits.len() > 1 && digits.starts_with('0'))
    {
        return None;
    }
    digits.parse().ok()
}

/// Checks a `domain` or `action`: non-empty, `[A-Za-z0-9_-]` only.
pub(crate) fn check_word(field: &'static str, value: &str) -> Result<()> {
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
    fn routing_keys_parse_with_an_optional_version_word() {
        let check = |key: &str, expected: Option<(&str, &str, Option<u32>)>| {
            assert_eq!(parse_routing_key(key).ok(), expected, "{key}");
        };
        check("order.created", Some(("order", "created", None)));
        check("order.created.v2", Some(("order", "created", Some(2))));
        check("order.created.V10", Some(("order", "created", Some(10))));
        check("order.created.v0", Some(("order", "created", Some(0))));
        check("order.created.v02", None);
        check("order.created.v", None);
        check("order.created.vx", None);
        check("order.created.2", None);
        check("order.created.v2.x", None);
        check("order", None);
        check("order.created.v99999999999", None);
    }

    #[test]
    fn versioned_routing_keys() {
        let event = Event::builder("order", "created")
            .key_version(2)
            .build()
            .unwrap();
        assert_eq!(event.routing_key(), "order.created.v2");
        assert_eq!(event.action(), "created");
        assert_eq!(event.version(), "2.0");
        let event = Event::from_routing_key("order.created.v3")
            .version("3.1")
            .build()
            .unwrap();
        assert_eq!((event.key_version(), event.version()), (Some(3), "3.1"));
        let plain = Event::from_routing_key("order.created").build().unwrap();
        assert_eq!((plain.key_version(), plain.version()), (None, "1.0"));
        for bad in ["order.created.final", "order", "or der.created", "a.b.v2.c"] {
            assert!(Event::from_routing_key(bad).build().is_err(), "{bad}");
        }
        // The body is the seed's six fields: domain and action without the version word.
        let body = serde_json::to_value(&event).unwrap();
        assert_eq!(
            (body["domain"].as_str(), body["action"].as_str()),
            (Some("order"), Some("created"))
        );
    }

    #[test]
    fn arrival_keys_agree_or_are_refused() {
        let event = Event::new("order", "created", json!({})).unwrap();
        let check = |key: &str, expected: Option<(&str, Option<u32>)>| {
            let got = event.clone().with_arrival_key(key).ok();
            let got = got.as_ref().map(|e| (e.routing_key(), e.key_version()));
            assert_eq!(got, expected, "{key}");
        };
        check("order.created", Some(("order.created", None)));
        check("order.created.v2", Some(("order.created.v2", Some(2))));
        check("order.paid", None);
        check("order.created.x", None);
        check("order.createdv2", None);
        check("my-queue", None);
        let v2 = event.with_arrival_key("order.created.v2").unwrap();
        assert_eq!(
            v2.clone()
                .with_arrival_key("order.created.v3")
                .unwrap()
                .routing_key(),
            "order.created.v3"
        );
        assert!(v2.with_arrival_key("order.created").is_err());
    }

    #[test]
    fn display_is_short_and_has_no_data() {
        let event = Event::new("order", "created", json!({"secret": "x"})).unwrap();
        let text = event.to_string();
        assert!(text.starts_with("order.created "));
        assert!(!text.contains("secret"));
    }
}
