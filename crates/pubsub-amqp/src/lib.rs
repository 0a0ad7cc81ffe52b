//! This crate provides the blocking RabbitMQ transport of the pubsub workspace: configuration,
//! connections opened with retries, channels, and topology.
//!
//! # Overview
//!
//! - [`AmqpConfig`]: host, port, credentials, vhost, retries, heartbeat, timeouts, TLS; from
//!   code, from an AMQP URL or from `AMQP_URL` / `RABBITMQ_URL`. The password never shows in
//!   `Debug`, `Display`, logs or errors. [`exchange_from_env`]: the exchange name from
//!   `RABBITMQ_EXCHANGE`.
//! - [`Connection`]: one connection, opened with `TCP_NODELAY` and bounded retries, owned by
//!   one thread (`Send`, not `Sync`).
//! - [`Channel`]: declare exchanges ([`ExchangeConfig`]) and queues ([`QueueConfig`]), bind,
//!   publish with [`Properties`], consume ([`Consumer`], [`Delivery`]), confirms and returns.
//! - [`ConfirmTracker`]: publisher confirms and returns settled into per-message outcomes
//!   ([`Settled`], [`ConfirmOutcome`]), without I/O; [`ConfirmTracker::wait`] reads a
//!   channel's streams ([`ConfirmStreams`]) with a deadline and [`check_blocked`].
//! - [`ConfirmedChannel`]: a channel with confirms on, its returns listened for and its
//!   tracker: the one way the crates above publish with confirms ([`Outgoing`] messages,
//!   waits bounded by a deadline and by the blocked-connection timeout).
//! - [`ReconnectPolicy`]: bounded exponential backoff with jitter, for the layers above that
//!   reconnect (amiquip itself never does).
//! - [`guard`]: the frame guard between the socket and amiquip: every frame the broker sends
//!   is checked by a bounded parser first, so that no message another client wrote can abort
//!   the process or kill the connection ([`Delivery::alteration`] says what it repaired);
//!   amiquip never holds the password. On `amqps://` it sits above TLS.
//! - [`RedactingLogger`]: wraps the application's logger so that amiquip's own debug
//!   records of the handshake are redacted (a second line of defence: amiquip only ever
//!   sees a placeholder password).
//! - [`Error`]: tells apart an unreachable broker, refused credentials, an unknown vhost, a
//!   TLS failure, a lost connection and a queue that exists with other arguments.
//!
//! This is the only crate of the workspace that knows the AMQP client library (`amiquip`);
//! `pubsub-publisher` and `pubsub-subscriber` reach the broker through it. It knows nothing of
//! events: it moves bytes and properties.
//!
//! # Example
//!
//! ```no_run
//! use pubsub_amqp::{AmqpConfig, Connection, ExchangeConfig, Properties, QueueConfig};
//!
//! let config = AmqpConfig::from_env()?; // AMQP_URL, or a broker on localhost
//! let mut connection = Connection::open(&config)?;
//! let channel = connection.open_channel()?;
//! channel.declare_exchange("events", &ExchangeConfig::default())?;
//! channel.declare_queue("audit", &QueueConfig::default())?;
//! channel.bind_queue("audit", "events", "#")?;
//!
//! let confirms = channel.enable_confirms()?;
//! let properties = Properties { persistent: true, ..Properties::default() };
//! channel.publish("events", "order.created", b"{}", &properties, false)?;
//! let confirm = confirms.recv_timeout(std::time::Duration::from_secs(5))?;
//! assert!(confirm.is_some_and(|c| c.ack));
//! connection.close()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]
#![warn(clippy::print_stdout)]

mod channel;
mod config;
mod confirm;
mod confirmed;
mod connection;
mod error;
pub mod guard;
mod hosts;
mod logging;
mod properties;
mod reconnect;
mod topology;

pub use crate::channel::{
    Channel, Confirm, Confirms, Consumer, ConsumerEvent, Delivery, Next, Returned, Returns,
};
pub use crate::config::{
    exchange_from_env, url_from_env, AmqpConfig, TlsConfig, AMQP_URL_ENV, DEFAULT_EXCHANGE,
    RABBITMQ_EXCHANGE_ENV, RABBITMQ_URL_ENV,
};
pub use crate::confirm::{
    check_blocked, wait_while_blocked, ConfirmOutcome, ConfirmStreams, ConfirmTracker, Settled,
};
pub use crate::confirmed::{ConfirmedChannel, Outgoing};
pub use crate::connection::{Blocked, Connection};
pub use crate::error::{Error, Result};
pub use crate::hosts::HostOrder;
pub use crate::logging::RedactingLogger;
pub use crate::properties::{HeaderValue, Headers, Properties};
pub use crate::reconnect::{Backoff, ReconnectPolicy};
pub use crate::topology::{ExchangeConfig, ExchangeKind, QueueConfig, QueueInfo};
