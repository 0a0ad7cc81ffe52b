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
    /// The envelope's name: `standard`, `bare`, `event-bus` or `task` (what [`FromStr`]
    /// reads).
    pub fn name(self) -> &'static str {
        match self {
            Envelope::Standard => "standard",
            Envelope::Bare => "bare",
            Envelope::EventBus => "event-bus",
            Envelope::Task => "task",
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
            Envelope::EventBus => decode_event_bus(body)?,
            Envelope::Task => return decode_task(body, received),
        };
        match received.routing_key {
            Some(key) => event.with_arrival_key(key),
            None => Ok(event),
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
            Envelope::Standard => json::write_to(event, out),
            Envelope::Bare => {
                let _ = serde_json::to_writer(out, event.data());
            }
            Envelope::EventBus => {
                let mut map = Map::new();
                map.insert("id".into(), event.event_id().to_string().into());
                map.insert("name".into(), event.routing_key().into());
                map.insert("source".into(), source.into());
                map.insert("event_type".into(), EVENT_BUS_DEFAULT_TYPE.into());
                map.insert(
                    "timestamp".into(),
                    format_rfc3339_micros(event.timestamp()).into(),
                );
                map.insert("version".into(), event.version().into());
                map.insert("data".into(), Value::Object(event.data().clone()));
                let _ = serde_json::to_writer(out, &map);
            }
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

impl fmt::Display for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Reads `standard`, `bare`, `event-bus` or `task` (also `seed-000`, `seed-002`, `seed-004`,
/// `seed-003`).
impl FromStr for Envelope {
    type Err = Error;

    fn from_str(s: &str) -> Result<Envelope> {
        match s.trim().to_ascii_lowercase().as_str() {
            "standard" | "seed-000" | "six-field" => Ok(Envelope::Standard),
            "bare" | "seed-002" => Ok(Envelope::Bare),
            "event-bus" | "eventbus" | "seed-004" => Ok(Envelope::EventBus),
            "task" | "seed-003" => Ok(Envelope::Task),
            _ => Err(Error::invalid(
                "envelope",
                s,
                "known envelopes: standard, bare, event-bus, task",
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

fn decode_event_bus(body: &[u8]) -> Result<Event> {
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
        _ => default_version(key_version),
    };
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

#[cfg(test)]
mod tests {
    use serde_json::json;
    use time::macros::datetime;

    use super::*;

    const ID: &str = "7c9e6679-7425-40de-944b-e07fc1f90ae7";
    const NOW: OffsetDateTime = datetime!(2024-05-01 12:00 UTC);

    fn received(key: Option<&'static str>) -> Received<'static> {
        Received {
            routing_key: key,
            message_id: None,
            timestamp: None,
            received_at: NOW,
        }
    }

    #[test]
    fn namespace_is_the_documented_uuid5() {
        let url = "https://github.com/pubsub-rs/pubsub/bare-event";
        assert_eq!(
            Uuid::new_v5(&Uuid::NAMESPACE_URL, url.as_bytes()),
            BARE_ID_NAMESPACE
        );
    }

    /// One decode: (envelope, body, routing key, message id, timestamp property) gives
    /// (routing key, version, event id, timestamp) or an error containing a word.
    #[allow(clippy::type_complexity)]
    fn check(
        envelope: Envelope,
        body: Value,
        key: Option<&'static str>,
        props: (Option<&str>, Option<u64>),
        expected: std::result::Result<(&str, &str, Option<&str>, Option<OffsetDateTime>), &str>,
    ) {
        let bytes = serde_json::to_vec(&body).unwrap();
        let received = Received {
            message_id: props.0,
            timestamp: props.1,
            ..received(key)
        };
        let got = envelope.decode(&bytes, &received);
        match (got, expected) {
            (Ok(event), Ok((routing_key, version, id, ts))) => {
                assert_eq!(event.routing_key(), routing_key, "{body}");
                assert_eq!(event.version(), version, "{body}");
                if let Some(id) = id {
                    assert_eq!(event.event_id().to_string(), id, "{body}");
                }
                if let Some(ts) = ts {
                    assert_eq!(event.timestamp(), ts, "{body}");
                }
            }
            (Err(e), Err(word)) => assert!(e.to_string().contains(word), "{e} lacks {word}"),
            (got, want) => panic!("{body}: got {got:?}, wanted {want:?}"),
        }
    }

    fn standard(domain: &str, action: &str) -> Value {
        json!({"domain": domain, "action": action, "data": {"x": 1}, "event_id": ID,
               "timestamp": "2024-05-01T12:30:00", "version": "1.0"})
    }

    #[test]
    fn standard_envelope_takes_the_arrival_key() {
        use Envelope::Standard as S;
        let none = (None, None);
        check(
            S,
            standard("order", "created"),
            Some("order.created"),
            none,
            Ok(("order.created", "1.0", Some(ID), None)),
        );
        check(
            S,
            standard("order", "created"),
            Some("order.created.v2"),
            none,
            Ok(("order.created.v2", "1.0", Some(ID), None)),
        );
        check(
            S,
            standard("order", "created"),
            None,
            none,
            Ok(("order.created", "1.0", Some(ID), None)),
        );
        check(
            S,
            standard("order", "created"),
            Some("order.paid"),
            none,
            Err("disagrees"),
        );
        check(
            S,
            standard("order", "created"),
            Some("order.created.final"),
            none,
            Err("disagrees"),
        );
        check(
            S,
            json!({"resource_id": "r"}),
            Some("order.created"),
            none,
            Err("missing field `domain`"),
        );
    }

    #[test]
    fn bare_envelope_takes_everything_but_data_from_the_message() {
        use Envelope::Bare as B;
        let body = || json!({"resource_id": "r-1", "accessed_at": "2024-05-01T10:00:00Z"});
        check(
            B,
            body(),
            Some("resource.accessed"),
            (Some(ID), Some(1_714_557_600)),
            Ok((
                "resource.accessed",
                "1.0",
                Some(ID),
                Some(datetime!(2024-05-01 10:00 UTC)),
            )),
        );
        check(
            B,
            body(),
            Some("resource.accessed.v2"),
            (None, None),
            Ok(("resource.accessed.v2", "2.0", None, Some(NOW))),
        );
        check(B, body(), None, (None, None), Err("routing_key"));
        check(
            B,
            body(),
            Some("resource"),
            (None, None),
            Err("routing key"),
        );
        check(B, body(), Some("a.b.c"), (None, None), Err("routing key"));
        check(B, json!([1]), Some("a.b"), (None, None), Err("array"));
        check(B, json!("text"), Some("a.b"), (None, None), Err("string"));
    }

    #[test]
    fn bare_event_ids_are_deterministic() {
        let id = |key: &'static str, body: &[u8], message_id: Option<&str>| {
            let received = Received {
                message_id,
                ..received(Some(key))
            };
            Envelope::Bare.decode(body, &received).unwrap().event_id()
        };
        let derived = id("a.b", b"{}", None);
        assert_eq!(derived.get_version_num(), 5);
        assert_eq!(derived, id("a.b", b"{}", None));
        assert_ne!(derived, id("a.c", b"{}", None));
        assert_ne!(derived, id("a.b", b"{ }", None));
        let mut name = b"a.b".to_vec();
        name.push(0);
        name.extend_from_slice(b"{}");
        assert_eq!(derived, Uuid::new_v5(&BARE_ID_NAMESPACE, &name));
        assert_eq!(
            id("a.b", b"{}", Some("msg-17")),
            Uuid::new_v5(&BARE_ID_NAMESPACE, b"msg-17")
        );
        assert_eq!(id("a.b", b"{}", Some(ID)).to_string(), ID);
    }

    fn bus(fields: Value) -> Value {
        let mut base = json!({"id": ID, "name": "user.registered", "source": "accounts",
                              "event_type": "domain", "timestamp": "2024-05-01T12:30:00+00:00",
                              "data": {"user_id": "U-1"}});
        for (k, v) in fields.as_object().unwrap() {
            if v.is_null() {
                base.as_object_mut().unwrap().remove(k);
            } else {
                base[k] = v.clone();
            }
        }
        base
    }

    #[test]
    fn event_bus_envelope() {
        use Envelope::EventBus as E;
        let none = (None, None);
        let key = Some("user.registered");
        let at = datetime!(2024-05-01 12:30 UTC);
        check(
            E,
            bus(json!({})),
            key,
            none,
            Ok(("user.registered", "1.0", Some(ID), Some(at))),
        );
        check(
            E,
            bus(json!({"timestamp": 1_714_566_600.5})),
            key,
            none,
            Ok((
                "user.registered",
                "1.0",
                None,
                Some(datetime!(2024-05-01 12:30:00.5 UTC)),
            )),
        );
        check(
            E,
            bus(json!({"version": "2.1"})),
            Some("user.registered.v2"),
            none,
            Ok(("user.registered.v2", "2.1", None, None)),
        );
        check(
            E,
            bus(json!({"name": "user.registered.v2"})),
            Some("user.registered.v2"),
            none,
            Ok(("user.registered.v2", "2.0", None, None)),
        );
        check(
            E,
            bus(json!({"id": null, "event_id": ID})),
            key,
            none,
            Ok(("user.registered", "1.0", Some(ID), None)),
        );
        check(
            E,
            bus(json!({})),
            Some("user.deleted"),
            none,
            Err("disagrees"),
        );
        check(E, bus(json!({"name": null})), key, none, Err("`name`"));
        check(E, bus(json!({"name": 3})), key, none, Err("name"));
        check(E, bus(json!({"id": "x"})), key, none, Err("not a UUID"));
        check(E, bus(json!({"id": null})), key, none, Err("`id`"));
        check(E, bus(json!({"data": [1]})), key, none, Err("data"));
        check(
            E,
            bus(json!({"timestamp": "soon"})),
            key,
            none,
            Err("timestamp"),
        );
        check(
            E,
            bus(json!({"timestamp": -5})),
            key,
            none,
            Err("timestamp"),
        );
        check(
            E,
            bus(json!({"timestamp": 1e300})),
            key,
            none,
            Err("timestamp"),
        );
    }

    #[test]
    fn every_envelope_round_trips() {
        let event = Event::builder("user", "registered")
            .key_version(2)
            .data(json!({"user_id": "U-1"}))
            .event_id(Uuid::parse_str(ID).unwrap())
            .timestamp(datetime!(2024-05-01 12:30:00.25 UTC))
            .build()
            .unwrap();
        for envelope in [Envelope::Standard, Envelope::Bare, Envelope::EventBus] {
            let bytes = envelope.encode(&event, "accounts");
            let received = Received {
                message_id: Some(ID),
                timestamp: None,
                routing_key: Some("user.registered.v2"),
                received_at: datetime!(2024-05-01 12:30:00.25 UTC),
            };
            let back = envelope.decode(&bytes, &received).unwrap();
            assert_eq!(back, event, "{envelope}");
            assert_eq!(envelope.name().parse::<Envelope>().unwrap(), envelope);
        }
        let bus: Value =
            serde_json::from_slice(&Envelope::EventBus.encode(&event, "accounts")).unwrap();
        assert_eq!(bus["name"], "user.registered.v2");
        assert_eq!(bus["source"], "accounts");
        assert_eq!(bus["event_type"], "domain");
        assert!("xml".parse::<Envelope>().is_err());
    }

    #[test]
    fn never_panics_on_arbitrary_bytes() {
        let bodies: [&[u8]; 6] = [
            b"",
            b"\xff",
            b"[",
            b"null",
            b"{\"name\":{}}",
            b"{\"timestamp\":1e999}",
        ];
        for body in bodies {
            for envelope in [
                Envelope::Standard,
                Envelope::Bare,
                Envelope::EventBus,
                Envelope::Task,
            ] {
                let result = envelope.decode(body, &received(Some("a.b")));
                // Only a bare body may be any JSON object.
                assert!(result.is_err() || envelope == Envelope::Bare, "{body:?}");
            }
        }
    }

    #[test]
    fn task_envelope() {
        use Envelope::Task as T;
        let key = Some("routing.task.send.report");
        let none = (None, None);
        let task = |name: Value, payload: Value| json!({"task_name": name, "payload": payload});
        check(
            T,
            task(json!("send-report"), json!({"n": 1})),
            key,
            (Some(ID), Some(1_714_566_600)),
            Ok((
                "task.send-report",
                "1.0",
                Some(ID),
                Some(datetime!(2024-05-01 12:30 UTC)),
            )),
        );
        // The routing key only routes: any key, or none, is fine.
        check(
            T,
            task(json!("process_upload"), json!({})),
            Some("x"),
            none,
            Ok(("task.process_upload", "1.0", None, Some(NOW))),
        );
        check(
            T,
            task(json!("a"), json!({})),
            None,
            none,
            Ok(("task.a", "1.0", None, None)),
        );
        check(
            T,
            json!({"task_name": "a"}),
            key,
            none,
            Ok(("task.a", "1.0", None, None)),
        );
        check(
            T,
            task(json!("a"), json!(null)),
            key,
            none,
            Ok(("task.a", "1.0", None, None)),
        );
        check(T, json!({"payload": {}}), key, none, Err("`task_name`"));
        check(T, task(json!(7), json!({})), key, none, Err("task_name"));
        check(T, task(json!(""), json!({})), key, none, Err("task_name"));
        check(
            T,
            task(json!("pkg.module"), json!({})),
            key,
            none,
            Err("task_name"),
        );
        check(T, task(json!("a"), json!([1])), key, none, Err("payload"));
        check(T, json!([]), key, none, Err("array"));
        let body = serde_json::to_vec(&task(json!("a"), json!({"x": 1}))).unwrap();
        let event = T.decode(&body, &received(key)).unwrap();
        assert_eq!(event.data()["x"], 1);
        // Without a message id, the id is the bare rule's: a redelivery gets the same one.
        let mut name = b"routing.task.send.report".to_vec();
        name.push(0);
        name.extend_from_slice(&body);
        assert_eq!(event.event_id(), Uuid::new_v5(&BARE_ID_NAMESPACE, &name));
        assert_eq!(
            T.decode(&body, &received(key)).unwrap().event_id(),
            event.event_id()
        );
        assert_eq!("seed-003".parse::<Envelope>().unwrap(), T);
    }

    #[test]
    fn task_envelope_round_trips() {
        let event = Event::builder(TASK_DOMAIN, "send-report")
            .data(json!({"to": "ops"}))
            .event_id(Uuid::parse_str(ID).unwrap())
            .timestamp(datetime!(2024-05-01 12:30 UTC))
            .build()
            .unwrap();
        let bytes = Envelope::Task.encode(&event, "unused");
        assert_eq!(
            bytes,
            br#"{"task_name":"send-report","payload":{"to":"ops"}}"#
        );
        let received = Received {
            message_id: Some(ID),
            timestamp: Some(1_714_566_600),
            routing_key: Some("routing.task.send.report"),
            received_at: NOW,
        };
        assert_eq!(Envelope::Task.decode(&bytes, &received).unwrap(), event);
    }
}
