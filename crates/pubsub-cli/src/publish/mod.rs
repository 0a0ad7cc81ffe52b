//! `pubsub publish`: build one event from the command line and publish it with confirms.
//!
//! The library side is here ([`DataSource`], [`build_event`], [`publish`]); the command's
//! arguments and output are in [`command`].

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;

use pubsub_amqp::Connection;
use pubsub_core::envelope::Envelope;
use pubsub_core::{text, Event, EventType};
use pubsub_publisher::{EventPublisher, PublishOptions, Unroutable};
use serde_json::{Map, Value};

use crate::error::{Error, Result, UsageError};

pub mod command;

/// Where the event's data comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataSource {
    /// JSON given on the command line.
    Inline(String),
    /// A file (`--data @path`).
    File(PathBuf),
    /// Standard input (`--data -`).
    Stdin,
    /// Standard input if it has something, else `{}` (no `--data`, stdin not a terminal).
    StdinOrEmpty,
    /// `{}` (no `--data`, stdin a terminal).
    Empty,
}

impl DataSource {
    /// Reads `--data`: `@path`, `-`, inline JSON; without it, stdin when it is not a
    /// terminal, else nothing.
    pub fn from_arg(arg: Option<&str>, stdin_is_terminal: bool) -> DataSource {
        match arg {
            Some("-") => DataSource::Stdin,
            Some(arg) => match arg.strip_prefix('@') {
                Some(path) => DataSource::File(PathBuf::from(path)),
                None => DataSource::Inline(arg.to_owned()),
            },
            None if stdin_is_terminal => DataSource::Empty,
            None => DataSource::StdinOrEmpty,
        }
    }

    /// Reads and parses the data, which must be a JSON object.
    ///
    /// # Errors
    ///
    /// A [`UsageError`] when the file or stdin cannot be read, or the text is not a JSON
    /// object.
    pub fn read(&self, stdin: &mut dyn Read) -> Result<Map<String, Value>, UsageError> {
        self.read_named(stdin, "data", "--data")
    }

    /// [`read`](Self::read) for an argument of another name: `noun` and `flag` word the
    /// errors (`task submit`'s payload and `--payload`).
    ///
    /// # Errors
    ///
    /// As [`read`](Self::read).
    pub fn read_named(
        &self,
        stdin: &mut dyn Read,
        noun: &str,
        flag: &str,
    ) -> Result<Map<String, Value>, UsageError> {
        let (text, origin) = match self {
            DataSource::Inline(text) => (text.clone(), flag.to_owned()),
            DataSource::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    UsageError::new(format!("cannot read {flag} file `{}`: {e}", path.display()))
                })?;
                (text, format!("file `{}`", path.display()))
            }
            DataSource::Stdin | DataSource::StdinOrEmpty => {
                let mut text = String::new();
                stdin.read_to_string(&mut text).map_err(|e| {
                    UsageError::new(format!("cannot read the {noun} from stdin: {e}"))
                })?;
                if text.trim().is_empty() && *self == DataSource::StdinOrEmpty {
                    return Ok(Map::new());
                }
                (text, "stdin".to_owned())
            }
            DataSource::Empty => return Ok(Map::new()),
        };
        match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(other) => Err(UsageError::new(format!(
                "the {noun} ({origin}) must be a JSON object, not {}",
                text::json_type(&other)
            ))),
            Err(e) => Err(UsageError::new(format!(
                "the {noun} ({origin}) is not valid JSON: {e}"
            ))),
        }
    }
}

/// Builds the event `domain.action` (or `domain.action.vN`, a versioned routing key) with
/// `data` and `version`.
///
/// # Errors
///
/// A [`UsageError`] when the routing key is not `<domain>.<action>[.vN]` or the event is
/// invalid.
pub fn build_event(
    routing_key: &str,
    data: Map<String, Value>,
    version: &str,
) -> Result<Event, UsageError> {
    build_versioned_event(routing_key, data, Some(version))
}

/// [`build_event`] with the version optional: `None` gives `"N.0"` for a routing key
/// `domain.action.vN`, else `"1.0"`.
///
/// # Errors
///
/// As [`build_event`].
pub fn build_versioned_event(
    routing_key: &str,
    data: Map<String, Value>,
    version: Option<&str>,
) -> Result<Event, UsageError> {
    if !routing_key.contains('.') {
        return Err(UsageError::new(format!(
            "routing key `{}` must be <domain>.<action>, e.g. order.created",
            text::clip(routing_key, 80)
        )));
    }
    let mut builder = Event::from_routing_key(routing_key).data_map(data);
    if let Some(version) = version {
        builder = builder.version(version);
    }
    builder
        .build()
        .map_err(|e| UsageError::new(format!("invalid event: {e}")))
}

/// How to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishRequest {
    /// The exchange.
    pub exchange: String,
    /// The `app_id`.
    pub app_id: String,
    /// The `correlation_id`.
    pub correlation_id: Option<String>,
    /// The causation id (the `x-causation-id` header).
    pub causation_id: Option<String>,
    /// The event's type (the `x-event-type` header; the `event_type` of seed 004's
    /// envelope, `domain` when `None`).
    pub event_type: Option<EventType>,
    /// Headers of string values to add.
    pub headers: BTreeMap<String, String>,
    /// Whether to declare the exchange (a durable topic exchange) first.
    pub declare: bool,
}

/// What became of a published event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// The broker confirmed it and routed it to at least one queue.
    Routed,
    /// The broker confirmed it but no queue is bound for its routing key: it was dropped.
    Unroutable,
}

/// Publishes `event` (in seed 000's six-field envelope) and waits for the broker's confirm.
///
/// # Errors
///
/// [`Error::Amqp`] when the broker cannot be reached or the exchange does not exist (with
/// `declare` false); [`Error::Publisher`] when the broker refuses the event.
pub fn publish(
    connection: Connection,
    event: &Event,
    request: &PublishRequest,
) -> Result<Published> {
    publish_in(connection, event, request, Envelope::Standard)
}

/// [`publish`] in the given envelope.
///
/// # Errors
///
/// As [`publish`].
pub fn publish_in(
    connection: Connection,
    event: &Event,
    request: &PublishRequest,
    envelope: Envelope,
) -> Result<Published> {
    let mut publisher = EventPublisher::builder(connection, &request.exchange)
        .app_id(&request.app_id)
        .envelope(envelope)
        .unroutable(Unroutable::Error)
        .declare_exchange(request.declare.then(Default::default))
        .build()?;
    let options = PublishOptions {
        correlation_id: request.correlation_id.clone(),
        causation_id: request.causation_id.clone(),
        event_type: request.event_type,
        headers: request.headers.clone(),
        ..PublishOptions::default()
    };
    let outcome = match publisher.publish_with(event, &options) {
        Ok(()) => Published::Routed,
        Err(e) => match e.error() {
            pubsub_publisher::Error::Unroutable { .. } => Published::Unroutable,
            other => return Err(Error::from(other.clone())),
        },
    };
    if let Err(e) = publisher.close() {
        log::debug!("closing the connection: {e}");
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_sources() {
        let check = |arg: Option<&str>, tty: bool, expected: DataSource| {
            assert_eq!(DataSource::from_arg(arg, tty), expected);
        };
        check(Some("{}"), false, DataSource::Inline("{}".into()));
        check(Some("@a.json"), true, DataSource::File("a.json".into()));
        check(Some("-"), true, DataSource::Stdin);
        check(None, true, DataSource::Empty);
        check(None, false, DataSource::StdinOrEmpty);
    }

    #[test]
    fn data_must_be_a_json_object() {
        let read = |source: DataSource, stdin: &str| {
            source
                .read(&mut stdin.as_bytes())
                .map(|m| Value::Object(m).to_string())
                .map_err(|e| e.to_string())
        };
        assert_eq!(
            read(DataSource::Inline(r#"{"a":1}"#.into()), ""),
            Ok(r#"{"a":1}"#.into())
        );
        assert_eq!(
            read(DataSource::Stdin, r#" {"b":2} "#),
            Ok(r#"{"b":2}"#.into())
        );
        assert_eq!(read(DataSource::StdinOrEmpty, "\n"), Ok("{}".into()));
        assert_eq!(read(DataSource::Empty, "ignored"), Ok("{}".into()));
        let err = read(DataSource::Inline("[1]".into()), "").unwrap_err();
        assert_eq!(err, "the data (--data) must be a JSON object, not an array");
        let err = read(DataSource::Stdin, "").unwrap_err();
        assert!(
            err.starts_with("the data (stdin) is not valid JSON"),
            "{err}"
        );
        let err = read(DataSource::File("/nonexistent/x.json".into()), "").unwrap_err();
        assert!(
            err.starts_with("cannot read --data file `/nonexistent/x.json`"),
            "{err}"
        );
    }

    #[test]
    fn routing_keys() {
        let event = build_event("order.created", Map::new(), "1.0").unwrap();
        assert_eq!(event.routing_key(), "order.created");
        // Seed 002's versioned routing keys: the version word is part of the key, and the
        // version follows it unless given.
        let v2 = build_versioned_event("order.created.v2", Map::new(), None).unwrap();
        assert_eq!(
            (v2.routing_key(), v2.action(), v2.version()),
            ("order.created.v2", "created", "2.0")
        );
        let v2 = build_event("order.created.v2", Map::new(), "2.3").unwrap();
        assert_eq!(v2.version(), "2.3");
        let v1 = build_versioned_event("order.created", Map::new(), None).unwrap();
        assert_eq!(v1.version(), "1.0");
        for bad in [
            "order",
            "order.created.final",
            "order.created.v2.x",
            ".created",
            "order.",
        ] {
            assert!(build_event(bad, Map::new(), "1.0").is_err(), "{bad}");
        }
        let err = build_event("ordercreated", Map::new(), "1.0").unwrap_err();
        assert_eq!(
            err.to_string(),
            "routing key `ordercreated` must be <domain>.<action>, e.g. order.created"
        );
    }
}
