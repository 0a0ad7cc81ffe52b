//! This crate provides [`HandlerRegistry`]: handlers subscribed to routing-key patterns, and
//! the dispatch of each event to every handler whose pattern matches, with error isolation.
//!
//! # Overview
//!
//! - [`HandlerRegistry`]: [`subscribe`](HandlerRegistry::subscribe) a handler to a pattern,
//!   [`find_handlers`](HandlerRegistry::find_handlers) for a routing key,
//!   [`invoke_all`](HandlerRegistry::invoke_all) for an event, and
//!   [`bindings`](HandlerRegistry::bindings), the broker binding keys the handlers need.
//! - [`Pattern`]: AMQP topic semantics (`*` one word, `#` zero or more words), plus glob words
//!   (`pay*`) and the original design's lone `*` for "everything".
//! - [`InvocationResult`]: total, succeeded, and each failure with the handler's name and error.
//! - [`Idempotent`]: an opt-in window that skips events a handler already handled, for the
//!   duplicates at-least-once delivery brings
//!   ([`HandlerRegistry::deduplicate`] applies it to every handler).
//!
//! This is the in-process, MediatR-like half of the workspace. It sits on `pubsub-core` and
//! knows nothing of AMQP; `pubsub-subscriber` feeds it the events that arrive from RabbitMQ,
//! and an application can call it directly to dispatch events in process.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//!
//! use pubsub_core::{handler_fn, Event};
//! use pubsub_registry::HandlerRegistry;
//! use serde_json::json;
//!
//! let mut registry = HandlerRegistry::new();
//! registry.subscribe("order.created", handler_fn("send-email", |event, _| {
//!     let _to = event.data()["customer_email"].as_str().ok_or("no customer_email")?;
//!     Ok(())
//! }))?;
//! registry.subscribe("order.*", handler_fn("analytics", |_, _| Ok(())))?;
//! registry.subscribe("#", handler_fn("audit", |_, _| Ok(())))?;
//! assert_eq!(registry.bindings(), ["#"]);
//!
//! let registry = Arc::new(registry); // share it with consumer threads
//! let event = Event::new("order", "created", json!({ "customer_email": "ada@example.com" }))?;
//! let result = registry.invoke_all(&event);
//! assert_eq!(result.succeeded(), 3);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]
#![warn(clippy::print_stdout)]

mod error;
mod idempotent;
mod pattern;
mod registry;
mod trie;

pub use crate::error::{Error, Result};
pub use crate::idempotent::Idempotent;
pub use crate::pattern::{binding_keys, Pattern};
pub use crate::registry::{
    subscription_id, HandlerFailure, HandlerOutcome, HandlerRegistry, InvocationResult,
    Subscription,
};
