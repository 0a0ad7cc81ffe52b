//! Metrics of a bus, opt-in ([`EventBusBuilder::metrics`](crate::EventBusBuilder::metrics),
//! [`EventBusBuilder::metrics_endpoint`](crate::EventBusBuilder::metrics_endpoint)): the
//! publisher's and the workers' counters (kept by those crates whether or not anyone reads
//! them), a duration histogram per handler (measured only when metrics are on), rendered in
//! the Prometheus text format ([`render`], pure) and served over HTTP (`endpoint`).

use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use pubsub_publisher::PublisherStats;
use pubsub_subscriber::headers::DeadLetterKind;
use pubsub_subscriber::SubscriberStats;

pub(crate) mod endpoint;
#[cfg(test)]
mod tests;

/// The upper bounds of the handler duration buckets, in seconds (the last bucket, `+Inf`,
/// is implicit): from 100 µs, where a handler that does little lands, to 10 s.
pub(crate) const DURATION_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// A histogram of durations over [`DURATION_BUCKETS`], updated from any thread without a lock.
#[derive(Debug, Default)]
pub(crate) struct Histogram {
    /// Observations per bucket (not cumulative); the last one is `+Inf`.
    buckets: [AtomicU64; DURATION_BUCKETS.len() + 1],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Histogram {
    /// Counts one observation.
    pub(crate) fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let i = DURATION_BUCKETS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(DURATION_BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// The counts now.
    pub(crate) fn snapshot(&self) -> HistogramSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        HistogramSnapshot {
            buckets: self.buckets.iter().map(get).collect(),
            count: get(&self.count),
            sum: Duration::from_nanos(get(&self.sum_nanos)),
        }
    }
}

/// A copy of a [`Histogram`]'s counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct HistogramSnapshot {
    /// Observations per bucket, not cumulative, `+Inf` last.
    pub(crate) buckets: Vec<u64>,
    pub(crate) count: u64,
    pub(crate) sum: Duration,
}

/// What a bus measures: shared by its handlers (durations), its endpoint and
/// [`EventBus::metrics`](crate::EventBus::metrics).
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    /// A histogram per handler name, in the order first subscribed.
    handlers: Mutex<Vec<(String, Arc<Histogram>)>>,
    /// The counters of the running publisher and workers.
    sources: Mutex<Sources>,
}

/// Where the counters come from while the bus runs.
#[derive(Debug, Default)]
struct Sources {
    publisher: Option<pubsub_publisher::StatsHandle>,
    workers: Vec<pubsub_subscriber::StatsHandle>,
}

impl Metrics {
    /// The histogram of the handler named `name` (one per name).
    pub(crate) fn handler(&self, name: &str) -> Arc<Histogram> {
        let mut handlers = self.handlers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, histogram)) = handlers.iter().find(|(n, _)| n == name) {
            return histogram.clone();
        }
        let histogram = Arc::new(Histogram::default());
        handlers.push((name.to_owned(), histogram.clone()));
        histogram
    }

    /// Reads the counters of this publisher and these workers from now on.
    pub(crate) fn attach(
        &self,
        publisher: Option<pubsub_publisher::StatsHandle>,
        workers: Vec<pubsub_subscriber::StatsHandle>,
    ) {
        let mut sources = self.sources.lock().unwrap_or_else(PoisonError::into_inner);
        *sources = Sources { publisher, workers };
    }

    /// Everything now, in the Prometheus text format.
    pub(crate) fn render(&self, service: &str, exchange: &str) -> String {
        let (publisher, subscriber) = {
            let sources = self.sources.lock().unwrap_or_else(PoisonError::into_inner);
            let subscriber = (!sources.workers.is_empty()).then(|| {
                sources
                    .workers
                    .iter()
                    .map(pubsub_subscriber::StatsHandle::snapshot)
                    .sum::<SubscriberStats>()
            });
            (sources.publisher.as_ref().map(|p| p.snapshot()), subscriber)
        };
        let handlers: Vec<(String, HistogramSnapshot)> = self
            .handlers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(name, h)| (name.clone(), h.snapshot()))
            .collect();
        render(&Snapshot {
            service,
            exchange,
            publisher,
            subscriber,
            handlers: &handlers,
        })
    }
}

/// Everything a scrape shows, read at one moment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Snapshot<'a> {
    /// The service: its name is also its queue's.
    pub(crate) service: &'a str,
    pub(crate) exchange: &'a str,
    /// The publisher's counters (none before start, and in process).
    pub(crate) publisher: Option<PublisherStats>,
    /// The workers' counters, summed (none without workers).
    pub(crate) subscriber: Option<SubscriberStats>,
    /// Each handler's durations.
    pub(crate) handlers: &'a [(String, HistogramSnapshot)],
}

/// `snapshot` in the Prometheus text exposition format (version 0.0.4).
pub(crate) fn render(snapshot: &Snapshot<'_>) -> String {
    let mut out = String::with_capacity(4096);
    // Writing to a String cannot fail.
    let _ = write_all(&mut out, snapshot);
    out
}

fn write_all(out: &mut String, s: &Snapshot<'_>) -> fmt::Result {
    let service = escape(s.service);
    if let Some(p) = &s.publisher {
        let labels = format!("service=\"{service}\",exchange=\"{}\"", escape(s.exchange));
        let counters = [
            (
                "published",
                "Events handed to the broker (republishes count again).",
                p.published,
            ),
            ("confirmed", "Events the broker confirmed.", p.confirmed),
            (
                "nacked",
                "Events the broker refused (negative confirm).",
                p.nacked,
            ),
            (
                "returned",
                "Events the broker could route to no queue.",
                p.returned,
            ),
        ];
        for (name, help, value) in counters {
            family(out, &format!("pubsub_{name}_total"), "counter", help)?;
            writeln!(out, "pubsub_{name}_total{{{labels}}} {value}")?;
        }
    }
    if let Some(c) = &s.subscriber {
        let labels = format!("queue=\"{service}\"");
        let counters = [
            ("received", "Deliveries taken from the queue.", c.received),
            (
                "redelivered",
                "Deliveries the broker had delivered before.",
                c.redelivered,
            ),
            (
                "acked",
                "Deliveries acknowledged after their handlers succeeded.",
                c.acked,
            ),
            (
                "unhandled",
                "Acknowledged deliveries no handler matched.",
                c.unhandled,
            ),
            ("retried", "Deliveries sent to a retry queue.", c.retried),
            (
                "dropped",
                "Deliveries rejected without requeue (dead-letter queue refused them).",
                c.dropped,
            ),
            (
                "handler_failures",
                "Handler runs that failed (errors and panics).",
                c.handler_failures,
            ),
        ];
        for (name, help, value) in counters {
            family(out, &format!("pubsub_{name}_total"), "counter", help)?;
            writeln!(out, "pubsub_{name}_total{{{labels}}} {value}")?;
        }
        family(
            out,
            "pubsub_dead_lettered_total",
            "counter",
            "Deliveries sent to the dead-letter queue, by kind.",
        )?;
        for kind in DeadLetterKind::ALL {
            writeln!(
                out,
                "pubsub_dead_lettered_total{{{labels},kind=\"{}\"}} {}",
                kind.as_str(),
                c.dead_lettered_as(kind)
            )?;
        }
        family(
            out,
            "pubsub_in_flight",
            "gauge",
            "Deliveries taken from the queue and not settled yet.",
        )?;
        writeln!(out, "pubsub_in_flight{{{labels}}} {}", c.in_flight)?;
    }
    if s.publisher.is_some() || s.subscriber.is_some() {
        family(
            out,
            "pubsub_reconnects_total",
            "counter",
            "Connections restored after they were lost.",
        )?;
        if let Some(p) = &s.publisher {
            writeln!(
                out,
                "pubsub_reconnects_total{{service=\"{service}\",connection=\"publisher\"}} {}",
                p.reconnects
            )?;
        }
        if let Some(c) = &s.subscriber {
            writeln!(
                out,
                "pubsub_reconnects_total{{service=\"{service}\",connection=\"subscriber\"}} {}",
                c.reconnects
            )?;
        }
    }
    if !s.handlers.is_empty() {
        family(
            out,
            "pubsub_handler_duration_seconds",
            "histogram",
            "How long each handler ran, per delivery.",
        )?;
        for (name, h) in s.handlers {
            let labels = format!("queue=\"{service}\",handler=\"{}\"", escape(name));
            let mut cumulative = 0;
            for (i, n) in h.buckets.iter().enumerate() {
                cumulative += n;
                let le = match DURATION_BUCKETS.get(i) {
                    Some(bound) => bound.to_string(),
                    None => "+Inf".to_owned(),
                };
                writeln!(
                    out,
                    "pubsub_handler_duration_seconds_bucket{{{labels},le=\"{le}\"}} {cumulative}"
                )?;
            }
            writeln!(
                out,
                "pubsub_handler_duration_seconds_sum{{{labels}}} {}",
                h.sum.as_secs_f64()
            )?;
            writeln!(
                out,
                "pubsub_handler_duration_seconds_count{{{labels}}} {}",
                h.count
            )?;
        }
    }
    Ok(())
}

/// A metric family's `# HELP` and `# TYPE` lines.
fn family(out: &mut String, name: &str, kind: &str, help: &str) -> fmt::Result {
    writeln!(out, "# HELP {name} {help}")?;
    writeln!(out, "# TYPE {name} {kind}")
}

/// A label value as the text format writes it: `\`, `"` and line feeds escaped.
pub(crate) fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}
