//! Counters of a subscriber, readable from any thread.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::headers::DeadLetterKind;

/// A point-in-time copy of a subscriber's counters.
///
/// Every delivery received ends in exactly one of `acked`, `retried`, `dead_lettered_poison`,
/// `dead_lettered_exhausted`, `dead_lettered_redelivery_limit` or `dropped`, or is still in
/// flight (or was handed back to the broker on a lost connection, in which case it is
/// received again: see `redelivered`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SubscriberStats {
    /// Deliveries taken from the queue.
    pub received: u64,
    /// Deliveries the broker had delivered before (to a consumer that did not ack them).
    pub redelivered: u64,
    /// Deliveries acknowledged after every matching handler succeeded (or none matched).
    pub acked: u64,
    /// Of the acked ones, those no handler matched.
    pub unhandled: u64,
    /// Deliveries sent to a retry queue because a handler failed.
    pub retried: u64,
    /// Deliveries dead-lettered at once because they are not valid events.
    pub dead_lettered_poison: u64,
    /// Deliveries dead-lettered because handlers still failed on the last attempt.
    pub dead_lettered_exhausted: u64,
    /// Deliveries dead-lettered because the broker had delivered them too often (a quorum
    /// queue's delivery count over `max_redeliveries`).
    pub dead_lettered_redelivery_limit: u64,
    /// Deliveries the dead-letter queue refused (full), rejected without requeue; each is
    /// logged as an error.
    pub dropped: u64,
    /// Handler runs that failed (errors and panics), over all deliveries.
    pub handler_failures: u64,
    /// Times the subscriber reconnected after losing its connection.
    pub reconnects: u64,
    /// Deliveries taken from the queue and not settled yet (being handled, or decided and
    /// waiting for their ack): a gauge, not a count.
    pub in_flight: u64,
}

impl SubscriberStats {
    /// Deliveries that reached the dead-letter queue, for any reason.
    pub fn dead_lettered(&self) -> u64 {
        self.dead_lettered_poison
            + self.dead_lettered_exhausted
            + self.dead_lettered_redelivery_limit
    }

    /// Deliveries dead-lettered as `kind`.
    pub fn dead_lettered_as(&self, kind: DeadLetterKind) -> u64 {
        match kind {
            DeadLetterKind::Poison => self.dead_lettered_poison,
            DeadLetterKind::Exhausted => self.dead_lettered_exhausted,
            DeadLetterKind::RedeliveryLimit => self.dead_lettered_redelivery_limit,
        }
    }

    /// Deliveries fully settled (acked, retried, dead-lettered or dropped).
    pub fn settled(&self) -> u64 {
        self.acked + self.retried + self.dead_lettered() + self.dropped
    }
}

/// Adds counter by counter: the totals of several workers. The gauge `in_flight` adds up
/// too (each worker's deliveries in flight).
impl std::ops::AddAssign<&SubscriberStats> for SubscriberStats {
    fn add_assign(&mut self, more: &SubscriberStats) {
        // Destructured, so that a new counter cannot be left out of the sum.
        let SubscriberStats {
            received,
            redelivered,
            acked,
            unhandled,
            retried,
            dead_lettered_poison,
            dead_lettered_exhausted,
            dead_lettered_redelivery_limit,
            dropped,
            handler_failures,
            reconnects,
            in_flight,
        } = *more;
        self.received += received;
        self.redelivered += redelivered;
        self.acked += acked;
        self.unhandled += unhandled;
        self.retried += retried;
        self.dead_lettered_poison += dead_lettered_poison;
        self.dead_lettered_exhausted += dead_lettered_exhausted;
        self.dead_lettered_redelivery_limit += dead_lettered_redelivery_limit;
        self.dropped += dropped;
        self.handler_failures += handler_failures;
        self.reconnects += reconnects;
        self.in_flight += in_flight;
    }
}

/// The totals of several workers: the one sum every pool of subscribers uses.
impl<'a> std::iter::Sum<&'a SubscriberStats> for SubscriberStats {
    fn sum<I: Iterator<Item = &'a SubscriberStats>>(iter: I) -> SubscriberStats {
        iter.copied().sum()
    }
}

/// The totals of several workers (see the `&SubscriberStats` form).
impl std::iter::Sum<SubscriberStats> for SubscriberStats {
    fn sum<I: Iterator<Item = SubscriberStats>>(iter: I) -> SubscriberStats {
        iter.fold(SubscriberStats::default(), |mut total, more| {
            total += &more;
            total
        })
    }
}

impl fmt::Display for SubscriberStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "received {}, acked {} ({} unhandled), retried {}, dead-lettered {} ({} poison, {} exhausted, {} over the redelivery limit), dropped {}, handler failures {}, reconnects {}, in flight {}",
            self.received,
            self.acked,
            self.unhandled,
            self.retried,
            self.dead_lettered(),
            self.dead_lettered_poison,
            self.dead_lettered_exhausted,
            self.dead_lettered_redelivery_limit,
            self.dropped,
            self.handler_failures,
            self.reconnects,
            self.in_flight
        )
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) received: AtomicU64,
    pub(crate) redelivered: AtomicU64,
    pub(crate) acked: AtomicU64,
    pub(crate) unhandled: AtomicU64,
    pub(crate) retried: AtomicU64,
    pub(crate) dead_lettered_poison: AtomicU64,
    pub(crate) dead_lettered_exhausted: AtomicU64,
    pub(crate) dead_lettered_redelivery_limit: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) handler_failures: AtomicU64,
    pub(crate) reconnects: AtomicU64,
    pub(crate) in_flight: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Lowers a gauge (never below zero).
    pub(crate) fn sub(counter: &AtomicU64, n: u64) {
        let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
            Some(v.saturating_sub(n))
        });
    }

    pub(crate) fn snapshot(&self) -> SubscriberStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SubscriberStats {
            received: get(&self.received),
            redelivered: get(&self.redelivered),
            acked: get(&self.acked),
            unhandled: get(&self.unhandled),
            retried: get(&self.retried),
            dead_lettered_poison: get(&self.dead_lettered_poison),
            dead_lettered_exhausted: get(&self.dead_lettered_exhausted),
            dead_lettered_redelivery_limit: get(&self.dead_lettered_redelivery_limit),
            dropped: get(&self.dropped),
            handler_failures: get(&self.handler_failures),
            reconnects: get(&self.reconnects),
            in_flight: get(&self.in_flight),
        }
    }
}

/// Reads a subscriber's counters from any thread; cheap to clone.
#[derive(Debug, Clone)]
pub struct StatsHandle {
    pub(crate) counters: Arc<Counters>,
}

impl StatsHandle {
    /// The counters now.
    pub fn snapshot(&self) -> SubscriberStats {
        self.counters.snapshot()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every counter adds up: each field gets a distinct value, and the struct is built and
    /// read by destructuring, so that a new field fails to compile here until it is summed.
    #[test]
    fn every_counter_adds_up() {
        let one = SubscriberStats {
            received: 1,
            redelivered: 2,
            acked: 3,
            unhandled: 4,
            retried: 5,
            dead_lettered_poison: 6,
            dead_lettered_exhausted: 7,
            dead_lettered_redelivery_limit: 8,
            dropped: 9,
            handler_failures: 10,
            reconnects: 11,
            in_flight: 12,
        };
        let total: SubscriberStats = [one, one, one].iter().sum();
        let SubscriberStats {
            received,
            redelivered,
            acked,
            unhandled,
            retried,
            dead_lettered_poison,
            dead_lettered_exhausted,
            dead_lettered_redelivery_limit,
            dropped,
            handler_failures,
            reconnects,
            in_flight,
        } = total;
        assert_eq!(
            [
                received,
                redelivered,
                acked,
                unhandled,
                retried,
                dead_lettered_poison,
                dead_lettered_exhausted,
                dead_lettered_redelivery_limit,
                dropped,
                handler_failures,
                reconnects,
                in_flight,
            ],
            [3, 6, 9, 12, 15, 18, 21, 24, 27, 30, 33, 36]
        );
        let owned: SubscriberStats = vec![one, one, one].into_iter().sum();
        assert_eq!(owned, total);
        assert_eq!(total.settled(), 3 * (3 + 5 + 6 + 7 + 8 + 9));
    }
}
