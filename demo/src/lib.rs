//! This crate provides the `demo` binary's flow as a library, so that its integration test
//! runs exactly what `just demo` runs: the original design's order flow (an order created,
//! then paid, then a user registered) published through RabbitMQ, or dispatched in process,
//! into the handlers of `demo-domain`.
//!
//! # Overview
//!
//! - [`run`]: sends a [`Workload`] through a [`Transport`] with [`Settings`], waits until
//!   every event has been handled (a bounded wait on the subscriber's delivery reports, no
//!   sleep), and returns a [`RunReport`], whose `Display` is the summary the binary prints.
//! - [`Workload::OrderFlow`]: the three events of the original design, reported one by one;
//!   [`Workload::Orders`]: many orders, for throughput.
//! - [`Transport::Broker`]: an `EventBus` (a worker on its own thread and connection, a
//!   publishing thread on another); [`Transport::InProcess`]: the same handlers on an
//!   in-process bus, no broker.
//!
//! - [`asyncapi()`]: the service's AsyncAPI 3 document (`demo --asyncapi`): its exchange,
//!   the routing keys it subscribes to and publishes, the events' JSON Schemas.
//!
//! It sits at the top of the workspace: on `demo-domain` (the events and handlers) and the
//! `pubsub` facade (the bus). (The README's and the guides' code blocks are compiled as the
//! `pubsub` crate's doctests.)
//!
//! # Example
//!
//! ```
//! use demo::{Settings, Transport, Workload};
//!
//! let workload = Workload::OrderFlow;
//! let handlers = workload.handlers()?;
//! let report = demo::run(workload, &Transport::InProcess, &Settings::default(), &handlers, &mut |_| {})?;
//! assert!(report.is_success());
//! assert_eq!(report.events[1].handler_names(), ["send-email", "log-analytics"]);
//! assert_eq!(handlers.shop().stock("PROD-001")?, Some(8));
//! println!("{report}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]
#![warn(clippy::print_stdout)]

mod asyncapi;
mod flow;
mod report;
mod run;
mod store;
mod tasks;

pub use crate::asyncapi::asyncapi;
pub use crate::flow::Workload;
pub use crate::report::{Attempt, Handled, HandlerTally, Outcome, Progress, RunReport};
pub use crate::run::{run, Settings, Transport, MAX_ATTEMPTS, RETRY_DELAYS};
pub use crate::store::{StoredRows, DEMO_DATABASE};
pub use crate::tasks::TaskDone;
