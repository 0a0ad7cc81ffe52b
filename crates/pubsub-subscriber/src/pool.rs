//! [`WorkerPool`]: the one runtime every service-shaped component runs on.
//!
//! The event bus's handlers, the task worker and the event store's recorder differ only in
//! what one worker consumes and what it does with a delivery: a consumer definition, built
//! into an [`EventSubscriber`] per worker. The pool owns the rest, once: one connection per
//! worker, the topology declared before anything consumes, one thread per worker, stopping
//! (signal every worker, then join each), the first error, and the summed counters.

use std::fmt;

use pubsub_amqp::{AmqpConfig, Connection};

use crate::error::Error;
use crate::stats::{StatsHandle, SubscriberStats};
use crate::subscriber::{EventSubscriber, RunningSubscriber, SubscriberBuilder};

/// Runs `n` workers, each an [`EventSubscriber`] on its own thread with its own connection,
/// all built from one consumer definition.
///
/// The definition is a closure that gets the worker's index (from 0) and the connection the
/// pool opened for it (named `<name> worker <i>` in the broker's management UI), and returns
/// that worker's [`SubscriberBuilder`]: its queue, bindings, settings, handlers or sink.
/// Anything a worker owns alone (a database connection, a sink) is made in the closure.
///
/// [`start`](Self::start) declares the topology once, with worker 0's subscriber, before any
/// worker consumes; a failure to connect, to build or to declare stops the workers already
/// started and is returned.
///
/// ```no_run
/// use std::sync::Arc;
///
/// use pubsub_amqp::AmqpConfig;
/// use pubsub_core::handler_fn;
/// use pubsub_registry::HandlerRegistry;
/// use pubsub_subscriber::{EventSubscriber, WorkerPool};
///
/// let mut registry = HandlerRegistry::new();
/// registry.subscribe("order.*", handler_fn("audit", |_, _| Ok(())))?;
/// let registry = Arc::new(registry);
///
/// let pool = WorkerPool::new(&AmqpConfig::from_env()?, "audit").workers(4);
/// let running = pool.start(|_, connection| {
///     Ok::<_, pubsub_subscriber::Error>(
///         EventSubscriber::builder(connection, "audit", registry.clone()).prefetch(50),
///     )
/// })?;
/// let stats = running.stop()?; // every worker signalled, then joined; counters summed
/// println!("{} workers: {}", stats.workers, stats.subscriber);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct WorkerPool {
    config: AmqpConfig,
    name: String,
    workers: usize,
}

impl WorkerPool {
    /// A pool of one worker connecting with `config`; `name` names its connections and its
    /// log lines (a service's or a queue's name).
    pub fn new(config: &AmqpConfig, name: &str) -> WorkerPool {
        WorkerPool {
            config: config.clone(),
            name: name.to_owned(),
            workers: 1,
        }
    }

    /// Runs `n` workers (at least 1).
    #[must_use]
    pub fn workers(mut self, n: usize) -> WorkerPool {
        self.workers = n.max(1);
        self
    }

    /// How many workers it runs.
    pub fn len(&self) -> usize {
        self.workers
    }

    /// Always false: a pool runs at least one worker.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The name of its connections and log lines.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Declares the topology of worker 0's definition without consuming (messages published
    /// from now on wait in the queue), then closes its connection.
    ///
    /// # Errors
    ///
    /// The definition's error; the connection's [`pubsub_amqp::Error`] when the broker
    /// cannot be reached; [`Error::Amqp`] when it refuses the topology (each converted into
    /// `E`).
    pub fn setup<E, F>(&self, mut define: F) -> Result<(), E>
    where
        E: From<Error> + From<pubsub_amqp::Error>,
        F: FnMut(usize, Connection) -> Result<SubscriberBuilder, E>,
    {
        let mut subscriber = self.build(0, &mut define)?;
        subscriber.setup().map_err(E::from)
    }

    /// Starts the workers: for each, opens its connection, builds its subscriber from
    /// `define`, declares the topology (worker 0 only, before any consumes) and spawns its
    /// thread.
    ///
    /// # Errors
    ///
    /// As [`setup`](Self::setup), or [`Error::Spawn`]; the workers started so far are
    /// stopped and joined first.
    pub fn start<E, F>(&self, mut define: F) -> Result<RunningPool, E>
    where
        E: From<Error> + From<pubsub_amqp::Error>,
        F: FnMut(usize, Connection) -> Result<SubscriberBuilder, E>,
    {
        let mut running = RunningPool {
            name: self.name.clone(),
            workers: Vec::with_capacity(self.workers),
        };
        for index in 0..self.workers {
            // On an error, `running` is dropped: it stops and joins what it holds.
            let mut subscriber = self.build(index, &mut define)?;
            if index == 0 {
                subscriber.setup().map_err(E::from)?;
            }
            running.workers.push(subscriber.spawn().map_err(E::from)?);
        }
        log::debug!("`{}`: {} worker(s) started", self.name, self.workers);
        Ok(running)
    }

    fn build<E, F>(&self, index: usize, define: &mut F) -> Result<EventSubscriber, E>
    where
        E: From<Error> + From<pubsub_amqp::Error>,
        F: FnMut(usize, Connection) -> Result<SubscriberBuilder, E>,
    {
        let name = format!("{} worker {}", self.name, index + 1);
        let connection =
            Connection::open(&self.config.clone().with_connection_name(&name)).map_err(E::from)?;
        define(index, connection)?.build().map_err(E::from)
    }
}

impl fmt::Debug for WorkerPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerPool")
            .field("broker", &self.config.redacted_url())
            .field("name", &self.name)
            .field("workers", &self.workers)
            .finish()
    }
}

/// What a stopped pool did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// The workers' counters, summed.
    pub subscriber: SubscriberStats,
    /// How many workers ran.
    pub workers: usize,
}

impl fmt::Display for PoolStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} worker(s): {}", self.workers, self.subscriber)
    }
}

/// A started [`WorkerPool`]: its workers, each on its thread. Dropping it stops and joins
/// them (see [`stop`](Self::stop) for the errors).
pub struct RunningPool {
    name: String,
    workers: Vec<RunningSubscriber>,
}

impl RunningPool {
    /// How many workers it runs.
    pub fn len(&self) -> usize {
        self.workers.len()
    }

    /// Whether it runs no worker (never, once started).
    pub fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }

    /// Whether every worker still consumes. A worker ends by itself only on an error that
    /// reconnecting cannot fix, or when its reconnect policy gives up; [`stop`](Self::stop)
    /// then returns that error.
    pub fn is_running(&self) -> bool {
        self.workers.iter().all(|w| !w.is_finished())
    }

    /// The workers' counters now, summed.
    pub fn stats(&self) -> SubscriberStats {
        self.workers.iter().map(RunningSubscriber::stats).sum()
    }

    /// A handle per worker that reads its counters from any thread (for metrics).
    pub fn stats_handles(&self) -> Vec<StatsHandle> {
        self.workers
            .iter()
            .map(RunningSubscriber::stats_handle)
            .collect()
    }

    /// Stops the pool: every worker is asked to stop first (each finishes and acks its
    /// delivery in progress), then each is joined; returns the counters summed.
    ///
    /// # Errors
    ///
    /// The first error a worker had stopped on; all are stopped and joined regardless, and
    /// every error is logged.
    pub fn stop(mut self) -> Result<PoolStats, Error> {
        self.stop_all()
    }

    fn stop_all(&mut self) -> Result<PoolStats, Error> {
        for worker in &self.workers {
            worker.stop_handle().stop();
        }
        let workers = self.workers.len();
        let ended: Vec<_> = self
            .workers
            .drain(..)
            .map(RunningSubscriber::stop)
            .collect();
        let (stats, first_error) = settle(&self.name, ended);
        match first_error {
            Some(e) => Err(e),
            None => Ok(PoolStats {
                subscriber: stats,
                workers,
            }),
        }
    }
}

/// The counters of the workers that stopped cleanly, summed, and the first error of those
/// that did not (each error is logged).
fn settle(
    name: &str,
    ended: Vec<Result<SubscriberStats, Error>>,
) -> (SubscriberStats, Option<Error>) {
    let mut first_error = None;
    let mut stats = Vec::with_capacity(ended.len());
    for result in ended {
        match result {
            Ok(s) => stats.push(s),
            Err(e) => {
                log::error!("a worker of `{name}` stopped on: {e}");
                first_error.get_or_insert(e);
            }
        }
    }
    (stats.iter().sum(), first_error)
}

impl Drop for RunningPool {
    fn drop(&mut self) {
        if !self.workers.is_empty() {
            if let Err(e) = self.stop_all() {
                log::warn!("dropped workers of `{}` stopped with: {e}", self.name);
            }
        }
    }
}

impl fmt::Debug for RunningPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunningPool")
            .field("name", &self.name)
            .field("workers", &self.workers.len())
            .field("running", &self.is_running())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settling_sums_the_clean_and_keeps_the_first_error() {
        let one = SubscriberStats {
            received: 2,
            acked: 2,
            ..SubscriberStats::default()
        };
        let check = |ended: Vec<Result<SubscriberStats, Error>>, received: u64, error: bool| {
            let (stats, first) = settle("t", ended);
            assert_eq!(stats.received, received);
            assert_eq!(first.is_some(), error);
        };
        check(vec![], 0, false);
        check(vec![Ok(one), Ok(one)], 4, false);
        check(vec![Ok(one), Err(Error::Panicked), Ok(one)], 4, true);
        let (_, first) = settle(
            "t",
            vec![
                Err(Error::InvalidConfig {
                    message: "first".into(),
                }),
                Err(Error::Panicked),
            ],
        );
        assert!(first.is_some_and(|e| e.to_string().contains("first")));
    }

    #[test]
    fn a_pool_runs_at_least_one_worker() {
        let pool = WorkerPool::new(&AmqpConfig::default(), "svc").workers(0);
        assert_eq!(pool.len(), 1);
        assert_eq!(pool.workers(3).len(), 3);
    }
}
