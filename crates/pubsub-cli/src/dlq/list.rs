//! `pubsub dlq list`: its arguments, and the counts and table it prints.

use std::collections::BTreeMap;

use clap::Args;
use pubsub_core::text::clip;

use crate::connect::connect;
use crate::console::Console;
use crate::dlq::{DeadLetter, Dlq};
use crate::error::Result;
use crate::format::{plural, short_time, table};
use crate::progress::ProgressLine;

/// The examples under `pubsub dlq list --help`.
pub(crate) const EXAMPLES: &str = "\
Examples:
  pubsub dlq list orders
  pubsub dlq list orders.dlq --limit 0         # every row
  pubsub dlq list orders --json | jq -r .event_id

AMQP has no way to browse a queue: `list` and `show` take every message with basic.get
without acknowledging it, then close their channel, which puts them all back. Nothing is
consumed, but the messages come back marked redelivered; on a quorum queue their order may
change and each look counts as a delivery toward its x-delivery-limit, if it has one.";

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

/// Runs `pubsub dlq list`: counts by kind and routing key, and a table (or JSON lines).
pub(crate) fn run(url: Option<&str>, args: ListArgs, console: &mut Console<'_>) -> Result<()> {
    let mut connection = connect(url, "dlq list")?;
    let mut dlq = Dlq::open(&mut connection, &args.queue)?;
    let name = dlq.name().to_owned();
    let mut by_kind: BTreeMap<String, u32> = BTreeMap::new();
    let mut by_key: BTreeMap<String, u32> = BTreeMap::new();
    let mut rows = Vec::new();
    let mut progress = ProgressLine::new(console.stderr_is_terminal);
    let (out, err) = (&mut *console.out, &mut *console.err);
    let mut write_error = None;
    let seen = dlq.peek(|letter, p| {
        *by_kind.entry(letter.cause().to_string()).or_default() += 1;
        *by_key
            .entry(letter.original_routing_key(&name))
            .or_default() += 1;
        if args.json {
            if let Err(e) = writeln!(out, "{}", letter.to_json(&name, false)) {
                write_error.get_or_insert(e);
            }
        } else if args.limit == 0 || rows.len() < args.limit {
            rows.push(list_row(&letter, &name));
        }
        progress.update(err, || {
            format!("reading `{name}`: {}/{}", p.examined, p.total)
        });
    })?;
    progress.finish(err);
    if let Some(e) = write_error {
        return Err(e.into());
    }
    if args.json {
        return Ok(());
    }
    if seen == 0 {
        writeln!(out, "`{name}` is empty")?;
        return Ok(());
    }
    writeln!(out, "`{name}`: {}", plural(seen, "message"))?;
    writeln!(out, "  by kind:        {}", counts(&by_kind))?;
    writeln!(out, "  by routing key: {}", counts(&by_key))?;
    writeln!(out)?;
    let header = [
        "ROUTING KEY",
        "EVENT ID",
        "KIND",
        "ATTEMPTS",
        "FIRST FAILURE",
        "FAILED HANDLERS",
        "REASON",
    ];
    write!(out, "{}", table(&header, &rows))?;
    if rows.len() < usize::try_from(seen).unwrap_or(usize::MAX) {
        writeln!(
            out,
            "(showing {} of {seen}; --limit 0 shows every row)",
            rows.len()
        )?;
    }
    Ok(())
}

fn list_row(letter: &DeadLetter, dlq: &str) -> Vec<String> {
    let handlers = letter.failed_handlers();
    vec![
        letter.original_routing_key(dlq),
        letter.event_id().unwrap_or_else(|| "-".to_owned()),
        letter.cause().to_string(),
        letter
            .attempts()
            .map_or_else(|| "-".to_owned(), |a| a.to_string()),
        letter
            .first_failure()
            .map_or_else(|| "-".to_owned(), |t| short_time(&t)),
        if handlers.is_empty() {
            "-".to_owned()
        } else {
            clip(&handlers.join(","), 40)
        },
        // The last handler error says the most in little room (kind and attempts have
        // columns of their own); a poison message has none, only its reason.
        letter
            .last_error()
            .or_else(|| letter.reason())
            .map_or_else(|| "-".to_owned(), |r| clip(&r, 80)),
    ]
}

/// `exhausted 2, poison 1`: most frequent first.
fn counts(map: &BTreeMap<String, u32>) -> String {
    let mut items: Vec<(&String, &u32)> = map.iter().collect();
    items.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let shown: Vec<String> = items
        .iter()
        .take(10)
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    let mut text = shown.join(", ");
    if items.len() > 10 {
        text.push_str(&format!(", and {} more", items.len() - 10));
    }
    text
}
