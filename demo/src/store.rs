//! The demo's event store: the store's subscriber keeps every event of the run in a database
//! (a SQLite file by default), and the summary shows the stored rows.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use pubsub::amqp::Connection;
use pubsub::subscriber::{queue_names, RetryPolicy};
use pubsub::AmqpConfig;
use pubsub_recorder::{RecordOptions, RunningRecorder};
use pubsub_store::{Database, EventQuery, EventStore, StoredEvent};
use uuid::Uuid;

/// The database the demo keeps its events in unless told otherwise: a SQLite file under
/// `target/` (where `just demo` runs), left there for `pubsub store query`.
pub const DEMO_DATABASE: &str = "sqlite:target/pubsub-demo.db";

/// What the store kept of a run.
#[derive(Debug, Clone)]
pub struct StoredRows {
    /// The database, without a password.
    pub database: String,
    /// The store's queue.
    pub queue: String,
    /// New rows committed during the run.
    pub stored: u64,
    /// The rows of the run's events, when there are few (the order flow).
    pub rows: Vec<StoredEvent>,
}

/// The store's subscriber, running beside the demo's service.
pub(crate) struct StoreRun {
    running: RunningRecorder,
    database: Database,
    queue: String,
    config: AmqpConfig,
}

/// Starts the store's subscriber: queue `<queue>.store`, bound to `#` on the exchange, its
/// topology declared before anything is published.
pub(crate) fn start(
    config: &AmqpConfig,
    exchange: &str,
    queue: &str,
    database: &Database,
) -> anyhow::Result<StoreRun> {
    let options = RecordOptions {
        queue: format!("{queue}.store"),
        exchange: exchange.to_owned(),
        ..RecordOptions::default()
    };
    let running = pubsub_recorder::start(config, database, &options, 1)
        .context("cannot start the event store")?;
    Ok(StoreRun {
        running,
        database: database.clone(),
        queue: options.queue,
        config: config.clone(),
    })
}

impl StoreRun {
    /// Waits until `expected` new rows are committed (or `timeout` passes without one), stops
    /// the store's subscriber, deletes its queues unless `keep_queue`, and reads back the rows
    /// of `ids` (up to ten).
    pub(crate) fn finish(
        self,
        expected: u64,
        ids: &[Uuid],
        keep_queue: bool,
        timeout: Duration,
    ) -> anyhow::Result<StoredRows> {
        let mut last = (self.running.stored(), Instant::now());
        while self.running.stored() < expected {
            if !self.running.is_running() {
                let ended = self.running.stop();
                bail!("the event store stopped: {ended:?}");
            }
            let now = self.running.stored();
            if now != last.0 {
                last = (now, Instant::now());
            } else if last.1.elapsed() > timeout {
                bail!(
                    "the event store stored {now} of {expected} events, then nothing for {}s",
                    timeout.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let stored = self.running.stop()?.stored;
        if !keep_queue {
            let mut connection = Connection::open(&self.config)?;
            let channel = connection.open_channel()?;
            for queue in queue_names(&self.queue, &RetryPolicy::default()) {
                channel.delete_queue(&queue)?;
            }
            let _ = connection.close();
        }
        let mut store = EventStore::open(&self.database)?;
        let mut rows = Vec::new();
        for id in ids.iter().take(10) {
            rows.extend(store.query(&EventQuery::new().event_id(*id))?);
        }
        Ok(StoredRows {
            database: self.database.to_string(),
            queue: self.queue,
            stored,
            rows,
        })
    }
}
