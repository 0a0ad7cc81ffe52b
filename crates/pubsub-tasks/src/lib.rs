//! This crate provides a task queue on RabbitMQ: [`TaskQueue`] submits named tasks with
//! publisher confirms, [`TaskWorker`] runs the functions registered under those names on
//! worker threads, and records every task in a task store ([`pubsub_store::TaskStore`],
//! SQLite or PostgreSQL): PENDING, RUNNING, then COMPLETED with its JSON result or FAILED
//! with its error, with the number of attempts.
//!
//! # Overview
//!
//! - [`TaskQueue`]: [`submit`](TaskQueue::submit)`(task_name, payload)` returns a
//!   [`TaskHandle`] (the task id, and [`wait`](TaskHandle::wait) for its [`TaskOutcome`] when
//!   the queue knows the store: [`TaskQueueBuilder::results`]) once the broker has confirmed
//!   the task; [`SubmitOptions`] sets a correlation id or
//!   another routing key; [`submit_all`](TaskQueue::submit_all) sends a batch with pipelined
//!   confirms.
//! - [`TaskWorker`]: [`TaskWorkerBuilder::task`] registers a [`TaskFn`] (any
//!   `Fn(&Task) -> TaskResult`) by name; [`workers`](TaskWorkerBuilder::workers),
//!   [`retry`](TaskWorkerBuilder::retry), [`start`](TaskWorker::start), and
//!   [`RunningWorker::stop`].
//! - [`routing_key`]: the routing key a task name maps to.
//!
//! The crate is wiring: a worker is an `EventSubscriber` (`pubsub-subscriber`) that hands
//! its decoded tasks to a runner thread of its own (a `Dispatcher`), so retries through delay
//! queues, dead letters, ack batching and reconnection are the subscriber's; a queue is an
//! `EventPublisher` (`pubsub-publisher`). Both speak seed 003's task message through
//! [`Envelope::Task`](pubsub_core::envelope::Envelope::Task).
//!
//! # Group commit
//!
//! A worker's runner takes the tasks waiting for it as a batch: it records them all as
//! `RUNNING` in one statement, runs their functions one after the other, records their
//! outcomes (`COMPLETED`, `FAILED`, or `PENDING` for a retry) in one statement per kind,
//! commits once, and only then answers the subscriber, which acks each task after its final
//! status is committed. A batch holds what the prefetch lets in: with the default prefetch of
//! 10, about a commit for 5 tasks; with [`TaskWorkerBuilder::prefetch`]`(100)`, about one for
//! 50 (larger batches suit short tasks; long ones are better shared out by a small prefetch).
//! Each record still shows every step with its time: received (`created_at`), started
//! (`started_at`), finished (`finished_at`). A function expected to be long (2 ms or more on
//! its last runs on this worker, or never run here) runs after what its batch holds is
//! committed and answered, so that no other task waits for it. When the store fails inside a
//! batch, the batch is rolled back and each of its tasks recorded on its own, as described
//! below; a function that ran is not run again for it.
//!
//! # Wire format (seed 003)
//!
//! | | |
//! | --- | --- |
//! | exchange | `task.exchange` (a durable direct exchange; configurable) |
//! | routing key | `routing.task.<action>.<entity>`: [`routing_key`]`("send-report")` is `routing.task.send.report` |
//! | body | `{"task_name": "send-report", "payload": {...}}` |
//! | headers | `producer_app`, `correlation_id` |
//! | properties | `message_id` (the task id), `app_id`, `correlation_id`, `content_type`, persistent |
//!
//! A worker runs the task its body names; the routing key only routes it to the queue. The
//! queue is bound with each registered task's key, so a producer of the seed's convention
//! reaches the worker that registered the matching name; [`TaskWorkerBuilder::task_routed`]
//! and [`TaskWorkerBuilder::bind`] serve other keys.
//!
//! # Task ids
//!
//! The task id is the message's `message_id`: a new UUID v4 for a task [`TaskQueue`]
//! submits. A producer that sets none (seed 003's pika producer sets none) gets an id derived
//! from the message, a UUID v5 of its routing key and its body (the bare envelope's rule,
//! [`pubsub_core::envelope`]), so a redelivery of that message maps to the same task. The
//! consequence: two such submissions of the same task with the same payload are one task;
//! once it has completed, the second is acked without running. A producer that wants two
//! runs sets a `message_id` of its own, or varies the payload.
//!
//! # Idempotency and failures
//!
//! A task whose stored status is COMPLETED is acked without running again (a duplicate
//! delivery, a lost ack); its status is committed before its delivery is acked. Any other status runs it: a RUNNING task was being run by a worker
//! that died, or by another worker given a duplicate at the same moment (delivery is at
//! least once). A task name no function is registered under is FAILED at once and
//! dead-lettered as poison; a message that is not a task (not JSON, no `task_name`, a name
//! that cannot name a task, a payload that is not an object) is dead-lettered as poison
//! without a record. A failed run is retried after the retry policy's delays and, after the
//! last attempt, FAILED and dead-lettered; replaying it from the dead-letter queue
//! (`pubsub dlq replay`) runs it again.
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use pubsub_amqp::{AmqpConfig, Connection};
//! use pubsub_store::{Database, TaskStore};
//! use pubsub_tasks::{TaskOutcome, TaskQueue, TaskWorker};
//! use serde_json::json;
//!
//! let config = AmqpConfig::from_env()?;
//! let database = Database::from_env()?; // DATABASE_URL, default sqlite:pubsub.db
//! let worker = TaskWorker::builder(config.clone(), database.clone())
//!     .task("resize-image", |task| {
//!         let width = task.payload()["width"].as_u64().unwrap_or(100);
//!         Ok(json!({ "resized_to": width }))
//!     })
//!     .workers(2)
//!     .build()?
//!     .start()?; // queue `tasks` bound to `routing.task.resize.image` on `task.exchange`
//!
//! let queue = TaskQueue::builder(Connection::open(&config)?)
//!     .producer("gallery")
//!     .results(database.clone()) // its handles can wait
//!     .build()?;
//! let task = queue.submit("resize-image", json!({ "width": 640 }))?; // confirmed
//! match task.wait(Duration::from_secs(30))? {
//!     TaskOutcome::Completed(result) => println!("resized: {result}"),
//!     TaskOutcome::Failed(error) => println!("failed for good: {error}"),
//!     TaskOutcome::Cancelled => println!("cancelled"),
//! }
//!
//! let mut store = TaskStore::open(&database)?;
//! if let Some(record) = store.get(task.id())? {
//!     println!("{} {}", record.task_name, record.status.as_str()); // PENDING, RUNNING, ...
//! }
//! worker.stop()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]
#![warn(clippy::print_stdout)]

mod error;
mod names;
mod queue;
mod results;
mod run;
mod runner;
mod schedule;
mod task;
mod worker;

pub use crate::error::{Error, Result};
pub use crate::names::{
    routing_key, CORRELATION_ID_HEADER, DEFAULT_QUEUE, MAX_TASK_NAME_LEN, PRODUCER_APP_HEADER,
    ROUTING_KEY_PREFIX,
};
pub use crate::queue::{
    exchange_config, SubmitOptions, TaskQueue, TaskQueueBuilder, DEFAULT_EXCHANGE, DEFAULT_PRODUCER,
};
pub use crate::results::{wait, TaskHandle, TaskOutcome};
pub use crate::schedule::{delay_bucket, delay_queue_name, MAX_DELAY};
pub use crate::task::{Task, TaskFn, TaskResult};
pub use crate::worker::{RunningWorker, TaskWorker, TaskWorkerBuilder};
