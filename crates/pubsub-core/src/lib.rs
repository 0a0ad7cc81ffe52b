//! This crate provides the event model of the pubsub workspace: the [`Event`] that crosses the
//! bus, the [`EventHandler`] trait that reacts to it, typed events, and the JSON wire format.
//!
//! # Overview
//!
//! - [`Event`]: six immutable fields (`domain`, `action`, `data`, `event_id`, `timestamp`,
//!   `version`), validated on construction; its routing key is `domain.action`, or
//!   `domain.action.vN` for a versioned routing key.
//! - [`TypedEvent`]: a Rust struct that is one kind of event's `data`, with
//!   [`Event::from_typed`] and [`Event::decode`].
//! - [`EventHandler`]: the synchronous unit of business logic, with [`Metadata`] about the
//!   delivery; closures are handlers too ([`handler_fn`] names them). [`EventType`] is seed
//!   004's kind of event (domain, integration, ...), carried in a header beside the body.
//! - [`Event::create`]: seed 004's `Event.create(name, source, event_type, data)`, a
//!   [`SourcedEvent`] (the event, its source and its type).
//! - [`json`]: the wire format shared with the Python services of the original design.
//! - [`Migration`]: one fact as the old and the new version of an event, published together
//!   while consumers migrate to a versioned routing key.
//! - [`envelope`]: the other shapes events take on the bus (seed 002's bare model, seed 004's
//!   event bus envelope), decoded to the same [`Event`].
//! - `schema` (feature `schema`): JSON Schemas of the wire body and of typed events, with
//!   `schemars`.
//! - [`group_commit`]: handlers leave their database work open on the consumer's thread, and
//!   the consumer commits it all before its next ack.
//! - [`text`]: quoting and cutting values that may come from the network, for messages.
//! - [`trace`]: the W3C trace context headers (`traceparent`, `tracestate`); with the `otel`
//!   feature, to and from OpenTelemetry contexts.
//!
//! This is the bottom crate of the workspace: it depends on no sibling and does no I/O.
//! `pubsub-registry` dispatches events to handlers; `pubsub-publisher` and `pubsub-subscriber`
//! carry them over RabbitMQ.
//!
//! # Example
//!
//! ```
//! use pubsub_core::{handler_fn, json, Event, EventHandler, Metadata};
//! use serde_json::json;
//!
//! let event = Event::new("order", "created", json!({ "order_id": "ORD-123" }))?;
//! assert_eq!(event.routing_key(), "order.created");
//!
//! // What travels over the wire, and back.
//! let bytes = json::to_vec(&event);
//! let received = json::from_slice(&bytes)?;
//! assert_eq!(received.event_id(), event.event_id());
//!
//! let confirm = handler_fn("send-confirmation", |event, _meta| {
//!     let order_id = event.data()["order_id"].as_str().ok_or("order_id is not a string")?;
//!     assert_eq!(order_id, "ORD-123");
//!     Ok(())
//! });
//! confirm.handle(&received, &Metadata::default())?;
//! # Ok::<(), pubsub_core::HandlerError>(())
//! ```
#![deny(missing_docs)]
#![warn(clippy::print_stdout)]

pub mod envelope;
mod error;
mod event;
mod event_type;
pub mod group_commit;
mod handler;
pub mod json;
mod migration;
#[cfg(feature = "schema")]
pub mod schema;
mod sourced;
pub mod text;
mod timestamp;
pub mod trace;
mod typed;
mod version;

pub use crate::error::{Error, Result};
pub use crate::event::{Event, EventBuilder, DEFAULT_VERSION};
pub use crate::event_type::{EventType, CAUSATION_ID_HEADER, EVENT_TYPE_HEADER};
pub use crate::handler::{
    handler_fn, EventHandler, FnHandler, HandlerError, HandlerResult, Headers, Metadata, Permanent,
};
pub use crate::migration::Migration;
pub use crate::sourced::SourcedEvent;
pub use crate::typed::TypedEvent;

/// Re-exported so that users build `data` with the same `serde_json` version as this crate.
pub use serde_json;
/// Re-exported because its `OffsetDateTime` is in this crate's API (event timestamps, the
/// receive time of [`envelope::Received`]).
pub use time;
