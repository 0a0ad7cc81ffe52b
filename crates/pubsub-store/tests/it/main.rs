//! The store against real databases: a SQLite file and the local PostgreSQL server.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod backends;
mod fuzz;
mod support;
