use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pubsub_amqp::{AmqpConfig, Channel, Connection, Properties, QueueConfig};
use pubsub_core::{handler_fn, Event};
use pubsub_publisher::EventPublisher;
use pubsub_registry::HandlerRegistry;
use pubsub_subscriber::{
    dead_letter_queue_name, DeliveryReport, Disposition, EventSubscriber, RetryPolicy,
    RunningSubscriber,
};

/// How long a test waits for something that should take milliseconds.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// The `pubsub` binary with `args`, stdin closed.
pub(crate) fn pubsub(args: &[&str]) -> Output {
    pubsub_with_stdin(args, None)
}

/// The `pubsub` binary with `args` and `stdin` piped in (`None`: no stdin at all).
pub(crate) fn pubsub_with_stdin(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pubsub"))
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the pubsub binary runs");
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).unwrap();
    }
    child.wait_with_output().unwrap()
}

pub(crate) fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub(crate) fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts the exit code, showing the output when it differs.
pub(crate) fn assert_exit(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        stdout(output),
        stderr(output)
    );
}

/// Polls `check` until it holds, failing the test after [`WAIT`].
pub(crate) fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An exchange of its own for one test, an admin channel, and cleanup of every queue and
/// exchange the test made.
pub(crate) struct Bus {
    pub(crate) config: AmqpConfig,
    pub(crate) exchange: String,
    pub(crate) admin: Channel,
    _admin_connection: Connection,
    queues: Vec<String>,
    exchanges: Vec<String>,
}

impl Bus {
    pub(crate) fn new() -> Option<Bus> {
        let config = pubsub_testkit::broker()?;
        let mut admin_connection = Connection::open(&config).unwrap();
        let admin = admin_connection.open_channel().unwrap();
        let exchange = pubsub_testkit::unique("cli");
        admin
            .declare_exchange(&exchange, &Default::default())
            .unwrap();
        Some(Bus {
            config,
            exchange: exchange.clone(),
            admin,
            _admin_connection: admin_connection,
            queues: Vec::new(),
            exchanges: vec![exchange],
        })
    }

    pub(crate) fn connection(&self) -> Connection {
        Connection::open(&self.config).unwrap()
    }

    /// A name for a queue (and its dead-letter queue) deleted at the end of the test.
    pub(crate) fn queue_name(&mut self, prefix: &str) -> String {
        let queue = pubsub_testkit::unique(prefix);
        self.queues.push(queue.clone());
        self.queues.push(dead_letter_queue_name(&queue));
        queue
    }

    /// A name for an exchange deleted at the end of the test (not declared).
    pub(crate) fn exchange_name(&mut self, prefix: &str) -> String {
        let exchange = pubsub_testkit::unique(prefix);
        self.exchanges.push(exchange.clone());
        exchange
    }

    /// A durable queue bound to the bus with `binding_key`.
    pub(crate) fn bound_queue(&mut self, prefix: &str, binding_key: &str) -> String {
        self.bound_queue_with(prefix, binding_key, &QueueConfig::default())
    }

    pub(crate) fn bound_queue_with(
        &mut self,
        prefix: &str,
        binding_key: &str,
        config: &QueueConfig,
    ) -> String {
        let queue = self.queue_name(prefix);
        self.admin.declare_queue(&queue, config).unwrap();
        self.admin
            .bind_queue(&queue, &self.exchange, binding_key)
            .unwrap();
        queue
    }

    /// A dead-letter queue of its own (and its service queue's name), empty.
    pub(crate) fn dead_letter_queue(&mut self, prefix: &str) -> (String, String) {
        let queue = self.queue_name(prefix);
        let dlq = dead_letter_queue_name(&queue);
        self.admin
            .declare_queue(&dlq, &QueueConfig::default())
            .unwrap();
        (queue, dlq)
    }

    pub(crate) fn publisher(&self) -> EventPublisher {
        EventPublisher::builder(self.connection(), &self.exchange)
            .app_id("cli-test")
            .build()
            .unwrap()
    }

    /// Publishes raw bytes with confirms (on a channel of its own: a missing exchange closes
    /// it).
    pub(crate) fn publish_raw(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: &Properties,
    ) {
        let mut connection = self.connection();
        let channel = connection.open_channel().unwrap();
        let confirms = channel.enable_confirms().unwrap();
        channel
            .publish(exchange, routing_key, body, properties, false)
            .unwrap();
        let confirm = confirms.recv_timeout(WAIT).unwrap().unwrap();
        assert!(confirm.ack);
        connection.close().unwrap();
    }

    pub(crate) fn ready(&self, queue: &str) -> u32 {
        self.admin.queue_info(queue).unwrap().message_count
    }

    pub(crate) fn wait_ready(&self, queue: &str, n: u32) {
        wait_until(&format!("`{queue}` holds {n} messages"), || {
            self.ready(queue) == n
        });
    }

    /// Takes every message of a queue (acked).
    pub(crate) fn drain(&self, queue: &str) -> Vec<Taken> {
        let mut out = Vec::new();
        while let Some((mut delivery, _)) = self.admin.get(queue).unwrap() {
            out.push(Taken {
                exchange: delivery.exchange().to_owned(),
                routing_key: delivery.routing_key().to_owned(),
                properties: delivery.properties(),
                body: delivery.take_body(),
            });
            self.admin.ack(delivery).unwrap();
        }
        out
    }

    /// A service on the bus whose handler `mailer` fails while `broken` is set, with no
    /// retries, so that a failure goes straight to its dead-letter queue.
    pub(crate) fn service(
        &mut self,
        prefix: &str,
        pattern: &str,
        broken: Arc<AtomicBool>,
    ) -> (
        RunningSubscriber,
        crossbeam_channel::Receiver<DeliveryReport>,
        String,
    ) {
        let queue = self.queue_name(prefix);
        let mut registry = HandlerRegistry::new();
        registry
            .subscribe(
                pattern,
                handler_fn("mailer", move |_, _| {
                    if broken.load(Ordering::SeqCst) {
                        Err("smtp server unavailable".into())
                    } else {
                        Ok(())
                    }
                }),
            )
            .unwrap();
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut subscriber =
            EventSubscriber::builder(self.connection(), &queue, Arc::new(registry))
                .exchange(&self.exchange)
                .retry(RetryPolicy::none())
                .observer(tx)
                .build()
                .unwrap();
        subscriber.setup().unwrap();
        (subscriber.spawn().unwrap(), rx, queue)
    }

    /// Dead-letters `events` through a real subscriber whose handler fails, and returns the
    /// service's queue (still bound, no longer consumed). Its dead-letter queue then holds
    /// exactly these events.
    pub(crate) fn dead_letter(&mut self, prefix: &str, events: &[Event]) -> String {
        let (running, reports, queue) = self.service(prefix, "#", Arc::new(AtomicBool::new(true)));
        let mut publisher = self.publisher();
        for event in events {
            publisher.publish(event).unwrap();
        }
        for _ in events {
            let report = reports.recv_timeout(WAIT).expect("a delivery report");
            assert!(
                matches!(report.disposition, Disposition::DeadLettered { .. }),
                "{report:?}"
            );
        }
        running.stop().unwrap();
        publisher.close().unwrap();
        self.wait_ready(&dead_letter_queue_name(&queue), events.len() as u32);
        queue
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        for queue in &self.queues {
            let _ = self.admin.delete_queue(queue);
        }
        for exchange in &self.exchanges {
            let _ = self.admin.delete_exchange(exchange);
        }
    }
}

/// A message taken from a queue.
#[derive(Debug)]
pub(crate) struct Taken {
    pub(crate) exchange: String,
    pub(crate) routing_key: String,
    pub(crate) properties: Properties,
    pub(crate) body: Vec<u8>,
}

pub(crate) fn event(domain: &str, action: &str, n: usize) -> Event {
    Event::new(domain, action, serde_json::json!({ "n": n })).unwrap()
}

pub(crate) fn sorted_ids(events: &[Event]) -> Vec<String> {
    let mut ids: Vec<String> = events.iter().map(|e| e.event_id().to_string()).collect();
    ids.sort();
    ids
}
