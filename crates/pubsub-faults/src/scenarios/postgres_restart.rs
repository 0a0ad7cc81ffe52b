//! The event store's scenario: PostgreSQL restarted under a running store.

use std::collections::HashSet;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use pubsub_recorder::{RecordOptions, Recorder};
use pubsub_store::{Database, EventQuery, EventStore};

use super::{run_with_faults, Ctx};
use crate::harness::{wait_for, wait_progress, Flow, Line};

/// `pg_ctlcluster` arguments for the local cluster (`15 main`), found under
/// `/etc/postgresql`.
fn cluster() -> Result<(String, &'static str)> {
    let version = std::fs::read_dir("/etc/postgresql")
        .context("no local PostgreSQL cluster (/etc/postgresql)")?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .max()
        .ok_or_else(|| anyhow!("no local PostgreSQL cluster (/etc/postgresql is empty)"))?;
    Ok((version, "main"))
}

/// Runs `pg_ctlcluster VERSION main ACTION`.
pub(crate) fn pg_ctl(action: &str) -> Result<()> {
    let (version, name) = cluster()?;
    let status = std::process::Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", &version, name, action])
        .status()
        .with_context(|| format!("running pg_ctlcluster {action}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(anyhow!(
            "pg_ctlcluster {version} {name} {action} failed ({status})"
        ))
    }
}

/// Starts PostgreSQL again if a scenario left it stopped.
pub(crate) fn restore() {
    if pubsub_testkit::postgres_url().is_none() {
        let _ = pg_ctl("start");
    }
}

/// 5,000 events into a store on PostgreSQL; PostgreSQL stopped for 3 s at 30% and started
/// again. Every confirmed event must be stored, once.
pub(crate) fn postgres_restart(ctx: &Ctx) -> Result<Line> {
    let mut line = Line::new("postgres-restart");
    // A schema of the scenario's own, dropped at the end.
    let owned = pubsub_testkit::TestDatabase::postgres("faults")
        .ok_or_else(|| anyhow!("PostgreSQL is not reachable"))?;
    let database = Database::parse(owned.url())?;
    let recorder = Recorder::new(&database)?;
    let n = 5_000;
    let flow = Flow::start(
        &ctx.broker,
        &ctx.broker,
        "store",
        |_| {},
        |b| b.prefetch(RecordOptions::default().prefetch).sink(recorder),
    )?;
    let outcome = run_with_faults(&mut line, &flow, &ctx.broker, n, 1_000, |progress| {
        wait_progress(progress, n * 3 / 10);
        pg_ctl("stop")?;
        let t = Instant::now();
        thread::sleep(Duration::from_secs(3));
        pg_ctl("start")?;
        Ok(vec![t])
    });
    let verdict = outcome.map(|tally| {
        // The last batch commits when the queue goes quiet.
        let confirmed = tally.confirmed;
        let mut stored = HashSet::new();
        let mut rows = 0;
        wait_for(Duration::from_secs(60), || {
            match stored_ids(&database) {
                Ok((ids, n)) => {
                    stored = ids;
                    rows = n;
                }
                Err(e) => log::info!("reading the store: {e}"),
            }
            confirmed.iter().all(|id| stored.contains(id))
        });
        line.consumed = stored.len();
        line.lost = confirmed.iter().filter(|id| !stored.contains(id)).count();
        line.duplicated = rows - stored.len() as u64;
        line.notes.push(format!(
            "{} row(s) stored, {} handler run(s) repeated (redelivered during the outage)",
            rows,
            flow.recorder.duplicated()
        ));
    });
    let stats = flow.finish()?;
    line.reconnects(
        &stats,
        1,
        "the store never noticed the outage (no reconnect)",
    );
    drop(owned);
    verdict?;
    Ok(line)
}

/// The ids stored, and how many rows hold them.
fn stored_ids(database: &Database) -> pubsub_store::Result<(HashSet<u128>, u64)> {
    let mut store = EventStore::open(database)?;
    let mut ids = HashSet::new();
    let mut rows = 0;
    store.for_each(&EventQuery::new(), |e| {
        rows += 1;
        ids.insert(e.event.event_id().as_u128());
        true
    })?;
    Ok((ids, rows))
}
