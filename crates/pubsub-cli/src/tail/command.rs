//! `pubsub tail`: its arguments, and running it.

use std::ops::ControlFlow;

use clap::Args;
use crossbeam_channel::Receiver;
use pubsub_core::envelope::Envelope;
use pubsub_registry::Pattern;

use crate::connect::connect;
use crate::console::Console;
use crate::error::{Result, UsageError};
use crate::tail::{Tail, TailOptions};

/// The examples under `pubsub tail --help`.
pub(crate) const EXAMPLES: &str = "\
Examples:
  pubsub tail                         # everything on the `events` exchange
  pubsub tail 'order.*' 'user.registered'
  pubsub tail 'pay*.#'                # glob words, as in handler patterns
  pubsub tail --json 'order.#' | jq .event.data
  pubsub tail -n 1 order.created      # wait for one event, then exit
  pubsub tail --envelope event-bus 'user.#'   # seed 004's envelope: source, event_type too
  RABBITMQ_EXCHANGE=events-staging pubsub tail";

/// Arguments of `pubsub tail`.
#[derive(Debug, Args)]
pub struct TailArgs {
    /// Routing-key patterns, as in handler subscriptions: `*` one word, `#` zero or more
    /// words, glob words like `pay*`.
    #[arg(value_name = "PATTERN", default_value = "#")]
    pub patterns: Vec<String>,

    /// The exchange to watch; `None`: `RABBITMQ_EXCHANGE`, else `events`.
    #[arg(
        long,
        value_name = "NAME",
        help = "The exchange to watch [default: RABBITMQ_EXCHANGE, else events]"
    )]
    pub exchange: Option<String>,

    /// The envelope bodies are decoded in: `standard` (seed 000's six fields), `bare`
    /// (seed 002), `event-bus` (seed 004: its source, event type and other fields show in
    /// `--json`) or `task` (seed 003).
    #[arg(long, default_value = "standard", value_name = "ENVELOPE")]
    pub envelope: Envelope,

    /// One JSON object per line instead of readable lines.
    #[arg(long)]
    pub json: bool,

    /// Exit after this many events.
    #[arg(long = "count", short = 'n', value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
}

/// Runs `pubsub tail`: one line (or JSON object) per matching event, until Ctrl-C or
/// `--count` events.
pub(crate) fn run(
    url: Option<&str>,
    args: TailArgs,
    console: &mut Console<'_>,
    stop: &Receiver<()>,
) -> Result<()> {
    let patterns = args
        .patterns
        .iter()
        .map(|p| Pattern::parse(p).map_err(|e| UsageError::new(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let exchange = crate::connect::exchange(args.exchange.as_deref())?;
    let connection = connect(url, "tail")?;
    let options = TailOptions {
        exchange: exchange.clone(),
        patterns: patterns.clone(),
        envelope: args.envelope,
    };
    let mut tail = Tail::start(connection, &options)?;
    let shown: Vec<&str> = patterns.iter().map(Pattern::as_str).collect();
    writeln!(
        console.err,
        "tailing exchange `{}` for {} (queue `{}`); Ctrl-C to stop",
        exchange,
        shown.join(" "),
        tail.queue()
    )?;
    console.err.flush()?;
    let mut seen = 0u64;
    let out = &mut *console.out;
    let result = tail.run(stop, |message| {
        if args.json {
            writeln!(out, "{}", message.to_json())?;
        } else {
            writeln!(out, "{}", message.line())?;
        }
        out.flush()?;
        seen += 1;
        Ok(if args.count.is_some_and(|n| seen >= n) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        })
    });
    let closed = tail.close();
    result?;
    closed
}
