//! The demo end to end: its flow through a real broker (each test on its own uniquely named
//! exchange and queue), and the binary as a user runs it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod binary;
mod broker;
