//! The [`Metadata`] a handler sees, built from a delivery's properties and headers.

use pubsub_amqp::{Delivery, HeaderValue};
use pubsub_core::envelope::EnvelopeMeta;
use pubsub_core::serde_json::{Number, Value};
use pubsub_core::text::clip;
use pubsub_core::Metadata;

/// The metadata of `delivery` at `attempt`: correlation id, `app_id` (the source), redelivered
/// flag, every header (from which [`Metadata::with_headers`] reads the causation id and
/// the event type), and what its envelope carried besides the event (`envelope`: seed 004's
/// `source` and `event_type`, which win over the properties, and its other fields).
///
/// A body's fields the envelope does not define are kept in the metadata
/// ([`Metadata::extra`]) and named in a debug log line, never dropped silently.
pub(crate) fn metadata(delivery: &Delivery, attempt: u32, envelope: EnvelopeMeta) -> Metadata {
    if !envelope.extra().is_empty() {
        let names: Vec<&str> = envelope.extra().keys().map(String::as_str).collect();
        log::debug!(
            "a delivery on `{}` carries {} field(s) besides the event, kept in the handler's metadata: {}",
            clip(delivery.routing_key(), 120),
            names.len(),
            clip(&names.join(", "), 200)
        );
    }
    let headers = delivery.headers();
    Metadata::default()
        .with_envelope(envelope)
        .with_correlation_id(delivery.correlation_id().map(str::to_owned))
        .with_app_id(delivery.app_id().map(str::to_owned))
        .with_attempt(attempt)
        .with_redelivered(delivery.redelivered())
        .with_headers(headers.iter().map(|(k, v)| (k.clone(), json(v))).collect())
}

/// A header value as JSON: bytes become an array of numbers, a non-finite float and a void
/// become `null`, a timestamp its seconds since the epoch.
fn json(value: &HeaderValue) -> Value {
    match value {
        HeaderValue::Bool(b) => Value::Bool(*b),
        HeaderValue::Int(i) => Value::from(*i),
        HeaderValue::Float(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
        HeaderValue::Str(s) => Value::String(s.clone()),
        HeaderValue::Bytes(b) => Value::Array(b.iter().map(|&byte| Value::from(byte)).collect()),
        HeaderValue::Array(items) => Value::Array(items.iter().map(json).collect()),
        HeaderValue::Table(table) => {
            Value::Object(table.iter().map(|(k, v)| (k.clone(), json(v))).collect())
        }
        HeaderValue::Timestamp(t) => Value::from(*t),
        HeaderValue::Void => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use pubsub_core::serde_json::json as j;

    use super::*;

    #[test]
    fn header_values_become_json() {
        let check = |value: HeaderValue, expected: Value| assert_eq!(json(&value), expected);
        check(HeaderValue::Bool(true), j!(true));
        check(HeaderValue::Int(-3), j!(-3));
        check(HeaderValue::Float(1.5), j!(1.5));
        check(HeaderValue::Float(f64::NAN), j!(null));
        check(HeaderValue::from("integration"), j!("integration"));
        check(HeaderValue::Bytes(vec![1, 255]), j!([1, 255]));
        check(
            HeaderValue::Array(vec![HeaderValue::from("a"), HeaderValue::Int(1)]),
            j!(["a", 1]),
        );
        let mut table = pubsub_amqp::Headers::new();
        table.insert("k".into(), HeaderValue::Void);
        check(HeaderValue::Table(table), j!({ "k": null }));
        check(HeaderValue::Timestamp(1_700_000_000), j!(1_700_000_000u64));
        check(HeaderValue::Void, j!(null));
    }
}
