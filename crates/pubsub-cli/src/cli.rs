//! The command line: [`Cli`] and its subcommands, parsed with clap.

use clap::{ArgGroup, Args, Parser, Subcommand};

const EXAMPLES: &str = "\
Examples:
  pubsub publish order.created --data '{\"order_id\":\"ORD-1\"}'
  pubsub tail 'order.*'
  pubsub dlq list orders
  pubsub dlq replay orders --all
  AMQP_URL=amqp://ops:secret@rabbit:5672/%2f pubsub dlq list orders

Exit codes: 0 success, 1 failure (broker unreachable, queue not found, messages left behind),
2 usage (bad arguments, URL, routing key, pattern or --data).";

const PUBLISH_EXAMPLES: &str = "\
Examples:
  pubsub publish order.created --data '{\"order_id\":\"ORD-1\",\"total\":42.5}'
  pubsub publish order.created --data @order.json --correlation-id checkout-17
  jq -c '.order' dump.json | pubsub publish order.created
  pubsub publish user.ping                       # data {} when stdin is a terminal
  pubsub publish order.paid --data '{}' --exchange events-staging --no-declare";

const TAIL_EXAMPLES: &str = "\
Examples:
  pubsub tail                         # everything on the `events` exchange
  pubsub tail 'order.*' 'user.registered'
  pubsub tail 'pay*.#'                # glob words, as in handler patterns
  pubsub tail --json 'order.#' | jq .event.data
  pubsub tail -n 1 order.created      # wait for one event, then exit";

const DLQ_ABOUT: &str = "\
Inspect, replay and purge dead-letter queues.

<QUEUE> is a service's queue (`orders`, whose dead-letter queue is `orders.dlq`) or the
dead-letter queue itself (any name ending in `.dlq`).";

const DLQ_EXAMPLES: &str = "\
Examples:
  pubsub dlq list orders
  pubsub dlq show orders 7c9e6679-7425-40de-944b-e07fc1f90ae7
  pubsub dlq replay orders --all --dry-run
  pubsub dlq replay orders --all
  pubsub dlq purge orders --yes";

const LIST_EXAMPLES: &str = "\
Examples:
  pubsub dlq list orders
  pubsub dlq list orders.dlq --limit 0         # every row
  pubsub dlq list orders --json | jq -r .event_id

AMQP has no way to browse a queue: `list` and `show` take every message with basic.get
without acknowledging it, then close their channel, which puts them all back. Nothing is
consumed, but the messages come back marked redelivered; on a quorum queue their order may
change and each look counts as a delivery toward its x-delivery-limit, if it has one.";

const SHOW_EXAMPLES: &str = "\
Examples:
  pubsub dlq show orders 7c9e6679-7425-40de-944b-e07fc1f90ae7
  pubsub dlq show orders 7c9e6679-7425-40de-944b-e07fc1f90ae7 --json | jq .body";

const REPLAY_EXAMPLES: &str = "\
Examples:
  pubsub dlq replay orders --all --dry-run     # what would move, and where
  pubsub dlq replay orders --all
  pubsub dlq replay orders --id 7c9e6679-7425-40de-944b-e07fc1f90ae7
  pubsub dlq replay orders --all --limit 10    # a few first, to check the fix
  pubsub dlq replay orders --all --to-queue orders

Each message is republished, body unchanged, to the exchange and routing key it was first
published with (its x-pubsub-original-* headers, else its x-death header), with publisher
confirms; it is removed from the dead-letter queue only once the broker confirmed it. The
retry and dead-letter headers are dropped, so the event gets a fresh set of attempts, and
x-pubsub-replayed counts the replays. Messages that cannot be republished (missing exchange,
no queue bound, negative confirm, lost connection) stay in the dead-letter queue; the exit
code is then 1.

Republishing to the exchange delivers the event to every queue bound to its routing key,
other services' included (consumers are at-least-once and must be idempotent anyway); with
--to-queue only the named queue receives it.";

const PURGE_EXAMPLES: &str = "\
Examples:
  pubsub dlq purge orders              # asks for confirmation
  pubsub dlq purge orders.dlq --yes";

/// The `pubsub` command line.
#[derive(Debug, Parser)]
#[command(
    name = "pubsub",
    version,
    about = "Operate an event bus on RabbitMQ: publish test events, watch what flows, deal with dead-letter queues",
    after_help = EXAMPLES,
    propagate_version = true
)]
pub struct Cli {
    /// The broker's AMQP URL, `amqp://user:password@host:port/vhost`; `None`: RabbitMQ on
    /// localhost.
    #[arg(
        long,
        help = "The broker's AMQP URL, amqp://user:password@host:port/vhost [default: amqp://guest:guest@localhost:5672/%2f]",
        env = "AMQP_URL",
        hide_env_values = true,
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
    #[command(after_help = PUBLISH_EXAMPLES)]
    Publish(PublishArgs),
    /// Print the events flowing through an exchange, as they arrive, until Ctrl-C.
    #[command(after_help = TAIL_EXAMPLES)]
    Tail(TailArgs),
    /// Inspect, replay and purge dead-letter queues.
    #[command(
        subcommand,
        about = "Inspect, replay and purge dead-letter queues",
        long_about = DLQ_ABOUT,
        after_help = DLQ_EXAMPLES
    )]
    Dlq(DlqCommand),
}

impl Command {
    /// Whether the command stops cleanly on Ctrl-C (and so wants the signal handled) rather
    /// than being killed by it.
    pub fn stops_on_interrupt(&self) -> bool {
        matches!(self, Command::Tail(_) | Command::Dlq(DlqCommand::Replay(_)))
    }
}

/// Arguments of `pubsub publish`.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The event's routing key, `<domain>.<action>` (e.g. `order.created`).
    #[arg(value_name = "DOMAIN.ACTION")]
    pub routing_key: String,

    /// The event's data, a JSON object: inline, `@path` to read a file, or `-` for stdin;
    /// `None`: stdin when it is not a terminal, else `{}`.
    #[arg(
        long,
        short,
        value_name = "JSON|@FILE|-",
        help = "The event's data, a JSON object: inline, @path to read a file, or - for stdin [default: stdin when it is not a terminal, else {}]"
    )]
    pub data: Option<String>,

    /// The correlation id that ties this event to others of one flow.
    #[arg(long, value_name = "ID")]
    pub correlation_id: Option<String>,

    /// The exchange to publish to.
    #[arg(long, default_value = "events")]
    pub exchange: String,

    /// The publishing application's name (the AMQP `app_id`).
    #[arg(long, default_value = "pubsub-cli", value_name = "NAME")]
    pub app_id: String,

    /// The event's version.
    #[arg(long, default_value = pubsub_core::DEFAULT_VERSION, value_name = "VERSION")]
    pub event_version: String,

    /// Use the exchange as it is instead of declaring it (a durable topic exchange); fail if
    /// it does not exist.
    #[arg(long)]
    pub no_declare: bool,

    /// Fail (exit 1) when no queue is bound for the routing key, instead of warning.
    #[arg(long)]
    pub mandatory: bool,
}

/// Arguments of `pubsub tail`.
#[derive(Debug, Args)]
pub struct TailArgs {
    /// Routing-key patterns, as in handler subscriptions: `*` one word, `#` zero or more
    /// words, glob words like `pay*`.
    #[arg(value_name = "PATTERN", default_value = "#")]
    pub patterns: Vec<String>,

    /// The exchange to watch.
    #[arg(long, default_value = "events")]
    pub exchange: String,

    /// One JSON object per line instead of readable lines.
    #[arg(long)]
    pub json: bool,

    /// Exit after this many events.
    #[arg(long = "count", short = 'n', value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
}

/// A subcommand of `pubsub dlq`.
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Count the dead-lettered messages and list them (without consuming them).
    #[command(after_help = LIST_EXAMPLES)]
    List(ListArgs),
    /// Show one dead-lettered message in full: reason, headers, properties, body.
    #[command(after_help = SHOW_EXAMPLES)]
    Show(ShowArgs),
    /// Republish dead-lettered messages to where they were first published, then remove
    /// them from the dead-letter queue.
    #[command(after_help = REPLAY_EXAMPLES)]
    Replay(ReplayArgs),
    /// Delete every message of a dead-letter queue.
    #[command(after_help = PURGE_EXAMPLES)]
    Purge(PurgeArgs),
}

/// Arguments of `pubsub dlq list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// The service's queue (`orders`) or its dead-letter queue (`orders.dlq`).
    pub queue: String,

    /// Show at most this many rows (0: all); the counts always cover every message.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub limit: usize,

    /// One JSON object per message instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `pubsub dlq show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The service's queue (`orders`) or its dead-letter queue (`orders.dlq`).
    pub queue: String,

    /// The event id (the message id) of the message.
    pub event_id: String,

    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `pubsub dlq replay`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("selection").required(true).args(["id", "all"])))]
pub struct ReplayArgs {
    /// The service's queue (`orders`) or its dead-letter queue (`orders.dlq`).
    pub queue: String,

    /// Replay the message with this event id (repeat for several).
    #[arg(long, value_name = "EVENT_ID")]
    pub id: Vec<String>,

    /// Replay every message.
    #[arg(long)]
    pub all: bool,

    /// Replay at most this many messages.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,

    /// Show what would be replayed, and where to, without changing anything (checks that
    /// each exchange exists, not yet whether a queue is bound for each message).
    #[arg(long)]
    pub dry_run: bool,

    /// Publish to this queue (through the default exchange) instead of the original
    /// exchange, so that no other service receives the event again.
    #[arg(long, value_name = "QUEUE")]
    pub to_queue: Option<String>,
}

/// Arguments of `pubsub dlq purge`.
#[derive(Debug, Args)]
pub struct PurgeArgs {
    /// The service's queue (`orders`) or its dead-letter queue (`orders.dlq`).
    pub queue: String,

    /// Do not ask for confirmation.
    #[arg(long, short)]
    pub yes: bool,
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
        assert_eq!(args.exchange, "events");
    }
}
