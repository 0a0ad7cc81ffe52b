//! What becomes of a delivery, decided without I/O: the facts of the delivery and the
//! result of its handlers go in, an ack, a retry or a dead letter comes out. The session
//! only carries the decision out.
//!
//! # Trusting the retry state
//!
//! The retry state (`x-pubsub-attempt`, `x-pubsub-done`, ...) travels in headers, and any
//! client that may publish to the exchange can set headers. A fresh message with a forged
//! `x-pubsub-done` would skip handlers; a forged `x-pubsub-attempt` or `x-delivery-count`
//! would dead-letter a valid event. So the subscriber believes the headers only where it
//! wrote them ([`Trust::of`]):
//!
//! - the retry state only on a delivery that came back through this subscriber's own retry
//!   path: it arrived from the default exchange (`""`) with the subscriber's queue as routing
//!   key, and the most recent of RabbitMQ's `x-death` records says the broker expired it
//!   from one of this subscriber's delay queues (`<queue>.retry.<delay>`, reason
//!   `expired`). Anything else runs as a first attempt: every matching handler runs, and the
//!   subscriber replaces the headers with its own when it retries or dead-letters it.
//!   Messages on the topic exchange cannot arrive from the default exchange, so nothing a
//!   publisher to the exchange sets is believed;
//! - `x-delivery-count` only on a quorum queue (which counts deliveries in it) and a
//!   delivery the broker marks redelivered.
//!
//! The residual: a client allowed to publish to the default exchange (`amq.default`, with
//! write permission on the queue) can still send a message that looks like a retry. Grant
//! publishing services write permission on their exchange only, never on the subscribers'
//! queues.

use std::time::Duration;

use pubsub_amqp::{HeaderValue, Headers};
use pubsub_registry::InvocationResult;

use crate::headers::{
    DeadLetterKind, Death, RetryState, ATTEMPT, DELIVERY_COUNT, DONE, FAILED_HANDLERS,
    FIRST_FAILURE, LAST_ERROR, X_DEATH,
};
use crate::settings::RetryPolicy;

/// What the subscriber believes of a delivery's headers; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Trust {
    /// The `x-pubsub-*` retry state and original exchange and routing key.
    pub(crate) retry_state: bool,
    /// The `x-delivery-count` header.
    pub(crate) delivery_count: bool,
}

/// How a delivery arrived, as far as trust goes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Arrival<'a> {
    /// The subscriber's queue.
    pub(crate) queue: &'a str,
    /// Whether that queue is a quorum queue.
    pub(crate) quorum: bool,
    /// The exchange the delivery was published to.
    pub(crate) exchange: &'a str,
    /// Its routing key.
    pub(crate) routing_key: &'a str,
    /// Whether the broker marked it redelivered.
    pub(crate) redelivered: bool,
}

impl Arrival<'_> {
    /// Whether the delivery may be a retry coming back (then, and only then, the `x-death`
    /// record is worth reading).
    pub(crate) fn may_be_retry(&self) -> bool {
        self.exchange.is_empty() && self.routing_key == self.queue
    }
}

impl Trust {
    /// What to believe of a delivery that arrived so, whose most recent `x-death` record is
    /// `latest_death`.
    pub(crate) fn of(arrival: &Arrival<'_>, latest_death: Option<&Death>) -> Trust {
        let retry_state = arrival.may_be_retry()
            && latest_death.is_some_and(|death| {
                death.reason.as_deref() == Some("expired")
                    && death
                        .queue
                        .as_deref()
                        .is_some_and(|q| is_retry_queue_of(arrival.queue, q))
            });
        Trust {
            retry_state,
            delivery_count: arrival.quorum && arrival.redelivered,
        }
    }
}

/// Whether `name` is one of `queue`'s delay queues: `<queue>.retry.<n>s` or
/// `<queue>.retry.<n>ms` (any delay: a policy changed since the message was retried still
/// counts).
fn is_retry_queue_of(queue: &str, name: &str) -> bool {
    let Some(delay) = name
        .strip_prefix(queue)
        .and_then(|rest| rest.strip_prefix(".retry."))
    else {
        return false;
    };
    let digits = delay
        .strip_suffix("ms")
        .or_else(|| delay.strip_suffix('s'))
        .unwrap_or("");
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// What the subscriber knows of a delivery before running handlers, after trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Facts<'d> {
    /// Why the frame guard altered the delivery, if it did.
    pub(crate) alteration: Option<&'d str>,
    /// The broker's delivery count, when trusted.
    pub(crate) delivery_count: Option<i64>,
    /// The retry state, when trusted; else a first delivery's.
    pub(crate) retry: RetryState,
}

/// The facts of a delivery that arrived so, reading its headers through `header` only as far
/// as they are trusted (a first delivery from the exchange reads none), and what was trusted.
pub(crate) fn facts<'d>(
    arrival: &Arrival<'_>,
    alteration: Option<&'d str>,
    header: impl Fn(&str) -> Option<HeaderValue>,
) -> (Facts<'d>, Trust) {
    let latest_death = if arrival.may_be_retry() {
        header(X_DEATH).and_then(|deaths| match deaths {
            HeaderValue::Array(items) => items.iter().find_map(Death::from_value),
            _ => None,
        })
    } else {
        None
    };
    let trust = Trust::of(arrival, latest_death.as_ref());
    let retry = if trust.retry_state {
        let mut state = Headers::new();
        for name in [ATTEMPT, DONE, FAILED_HANDLERS, LAST_ERROR, FIRST_FAILURE] {
            if let Some(value) = header(name) {
                state.insert(name.to_owned(), value);
            }
        }
        RetryState::from_headers(&state)
    } else {
        RetryState::first()
    };
    let delivery_count = if trust.delivery_count {
        header(DELIVERY_COUNT).and_then(|c| c.as_i64())
    } else {
        None
    };
    let facts = Facts {
        alteration,
        delivery_count,
        retry,
    };
    (facts, trust)
}

/// What becomes of a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Every handler that ran succeeded: ack.
    Ack,
    /// No handler matched (and none had before): ack, counted as unhandled.
    Unhandled,
    /// Some handler failed: republish to the delay queue for `delay`, with `state` (whose
    /// `attempt` is the next attempt).
    Retry {
        /// How long to wait.
        delay: Duration,
        /// The retry state to write.
        state: RetryState,
    },
    /// Publish to the dead-letter queue.
    DeadLetter {
        /// Why.
        kind: DeadLetterKind,
        /// In words.
        reason: String,
        /// The retry state to write, when handlers ran.
        state: Option<RetryState>,
    },
}

impl Decision {
    /// Dead-letter as poison, with `reason`.
    pub(crate) fn poison(reason: String) -> Decision {
        Decision::DeadLetter {
            kind: DeadLetterKind::Poison,
            reason,
            state: None,
        }
    }
}

/// Before decoding: a delivery the frame guard altered is poison, one delivered too often is
/// dead-lettered; `None` lets it through.
pub(crate) fn admit(facts: &Facts<'_>, max_redeliveries: u32) -> Option<Decision> {
    if let Some(alteration) = facts.alteration {
        return Some(Decision::poison(alteration.to_owned()));
    }
    match facts.delivery_count {
        Some(count) if count >= i64::from(max_redeliveries) => Some(Decision::DeadLetter {
            kind: DeadLetterKind::RedeliveryLimit,
            reason: format!(
                "delivered {count} times without being acknowledged (the consumer crashed or lost its connection while handling it)"
            ),
            state: None,
        }),
        _ => None,
    }
}

/// One failed handler run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    /// The handler's name.
    pub(crate) handler: String,
    /// Its error.
    pub(crate) error: String,
    /// Whether retrying cannot fix it.
    pub(crate) permanent: bool,
}

/// What the handlers did, as far as the decision needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RunSummary {
    /// No handler ran.
    pub(crate) unhandled: bool,
    /// The failed runs, in order.
    pub(crate) failures: Vec<Failure>,
    /// The subscriptions that succeeded; filled only when some failed.
    pub(crate) succeeded: Vec<String>,
}

impl RunSummary {
    /// Summarizes `result`; allocates nothing when every handler succeeded.
    pub(crate) fn of(result: &InvocationResult) -> RunSummary {
        let mut summary = RunSummary {
            unhandled: result.is_unhandled(),
            ..RunSummary::default()
        };
        if result.is_success() {
            return summary;
        }
        for outcome in result.outcomes() {
            match outcome.failure() {
                None => summary.succeeded.push(outcome.subscription().to_owned()),
                Some(f) => summary.failures.push(Failure {
                    handler: outcome.handler().to_owned(),
                    error: f.to_string(),
                    permanent: f.is_permanent(),
                }),
            }
        }
        summary
    }
}

/// The reason a delivery is retried with when its handlers, run elsewhere, did not answer.
pub(crate) const ABANDONED: &str =
    "the handlers did not finish: their task was cancelled or its runtime shut down";

/// How a delivery's run counts when its handlers, run elsewhere (a
/// [`Dispatcher`](crate::Dispatcher)'s job), did not answer: one failure, not permanent (so
/// the retry policy retries it, and counts the attempt), no handler done.
pub(crate) fn abandoned() -> RunSummary {
    RunSummary {
        unhandled: false,
        failures: vec![Failure {
            handler: "dispatch".to_owned(),
            error: ABANDONED.to_owned(),
            permanent: false,
        }],
        succeeded: Vec::new(),
    }
}

/// After the handlers ran on a delivery with the (trusted) `retry` state: ack, retry, or
/// dead-letter. `now` gives the time of a first failure (RFC 3339); it is called only then.
pub(crate) fn after_run(
    retry: &RetryState,
    run: &RunSummary,
    policy: &RetryPolicy,
    now: impl FnOnce() -> String,
) -> Decision {
    if run.failures.is_empty() {
        return if run.unhandled && retry.done.is_empty() {
            Decision::Unhandled
        } else {
            Decision::Ack
        };
    }
    let last_error = run
        .failures
        .iter()
        .map(|f| format!("{}: {}", f.handler, f.error))
        .collect::<Vec<_>>()
        .join("; ");
    let mut done = retry.done.clone();
    done.extend(run.succeeded.iter().cloned());
    let attempt = retry.attempt.max(1);
    let mut state = RetryState {
        attempt,
        done,
        failed_handlers: run.failures.iter().map(|f| f.handler.clone()).collect(),
        last_error: Some(last_error.clone()),
        first_failure: Some(retry.first_failure.clone().unwrap_or_else(now)),
    };
    let permanent = run.failures.iter().all(|f| f.permanent);
    match policy.retry_after_failure(attempt, permanent) {
        Some(delay) => {
            state.attempt = attempt + 1;
            Decision::Retry { delay, state }
        }
        None if permanent => Decision::DeadLetter {
            kind: DeadLetterKind::Poison,
            reason: format!("permanent failure: {last_error}"),
            state: Some(state),
        },
        None => Decision::DeadLetter {
            kind: DeadLetterKind::Exhausted,
            reason: format!("failed {attempt} attempt(s): {last_error}"),
            state: Some(state),
        },
    }
}

#[cfg(test)]
mod tests;
