//! When a failed session starts a new outage, and when it is the same failure again.
//!
//! The reconnect backoff starts over only after a session that was healthy for a while: it
//! consumed for [`HEALTHY_AFTER`], or it settled deliveries and then failed differently from
//! the session before. A failure that repeats right after consuming resumes (a message that
//! kills the connection each time it is delivered, a broker that closes every new
//! connection) keeps the backoff growing instead of reconnecting every 0.1 s.

use std::time::Duration;

/// How long a session must consume before its failure counts as a new outage whatever it
/// was.
pub(crate) const HEALTHY_AFTER: Duration = Duration::from_secs(10);

/// How far a failed session got.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SessionRun {
    /// How long it consumed; `None` if it never got as far as consuming.
    pub(crate) consumed_for: Option<Duration>,
    /// How many deliveries it settled (acked or rejected).
    pub(crate) settled: u64,
}

/// Whether a session that got so far and then failed starts a new outage (the backoff
/// starts over); `same_failure` says whether it failed as the session before it did.
pub(crate) fn starts_new_outage(run: &SessionRun, same_failure: bool) -> bool {
    match run.consumed_for {
        None => false,
        Some(consumed) => consumed >= HEALTHY_AFTER || (run.settled > 0 && !same_failure),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn when_the_backoff_starts_over() {
        let check = |consumed_ms: Option<u64>, settled: u64, same: bool, expected: bool| {
            let run = SessionRun {
                consumed_for: consumed_ms.map(Duration::from_millis),
                settled,
            };
            assert_eq!(
                starts_new_outage(&run, same),
                expected,
                "{run:?} same={same}"
            );
        };
        // Never consumed (connection refused, declare failed): the outage goes on.
        check(None, 0, false, false);
        check(None, 0, true, false);
        // A message that kills the connection as soon as it is delivered: nothing settled.
        check(Some(5), 0, true, false);
        check(Some(5), 0, false, false);
        // Settled some, then the same failure again: still the same outage.
        check(Some(200), 40, true, false);
        // Settled some and failed anew: a new outage.
        check(Some(200), 40, false, true);
        // Healthy for a while: a new outage, whatever the failure.
        check(Some(10_000), 0, true, true);
        check(Some(60_000), 1000, true, true);
        check(Some(9_999), 0, false, false);
    }
}
