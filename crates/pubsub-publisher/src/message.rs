//! What each event is sent with: the per-publish [`PublishOptions`], the policy for events no
//! queue receives ([`Unroutable`]), and, decided from them (pure), the routing key, the
//! properties and the headers of the message.

use std::collections::BTreeMap;

use pubsub_amqp::{Headers, Properties};
use pubsub_core::trace::{TraceContext, TRACEPARENT_HEADER, TRACESTATE_HEADER};
use pubsub_core::{json, Event, EventType, SourcedEvent, CAUSATION_ID_HEADER, EVENT_TYPE_HEADER};

use crate::settings::Settings;

/// Per-publish options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishOptions {
    /// Ties this event to others of one flow (the AMQP `correlation_id`).
    pub correlation_id: Option<String>,
    /// The id of the event whose handling caused this one (the
    /// [`CAUSATION_ID_HEADER`](pubsub_core::CAUSATION_ID_HEADER) header).
    pub causation_id: Option<String>,
    /// The event's type (the [`EVENT_TYPE_HEADER`](pubsub_core::EVENT_TYPE_HEADER) header,
    /// and in seed 004's envelope its `event_type` field, `domain` when unset).
    pub event_type: Option<EventType>,
    /// The service that publishes this event, instead of the publisher's `app_id`: sent as the
    /// `app_id` property, and in seed 004's envelope as its `source` field.
    pub source: Option<String>,
    /// The routing key to publish with instead of the event's own (`domain.action`): a key
    /// of another convention, as seed 003's tasks on a direct exchange
    /// (`routing.task.<action>.<entity>`). The message's `type` stays the event's key.
    pub routing_key: Option<String>,
    /// Headers of string values to add, as a seed's consumers expect them (seed 003's
    /// `producer_app` and `correlation_id`). They cannot replace the headers the publisher
    /// writes itself (causation id, event type).
    pub headers: BTreeMap<String, String>,
    /// The trace context to send (the `traceparent` and `tracestate` headers). With the
    /// `otel` feature, an event without one gets a producer span of its own, a child of the
    /// publishing thread's current span, and carries its context.
    pub trace: Option<TraceContext>,
    /// The message's priority (0 to 255; see
    /// [`Properties::priority`](pubsub_amqp::Properties::priority)).
    pub priority: Option<u8>,
}

impl PublishOptions {
    /// Options with a correlation id.
    pub fn correlated(correlation_id: &str) -> Self {
        PublishOptions {
            correlation_id: Some(correlation_id.to_owned()),
            ..PublishOptions::default()
        }
    }

    /// Options that send a [`SourcedEvent`]'s source and type (seed 004's
    /// `Event.create`): publish its [`event`](SourcedEvent::event) with them.
    ///
    /// ```
    /// use pubsub_core::{Event, EventType};
    /// use pubsub_publisher::PublishOptions;
    ///
    /// let created = Event::create("user.registered", "accounts", EventType::Integration,
    ///                             serde_json::json!({ "user_id": "U-1" }))?;
    /// let options = PublishOptions::sourced(&created);
    /// assert_eq!(options.source.as_deref(), Some("accounts"));
    /// assert_eq!(options.event_type, Some(EventType::Integration));
    /// // publisher.publish_with(created.event(), &options)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn sourced(event: &SourcedEvent) -> Self {
        PublishOptions {
            source: Some(event.source().to_owned()),
            event_type: Some(event.event_type()),
            ..PublishOptions::default()
        }
    }
}

/// Seed 004's `source` when neither the options nor the publisher name one.
pub(crate) const DEFAULT_SOURCE: &str = "pubsub";

/// Writes the body of `event` in the publisher's envelope: seed 004's `source` is the
/// options' source, else the publisher's `app_id`, else [`DEFAULT_SOURCE`]; its `event_type`
/// the options' type, else `domain`.
pub(crate) fn write_body(
    event: &Event,
    settings: &Settings,
    options: &PublishOptions,
    out: &mut Vec<u8>,
) {
    let source = options
        .source
        .as_deref()
        .or(settings.app_id.as_deref())
        .unwrap_or(DEFAULT_SOURCE);
    let kind = options.event_type.unwrap_or(EventType::Domain);
    settings.envelope.write_as(event, source, kind, out);
}

pub(crate) fn properties(
    event: &Event,
    settings: &Settings,
    options: &PublishOptions,
) -> Properties {
    Properties {
        content_type: Some(json::CONTENT_TYPE.to_owned()),
        persistent: true,
        message_id: Some(event.event_id().to_string()),
        timestamp: u64::try_from(event.timestamp().unix_timestamp()).ok(),
        kind: Some(event.routing_key().to_owned()),
        app_id: options.source.clone().or_else(|| settings.app_id.clone()),
        correlation_id: options.correlation_id.clone(),
        headers: headers(options),
        expiration: None,
        priority: options.priority,
    }
}

/// The routing key `event` is published with: the queue's name when publishing to a queue,
/// else the one `options` give, else its own.
pub(crate) fn publish_key<'a>(
    settings: &'a Settings,
    event: &'a Event,
    options: &'a PublishOptions,
) -> &'a str {
    settings
        .to_queue
        .as_deref()
        .or(options.routing_key.as_deref())
        .unwrap_or(event.routing_key())
}

/// The headers `options` ask for: their string headers, then the causation id, the event
/// type and the trace context, when set.
fn headers(options: &PublishOptions) -> Headers {
    let mut headers = Headers::new();
    for (name, value) in &options.headers {
        headers.insert(name.clone(), value.as_str().into());
    }
    if let Some(trace) = &options.trace {
        headers.insert(
            TRACEPARENT_HEADER.to_owned(),
            trace.traceparent.as_str().into(),
        );
        if let Some(state) = &trace.tracestate {
            headers.insert(TRACESTATE_HEADER.to_owned(), state.as_str().into());
        }
    }
    if let Some(causation) = &options.causation_id {
        headers.insert(CAUSATION_ID_HEADER.to_owned(), causation.as_str().into());
    }
    if let Some(kind) = options.event_type {
        headers.insert(EVENT_TYPE_HEADER.to_owned(), kind.as_str().into());
    }
    headers
}

#[cfg(test)]
mod tests {
    use pubsub_core::serde_json::json;

    use super::*;
    use crate::settings::default_settings;

    #[test]
    fn options_choose_the_routing_key_and_add_headers() {
        let event = Event::new("task", "send-report", json!({})).unwrap();
        let plain = PublishOptions::default();
        let settings = default_settings();
        assert_eq!(publish_key(&settings, &event, &plain), "task.send-report");
        assert!(headers(&plain).is_empty());
        let routed = PublishOptions {
            routing_key: Some("routing.task.send.report".to_owned()),
            headers: BTreeMap::from([
                ("producer_app".to_owned(), "reports".to_owned()),
                (CAUSATION_ID_HEADER.to_owned(), "forged".to_owned()),
            ]),
            causation_id: Some("cause".to_owned()),
            ..PublishOptions::default()
        };
        assert_eq!(
            publish_key(&settings, &event, &routed),
            "routing.task.send.report"
        );
        let to_queue = Settings {
            to_queue: Some("audit".to_owned()),
            ..settings.clone()
        };
        assert_eq!(publish_key(&to_queue, &event, &routed), "audit");
        let written = headers(&routed);
        assert_eq!(written["producer_app"].as_str(), Some("reports"));
        // The publisher's own headers win over the caller's.
        assert_eq!(written[CAUSATION_ID_HEADER].as_str(), Some("cause"));
    }

    #[test]
    fn seed_004_bodies_carry_the_chosen_source_and_type() {
        use pubsub_core::envelope::Envelope;

        let event = Event::new("user", "registered", json!({})).unwrap();
        let check = |app_id: Option<&str>,
                     options: &PublishOptions,
                     source: &str,
                     kind: &str,
                     property: Option<&str>| {
            let settings = Settings {
                app_id: app_id.map(str::to_owned),
                envelope: Envelope::EventBus,
                ..default_settings()
            };
            let mut body = Vec::new();
            write_body(&event, &settings, options, &mut body);
            let body: pubsub_core::serde_json::Value =
                pubsub_core::serde_json::from_slice(&body).unwrap();
            assert_eq!(body["source"], source, "{options:?}");
            assert_eq!(body["event_type"], kind, "{options:?}");
            let props = properties(&event, &settings, options);
            assert_eq!(props.app_id.as_deref(), property, "{options:?}");
        };
        let plain = PublishOptions::default();
        check(None, &plain, DEFAULT_SOURCE, "domain", None);
        check(
            Some("billing"),
            &plain,
            "billing",
            "domain",
            Some("billing"),
        );
        let typed = PublishOptions {
            event_type: Some(EventType::Notification),
            ..PublishOptions::default()
        };
        check(
            Some("billing"),
            &typed,
            "billing",
            "notification",
            Some("billing"),
        );
        let created =
            Event::create("user.registered", "accounts", EventType::User, json!({})).unwrap();
        let sourced = PublishOptions::sourced(&created);
        check(
            Some("billing"),
            &sourced,
            "accounts",
            "user",
            Some("accounts"),
        );
        assert_eq!(headers(&sourced)[EVENT_TYPE_HEADER].as_str(), Some("user"));
    }
}
