//! [`EventType`], seed 004's kind of event, and the headers that carry what the six wire
//! fields do not.

use std::fmt;

/// The AMQP header that carries an event's [`EventType`] (`x-event-type: integration`).
///
/// The six wire fields never change (Python services read them), so an event's type travels
/// beside the body, as this header.
pub const EVENT_TYPE_HEADER: &str = "x-event-type";

/// The AMQP header that carries the causation id: the id of the event whose handling caused
/// this one to be published.
pub const CAUSATION_ID_HEADER: &str = "x-causation-id";

/// What kind of event this is, in the original design's terms (seed 004's `EventType`).
///
/// It travels in the [`EVENT_TYPE_HEADER`] header, never in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    /// A business fact within a service (`order.created`).
    Domain,
    /// An event shared between services.
    Integration,
    /// Infrastructure and technical events.
    System,
    /// Something a user did.
    User,
    /// Alerts and notifications.
    Notification,
}

impl EventType {
    /// Every event type, in declaration order.
    pub const ALL: [EventType; 5] = [
        EventType::Domain,
        EventType::Integration,
        EventType::System,
        EventType::User,
        EventType::Notification,
    ];

    /// Its name on the wire: `domain`, `integration`, `system`, `user` or `notification`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Domain => "domain",
            EventType::Integration => "integration",
            EventType::System => "system",
            EventType::User => "user",
            EventType::Notification => "notification",
        }
    }

    /// Reads a wire name, ignoring ASCII case (Python's enum values are upper case in some
    /// services); `None` for any other text.
    pub fn parse(name: &str) -> Option<EventType> {
        EventType::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_read_their_wire_names() {
        let check = |text: &str, expected: Option<EventType>| {
            assert_eq!(EventType::parse(text), expected, "{text:?}");
        };
        check("domain", Some(EventType::Domain));
        check("integration", Some(EventType::Integration));
        check("system", Some(EventType::System));
        check("user", Some(EventType::User));
        check("notification", Some(EventType::Notification));
        check("DOMAIN", Some(EventType::Domain));
        check("", None);
        check("domains", None);
        check(" domain", None);
        for kind in EventType::ALL {
            assert_eq!(EventType::parse(&kind.to_string()), Some(kind));
        }
    }
}
