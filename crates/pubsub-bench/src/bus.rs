//! The `EventBus` rows: one publisher handle shared by 8 threads against one thread's
//! `publish_all` and against a `Mutex<EventPublisher>`, and by 1,000 tokio tasks awaiting
//! their receipts; `workers(n)` with a sleeping and with
//! a trivial handler; the bus as the consumer of the latency measurement (`consume`); and
//! the resident memory of an idle bus with 16 workers (`idle`, in a child process).

use std::process::Command;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use pubsub::{Event, EventBus, Publisher};
use pubsub_amqp::AmqpConfig;
use pubsub_core::handler_fn;
use pubsub_publisher::EventPublisher;
use pubsub_subscriber::SubscriberStats;
use pubsub_testkit::Names;
use serde_json::{json, Value};

use crate::admin::{open, Admin};
use crate::cli::{IdleArgs, Options};
use crate::library;
use crate::report::{self, Stat};
use crate::sides::{say, Gate, Pace, Published};
use crate::workload::{self, status_kb, Sink};

/// Threads publishing through one handle.
const THREADS: usize = 8;

/// Tokio tasks publishing through one handle, and the events each publishes (awaiting each
/// receipt before the next publish).
const TASKS: usize = 1_000;
const PER_TASK: usize = 20;

/// How long a run may go without handling an event before it is abandoned.
const STALL: Duration = Duration::from_secs(60);

/// The bus rows' ratios, for the targets.
#[derive(Debug, Clone, Default)]
pub(crate) struct BusResults {
    /// 8 threads sending through one handle (receipts waited at the end) over one thread's
    /// `publish_all`, events per second.
    pub(crate) handle_vs_publish_all: Option<f64>,
    /// The same handle rate over 8 threads sharing a `Mutex<EventPublisher>`.
    pub(crate) handle_vs_mutex: Option<f64>,
    /// 8 threads calling the handle's blocking `publish` over the `Mutex<EventPublisher>`.
    pub(crate) blocking_vs_mutex: Option<f64>,
    /// 1,000 tokio tasks awaiting each receipt over the 8 threads' `send` rate.
    pub(crate) awaiting_vs_handle: Option<f64>,
    /// `workers(16)` over `workers(1)`, handler sleeping 5 ms.
    pub(crate) sleepy_speedup: Option<f64>,
    /// `workers(2)` over `workers(1)` draining a full queue, trivial handlers: median, min
    /// and max of the rounds' ratios.
    pub(crate) trivial_ratio: Option<Stat>,
    /// VmRSS of an idle bus with 16 workers, kB.
    pub(crate) idle_rss_kb: Option<u64>,
}

/// Runs the bus rows and prints their table and JSON lines.
pub(crate) fn run(admin: &mut Admin, options: &Options) -> Result<BusResults> {
    let mut results = BusResults::default();
    let mut rows: Vec<Vec<String>> = Vec::new();

    // Quick: 20,000 events in all, as many as the tokio tasks publish (rates of runs of one size).
    let per_thread: usize = if options.quick { 2_500 } else { 10_000 };
    let blocking_per_thread: usize = if options.quick { 250 } else { 2_000 };
    let mutex_per_thread: usize = if options.quick { 50 } else { 500 };
    eprintln!("bus: shared publisher handle, {THREADS} threads...");
    let names = admin.names("bus-shared")?;
    let shared = (|| {
        admin.declare_bound_queue(&names)?;
        let config = admin.config().clone();
        let all = per_thread * THREADS;
        let events = events(all)?;
        let publish_all = library::publish_prebuilt(&config, &names.exchange, &events, true)?;
        admin.purge(&names.queue)?;
        let bus = publisher_bus(&config, &names.exchange)?;
        let handle = threads(&bus.1, chunks(events, THREADS), Through::Send)?;
        admin.purge(&names.queue)?;
        let awaiting = tasks(&bus.1, chunks(self::events(TASKS * PER_TASK)?, TASKS))?;
        admin.purge(&names.queue)?;
        let blocking = threads(
            &bus.1,
            chunks(self::events(blocking_per_thread * THREADS)?, THREADS),
            Through::Publish,
        )?;
        drop(bus);
        admin.purge(&names.queue)?;
        let mutex = mutex_threads(
            &config,
            &names.exchange,
            chunks(self::events(mutex_per_thread * THREADS)?, THREADS),
        )?;
        Ok::<_, anyhow::Error>((all, publish_all, handle, awaiting, blocking, mutex))
    })();
    admin.delete(&names);
    let (all, publish_all, handle, awaiting, blocking, mutex) = shared?;
    let rate = |n: usize, seconds: f64| n as f64 / seconds;
    let publish_all_rate = rate(all, publish_all);
    let handle_rate = rate(all, handle);
    let awaiting_rate = rate(TASKS * PER_TASK, awaiting);
    let blocking_rate = rate(blocking_per_thread * THREADS, blocking);
    let mutex_rate = rate(mutex_per_thread * THREADS, mutex);
    results.handle_vs_publish_all = Some(handle_rate / publish_all_rate);
    results.handle_vs_mutex = Some(handle_rate / mutex_rate);
    results.blocking_vs_mutex = Some(blocking_rate / mutex_rate);
    results.awaiting_vs_handle = Some(awaiting_rate / handle_rate);
    for (what, n, r) in [
        (
            format!("1 thread, EventPublisher::publish_all({all})"),
            all,
            publish_all_rate,
        ),
        (
            format!(
                "{THREADS} threads x {per_thread}, one bus handle: send, then wait the receipts"
            ),
            all,
            handle_rate,
        ),
        (
            format!(
                "{TASKS} tokio tasks x {PER_TASK} (2 runtime threads), one bus handle: send(event)?.await each"
            ),
            TASKS * PER_TASK,
            awaiting_rate,
        ),
        (
            format!(
                "{THREADS} threads x {blocking_per_thread}, one bus handle: publish (blocking)"
            ),
            blocking_per_thread * THREADS,
            blocking_rate,
        ),
        (
            format!("{THREADS} threads x {mutex_per_thread}, Mutex<EventPublisher>: publish"),
            mutex_per_thread * THREADS,
            mutex_rate,
        ),
    ] {
        rows.push(vec![what, n.to_string(), report::thousands(r)]);
    }

    let sleep = Duration::from_millis(5);
    let (w1_n, w16_n) = if options.quick {
        (100, 800)
    } else {
        (400, 3_200)
    };
    eprintln!("bus: workers(1) and workers(16), handler sleeping 5 ms...");
    let w1 = workers_rate(admin, 1, Some(sleep), w1_n)?;
    let w16 = workers_rate(admin, 16, Some(sleep), w16_n)?;
    results.sleepy_speedup = Some(w16 / w1);
    rows.push(vec![
        "workers(1), handler sleeps 5 ms".to_owned(),
        w1_n.to_string(),
        report::thousands(w1),
    ]);
    rows.push(vec![
        "workers(16), handler sleeps 5 ms".to_owned(),
        w16_n.to_string(),
        report::thousands(w16),
    ]);

    let trivial_n = if options.quick { 3_000 } else { 30_000 };
    let rounds = if options.quick { 2 } else { 3 };
    eprintln!(
        "bus: workers(1) and workers(2) draining a queue, trivial handlers, {rounds} rounds..."
    );
    // Interleaved round by round, each ratio within its round: the machine is shared.
    let mut t1 = Vec::new();
    let mut t2 = Vec::new();
    for _ in 0..rounds {
        t1.push(drain_rate(admin, 1, trivial_n)?);
        t2.push(drain_rate(admin, 2, trivial_n)?);
    }
    let ratios: Vec<f64> = t2.iter().zip(&t1).map(|(two, one)| two / one).collect();
    let (t1, t2, trivial) = match (Stat::of(&t1), Stat::of(&t2), Stat::of(&ratios)) {
        (Some(t1), Some(t2), Some(r)) => (t1, t2, r),
        _ => bail!("bus: no trivial-handler round ran"),
    };
    results.trivial_ratio = Some(trivial);
    rows.push(vec![
        format!("workers(1) draining a full queue, trivial handlers (median of {rounds})"),
        trivial_n.to_string(),
        report::rate_range(&t1),
    ]);
    rows.push(vec![
        format!(
            "workers(2) draining a full queue, trivial handlers (median of {rounds}; {} workers(1) of the same round)",
            report::ratio_range(&trivial)
        ),
        trivial_n.to_string(),
        report::rate_range(&t2),
    ]);

    eprintln!("bus: idle bus with 16 workers (child process)...");
    let names = admin.names("bus-idle")?;
    let idle = idle_rss(&IdleArgs {
        exchange: names.exchange.clone(),
        queue: names.queue.clone(),
        workers: 16,
        asynchronous: None,
    });
    admin.delete(&names);
    let idle = idle?;
    results.idle_rss_kb = Some(idle);

    println!("\n## EventBus: shared publisher handle and workers (events published and handled in this process)\n");
    report::print_table(&["run", "events", "msg/s"], &rows);
    println!(
        "\nidle bus, 16 workers: {} kB RSS (child process)\n",
        report::thousands(idle as f64)
    );
    println!(
        "{}",
        report::bench_line(
            "bus",
            json!({
                "publish_all_msgs_per_s": report::round(publish_all_rate, 0),
                "handle_send_msgs_per_s": report::round(handle_rate, 0),
                "handle_publish_msgs_per_s": report::round(blocking_rate, 0),
                "mutex_publish_msgs_per_s": report::round(mutex_rate, 0),
                "workers1_sleep_msgs_per_s": report::round(w1, 1),
                "workers16_sleep_msgs_per_s": report::round(w16, 1),
                "workers1_trivial_msgs_per_s": report::round(t1.median, 0),
                "workers2_trivial_msgs_per_s": report::round(t2.median, 0),
                "workers2_vs_1_trivial": report::round(trivial.median, 2),
                "idle_16_workers_rss_kb": idle,
            })
        )
    );
    Ok(results)
}

/// `n` events of the workload.
pub(crate) fn events(n: usize) -> Result<Vec<Event>> {
    (0..n as u64).map(|i| workload::event(i, 0)).collect()
}

/// `events` in `parts` chunks of (about) equal size.
pub(crate) fn chunks(mut events: Vec<Event>, parts: usize) -> Vec<Vec<Event>> {
    let size = events.len().div_ceil(parts.max(1)).max(1);
    let mut chunks = Vec::new();
    while !events.is_empty() {
        let rest = events.split_off(size.min(events.len()));
        chunks.push(std::mem::replace(&mut events, rest));
    }
    chunks
}

/// A started bus without handlers (it only publishes) and its handle.
pub(crate) fn publisher_bus(config: &AmqpConfig, exchange: &str) -> Result<(EventBus, Publisher)> {
    let mut bus = EventBus::builder("pubsub-bench-publisher")
        .amqp(config.clone().with_connection_attempts(1))
        .exchange(exchange)
        .build()?;
    bus.start()?;
    let publisher = bus.publisher();
    Ok((bus, publisher))
}

/// How the threads publish through the handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Through {
    /// `send` every event, then wait on every receipt.
    Send,
    /// `publish` each, blocking until confirmed.
    Publish,
}

/// One thread per chunk publishes it through `publisher`; the seconds until every event is
/// confirmed.
fn threads(publisher: &Publisher, chunks: Vec<Vec<Event>>, how: Through) -> Result<f64> {
    let start = Instant::now();
    thread::scope(|s| {
        let running: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                let publisher = publisher.clone();
                s.spawn(move || -> Result<()> {
                    match how {
                        Through::Send => {
                            let receipts = chunk
                                .into_iter()
                                .map(|event| publisher.send(event))
                                .collect::<Result<Vec<_>, _>>()?;
                            for receipt in receipts {
                                receipt.wait()?;
                            }
                        }
                        Through::Publish => {
                            for event in chunk {
                                publisher.publish(event)?;
                            }
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        for thread in running {
            thread
                .join()
                .map_err(|_| anyhow::anyhow!("a publishing thread panicked"))??;
        }
        Ok::<(), anyhow::Error>(())
    })?;
    Ok(start.elapsed().as_secs_f64())
}

/// One tokio task per chunk publishes it through `publisher`, awaiting each receipt before
/// the next publish, on a runtime of 2 threads; the seconds until every event is confirmed.
fn tasks(publisher: &Publisher, chunks: Vec<Vec<Event>>) -> Result<f64> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .context("starting a tokio runtime")?;
    let start = Instant::now();
    runtime.block_on(async {
        let running: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                let publisher = publisher.clone();
                tokio::spawn(async move {
                    for event in chunk {
                        publisher.send(event)?.await?;
                    }
                    Ok::<(), pubsub::PublishError>(())
                })
            })
            .collect();
        for task in running {
            task.await.context("a publishing task panicked")??;
        }
        Ok::<(), anyhow::Error>(())
    })?;
    Ok(start.elapsed().as_secs_f64())
}

/// One thread per chunk publishes it through one `Mutex<EventPublisher>`, one confirmed
/// `publish` per event; the seconds taken.
fn mutex_threads(config: &AmqpConfig, exchange: &str, chunks: Vec<Vec<Event>>) -> Result<f64> {
    let publisher = Mutex::new(EventPublisher::new(open(config)?, exchange)?);
    let start = Instant::now();
    thread::scope(|s| {
        let running: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                let publisher = &publisher;
                s.spawn(move || -> Result<()> {
                    for event in &chunk {
                        publisher
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .publish(event)?;
                    }
                    Ok(())
                })
            })
            .collect();
        for thread in running {
            thread
                .join()
                .map_err(|_| anyhow::anyhow!("a publishing thread panicked"))??;
        }
        Ok::<(), anyhow::Error>(())
    })?;
    let seconds = start.elapsed().as_secs_f64();
    publisher
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner)
        .close()?;
    Ok(seconds)
}

/// Events per second through a bus with `workers` workers, from the first publish to the last
/// event handled: one `#` handler that sleeps `sleep`, or the workload's three trivial ones.
fn workers_rate(admin: &mut Admin, workers: usize, sleep: Option<Duration>, n: u64) -> Result<f64> {
    let names = admin.names(&format!("bus-w{workers}"))?;
    let measured = (|| {
        let config = admin.config().clone();
        let sink = Arc::new(Sink::new(n, false, Vec::new()));
        let mut bus = EventBus::builder(&names.queue)
            .amqp(config.clone().with_connection_attempts(1))
            .exchange(&names.exchange)
            .workers(workers)
            .build()?;
        match sleep {
            Some(sleep) => {
                let sink = sink.clone();
                bus.subscribe(
                    "#",
                    handler_fn("sleepy", move |_, _| {
                        thread::sleep(sleep);
                        sink.all(None);
                        Ok(())
                    }),
                )?;
            }
            None => {
                for (pattern, handler) in workload::handlers(&sink) {
                    bus.subscribe_arc(pattern, handler)?;
                }
            }
        }
        bus.start()?;
        wait_for_consumers(admin, &names.queue, workers)?;
        let publisher = bus.publisher();
        let events = events(n as usize)?;
        let start = Instant::now();
        for chunk in chunks(events, (n as usize).div_ceil(1_000)) {
            for outcome in publisher.publish_all(chunk) {
                outcome?;
            }
        }
        wait_done(&sink)?;
        let seconds = start.elapsed().as_secs_f64();
        let stats = bus.stop()?;
        if stats.subscriber.acked != n {
            bail!(
                "workers({workers}): {} acked, expected {n}",
                stats.subscriber.acked
            );
        }
        Ok(n as f64 / seconds)
    })();
    admin.delete(&names);
    measured
}

/// Events per second that a bus with `workers` workers and the workload's trivial handlers
/// takes out of a queue already holding `n` events (from the first event handled to the
/// last): what the workers can handle, without a publisher competing for the CPU.
fn drain_rate(admin: &mut Admin, workers: usize, n: u64) -> Result<f64> {
    let names = admin.names(&format!("bus-drain{workers}"))?;
    let measured = (|| {
        let config = admin.config().clone().with_connection_attempts(1);
        let bus = |workers: usize, sink: &Arc<Sink>| -> Result<EventBus> {
            let mut bus = EventBus::builder(&names.queue)
                .amqp(config.clone())
                .exchange(&names.exchange)
                .workers(workers)
                .build()?;
            for (pattern, handler) in workload::handlers(sink) {
                bus.subscribe_arc(pattern, handler)?;
            }
            Ok(bus)
        };
        // The service's queue, declared and bound by a first start.
        let mut setup = bus(1, &Arc::new(Sink::new(u64::MAX, false, Vec::new())))?;
        setup.start()?;
        setup.stop()?;
        fill_queue(admin, &config, &names, n)?;
        let sink = Arc::new(Sink::new(n, false, Vec::new()));
        let mut draining = bus(workers, &sink)?;
        draining.start()?;
        wait_done(&sink)?;
        draining.stop()?;
        let tally = sink.tally();
        let seconds = tally.last_ns.saturating_sub(tally.first_ns) as f64 / 1e9;
        Ok(n as f64 / seconds.max(1e-9))
    })();
    admin.delete(&names);
    measured
}

/// Publishes `n` events of the workload into the bound queue of `names` (through a bus
/// handle, in batches of about 1,000) and checks that the queue holds them all.
pub(crate) fn fill_queue(
    admin: &mut Admin,
    config: &AmqpConfig,
    names: &Names,
    n: u64,
) -> Result<()> {
    let (publishing, publisher) = publisher_bus(config, &names.exchange)?;
    for chunk in chunks(events(n as usize)?, (n as usize).div_ceil(1_000)) {
        for outcome in publisher.publish_all(chunk) {
            outcome?;
        }
    }
    drop(publishing);
    let depth = u64::from(admin.depth(&names.queue)?);
    if depth != n {
        bail!("the queue holds {depth} events, expected {n}");
    }
    Ok(())
}

/// Waits until the broker lists `count` consumers on `queue`.
pub(crate) fn wait_for_consumers(admin: &mut Admin, queue: &str, count: usize) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while (admin.consumers(queue)? as usize) < count {
        if Instant::now() > deadline {
            bail!("the bus's {count} worker(s) did not all start consuming `{queue}`");
        }
        thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// Waits until `sink` has its events, failing when none is handled for a minute.
pub(crate) fn wait_done(sink: &Sink) -> Result<()> {
    let mut last = (sink.handled(), Instant::now());
    while !sink.wait_done(Duration::from_millis(100)) {
        let handled = sink.handled();
        if handled != last.0 {
            last = (handled, Instant::now());
        } else if last.1.elapsed() > STALL {
            bail!("bus: no event handled for 60 s after {handled} events");
        }
    }
    Ok(())
}

/// Publishes `n` events through a bus handle, `pace` batches of `publish_all` (the latency
/// measurement's publisher, bus side).
pub(crate) fn publish(
    config: &AmqpConfig,
    exchange: &str,
    n: u64,
    pace: Pace,
) -> Result<Published> {
    let (bus, publisher) = publisher_bus(config, exchange)?;
    let start_ns = workload::wall_ns();
    let start = Instant::now();
    let mut i = 0;
    while i < n {
        pace.wait(start, i);
        let end = (i + pace.per_tick.max(1)).min(n);
        let batch = (i..end)
            .map(|j| workload::event(j, workload::wall_ns()))
            .collect::<Result<Vec<_>>>()?;
        for outcome in publisher.publish_all(batch) {
            outcome?;
        }
        i = end;
    }
    let seconds = start.elapsed().as_secs_f64();
    drop(bus);
    Ok(Published { start_ns, seconds })
}

/// Consumes with an `EventBus` (service = `queue`) until `sink` has its events: the consumer
/// process's bus side.
pub(crate) fn consume(
    config: &AmqpConfig,
    exchange: &str,
    queue: &str,
    prefetch: Option<u16>,
    sink: &Arc<Sink>,
    gate: &Gate,
) -> Result<SubscriberStats> {
    let mut builder = EventBus::builder(queue)
        .amqp(config.clone().with_connection_attempts(1))
        .exchange(exchange);
    if let Some(prefetch) = prefetch {
        builder = builder.prefetch(prefetch);
    }
    let mut bus = builder.build()?;
    for (pattern, handler) in workload::handlers(sink) {
        bus.subscribe_arc(pattern, handler)?;
    }
    // The bus declares and starts consuming in one step.
    bus.start()?;
    gate.declared()?;
    let mut admin = Admin::open(config)?;
    wait_for_consumers(&mut admin, queue, 1)?;
    admin.close()?;
    gate.consuming()?;
    wait_done(sink)?;
    Ok(bus.stop().context("bus: stopping")?.subscriber)
}

/// The `idle-bus` command: starts a bus with the workload's handlers and `workers` workers,
/// waits until they all consume, idles a second, and prints its memory.
pub(crate) fn run_idle(args: &IdleArgs) -> Result<()> {
    let config = crate::admin::config_from_env()?;
    let sink = Arc::new(Sink::new(u64::MAX, false, Vec::new()));
    let mut bus = EventBus::builder(&args.queue)
        .amqp(config.clone())
        .exchange(&args.exchange)
        .workers(args.workers)
        .build()?;
    for (pattern, handler) in workload::handlers(&sink) {
        bus.subscribe_arc(pattern, handler)?;
    }
    bus.start()?;
    let mut admin = Admin::open(&config)?;
    wait_for_consumers(&mut admin, &args.queue, args.workers)?;
    admin.close()?;
    thread::sleep(Duration::from_secs(1));
    let result = json!({
        "rss_kb": status_kb("VmRSS").unwrap_or(0),
        "hwm_kb": status_kb("VmHWM").unwrap_or(0),
        "threads": status_kb("Threads").unwrap_or(0),
    });
    bus.stop()?;
    say(&format!("RESULT {result}"))
}

/// Runs `idle-bus` in a child process; its VmRSS in kB.
pub(crate) fn idle_rss(args: &IdleArgs) -> Result<u64> {
    let exe = std::env::current_exe().context("cannot find the benchmark's executable")?;
    let output = Command::new(exe)
        .args(args.to_args())
        .output()
        .context("cannot start the idle-bus process")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let Some(line) = stdout.lines().find_map(|l| l.strip_prefix("RESULT ")) else {
        bail!(
            "the idle-bus process said no RESULT ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let v: Value = serde_json::from_str(line).context("idle-bus: RESULT is not JSON")?;
    v["rss_kb"]
        .as_u64()
        .context("idle-bus: no rss_kb in its RESULT")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_split_evenly() {
        let check = |n: usize, parts: usize, sizes: &[usize]| {
            let got: Vec<usize> = chunks(events(n).unwrap(), parts)
                .iter()
                .map(Vec::len)
                .collect();
            assert_eq!(got, sizes, "{n} in {parts}");
        };
        check(8, 8, &[1; 8]);
        check(10, 3, &[4, 4, 2]);
        check(0, 3, &[]);
        check(3, 0, &[3]);
    }
}
