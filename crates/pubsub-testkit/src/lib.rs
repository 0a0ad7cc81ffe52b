//! This crate provides what the workspace's broker tests share: the broker under test (and the
//! rule that under `CI=true` an unreachable broker fails the test instead of skipping it),
//! unique names for each test's exchanges and queues, a fixture that deletes them at the end,
//! and `rabbitmqctl`.
//!
//! # Overview
//!
//! - [`broker`]: the [`AmqpConfig`] of the broker under test, or `None` (skip) when it is
//!   unreachable outside CI; [`config_from_env`] and [`reachable`] are its two halves.
//! - [`unique`]: a name no other test uses; [`Names`]: an exchange and a queue named alike.
//! - [`Bus`]: a test's own exchange, connections, queues bound to it, raw publishing and
//!   draining, and the deletion of everything it named when it is dropped.
//! - [`rabbitmqctl`]: run a broker administration command; [`close_connections_named`]
//!   force-closes the connections of one client. They fail with this crate's [`Error`].
//! - [`python::pika`]: run a Python script with pika against the broker, for interop tests
//!   with the seeds' Python services (fails instead of skipping under `CI=true`).
//! - [`postgres_url`]: the PostgreSQL database under test (failing under `CI=true` when it
//!   is down); [`TestDatabase`]: a SQLite file or PostgreSQL schema of a test's own.
//! - [`FaultProxy`]: a TCP proxy between a client and the broker that can cut every
//!   connection or black-hole the traffic, for the fault suite.
//!
//! It depends on `pubsub-amqp` only (not on the publisher or the subscriber, which test with
//! it). It is a development dependency of the library crates, and a dependency of the fault
//! suite and the benchmark; no library crate depends on it.
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

mod database;
pub mod python;
pub mod tls;

use std::net::{TcpStream, ToSocketAddrs};
use std::process::Command;
use std::time::Duration;

use pubsub_amqp::AmqpConfig;

pub use crate::database::TestDatabase;
pub use crate::error::{Error, Result};

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
    let config = config_from_env().expect("AMQP_URL must be a valid AMQP URL");
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

/// The broker from `AMQP_URL` (or RabbitMQ on localhost), with one connection attempt and a
/// five-second connection timeout: a test or a benchmark does not wait for a broker.
///
/// # Errors
///
/// [`pubsub_amqp::Error::InvalidConfig`] when `AMQP_URL` is not a valid AMQP URL.
pub fn config_from_env() -> pubsub_amqp::Result<AmqpConfig> {
    Ok(AmqpConfig::from_env()?
        .with_connection_attempts(1)
        .with_connection_timeout(Duration::from_secs(5)))
}

/// Whether the broker of `config` accepts TCP connections (within two seconds).
pub fn reachable(config: &AmqpConfig) -> bool {
    (config.host(), config.port())
        .to_socket_addrs()
        .map(|mut addrs| {
            addrs.any(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok())
        })
        .unwrap_or(false)
}

/// The environment variable that names the PostgreSQL database under test.
pub const TEST_DATABASE_URL_ENV: &str = "PUBSUB_TEST_DATABASE_URL";

/// The PostgreSQL database under test: `PUBSUB_TEST_DATABASE_URL`, or the local server's
/// `test` database (`postgres://postgres@127.0.0.1:5432/test`, trust auth).
///
/// Returns `None` when it does not accept connections and `CI` is not `true`, after printing
/// why the test is skipped.
///
/// # Panics
///
/// When the database does not answer and `CI=true`: in CI a database test never skips
/// silently.
pub fn postgres_url() -> Option<String> {
    let url = std::env::var(TEST_DATABASE_URL_ENV)
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    // `scheme://user:password@host:port/db?...`: the host and port, for a TCP check.
    let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().unwrap_or(5432)),
        None => (authority, 5432),
    };
    let host = if host.is_empty() { "localhost" } else { host };
    let up = (host, port)
        .to_socket_addrs()
        .map(|mut addrs| {
            addrs.any(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok())
        })
        .unwrap_or(false);
    if up {
        return Some(url);
    }
    let message = format!(
        "PostgreSQL is not reachable at {host}:{port} (start it with `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`)"
    );
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("{message}; under CI=true database tests fail instead of skipping");
    }
    eprintln!("skipping: {message}");
    None
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
/// [`Error::CannotRun`] when `rabbitmqctl` cannot be started, [`Error::CommandFailed`] when it
/// exits non-zero.
pub fn rabbitmqctl(args: &[&str]) -> Result<String> {
    let output = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .map_err(|e| Error::CannotRun {
            program: "rabbitmqctl",
            reason: e.to_string(),
        })?;
    if !output.status.success() {
        return Err(Error::CommandFailed {
            command: describe("rabbitmqctl", args),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `program args...` for a message, with the password of `add_user`, `change_password` and
/// `authenticate_user` (the argument after the user name) replaced by `***`.
fn describe(program: &str, args: &[&str]) -> String {
    const WITH_PASSWORD: [&str; 3] = ["add_user", "change_password", "authenticate_user"];
    let password_at = args
        .iter()
        .position(|arg| WITH_PASSWORD.contains(arg))
        .map(|i| i + 2);
    let words = args
        .iter()
        .enumerate()
        .map(|(i, arg)| if Some(i) == password_at { "***" } else { arg });
    std::iter::once(program)
        .chain(words)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Force-closes every broker connection whose client named itself `name` (the AMQP
/// `information` client property, set with `AmqpConfig::with_connection_name`), as an
/// operator would with `rabbitmqctl close_connection`. Returns how many were closed.
///
/// # Errors
///
/// When `rabbitmqctl` fails.
pub fn close_connections_named(name: &str) -> Result<usize> {
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
pub fn connections_named(name: &str) -> Result<usize> {
    let listing = rabbitmqctl(&["-q", "list_connections", "client_properties"])?;
    let needle = format!("{{\"information\",\"{name}\"}}");
    Ok(listing.lines().filter(|l| l.contains(&needle)).count())
}

mod error;
mod fixture;
mod proxy;
pub mod raw;

pub use crate::fixture::{Bus, Names, Taken};
pub use crate::proxy::FaultProxy;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_hides_passwords() {
        let check = |args: &[&str], expected: &str| {
            assert_eq!(describe("rabbitmqctl", args), expected);
        };
        check(&["-q", "stop_app"], "rabbitmqctl -q stop_app");
        check(
            &["-q", "add_user", "ada", "s3cret"],
            "rabbitmqctl -q add_user ada ***",
        );
        check(
            &["change_password", "ada", "s3cret"],
            "rabbitmqctl change_password ada ***",
        );
        check(
            &["authenticate_user", "ada"],
            "rabbitmqctl authenticate_user ada",
        );
        check(
            &["-q", "delete_user", "ada"],
            "rabbitmqctl -q delete_user ada",
        );
    }
}
