//! [`SourcedEvent`]: seed 004's `Event.create(name, source, event_type, data)`.

use serde_json::Value;

use crate::envelope::EnvelopeMeta;
use crate::error::{Error, Result};
use crate::event_type::EventType;
use crate::handler::Metadata;
use crate::Event;

/// Longest `source` accepted: it travels as the AMQP `app_id`, a short string.
const MAX_SOURCE_LEN: usize = 255;

/// An [`Event`] with seed 004's attributes: the service that publishes it (`source`) and
/// what kind of event it is ([`EventType`]); what [`Event::create`] makes.
///
/// The six wire fields of the event do not change: the source and the type travel beside
/// them (the `app_id` property, the [`EVENT_TYPE_HEADER`](crate::EVENT_TYPE_HEADER) header,
/// and in seed 004's envelope its `source` and `event_type` fields). A publisher sends them
/// with `PublishOptions::sourced` (`pubsub-publisher`); in process,
/// [`metadata`](Self::metadata) gives the handlers the same.
#[derive(Debug, Clone, PartialEq)]
pub struct SourcedEvent {
    event: Event,
    source: String,
    event_type: EventType,
}

impl Event {
    /// Seed 004's `Event.create(name, source, event_type, data)`: the event `name`
    /// (`domain.action`, or `domain.action.vN` for a versioned routing key) carrying `data`,
    /// with a new id, the current time and version `"1.0"` (`"N.0"` for `.vN`), published by
    /// the service `source` as an event of type `event_type`.
    ///
    /// ```
    /// use pubsub_core::{Event, EventType};
    /// use serde_json::json;
    ///
    /// let created = Event::create(
    ///     "user.registered",
    ///     "my-service",
    ///     EventType::Domain,
    ///     json!({ "user_id": "123", "username": "john_doe" }),
    /// )?;
    /// assert_eq!(created.event().routing_key(), "user.registered");
    /// assert_eq!(created.source(), "my-service");
    /// assert_eq!(created.event_type(), EventType::Domain);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidField`] if `name` is not `domain.action[.vN]` with words of
    /// `[A-Za-z0-9_-]`, if `data` is not a JSON object, or if `source` is empty, longer than
    /// 255 bytes or has a control character.
    pub fn create(
        name: &str,
        source: &str,
        event_type: EventType,
        data: Value,
    ) -> Result<SourcedEvent> {
        let event = Event::from_routing_key(name).data(data).build()?;
        SourcedEvent::new(event, source, event_type)
    }
}

impl SourcedEvent {
    /// `event`, published by `source` as an event of type `event_type`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidField`] if `source` is empty, longer than 255 bytes or has a control
    /// character.
    pub fn new(event: Event, source: &str, event_type: EventType) -> Result<SourcedEvent> {
        if source.is_empty() {
            return Err(Error::invalid("source", source, "must not be empty"));
        }
        if source.len() > MAX_SOURCE_LEN {
            return Err(Error::invalid("source", source, "longer than 255 bytes"));
        }
        if source.chars().any(char::is_control) {
            return Err(Error::invalid("source", source, "has a control character"));
        }
        Ok(SourcedEvent {
            event,
            source: source.to_owned(),
            event_type,
        })
    }

    /// The event.
    pub fn event(&self) -> &Event {
        &self.event
    }

    /// The service that publishes it.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Its kind.
    pub fn event_type(&self) -> EventType {
        self.event_type
    }

    /// The metadata of an in-process delivery of it: its source and type, as a subscriber
    /// reads them from seed 004's envelope.
    pub fn metadata(&self) -> Metadata {
        Metadata::default().with_envelope(
            EnvelopeMeta::default()
                .with_source(Some(self.source.clone()))
                .with_event_type_name(Some(self.event_type.as_str().to_owned())),
        )
    }

    /// The event alone.
    pub fn into_event(self) -> Event {
        self.event
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn create_checks_name_source_and_data() {
        let check = |name: &str, source: &str, data: Value, err: Option<&str>| match (
            Event::create(name, source, EventType::User, data),
            err,
        ) {
            (Ok(created), None) => {
                assert_eq!(created.event().routing_key(), name);
                assert_eq!(created.source(), source);
                let meta = created.metadata();
                assert_eq!(meta.source(), Some(source));
                assert_eq!(meta.event_type(), Some(EventType::User));
            }
            (Err(e), Some(part)) => assert!(e.to_string().contains(part), "{e}"),
            (got, want) => panic!("{name} {source}: {got:?}, wanted {want:?}"),
        };
        check("user.registered", "svc", json!({"a": 1}), None);
        check("user.registered.v2", "svc", json!({}), None);
        check("user", "svc", json!({}), Some("user"));
        check("user.registered", "", json!({}), Some("source"));
        check("user.registered", "a\nb", json!({}), Some("control"));
        check("user.registered", &"x".repeat(256), json!({}), Some("255"));
        check("user.registered", "svc", json!([1]), Some("data"));
        let created = Event::create("a.b", "s", EventType::Domain, json!({})).unwrap();
        assert_eq!(created.event_type(), EventType::Domain);
        assert_eq!(created.clone().into_event(), *created.event());
    }
}
