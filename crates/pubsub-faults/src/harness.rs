//! What every scenario shares: a recording consumer, a paced confirmed publisher, the
//! bookkeeping of lost and duplicated events, and the broker state to restore.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use pubsub_amqp::{AmqpConfig, Connection, ReconnectPolicy};
use pubsub_core::{handler_fn, Event};
use pubsub_publisher::EventPublisher;
use pubsub_registry::HandlerRegistry;
use pubsub_subscriber::{
    dead_letter_queue_name, retry_queue_name, EventSubscriber, RetryPolicy, RunningSubscriber,
    SubscriberBuilder, SubscriberStats,
};

/// Connection names, so that `rabbitmqctl` can find and close our connections.
pub(crate) const CONSUMER: &str = "pubsub-faults-consumer";
pub(crate) const PUBLISHER: &str = "pubsub-faults-publisher";

/// Which events the handlers saw, how often, and when.
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    state: Mutex<RecorderState>,
}

#[derive(Debug, Default)]
struct RecorderState {
    /// Per event: how often it was handled, and when first.
    counts: HashMap<u128, (u32, Instant)>,
    deliveries: u64,
}

impl Recorder {
    pub(crate) fn record(&self, id: u128) {
        if let Ok(mut s) = self.state.lock() {
            s.counts.entry(id).or_insert((0, Instant::now())).0 += 1;
            s.deliveries += 1;
        }
    }

    pub(crate) fn unique(&self) -> usize {
        self.state.lock().map(|s| s.counts.len()).unwrap_or(0)
    }

    pub(crate) fn duplicated(&self) -> u64 {
        self.state
            .lock()
            .map(|s| s.deliveries - s.counts.len() as u64)
            .unwrap_or(0)
    }

    /// How many of `ids` were never handled.
    pub(crate) fn missing(&self, ids: &HashSet<u128>) -> usize {
        self.state
            .lock()
            .map(|s| ids.iter().filter(|id| !s.counts.contains_key(id)).count())
            .unwrap_or(ids.len())
    }

    /// When `id` was first handled.
    pub(crate) fn handled_at(&self, id: u128) -> Option<Instant> {
        self.state.lock().ok()?.counts.get(&id).map(|(_, at)| *at)
    }
}

/// A consumer service under test: its queues, its subscriber thread, what it handled.
pub(crate) struct Flow {
    pub(crate) exchange: String,
    pub(crate) queue: String,
    pub(crate) recorder: Arc<Recorder>,
    subscriber: Option<RunningSubscriber>,
    admin: AmqpConfig,
}

impl Flow {
    /// Starts a subscriber on `consumer` (its config may go through a proxy) with a handler
    /// that records every event, plus whatever `extra` subscribes.
    pub(crate) fn start(
        admin: &AmqpConfig,
        consumer: &AmqpConfig,
        scenario: &str,
        extra: impl FnOnce(&mut HandlerRegistry),
        tweak: impl FnOnce(SubscriberBuilder) -> SubscriberBuilder,
    ) -> Result<Flow> {
        let exchange = pubsub_testkit::unique(&format!("faults-{scenario}"));
        let queue = pubsub_testkit::unique(&format!("faults-{scenario}"));
        let recorder = Arc::new(Recorder::default());
        let mut registry = HandlerRegistry::new();
        {
            let recorder = recorder.clone();
            registry.subscribe(
                "#",
                handler_fn("record", move |event, _| {
                    recorder.record(event.event_id().as_u128());
                    Ok(())
                }),
            )?;
        }
        extra(&mut registry);
        let connection = Connection::open(&consumer.clone().with_connection_name(CONSUMER))
            .context("opening the consumer connection")?;
        let builder = EventSubscriber::builder(connection, &queue, Arc::new(registry))
            .exchange(&exchange)
            .retry(RetryPolicy::new(2, vec![Duration::from_millis(100)]))
            .reconnect(
                ReconnectPolicy::default()
                    .with_delays(Duration::from_millis(50), Duration::from_secs(1))
                    .forever(),
            );
        let mut subscriber = tweak(builder).build()?;
        subscriber.setup()?;
        let subscriber = subscriber.spawn()?;
        Ok(Flow {
            exchange,
            queue,
            recorder,
            subscriber: Some(subscriber),
            admin: admin.clone(),
        })
    }

    pub(crate) fn stats(&self) -> SubscriberStats {
        self.subscriber
            .as_ref()
            .map(RunningSubscriber::stats)
            .unwrap_or_default()
    }

    /// Messages in the dead-letter queue.
    pub(crate) fn dead_letters(&self) -> Result<u32> {
        let mut connection = Connection::open(&self.admin)?;
        let channel = connection.open_channel()?;
        Ok(channel
            .queue_info(&dead_letter_queue_name(&self.queue))?
            .message_count)
    }

    /// Waits until every id in `confirmed` was handled, or `timeout`.
    pub(crate) fn wait_consumed(&self, confirmed: &HashSet<u128>, timeout: Duration) -> bool {
        wait_for(timeout, || self.recorder.missing(confirmed) == 0)
    }

    /// Stops the subscriber and deletes the scenario's exchange and queues.
    pub(crate) fn finish(mut self) -> Result<SubscriberStats> {
        let stats = match self.subscriber.take() {
            Some(s) => s
                .stop()
                .map_err(|e| anyhow!("the subscriber had stopped: {e}"))?,
            None => SubscriberStats::default(),
        };
        self.cleanup();
        Ok(stats)
    }

    fn cleanup(&self) {
        let Ok(mut connection) = Connection::open(&self.admin) else {
            return;
        };
        let Ok(channel) = connection.open_channel() else {
            return;
        };
        let _ = channel.delete_queue(&self.queue);
        let _ = channel.delete_queue(&dead_letter_queue_name(&self.queue));
        let _ = channel.delete_queue(&retry_queue_name(&self.queue, Duration::from_millis(100)));
        let _ = channel.delete_exchange(&self.exchange);
    }
}

impl Drop for Flow {
    fn drop(&mut self) {
        if let Some(subscriber) = self.subscriber.take() {
            let _ = subscriber.stop();
            self.cleanup();
        }
    }
}

/// What a publishing run achieved.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) sent: usize,
    pub(crate) confirmed: HashSet<u128>,
    /// Publish calls that returned an error (their events were published again).
    pub(crate) errors: usize,
    /// When each event was confirmed, in order.
    pub(crate) confirm_times: Vec<(Instant, u128)>,
}

/// Events numbered `0..n`, routing keys cycling like the benchmark's.
pub(crate) fn events(n: usize) -> Vec<Event> {
    const KEYS: [(&str, &str); 3] = [
        ("order", "created"),
        ("order", "paid"),
        ("user", "registered"),
    ];
    (0..n)
        .map(|seq| {
            let (domain, action) = KEYS[seq % KEYS.len()];
            Event::new(domain, action, serde_json::json!({ "seq": seq }))
        })
        .collect::<Result<_, _>>()
        .unwrap_or_default()
}

/// Publishes `n` events (5,000/s, 90 s at most) while `inject` runs on a thread beside them,
/// pacing itself on the publishing progress it is given; returns the tally and what
/// `inject` returned. The injector is let finish even if publishing stopped early.
pub(crate) fn publish_beside<T: Send>(
    broker: &AmqpConfig,
    exchange: &str,
    n: usize,
    inject: impl FnOnce(&AtomicUsize) -> Result<T> + Send,
) -> Result<(Tally, T)> {
    let progress = AtomicUsize::new(0);
    thread::scope(|scope| {
        let injector = scope.spawn(|| inject(&progress));
        let tally = publish(
            broker,
            exchange,
            events(n),
            5_000,
            &progress,
            Duration::from_secs(90),
        );
        progress.store(usize::MAX, Ordering::SeqCst);
        let injected = injector
            .join()
            .map_err(|_| anyhow!("the injecting thread panicked"))?;
        Ok((tally?, injected?))
    })
}

/// Publishes `events` in batches of 50 at about `rate` events per second, counting
/// confirmed ones in `progress`, and publishes failed ones again until `deadline`.
pub(crate) fn publish(
    config: &AmqpConfig,
    exchange: &str,
    events: Vec<Event>,
    rate: u32,
    progress: &AtomicUsize,
    deadline: Duration,
) -> Result<Tally> {
    let connection = Connection::open(&config.clone().with_connection_name(PUBLISHER))
        .context("opening the publisher connection")?;
    let mut publisher = EventPublisher::builder(connection, exchange)
        .app_id("pubsub-faults")
        .reconnect(
            ReconnectPolicy::default()
                .with_delays(Duration::from_millis(50), Duration::from_secs(1))
                .with_max_total(Some(Duration::from_secs(30))),
        )
        .build()?;
    let started = Instant::now();
    let mut tally = Tally {
        sent: events.len(),
        ..Tally::default()
    };
    let mut pending = events;
    let batch: u32 = 50;
    let per_batch = Duration::from_secs_f64(f64::from(batch) / f64::from(rate.max(1)));
    while !pending.is_empty() && started.elapsed() < deadline {
        let mut failed = Vec::new();
        for (i, chunk) in pending.chunks(batch as usize).enumerate() {
            let due = started + per_batch * i as u32;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                thread::sleep(wait);
            }
            for outcome in publisher.publish_all(chunk) {
                match outcome {
                    Ok(()) => {}
                    Err(e) => {
                        tally.errors += 1;
                        log::info!("publish failed, will publish again: {e}");
                        failed.push(e.into_event());
                    }
                }
            }
            let now = Instant::now();
            for event in chunk {
                if !failed
                    .iter()
                    .any(|f: &Event| f.event_id() == event.event_id())
                {
                    let id = event.event_id().as_u128();
                    tally.confirmed.insert(id);
                    tally.confirm_times.push((now, id));
                }
            }
            progress.store(tally.confirmed.len(), Ordering::SeqCst);
            if started.elapsed() >= deadline {
                break;
            }
        }
        pending = failed;
    }
    let _ = publisher.close();
    Ok(tally)
}

/// Polls `done` every 20 ms until it holds or `timeout` passes.
pub(crate) fn wait_for(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `progress` reaches `target` (or 30 s pass).
pub(crate) fn wait_progress(progress: &AtomicUsize, target: usize) {
    wait_for(Duration::from_secs(30), || {
        progress.load(Ordering::SeqCst) >= target
    });
}

/// One scenario's figures.
#[derive(Debug, Default)]
pub(crate) struct Line {
    pub(crate) scenario: &'static str,
    pub(crate) sent: usize,
    pub(crate) confirmed: usize,
    pub(crate) consumed: usize,
    pub(crate) lost: usize,
    pub(crate) duplicated: u64,
    pub(crate) recover: Option<Duration>,
    pub(crate) notes: Vec<String>,
    /// Checks beyond `lost == 0` that failed.
    pub(crate) failures: Vec<String>,
}

impl Line {
    pub(crate) fn new(scenario: &'static str) -> Self {
        Line {
            scenario,
            ..Line::default()
        }
    }

    /// Fills the delivery figures from a publishing tally and a recorder.
    pub(crate) fn count(&mut self, tally: &Tally, recorder: &Recorder) {
        self.sent = tally.sent;
        self.confirmed = tally.confirmed.len();
        self.consumed = recorder.unique();
        self.lost = recorder.missing(&tally.confirmed);
        self.duplicated = recorder.duplicated();
    }

    /// The longest time, over `faults`, from a fault until an event published after it
    /// reached a handler: how long the whole path, publisher to handler, was out.
    pub(crate) fn recovery(&mut self, faults: &[Instant], tally: &Tally, recorder: &Recorder) {
        self.recover = faults
            .iter()
            .filter_map(|&t| {
                tally
                    .confirm_times
                    .iter()
                    .filter(|(confirmed, _)| *confirmed > t)
                    .filter_map(|(_, id)| recorder.handled_at(*id))
                    .filter(|handled| *handled > t)
                    .min()
                    .map(|handled| handled.saturating_duration_since(t))
            })
            .max();
    }

    /// Notes the subscriber's reconnects, and fails unless there were at least `at_least`.
    pub(crate) fn reconnects(&mut self, stats: &SubscriberStats, at_least: u64, failure: &str) {
        self.notes
            .push(format!("consumer reconnects {}", stats.reconnects));
        self.check(stats.reconnects >= at_least, failure);
    }

    pub(crate) fn check(&mut self, ok: bool, what: impl Into<String>) {
        if !ok {
            self.failures.push(what.into());
        }
    }

    pub(crate) fn passed(&self) -> bool {
        self.lost == 0 && self.failures.is_empty()
    }
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<18} sent {:>6}  confirmed {:>6}  consumed {:>6}  lost {:>3}  duplicated {:>4}  recover {:>6}  {}",
            self.scenario,
            self.sent,
            self.confirmed,
            self.consumed,
            self.lost,
            self.duplicated,
            self.recover
                .map(|d| format!("{:.2}s", d.as_secs_f64()))
                .unwrap_or_else(|| "-".to_owned()),
            if self.passed() { "PASS" } else { "FAIL" }
        )?;
        if !self.notes.is_empty() {
            write!(f, "  [{}]", self.notes.join("; "))?;
        }
        for failure in &self.failures {
            write!(f, "\n    failed: {failure}")?;
        }
        Ok(())
    }
}

/// The broker-wide state scenarios change, put back on drop, even after a panic.
pub(crate) struct BrokerGuard {
    watermark: String,
    /// The broker's `consumer_timeout` (ms) before the suite started, if set.
    consumer_timeout: Option<String>,
}

impl BrokerGuard {
    pub(crate) fn new() -> Result<BrokerGuard> {
        let watermark = pubsub_testkit::rabbitmqctl(&[
            "-q",
            "eval",
            "vm_memory_monitor:get_vm_memory_high_watermark().",
        ])
        .map_err(|e| anyhow!(e))?
        .trim()
        .to_owned();
        let watermark = if watermark.parse::<f64>().is_ok_and(|w| w > 0.0) {
            watermark
        } else {
            "0.4".to_owned()
        };
        let consumer_timeout = pubsub_testkit::rabbitmqctl(&[
            "-q",
            "eval",
            "application:get_env(rabbit, consumer_timeout).",
        ])
        .map_err(|e| anyhow!(e))?;
        // `{ok,1800000}`, or `undefined`.
        let consumer_timeout = consumer_timeout
            .trim()
            .strip_prefix("{ok,")
            .and_then(|v| v.strip_suffix('}'))
            .filter(|v| v.parse::<u64>().is_ok())
            .map(str::to_owned);
        Ok(BrokerGuard {
            watermark,
            consumer_timeout,
        })
    }

    /// Sets the broker's ack timeout (`consumer_timeout`), put back by [`restore`](Self::restore).
    pub(crate) fn set_consumer_timeout(&self, timeout: Duration) -> Result<()> {
        let eval = format!(
            "application:set_env(rabbit, consumer_timeout, {}).",
            timeout.as_millis()
        );
        pubsub_testkit::rabbitmqctl(&["-q", "eval", &eval]).map_err(|e| anyhow!(e))?;
        Ok(())
    }

    /// The ack timeout to restore, `None` for unset.
    pub(crate) fn consumer_timeout(&self) -> Option<&str> {
        self.consumer_timeout.as_deref()
    }

    /// The memory watermark to restore.
    pub(crate) fn watermark(&self) -> &str {
        &self.watermark
    }

    /// Starts the broker's application if it is stopped and restores the memory watermark.
    pub(crate) fn restore(&self) {
        Self::restore_to(&self.watermark, self.consumer_timeout());
    }

    /// [`restore`](Self::restore) with explicit values.
    pub(crate) fn restore_to(watermark: &str, consumer_timeout: Option<&str>) {
        let running = pubsub_testkit::rabbitmqctl(&["-q", "eval", "rabbit:is_running()."])
            .map(|out| out.trim() == "true")
            .unwrap_or(false);
        if !running {
            log::warn!("restoring the broker: start_app");
            let _ = pubsub_testkit::rabbitmqctl(&["-q", "start_app"]);
            let _ = pubsub_testkit::rabbitmqctl(&["-q", "await_startup"]);
        }
        let _ = pubsub_testkit::rabbitmqctl(&["-q", "set_vm_memory_high_watermark", watermark]);
        let eval = match consumer_timeout {
            Some(ms) => format!("application:set_env(rabbit, consumer_timeout, {ms})."),
            None => "application:unset_env(rabbit, consumer_timeout).".to_owned(),
        };
        let _ = pubsub_testkit::rabbitmqctl(&["-q", "eval", &eval]);
    }
}

impl Drop for BrokerGuard {
    fn drop(&mut self) {
        self.restore();
    }
}
