//! [`LogAnalyticsHandler`]: counts events per routing key.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use pubsub_core::{Event, EventHandler, HandlerResult, Metadata};

/// Counts the events it sees, per routing key; subscribe it to `#` to count them all.
///
/// It reads no data, so it accepts every event.
///
/// ```
/// use demo_domain::LogAnalyticsHandler;
/// use pubsub_core::{Event, EventHandler, Metadata};
/// use serde_json::json;
///
/// let analytics = LogAnalyticsHandler::new();
/// analytics.handle(&Event::new("order", "paid", json!({}))?, &Metadata::default())?;
/// assert_eq!(analytics.count("order.paid"), 1);
/// # Ok::<(), pubsub_core::HandlerError>(())
/// ```
#[derive(Debug, Default)]
pub struct LogAnalyticsHandler {
    counts: Mutex<BTreeMap<String, u64>>,
}

impl LogAnalyticsHandler {
    /// The handler's name in registries, logs and retry headers.
    pub const NAME: &'static str = "log-analytics";

    /// A handler that has counted nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many events of `routing_key` it has seen.
    pub fn count(&self, routing_key: &str) -> u64 {
        self.counts().get(routing_key).copied().unwrap_or(0)
    }

    /// The count of every routing key seen.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.lock().clone()
    }

    /// How many events it has seen in all.
    pub fn total(&self) -> u64 {
        self.lock().values().sum()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, u64>> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl EventHandler for LogAnalyticsHandler {
    fn handle(&self, event: &Event, meta: &Metadata) -> HandlerResult {
        log::debug!("analytics: {event} (attempt {})", meta.attempt());
        *self
            .lock()
            .entry(event.routing_key().to_owned())
            .or_default() += 1;
        Ok(())
    }

    fn name(&self) -> &str {
        Self::NAME
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn counts_per_routing_key() {
        let check = |keys: &[&str], expected: &[(&str, u64)]| {
            let analytics = LogAnalyticsHandler::new();
            for key in keys {
                let (domain, action) = key.split_once('.').unwrap();
                let event = Event::new(domain, action, json!({})).unwrap();
                analytics.handle(&event, &Metadata::default()).unwrap();
            }
            let expected: BTreeMap<String, u64> =
                expected.iter().map(|&(k, n)| (k.to_owned(), n)).collect();
            assert_eq!(analytics.counts(), expected);
            assert_eq!(analytics.total(), keys.len() as u64);
        };
        check(&[], &[]);
        check(&["order.created"], &[("order.created", 1)]);
        check(
            &["order.created", "user.registered", "order.created"],
            &[("order.created", 2), ("user.registered", 1)],
        );
    }
}
