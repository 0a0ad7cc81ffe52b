//! `pubsub dlq show`: its arguments, and one dead-lettered message printed in full.

use std::io::Write;

use clap::Args;
use pubsub_core::text::clip;

use crate::connect::connect;
use crate::console::Console;
use crate::dlq::{DeadLetter, Dlq};
use crate::error::{Error, Result};
use crate::format::{epoch_rfc3339, header_text, plural};
use crate::progress::ProgressLine;

/// The examples under `pubsub dlq show --help`.
pub(crate) const EXAMPLES: &str = "\
Examples:
  pubsub dlq show orders 7c9e6679-7425-40de-944b-e07fc1f90ae7
  pubsub dlq show orders 7c9e6679-7425-40de-944b-e07fc1f90ae7 --json | jq .body";

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

/// Runs `pubsub dlq show`: every message with the event id, in full (text or JSON).
pub(crate) fn run(url: Option<&str>, args: ShowArgs, console: &mut Console<'_>) -> Result<()> {
    let mut connection = connect(url, "dlq show")?;
    let mut dlq = Dlq::open(&mut connection, &args.queue)?;
    let name = dlq.name().to_owned();
    let mut found = Vec::new();
    let mut progress = ProgressLine::new(console.stderr_is_terminal);
    let err = &mut *console.err;
    let seen = dlq.peek(|letter, p| {
        if letter.event_id().as_deref() == Some(args.event_id.as_str()) {
            found.push(letter);
        }
        progress.update(err, || {
            format!("reading `{name}`: {}/{}", p.examined, p.total)
        });
    })?;
    progress.finish(err);
    if found.is_empty() {
        return Err(Error::NoSuchMessage {
            event_id: args.event_id,
            dlq: name,
            looked_at: seen,
        });
    }
    let out = &mut *console.out;
    for (i, letter) in found.iter().enumerate() {
        if args.json {
            // `{:#}` pretty-prints, as `serde_json::to_string_pretty`.
            writeln!(out, "{:#}", letter.to_json(&name, true))?;
            continue;
        }
        if i > 0 {
            writeln!(out)?;
        }
        show_text(out, letter, &name)?;
    }
    Ok(())
}

fn show_text(out: &mut dyn Write, letter: &DeadLetter, dlq: &str) -> std::io::Result<()> {
    let none = || "-".to_owned();
    let p = &letter.properties;
    let field = |out: &mut dyn Write, name: &str, value: String| writeln!(out, "{name:<17}{value}");
    field(out, "event id:", letter.event_id().unwrap_or_else(none))?;
    field(out, "routing key:", letter.original_routing_key(dlq))?;
    field(out, "kind:", letter.cause().to_string())?;
    field(out, "reason:", letter.reason().unwrap_or_else(none))?;
    field(out, "last error:", letter.last_error().unwrap_or_else(none))?;
    let handlers = letter.failed_handlers();
    field(
        out,
        "failed handlers:",
        if handlers.is_empty() {
            none()
        } else {
            handlers.join(", ")
        },
    )?;
    field(
        out,
        "attempts:",
        letter.attempts().map_or_else(none, |a| a.to_string()),
    )?;
    field(
        out,
        "first failure:",
        letter.first_failure().unwrap_or_else(none),
    )?;
    field(
        out,
        "dead-lettered:",
        letter.dead_lettered_at().unwrap_or_else(none),
    )?;
    field(
        out,
        "source queue:",
        letter.source_queue().unwrap_or_else(none),
    )?;
    field(
        out,
        "replays to:",
        match letter.destination(dlq) {
            Ok(d) => d.to_string(),
            Err(reason) => format!("unknown: {reason}"),
        },
    )?;
    let props = [
        ("message_id", p.message_id.clone()),
        ("correlation_id", p.correlation_id.clone()),
        ("app_id", p.app_id.clone()),
        ("type", p.kind.clone()),
        ("content_type", p.content_type.clone()),
        ("timestamp", p.timestamp.and_then(epoch_rfc3339)),
    ];
    writeln!(out, "properties:")?;
    for (name, value) in props {
        if let Some(value) = value {
            writeln!(out, "  {name}: {value}")?;
        }
    }
    writeln!(out, "  persistent: {}", p.persistent)?;
    writeln!(out, "headers:")?;
    for (name, value) in &p.headers {
        writeln!(out, "  {name}: {}", clip(&header_text(value), 400))?;
    }
    writeln!(out, "body ({}):", plural(letter.body.len() as u64, "byte"))?;
    // As it is on the wire, and as a replay publishes it.
    writeln!(out, "  {}", String::from_utf8_lossy(&letter.body))?;
    Ok(())
}
