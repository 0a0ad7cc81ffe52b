//! Checking and decoding a delivery's body into an [`Event`]; the error is the dead-letter
//! reason.

use pubsub_core::envelope::{Envelope, EnvelopeMeta, Received};
use pubsub_core::{json, Event};
use pubsub_registry::Pattern;

use crate::headers::clip;

/// What the subscriber accepts as an event.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Decoder {
    /// The largest body accepted.
    pub(crate) max_body_size: usize,
    /// The major versions accepted; `None`: every version.
    pub(crate) supported_major_versions: Option<Vec<u64>>,
    /// The envelope of deliveries no entry of `envelopes` matches.
    pub(crate) envelope: Envelope,
    /// Envelopes by routing-key pattern, the first match wins.
    pub(crate) envelopes: Vec<(Pattern, Envelope)>,
}

/// The routing key a message was published with, from how it arrived: through an exchange,
/// the key it arrived with; through the default exchange (a retry coming back from its delay
/// queue, or a copy sent straight to the queue), the key the subscriber recorded when it
/// first republished it (`recorded`), else none (the key is then a queue's name, which says
/// nothing about the event).
pub(crate) fn published_key<'a>(
    exchange: &str,
    routing_key: &'a str,
    recorded: Option<&'a str>,
) -> Option<&'a str> {
    if exchange.is_empty() {
        recorded
    } else {
        Some(routing_key)
    }
}

impl Decoder {
    /// The envelope of a message published with `routing_key`.
    pub(crate) fn envelope_of(&self, routing_key: Option<&str>) -> Envelope {
        routing_key
            .and_then(|key| {
                self.envelopes
                    .iter()
                    .find(|(pattern, _)| pattern.matches(key))
                    .map(|(_, envelope)| *envelope)
            })
            .unwrap_or(self.envelope)
    }

    /// Checks the size and the content type, decodes in the envelope chosen by the routing key
    /// (which must agree with the body), checks the major version.
    ///
    /// # Errors
    ///
    /// Why the body is not an acceptable event, in words (the dead-letter reason).
    #[cfg(test)]
    pub(crate) fn decode(
        &self,
        content_type: Option<&str>,
        body: &[u8],
        received: &Received<'_>,
    ) -> Result<Event, String> {
        self.decode_with_meta(content_type, body, received)
            .map(|(event, _)| event)
    }

    /// [`decode`](Self::decode), with what the envelope carried besides the event (seed 004's
    /// `source`, `event_type` and other fields).
    ///
    /// # Errors
    ///
    /// As [`decode`](Self::decode).
    pub(crate) fn decode_with_meta(
        &self,
        content_type: Option<&str>,
        body: &[u8],
        received: &Received<'_>,
    ) -> Result<(Event, EnvelopeMeta), String> {
        if body.len() > self.max_body_size {
            return Err(format!(
                "body of {} bytes exceeds the maximum of {} bytes",
                body.len(),
                self.max_body_size
            ));
        }
        if let Some(content_type) = content_type {
            if !is_json(content_type) {
                return Err(format!(
                    "content type {:?} is not application/json",
                    clip(content_type)
                ));
            }
        }
        let envelope = self.envelope_of(received.routing_key);
        let (event, meta) =
            envelope
                .decode_with_meta(body, received)
                .map_err(|e| match envelope {
                    Envelope::Standard => e.to_string(),
                    other => format!("{e} (envelope {other})"),
                })?;
        if let Some(supported) = &self.supported_major_versions {
            // A versioned routing key's `vN` is the event's major version, as for typed
            // decoding (`Event::is`).
            let major = match event.key_version() {
                Some(n) => Some(u64::from(n)),
                None => event.major_version(),
            };
            if !major.is_some_and(|m| supported.contains(&m)) {
                return Err(format!(
                    "version {:?} is not supported (supported major versions: {supported:?})",
                    clip(event.version())
                ));
            }
        }
        Ok((event, meta))
    }
}

/// `application/json`, with parameters (`; charset=utf-8`) or as a `+json` suffix.
fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case(json::CONTENT_TYPE)
        || essence.to_ascii_lowercase().ends_with("+json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        for ok in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            "application/cloudevents+json",
        ] {
            assert!(is_json(ok), "{ok}");
        }
        for bad in ["text/plain", "application/xml", "", "application/jsonx"] {
            assert!(!is_json(bad), "{bad}");
        }
    }

    fn body(version: &str) -> Vec<u8> {
        format!(
            r#"{{"domain":"d","action":"a","data":{{}},"event_id":"6f1c1f4e-3b0b-4e8e-9a57-0c6b4c1e2a10","timestamp":"2024-05-01T12:30:00+00:00","version":"{version}"}}"#
        )
        .into_bytes()
    }

    fn received(key: Option<&str>) -> Received<'_> {
        Received {
            routing_key: key,
            message_id: None,
            timestamp: None,
            received_at: time::OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn published_keys() {
        assert_eq!(published_key("events", "a.b.v2", None), Some("a.b.v2"));
        assert_eq!(published_key("events", "a.b", Some("x.y")), Some("a.b"));
        assert_eq!(published_key("", "orders", Some("a.b.v2")), Some("a.b.v2"));
        assert_eq!(published_key("", "orders", None), None);
    }

    #[test]
    fn envelopes_by_binding() {
        let decoder = Decoder {
            max_body_size: 1024,
            supported_major_versions: None,
            envelope: Envelope::Standard,
            envelopes: vec![
                (Pattern::parse("legacy.#").unwrap(), Envelope::Bare),
                (Pattern::parse("*.registered").unwrap(), Envelope::EventBus),
            ],
        };
        let check = |key: Option<&str>, body: &[u8], ok: bool| {
            let got = decoder.decode(None, body, &received(key));
            assert_eq!(got.is_ok(), ok, "{key:?}: {got:?}");
        };
        let bus = br#"{"id":"6f1c1f4e-3b0b-4e8e-9a57-0c6b4c1e2a10","name":"user.registered","source":"s","event_type":"domain","timestamp":"2024-05-01T12:30:00Z","data":{}}"#;
        assert_eq!(decoder.envelope_of(Some("legacy.thing.v2")), Envelope::Bare);
        assert_eq!(
            decoder.envelope_of(Some("user.registered")),
            Envelope::EventBus
        );
        assert_eq!(decoder.envelope_of(Some("d.a")), Envelope::Standard);
        assert_eq!(decoder.envelope_of(None), Envelope::Standard);
        check(Some("legacy.thing"), br#"{"x":1}"#, true);
        check(Some("user.registered"), bus, true);
        check(Some("d.a"), &body("1.0"), true);
        check(Some("d.a.v2"), &body("1.0"), true);
        check(Some("d.other"), &body("1.0"), false);
        check(Some("d.a"), br#"{"x":1}"#, false);
        let err = decoder
            .decode(None, b"[]", &received(Some("legacy.thing")))
            .unwrap_err();
        assert!(err.contains("envelope bare"), "{err}");
    }

    fn decoder_with_key(decoder: &Decoder, body: &[u8], key: &str) -> Result<Event, String> {
        decoder.decode(None, body, &received(Some(key)))
    }

    #[test]
    fn decoding() {
        let any = Decoder {
            max_body_size: 1024,
            supported_major_versions: None,
            envelope: Envelope::Standard,
            envelopes: Vec::new(),
        };
        let v1 = Decoder {
            supported_major_versions: Some(vec![1]),
            ..any.clone()
        };
        let check = |decoder: &Decoder, ct: Option<&str>, body: &[u8], err: Option<&str>| match (
            decoder.decode(ct, body, &received(None)),
            err,
        ) {
            (Ok(_), None) => {}
            (Err(e), Some(part)) => assert!(e.contains(part), "{e}"),
            (got, want) => panic!("{got:?}, wanted an error with {want:?}"),
        };
        check(&any, None, &body("1.0"), None);
        check(&any, Some("application/json"), &body("7.2"), None);
        check(&any, Some("text/plain"), &body("1.0"), Some("content type"));
        check(&any, None, b"{", Some("JSON"));
        check(
            &any,
            None,
            &[b' '; 2000],
            Some("exceeds the maximum of 1024"),
        );
        check(&v1, None, &body("1.3"), None);
        let keyed = |key| decoder_with_key(&v1, &body("1.0"), key);
        assert!(keyed("d.a").is_ok());
        assert!(keyed("d.a.v2").unwrap_err().contains("not supported"));
        check(
            &v1,
            None,
            &body("2.0"),
            Some("version \"2.0\" is not supported"),
        );
    }
}
