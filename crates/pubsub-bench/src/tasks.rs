//! The task queue's rows (`--tasks`): how many tasks per second a `TaskWorker` runs with a
//! trivial task function, its store on SQLite (a file) and on PostgreSQL, beside the same
//! messages drained by an `EventSubscriber` with a trivial handler and no store (the
//! baseline: what the store and the task bookkeeping cost); and `TaskQueue::submit` against
//! `EventPublisher::publish`, one confirm each, and `TaskQueue::submit_all` (the queue's
//! filling) beside them.
//!
//! Each run fills the queue first, then starts the consumer and times it until every task is
//! settled (the observer channel's reports). Configurations are interleaved round by round.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use crossbeam_channel::Receiver;
use pubsub_amqp::AmqpConfig;
use pubsub_core::envelope::{Envelope, TASK_DOMAIN};
use pubsub_core::{handler_fn, Event};
use pubsub_publisher::EventPublisher;
use pubsub_registry::HandlerRegistry;
use pubsub_store::Database;
use pubsub_subscriber::{DeliveryReport, Disposition, EventSubscriber};
use pubsub_tasks::{exchange_config, routing_key, TaskQueue, TaskWorker};
use pubsub_testkit::Names;
use serde_json::json;

use crate::admin::{open, Admin};
use crate::cli::Options;
use crate::report::{self, Stat};
use pubsub_testkit::TestDatabase;

/// The task every row runs.
const TASK: &str = "noop";

/// How long a run may go without a settled task before it is abandoned.
const STALL: Duration = Duration::from_secs(60);

/// The prefetches the rows run at: the task worker's default (fair to long tasks), and one
/// for short tasks (larger batches, fewer commits).
const PREFETCHES: [u16; 2] = [10, 100];

/// Where a row's tasks go, at which prefetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Row {
    /// An `EventSubscriber` with a trivial handler, no store.
    Events(u16),
    /// A `TaskWorker` on SQLite with this many workers.
    Sqlite(usize, u16),
    /// A `TaskWorker` on PostgreSQL with this many workers.
    Postgres(usize, u16),
}

impl Row {
    fn name(self) -> String {
        match self {
            Row::Events(p) => format!("events without a store (baseline) at prefetch {p}"),
            Row::Sqlite(n, p) => format!("tasks on SQLite with {n} worker(s) at prefetch {p}"),
            Row::Postgres(n, p) => {
                format!("tasks on PostgreSQL with {n} worker(s) at prefetch {p}")
            }
        }
    }

    fn prefetch(self) -> u16 {
        match self {
            Row::Events(p) | Row::Sqlite(_, p) | Row::Postgres(_, p) => p,
        }
    }
}

/// The rows `--only` names (a task row's name contains one of its comma-separated parts),
/// each prefetch's events row kept as the baseline of the task rows at that prefetch.
fn select(rows: Vec<Row>, only: Option<&str>) -> Result<Vec<Row>> {
    let Some(only) = only else {
        return Ok(rows);
    };
    let named = |row: &Row| only.split(',').any(|part| row.name().contains(part.trim()));
    let chosen: Vec<Row> = rows
        .iter()
        .copied()
        .filter(|row| {
            !matches!(row, Row::Events(_)) && named(row)
                || matches!(row, Row::Events(p) if rows.iter().any(|r| {
                    !matches!(r, Row::Events(_)) && r.prefetch() == *p && named(r)
                }))
        })
        .collect();
    if chosen.is_empty() {
        bail!("--only matches no task row");
    }
    Ok(chosen)
}

/// A run's task store, and what removes it when dropped (nothing for the events row's
/// in-memory one).
fn store_for(row: Row) -> Result<(Database, Option<TestDatabase>)> {
    let owned = match row {
        Row::Events(_) => return Ok((Database::sqlite_in_memory(), None)),
        Row::Sqlite(..) => TestDatabase::sqlite("bench-tasks"),
        Row::Postgres(..) => TestDatabase::postgres("bench-tasks").context("no PostgreSQL")?,
    };
    Ok((Database::parse(owned.url())?, Some(owned)))
}

/// Runs the task rows and prints their table and JSON lines.
pub(crate) fn run(config: &AmqpConfig, options: &Options) -> Result<()> {
    let mut admin = Admin::open(config)?;
    let count = ((if options.quick { 2_000.0 } else { 10_000.0 }) * options.scale) as u64;
    let count = count.max(100);
    let rounds = options.rounds.unwrap_or(if options.quick { 1 } else { 3 });
    let postgres = pubsub_testkit::postgres_url();
    let mut rows = Vec::new();
    for p in PREFETCHES {
        rows.extend([Row::Events(p), Row::Sqlite(1, p), Row::Sqlite(4, p)]);
        if postgres.is_some() {
            rows.extend([Row::Postgres(1, p), Row::Postgres(4, p)]);
        }
    }
    if postgres.is_none() {
        eprintln!("tasks: no PostgreSQL, its rows are left out");
    }
    let rows = select(rows, options.only.as_deref())?;
    println!(
        "# pubsub-bench --tasks{}: {count} tasks per run, {rounds} round(s), against {}",
        if options.quick { " --quick" } else { "" },
        config.address()
    );
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); rows.len()];
    let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); rows.len()];
    let mut commits: Vec<Vec<f64>> = vec![Vec::new(); rows.len()];
    let mut fills = Vec::new();
    for round in 1..=rounds {
        // Each row against the events at its prefetch, in the same round.
        let mut baseline = 0.0;
        for (i, &row) in rows.iter().enumerate() {
            eprintln!("tasks: round {round}/{rounds}, {}...", row.name());
            let drained = drain(&mut admin, row, count)?;
            fills.push(drained.filled);
            if matches!(row, Row::Events(_)) {
                baseline = drained.rate;
            }
            rates[i].push(drained.rate);
            ratios[i].push(drained.rate / baseline);
            commits[i].push(drained.commits as f64 / count as f64);
        }
    }
    let mut table = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let (Some(rate), Some(ratio)) = (Stat::of(&rates[i]), Stat::of(&ratios[i])) else {
            continue;
        };
        let per_task = Stat::of(&commits[i]).map_or(f64::NAN, |s| s.median);
        table.push(vec![
            row.name(),
            report::rate_range(&rate),
            report::ratio_range(&ratio),
            if matches!(row, Row::Events(_)) {
                "-".to_owned()
            } else {
                format!("{per_task:.3}")
            },
        ]);
        println!(
            "{}",
            report::bench_line(
                "tasks",
                json!({
                    "config": row.name(),
                    "tasks_per_s": report::round(rate.median, 0),
                    "ratio_vs_events": report::round(ratio.median, 3),
                    "store_commits_per_task": report::round(per_task, 3),
                }),
            )
        );
    }
    report::print_table(
        &[
            "configuration",
            "tasks/s",
            "vs events at its prefetch",
            "store commits a task",
        ],
        &table,
    );

    if options.only.is_some() {
        // The rows asked for only: no submit or scheduled rows.
        return admin.close();
    }
    let submits = if options.quick { 300 } else { 2_000 };
    eprintln!("tasks: TaskQueue::submit against EventPublisher::publish, {submits} each...");
    let (submit, publish) = submit_rates(&mut admin, submits)?;
    let submit_all = Stat::of(&fills).map_or(f64::NAN, |s| s.median);
    println!(
        "{}",
        report::bench_line(
            "task_submit",
            json!({
                "submit_per_s": report::round(submit, 0),
                "publish_per_s": report::round(publish, 0),
                "ratio": report::round(submit / publish, 3),
                "submit_all_per_s": report::round(submit_all, 0),
            }),
        )
    );
    report::print_table(
        &["submitting", "per second", "ratio"],
        &[
            vec![
                "EventPublisher::publish".to_owned(),
                report::thousands(publish),
                "1.00x".to_owned(),
            ],
            vec![
                "TaskQueue::submit".to_owned(),
                report::thousands(submit),
                format!("{:.2}x", submit / publish),
            ],
            vec![
                format!("TaskQueue::submit_all, 1,000 a batch ({count} tasks)"),
                report::thousands(submit_all),
                format!("{:.2}x", submit_all / publish),
            ],
        ],
    );
    let scheduled = if options.quick { 30 } else { 100 };
    eprintln!("tasks: {scheduled} scheduled tasks of each delay...");
    scheduled_delays(&mut admin, scheduled)?;
    admin.close()
}

/// The delays asked for in the scheduled rows: one on the 100 ms grid, one on a bucket's
/// edge, one rounded up to its bucket (1,500 ms -> 1,536 ms).
const DELAYS_MS: [u64; 3] = [300, 1_024, 1_500];

/// Submits `n` tasks of each delay of [`DELAYS_MS`] at once, and prints how long after its
/// submit call each ran, p50 and p99, against the delay asked for.
fn scheduled_delays(admin: &mut Admin, n: usize) -> Result<()> {
    use std::collections::HashMap;
    use std::sync::Mutex;
    let names = admin.names("scheduled")?;
    let owned = TestDatabase::sqlite("bench-scheduled");
    let database = Database::parse(owned.url())?;
    let ran: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let log = ran.clone();
    let result = (|| {
        let worker = TaskWorker::builder(admin.config().clone(), database.clone())
            .exchange(&names.exchange)
            .queue(&names.queue)
            .prefetch(100)
            .task(TASK, move |task| {
                if let Some(i) = task.payload()["i"].as_u64() {
                    if let Ok(mut ran) = log.lock() {
                        ran.insert(i, Instant::now());
                    }
                }
                Ok(serde_json::Value::Null)
            })
            .build()?
            .start()?;
        let queue = TaskQueue::builder(open(admin.config())?)
            .exchange(&names.exchange)
            .queue(&names.queue)
            .build()?;
        let mut submitted = Vec::new();
        for (d, &ms) in DELAYS_MS.iter().enumerate() {
            for k in 0..n {
                let i = (d * n + k) as u64;
                // The delay runs from the call: the broker takes the task after it starts,
                // and confirms it (persistent, on a durable queue) once on disk, which may
                // be tens of milliseconds later.
                let called = Instant::now();
                queue
                    .submit_after(Duration::from_millis(ms), TASK, json!({ "i": i }))
                    .context("submitting a scheduled task")?;
                submitted.push((i, ms, called));
            }
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while ran.lock().map(|r| r.len()).unwrap_or(0) < submitted.len() {
            if Instant::now() > deadline {
                bail!("scheduled tasks did not all run in 30 s");
            }
            thread::sleep(Duration::from_millis(20));
        }
        queue.close()?;
        worker.stop()?;
        let ran = ran.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone();
        let mut table = Vec::new();
        for &ms in &DELAYS_MS {
            // Achieved delay: from the submit's call (before the broker took it) to the
            // function's start.
            let mut achieved: Vec<f64> = submitted
                .iter()
                .filter(|(_, asked, _)| *asked == ms)
                .filter_map(|(i, _, at)| {
                    ran.get(i)
                        .map(|r| r.duration_since(*at).as_secs_f64() * 1e3)
                })
                .collect();
            achieved.sort_by(f64::total_cmp);
            let pick = |q: f64| achieved[((achieved.len() - 1) as f64 * q).round() as usize];
            let (p50, p99) = (pick(0.5), pick(0.99));
            let bucket = bucket_ms(ms);
            table.push(vec![
                format!("{ms} ms (its bucket {bucket} ms)"),
                format!("{p50:.0} ms ({:.2}x)", p50 / ms as f64),
                format!("{p99:.0} ms ({:.2}x)", p99 / ms as f64),
                format!("{:.0} ms", achieved[0]),
            ]);
            println!(
                "{}",
                report::bench_line(
                    "task_scheduled",
                    json!({
                        "asked_ms": ms,
                        "bucket_ms": bucket,
                        "p50_ms": report::round(p50, 1),
                        "p99_ms": report::round(p99, 1),
                        "min_ms": report::round(achieved[0], 1),
                    }),
                )
            );
        }
        report::print_table(
            &["delay asked", "achieved, p50", "achieved, p99", "earliest"],
            &table,
        );
        Ok(())
    })();
    for &ms in &DELAYS_MS {
        let bucket = Duration::from_millis(bucket_ms(ms));
        admin.delete_queue(&pubsub_tasks::delay_queue_name(&names.queue, bucket));
    }
    admin.delete(&names);
    drop(owned);
    result
}

/// The bucket a delay of `ms` waits in (`pubsub-tasks`' rounding), in ms.
fn bucket_ms(ms: u64) -> u64 {
    pubsub_tasks::delay_bucket(Duration::from_millis(ms)).as_millis() as u64
}

/// What one run measured.
struct Drained {
    /// Tasks per second drained.
    rate: f64,
    /// Tasks per second submitted (the queue's filling).
    filled: f64,
    /// The task store's commits (0 for the events row).
    commits: u64,
}

/// Fills a new queue with `count` tasks, then drains it with `row`'s consumer.
fn drain(admin: &mut Admin, row: Row, count: u64) -> Result<Drained> {
    let names = admin.names("tasks")?;
    let (database, store) = store_for(row)?;
    let result = drain_in(admin.config(), &names, row, count, database);
    admin.delete(&names);
    drop(store);
    result
}

fn drain_in(
    config: &AmqpConfig,
    names: &Names,
    row: Row,
    count: u64,
    database: Database,
) -> Result<Drained> {
    let (tx, reports) = crossbeam_channel::unbounded();
    let key = routing_key(TASK);
    // Each branch declares the topology, fills the queue, then times the drain.
    let (elapsed, stats, filled, commits) = match row {
        Row::Events(_) => {
            let mut registry = HandlerRegistry::new();
            registry.subscribe(
                &format!("{TASK_DOMAIN}.*"),
                handler_fn("noop", |_, _| Ok(())),
            )?;
            let mut subscriber =
                EventSubscriber::builder(open(config)?, &names.queue, Arc::new(registry))
                    .exchange(&names.exchange)
                    .declare_exchange(Some(exchange_config()))
                    .envelope(Envelope::Task)
                    .bindings([key])
                    .prefetch(row.prefetch())
                    .observer(tx)
                    .build()?;
            subscriber.setup()?;
            let filled = fill(config, names, count)?;
            let started = Instant::now();
            let running = subscriber.spawn()?;
            wait(&reports, count)?;
            let elapsed = started.elapsed();
            (elapsed, running.stop()?, filled, 0)
        }
        Row::Sqlite(workers, prefetch) | Row::Postgres(workers, prefetch) => {
            let worker = TaskWorker::builder(config.clone(), database)
                .exchange(&names.exchange)
                .queue(&names.queue)
                .task(TASK, |_task| Ok(serde_json::Value::Null))
                .workers(workers)
                .prefetch(prefetch)
                .observer(tx)
                .build()?;
            worker.setup()?;
            let filled = fill(config, names, count)?;
            let started = Instant::now();
            let running = worker.start()?;
            wait(&reports, count)?;
            let elapsed = started.elapsed();
            let commits = running.store_commits();
            (elapsed, running.stop()?.subscriber, filled, commits)
        }
    };
    if stats.acked != count {
        bail!("{}: {count} tasks, but {stats}", row.name());
    }
    Ok(Drained {
        rate: count as f64 / elapsed.as_secs_f64(),
        filled,
        commits,
    })
}

/// Submits `count` distinct tasks with `TaskQueue::submit_all`, 1,000 at a time: tasks per
/// second.
fn fill(config: &AmqpConfig, names: &Names, count: u64) -> Result<f64> {
    let queue = TaskQueue::builder(open(config)?)
        .exchange(&names.exchange)
        .declare_exchange(false)
        .build()?;
    let started = Instant::now();
    let mut sent = 0;
    while sent < count {
        let batch = (sent..count.min(sent + 1_000)).map(|i| (TASK, json!({ "i": i })));
        for outcome in queue.submit_all(batch) {
            outcome.context("filling the task queue")?;
            sent += 1;
        }
    }
    let rate = count as f64 / started.elapsed().as_secs_f64();
    queue.close()?;
    Ok(rate)
}

/// Waits for `count` settled deliveries (retries do not count; none are expected).
fn wait(reports: &Receiver<DeliveryReport>, count: u64) -> Result<()> {
    let mut settled = 0;
    while settled < count {
        let report = reports
            .recv_timeout(STALL)
            .with_context(|| format!("only {settled} of {count} tasks settled"))?;
        if !matches!(report.disposition, Disposition::Retried { .. }) {
            settled += 1;
        }
    }
    Ok(())
}

/// `TaskQueue::submit` and `EventPublisher::publish` rates, one confirm each, `count` each.
fn submit_rates(admin: &mut Admin, count: u32) -> Result<(f64, f64)> {
    let names = admin.names("submit")?;
    let result = submit_rates_in(admin, &names, count);
    admin.delete(&names);
    result
}

fn submit_rates_in(admin: &mut Admin, names: &Names, count: u32) -> Result<(f64, f64)> {
    let config = admin.config().clone();
    let queue = TaskQueue::builder(open(&config)?)
        .exchange(&names.exchange)
        .build()?;
    // A queue bound for the task's key, so that submit succeeds.
    let mut connection = open(&config)?;
    let channel = connection.open_channel()?;
    channel.declare_queue(&names.queue, &pubsub_amqp::QueueConfig::default())?;
    channel.bind_queue(&names.queue, &names.exchange, &routing_key(TASK))?;
    let started = Instant::now();
    for i in 0..count {
        queue.submit(TASK, json!({ "i": i }))?;
    }
    let submit = f64::from(count) / started.elapsed().as_secs_f64();
    queue.close()?;
    channel.bind_queue(
        &names.queue,
        &names.exchange,
        &format!("{TASK_DOMAIN}.{TASK}"),
    )?;
    let mut publisher = EventPublisher::builder(open(&config)?, &names.exchange)
        .declare_exchange(None)
        .build()?;
    let started = Instant::now();
    for i in 0..count {
        let event = Event::builder(TASK_DOMAIN, TASK)
            .data(json!({ "i": i }))
            .build()?;
        publisher
            .publish(&event)
            .map_err(|e| anyhow::anyhow!("publishing: {e}"))?;
    }
    let publish = f64::from(count) / started.elapsed().as_secs_f64();
    publisher.close()?;
    let _ = channel.close();
    connection.close()?;
    Ok((submit, publish))
}
