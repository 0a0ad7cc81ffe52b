//! This crate provides the event store as a service: the [`Recorder`] that keeps every event
//! of an exchange in an [`EventStore`](pubsub_store::EventStore), and [`replay`], which
//! publishes a selection of the stored events again.
//!
//! # Overview
//!
//! - [`Recorder`] and [`record`]: a subscriber bound to every event of the exchange (`#`)
//!   that keeps each one, committed in batches that match its ack batches, acked only after
//!   commit (a [`Sink`](pubsub_subscriber::Sink)). [`RecordOptions`] names its queue
//!   ([`DEFAULT_STORE_QUEUE`]), exchange, binding and prefetch.
//! - [`start`]: the recorder as a running service on the subscriber's
//!   [`WorkerPool`](pubsub_subscriber::WorkerPool), the runtime the event bus and the task
//!   worker run on too: `n` recorders, each with its own connections ([`RunningRecorder`]).
//! - [`replay`]: the events an [`EventQuery`](pubsub_store::EventQuery) selects, published
//!   again to the exchange or into one service's queue ([`ReplayTarget`]), with confirms, a
//!   rate limit and progress ([`ReplayOptions`], [`ReplayProgress`]).
//!
//! The storage itself (the backends, the schema, the queries, the task store) is
//! `pubsub-store`'s, which knows nothing of the broker; this crate wires it to the subscriber
//! (`pubsub-subscriber`) and the publisher (`pubsub-publisher`).
//!
//! # Example
//!
//! ```no_run
//! use pubsub_amqp::AmqpConfig;
//! use pubsub_recorder::RecordOptions;
//! use pubsub_store::Database;
//!
//! let database = Database::parse("sqlite:events.db")?;
//! let options = RecordOptions { exchange: "events".into(), ..RecordOptions::default() };
//! // Queue `event.store`, bound to `#`; one recorder on the worker pool.
//! let running = pubsub_recorder::start(&AmqpConfig::from_env()?, &database, &options, 1)?;
//! // ... later:
//! let done = running.stop()?; // commits and acks what is staged, joins
//! println!("stored {} new events", done.stored);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]
#![warn(clippy::print_stdout)]

mod error;
mod recorder;
mod replay;
mod service;

pub use crate::error::{Error, Result};
pub use crate::recorder::{record, RecordOptions, Recorder, DEFAULT_STORE_QUEUE};
pub use crate::replay::{replay, ReplayOptions, ReplayProgress, ReplayTarget};
pub use crate::service::{start, RecorderStats, RunningRecorder};
