//! Envelopes: the shapes an event's body takes on the wire, to and from [`Event`].
//!
//! Services of the original designs put events on the bus in three shapes:
//!
//! | [`Envelope`] | body | where the rest comes from |
//! | --- | --- | --- |
//! | [`Standard`](Envelope::Standard) (default) | seed 000's six fields ([`json`]) | the body |
//! | [`Bare`](Envelope::Bare) | seed 002's bare model: the `data` object alone | routing key, `message_id`, timestamp property |
//! | [`EventBus`](Envelope::EventBus) | seed 004's `name`, `source`, `event_type`, `id`, `timestamp`, `data` | the body |
//! | [`Task`](Envelope::Task) | seed 003's task message: `task_name`, `payload` | `message_id`, timestamp property |
//! | [`Any`](Envelope::Any) | any JSON (seed 003's event store keeps every message) | a six-field body as `Standard`; else the routing key, `message_id`, timestamp property |
//!
//! Whichever the envelope, decoding gives the same [`Event`], so handlers do not know how it
//! travelled. The standard envelope also accepts an `action` ending in a version word
//! (`"action": "created.v2"`), which is how a seed 000 service, whose routing key is
//! `domain.action`, publishes under `order.created.v2`; this crate writes `"created"` and
//! carries the version word in the routing key only. The routing key the message [`Received`] with says which event it is: a body
//! whose own `domain.action` (or `name`) is the key, or the key without its version word
//! (`order.created` arriving as `order.created.v2`), is that event, with the key's version;
//! any other key is an [`Error::KeyMismatch`], never silently ignored.
//!
//! A task message names a task, not an event: it becomes the event
//! `task.<task_name>` ([`TASK_DOMAIN`]) whose data is the `payload` (an absent or `null`
//! payload is an empty object). Its routing key (seed 003's `routing.task.<action>.<entity>`
//! on a direct exchange) only routes it: it is not compared with the body, and the event's
//! routing key is `task.<task_name>` whatever the key it arrived with. A `task_name` must be
//! a word of a routing key (letters, digits, `_`, `-`), as a Python module name is.
//!
//! A bare body and a task message have no event id: the message's `message_id` is used when it is a UUID; any
//! other `message_id` is turned into one deterministically, and without a `message_id` the id
//! is derived from the routing key and the body, so that a redelivered message gets the same
//! id (for deduplication). Both derivations are UUID v5 in [`BARE_ID_NAMESPACE`]: of the
//! `message_id`, or of the routing key, a zero byte and the body.
//!
//! Seed 004's envelope carries more than an [`Event`]: who published it (`source`), what kind
//! of event it is (`event_type`), and whatever other fields its producer added.
//! [`Envelope::decode_with_meta`] returns them beside the event, as [`EnvelopeMeta`] (a
//! subscriber hands it to its handlers in [`Metadata`](crate::Metadata)): nothing of the body
//! is dropped. A `source` or `event_type` that is not a string, and every field the envelope
//! does not define, stay in [`EnvelopeMeta::extra`], a JSON map, unchanged. Encoding writes
//! the type the caller chose ([`Envelope::write_as`]); [`Envelope::write_to`] writes
//! [`EVENT_BUS_DEFAULT_TYPE`].
//!
//! This module is pure: no I/O, no clock (the receive time is an input).
//!
//! ```
//! use pubsub_core::envelope::{Envelope, Received};
//! use time::OffsetDateTime;
//!
//! let received = Received::new("resource.accessed.v2", OffsetDateTime::UNIX_EPOCH);
//! let event = Envelope::Bare.decode(br#"{"resource_id": "r-1"}"#, &received)?;
//! assert_eq!(event.routing_key(), "resource.accessed.v2");
//! assert_eq!((event.domain(), event.action(), event.version()), ("resource", "accessed", "2.0"));
//! assert_eq!(event.data()["resource_id"], "r-1");
//! assert_eq!(Envelope::Bare.encode(&event, "svc"), br#"{"resource_id":"r-1"}"#);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::str::FromStr;

use serde_json::{Map, Value};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::event::{check_word, parse_routing_key, Event, DEFAULT_VERSION};
use crate::event_type::EventType;
use crate::json;
use crate::text::{json_type, quote};
use crate::timestamp::{format_rfc3339_micros, parse_iso8601};

/// The namespace of the UUID v5 event ids derived for bare bodies:
/// `uuid5(NAMESPACE_URL, "https://github.com/pubsub-rs/pubsub/bare-event")`.
pub const BARE_ID_NAMESPACE: Uuid = Uuid::from_u128(0x7496_f2b7_5279_591d_9abe_7c54_f109_70c3);

/// The domain of the events a task message becomes: `task.<task_name>`.
pub const TASK_DOMAIN: &str = "task";

/// `event_type` written in seed 004's envelope when encoding (its `EventType.DOMAIN`).
pub const EVENT_BUS_DEFAULT_TYPE: &str = "domain";

/// The shape of an event's body on the wire; see the [module docs](self).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Envelope {
    /// Seed 000's six fields: `domain`, `action`, `data`, `event_id`, `timestamp`, `version`.
    #[default]
    Standard,
    /// Seed 002's bare model: the body is the event's `data`; the routing key says which
    /// event it is.
    Bare,
    /// Seed 004's event bus envelope: `name` (the routing key), `source`, `event_type`, `id`,
    /// `timestamp`, `data` (plus an optional `version`).
    EventBus,
    /// Seed 003's task message: `task_name` and `payload`, decoded as the event
    /// `task.<task_name>` ([`TASK_DOMAIN`]) with the payload as its data; the routing key only
    /// routes it.
    Task,
    /// Any JSON body, as seed 003's event store takes every message its queue receives: a
    /// six-field event whose `domain.action` is the routing key decodes as
    /// [`Standard`](Envelope::Standard); any other JSON value is kept with a derived event
    /// (see [`decode_any`]). A body that is not JSON is an error still. Encoding writes the
    /// six fields.
    Any,
}

/// What the transport knows about a message besides its body: what decoding takes from
/// outside the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received<'a> {
    /// The routing key the message was published with; `None` when unknown (it came through
    /// the default exchange, whose routing key is a queue name).
    pub routing_key: Option<&'a str>,
    /// The AMQP `message_id` property.
    pub message_id: Option<&'a str>,
    /// The AMQP `timestamp` property, seconds since the Unix epoch.
    pub timestamp: Option<u64>,
    /// When the message was received: a bare body's timestamp when the property is absent.
    pub received_at: OffsetDateTime,
}

impl<'a> Received<'a> {
    /// A message published with `routing_key`, received at `received_at`, with no
    /// properties.
    pub fn new(routing_key: &'a str, received_at: OffsetDateTime) -> Self {
        Received {
            routing_key: Some(routing_key),
            message_id: None,
            timestamp: None,
            received_at,
        }
    }
}

impl Envelope {
    /// The envelope's name: `standard`, `bare`, `event-bus`, `task` or `any` (what
    /// [`FromStr`] reads).
    pub fn name(self) -> &'static str {
        match self {
            Envelope::Standard => "standard",
            Envelope::Bare => "bare",
            Envelope::EventBus => "event-bus",
            Envelope::Task => "task",
            Envelope::Any => "any",
        }
    }

    /// Decodes a body in this envelope, with what the transport knows about the message.
    ///
    /// # Errors
    ///
    /// The errors of [`json::from_slice`] for a body that is not a JSON object or lacks a
    /// field; [`Error::MissingField`] `routing_key` for a bare body without one;
    /// [`Error::InvalidField`] for a routing key that is not `domain.action[.vN]` or a
    /// seed 004 `id` or `timestamp` that is not one, or a `task_name` that is not a word;
    /// [`Error::KeyMismatch`] when the routing key names another event than the body.
    pub fn decode(self, body: &[u8], received: &Received<'_>) -> Result<Event> {
        let event = match self {
            Envelope::Standard => json::from_slice_versioned(body)?,
            Envelope::Bare => return decode_bare(body, received),
            Envelope::EventBus => decode_event_bus(body)?.0,
            Envelope::Task => return decode_task(body, received),
            Envelope::Any => return decode_any(body, received),
        };
        match received.routing_key {
            Some(key) => event.with_arrival_key(key),
            None => Ok(event),
        }
    }

    /// Decodes a body in this envelope as [`decode`](Self::decode) does, and returns what the
    /// envelope carries besides the event: seed 004's `source`, `event_type` and other
    /// fields ([`EnvelopeMeta`]; empty for the other envelopes, whose bodies hold only the
    /// event).
    ///
    /// ```
    /// use pubsub_core::envelope::{Envelope, Received};
    /// use pubsub_core::EventType;
    /// use time::OffsetDateTime;
    ///
    /// let body = br#"{"id": "7c9e6679-7425-40de-944b-e07fc1f90ae7", "name": "user.registered",
    ///     "source": "accounts", "event_type": "integration", "timestamp": 1714566600,
    ///     "data": {"user_id": "U-1"}, "tenant": "acme"}"#;
    /// let received = Received::new("user.registered", OffsetDateTime::UNIX_EPOCH);
    /// let (event, meta) = Envelope::EventBus.decode_with_meta(body, &received)?;
    /// assert_eq!(event.routing_key(), "user.registered");
    /// assert_eq!(meta.source(), Some("accounts"));
    /// assert_eq!(meta.event_type(), Some(EventType::Integration));
    /// assert_eq!(meta.extra()["tenant"], "acme");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`decode`](Self::decode).
    pub fn decode_with_meta(
        self,
        body: &[u8],
        received: &Received<'_>,
    ) -> Result<(Event, EnvelopeMeta)> {
        match self {
            Envelope::EventBus => {
                let (event, meta) = decode_event_bus(body)?;
                let event = match received.routing_key {
                    Some(key) => event.with_arrival_key(key)?,
                    None => event,
                };
                Ok((event, meta))
            }
            other => Ok((other.decode(body, received)?, EnvelopeMeta::default())),
        }
    }

    /// Encodes `event` in this envelope; `source` is seed 004's `source` (the publishing
    /// service), unused by the other envelopes. A task message is
    /// `{"task_name": <action>, "payload": <data>}`.
    pub fn encode(self, event: &Event, source: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(192 + event.data().len() * 32);
        self.write_to(event, source, &mut out);
        out
    }

    /// Appends the encoding of `event` to `out`; see [`encode`](Self::encode).
    pub fn write_to(self, event: &Event, source: &str, out: &mut Vec<u8>) {
        // Writing maps with string keys to a Vec cannot fail.
        match self {
            Envelope::Standard | Envelope::Any => json::write_to(event, out),
            Envelope::Bare => {
                let _ = serde_json::to_writer(out, event.data());
            }
            Envelope::EventBus => write_event_bus(event, source, EventType::Domain, out),
            Envelope::Task => {
                let body = TaskBody {
                    task_name: event.action(),
                    payload: event.data(),
                };
                let _ = serde_json::to_writer(out, &body);
            }
        }
    }
}

impl Envelope {
    /// Encodes `event` in this envelope, as [`encode`](Self::encode) does, with seed 004's
    /// `event_type` set to `event_type` (the other envelopes have no place for it).
    ///
    /// ```
    /// use pubsub_core::envelope::Envelope;
    /// use pubsub_core::{Event, EventType};
    ///
    /// let event = Event::new("user", "registered", serde_json::json!({}))?;
    /// let body = Envelope::EventBus.encode_as(&event, "accounts", EventType::Integration);
    /// let body: serde_json::Value = serde_json::from_slice(&body)?;
    /// assert_eq!(body["event_type"], "integration");
    /// assert_eq!(body["source"], "accounts");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn encode_as(self, event: &Event, source: &str, event_type: EventType) -> Vec<u8> {
        let mut out = Vec::with_capacity(192 + event.data().len() * 32);
        self.write_as(event, source, event_type, &mut out);
        out
    }

    /// Appends the encoding of `event` to `out`; see [`encode_as`](Self::encode_as).
    pub fn write_as(self, event: &Event, source: &str, event_type: EventType, out: &mut Vec<u8>) {
        match self {
            Envelope::EventBus => write_event_bus(event, source, event_type, out),
            other => other.write_to(event, source, out),
        }
    }
}

/// Seed 004's envelope of `event`: `id`, `name`, `source`, `event_type`, `timestamp`,
/// `version`, `data`.
fn write_event_bus(event: &Event, source: &str, event_type: EventType, out: &mut Vec<u8>) {
    let mut map = Map::new();
    map.insert("id".into(), event.event_id().to_string().into());
    map.insert("name".into(), event.routing_key().into());
    map.insert("source".into(), source.into());
    map.insert("event_type".into(), event_type.as_str().into());
    map.insert(
        "timestamp".into(),
        format_rfc3339_micros(event.timestamp()).into(),
    );
    map.insert("version".into(), event.version().into());
    map.insert("data".into(), Value::Object(event.data().clone()));
    // Writing a map with string keys to a Vec cannot fail.
    let _ = serde_json::to_writer(out, &map);
}

/// What seed 004's envelope carries besides the [`Event`]: the publishing service
/// (`source`), the kind of event (`event_type`), and every other field of the body
/// (`extra`), as [`Envelope::decode_with_meta`] found them. Empty for the other envelopes.
///
/// Nothing of a body is dropped: a `source` or `event_type` that is not a string stays in
/// [`extra`](Self::extra) under its own name, and an `event_type` string that names no
/// [`EventType`] is kept as text ([`event_type_name`](Self::event_type_name)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvelopeMeta {
    source: Option<String>,
    event_type: Option<String>,
    extra: Map<String, Value>,
}

impl EnvelopeMeta {
    /// The `source` field: the service that published the event.
    pub fn source(&self) -> Option<&str> {
        self.source.as_deref()
    }

    /// The `event_type` field, when it names an [`EventType`] (ASCII case ignored).
    pub fn event_type(&self) -> Option<EventType> {
        self.event_type.as_deref().and_then(EventType::parse)
    }

    /// The `event_type` field as written, whether or not it names an [`EventType`]
    /// (a producer's own type, say).
    pub fn event_type_name(&self) -> Option<&str> {
        self.event_type.as_deref()
    }

    /// The body's other fields, by name: those the envelope does not define, and a `source`
    /// or `event_type` that is not a string. Empty when there are none.
    pub fn extra(&self) -> &Map<String, Value> {
        &self.extra
    }

    /// Whether the envelope carried nothing besides the event.
    pub fn is_empty(&self) -> bool {
        self.source.is_none() && self.event_type.is_none() && self.extra.is_empty()
    }

    /// Sets the source.
    #[must_use]
    pub fn with_source(mut self, source: Option<String>) -> Self {
        self.source = source;
        self
    }

    /// Sets the event type's text.
    #[must_use]
    pub fn with_event_type_name(mut self, event_type: Option<String>) -> Self {
        self.event_type = event_type;
        self
    }

    /// Sets the other fields.
    #[must_use]
    pub fn with_extra(mut self, extra: Map<String, Value>) -> Self {
        self.extra = extra;
        self
    }
}

impl fmt::Display for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Reads `standard`, `bare`, `event-bus`, `task` or `any` (also `seed-000`, `seed-002`,
/// `seed-004`, `seed-003`).
impl FromStr for Envelope {
    type Err = Error;

    fn from_str(s: &str) -> Result<Envelope> {
        match s.trim().to_ascii_lowercase().as_str() {
            "standard" | "seed-000" | "six-field" => Ok(Envelope::Standard),
            "bare" | "seed-002" => Ok(Envelope::Bare),
            "event-bus" | "eventbus" | "seed-004" => Ok(Envelope::EventBus),
            "task" | "seed-003" => Ok(Envelope::Task),
            "any" => Ok(Envelope::Any),
            _ => Err(Error::invalid(
                "envelope",
                s,
                "known envelopes: standard, bare, event-bus, task, any",
            )),
        }
    }
}

/// The body as a JSON object.
fn object(body: &[u8]) -> Result<Map<String, Value>> {
    let text = std::str::from_utf8(body).map_err(|e| Error::NotUtf8 {
        valid_up_to: e.valid_up_to(),
    })?;
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(Error::NotAnObject {
            found: json_type(&other),
        }),
        Err(e) => Err(Error::InvalidJson {
            message: e.to_string(),
        }),
    }
}

fn decode_bare(body: &[u8], received: &Received<'_>) -> Result<Event> {
    let key = received.routing_key.ok_or(Error::MissingField {
        field: "routing_key",
    })?;
    let data = object(body)?;
    let (domain, action, key_version) = parse_routing_key(key)?;
    let event_id = derived_id(received.message_id, key, body);
    let timestamp = property_timestamp(received);
    let version = default_version(key_version);
    Event::from_key_parts(
        domain,
        action,
        key_version,
        data,
        event_id,
        timestamp,
        &version,
    )
}

/// The id of a message whose body has none: its `message_id` if a UUID, else a UUID v5 of
/// the `message_id`, or without one of the routing key, a zero byte and the body.
fn derived_id(message_id: Option<&str>, key: &str, body: &[u8]) -> Uuid {
    match message_id {
        Some(id) => {
            Uuid::try_parse(id).unwrap_or_else(|_| Uuid::new_v5(&BARE_ID_NAMESPACE, id.as_bytes()))
        }
        None => {
            let mut name = Vec::with_capacity(key.len() + 1 + body.len());
            name.extend_from_slice(key.as_bytes());
            name.push(0);
            name.extend_from_slice(body);
            Uuid::new_v5(&BARE_ID_NAMESPACE, &name)
        }
    }
}

/// The AMQP timestamp property, else the receive time.
fn property_timestamp(received: &Received<'_>) -> OffsetDateTime {
    received
        .timestamp
        .and_then(|s| i64::try_from(s).ok())
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .unwrap_or(received.received_at)
}

/// Seed 003's task message as it is written, its fields in the seed's order.
#[derive(serde::Serialize)]
struct TaskBody<'a> {
    task_name: &'a str,
    payload: &'a Map<String, Value>,
}

fn decode_task(body: &[u8], received: &Received<'_>) -> Result<Event> {
    let mut map = object(body)?;
    let name = match map.remove("task_name") {
        Some(Value::String(name)) => name,
        Some(other) => return Err(wrong_type("task_name", "a string", &other)),
        None => return Err(Error::MissingField { field: "task_name" }),
    };
    check_word("task_name", &name)?;
    let data = match map.remove("payload") {
        Some(Value::Object(data)) => data,
        Some(Value::Null) | None => Map::new(),
        Some(other) => {
            return Err(Error::invalid(
                "payload",
                json_type(&other),
                "a task's payload must be a JSON object",
            ))
        }
    };
    let event_id = derived_id(
        received.message_id,
        received.routing_key.unwrap_or_default(),
        body,
    );
    let timestamp = property_timestamp(received);
    Event::from_key_parts(
        TASK_DOMAIN,
        &name,
        None,
        data,
        event_id,
        timestamp,
        DEFAULT_VERSION,
    )
}

/// Seed 004's envelope: the event, and what is left of the body ([`EnvelopeMeta`]).
fn decode_event_bus(body: &[u8]) -> Result<(Event, EnvelopeMeta)> {
    let mut map = object(body)?;
    let name = match map.remove("name") {
        Some(Value::String(name)) => name,
        Some(other) => return Err(wrong_type("name", "a string", &other)),
        None => return Err(Error::MissingField { field: "name" }),
    };
    let (domain, action, key_version) = parse_routing_key(&name)?;
    let data = match map.remove("data") {
        Some(Value::Object(data)) => data,
        Some(Value::Null) | None => return Err(Error::MissingField { field: "data" }),
        Some(other) => {
            return Err(Error::invalid(
                "data",
                json_type(&other),
                "data must be a JSON object",
            ))
        }
    };
    let event_id = match map.remove("id").or_else(|| map.remove("event_id")) {
        Some(Value::String(id)) => {
            Uuid::try_parse(&id).map_err(|_| Error::invalid("event_id", &id, "not a UUID"))?
        }
        Some(other) => return Err(wrong_type("id", "a UUID string", &other)),
        None => return Err(Error::MissingField { field: "id" }),
    };
    let timestamp = match map.remove("timestamp") {
        Some(Value::String(text)) => parse_iso8601(&text)
            .ok_or_else(|| Error::invalid("timestamp", &text, "not an ISO 8601 date-time"))?,
        Some(Value::Number(n)) => n
            .as_f64()
            .filter(|s| s.is_finite() && *s >= 0.0 && *s < 253_402_300_800.0)
            .and_then(|s| {
                // Whole microseconds: what the wire format keeps.
                let micros = (s * 1e6).round() as i128;
                OffsetDateTime::from_unix_timestamp_nanos(micros * 1_000).ok()
            })
            .ok_or_else(|| {
                Error::invalid(
                    "timestamp",
                    &n.to_string(),
                    "not a time in seconds since the epoch",
                )
            })?,
        Some(other) => return Err(wrong_type("timestamp", "a string or a number", &other)),
        None => return Err(Error::MissingField { field: "timestamp" }),
    };
    let version = match map.remove("version") {
        Some(Value::String(version)) => version,
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Null) | None => default_version(key_version),
        Some(other) => {
            // Kept, not dropped: the event gets the default version.
            map.insert("version".into(), other);
            default_version(key_version)
        }
    };
    let event = Event::from_key_parts(
        domain,
        action,
        key_version,
        data,
        event_id,
        timestamp,
        &version,
    )?;
    let mut text = |field: &str| match map.remove(field) {
        Some(Value::String(text)) => Some(text),
        Some(Value::Null) | None => None,
        Some(other) => {
            map.insert(field.to_owned(), other);
            None
        }
    };
    let source = text("source");
    let event_type = text("event_type");
    let meta = EnvelopeMeta {
        source,
        event_type,
        extra: map,
    };
    Ok((event, meta))
}

fn wrong_type(field: &str, expected: &str, found: &Value) -> Error {
    Error::WrongType {
        field: field.to_owned(),
        message: format!("expected {expected}, found {}", quote(json_type(found))),
    }
}

/// The version of an event whose envelope gives none: `N.0` for a routing key `….vN`, else
/// the default.
fn default_version(key_version: Option<u32>) -> String {
    match key_version {
        Some(n) => format!("{n}.0"),
        None => DEFAULT_VERSION.to_owned(),
    }
}

/// The domain of an event [`Envelope::Any`] derives from a routing key with no word (a
/// message whose key is empty or unknown).
pub const ANY_DEFAULT_DOMAIN: &str = "message";

/// The action of an event [`Envelope::Any`] derives from a routing key of one word.
pub const ANY_DEFAULT_ACTION: &str = "received";

/// The data field that holds a JSON body that is not an object, in an event
/// [`Envelope::Any`] derives (`[1, 2]` becomes the data `{"body": [1, 2]}`).
pub const ANY_BODY_FIELD: &str = "body";

/// Decodes any JSON body, for a store that keeps every message it receives.
///
/// - A six-field event ([`Standard`](Envelope::Standard)) whose `domain.action` is the
///   routing key (or the key without its version word) is that event, exactly as `Standard`
///   decodes it.
/// - Any other JSON value becomes an event whose data is the body when it is an object, else
///   `{"body": <value>}` ([`ANY_BODY_FIELD`]). Its domain and action come from the routing key:
///   a key of the form `domain.action[.vN]` gives them as for a bare body; any other key
///   (seed 003's `routing.event.create.user`) gives its first word as the domain and the
///   rest of its words, joined by `-`, as the action (`routing` and `event-create-user`), each
///   character that cannot be in a word replaced by `_`, empty words dropped; a key of one
///   word has the action [`ANY_DEFAULT_ACTION`], an empty or unknown key the domain
///   [`ANY_DEFAULT_DOMAIN`]. Its id is the `message_id` (a UUID, or a UUID v5 of it), else a
///   UUID v5 of the key and the body, as for a bare body, so that a redelivery is the same
///   event; its timestamp the timestamp property, else the receive time; its version
///   `1.0` (or `N.0` for a key `….vN`).
///
/// The event's routing key is thus not always the key the message arrived with: whoever keeps
/// the message (the event store) keeps that key beside it.
///
/// # Errors
///
/// [`Error::NotUtf8`] or [`Error::InvalidJson`] for a body that is not JSON.
///
/// ```
/// use pubsub_core::envelope::{Envelope, Received};
/// use time::OffsetDateTime;
///
/// let received = Received::new("routing.event.create.user", OffsetDateTime::UNIX_EPOCH);
/// let event = Envelope::Any.decode(br#"{"id": 1, "name": "ada"}"#, &received)?;
/// assert_eq!((event.domain(), event.action()), ("routing", "event-create-user"));
/// assert_eq!(event.data()["name"], "ada");
/// let again = Envelope::Any.decode(br#"{"id": 1, "name": "ada"}"#, &received)?;
/// assert_eq!(again.event_id(), event.event_id()); // a redelivery is the same event
/// assert!(Envelope::Any.decode(b"not json", &received).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn decode_any(body: &[u8], received: &Received<'_>) -> Result<Event> {
    if let Ok(event) = json::from_slice_versioned(body) {
        let arrived = match received.routing_key {
            Some(key) => event.with_arrival_key(key),
            None => Ok(event),
        };
        if let Ok(event) = arrived {
            return Ok(event);
        }
    }
    let text = std::str::from_utf8(body).map_err(|e| Error::NotUtf8 {
        valid_up_to: e.valid_up_to(),
    })?;
    let value: Value = serde_json::from_str(text).map_err(|e| Error::InvalidJson {
        message: e.to_string(),
    })?;
    let data = match value {
        Value::Object(map) => map,
        other => {
            let mut map = Map::new();
            map.insert(ANY_BODY_FIELD.to_owned(), other);
            map
        }
    };
    let key = received.routing_key.unwrap_or_default();
    let (domain, action, key_version) = match parse_routing_key(key) {
        Ok((domain, action, key_version)) => (domain.to_owned(), action.to_owned(), key_version),
        Err(_) => {
            let (domain, action) = any_key_words(key);
            (domain, action, None)
        }
    };
    Event::from_key_parts(
        &domain,
        &action,
        key_version,
        data,
        derived_id(received.message_id, key, body),
        property_timestamp(received),
        &default_version(key_version),
    )
}

/// The domain and action [`decode_any`] derives from a routing key that is not
/// `domain.action[.vN]`; together at most 255 bytes.
fn any_key_words(key: &str) -> (String, String) {
    let mut words = key.split('.').filter(|w| !w.is_empty()).map(|w| {
        w.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect::<String>()
    });
    let mut domain = words
        .next()
        .unwrap_or_else(|| ANY_DEFAULT_DOMAIN.to_owned());
    let rest: Vec<String> = words.collect();
    let mut action = if rest.is_empty() {
        ANY_DEFAULT_ACTION.to_owned()
    } else {
        rest.join("-")
    };
    // Both are ASCII now: any byte is a char boundary.
    domain.truncate(127);
    action.truncate(255 - 1 - domain.len());
    (domain, action)
}

#[cfg(test)]
mod tests;
