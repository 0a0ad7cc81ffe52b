//! This crate provides `pubsub`, the command-line tool for the people who run services on
//! the event bus: publish a test event, watch what flows, and deal with a dead-letter queue
//! after an incident (inspect it, replay it once the fix is deployed, or drop it).
//!
//! # Overview
//!
//! - [`cli::Cli`]: the command line (clap): `publish`, `tail`, `dlq list|show|replay|purge`,
//!   `task`, `store`, `asyncapi`, and `--url` (else `AMQP_URL`, else `RABBITMQ_URL`) for
//!   every one; `--exchange` where a command has one, else `RABBITMQ_EXCHANGE`.
//! - [`run`]: hands a parsed command line to its command, on a [`Console`] (stdout, stderr,
//!   stdin); [`Error::exit_code`] maps its error to 1 (failure) or 2 ([`UsageError`]).
//! - [`publish`]: one event from `--data` (inline, `@file`, stdin), published with confirms
//!   through `pubsub-publisher`'s `EventPublisher`.
//! - [`tail::Tail`]: a temporary exclusive queue bound with the patterns' binding keys
//!   (`pubsub-registry` semantics, glob words included), printing each event as it arrives.
//! - [`dlq::Dlq`]: a dead-letter queue: [`peek`](dlq::Dlq::peek) without consuming,
//!   [`replay`](dlq::Dlq::replay) with confirms (a message leaves the dead-letter queue only
//!   once its copy is confirmed), [`purge`](dlq::Dlq::purge); [`dlq::DeadLetter`] reads the
//!   headers `pubsub-subscriber` writes (and RabbitMQ's `x-death`) through the subscriber's
//!   own header contract (`pubsub_subscriber::headers`).
//! - [`asyncapi`]: the AsyncAPI 3 document of a service described by flags
//!   (`pubsub-asyncapi`), no broker needed.
//! - [`task`]: `task submit` through `pubsub-tasks`' `TaskQueue`, `task status` and
//!   `task list` from the task store (`pubsub-store`, `--database` / `DATABASE_URL`).
//! - [`Error`]: why a command failed, one variant per kind of failure.
//!
//! Each command keeps its arguments, its running and its printing together: `publish`,
//! `tail` and `dlq` (`list`, `show`, `replay`, `purge`) are modules of their own, and
//! [`run`] only dispatches.
//!
//! It sits on top of the workspace: `pubsub-amqp` for connections, `pubsub-publisher`,
//! `pubsub-registry` for patterns and `pubsub-subscriber` for the dead-letter naming and
//! headers. The `pubsub` binary (`src/main.rs`) only parses, handles Ctrl-C and maps the
//! exit code.
//!
//! # Example
//!
//! ```no_run
//! use pubsub_cli::dlq::{Dlq, ReplayOptions};
//!
//! let mut connection = pubsub_cli::connect(None, "example")?; // a broker on localhost
//! let mut dlq = Dlq::open(&mut connection, "orders")?; // the queue `orders.dlq`
//! dlq.peek(|letter, _| println!("{:?} {}", letter.event_id(), letter.cause()))?;
//!
//! let never = crossbeam_channel::never();
//! let report = dlq.replay(&ReplayOptions::default(), &never, |_| {})?;
//! println!("moved {}, {} stayed", report.moved.len(), report.stayed.len());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]
#![warn(clippy::print_stdout, clippy::print_stderr)]

mod app;
pub mod asyncapi;
pub mod cli;
mod connect;
mod console;
pub mod dlq;
mod error;
mod format;
mod progress;
pub mod publish;
pub mod store;
pub mod tail;
pub mod task;

pub use crate::app::run;
pub use crate::connect::{amqp_config, connect};
pub use crate::console::Console;
pub use crate::error::{Error, Result, UsageError};
