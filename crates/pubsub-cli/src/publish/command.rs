//! `pubsub publish`: its arguments, and running it.

use clap::Args;

use crate::connect::connect;
use crate::console::Console;
use crate::error::{Error, Result};
use pubsub_core::envelope::Envelope;

use crate::publish::{build_versioned_event, publish_in, DataSource, PublishRequest, Published};

/// The examples under `pubsub publish --help`.
pub(crate) const EXAMPLES: &str = "\
Examples:
  pubsub publish order.created --data '{\"order_id\":\"ORD-1\",\"total\":42.5}'
  pubsub publish order.created --data @order.json --correlation-id checkout-17
  jq -c '.order' dump.json | pubsub publish order.created
  pubsub publish user.ping                       # data {} when stdin is a terminal
  pubsub publish order.paid --data '{}' --exchange events-staging --no-declare
  pubsub publish order.created.v2 --data '{\"order_id\":\"ORD-1\"}'   # versioned key, version 2.0
  pubsub publish resource.accessed --envelope bare --data '{\"resource_id\":\"r-1\"}'";

/// Arguments of `pubsub publish`.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The event's routing key, `<domain>.<action>` (e.g. `order.created`), or a versioned
    /// one, `<domain>.<action>.v<N>` (e.g. `order.created.v2`).
    #[arg(value_name = "DOMAIN.ACTION[.vN]")]
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
    #[arg(long, env = pubsub_amqp::RABBITMQ_EXCHANGE_ENV, default_value = pubsub_amqp::DEFAULT_EXCHANGE)]
    pub exchange: String,

    /// The publishing application's name (the AMQP `app_id`).
    #[arg(long, default_value = "pubsub-cli", value_name = "NAME")]
    pub app_id: String,

    /// The event's version; `None`: `N.0` for a routing key ending in `.vN`, else `1.0`.
    #[arg(
        long,
        value_name = "VERSION",
        help = "The event's version [default: N.0 for a routing key ending in .vN, else 1.0]"
    )]
    pub event_version: Option<String>,

    /// The envelope to write the event in: `standard` (seed 000's six fields), `bare` (the data
    /// alone, seed 002) or `event-bus` (seed 004).
    #[arg(long, default_value = "standard", value_name = "ENVELOPE")]
    pub envelope: Envelope,

    /// Use the exchange as it is instead of declaring it (a durable topic exchange); fail if
    /// it does not exist.
    #[arg(long)]
    pub no_declare: bool,

    /// Fail (exit 1) when no queue is bound for the routing key, instead of warning.
    #[arg(long)]
    pub mandatory: bool,
}

/// Runs `pubsub publish`: prints the event id; warns about (or with `--mandatory` fails on)
/// an event no queue receives.
pub(crate) fn run(url: Option<&str>, args: PublishArgs, console: &mut Console<'_>) -> Result<()> {
    let data = DataSource::from_arg(args.data.as_deref(), console.stdin_is_terminal)
        .read(console.input)?;
    let event = build_versioned_event(&args.routing_key, data, args.event_version.as_deref())?;
    let request = PublishRequest {
        exchange: args.exchange,
        app_id: args.app_id,
        correlation_id: args.correlation_id,
        declare: !args.no_declare,
    };
    let connection = connect(url, "publish")?;
    let outcome = publish_in(connection, &event, &request, args.envelope).map_err(|e| {
        Error::CannotPublish {
            event: event.to_string(),
            source: Box::new(e),
        }
    })?;
    if outcome == Published::Unroutable {
        let unroutable = Error::Unroutable {
            exchange: request.exchange,
            routing_key: event.routing_key().to_owned(),
        };
        if args.mandatory {
            return Err(unroutable);
        }
        writeln!(console.err, "warning: {unroutable}")?;
    }
    writeln!(console.out, "{}", event.event_id())?;
    Ok(())
}
