//! What a publisher does when an attempt to publish failed: reconnect and publish the
//! unconfirmed events again, open a new channel for the next publish, or fail.
//!
//! A lost connection (the broker restarted, the network failed, no confirm came in time) is
//! reconnected after the reconnect policy's next delay, as long as the policy allows; then
//! the events the broker had not confirmed are published again. A channel the broker closed
//! (a missing exchange) cannot be used again: the events fail, and the next publish goes
//! through a new channel on the same connection. Anything else (a blocked connection past its
//! timeout, refused credentials on reconnect) fails the events and leaves the session as it
//! is.

use std::time::Duration;

use crate::error::Error;

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recovery {
    /// Wait `after`, open a new connection and publish the unconfirmed events again.
    Reconnect {
        /// The reconnect policy's next delay.
        after: Duration,
    },
    /// Fail the unconfirmed events, and open a new channel on the same connection for the
    /// next publish.
    ReopenChannel,
    /// Fail the unconfirmed events.
    Fail,
}

/// What `error` says about the session it happened on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The connection is gone for a reason a reconnect can fix.
    ConnectionLost,
    /// The broker closed the channel (a publish to a missing exchange).
    ChannelClosed,
    /// Neither: the session is as it was.
    Other,
}

impl Failure {
    /// The failure `error` is.
    pub(crate) fn of(error: &Error) -> Failure {
        match error {
            Error::Amqp(e) if e.is_connection_lost() => Failure::ConnectionLost,
            Error::Amqp(pubsub_amqp::Error::ChannelClosed { .. })
            | Error::Amqp(pubsub_amqp::Error::NotFound { .. }) => Failure::ChannelClosed,
            _ => Failure::Other,
        }
    }
}

/// What to do after an attempt failed with `error`. `next_delay` is the reconnect policy's
/// next delay for this outage, `None` once the policy gives up; it is asked only for a lost
/// connection (asking starts the outage's backoff).
pub(crate) fn recover(error: &Error, next_delay: impl FnOnce() -> Option<Duration>) -> Recovery {
    match Failure::of(error) {
        Failure::ConnectionLost => match next_delay() {
            Some(after) => Recovery::Reconnect { after },
            None => Recovery::Fail,
        },
        Failure::ChannelClosed => Recovery::ReopenChannel,
        Failure::Other => Recovery::Fail,
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    const LOST: fn() -> Error = || {
        Error::Amqp(pubsub_amqp::Error::ConnectionLost {
            reason: "socket closed".to_owned(),
        })
    };

    /// `expected` for `error`, with the policy's next delay `delay`; checks whether the
    /// policy was asked.
    fn check(error: Error, delay: Option<u64>, expected: Recovery, asks_policy: bool) {
        let asked = Cell::new(false);
        let got = recover(&error, || {
            asked.set(true);
            delay.map(Duration::from_millis)
        });
        assert_eq!(got, expected, "{error:?} with delay {delay:?}");
        assert_eq!(asked.get(), asks_policy, "{error:?}: policy asked");
    }

    #[test]
    fn a_lost_connection_reconnects_while_the_policy_allows() {
        let reconnect = |ms| Recovery::Reconnect {
            after: Duration::from_millis(ms),
        };
        check(LOST(), Some(100), reconnect(100), true);
        check(LOST(), Some(0), reconnect(0), true);
        check(LOST(), None, Recovery::Fail, true);
        let unreachable = Error::Amqp(pubsub_amqp::Error::Unreachable {
            address: "localhost:5672".to_owned(),
            vhost: "/".to_owned(),
            attempts: 1,
            cause: "connection refused".to_owned(),
        });
        check(unreachable, Some(250), reconnect(250), true);
        // No confirm in time: the connection is taken for dead.
        let silent = Error::Amqp(pubsub_amqp::Error::Timeout {
            what: "waiting for the broker's publisher confirms",
            after: Duration::from_secs(30),
        });
        check(silent.clone(), Some(100), reconnect(100), true);
        check(silent, None, Recovery::Fail, true);
    }

    #[test]
    fn a_closed_channel_is_reopened_and_the_events_fail() {
        let missing = Error::Amqp(pubsub_amqp::Error::NotFound {
            kind: "exchange",
            name: "events".to_owned(),
        });
        check(missing, Some(100), Recovery::ReopenChannel, false);
        let closed = Error::Amqp(pubsub_amqp::Error::ChannelClosed {
            code: 406,
            message: "PRECONDITION_FAILED".to_owned(),
        });
        check(closed, None, Recovery::ReopenChannel, false);
    }

    #[test]
    fn other_failures_fail_without_asking_the_policy() {
        let blocked = Error::Amqp(pubsub_amqp::Error::Blocked {
            reason: "low on memory".to_owned(),
            waited: Duration::from_secs(60),
        });
        check(blocked, Some(100), Recovery::Fail, false);
        let refused = Error::Amqp(pubsub_amqp::Error::AuthenticationFailed {
            address: "localhost:5672".to_owned(),
            vhost: "/".to_owned(),
            username: "guest".to_owned(),
        });
        check(refused, Some(100), Recovery::Fail, false);
        let invalid = Error::Amqp(pubsub_amqp::Error::InvalidMessage {
            field: "routing_key",
            message: "too long".to_owned(),
        });
        check(invalid, Some(100), Recovery::Fail, false);
        check(Error::Nacked, Some(100), Recovery::Fail, false);
    }

    #[test]
    fn failures_are_classified_by_what_they_say_of_the_session() {
        assert_eq!(Failure::of(&LOST()), Failure::ConnectionLost);
        assert_eq!(
            Failure::of(&Error::Unroutable {
                exchange: "events".to_owned(),
                routing_key: "a.b".to_owned(),
            }),
            Failure::Other
        );
        assert_eq!(
            Failure::of(&Error::Amqp(pubsub_amqp::Error::Inequivalent {
                kind: "exchange",
                name: "events".to_owned(),
                argument: "type".to_owned(),
                message: "inequivalent arg 'type'".to_owned(),
            })),
            Failure::Other
        );
    }
}
