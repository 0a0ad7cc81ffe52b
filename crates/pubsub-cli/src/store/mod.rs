//! `pubsub store`: run the event store, query it, replay from it (see [`pubsub_store`] and [`pubsub_recorder`]).

use clap::{Args, Subcommand};

pub(crate) mod command;
mod when;

pub use self::when::parse_when;

/// The long help of `pubsub store`.
pub(crate) const ABOUT: &str = "\
Keep every event of the exchange in a database, query it, replay from it.

The database is --database, else DATABASE_URL, else the SQLite file pubsub.db:
sqlite:PATH, sqlite::memory:, or postgres://user:password@host:port/db, or SQLAlchemy's
forms (postgresql+asyncpg://..., sqlite+aiosqlite:///relative.db, sqlite:////absolute.db).

`store run --envelope any` keeps every JSON message the binding receives, as seed 003's
store does (keys such as routing.event.create.user); a replay publishes each body as it
was received.";

/// The examples under `pubsub store --help`.
pub(crate) const EXAMPLES: &str = "\
Examples:
  pubsub store run                                   # every event of `events`, into pubsub.db
  pubsub store run --database postgres://app@db/events
  pubsub store run --exchange event.exchange --envelope any   # seed 003's every message
  pubsub store query 'order.*' --since 1h
  pubsub store query --correlation-id 5a1c... --json
  pubsub store replay 'order.created' --since 2024-05-01T00:00:00Z --to-queue billing --rate 200";

/// A `pubsub store` subcommand.
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Subscribe to every event of the exchange and keep each one (until Ctrl-C).
    Run(RunArgs),
    /// Print stored events: a table, or JSON lines.
    Query(QueryArgs),
    /// Publish stored events again, with confirms: to the exchange, or into one queue.
    Replay(ReplayArgs),
}

/// Which database.
#[derive(Debug, Args)]
pub struct DatabaseArg {
    /// The database URL.
    #[arg(
        long,
        env = pubsub_store::DATABASE_URL_ENV,
        hide_env_values = true,
        default_value = pubsub_store::DEFAULT_DATABASE_URL,
        value_name = "URL"
    )]
    pub database: String,
}

/// Arguments of `pubsub store run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub database: DatabaseArg,
    /// The exchange whose events are kept.
    #[arg(long, env = pubsub_amqp::RABBITMQ_EXCHANGE_ENV, default_value = pubsub_amqp::DEFAULT_EXCHANGE)]
    pub exchange: String,
    /// The store's queue.
    #[arg(long, default_value = pubsub_recorder::DEFAULT_STORE_QUEUE)]
    pub queue: String,
    /// What to keep (a binding pattern).
    #[arg(long, default_value = "#")]
    pub pattern: String,
    /// How many deliveries the broker sends ahead; commits are batches of half of it.
    #[arg(long, default_value_t = 1000)]
    pub prefetch: u16,
    /// The envelope of what it stores: standard (six-field events; anything else is
    /// dead-lettered), bare, event-bus, or any (every JSON message, as seed 003's store:
    /// under keys such as routing.event.create.user; a body that is not JSON is
    /// dead-lettered).
    #[arg(long, default_value = "standard", value_name = "ENVELOPE")]
    pub envelope: pubsub_core::envelope::Envelope,
}

/// Which stored events (shared by `query` and `replay`).
#[derive(Debug, Args)]
pub struct SelectArgs {
    /// Routing keys matching this pattern (`order.*`, `#.created`); every event if left out.
    #[arg(value_name = "PATTERN")]
    pub pattern: Option<String>,
    /// Events at or after: an RFC 3339 time, or a time ago (`30s`, `15m`, `2h`, `7d`).
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Events before: an RFC 3339 time, or a time ago.
    #[arg(long, value_name = "WHEN")]
    pub until: Option<String>,
    /// A whole causal chain: the event with this id and every event correlated to it.
    #[arg(long, value_name = "ID")]
    pub correlation_id: Option<String>,
    /// One event.
    #[arg(long = "id", value_name = "EVENT_ID")]
    pub event_id: Option<String>,
}

/// Arguments of `pubsub store query`.
#[derive(Debug, Args)]
pub struct QueryArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub database: DatabaseArg,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub select: SelectArgs,
    /// At most this many.
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    /// The newest first (default: the oldest first).
    #[arg(long)]
    pub newest: bool,
    /// One JSON object per line (the six fields and what the transport knew) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `pubsub store replay`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["to_exchange", "to_queue"])))]
pub struct ReplayArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub database: DatabaseArg,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub select: SelectArgs,
    /// Publish to this exchange, each event with its routing key (every bound service).
    #[arg(long, value_name = "EXCHANGE")]
    pub to_exchange: Option<String>,
    /// Publish into this queue only (one service).
    #[arg(long, value_name = "QUEUE")]
    pub to_queue: Option<String>,
    /// At most this many events per second.
    #[arg(long, value_name = "PER_SECOND")]
    pub rate: Option<f64>,
    /// At most this many events.
    #[arg(long)]
    pub limit: Option<usize>,
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use pubsub_core::envelope::Envelope;

    use super::*;
    use crate::cli::{Cli, Command};

    fn run(args: &[&str]) -> RunArgs {
        let cli = Cli::try_parse_from(["pubsub", "store", "run"].iter().chain(args)).unwrap();
        match cli.command {
            Command::Store(StoreCommand::Run(run)) => run,
            other => panic!("not store run: {other:?}"),
        }
    }

    #[test]
    fn store_run_takes_an_envelope() {
        assert_eq!(run(&[]).envelope, Envelope::Standard);
        for (name, envelope) in [
            ("standard", Envelope::Standard),
            ("bare", Envelope::Bare),
            ("event-bus", Envelope::EventBus),
            ("any", Envelope::Any),
        ] {
            assert_eq!(run(&["--envelope", name]).envelope, envelope, "{name}");
        }
        let bad = ["pubsub", "store", "run", "--envelope", "xml"];
        assert!(Cli::try_parse_from(bad).is_err());
    }
}
