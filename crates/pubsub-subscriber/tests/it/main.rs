//! Integration tests against the real broker: each test declares its own uniquely named
//! exchange and queues and deletes them.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod dispatch;
mod flow;
mod group_commit;
mod hostile;
mod interop;
mod quorum;
mod retry;
mod sink;
mod support;
mod trust;
