//! `pubsub dlq replay`: its arguments, and the summary it prints.

use std::io::Write;

use clap::{ArgGroup, Args};
use crossbeam_channel::Receiver;
use pubsub_core::text::clip;

use crate::connect::connect;
use crate::console::Console;
use crate::dlq::{Dlq, ReplayOptions, ReplayReport, Selection};
use crate::error::{Error, Result};
use crate::format::{plural, table};
use crate::progress::ProgressLine;

/// The examples under `pubsub dlq replay --help`.
pub(crate) const EXAMPLES: &str = "\
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

/// Runs `pubsub dlq replay`: progress on stderr, then what moved and what stayed; fails
/// ([`Error::ReplayIncomplete`]) unless everything selected was moved.
pub(crate) fn run(
    url: Option<&str>,
    args: ReplayArgs,
    console: &mut Console<'_>,
    stop: &Receiver<()>,
) -> Result<()> {
    let options = ReplayOptions {
        selection: if args.all {
            Selection::All
        } else {
            Selection::Ids(args.id.clone())
        },
        limit: args.limit,
        dry_run: args.dry_run,
        to_queue: args.to_queue.clone(),
        ..ReplayOptions::default()
    };
    let mut connection = connect(url, "dlq replay")?;
    let mut dlq = Dlq::open(&mut connection, &args.queue)?;
    let name = dlq.name().to_owned();
    let mut progress = ProgressLine::new(console.stderr_is_terminal);
    let err = &mut *console.err;
    let verb = if args.dry_run {
        "checking"
    } else {
        "replaying"
    };
    let report = dlq.replay(&options, stop, |p| {
        let rate = progress.rate(p.examined as usize);
        progress.update(err, || {
            format!(
                "{verb} `{name}`: {}/{} looked at, {} moved, {} stayed ({rate:.0}/s)",
                p.examined, p.total, p.moved, p.stayed
            )
        });
    })?;
    progress.finish(err);
    print_replay(console.out, &report)?;
    if report.is_complete() {
        return Ok(());
    }
    let mut problems = Vec::new();
    if !report.stayed.is_empty() {
        problems.push(format!(
            "{} stayed in `{}`",
            plural(report.stayed.len() as u64, "message"),
            report.dlq
        ));
    }
    if !report.missing_ids.is_empty() {
        problems.push(format!(
            "{} not found",
            plural(report.missing_ids.len() as u64, "event id")
        ));
    }
    if report.interrupted {
        problems.push("interrupted".to_owned());
    }
    if let Some(reason) = &report.aborted {
        problems.push(format!("stopped early: {reason}"));
    }
    Err(Error::ReplayIncomplete { problems })
}

/// The summary of a replay (in a dry run: what would move, and where).
fn print_replay(out: &mut dyn Write, report: &ReplayReport) -> std::io::Result<()> {
    const SHOWN: usize = 20;
    if report.dry_run && !report.moved.is_empty() {
        let rows: Vec<Vec<String>> = report
            .moved
            .iter()
            .take(100)
            .map(|m| {
                vec![
                    m.event_id.clone().unwrap_or_else(|| "-".to_owned()),
                    m.destination.to_string(),
                ]
            })
            .collect();
        write!(out, "{}", table(&["EVENT ID", "WOULD GO TO"], &rows))?;
        if report.moved.len() > rows.len() {
            writeln!(out, "(and {} more)", report.moved.len() - rows.len())?;
        }
    }
    if !report.stayed.is_empty() {
        let verb = if report.dry_run {
            "would stay"
        } else {
            "stayed"
        };
        writeln!(out, "{verb} in `{}`:", report.dlq)?;
        for s in report.stayed.iter().take(SHOWN) {
            writeln!(
                out,
                "  {} ({}): {}",
                s.event_id.as_deref().unwrap_or("-"),
                s.routing_key,
                s.reason
            )?;
        }
        if report.stayed.len() > SHOWN {
            writeln!(out, "  (and {} more)", report.stayed.len() - SHOWN)?;
        }
    }
    for id in &report.missing_ids {
        writeln!(
            out,
            "no message with event id `{}` in `{}`",
            clip(id, 80),
            report.dlq
        )?;
    }
    let moved = plural(report.moved.len() as u64, "message");
    if report.dry_run {
        writeln!(
            out,
            "dry run: would move {moved} out of `{}` ({} would stay, {} not selected); nothing was changed",
            report.dlq,
            report.stayed.len(),
            report.unselected
        )?;
    } else {
        writeln!(
            out,
            "moved {moved} out of `{}` ({} stayed, {} not selected)",
            report.dlq,
            report.stayed.len(),
            report.unselected
        )?;
    }
    Ok(())
}
