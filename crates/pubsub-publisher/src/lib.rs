//! This crate provides [`EventPublisher`]: it publishes events to a RabbitMQ exchange, routed
//! by their routing key, and returns only once the broker has confirmed them.
//!
//! # Overview
//!
//! - [`EventPublisher::publish`]: one event, confirmed; [`EventPublisher::publish_all`]: a
//!   batch with pipelined confirms and one outcome per event.
//! - [`PublisherBuilder`]: the publishing service's name (`app_id`), confirms, what to do with
//!   unroutable events ([`Unroutable`]), the exchange to declare, timeouts, reconnection.
//! - [`PublishError`]: the event that was not published, given back with the reason.
//! - [`PublisherStats`] through a [`StatsHandle`]: published, confirmed, nacked, returned,
//!   reconnects, readable from any thread. With the `otel` feature, `trace`: a producer span
//!   per event, its context sent in the W3C `traceparent` header.
//! - [`SharedPublisher`]: an [`EventPublisher`] on a thread of its own behind a `Clone + Send +
//!   Sync` handle: any thread publishes ([`SharedPublisher::publish`], or
//!   [`send`](SharedPublisher::send) for a [`Receipt`] to wait on later), and what callers
//!   queue at once goes out as one pipelined batch. [`PublishingThread::join`] joins the
//!   thread once every handle is dropped. The `pubsub` facade's `Publisher` and
//!   `pubsub-tasks`' `TaskQueue` are built on it.
//! - [`EventPublisher::publish_migration`]: the old and the new version of one fact
//!   ([`pubsub_core::Migration`]) in one confirmed batch; [`PublisherBuilder::envelope`]
//!   writes events in another envelope ([`pubsub_core::envelope`]) for consumers that need
//!   one.
//!
//! The publisher sits on `pubsub-core` (the event and its JSON form) and `pubsub-amqp` (the
//! connection, and the [`ConfirmedChannel`](pubsub_amqp::ConfirmedChannel) it publishes on);
//! it owns its connection and reconnects it when it dies, republishing the events the broker
//! had not confirmed. It never reports an event as sent that the broker did
//! not confirm.
//!
//! # Example
//!
//! ```no_run
//! use pubsub_amqp::{AmqpConfig, Connection};
//! use pubsub_core::Event;
//! use pubsub_publisher::EventPublisher;
//! use serde_json::json;
//!
//! let connection = Connection::open(&AmqpConfig::from_env()?)?;
//! let mut publisher = EventPublisher::builder(connection, "events").app_id("orders").build()?;
//!
//! let event = Event::new("order", "created", json!({ "order_id": "ORD-123" }))?;
//! publisher.publish(&event)?; // returns once the broker has confirmed
//!
//! let batch: Vec<Event> = (0..100)
//!     .map(|i| Event::new("order", "paid", json!({ "order_id": i })))
//!     .collect::<Result<_, _>>()?;
//! for outcome in publisher.publish_all(&batch) {
//!     if let Err(failed) = outcome {
//!         eprintln!("not published: {failed}"); // failed.into_event() gives it back
//!     }
//! }
//! publisher.close()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]
#![warn(clippy::print_stdout)]

mod answer;
mod builder;
mod error;
mod message;
mod publisher;
mod recovery;
mod settings;
mod shared;
mod stats;
#[cfg(feature = "otel")]
pub mod trace;

pub use crate::builder::PublisherBuilder;
pub use crate::error::{Error, PublishError, Result};
pub use crate::message::PublishOptions;
pub use crate::publisher::EventPublisher;
pub use crate::settings::Unroutable;
pub use crate::shared::{BatchReceipt, PublishingThread, Receipt, SharedPublisher, DEFAULT_QUEUE};
pub use crate::stats::{PublisherStats, StatsHandle};
