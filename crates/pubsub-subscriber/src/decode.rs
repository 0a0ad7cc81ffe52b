//! Checking and decoding a delivery's body into an [`Event`]; the error is the dead-letter
//! reason.

use pubsub_core::{json, Event};

use crate::headers::clip;

/// What the subscriber accepts as an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Decoder {
    /// The largest body accepted.
    pub(crate) max_body_size: usize,
    /// The major versions accepted; `None`: every version.
    pub(crate) supported_major_versions: Option<Vec<u64>>,
}

impl Decoder {
    /// Checks the size and the content type, decodes, checks the major version.
    ///
    /// # Errors
    ///
    /// Why the body is not an acceptable event, in words (the dead-letter reason).
    pub(crate) fn decode(&self, content_type: Option<&str>, body: &[u8]) -> Result<Event, String> {
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
        let event = json::from_slice(body).map_err(|e| e.to_string())?;
        if let Some(supported) = &self.supported_major_versions {
            if !event
                .major_version()
                .is_some_and(|m| supported.contains(&m))
            {
                return Err(format!(
                    "version {:?} is not supported (supported major versions: {supported:?})",
                    clip(event.version())
                ));
            }
        }
        Ok(event)
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

    #[test]
    fn decoding() {
        let any = Decoder {
            max_body_size: 1024,
            supported_major_versions: None,
        };
        let v1 = Decoder {
            supported_major_versions: Some(vec![1]),
            ..any.clone()
        };
        let check = |decoder: &Decoder, ct: Option<&str>, body: &[u8], err: Option<&str>| match (
            decoder.decode(ct, body),
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
        check(
            &v1,
            None,
            &body("2.0"),
            Some("version \"2.0\" is not supported"),
        );
    }
}
