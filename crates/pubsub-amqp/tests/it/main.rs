//! Integration tests against the real broker (127.0.0.1:5672 unless `AMQP_URL` says otherwise).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod confirmed;
mod connect;
mod guard;
mod secrets;
mod tls;
mod topology;
