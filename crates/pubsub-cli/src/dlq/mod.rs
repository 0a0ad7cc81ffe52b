//! Dead-letter queues: read the messages without consuming them ([`Dlq::peek`]), replay them
//! to where they were first published ([`Dlq::replay`]), purge them ([`Dlq::purge`]).
//!
//! AMQP has no way to browse a queue. Peeking takes every message with `basic.get`, without
//! acknowledging it, up to the count the broker reported, then closes the channel: the
//! broker puts every message back. Nothing is lost, even if the tool dies half-way (the
//! broker requeues the unacknowledged messages of a closed connection); the messages come back
//! marked redelivered. A classic queue (what `pubsub-subscriber` declares) keeps their order;
//! a quorum queue may not, and counts each look as a delivery toward its `x-delivery-limit`,
//! if it has one.
//!
//! Replaying takes the messages the same way, republishes each selected one on a second
//! channel with publisher confirms, and acknowledges (removes) a dead-lettered message only
//! once the broker confirmed its copy. Whatever was not confirmed stays unacknowledged and
//! goes back to the queue when the channel closes.
//!
//! The code is laid out by concern: [`DeadLetter`] reads a message's headers (through the
//! subscriber's header contract), [`Dlq`] is the peek / replay / purge API, the replay engine
//! and its confirmed batches live in `replay`, and each subcommand (`list`, `show`, `replay`,
//! `purge`) has its arguments, running and printing in a module of its own.

use clap::Subcommand;
use crossbeam_channel::Receiver;

use crate::console::Console;
use crate::error::Result;

mod letter;
mod list;
mod progress;
mod purge;
mod queue;
mod replay;
mod show;

pub use self::letter::{dlq_name, replay_properties, DeadLetter, Destination, REPLAYED};
pub use self::list::ListArgs;
pub use self::progress::Progress;
pub use self::purge::PurgeArgs;
pub use self::queue::Dlq;
pub use self::replay::command::ReplayArgs;
pub use self::replay::{Moved, ReplayOptions, ReplayReport, Selection, Stayed};
pub use self::show::ShowArgs;

/// The long help of `pubsub dlq`.
pub(crate) const ABOUT: &str = "\
Inspect, replay and purge dead-letter queues.

<QUEUE> is a service's queue (`orders`, whose dead-letter queue is `orders.dlq`) or the
dead-letter queue itself (any name ending in `.dlq`).";

/// The examples under `pubsub dlq --help`.
pub(crate) const EXAMPLES: &str = "\
Examples:
  pubsub dlq list orders
  pubsub dlq show orders 7c9e6679-7425-40de-944b-e07fc1f90ae7
  pubsub dlq replay orders --all --dry-run
  pubsub dlq replay orders --all
  pubsub dlq purge orders --yes";

/// A subcommand of `pubsub dlq`.
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Count the dead-lettered messages and list them (without consuming them).
    #[command(after_help = list::EXAMPLES)]
    List(ListArgs),
    /// Show one dead-lettered message in full: reason, headers, properties, body.
    #[command(after_help = show::EXAMPLES)]
    Show(ShowArgs),
    /// Republish dead-lettered messages to where they were first published, then remove
    /// them from the dead-letter queue.
    #[command(after_help = replay::command::EXAMPLES)]
    Replay(ReplayArgs),
    /// Delete every message of a dead-letter queue.
    #[command(after_help = purge::EXAMPLES)]
    Purge(PurgeArgs),
}

/// Runs a `pubsub dlq` subcommand.
pub(crate) fn run(
    url: Option<&str>,
    command: DlqCommand,
    console: &mut Console<'_>,
    stop: &Receiver<()>,
) -> Result<()> {
    match command {
        DlqCommand::List(args) => list::run(url, args, console),
        DlqCommand::Show(args) => show::run(url, args, console),
        DlqCommand::Replay(args) => replay::command::run(url, args, console, stop),
        DlqCommand::Purge(args) => purge::run(url, args, console),
    }
}
