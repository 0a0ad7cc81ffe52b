//! The EventBus against the real broker, and in process.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

#[cfg(feature = "tokio")]
mod asynchronous;
mod awaiting;
mod broker;
#[cfg(feature = "outbox")]
mod exactly_once;
mod in_process;
mod metrics;
#[cfg(feature = "otel")]
mod otel;
#[cfg(all(feature = "store", feature = "tasks"))]
mod service;

use std::time::Duration;

use pubsub::{Event, TypedEvent};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// How long a test waits for something that should happen at once.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// A typed event of the tests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ItemShipped {
    pub(crate) item: String,
    pub(crate) count: u32,
}

impl TypedEvent for ItemShipped {
    const DOMAIN: &'static str = "item";
    const ACTION: &'static str = "shipped";
}

pub(crate) fn event(domain: &str, action: &str, n: u64) -> Event {
    Event::new(domain, action, json!({ "n": n })).unwrap()
}

pub(crate) fn shipped(item: &str, count: u32) -> Event {
    Event::from_typed(&ItemShipped {
        item: item.to_owned(),
        count,
    })
    .unwrap()
}
