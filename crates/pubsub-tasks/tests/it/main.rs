//! Integration tests against the real broker and real task stores (a SQLite file, a
//! PostgreSQL schema): each test has its own exchange, queues and database, deleted at the
//! end.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod flow;
mod hostile;
mod interop;
mod limits;
mod support;
