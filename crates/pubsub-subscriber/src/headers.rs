//! The headers the subscriber writes on retried and dead-lettered messages.
//!
//! They are part of the contract with operators and tools (`pubsub dlq list` reads them), so
//! their names are public constants.

/// The attempt a retried delivery is (2 for the first retry). Absent on a first delivery.
pub const ATTEMPT: &str = "x-pubsub-attempt";
/// The subscriptions (`handler@pattern`) that already succeeded for this event; a retry runs
/// only the others.
pub const DONE: &str = "x-pubsub-done";
/// The names of the handlers that failed on the last attempt.
pub const FAILED_HANDLERS: &str = "x-pubsub-failed-handlers";
/// The last handler error, `handler: message`.
pub const LAST_ERROR: &str = "x-pubsub-last-error";
/// When the event first failed (RFC 3339, UTC).
pub const FIRST_FAILURE: &str = "x-pubsub-first-failure";
/// The exchange the event was first published to.
pub const ORIGINAL_EXCHANGE: &str = "x-pubsub-original-exchange";
/// The routing key the event was first published with.
pub const ORIGINAL_ROUTING_KEY: &str = "x-pubsub-original-routing-key";
/// Why the message is in the dead-letter queue: `poison`, `exhausted` or `redelivery-limit`.
pub const DEAD_LETTER_KIND: &str = "x-pubsub-dead-letter-kind";
/// The reason in words: the decode error, or the last handler error.
pub const DEAD_LETTER_REASON: &str = "x-pubsub-dead-letter-reason";
/// When the message was dead-lettered (RFC 3339, UTC).
pub const DEAD_LETTERED_AT: &str = "x-pubsub-dead-lettered-at";
/// The queue the message was consumed from.
pub const SOURCE_QUEUE: &str = "x-pubsub-source-queue";
/// How many times an operator replayed the message from a dead-letter queue (`pubsub dlq
/// replay` sets it; the subscriber leaves it alone).
pub const REPLAYED: &str = "x-pubsub-replayed";
/// Quorum queues count deliveries in this header (set by RabbitMQ).
pub(crate) const DELIVERY_COUNT: &str = "x-delivery-count";

/// Longest text written into a header (errors can be long; bodies never are written).
pub(crate) const MAX_TEXT: usize = 1024;

/// `text`, cut to [`MAX_TEXT`] bytes on a character boundary.
pub(crate) fn clip(text: &str) -> String {
    if text.len() <= MAX_TEXT {
        return text.to_owned();
    }
    let mut end = MAX_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// Now, as RFC 3339.
pub(crate) fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_cuts_long_text_on_a_char_boundary() {
        assert_eq!(clip("short"), "short");
        let long = "é".repeat(1000);
        let clipped = clip(&long);
        assert!(clipped.len() <= MAX_TEXT + 3);
        assert!(clipped.ends_with("..."));
    }

    #[test]
    fn now_is_rfc3339() {
        let now = now_rfc3339();
        assert!(now.ends_with('Z'), "{now}");
        assert!(now.contains('T'), "{now}");
    }
}
