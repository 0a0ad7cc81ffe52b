//! [`start`]: the event store as a running service, its recorders on the worker pool.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use pubsub_amqp::AmqpConfig;
use pubsub_store::Database;
use pubsub_subscriber::{PoolStats, RunningPool, SubscriberStats, WorkerPool};

use crate::error::Result;
use crate::recorder::{consumer, RecordOptions, Recorder};

/// Starts the event store as a service on the [`WorkerPool`]: `workers` recorders, each with
/// its own AMQP connection and its own connection to `database`, consuming `options.queue`
/// (bound to `options.pattern` on `options.exchange`, declared once before any consumes),
/// each event acked only after its row is committed.
///
/// Several workers share the queue; each commits its own batches. An event delivered again
/// is stored once (its id is unique).
///
/// # Errors
///
/// [`Error::Store`](crate::Error::Store) when `database` cannot be opened;
/// [`Error::Subscribe`](crate::Error::Subscribe) when the broker cannot be reached or
/// refuses the topology. Nothing is left running then.
pub fn start(
    config: &AmqpConfig,
    database: &Database,
    options: &RecordOptions,
    workers: usize,
) -> Result<RunningRecorder> {
    let mut stored = Vec::new();
    let pool = WorkerPool::new(config, &format!("event store {}", options.queue))
        .workers(workers)
        .start(|_, connection| {
            let recorder = Recorder::new(database)?;
            stored.push(recorder.stored());
            Ok::<_, crate::Error>(consumer(connection, recorder, options))
        })?;
    log::info!(
        "event store: {} recorder(s) on `{}` keep `{}` of `{}` in {database}",
        pool.len(),
        options.queue,
        options.pattern,
        options.exchange
    );
    Ok(RunningRecorder { pool, stored })
}

/// The event store running as a service; see [`start`]. Dropping it stops and joins its
/// recorders.
pub struct RunningRecorder {
    pool: RunningPool,
    stored: Vec<Arc<AtomicU64>>,
}

impl RunningRecorder {
    /// The new rows committed so far, over every recorder.
    pub fn stored(&self) -> u64 {
        self.stored.iter().map(|s| s.load(Ordering::Relaxed)).sum()
    }

    /// The recorders' subscriber counters now, summed.
    pub fn stats(&self) -> SubscriberStats {
        self.pool.stats()
    }

    /// Whether every recorder still consumes (see [`RunningPool::is_running`]).
    pub fn is_running(&self) -> bool {
        self.pool.is_running()
    }

    /// Stops the recorders (each commits and acks what it staged) and joins them; returns
    /// what they did.
    ///
    /// # Errors
    ///
    /// [`Error::Subscribe`](crate::Error::Subscribe): the first error a recorder had stopped
    /// on (all are stopped).
    pub fn stop(self) -> Result<RecorderStats> {
        let RunningRecorder { pool, stored } = self;
        let pool = pool.stop()?;
        Ok(RecorderStats {
            stored: stored.iter().map(|s| s.load(Ordering::Relaxed)).sum(),
            pool,
        })
    }
}

/// What a stopped [`RunningRecorder`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecorderStats {
    /// The new rows committed, over every recorder.
    pub stored: u64,
    /// The recorders' subscriber counters, summed, and how many ran.
    pub pool: PoolStats,
}

impl fmt::Debug for RunningRecorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunningRecorder")
            .field("pool", &self.pool)
            .field("stored", &self.stored())
            .finish()
    }
}
