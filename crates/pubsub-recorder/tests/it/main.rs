//! The event store as a service against the real broker, on a SQLite file and the local
//! PostgreSQL server.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod hostile;
mod pool;
mod seed003;
mod service;
mod support;
