//! The JSON wire format: [`Event`] to and from bytes.
//!
//! The body is a JSON object with exactly the six fields of the original design, under the
//! same names, so that Rust and Python services can share one exchange:
//!
//! ```json
//! {"domain":"order","action":"created","data":{"order_id":"ORD-1"},
//!  "event_id":"7c9e6679-7425-40de-944b-e07fc1f90ae7",
//!  "timestamp":"2024-05-01T12:30:00.123456+00:00","version":"1.0"}
//! ```
//!
//! Decoding is liberal where the Python side is loose: timestamps with or without an offset
//! (none means UTC) and with 0 to 9 fractional digits, unknown extra fields ignored. It is strict
//! where it matters, and says what is wrong: a body that is not UTF-8, not JSON, not an object,
//! nested past serde_json's recursion limit, with a field missing or of the wrong type, an
//! `event_id` that is not a UUID or `data` that is not an object is an [`Error`]. It never
//! panics, whatever the bytes.
//!
//! ```
//! use pubsub_core::{json, Event};
//! use serde_json::json;
//!
//! let event = Event::new("order", "created", json!({ "order_id": "ORD-1" }))?;
//! let bytes = json::to_vec(&event);
//! assert_eq!(json::from_slice(&bytes)?, event);
//!
//! let python = br#"{"domain": "user", "action": "registered", "data": {},
//!     "event_id": "7c9e6679-7425-40de-944b-e07fc1f90ae7",
//!     "timestamp": "2024-05-01T12:30:00.123456", "version": "1.0"}"#;
//! assert_eq!(json::from_slice(python)?.routing_key(), "user.registered");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::borrow::Cow;

use serde::de::{self, Deserialize, Deserializer};
use serde::ser::{Serialize, SerializeStruct, Serializer};
use serde_json::Value;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::event::{parse_key_version, Event};
use crate::text::json_type;
use crate::timestamp::{format_rfc3339_micros, parse_iso8601};

/// Content type of an encoded event.
pub const CONTENT_TYPE: &str = "application/json";

/// Encodes `event` as a JSON object with the six wire fields.
pub fn to_vec(event: &Event) -> Vec<u8> {
    let mut out = Vec::with_capacity(192 + event.data().len() * 32);
    write_to(event, &mut out);
    out
}

/// Appends the JSON encoding of `event` to `out`, so a caller can reuse one buffer.
pub fn write_to(event: &Event, out: &mut Vec<u8>) {
    // Serializing an Event cannot fail: its data is a map with string keys, and writing to a
    // Vec does no I/O. Ignoring the result keeps the signature infallible.
    let _ = serde_json::to_writer(out, event);
}

/// Decodes an event from its JSON encoding.
///
/// # Errors
///
/// [`Error::NotUtf8`], [`Error::InvalidJson`] (syntax, early end, nesting too deep),
/// [`Error::NotAnObject`], [`Error::MissingField`], [`Error::WrongType`] naming the field, and
/// [`Error::InvalidField`] for an `event_id` that is not a UUID, a timestamp that is not
/// ISO 8601, `data` that is not an object, or a `domain`/`action` that is not a valid word.
pub fn from_slice(bytes: &[u8]) -> Result<Event> {
    let text = std::str::from_utf8(bytes).map_err(|e| Error::NotUtf8 {
        valid_up_to: e.valid_up_to(),
    })?;
    from_str(text)
}

/// Decodes an event from a JSON string; see [`from_slice`].
///
/// # Errors
///
/// As [`from_slice`], except that a `&str` is always UTF-8.
pub fn from_str(text: &str) -> Result<Event> {
    decode_str(text, false)
}

/// [`from_slice`], also accepting an `action` that ends in a version word
/// (`"action": "created.v2"`): what a Python service of seed 000 writes to publish under the
/// versioned routing key `order.created.v2`, since its routing key is `domain.action`. The
/// event is then `order.created` with key version 2. Used by the standard
/// [`Envelope`](crate::envelope::Envelope).
pub(crate) fn from_slice_versioned(bytes: &[u8]) -> Result<Event> {
    let text = std::str::from_utf8(bytes).map_err(|e| Error::NotUtf8 {
        valid_up_to: e.valid_up_to(),
    })?;
    decode_str(text, true)
}

fn decode_str(text: &str, versioned_action: bool) -> Result<Event> {
    // A struct deserializer also accepts a JSON array (fields in order); the wire format is an
    // object only, so anything else is classified here.
    if !text.trim_start().starts_with('{') {
        return Err(match serde_json::from_str::<Value>(text) {
            Ok(value) => Error::NotAnObject {
                found: json_type(&value),
            },
            Err(e) => Error::InvalidJson {
                message: e.to_string(),
            },
        });
    }
    // The fast path: no path tracking. Only when decoding fails is the body decoded again,
    // tracking the path, to name the field in the error.
    match serde_json::from_str::<Wire<'_>>(text) {
        Ok(wire) => wire.into_event(versioned_action),
        Err(_) => Err(path_error(text)),
    }
}

/// Decodes `text` again with path tracking, for an error that names the field.
fn path_error(text: &str) -> Error {
    let mut de = serde_json::Deserializer::from_str(text);
    match serde_path_to_error::deserialize::<_, Wire<'_>>(&mut de) {
        Err(e) => {
            let path = e.path().to_string();
            map_json_error(e.into_inner(), path)
        }
        Ok(_) => match de.end() {
            Err(e) => map_json_error(e, String::new()),
            // Unreachable in practice: the fast path failed on the same text.
            Ok(()) => Error::InvalidJson {
                message: "the event body could not be decoded".to_owned(),
            },
        },
    }
}

fn map_json_error(e: serde_json::Error, path: String) -> Error {
    match e.classify() {
        serde_json::error::Category::Data if !path.is_empty() && path != "." => Error::WrongType {
            field: path,
            message: e.to_string(),
        },
        _ => Error::InvalidJson {
            message: e.to_string(),
        },
    }
}

/// The body as it arrives: every field optional so that a missing one gets a precise error.
#[derive(serde::Deserialize)]
struct Wire<'a> {
    #[serde(borrow)]
    domain: Option<Cow<'a, str>>,
    #[serde(borrow)]
    action: Option<Cow<'a, str>>,
    data: Option<Value>,
    #[serde(borrow)]
    event_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    timestamp: Option<Cow<'a, str>>,
    #[serde(borrow)]
    version: Option<Cow<'a, str>>,
}

impl Wire<'_> {
    fn into_event(self, versioned_action: bool) -> Result<Event> {
        let domain = self.domain.ok_or(Error::MissingField { field: "domain" })?;
        let action = self.action.ok_or(Error::MissingField { field: "action" })?;
        let data = match self.data.ok_or(Error::MissingField { field: "data" })? {
            Value::Object(map) => map,
            other => {
                return Err(Error::invalid(
                    "data",
                    json_type(&other),
                    "data must be a JSON object",
                ))
            }
        };
        let event_id = self
            .event_id
            .ok_or(Error::MissingField { field: "event_id" })?;
        let event_id = Uuid::try_parse(&event_id)
            .map_err(|_| Error::invalid("event_id", &event_id, "not a UUID"))?;
        let timestamp = self
            .timestamp
            .ok_or(Error::MissingField { field: "timestamp" })?;
        let timestamp = parse_iso8601(&timestamp).ok_or_else(|| {
            Error::invalid(
                "timestamp",
                &timestamp,
                "not an ISO 8601 date-time such as 2024-05-01T12:30:00.123456+00:00",
            )
        })?;
        let version = self
            .version
            .ok_or(Error::MissingField { field: "version" })?;
        if versioned_action {
            if let Some((action, n)) = action
                .split_once('.')
                .and_then(|(action, word)| Some((action, parse_key_version(word)?)))
            {
                return Event::from_key_parts(
                    &domain,
                    action,
                    Some(n),
                    data,
                    event_id,
                    timestamp,
                    &version,
                );
            }
        }
        Event::from_parts(&domain, &action, data, event_id, timestamp, &version)
    }
}

/// Serializes the six wire fields in the order the Python design writes them.
impl Serialize for Event {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut id = Uuid::encode_buffer();
        let id = self.event_id().hyphenated().encode_lower(&mut id);
        let mut s = serializer.serialize_struct("Event", 6)?;
        s.serialize_field("domain", self.domain())?;
        s.serialize_field("action", self.action())?;
        s.serialize_field("data", self.data())?;
        s.serialize_field("event_id", &*id)?;
        s.serialize_field("timestamp", &format_rfc3339_micros(self.timestamp()))?;
        s.serialize_field("version", self.version())?;
        s.end()
    }
}

/// Deserializes the wire form with the same validation as [`from_slice`].
impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Event, D::Error> {
        Wire::deserialize(deserializer)?
            .into_event(false)
            .map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use time::macros::datetime;

    use super::*;

    const ID: &str = "7c9e6679-7425-40de-944b-e07fc1f90ae7";

    fn body(fields: Value) -> Vec<u8> {
        serde_json::to_vec(&fields).unwrap()
    }

    fn valid() -> Value {
        json!({
            "domain": "order", "action": "created", "data": {"order_id": "ORD-1"},
            "event_id": ID, "timestamp": "2024-05-01T12:30:00.123456", "version": "1.0"
        })
    }

    fn without(field: &str) -> Value {
        let mut v = valid();
        v.as_object_mut().unwrap().remove(field);
        v
    }

    fn with(field: &str, value: Value) -> Value {
        let mut v = valid();
        v[field] = value;
        v
    }

    #[test]
    fn encodes_the_six_fields_with_the_python_names_in_order() {
        let event = Event::builder("order", "created")
            .data(json!({"order_id": "ORD-1"}))
            .event_id(Uuid::parse_str(ID).unwrap())
            .timestamp(datetime!(2024-05-01 12:30:00.123456 UTC))
            .build()
            .unwrap();
        let text = String::from_utf8(to_vec(&event)).unwrap();
        assert_eq!(
            text,
            r#"{"domain":"order","action":"created","data":{"order_id":"ORD-1"},"event_id":"7c9e6679-7425-40de-944b-e07fc1f90ae7","timestamp":"2024-05-01T12:30:00.123456+00:00","version":"1.0"}"#
        );
    }

    #[test]
    fn round_trips() {
        let event = Event::new("user", "registered", json!({"n": [1, 2, {"x": null}]})).unwrap();
        assert_eq!(from_slice(&to_vec(&event)).unwrap(), event);
    }

    #[test]
    fn decodes_what_python_writes() {
        let python = br#"{"domain": "order", "action": "paid", "data": {"amount": 99.99}, "event_id": "7c9e6679-7425-40de-944b-e07fc1f90ae7", "timestamp": "2024-05-01T12:30:00.123456", "version": "1.0"}"#;
        let event = from_slice(python).unwrap();
        assert_eq!(event.routing_key(), "order.paid");
        assert_eq!(event.timestamp(), datetime!(2024-05-01 12:30:00.123456 UTC));
        assert_eq!(event.data()["amount"], 99.99);
    }

    #[test]
    fn ignores_unknown_fields() {
        let event = from_slice(&body(with("trace", json!("t-1")))).unwrap();
        assert_eq!(event.routing_key(), "order.created");
    }

    fn check_error(input: &[u8], expected: impl Fn(&Error) -> bool, mention: &str) {
        let err = from_slice(input).expect_err("must not decode");
        assert!(
            expected(&err),
            "input {:?}: got {err:?}",
            String::from_utf8_lossy(input)
        );
        let text = err.to_string();
        assert!(
            text.contains(mention),
            "{text:?} should mention {mention:?}"
        );
    }

    #[test]
    fn rejects_malformed_bodies_with_a_precise_error() {
        use Error as E;
        check_error(
            b"",
            |e| matches!(e, E::NotAnObject { .. } | E::InvalidJson { .. }),
            "JSON",
        );
        check_error(
            b"\xff\xfe{}",
            |e| matches!(e, E::NotUtf8 { valid_up_to: 0 }),
            "UTF-8",
        );
        check_error(
            b"{\"domain\": ",
            |e| matches!(e, E::InvalidJson { .. }),
            "JSON",
        );
        check_error(
            b"{not json}",
            |e| matches!(e, E::InvalidJson { .. }),
            "JSON",
        );
        check_error(
            b"[1,2]",
            |e| matches!(e, E::NotAnObject { found: "an array" }),
            "array",
        );
        check_error(
            b"\"text\"",
            |e| matches!(e, E::NotAnObject { .. }),
            "string",
        );
        check_error(
            b"null",
            |e| matches!(e, E::NotAnObject { found: "null" }),
            "null",
        );
        for field in [
            "domain",
            "action",
            "data",
            "event_id",
            "timestamp",
            "version",
        ] {
            check_error(
                &body(without(field)),
                |e| matches!(e, E::MissingField { field: f } if *f == field),
                field,
            );
            check_error(
                &body(with(field, Value::Null)),
                |e| matches!(e, E::MissingField { field: f } if *f == field),
                field,
            );
        }
        check_error(
            &body(with("domain", json!(5))),
            |e| matches!(e, E::WrongType { field, .. } if field == "domain"),
            "domain",
        );
        check_error(
            &body(with("version", json!(1.0))),
            |e| matches!(e, E::WrongType { field, .. } if field == "version"),
            "version",
        );
        check_error(
            &body(with("event_id", json!("not-a-uuid"))),
            |e| {
                matches!(
                    e,
                    E::InvalidField {
                        field: "event_id",
                        ..
                    }
                )
            },
            "not-a-uuid",
        );
        check_error(
            &body(with("timestamp", json!("yesterday"))),
            |e| {
                matches!(
                    e,
                    E::InvalidField {
                        field: "timestamp",
                        ..
                    }
                )
            },
            "yesterday",
        );
        check_error(
            &body(with("data", json!([1]))),
            |e| matches!(e, E::InvalidField { field: "data", .. }),
            "data",
        );
        check_error(
            &body(with("action", json!("created.v2"))),
            |e| {
                matches!(
                    e,
                    E::InvalidField {
                        field: "action",
                        ..
                    }
                )
            },
            "created.v2",
        );
        check_error(
            br#"{"domain":"a","domain":"b"}"#,
            |e| matches!(e, E::InvalidJson { .. } | E::WrongType { .. }),
            "duplicate field",
        );
        let trailing = [body(valid()), b" x".to_vec()].concat();
        check_error(
            &trailing,
            |e| matches!(e, E::InvalidJson { .. }),
            "trailing",
        );
    }

    #[test]
    fn rejects_bodies_nested_past_the_recursion_limit() {
        let deep = format!(
            r#"{{"domain":"a","action":"b","data":{{"x":{}1{}}}}}"#,
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        check_error(
            deep.as_bytes(),
            |e| matches!(e, Error::InvalidJson { .. }),
            "recursion limit",
        );
        let deep_top = "[".repeat(100_000);
        assert!(from_slice(deep_top.as_bytes()).is_err());
    }

    #[test]
    fn error_quotes_are_truncated() {
        let long = "x".repeat(10_000);
        let err = from_slice(&body(with("event_id", json!(long)))).unwrap_err();
        assert!(err.to_string().len() < 200, "{err}");
    }

    #[test]
    fn never_panics_on_arbitrary_bytes() {
        // A small deterministic fuzz: every prefix and single-byte corruption of a valid body.
        let valid = body(valid());
        for cut in 0..valid.len() {
            let _ = from_slice(&valid[..cut]);
        }
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let mut bytes = valid.clone();
            let i = (state as usize) % bytes.len();
            bytes[i] = (state >> 32) as u8;
            let _ = from_slice(&bytes);
        }
    }

    #[test]
    fn serde_impls_use_the_wire_form() {
        let event = Event::new("a", "b", json!({})).unwrap();
        let value = serde_json::to_value(&event).unwrap();
        assert_eq!(value["domain"], "a");
        let back: Event = serde_json::from_value(value).unwrap();
        assert_eq!(back.event_id(), event.event_id());
        let bad = serde_json::from_value::<Event>(json!({"domain": "a"}));
        assert!(bad.is_err());
    }
}
