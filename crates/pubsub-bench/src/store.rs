//! The event store's rows (`--store`, and a section of the full benchmark): events stored
//! per second through the bus into SQLite and into PostgreSQL, each as a ratio to the same
//! end-to-end run without a store, interleaved round by round; and the baseline of plain
//! batched INSERTs of the same rows, without the broker.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use pubsub_core::{handler_fn, Event, Metadata};
use pubsub_publisher::EventPublisher;
use pubsub_recorder::{RecordOptions, Recorder};
use pubsub_registry::HandlerRegistry;
use pubsub_store::{Database, EventRow, EventStore};
use pubsub_subscriber::EventSubscriber;
use serde_json::json;

use crate::admin::{open, Admin};
use crate::cli::Options;
use crate::report::Stat;
use crate::workload;
use pubsub_testkit::TestDatabase;

/// Where a run keeps its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    None,
    Sqlite,
    Postgres,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::None => "no store",
            Kind::Sqlite => "SQLite",
            Kind::Postgres => "PostgreSQL",
        }
    }
}

/// A database for one run (removed when dropped), parsed for the store.
struct RunDb {
    database: Database,
    _owned: TestDatabase,
}

fn run_db(kind: Kind) -> Result<Option<RunDb>> {
    let owned = match kind {
        Kind::None => return Ok(None),
        Kind::Sqlite => TestDatabase::sqlite("bench"),
        Kind::Postgres => {
            TestDatabase::postgres("bench").ok_or_else(|| anyhow!("PostgreSQL is not reachable"))?
        }
    };
    Ok(Some(RunDb {
        database: Database::parse(owned.url())?,
        _owned: owned,
    }))
}

/// One run: a subscriber with a trivial handler on `#`, at the library's defaults (prefetch
/// 100) without a store, or with the store as its sink at the store's defaults
/// ([`RecordOptions`]: prefetch 1,000, commit batches of 500); `n` events published with
/// `publish_all` in batches of 1,000. Returns events per second from the first publish
/// until the last event was handled (no store) or committed (a store).
pub(crate) fn run_once(admin: &mut Admin, kind: Kind, n: u64) -> Result<f64> {
    let names = admin.names("store")?;
    let db = run_db(kind)?;
    let result = (|| {
        let handled = Arc::new(AtomicU64::new(0));
        let mut registry = HandlerRegistry::new();
        let h = Arc::clone(&handled);
        registry.subscribe(
            "#",
            handler_fn("count", move |_, _| {
                h.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }),
        )?;
        let mut builder =
            EventSubscriber::builder(open(admin.config())?, &names.queue, Arc::new(registry))
                .exchange(&names.exchange);
        let mut stored = None;
        if let Some(db) = &db {
            let recorder = Recorder::new(&db.database)?;
            stored = Some(recorder.stored());
            builder = builder
                .sink(recorder)
                .prefetch(RecordOptions::default().prefetch);
        }
        let mut subscriber = builder.build()?;
        subscriber.setup()?;
        let running = subscriber.spawn()?;
        while admin.consumers(&names.queue)? == 0 {
            if running.is_finished() {
                bail!("the subscriber stopped before consuming");
            }
            thread::sleep(Duration::from_millis(2));
        }
        let events: Vec<Event> = (0..n)
            .map(|i| workload::event(i, 0))
            .collect::<Result<_>>()?;
        let mut publisher = EventPublisher::new(open(admin.config())?, &names.exchange)?;
        let start = Instant::now();
        for chunk in events.chunks(1_000) {
            for outcome in publisher.publish_all(chunk) {
                outcome.map_err(|e| anyhow!("{e}"))?;
            }
        }
        let done = || match &stored {
            Some(stored) => stored.load(Ordering::Relaxed) >= n,
            None => handled.load(Ordering::Relaxed) >= n,
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        while !done() {
            if Instant::now() > deadline || running.is_finished() {
                bail!("{}: not all {n} events arrived", kind.name());
            }
            thread::sleep(Duration::from_micros(200));
        }
        let seconds = start.elapsed().as_secs_f64();
        publisher.close()?;
        running.stop()?;
        Ok(n as f64 / seconds)
    })();
    admin.delete(&names);
    drop(db);
    result
}

/// Rows per second of plain batched INSERTs (`EventStore::append`, 100 rows a transaction)
/// of the same events, without the broker.
fn inserts_only(kind: Kind, n: u64) -> Result<f64> {
    let db = run_db(kind)?.context("a store")?;
    let result = (|| {
        let mut store = EventStore::open(&db.database)?;
        let meta = Metadata::default();
        let now = time::OffsetDateTime::now_utc();
        let rows: Vec<EventRow> = (0..n)
            .map(|i| workload::event(i, 0).map(|e| EventRow::new(&e, &meta, now)))
            .collect::<Result<_>>()?;
        let start = Instant::now();
        for chunk in rows.chunks(100) {
            store.append(chunk)?;
        }
        Ok(n as f64 / start.elapsed().as_secs_f64())
    })();
    drop(db);
    result
}

/// Runs the store rows and prints them, with a JSON line each.
pub(crate) fn run(admin: &mut Admin, options: &Options) -> Result<()> {
    let n: u64 = if options.quick { 4_000 } else { 20_000 };
    let rounds = if options.quick { 2 } else { 3 };
    let mut kinds = vec![Kind::None, Kind::Sqlite];
    if pubsub_testkit::postgres_url().is_some() {
        kinds.push(Kind::Postgres);
    }
    eprintln!("event store: {rounds} round(s) of {n} events...");
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); kinds.len()];
    let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); kinds.len()];
    let mut inserts: Vec<Vec<f64>> = vec![Vec::new(); kinds.len()];
    for _ in 0..rounds {
        let mut plain = f64::NAN;
        for (i, &kind) in kinds.iter().enumerate() {
            let rate = run_once(admin, kind, n)?;
            if kind == Kind::None {
                plain = rate;
            } else {
                ratios[i].push(rate / plain);
                inserts[i].push(inserts_only(kind, n)?);
            }
            rates[i].push(rate);
        }
    }
    println!();
    println!("## Event store ({n} events, {rounds} rounds, medians [min-max])");
    println!("| run | events/s | vs no store | plain batched INSERTs, rows/s |");
    println!("|---|---|---|---|");
    for (i, kind) in kinds.iter().enumerate() {
        let rate = Stat::of(&rates[i]);
        let ratio = Stat::of(&ratios[i]);
        let insert = Stat::of(&inserts[i]);
        let fmt = |s: &Option<Stat>, digits: usize| match s {
            Some(s) => format!(
                "{:.*} [{:.*}-{:.*}]",
                digits, s.median, digits, s.min, digits, s.max
            ),
            None => "-".to_owned(),
        };
        println!(
            "| {} | {} | {} | {} |",
            kind.name(),
            fmt(&rate, 0),
            if *kind == Kind::None {
                "1.00".to_owned()
            } else {
                format!("{}x", fmt(&ratio, 2))
            },
            fmt(&insert, 0)
        );
        println!(
            "{}",
            json!({
                "bench": "event_store",
                "store": kind.name(),
                "events_per_s": rate.as_ref().map(|s| s.median),
                "ratio_vs_no_store": ratio.as_ref().map(|s| s.median),
                "plain_inserts_rows_per_s": insert.as_ref().map(|s| s.median),
            })
        );
    }
    for (i, kind) in kinds.iter().enumerate().skip(1) {
        if let Some(r) = Stat::of(&ratios[i]) {
            println!(
                "target: {} store at least 0.7x the end-to-end rate without a store: {:.2}x {}",
                kind.name(),
                r.median,
                if r.median >= 0.7 { "MET" } else { "MISSED" }
            );
        }
    }
    Ok(())
}
