//! Counters of a publisher, readable from any thread.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A point-in-time copy of a publisher's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PublisherStats {
    /// Events handed to the broker (a republish after a lost connection counts again).
    pub published: u64,
    /// Events the broker confirmed (routed or not).
    pub confirmed: u64,
    /// Events the broker refused with a negative confirm.
    pub nacked: u64,
    /// Events the broker returned because no queue was bound for them.
    pub returned: u64,
    /// Times the publisher reconnected after losing its connection.
    pub reconnects: u64,
}

impl fmt::Display for PublisherStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "published {}, confirmed {}, nacked {}, returned {}, reconnects {}",
            self.published, self.confirmed, self.nacked, self.returned, self.reconnects
        )
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) published: AtomicU64,
    pub(crate) confirmed: AtomicU64,
    pub(crate) nacked: AtomicU64,
    pub(crate) returned: AtomicU64,
    pub(crate) reconnects: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn snapshot(&self) -> PublisherStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        PublisherStats {
            published: get(&self.published),
            confirmed: get(&self.confirmed),
            nacked: get(&self.nacked),
            returned: get(&self.returned),
            reconnects: get(&self.reconnects),
        }
    }
}

/// Reads a publisher's counters from any thread (a metrics endpoint, say); cheap to clone.
#[derive(Debug, Clone)]
pub struct StatsHandle {
    pub(crate) counters: Arc<Counters>,
}

impl StatsHandle {
    /// The counters now.
    pub fn snapshot(&self) -> PublisherStats {
        self.counters.snapshot()
    }
}
