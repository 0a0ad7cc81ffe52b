//! [`run`]: the demo's flow, over RabbitMQ or in process.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use crossbeam_channel::Receiver;
use demo_domain::Handlers;
use pubsub::outbox::Outbox;
use pubsub::subscriber::{DeliveryReport, HandlerRun};
use pubsub::{AmqpConfig, EventBus, PublishOptions, RetryPolicy, Unroutable};

use crate::flow::{Labeled, Workload};
use crate::report::{Attempt, Handled, HandlerTally, Outcome, Progress, RunReport};

/// How many times the demo's subscriber runs a failing handler in all.
pub const MAX_ATTEMPTS: u32 = 3;

/// The waits before the demo's retries: the subscriber's retry queues are `<queue>.retry.1s`
/// and `<queue>.retry.5s`.
pub const RETRY_DELAYS: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(5)];

/// How often a wait wakes up to report progress and check on the subscriber.
const TICK: Duration = Duration::from_millis(100);

/// Where the events go.
#[derive(Debug, Clone)]
pub enum Transport {
    /// Straight to the handlers, in this thread: an in-process bus, no broker (the
    /// MediatR-style mode).
    InProcess,
    /// Through the broker: a bus whose publishing thread and worker each have their own
    /// connection.
    Broker(Box<AmqpConfig>),
}

/// Names and limits of a run over the broker.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The exchange to publish to and bind the queue to.
    pub exchange: String,
    /// The queue the subscriber consumes.
    pub queue: String,
    /// Deliveries the broker may send ahead of the acks.
    pub prefetch: u16,
    /// Events per pipelined batch.
    pub batch: usize,
    /// Give up when no event has been handled for this long.
    pub timeout: Duration,
    /// Leave the queue, its retry queues and its dead-letter queue on the broker.
    pub keep_queue: bool,
    /// Keep every event of the run in this database too (over the broker): the store's
    /// subscriber on queue `<queue>.store`.
    pub store: Option<pubsub_store::Database>,
}

impl Default for Settings {
    /// Exchange `events` (the original design's), queue `demo`, prefetch 100, batches of 500,
    /// 30 s timeout, queues deleted at the end.
    fn default() -> Self {
        Settings {
            exchange: "events".to_owned(),
            queue: "demo".to_owned(),
            prefetch: 100,
            batch: 500,
            timeout: Duration::from_secs(30),
            keep_queue: false,
            store: None,
        }
    }
}

/// Sends `workload` through `transport` into the demo's handlers (`handlers`, subscribed as
/// [`demo_domain::SUBSCRIPTIONS`] says), waits until every event has been handled, and
/// reports what happened. `progress` is called once before the first event is sent (over the
/// broker: once connected, with the topology declared), then as events are published and
/// handled.
///
/// Over the broker the run is one service on an [`EventBus`] named after `settings.queue`:
/// `start` declares the topology and starts the worker (its own thread and connection) and
/// the publishing thread (another connection, pipelined confirms); the run publishes through
/// the bus's handle, waits on the delivery reports (never longer than `settings.timeout`
/// without one), and tears the bus down (its queues deleted, a dead-letter queue that holds
/// events kept) unless `settings.keep_queue`. In process, the same handlers run on an
/// in-process bus.
///
/// # Errors
///
/// The broker cannot be reached or refuses the connection (a [`pubsub::amqp::Error`] in the
/// chain), a publish fails, the subscriber stops on an error, or no event is handled for
/// `settings.timeout`.
pub fn run(
    workload: Workload,
    transport: &Transport,
    settings: &Settings,
    handlers: &Handlers,
    progress: &mut dyn FnMut(Progress),
) -> anyhow::Result<RunReport> {
    match transport {
        Transport::InProcess => in_process(workload, settings, handlers, progress),
        Transport::Broker(config) => broker(workload, config, settings, handlers, progress),
    }
}

fn in_process(
    workload: Workload,
    settings: &Settings,
    handlers: &Handlers,
    progress: &mut dyn FnMut(Progress),
) -> anyhow::Result<RunReport> {
    let mut bus = EventBus::in_process(&settings.queue)?;
    subscribe(&mut bus, handlers)?;
    bus.start()?;
    let mut tracker = Tracker::new(workload);
    progress(tracker.progress());
    let started = Instant::now();
    let batch = settings.batch.max(1) as u64;
    let mut start = 0;
    while start < workload.len() {
        for labeled in workload.events(start, batch)? {
            let id = tracker.expect(&labeled);
            // The order's row first (in process there is no relay: the event is dispatched
            // here, after its row is committed).
            handlers
                .shop()
                .commit(None, std::slice::from_ref(&labeled.event))
                .context("recording the order")?;
            // `publish` would say only whether every handler succeeded; the demo shows each.
            let result = bus.dispatch(&labeled.event, PublishOptions::default())?;
            let handlers = result
                .outcomes()
                .iter()
                .map(|o| HandlerRun {
                    handler: o.handler().to_owned(),
                    error: o.failure().map(ToString::to_string),
                })
                .collect();
            let outcome = if result.is_success() {
                Outcome::Handled
            } else {
                Outcome::Failed
            };
            tracker.record(&id, 1, handlers, outcome);
        }
        start += batch;
        tracker.published = start.min(workload.len());
        progress(tracker.progress());
    }
    let elapsed = started.elapsed();
    bus.stop()?;
    Ok(tracker.finish(handlers, None, None, elapsed, elapsed))
}

/// Subscribes the demo's handlers to the bus as [`demo_domain::SUBSCRIPTIONS`] says.
fn subscribe(bus: &mut EventBus, handlers: &Handlers) -> anyhow::Result<()> {
    for &(pattern, name) in demo_domain::SUBSCRIPTIONS {
        let handler = handlers
            .by_name(name)
            .with_context(|| format!("no demo handler is called `{name}`"))?;
        bus.subscribe_arc(pattern, handler)?;
    }
    Ok(())
}

fn broker(
    workload: Workload,
    config: &AmqpConfig,
    settings: &Settings,
    handlers: &Handlers,
    progress: &mut dyn FnMut(Progress),
) -> anyhow::Result<RunReport> {
    let (reports_tx, reports) = crossbeam_channel::unbounded();
    // The shop's rows and its events commit together: the bus runs the outbox's relay.
    let outbox = Outbox::open(handlers.shop().database())?;
    // The service is named after its queue; it is also the `app_id` of what it publishes.
    let mut bus = EventBus::builder(&settings.queue)
        .amqp(config.clone())
        .exchange(&settings.exchange)
        .prefetch(settings.prefetch)
        .retry(RetryPolicy::new(MAX_ATTEMPTS, RETRY_DELAYS.to_vec()))
        .supported_major_versions(&[1])
        .unroutable(Unroutable::Error)
        .observer(reports_tx)
        .outbox(outbox.clone())
        .build()?;
    subscribe(&mut bus, handlers)?;
    // Declared and bound before anything is published, so that nothing is unroutable.
    bus.start()
        .with_context(|| format!("cannot set up queue `{}`", settings.queue))?;
    let store = match &settings.store {
        Some(database) => Some(crate::store::start(
            config,
            &settings.exchange,
            &settings.queue,
            database,
        )?),
        None => None,
    };
    let mut stored_ids = Vec::new();

    let mut tracker = Tracker::new(workload);
    progress(tracker.progress()); // connected and set up: nothing published yet
    let started = Instant::now();
    let batch = settings.batch.max(1) as u64;
    let mut start = 0;
    while start < workload.len() {
        let labeled = workload.events(start, batch)?;
        let events: Vec<_> = labeled
            .iter()
            .map(|l| {
                tracker.expect(l);
                if stored_ids.len() < 10 {
                    stored_ids.push(l.event.event_id());
                }
                l.event.clone()
            })
            .collect();
        // Each batch is one transaction: the orders' rows and their events, staged in the
        // outbox; the relay publishes them once it commits.
        handlers
            .shop()
            .commit(Some(&outbox), &events)
            .context("recording the orders")?;
        start += batch;
        tracker.published = start.min(workload.len());
        tracker.drain(&reports);
        progress(tracker.progress());
    }
    let publish_time = started.elapsed();

    let mut last_news = Instant::now();
    while tracker.pending() > 0 {
        let before = tracker.progress();
        if let Ok(report) = reports.recv_timeout(TICK) {
            tracker.report(report);
            tracker.drain(&reports);
        }
        if !bus.is_running() {
            bus.stop()?;
            bail!("the subscriber stopped before every event was handled");
        }
        let now = tracker.progress();
        if now != before {
            last_news = Instant::now();
            progress(now);
        } else if last_news.elapsed() >= settings.timeout {
            bail!(
                "timed out: no event handled for {}s, {} of {} events still not handled \
                 (is another consumer taking from queue `{}`? RUST_LOG=info shows more)",
                settings.timeout.as_secs(),
                tracker.pending(),
                workload.len(),
                settings.queue
            );
        }
    }
    let end_to_end = tracker.last_final.unwrap_or_else(Instant::now) - started;
    let stored = match store {
        Some(store) => Some(store.finish(
            workload.len(),
            &stored_ids,
            settings.keep_queue,
            settings.timeout,
        )?),
        None => None,
    };
    // The order flow ends with a task: the order's invoice, through the task queue, its
    // status kept in the same database.
    let task = match (&settings.store, workload) {
        (Some(database), Workload::OrderFlow) => Some(crate::tasks::send_invoice_task(
            config,
            &settings.queue,
            database,
            settings.keep_queue,
            settings.timeout,
        )?),
        _ => None,
    };

    let (stats, cleanup) = if settings.keep_queue {
        let stats = bus.stop()?;
        let note = format!(
            "Subscriber stopped; queue `{}` kept, bound to exchange `{}`.",
            settings.queue, settings.exchange
        );
        (stats, note)
    } else {
        // Dead letters are kept, and said so: nothing is lost.
        let teardown = bus.teardown_keeping_dead_letters()?;
        let queue = &settings.queue;
        let note = match &teardown.dead_letters_kept {
            None => format!(
                "Subscriber stopped; queue `{queue}` and its retry and dead-letter queues deleted."
            ),
            Some((dlq, dead)) => format!(
                "Subscriber stopped; queue `{queue}` deleted; {dead} event(s) kept in dead-letter queue `{dlq}` (see it in the management UI)."
            ),
        };
        (teardown.stats, note)
    };
    let mut report = tracker.finish(
        handlers,
        Some(stats.subscriber),
        Some(cleanup),
        publish_time,
        end_to_end,
    );
    report.stored = stored;
    report.task = task;
    report.relay = stats.relay;
    Ok(report)
}

/// Collects what happened to each event sent.
struct Tracker {
    total: u64,
    published: u64,
    /// Event id to its index in `events` (or `usize::MAX` when not detailed), for the events
    /// not finished yet.
    pending: HashMap<String, usize>,
    detailed: bool,
    events: Vec<Handled>,
    handler_runs: BTreeMap<String, HandlerTally>,
    succeeded: u64,
    failed: u64,
    leftovers: u64,
    last_final: Option<Instant>,
}

impl Tracker {
    fn new(workload: Workload) -> Self {
        Tracker {
            total: workload.len(),
            published: 0,
            pending: HashMap::new(),
            detailed: workload.detailed(),
            events: Vec::new(),
            handler_runs: BTreeMap::new(),
            succeeded: 0,
            failed: 0,
            leftovers: 0,
            last_final: None,
        }
    }

    /// Registers an event about to be sent; returns its id.
    fn expect(&mut self, labeled: &Labeled) -> String {
        let id = labeled.event.event_id().to_string();
        let index = if self.detailed {
            self.events.push(Handled {
                routing_key: labeled.event.routing_key().to_owned(),
                event_id: id.clone(),
                label: labeled.label.clone(),
                attempts: Vec::new(),
            });
            self.events.len() - 1
        } else {
            usize::MAX
        };
        self.pending.insert(id.clone(), index);
        id
    }

    fn drain(&mut self, reports: &Receiver<DeliveryReport>) {
        while let Ok(report) = reports.try_recv() {
            self.report(report);
        }
    }

    fn report(&mut self, report: DeliveryReport) {
        let id = report.event_id.unwrap_or_default();
        if self.pending.contains_key(&id) {
            self.record(
                &id,
                report.attempt,
                report.handlers,
                Outcome::Delivery(report.disposition),
            );
        } else {
            log::info!(
                "delivery of `{}` not sent by this run: {}",
                report.routing_key,
                report.disposition
            );
            self.leftovers += 1;
        }
    }

    fn record(&mut self, id: &str, attempt: u32, handlers: Vec<HandlerRun>, outcome: Outcome) {
        for run in &handlers {
            let tally = self.handler_runs.entry(run.handler.clone()).or_default();
            if run.error.is_none() {
                tally.ok += 1;
            } else {
                tally.failed += 1;
            }
        }
        let done = outcome.is_final();
        if done {
            if outcome.is_success() {
                self.succeeded += 1;
            } else {
                self.failed += 1;
            }
            self.last_final = Some(Instant::now());
        }
        let index = if done {
            self.pending.remove(id)
        } else {
            self.pending.get(id).copied()
        };
        if let Some(event) = index.and_then(|i| self.events.get_mut(i)) {
            event.attempts.push(Attempt {
                attempt,
                handlers,
                outcome,
            });
        }
    }

    fn pending(&self) -> usize {
        self.pending.len()
    }

    fn progress(&self) -> Progress {
        Progress {
            published: self.published,
            handled: self.succeeded + self.failed,
            total: self.total,
        }
    }

    fn finish(
        self,
        handlers: &Handlers,
        stats: Option<pubsub::subscriber::SubscriberStats>,
        cleanup: Option<String>,
        publish_time: Duration,
        end_to_end_time: Duration,
    ) -> RunReport {
        RunReport {
            total: self.total,
            succeeded: self.succeeded,
            failed: self.failed,
            events: self.events,
            handler_runs: self.handler_runs,
            stats,
            leftovers: self.leftovers,
            publish_time,
            end_to_end_time,
            cleanup,
            handlers: handlers.clone(),
            stored: None,
            task: None,
            relay: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_order_flow_runs_in_process() {
        let workload = Workload::OrderFlow;
        let handlers = workload.handlers().unwrap();
        let mut seen = Vec::new();
        let report = run(
            workload,
            &Transport::InProcess,
            &Settings::default(),
            &handlers,
            &mut |p| seen.push(p),
        )
        .unwrap();
        assert!(report.is_success(), "{report}");
        let ran: Vec<(&str, Vec<&str>)> = report
            .events
            .iter()
            .map(|e| (e.routing_key.as_str(), e.handler_names()))
            .collect();
        assert_eq!(
            ran,
            [
                (
                    "order.created",
                    vec!["send-email", "update-inventory", "log-analytics"]
                ),
                ("order.paid", vec!["send-email", "log-analytics"]),
                ("user.registered", vec!["send-email", "log-analytics"]),
            ]
        );
        assert_eq!(seen.last().map(|p| p.handled), Some(3));
        assert_eq!(handlers.email().sent(), 3);
        let summary = report.to_string();
        assert!(summary.contains("3 of 3 events handled"), "{summary}");
        assert!(summary.contains("PROD-001 8"), "{summary}");
    }

    #[test]
    fn bulk_orders_run_in_process() {
        let workload = Workload::Orders(1234);
        let handlers = workload.handlers().unwrap();
        let settings = Settings {
            batch: 100,
            ..Settings::default()
        };
        let report = run(
            workload,
            &Transport::InProcess,
            &settings,
            &handlers,
            &mut |_| {},
        )
        .unwrap();
        assert!(report.is_success(), "{report}");
        assert!(report.events.is_empty());
        assert_eq!(handlers.shop().stock("PROD-001").unwrap(), Some(0));
        assert_eq!(handlers.shop().reservations().unwrap(), 1234);
        assert_eq!(
            report.handler_runs.get("update-inventory"),
            Some(&HandlerTally {
                ok: 1234,
                failed: 0
            })
        );
        assert!(report.to_string().contains("events/s"));
    }

    #[test]
    fn the_tracker_follows_an_event_through_its_retries() {
        use pubsub::subscriber::{DeadLetterKind, Disposition};

        let workload = Workload::OrderFlow;
        let mut tracker = Tracker::new(workload);
        let ids: Vec<String> = workload
            .events(0, 3)
            .unwrap()
            .iter()
            .map(|l| tracker.expect(l))
            .collect();
        let report = |id: &str, attempt, error: Option<&str>, disposition| DeliveryReport {
            routing_key: "order.created".into(),
            event_id: Some(id.to_owned()),
            attempt,
            handlers: vec![HandlerRun {
                handler: "send-email".into(),
                error: error.map(str::to_owned),
            }],
            disposition,
        };
        let retried = Disposition::Retried {
            next_attempt: 2,
            delay: Duration::from_secs(1),
        };
        let dead = Disposition::DeadLettered {
            kind: DeadLetterKind::Exhausted,
            reason: "smtp down".into(),
        };
        // (report, events still pending after it)
        let steps = [
            (report(&ids[0], 1, Some("smtp down"), retried.clone()), 3),
            (report(&ids[1], 1, None, Disposition::Acked), 2),
            (report(&ids[0], 2, None, Disposition::Acked), 1),
            (report("not-ours", 1, None, Disposition::Acked), 1),
            (report(&ids[2], 1, Some("smtp down"), dead), 0),
        ];
        for (report, pending) in steps {
            tracker.report(report);
            assert_eq!(tracker.pending(), pending);
        }
        let done = tracker.finish(
            &workload.handlers().unwrap(),
            None,
            None,
            Duration::ZERO,
            Duration::ZERO,
        );
        assert_eq!((done.succeeded, done.failed, done.leftovers), (2, 1, 1));
        assert_eq!(done.events[0].attempts.len(), 2);
        assert_eq!(
            done.events[0].attempts[0].outcome,
            Outcome::Delivery(retried)
        );
        assert_eq!(
            done.handler_runs.get("send-email"),
            Some(&HandlerTally { ok: 2, failed: 2 })
        );
        let summary = done.to_string();
        assert!(
            summary.contains("send-email FAILED (smtp down) -> retry as attempt 2 in 1.0s"),
            "{summary}"
        );
        assert!(
            summary.contains("2 of 3 events handled, 1 failed"),
            "{summary}"
        );
    }

    #[test]
    fn a_failing_handler_fails_the_run_in_process() {
        let workload = Workload::OrderFlow;
        let shop = demo_domain::Shop::scratch([("PROD-001", 1), ("PROD-002", 1)]).unwrap();
        let handlers = demo_domain::Handlers::new(&shop).unwrap();
        let report = run(
            workload,
            &Transport::InProcess,
            &Settings::default(),
            &handlers,
            &mut |_| {},
        )
        .unwrap();
        assert!(!report.is_success());
        assert_eq!((report.succeeded, report.failed), (2, 1));
        assert_eq!(report.events[0].outcome(), Some(&Outcome::Failed));
        assert!(report
            .to_string()
            .contains("update-inventory FAILED (out of stock"));
    }
}
