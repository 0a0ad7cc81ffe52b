//! This crate provides what the workspace's broker tests share: the broker under test (and the
//! rule that under `CI=true` an unreachable broker fails the test instead of skipping it),
//! unique names for each test's exchanges and queues, and `rabbitmqctl`.
//!
//! # Overview
//!
//! - [`broker`]: the [`AmqpConfig`] of the broker under test, or `None` (skip) when it is
//!   unreachable outside CI.
//! - [`unique`]: a name no other test uses.
//! - [`rabbitmqctl`]: run a broker administration command; [`close_connections_named`]
//!   force-closes the connections of one client.
//! - [`FaultProxy`]: a TCP proxy between a client and the broker that can cut every
//!   connection or black-hole the traffic, for the fault suite.
//!
//! It is a development dependency only; no library crate depends on it.
//!
//! # Example
//!
//! ```no_run
//! let Some(config) = pubsub_testkit::broker() else { return };
//! let queue = pubsub_testkit::unique("orders");
//! assert!(queue.starts_with("test.orders."));
//! # let _ = config;
//! ```
#![deny(missing_docs)]

pub mod tls;

use std::net::{TcpStream, ToSocketAddrs};
use std::process::Command;
use std::time::Duration;

use pubsub_amqp::AmqpConfig;

/// The broker under test: `AMQP_URL`, or RabbitMQ on localhost.
///
/// Returns `None` when the broker does not answer and `CI` is not `true`, after printing why
/// the test is skipped.
///
/// # Panics
///
/// When the broker does not answer and `CI=true`: in CI a broker test never skips silently.
/// Also when `AMQP_URL` is not a valid AMQP URL.
pub fn broker() -> Option<AmqpConfig> {
    let config = AmqpConfig::from_env()
        .expect("AMQP_URL must be a valid AMQP URL")
        .with_connection_attempts(1)
        .with_connection_timeout(Duration::from_secs(5));
    if reachable(&config) {
        return Some(config);
    }
    let message = format!(
        "RabbitMQ is not reachable at {} (start it with `just broker`)",
        config.address()
    );
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("{message}; under CI=true broker tests fail instead of skipping");
    }
    eprintln!("skipping: {message}");
    None
}

fn reachable(config: &AmqpConfig) -> bool {
    (config.host(), config.port())
        .to_socket_addrs()
        .map(|mut addrs| {
            addrs.any(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok())
        })
        .unwrap_or(false)
}

/// A name for an exchange or queue that no other test (or test run) uses:
/// `test.<prefix>.<random>`.
pub fn unique(prefix: &str) -> String {
    format!(
        "test.{prefix}.{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// Runs `rabbitmqctl` with `args` and returns its standard output.
///
/// # Errors
///
/// A description of the failure when the command cannot run or exits non-zero.
pub fn rabbitmqctl(args: &[&str]) -> Result<String, String> {
    let output = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run rabbitmqctl: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "rabbitmqctl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Force-closes every broker connection whose client named itself `name` (the AMQP
/// `information` client property, set with `AmqpConfig::with_connection_name`), as an
/// operator would with `rabbitmqctl close_connection`. Returns how many were closed.
///
/// # Errors
///
/// When `rabbitmqctl` fails.
pub fn close_connections_named(name: &str) -> Result<usize, String> {
    let listing = rabbitmqctl(&["-q", "list_connections", "pid", "client_properties"])?;
    let needle = format!("{{\"information\",\"{name}\"}}");
    let mut closed = 0;
    for line in listing.lines().filter(|l| l.contains(&needle)) {
        if let Some(pid) = line.split('\t').next() {
            // A connection that went away in the meantime is not an error.
            if rabbitmqctl(&["-q", "close_connection", pid, "closed by the fault suite"]).is_ok() {
                closed += 1;
            }
        }
    }
    Ok(closed)
}

/// How many broker connections named `name` are open.
///
/// # Errors
///
/// When `rabbitmqctl` fails.
pub fn connections_named(name: &str) -> Result<usize, String> {
    let listing = rabbitmqctl(&["-q", "list_connections", "client_properties"])?;
    let needle = format!("{{\"information\",\"{name}\"}}");
    Ok(listing.lines().filter(|l| l.contains(&needle)).count())
}

mod proxy;
pub mod raw;

pub use crate::proxy::FaultProxy;
