//! This crate keeps what flows through the bus in a database: an [`EventStore`] with every
//! event (seed 003's event store), and a [`TaskStore`] with each task's status (its task
//! queue's table), on SQLite (embedded, a file, nothing to set up) or PostgreSQL (JSONB
//! columns, for production), behind one [`Backend`] trait. Each store creates and migrates
//! its own schema.
//!
//! # Overview
//!
//! - [`Database`]: which database, from a URL (`sqlite:events.db`, `postgres://...`) or
//!   `DATABASE_URL`.
//! - [`EventStore`]: [`append`](EventStore::append) rows in one transaction (an event id is
//!   stored once), [`query`](EventStore::query) by routing pattern (the handlers' semantics),
//!   time range, correlation id (a whole causal chain) or event id.
//! - [`TaskStore`]: `PENDING`, `RUNNING`, `COMPLETED` (with a JSON result) or `FAILED` (with
//!   the error), with the number of attempts.
//!
//! This crate is storage only: it knows no broker. The store as a service (the recorder that
//! keeps every event of an exchange, and replay) is `pubsub-recorder`; the task queue that
//! fills the task store is `pubsub-tasks`. Both SQL backends build their `SELECT`s with one
//! filter builder; only the placeholder style differs.
//!
//! # Example
//!
//! ```
//! use pubsub_core::{Event, Metadata};
//! use pubsub_store::{Database, EventQuery, EventRow, EventStore};
//! use time::OffsetDateTime;
//!
//! let mut store = EventStore::open(&Database::parse("sqlite::memory:")?)?;
//! let event = Event::new("user", "registered", serde_json::json!({ "user_id": 7 }))?;
//! let meta = Metadata::default().with_correlation_id(Some("flow-1".into()));
//! store.append(&[EventRow::new(&event, &meta, OffsetDateTime::now_utc())])?;
//!
//! let chain = store.query(&EventQuery::new().correlation_id("flow-1"))?;
//! assert_eq!(chain.len(), 1);
//! assert_eq!(chain[0].event.event_id(), event.event_id());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]
#![warn(clippy::print_stdout)]

mod backend;
mod connect;
mod database;
mod error;
mod events;
// What PostgreSQL cannot hold, kept beside (the PostgreSQL backend's only).
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
mod exact;
mod fault;
mod filter;
mod migrations;
mod model;
mod open;
#[cfg(feature = "postgres")]
mod postgres;
mod schema;
mod sqlite;
mod tasks;

pub use crate::backend::{Backend, SCHEMA_VERSION};
pub use crate::connect::BUSY_TIMEOUT;
pub use crate::database::{Database, DATABASE_URL_ENV, DEFAULT_DATABASE_URL};
pub use crate::error::{DriverError, Error, Result};
pub use crate::events::{Appended, EventStore, RefusedRow};
pub use crate::fault::Fault;
pub use crate::model::{
    EventQuery, EventRow, NewTask, Order, StoredEvent, TaskChange, TaskFilter, TaskRecord, TaskRun,
    TaskState, TaskStatus,
};
pub use crate::schema::Schema;
pub use crate::tasks::TaskStore;
