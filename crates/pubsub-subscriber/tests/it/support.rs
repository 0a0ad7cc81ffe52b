use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Receiver;
use pubsub_amqp::ReconnectPolicy;
use pubsub_core::{handler_fn, Event, EventHandler};
use pubsub_publisher::EventPublisher;
use pubsub_registry::HandlerRegistry;
use pubsub_subscriber::{
    dead_letter_queue_name, retry_queue_name, DeliveryReport, EventSubscriber, RetryPolicy,
    SubscriberBuilder,
};
use pubsub_testkit::Bus;

/// How long a test waits for something that should take milliseconds.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// The delays of the retry queues a test may make (see [`BusExt::service`]).
const RETRY_DELAYS_MS: [u64; 4] = [100, 200, 1000, 5000];

/// The test's own bus (an exchange shared by its services, deleted with every queue they
/// made), with the test's log going to its output; `None` when the broker is not there.
pub(crate) fn test_bus() -> Option<Bus> {
    let _ = env_logger::builder().is_test(true).try_init();
    Bus::new("bus")
}

/// What this crate's tests build on a [`Bus`].
pub(crate) trait BusExt {
    /// A subscriber builder for a new queue on this bus (retrying 3 times after 100 ms);
    /// the queue, its dead-letter queue and its retry queues are deleted at the end.
    fn service(&mut self, name: &str, registry: HandlerRegistry) -> (SubscriberBuilder, String);

    /// A publisher to the bus's exchange, on a connection of its own.
    fn publisher(&self) -> EventPublisher;
}

impl BusExt for Bus {
    fn service(&mut self, name: &str, registry: HandlerRegistry) -> (SubscriberBuilder, String) {
        let queue = self.queue_name(name);
        self.delete_queue_at_end(&dead_letter_queue_name(&queue));
        for ms in RETRY_DELAYS_MS {
            self.delete_queue_at_end(&retry_queue_name(&queue, Duration::from_millis(ms)));
        }
        let builder = EventSubscriber::builder(self.connection(), &queue, Arc::new(registry))
            .exchange(self.exchange())
            .retry(RetryPolicy::new(3, vec![Duration::from_millis(100)]));
        (builder, queue)
    }

    fn publisher(&self) -> EventPublisher {
        EventPublisher::builder(self.connection(), self.exchange())
            .app_id("test-publisher")
            .build()
            .unwrap()
    }
}

/// Reconnects after 20 ms to 100 ms, for ever: for a test whose sessions end on purpose (a
/// failed commit) and must come back at once.
pub(crate) fn quick_reconnect() -> ReconnectPolicy {
    ReconnectPolicy::default()
        .with_delays(Duration::from_millis(20), Duration::from_millis(100))
        .forever()
}

/// Receives `n` reports, failing the test after [`WAIT`].
pub(crate) fn reports(rx: &Receiver<DeliveryReport>, n: usize) -> Vec<DeliveryReport> {
    (0..n)
        .map(|i| {
            rx.recv_timeout(WAIT)
                .unwrap_or_else(|_| panic!("only {i} of {n} delivery reports arrived"))
        })
        .collect()
}

pub(crate) fn event(domain: &str, action: &str, n: usize) -> Event {
    Event::new(domain, action, serde_json::json!({ "n": n })).unwrap()
}

/// A handler named `name` that counts its runs in `runs` and succeeds.
pub(crate) fn counting(name: &str, runs: &Arc<AtomicUsize>) -> impl EventHandler {
    let runs = runs.clone();
    handler_fn(name, move |_, _| {
        runs.fetch_add(1, Ordering::SeqCst);
        Ok(())
    })
}
