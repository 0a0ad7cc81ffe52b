//! The workload both sides run, so that they do the same work: the events and their routing
//! keys, the three patterns, and the handlers' trivial work (counters) in a [`Sink`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use crossbeam_channel::{Receiver, Sender};
use pubsub_core::{handler_fn, Event, EventHandler};
use pubsub_registry::HandlerRegistry;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

/// The routing keys, cycled in this order: event `i` has `ROUTES[i % 3]`.
pub(crate) const ROUTES: [(&str, &str, &str); 3] = [
    ("order", "created", "order.created"),
    ("order", "paid", "order.paid"),
    ("user", "registered", "user.registered"),
];

/// The consumer's patterns, one handler each.
pub(crate) const PATTERNS: [&str; 3] = ["order.*", "*.created", "#"];

/// Domain, action and routing key of event `i`.
pub(crate) fn route(i: u64) -> (&'static str, &'static str, &'static str) {
    ROUTES[(i % 3) as usize]
}

/// Nanoseconds since the Unix epoch. The publisher and the consumer are different processes
/// on one machine, so they share this clock (and not `Instant`'s).
pub(crate) fn wall_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The data of event `i`, like the demo's order and user events; `sent_at_ns` is the
/// publisher's [`wall_ns`] when the event was built, for the latency measurement.
pub(crate) fn data(i: u64, sent_at_ns: u64) -> Value {
    if route(i).0 == "order" {
        json!({
            "order_id": format!("ORD-{i:08}"),
            "customer_email": "ada@example.com",
            "amount": 99.99,
            "items": 3,
            "sent_at_ns": sent_at_ns,
        })
    } else {
        json!({
            "user_id": format!("USR-{i:08}"),
            "email": "ada@example.com",
            "plan": "professional",
            "locale": "en-GB",
            "sent_at_ns": sent_at_ns,
        })
    }
}

/// Event `i` as the library builds it.
pub(crate) fn event(i: u64, sent_at_ns: u64) -> Result<Event> {
    let (domain, action, _) = route(i);
    Ok(Event::new(domain, action, data(i, sent_at_ns))?)
}

/// Event `i` as the raw loop builds it: the same six fields, written with serde_json alone.
pub(crate) fn raw_body(i: u64, sent_at_ns: u64, out: &mut Vec<u8>) -> Result<()> {
    let (domain, action, _) = route(i);
    let timestamp = OffsetDateTime::now_utc().format(&Rfc3339)?;
    let body = json!({
        "domain": domain,
        "action": action,
        "data": data(i, sent_at_ns),
        "event_id": Uuid::new_v4().hyphenated().to_string(),
        "timestamp": timestamp,
        "version": "1.0",
    });
    out.clear();
    serde_json::to_writer(out, &body)?;
    Ok(())
}

/// Whether `routing_key` has exactly two words.
fn two_words(routing_key: &str) -> Option<(&str, &str)> {
    routing_key
        .split_once('.')
        .filter(|(_, action)| !action.contains('.'))
}

/// The raw loop's dispatch: the three patterns as a plain match on the routing key, then the
/// handlers' work.
pub(crate) fn raw_dispatch(routing_key: &str, body: &Value, sink: &Sink) {
    if let Some((domain, action)) = two_words(routing_key) {
        if domain == "order" {
            sink.order_star();
        }
        if action == "created" {
            sink.star_created();
        }
    }
    let sent_at = if sink.wants_latency() {
        body["data"]["sent_at_ns"].as_u64()
    } else {
        None
    };
    sink.all(sent_at);
}

/// The library's registry: the three patterns, with handlers that do the same work as
/// [`raw_dispatch`].
pub(crate) fn registry(sink: &Arc<Sink>) -> Result<HandlerRegistry> {
    let mut registry = HandlerRegistry::new();
    for (pattern, handler) in handlers(sink) {
        registry.subscribe_arc(pattern, handler)?;
    }
    Ok(registry)
}

/// The three patterns and their handlers, for a registry or an `EventBus`.
pub(crate) fn handlers(sink: &Arc<Sink>) -> [(&'static str, Arc<dyn EventHandler>); 3] {
    let (orders, created, all) = (sink.clone(), sink.clone(), sink.clone());
    [
        (
            PATTERNS[0],
            Arc::new(handler_fn("orders", move |_, _| {
                orders.order_star();
                Ok(())
            })),
        ),
        (
            PATTERNS[1],
            Arc::new(handler_fn("created", move |_, _| {
                created.star_created();
                Ok(())
            })),
        ),
        (
            PATTERNS[2],
            Arc::new(handler_fn("all", move |event, _| {
                let sent_at = if all.wants_latency() {
                    event.data().get("sent_at_ns").and_then(Value::as_u64)
                } else {
                    None
                };
                all.all(sent_at);
                Ok(())
            })),
        ),
    ]
}

/// What the handlers do: count, record latencies when asked, sample RSS at given counts, and
/// say when the expected number of events has been handled.
#[derive(Debug)]
pub(crate) struct Sink {
    target: u64,
    handled: AtomicU64,
    order_star: AtomicU64,
    star_created: AtomicU64,
    first_ns: AtomicU64,
    last_ns: AtomicU64,
    cpu_at_done: AtomicU64,
    sent_at_done: AtomicU64,
    done_tx: Sender<()>,
    done_rx: Receiver<()>,
    latencies: Option<Mutex<Vec<u64>>>,
    rss_at: Vec<u64>,
    rss_samples: Mutex<Vec<(u64, u64)>>,
}

/// What a [`Sink`] saw, once done.
#[derive(Debug, Clone)]
pub(crate) struct Tally {
    /// Events handled by `#` (every event).
    pub(crate) handled: u64,
    /// Events handled by `order.*`.
    pub(crate) order_star: u64,
    /// Events handled by `*.created`.
    pub(crate) star_created: u64,
    /// [`wall_ns`] when the first event was handled.
    pub(crate) first_ns: u64,
    /// [`wall_ns`] when the target was reached (0 if not yet).
    pub(crate) last_ns: u64,
    /// The process's [`cpu_ticks`] when the target was reached.
    pub(crate) cpu_at_done: u64,
    /// The process's [`bytes_sent_to_broker`] when the target was reached.
    pub(crate) sent_at_done: u64,
    /// `(handled, VmRSS kB)` at the requested counts.
    pub(crate) rss_samples: Vec<(u64, u64)>,
    /// Publish-to-handler latencies in nanoseconds, when recorded.
    pub(crate) latencies: Vec<u64>,
}

impl Sink {
    /// A sink that reports done after `target` events.
    pub(crate) fn new(target: u64, latency: bool, rss_at: Vec<u64>) -> Sink {
        let (done_tx, done_rx) = crossbeam_channel::bounded(1);
        Sink {
            target,
            handled: AtomicU64::new(0),
            order_star: AtomicU64::new(0),
            star_created: AtomicU64::new(0),
            first_ns: AtomicU64::new(0),
            last_ns: AtomicU64::new(0),
            cpu_at_done: AtomicU64::new(0),
            sent_at_done: AtomicU64::new(0),
            done_tx,
            done_rx,
            latencies: latency
                .then(|| Mutex::new(Vec::with_capacity(usize::try_from(target).unwrap_or(0)))),
            rss_at,
            rss_samples: Mutex::new(Vec::new()),
        }
    }

    /// Whether latencies are recorded (the handler then reads `sent_at_ns`).
    pub(crate) fn wants_latency(&self) -> bool {
        self.latencies.is_some()
    }

    /// The `order.*` handler's work.
    pub(crate) fn order_star(&self) {
        self.order_star.fetch_add(1, Ordering::Relaxed);
    }

    /// The `*.created` handler's work.
    pub(crate) fn star_created(&self) {
        self.star_created.fetch_add(1, Ordering::Relaxed);
    }

    /// The `#` handler's work: it runs last for every event.
    pub(crate) fn all(&self, sent_at_ns: Option<u64>) {
        let n = self.handled.fetch_add(1, Ordering::Relaxed) + 1;
        if n == 1 {
            self.first_ns.store(wall_ns(), Ordering::Relaxed);
        }
        if let (Some(latencies), Some(sent)) = (&self.latencies, sent_at_ns) {
            let now = wall_ns();
            lock(latencies).push(now.saturating_sub(sent));
        }
        if self.rss_at.binary_search(&n).is_ok() {
            lock(&self.rss_samples).push((n, status_kb("VmRSS").unwrap_or(0)));
        }
        if n == self.target {
            self.last_ns.store(wall_ns(), Ordering::Relaxed);
            self.cpu_at_done
                .store(cpu_ticks().unwrap_or(0), Ordering::Relaxed);
            self.sent_at_done
                .store(bytes_sent_to_broker().unwrap_or(0), Ordering::Relaxed);
            let _ = self.done_tx.try_send(());
        }
    }

    /// Whether the target has been reached.
    pub(crate) fn is_done(&self) -> bool {
        self.handled.load(Ordering::Relaxed) >= self.target
    }

    /// Waits up to `timeout` for the target; whether it was reached.
    pub(crate) fn wait_done(&self, timeout: Duration) -> bool {
        self.is_done() || self.done_rx.recv_timeout(timeout).is_ok()
    }

    /// How many events have been handled.
    pub(crate) fn handled(&self) -> u64 {
        self.handled.load(Ordering::Relaxed)
    }

    /// The counts so far.
    pub(crate) fn tally(&self) -> Tally {
        Tally {
            handled: self.handled.load(Ordering::Relaxed),
            order_star: self.order_star.load(Ordering::Relaxed),
            star_created: self.star_created.load(Ordering::Relaxed),
            first_ns: self.first_ns.load(Ordering::Relaxed),
            last_ns: self.last_ns.load(Ordering::Relaxed),
            cpu_at_done: self.cpu_at_done.load(Ordering::Relaxed),
            sent_at_done: self.sent_at_done.load(Ordering::Relaxed),
            rss_samples: lock(&self.rss_samples).clone(),
            latencies: self
                .latencies
                .as_ref()
                .map(|l| lock(l).clone())
                .unwrap_or_default(),
        }
    }
}

/// How many of the first `n` events `order.*` and `*.created` should have handled.
pub(crate) fn expected_dispatch(n: u64) -> (u64, u64) {
    let created = n.div_ceil(3);
    let paid = (n + 1) / 3;
    (created + paid, created)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Clock ticks per second of `/proc/self/stat`'s CPU times (`USER_HZ`, 100 on Linux).
pub(crate) const TICKS_PER_SECOND: u64 = 100;

/// CPU time used by this process so far, all threads, user and system, in clock ticks
/// (fields `utime` and `stime` of `/proc/self/stat`).
pub(crate) fn cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name, in parentheses, may contain spaces: count fields after it. Field 3
    // (state) comes first, so utime (14) and stime (15) are the 12th and 13th.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Bytes this process has sent to the broker over all its open connections, from the
/// kernel's TCP counters (`bytes_sent` in `ss -ti`), or `None` without `ss`. A consumer sends
/// little else than its acks, so this counts them.
pub(crate) fn bytes_sent_to_broker() -> Option<u64> {
    let output = std::process::Command::new("ss")
        .args(["-tinpH", "dport = :5672"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let me = format!("pid={},", std::process::id());
    let mut total = 0;
    let mut mine = false;
    for line in text.lines() {
        if !line.starts_with(char::is_whitespace) {
            mine = line.contains(&me);
        } else if mine {
            total += line
                .split_whitespace()
                .find_map(|field| field.strip_prefix("bytes_sent:"))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    output.status.success().then_some(total)
}

/// Size of a `basic.ack` frame: frame header 7, class and method 4, delivery tag 8,
/// `multiple` 1, frame end 1.
pub(crate) const ACK_FRAME_BYTES: u64 = 21;

/// A field of `/proc/self/status` in kB (`VmRSS`: resident now; `VmHWM`: peak resident).
pub(crate) fn status_kb(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.trim().trim_end_matches("kB").trim().parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_about_280_bytes_on_both_sides() {
        for i in 0..3 {
            let lib = pubsub_core::json::to_vec(&event(i, wall_ns()).expect("event"));
            let mut raw = Vec::new();
            raw_body(i, wall_ns(), &mut raw).expect("raw body");
            for len in [lib.len(), raw.len()] {
                assert!((270..=290).contains(&len), "event {i}: {len} bytes");
            }
        }
    }

    #[test]
    fn raw_dispatch_agrees_with_the_registry() {
        let sink = Arc::new(Sink::new(u64::MAX, false, Vec::new()));
        let registry = registry(&sink).expect("registry");
        let raw = Sink::new(u64::MAX, false, Vec::new());
        for i in 0..30 {
            let event = event(i, 0).expect("event");
            assert!(registry.invoke_all(&event).is_success());
            let body: Value =
                serde_json::from_slice(&pubsub_core::json::to_vec(&event)).expect("parse");
            raw_dispatch(event.routing_key(), &body, &raw);
        }
        let (lib, raw) = (sink.tally(), raw.tally());
        assert_eq!(
            (lib.handled, lib.order_star, lib.star_created),
            (raw.handled, raw.order_star, raw.star_created)
        );
        assert_eq!((lib.order_star, lib.star_created), expected_dispatch(30));
        assert_eq!(expected_dispatch(4), (3, 2));
    }

    #[test]
    fn sink_reports_done_and_samples() {
        let sink = Sink::new(3, true, vec![2]);
        for _ in 0..3 {
            sink.all(Some(wall_ns()));
        }
        assert!(sink.is_done());
        assert!(sink.wait_done(Duration::from_millis(10)));
        assert!(sink.tally().last_ns > 0);
        let tally = sink.tally();
        assert_eq!(tally.latencies.len(), 3);
        assert_eq!(tally.rss_samples.len(), 1);
        assert!(status_kb("VmRSS").is_some_and(|kb| kb > 0));
        // The process's CPU ticks follow its work: busy for 3 ticks (30 ms of CPU), however
        // long a loaded machine takes to give them.
        let before = cpu_ticks().expect("cpu ticks");
        let start = std::time::Instant::now();
        while cpu_ticks().expect("cpu ticks") < before + 3 {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the CPU ticks do not move"
            );
            for _ in 0..10_000 {
                std::hint::black_box(wall_ns());
            }
        }
    }
}
