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
//! use pubsub_amqp::{AmqpConfig, Connection};
//! use pubsub_recorder::{record, RecordOptions, Recorder};
//! use pubsub_store::Database;
//!
//! let recorder = Recorder::new(&Database::parse("sqlite:events.db")?)?;
//! let connection = Connection::open(&AmqpConfig::from_env()?)?;
//! let options = RecordOptions { exchange: "events".into(), ..RecordOptions::default() };
//! let running = record(connection, recorder, &options)?.spawn()?; // queue `event.store`, bound to `#`
//! // ... later:
//! let stats = running.stop()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]
#![warn(clippy::print_stdout)]

mod error;
mod recorder;
mod replay;

pub use crate::error::{Error, Result};
pub use crate::recorder::{record, RecordOptions, Recorder, DEFAULT_STORE_QUEUE};
pub use crate::replay::{replay, ReplayOptions, ReplayProgress, ReplayTarget};
