//! `pubsub publish`: its arguments, and running it.

use std::collections::BTreeMap;

use clap::Args;
use pubsub_core::envelope::Envelope;
use pubsub_core::EventType;

use crate::connect::connect;
use crate::console::Console;
use crate::error::{Error, Result, UsageError};

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
  pubsub publish resource.accessed --envelope bare --data '{\"resource_id\":\"r-1\"}'
  pubsub publish user.registered --envelope event-bus --event-type integration --app-id accounts
  pubsub publish order.shipped --causation-id 7c9e6679-7425-40de-944b-e07fc1f90ae7 --header tenant=acme
  RABBITMQ_EXCHANGE=events-staging pubsub publish order.paid --data '{}'";

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

    /// The id of the event whose handling caused this one (the `x-causation-id` header).
    #[arg(long, value_name = "ID")]
    pub causation_id: Option<String>,

    /// The event's type, seed 004's: `domain`, `integration`, `system`, `user` or
    /// `notification` (the `x-event-type` header, and the `event_type` field of the
    /// `event-bus` envelope, `domain` when not given).
    #[arg(long, value_name = "TYPE", value_parser = parse_event_type)]
    pub event_type: Option<EventType>,

    /// A header to send, `NAME=VALUE` (a string); repeat for more. It cannot replace the
    /// headers the publisher writes itself (`x-causation-id`, `x-event-type`).
    #[arg(long = "header", short = 'H', value_name = "NAME=VALUE", value_parser = parse_header)]
    pub headers: Vec<(String, String)>,

    /// The exchange to publish to; `None`: `RABBITMQ_EXCHANGE`, else `events`.
    #[arg(
        long,
        value_name = "NAME",
        help = "The exchange to publish to [default: RABBITMQ_EXCHANGE, else events]"
    )]
    pub exchange: Option<String>,

    /// The publishing application's name (the AMQP `app_id`, and the `source` of the
    /// `event-bus` envelope).
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
    /// alone, seed 002), `event-bus` (seed 004: `--app-id` is its `source`, `--event-type` its
    /// `event_type`) or `task` (seed 003).
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
        exchange: crate::connect::exchange(args.exchange.as_deref())?,
        app_id: args.app_id,
        correlation_id: args.correlation_id,
        causation_id: args.causation_id,
        event_type: args.event_type,
        headers: args.headers.into_iter().collect::<BTreeMap<_, _>>(),
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

/// Reads `--event-type`: one of seed 004's event types, ASCII case ignored.
fn parse_event_type(text: &str) -> Result<EventType, UsageError> {
    EventType::parse(text.trim()).ok_or_else(|| {
        let known: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
        UsageError::new(format!(
            "unknown event type `{}` (known: {})",
            pubsub_core::text::clip(text, 40),
            known.join(", ")
        ))
    })
}

/// Reads `--header NAME=VALUE`: a non-empty name, at most 255 bytes (an AMQP short string),
/// and any value.
fn parse_header(text: &str) -> Result<(String, String), UsageError> {
    let (name, value) = text.split_once('=').ok_or_else(|| {
        UsageError::new(format!(
            "header `{}` must be NAME=VALUE",
            pubsub_core::text::clip(text, 40)
        ))
    })?;
    let name = name.trim();
    if name.is_empty() || name.len() > 255 {
        return Err(UsageError::new(format!(
            "header name `{}` must be 1 to 255 bytes",
            pubsub_core::text::clip(name, 40)
        )));
    }
    Ok((name.to_owned(), value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_and_headers_parse() {
        assert_eq!(parse_event_type("integration"), Ok(EventType::Integration));
        assert_eq!(parse_event_type("USER"), Ok(EventType::User));
        let err = parse_event_type("audit").unwrap_err().to_string();
        assert!(err.contains("unknown event type `audit`"), "{err}");
        assert!(err.contains("domain, integration"), "{err}");

        let check = |text: &str, expected: Result<(&str, &str), &str>| {
            let got = parse_header(text).map_err(|e| e.to_string());
            match (got, expected) {
                (Ok((n, v)), Ok((en, ev))) => assert_eq!((n.as_str(), v.as_str()), (en, ev)),
                (Err(e), Err(part)) => assert!(e.contains(part), "{e}"),
                (got, want) => panic!("{text}: {got:?}, wanted {want:?}"),
            }
        };
        check("tenant=acme", Ok(("tenant", "acme")));
        check("a=b=c", Ok(("a", "b=c")));
        check("empty=", Ok(("empty", "")));
        check("noequals", Err("NAME=VALUE"));
        check("=v", Err("1 to 255"));
    }
}
