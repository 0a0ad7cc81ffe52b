//! The command line: [`Cli`] and its [`Command`]s, parsed with clap. Each command's own
//! arguments live with the command ([`PublishArgs`], [`TailArgs`], [`DlqCommand`]).

use clap::{Parser, Subcommand};

pub use crate::dlq::{DlqCommand, ListArgs, PurgeArgs, ReplayArgs, ShowArgs};
pub use crate::publish::command::PublishArgs;
pub use crate::store::StoreCommand;
pub use crate::tail::command::TailArgs;
pub use crate::task::TaskCommand;

const EXAMPLES: &str = "\
Examples:
  pubsub publish order.created --data '{\"order_id\":\"ORD-1\"}'
  pubsub publish user.registered --envelope event-bus --event-type integration
  pubsub tail 'order.*'
  pubsub dlq list orders
  pubsub dlq replay orders --all
  pubsub task submit send-report --payload '{\"to\":\"ops\"}'
  pubsub task status 7c9e6679-7425-40de-944b-e07fc1f90ae7
  pubsub store run --database postgres://app@db/events
  pubsub store query 'order.*' --since 1h
  pubsub asyncapi billing --subscribe 'order.*'
  AMQP_URL=amqp://ops:secret@rabbit:5672/%2f pubsub dlq list orders
  RABBITMQ_URL=amqp://ops:secret@rabbit:5672/%2f RABBITMQ_EXCHANGE=events-staging pubsub tail

Environment: AMQP_URL, else RABBITMQ_URL, names the broker (--url wins over both);
RABBITMQ_EXCHANGE the exchange of publish, tail, store and asyncapi (--exchange wins).

Exit codes: 0 success, 1 failure (broker unreachable, queue not found, messages left behind),
2 usage (bad arguments, URL, routing key, pattern or --data).";

/// The `pubsub` command line.
#[derive(Debug, Parser)]
#[command(
    name = "pubsub",
    version,
    about = "Operate an event bus on RabbitMQ: publish test events, watch what flows, deal with dead-letter queues, submit tasks and read their status, keep events in a store, print a service's AsyncAPI document",
    after_help = EXAMPLES,
    propagate_version = true
)]
pub struct Cli {
    /// The broker's AMQP URL, `amqp://user:password@host:port/vhost`; `None`: `AMQP_URL`,
    /// else `RABBITMQ_URL`, else RabbitMQ on localhost.
    #[arg(
        long,
        help = "The broker's AMQP URL, amqp://user:password@host:port/vhost [default: AMQP_URL, else RABBITMQ_URL, else amqp://guest:guest@localhost:5672/%2f]",
        global = true,
        value_name = "URL"
    )]
    pub url: Option<String>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// A subcommand of `pubsub`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Publish one event (with publisher confirms) and print its event id.
    #[command(after_help = crate::publish::command::EXAMPLES)]
    Publish(PublishArgs),
    /// Print the events flowing through an exchange, as they arrive, until Ctrl-C.
    #[command(after_help = crate::tail::command::EXAMPLES)]
    Tail(TailArgs),
    /// Inspect, replay and purge dead-letter queues.
    #[command(
        subcommand,
        about = "Inspect, replay and purge dead-letter queues",
        long_about = crate::dlq::ABOUT,
        after_help = crate::dlq::EXAMPLES
    )]
    Dlq(DlqCommand),
    /// Submit tasks and read their status from the task store.
    #[command(
        subcommand,
        about = "Submit tasks and read their status from the task store",
        long_about = crate::task::ABOUT,
        after_help = crate::task::EXAMPLES
    )]
    Task(TaskCommand),
    /// Keep every event in a database, query it, replay from it.
    #[command(
        subcommand,
        about = "Keep every event in a database (SQLite or PostgreSQL), query it, replay from it",
        long_about = crate::store::ABOUT,
        after_help = crate::store::EXAMPLES
    )]
    Store(StoreCommand),
    /// Print the AsyncAPI 3 document of a service described by flags (no broker needed).
    #[command(after_help = crate::asyncapi::EXAMPLES)]
    Asyncapi(crate::asyncapi::AsyncApiArgs),
}

impl Command {
    /// Whether the command stops cleanly on Ctrl-C (and so wants the signal handled) rather
    /// than being killed by it.
    pub fn stops_on_interrupt(&self) -> bool {
        matches!(
            self,
            Command::Tail(_)
                | Command::Dlq(DlqCommand::Replay(_))
                | Command::Store(StoreCommand::Run(_) | StoreCommand::Replay(_))
        )
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn replay_needs_a_selection() {
        assert!(Cli::try_parse_from(["pubsub", "dlq", "replay", "orders"]).is_err());
        assert!(
            Cli::try_parse_from(["pubsub", "dlq", "replay", "orders", "--all", "--id", "x"])
                .is_err()
        );
        assert!(Cli::try_parse_from([
            "pubsub", "dlq", "replay", "orders", "--id", "a", "--id", "b"
        ])
        .is_ok());
    }

    #[test]
    fn url_is_global() {
        let cli =
            Cli::try_parse_from(["pubsub", "dlq", "list", "orders", "--url", "amqp://h"]).unwrap();
        assert_eq!(cli.url.as_deref(), Some("amqp://h"));
    }

    #[test]
    fn tail_defaults_to_everything() {
        let cli = Cli::try_parse_from(["pubsub", "tail"]).unwrap();
        let Command::Tail(args) = cli.command else {
            panic!("not tail")
        };
        assert_eq!(args.patterns, ["#"]);
        assert_eq!(args.exchange, None);
        assert_eq!(args.envelope, pubsub_core::envelope::Envelope::Standard);
    }
}
