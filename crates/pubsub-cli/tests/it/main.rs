//! Integration tests against the real broker, for the library functions and the `pubsub`
//! binary: each test declares its own uniquely named exchange and queues and deletes them.
//! (The usage tests in `usage` need no broker.)

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod asyncapi;
mod dlq;
mod event_bus;
mod incident;
mod publish;
mod replay;
mod store;
mod support;
mod tail;
mod task;
mod usage;
mod versioned;
