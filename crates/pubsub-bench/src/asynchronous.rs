//! The `AsyncEventBus` rows: each bus drains a queue pre-filled with the same events, timed
//! from the first event handled to the last. Handlers that await 5 ms (`concurrency(1)`,
//! `concurrency(256)`, against the blocking bus's `workers(16)` sleeping 5 ms), and trivial
//! handlers (`concurrency(64)` against the blocking bus's `workers(1)`), round by round.

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use pubsub::{handler_fn, EventBus};

use crate::admin::Admin;
use crate::bus::{chunks, events, fill_queue, wait_done};
use crate::cli::Options;
use crate::report::{self, Stat};
use crate::workload::Sink;

/// How each handler's I/O is played: an await (async) or a sleep (blocking) of 5 ms.
const IO: Duration = Duration::from_millis(5);

/// The deliveries held in the handlers for the memory row.
const IN_FLIGHT: u64 = 10_000;

/// Who drains the queue.
#[derive(Debug, Clone, Copy)]
enum Drainer {
    /// The blocking bus with `n` workers.
    Workers(usize),
    /// The async bus with concurrency `n`.
    Concurrency(usize),
}

/// Runs the async bus rows, prints their table and targets.
pub(crate) fn run(admin: &mut Admin, options: &Options) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .context("starting a tokio runtime")?;
    let mut rows = Vec::new();
    let (n1, n16, n256) = if options.quick {
        (100, 800, 4_000)
    } else {
        (400, 3_200, 20_000)
    };
    eprintln!("async bus: handlers awaiting 5 ms, concurrency(1) and (256), workers(16)...");
    let c1 = drain(admin, &runtime, Drainer::Concurrency(1), Some(IO), n1)?;
    let w16 = drain(admin, &runtime, Drainer::Workers(16), Some(IO), n16)?;
    let c256 = drain(admin, &runtime, Drainer::Concurrency(256), Some(IO), n256)?;
    for (what, n, rate) in [
        ("async bus, concurrency(1), handler awaits 5 ms", n1, c1),
        ("blocking bus, workers(16), handler sleeps 5 ms", n16, w16),
        (
            "async bus, concurrency(256), handler awaits 5 ms",
            n256,
            c256,
        ),
    ] {
        rows.push(vec![
            what.to_owned(),
            n.to_string(),
            report::thousands(rate),
        ]);
    }

    let trivial_n = if options.quick { 3_000 } else { 30_000 };
    let rounds = if options.quick { 2 } else { 3 };
    eprintln!(
        "async bus: trivial handlers, concurrency(64) against workers(1), {rounds} rounds..."
    );
    let (mut blocking, mut asynchronous) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        blocking.push(drain(
            admin,
            &runtime,
            Drainer::Workers(1),
            None,
            trivial_n,
        )?);
        asynchronous.push(drain(
            admin,
            &runtime,
            Drainer::Concurrency(64),
            None,
            trivial_n,
        )?);
    }
    let ratios: Vec<f64> = asynchronous
        .iter()
        .zip(&blocking)
        .map(|(a, b)| a / b)
        .collect();
    let (Some(blocking), Some(asynchronous), Some(trivial)) = (
        Stat::of(&blocking),
        Stat::of(&asynchronous),
        Stat::of(&ratios),
    ) else {
        bail!("async bus: no trivial-handler round ran");
    };
    rows.push(vec![
        format!("blocking bus, workers(1), trivial handler (median of {rounds})"),
        trivial_n.to_string(),
        report::rate_range(&blocking),
    ]);
    rows.push(vec![
        format!(
            "async bus, concurrency(64), trivial handler (median of {rounds}; {} the blocking bus of the same round)",
            report::ratio_range(&trivial)
        ),
        trivial_n.to_string(),
        report::rate_range(&asynchronous),
    ]);

    eprintln!(
        "async bus: memory, idle and with 10,000 deliveries in its handlers (child processes)..."
    );
    let (idle, busy) = memory(admin, IN_FLIGHT)?;

    println!("\n## AsyncEventBus: each bus drains a queue pre-filled with the same events\n");
    report::print_table(&["run", "events", "msg/s"], &rows);
    println!(
        "\nidle async bus: {} kB RSS; with {} deliveries in its handlers: {} kB RSS (child processes)\n",
        report::thousands(idle as f64),
        report::thousands(IN_FLIGHT as f64),
        report::thousands(busy as f64)
    );
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    let (speedup, over_workers) = (c256 / c1, c256 / w16);
    println!(
        "- async bus, concurrency(256) vs concurrency(1), handlers awaiting 5 ms: {speedup:.1}x (target >= 50x): {}",
        verdict(speedup >= 50.0)
    );
    println!(
        "- async bus, concurrency(256) vs the blocking bus's workers(16), 5 ms of I/O: {over_workers:.1}x (target >= 4x): {}",
        verdict(over_workers >= 4.0)
    );
    println!(
        "- async bus vs the blocking bus, trivial handlers: {} (target >= 0.9x): {}",
        report::ratio_range(&trivial),
        verdict(trivial.median >= 0.9)
    );
    println!(
        "- idle async bus: {} kB RSS (target < 16,384 kB): {}; with {} deliveries in flight: {} kB (reported)",
        report::thousands(idle as f64),
        verdict(idle < 16 * 1024),
        report::thousands(IN_FLIGHT as f64),
        report::thousands(busy as f64)
    );
    println!(
        "{}",
        report::bench_line(
            "async-bus",
            serde_json::json!({
                "concurrency1_io_msgs_per_s": report::round(c1, 1),
                "workers16_io_msgs_per_s": report::round(w16, 1),
                "concurrency256_io_msgs_per_s": report::round(c256, 0),
                "blocking_trivial_msgs_per_s": report::round(blocking.median, 0),
                "async_trivial_msgs_per_s": report::round(asynchronous.median, 0),
                "async_vs_blocking_trivial": report::round(trivial.median, 2),
                "idle_rss_kb": idle,
                "in_flight_10000_rss_kb": busy,
            })
        )
    );
    Ok(())
}

/// Events per second that `drainer` takes out of a queue already holding `n` events, from
/// the first handled to the last: one `#` handler that awaits (or sleeps) `io`, or does
/// nothing.
fn drain(
    admin: &mut Admin,
    runtime: &tokio::runtime::Runtime,
    drainer: Drainer,
    io: Option<Duration>,
    n: u64,
) -> Result<f64> {
    let names = admin.names("async-drain")?;
    let measured = (|| {
        let config = admin.config().clone().with_connection_attempts(1);
        let builder = || {
            EventBus::builder(&names.queue)
                .amqp(config.clone())
                .exchange(&names.exchange)
        };
        // The queue, declared and bound by a first start of a blocking bus.
        let mut setup = builder().build()?;
        setup.subscribe("#", handler_fn("setup", |_, _| Ok(())))?;
        setup.start()?;
        setup.stop()?;
        fill_queue(admin, &config, &names, n)?;
        let sink = Arc::new(Sink::new(n, false, Vec::new()));
        match drainer {
            Drainer::Workers(workers) => {
                let mut bus = builder().workers(workers).build()?;
                let s = sink.clone();
                bus.subscribe(
                    "#",
                    handler_fn("all", move |_, _| {
                        if let Some(io) = io {
                            thread::sleep(io);
                        }
                        s.all(None);
                        Ok(())
                    }),
                )?;
                bus.start()?;
                wait_done(&sink)?;
                bus.stop()?;
            }
            Drainer::Concurrency(concurrency) => runtime.block_on(async {
                let mut bus = builder().concurrency(concurrency).build_async()?;
                let s = sink.clone();
                bus.subscribe_fn("#", "all", move |_, _| {
                    let s = s.clone();
                    async move {
                        if let Some(io) = io {
                            tokio::time::sleep(io).await;
                        }
                        s.all(None);
                        Ok(())
                    }
                })?;
                bus.start().await?;
                let waited = {
                    let sink = sink.clone();
                    tokio::task::spawn_blocking(move || wait_done(&sink)).await?
                };
                bus.stop().await?;
                waited
            })?,
        }
        let tally = sink.tally();
        let seconds = tally.last_ns.saturating_sub(tally.first_ns) as f64 / 1e9;
        Ok(n as f64 / seconds.max(1e-9))
    })();
    admin.delete(&names);
    measured
}

/// The consumer of the latency measurement on the async bus: the workload's handlers as async
/// handlers (each runs its blocking body in its task), concurrency 64 unless `prefetch` says
/// otherwise.
pub(crate) fn consume(
    config: &pubsub_amqp::AmqpConfig,
    exchange: &str,
    queue: &str,
    prefetch: Option<u16>,
    sink: &Arc<Sink>,
    gate: &crate::sides::Gate,
) -> Result<pubsub::SubscriberStats> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .context("starting a tokio runtime")?;
    let mut bus = runtime.block_on(async {
        let mut builder = EventBus::builder(queue)
            .amqp(config.clone().with_connection_attempts(1))
            .exchange(exchange);
        if let Some(prefetch) = prefetch {
            builder = builder.concurrency(usize::from(prefetch));
        }
        let mut bus = builder.build_async()?;
        for (pattern, handler) in crate::workload::handlers(sink) {
            bus.subscribe(pattern, InTask(handler))?;
        }
        bus.start().await?;
        Ok::<_, anyhow::Error>(bus)
    })?;
    // The runtime's threads run the handlers meanwhile.
    gate.declared()?;
    let mut admin = Admin::open(config)?;
    crate::bus::wait_for_consumers(&mut admin, queue, 1)?;
    admin.close()?;
    gate.consuming()?;
    crate::bus::wait_done(sink)?;
    Ok(runtime
        .block_on(bus.stop())
        .context("async bus: stopping")?
        .subscriber)
}

/// A blocking handler run inside an async handler's task.
struct InTask(Arc<dyn pubsub_core::EventHandler>);

impl pubsub::AsyncEventHandler for InTask {
    fn handle(&self, event: pubsub::Event, meta: pubsub::Metadata) -> pubsub::HandlerFuture {
        let handler = self.0.clone();
        Box::pin(async move { handler.handle(&event, &meta) })
    }

    fn name(&self) -> &str {
        self.0.name()
    }
}

/// The `idle-bus --async-in-flight N` command: an async bus with the workload's handlers
/// (`N` = 0: idle) or, for `N` > 0, a `#` handler that waits until the bus stops, with `N`
/// events published to it by this process; once they are all in the handlers, prints the
/// process's memory. Stopping leaves them to the broker.
pub(crate) fn run_idle(args: &crate::cli::IdleArgs, in_flight: u64) -> Result<()> {
    use std::sync::atomic::{AtomicU64, Ordering};

    let config = crate::admin::config_from_env()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .context("starting a tokio runtime")?;
    let entered = Arc::new(AtomicU64::new(0));
    let sink = Arc::new(Sink::new(u64::MAX, false, Vec::new()));
    let mut bus = runtime.block_on(async {
        let concurrency = usize::try_from(in_flight.max(64)).unwrap_or(usize::MAX);
        let mut bus = EventBus::builder(&args.queue)
            .amqp(config.clone())
            .exchange(&args.exchange)
            .concurrency(concurrency)
            .build_async()?;
        bus.drain_timeout(Duration::ZERO);
        if in_flight == 0 {
            for (pattern, handler) in crate::workload::handlers(&sink) {
                bus.subscribe(pattern, InTask(handler))?;
            }
        } else {
            let entered = entered.clone();
            bus.subscribe_fn("#", "wait", move |_, _| {
                entered.fetch_add(1, Ordering::Relaxed);
                std::future::pending()
            })?;
        }
        bus.start().await?;
        Ok::<_, anyhow::Error>(bus)
    })?;
    let mut admin = Admin::open(&config)?;
    crate::bus::wait_for_consumers(&mut admin, &args.queue, 1)?;
    admin.close()?;
    if in_flight > 0 {
        let publisher = bus.publisher();
        for chunk in chunks(events(usize::try_from(in_flight)?)?, 10) {
            for outcome in publisher.publish_all(chunk) {
                outcome?;
            }
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while entered.load(Ordering::Relaxed) < in_flight {
            if std::time::Instant::now() > deadline {
                bail!(
                    "only {} of {in_flight} deliveries reached the handlers",
                    entered.load(Ordering::Relaxed)
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
    thread::sleep(Duration::from_secs(1));
    let result = serde_json::json!({
        "rss_kb": crate::workload::status_kb("VmRSS").unwrap_or(0),
        "hwm_kb": crate::workload::status_kb("VmHWM").unwrap_or(0),
        "threads": crate::workload::status_kb("Threads").unwrap_or(0),
    });
    runtime.block_on(bus.stop())?;
    crate::sides::say(&format!("RESULT {result}"))
}

/// The resident memory of an idle async bus, and of one holding `in_flight` deliveries in its
/// handlers, each in a child process: kB.
fn memory(admin: &mut Admin, in_flight: u64) -> Result<(u64, u64)> {
    let mut measure = |n: u64| {
        let names = admin.names("async-idle")?;
        let rss = crate::bus::idle_rss(&crate::cli::IdleArgs {
            exchange: names.exchange.clone(),
            queue: names.queue.clone(),
            workers: 1,
            asynchronous: Some(n),
        });
        admin.delete(&names);
        rss
    };
    Ok((measure(0)?, measure(in_flight)?))
}
