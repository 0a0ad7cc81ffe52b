//! A test's task queue on the broker and its task store, deleted at the end; waiting for
//! the workers through their observer channel.

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use pubsub_store::{Database, TaskRecord, TaskStore};
use pubsub_subscriber::{queue_names, DeliveryReport, Disposition, RetryPolicy};
use pubsub_tasks::{TaskQueue, TaskWorker, TaskWorkerBuilder};
use pubsub_testkit::{Bus, TestDatabase};

/// How long a test waits for a task to settle.
pub(crate) const WAIT: Duration = Duration::from_secs(20);

/// A database a test owns (see [`TestDatabase`]), parsed for the task store.
pub(crate) struct TestDb {
    pub(crate) database: Database,
    _owned: TestDatabase,
}

impl TestDb {
    fn of(owned: TestDatabase) -> TestDb {
        TestDb {
            database: Database::parse(owned.url()).expect("the test database URL"),
            _owned: owned,
        }
    }

    /// A new SQLite file in the temporary directory.
    pub(crate) fn sqlite() -> TestDb {
        TestDb::of(TestDatabase::sqlite("tasks"))
    }

    /// A new schema in the PostgreSQL database under test, or `None` (skip) outside CI when
    /// it is unreachable.
    pub(crate) fn postgres() -> Option<TestDb> {
        TestDatabase::postgres("tasks").map(TestDb::of)
    }
}

/// A test's task exchange and queue (with its retry and dead-letter queues), its store, and
/// the reports of its workers.
pub(crate) struct Setup {
    pub(crate) bus: Bus,
    pub(crate) exchange: String,
    pub(crate) queue: String,
    pub(crate) db: TestDb,
    pub(crate) retry: RetryPolicy,
    reports_tx: Sender<DeliveryReport>,
    pub(crate) reports: Receiver<DeliveryReport>,
}

impl Setup {
    /// `None` when the broker is not there (outside CI).
    pub(crate) fn new(prefix: &str, db: TestDb) -> Option<Setup> {
        let mut bus = Bus::new(prefix)?;
        let exchange = bus.exchange_name(&format!("{prefix}-tasks"));
        let queue = bus.queue_name(&format!("{prefix}-tasks"));
        let retry = RetryPolicy::new(3, vec![Duration::from_millis(100)]);
        for name in queue_names(&queue, &retry) {
            bus.delete_queue_at_end(&name);
        }
        let (reports_tx, reports) = crossbeam_channel::unbounded();
        Some(Setup {
            bus,
            exchange,
            queue,
            db,
            retry,
            reports_tx,
            reports,
        })
    }

    /// A worker on the test's exchange, queue and store, reporting to `reports`.
    pub(crate) fn worker(&self) -> TaskWorkerBuilder {
        TaskWorker::builder(self.bus.config().clone(), self.db.database.clone())
            .exchange(&self.exchange)
            .queue(&self.queue)
            .retry(self.retry.clone())
            .observer(self.reports_tx.clone())
    }

    /// A worker on the test's queue and store, reporting to `reports`, on the default
    /// exchange (`task.exchange`, shared: the test must not delete it).
    pub(crate) fn worker_on_the_default_exchange(&self) -> TaskWorkerBuilder {
        TaskWorker::builder(self.bus.config().clone(), self.db.database.clone())
            .queue(&self.queue)
            .retry(self.retry.clone())
            .observer(self.reports_tx.clone())
    }

    /// A task queue on the test's exchange.
    pub(crate) fn task_queue(&self) -> TaskQueue {
        TaskQueue::builder(self.bus.connection())
            .exchange(&self.exchange)
            .producer("tests")
            .build()
            .unwrap()
    }

    /// A connection to the test's store.
    pub(crate) fn store(&self) -> TaskStore {
        TaskStore::open(&self.db.database).unwrap()
    }

    /// Waits until the delivery of task `id` is settled for good (acked or dead-lettered),
    /// and returns every report of it, retries included.
    pub(crate) fn settled(&self, id: &str) -> Vec<DeliveryReport> {
        let deadline = Instant::now() + WAIT;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let report = self
                .reports
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("task {id} not settled in {WAIT:?}: {seen:#?}"));
            if report.event_id.as_deref() != Some(id) {
                continue;
            }
            let last = !matches!(report.disposition, Disposition::Retried { .. });
            seen.push(report);
            if last {
                return seen;
            }
        }
    }

    /// Waits until `n` deliveries are settled for good, whichever they are.
    pub(crate) fn settle_all(&self, n: usize) -> Vec<DeliveryReport> {
        let deadline = Instant::now() + WAIT;
        let mut last = Vec::new();
        while last.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            let report = self
                .reports
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("{} of {n} settled in {WAIT:?}", last.len()));
            if !matches!(report.disposition, Disposition::Retried { .. }) {
                last.push(report);
            }
        }
        last
    }

    /// The stored record of task `id`.
    pub(crate) fn record(&self, id: &str) -> TaskRecord {
        self.store()
            .get(id.parse().unwrap())
            .unwrap()
            .unwrap_or_else(|| panic!("task {id} is not in the store"))
    }
}
