use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Receiver;
use pubsub_amqp::{AmqpConfig, Channel, Connection, Delivery, Properties};
use pubsub_core::{handler_fn, Event, EventHandler};
use pubsub_publisher::EventPublisher;
use pubsub_registry::HandlerRegistry;
use pubsub_subscriber::{
    dead_letter_queue_name, retry_queue_name, DeliveryReport, EventSubscriber, RetryPolicy,
    SubscriberBuilder,
};

/// How long a test waits for something that should take milliseconds.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// An exchange shared by the services of one test, and cleanup of every queue they made.
pub(crate) struct Bus {
    pub(crate) config: AmqpConfig,
    pub(crate) exchange: String,
    admin: Channel,
    _admin_connection: Connection,
    queues: Vec<String>,
}

impl Bus {
    pub(crate) fn new() -> Option<Bus> {
        let _ = env_logger::builder().is_test(true).try_init();
        let config = pubsub_testkit::broker()?;
        let mut admin_connection = Connection::open(&config).unwrap();
        let admin = admin_connection.open_channel().unwrap();
        let exchange = pubsub_testkit::unique("bus");
        admin
            .declare_exchange(&exchange, &Default::default())
            .unwrap();
        Some(Bus {
            config,
            exchange,
            admin,
            _admin_connection: admin_connection,
            queues: Vec::new(),
        })
    }

    /// A subscriber builder for a new queue on this bus; its queues are deleted at the end.
    pub(crate) fn service(
        &mut self,
        name: &str,
        registry: HandlerRegistry,
    ) -> (SubscriberBuilder, String) {
        let queue = pubsub_testkit::unique(name);
        self.queues.push(queue.clone());
        let connection = Connection::open(&self.config).unwrap();
        let builder = EventSubscriber::builder(connection, &queue, Arc::new(registry))
            .exchange(&self.exchange)
            .retry(RetryPolicy::new(3, vec![Duration::from_millis(100)]));
        (builder, queue)
    }

    pub(crate) fn publisher(&self) -> EventPublisher {
        let connection = Connection::open(&self.config).unwrap();
        EventPublisher::builder(connection, &self.exchange)
            .app_id("test-publisher")
            .build()
            .unwrap()
    }

    /// Publishes raw bytes, for poison messages.
    pub(crate) fn publish_raw(&self, routing_key: &str, body: &[u8], properties: &Properties) {
        let confirms = self.admin.enable_confirms().unwrap();
        self.admin
            .publish(&self.exchange, routing_key, body, properties, false)
            .unwrap();
        let confirm = confirms.recv_timeout(WAIT).unwrap().unwrap();
        assert!(confirm.ack);
    }

    pub(crate) fn ready(&self, queue: &str) -> u32 {
        self.admin.queue_info(queue).unwrap().message_count
    }

    /// Takes every message of a queue (acked).
    pub(crate) fn drain(&self, queue: &str) -> Vec<Delivery> {
        let mut out = Vec::new();
        while let Some((delivery, _)) = self.admin.get(queue).unwrap() {
            out.push(delivery);
        }
        out
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        for queue in &self.queues {
            let _ = self.admin.delete_queue(queue);
            let _ = self.admin.delete_queue(&dead_letter_queue_name(queue));
            for ms in [100, 200, 1000, 5000] {
                let _ = self
                    .admin
                    .delete_queue(&retry_queue_name(queue, Duration::from_millis(ms)));
            }
        }
        let _ = self.admin.delete_exchange(&self.exchange);
    }
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
