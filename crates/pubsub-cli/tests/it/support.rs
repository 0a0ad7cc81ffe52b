use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pubsub_amqp::QueueConfig;
use pubsub_core::{handler_fn, Event};
use pubsub_publisher::EventPublisher;
use pubsub_registry::HandlerRegistry;
use pubsub_subscriber::{
    dead_letter_queue_name, DeliveryReport, Disposition, EventSubscriber, RetryPolicy,
    RunningSubscriber,
};
use pubsub_testkit::Bus;

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

/// A running service: its subscriber, its delivery reports, and its queue.
pub(crate) type Service = (
    RunningSubscriber,
    crossbeam_channel::Receiver<DeliveryReport>,
    String,
);

/// The test's own bus: an exchange of its own, an admin channel, and the deletion of every
/// queue and exchange the test named through it. `None` when the broker is not there.
pub(crate) fn test_bus() -> Option<Bus> {
    Bus::new("cli")
}

/// What this crate's tests build on a [`Bus`]: services, their dead-letter queues, a
/// publisher.
pub(crate) trait BusExt {
    /// The names of a service's queue and of its dead-letter queue, both deleted at the end
    /// (neither is declared).
    fn service_names(&mut self, prefix: &str) -> (String, String);

    /// A dead-letter queue of its own (and its service queue's name), empty.
    fn dead_letter_queue(&mut self, prefix: &str) -> (String, String);

    /// A plain queue (no subscriber) bound to `<domain>.*` of `event`, whose rejected
    /// messages RabbitMQ dead-letters into its dead-letter queue, and `event` published,
    /// rejected and dead-lettered there. Returns the queue and the dead-letter queue.
    fn rejected_by_the_broker(&mut self, prefix: &str, event: &Event) -> (String, String);

    /// A publisher to the bus's exchange, on a connection of its own.
    fn publisher(&self) -> EventPublisher;

    /// Waits until `queue` holds `n` ready messages, failing the test after [`WAIT`].
    fn wait_ready(&self, queue: &str, n: u32);

    /// A service on the bus whose handler `mailer` fails while `broken` is set, with no
    /// retries, so that a failure goes straight to its dead-letter queue.
    fn service(&mut self, prefix: &str, pattern: &str, broken: Arc<AtomicBool>) -> Service;

    /// Dead-letters `events` through a real subscriber whose handler fails, and returns the
    /// service's queue (still bound, no longer consumed). Its dead-letter queue then holds
    /// exactly these events.
    fn dead_letter(&mut self, prefix: &str, events: &[Event]) -> String;
}

impl BusExt for Bus {
    fn service_names(&mut self, prefix: &str) -> (String, String) {
        let queue = self.queue_name(prefix);
        let dlq = dead_letter_queue_name(&queue);
        self.delete_queue_at_end(&dlq);
        (queue, dlq)
    }

    fn dead_letter_queue(&mut self, prefix: &str) -> (String, String) {
        let (queue, dlq) = self.service_names(prefix);
        self.admin()
            .declare_queue(&dlq, &QueueConfig::default())
            .unwrap();
        (queue, dlq)
    }

    fn rejected_by_the_broker(&mut self, prefix: &str, event: &Event) -> (String, String) {
        let (queue, dlq) = self.dead_letter_queue(prefix);
        let admin = self.admin();
        admin
            .declare_queue(&queue, &QueueConfig::default().dead_letter_to("", &dlq))
            .unwrap();
        admin
            .bind_queue(&queue, self.exchange(), &format!("{}.*", event.domain()))
            .unwrap();
        self.publisher().publish(event).unwrap();
        self.wait_ready(&queue, 1);
        let (delivery, _) = admin.get(&queue).unwrap().unwrap();
        admin.reject(delivery, false).unwrap();
        self.wait_ready(&dlq, 1);
        (queue, dlq)
    }

    fn publisher(&self) -> EventPublisher {
        EventPublisher::builder(self.connection(), self.exchange())
            .app_id("cli-test")
            .build()
            .unwrap()
    }

    fn wait_ready(&self, queue: &str, n: u32) {
        wait_until(&format!("`{queue}` holds {n} messages"), || {
            self.ready(queue) == Some(n)
        });
    }

    fn service(&mut self, prefix: &str, pattern: &str, broken: Arc<AtomicBool>) -> Service {
        let (queue, _) = self.service_names(prefix);
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
                .exchange(self.exchange())
                .retry(RetryPolicy::none())
                .observer(tx)
                .build()
                .unwrap();
        subscriber.setup().unwrap();
        (subscriber.spawn().unwrap(), rx, queue)
    }

    fn dead_letter(&mut self, prefix: &str, events: &[Event]) -> String {
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

pub(crate) fn event(domain: &str, action: &str, n: usize) -> Event {
    Event::new(domain, action, serde_json::json!({ "n": n })).unwrap()
}

pub(crate) fn sorted_ids(events: &[Event]) -> Vec<String> {
    let mut ids: Vec<String> = events.iter().map(|e| e.event_id().to_string()).collect();
    ids.sort();
    ids
}
