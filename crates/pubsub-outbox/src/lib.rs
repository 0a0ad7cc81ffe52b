//! Exactly-once effects on the service's own database: a transactional **outbox** and an
//! **inbox**, on SQLite or PostgreSQL.
//!
//! Delivery is at-least-once; this crate closes the two gaps that leaves in a service:
//!
//! - **The dual write.** An [`Outbox`] stages events in the transaction that writes the
//!   service's rows. They are published (with the broker's confirms, by a relay:
//!   [`Outbox::relay`], or the bus's `.outbox(...)`) if and only if that transaction commits:
//!   no event lost after a crash, none published for a rolled-back change.
//! - **The double effect.** An inbox handler ([`SqliteInbox`], [`PostgresInbox`]) gets the
//!   delivery's transaction: its writes and the record "this consumer handled this event"
//!   commit together, before the delivery is acked. A redelivered event whose transaction
//!   committed is acked without running the handler again.
//!
//! Effects outside the database (an email, a call to another service) are not covered: they
//! can still happen twice, and need an idempotency key of their own.
//!
//! # Example
//!
//! ```
//! use pubsub_core::Event;
//! use pubsub_outbox::Outbox;
//! use pubsub_store::Database;
//!
//! let dir = std::env::temp_dir().join(format!("outbox-doc-{}", uuid::Uuid::new_v4()));
//! let database = Database::sqlite(dir.join("app.db"));
//! let outbox = Outbox::open(&database)?;
//! let mut connection = database.open_sqlite()?;
//! connection.execute("CREATE TABLE orders (id TEXT PRIMARY KEY)", [])?;
//!
//! let mut tx = connection.transaction()?;
//! tx.execute("INSERT INTO orders (id) VALUES ('ORD-1')", [])?;
//! let event = Event::new("order", "created", serde_json::json!({ "order_id": "ORD-1" }))?;
//! outbox.stage(&mut tx, &event)?;
//! outbox.commit(tx)?; // the row and the event, together
//! assert_eq!(outbox.pending()?, 1); // until a relay publishes it
//! # drop(connection); std::fs::remove_dir_all(dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The event store and the task store deduplicate without this inbox: an event's row is its
//! own record (its id is the key, inserted if absent in the batch's transaction), and a task's
//! record is its status (a `COMPLETED` task never runs again). A second table would double
//! their writes and add nothing.
#![deny(missing_docs)]
#![warn(clippy::print_stdout)]

mod error;
mod fault;
pub mod inbox;
mod outbox;
mod relay;
mod schema;

pub use crate::error::{Error, Result};
#[cfg(feature = "fault-points")]
pub use crate::fault::PAUSE_AT_ENV;
pub use crate::inbox::SqliteInbox;
#[cfg(feature = "postgres")]
pub use crate::inbox::{PgTransaction, PostgresInbox};
pub use crate::outbox::{Outbox, Staged, Transaction};
pub use crate::relay::{
    RelayBuilder, RelayStats, RunningRelay, DEFAULT_BATCH, DEFAULT_LEASE, DEFAULT_POLL,
};
