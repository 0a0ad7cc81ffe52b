//! [`DeliveryReport`]: what became of each delivery, for observers.

use std::fmt;
use std::time::Duration;

use crate::headers::DeadLetterKind;

/// What the subscriber did with one delivery: which handlers ran, how they fared, and where
/// the message went. Sent to the observer channel given to
/// [`SubscriberBuilder::observer`](crate::SubscriberBuilder::observer), after the delivery is
/// settled with the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryReport {
    /// The delivery's routing key.
    pub routing_key: String,
    /// The event's id, when the body was a valid event.
    pub event_id: Option<String>,
    /// Which attempt this was (1 for the first delivery).
    pub attempt: u32,
    /// Each handler that ran, in order, with its error if it failed.
    pub handlers: Vec<HandlerRun>,
    /// Where the message went.
    pub disposition: Disposition,
}

/// One handler's run on one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerRun {
    /// The handler's name.
    pub handler: String,
    /// `None` if it succeeded, else its error message.
    pub error: Option<String>,
}

/// Where a delivery went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Every matching handler succeeded: acked.
    Acked,
    /// No handler matched: acked.
    Unhandled,
    /// Some handler failed: sent to a retry queue, to come back after `delay`.
    Retried {
        /// The attempt number the retry will have.
        next_attempt: u32,
        /// The wait before it.
        delay: Duration,
    },
    /// Sent to the dead-letter queue.
    DeadLettered {
        /// Why.
        kind: DeadLetterKind,
        /// The reason, as written in the `x-pubsub-dead-letter-reason` header.
        reason: String,
    },
    /// The dead-letter queue refused it (full): rejected without requeue, and logged.
    Dropped {
        /// Why it could not be dead-lettered.
        reason: String,
    },
}

impl fmt::Display for Disposition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Disposition::Acked => f.write_str("acked"),
            Disposition::Unhandled => f.write_str("acked (no handler)"),
            Disposition::Retried {
                next_attempt,
                delay,
            } => write!(
                f,
                "retry as attempt {next_attempt} in {:.1}s",
                delay.as_secs_f64()
            ),
            Disposition::DeadLettered { kind, reason } => {
                write!(f, "dead-lettered ({kind}): {reason}")
            }
            Disposition::Dropped { reason } => write!(f, "dropped: {reason}"),
        }
    }
}
