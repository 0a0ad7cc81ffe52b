//! The demo's task: `send-invoice` for the order of the flow, submitted to the task exchange,
//! run by a task worker, its record read back from the task store.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use demo_domain::{send_invoice, SEND_INVOICE};
use pubsub::amqp::Connection;
use pubsub::core::Permanent;
use pubsub::subscriber::Disposition;
use pubsub::AmqpConfig;
use pubsub_store::{Database, TaskRecord, TaskStore};
use pubsub_tasks::{routing_key, TaskQueue, TaskWorker};
use serde_json::json;

/// What became of the demo's task.
#[derive(Debug, Clone)]
pub struct TaskDone {
    /// The task's record in the task store.
    pub record: TaskRecord,
    /// The task queue the worker consumed.
    pub queue: String,
    /// The task store, without a password.
    pub database: String,
}

/// Starts a task worker for `send-invoice` on queue `<queue>.tasks` (bound to the `task.exchange`
/// exchange), submits the task for the flow's order, waits until the worker settled it,
/// stops the worker (deleting its queues unless `keep_queue`) and reads the task's record.
pub(crate) fn send_invoice_task(
    config: &AmqpConfig,
    queue: &str,
    database: &Database,
    keep_queue: bool,
    timeout: Duration,
) -> anyhow::Result<TaskDone> {
    let (reports_tx, reports) = crossbeam_channel::unbounded();
    let worker = TaskWorker::builder(config.clone(), database.clone())
        .queue(&format!("{queue}.tasks"))
        .task(SEND_INVOICE, |task| {
            // A payload the task cannot use stays unusable: no retry.
            send_invoice(task.payload()).map_err(|e| Permanent::new(e).into())
        })
        .observer(reports_tx)
        .build()?;
    let worker_queue = worker.queue().to_owned();
    let running = worker.start().context("cannot start the task worker")?;
    let connection = Connection::open(&config.clone().with_connection_name("demo tasks"))?;
    let tasks = TaskQueue::builder(connection).producer("demo").build()?;
    let id = tasks
        .submit(
            SEND_INVOICE,
            json!({ "order_id": "ORD-123", "total": 99.99 }),
        )?
        .id();
    tasks.close()?;
    log::info!(
        "submitted {SEND_INVOICE} {id} ({})",
        routing_key(SEND_INVOICE)
    );

    let wanted = id.to_string();
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(report) = reports.recv_timeout(left) else {
            bail!(
                "the task worker did not settle task {id} within {}s",
                timeout.as_secs()
            );
        };
        if report.event_id.as_deref() == Some(wanted.as_str())
            && !matches!(report.disposition, Disposition::Retried { .. })
        {
            break;
        }
    }
    let queues: Vec<String> = running.queues().to_vec();
    running.stop()?;
    if !keep_queue {
        let mut connection = Connection::open(config)?;
        let channel = connection.open_channel()?;
        for queue in &queues {
            channel.delete_queue(queue)?;
        }
        let _ = connection.close();
    }
    let record = TaskStore::open(database)?
        .get(id)?
        .context("the task is not in the task store")?;
    Ok(TaskDone {
        record,
        queue: worker_queue,
        database: database.to_string(),
    })
}
