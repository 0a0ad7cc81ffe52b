//! [`run`]: carries out a parsed command line and writes its output.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{BufRead, Write};
use std::ops::ControlFlow;

use anyhow::{bail, Context as _};
use crossbeam_channel::Receiver;
use pubsub_amqp::{AmqpConfig, Connection};
use pubsub_registry::Pattern;

use crate::cli::{
    Cli, Command, DlqCommand, ListArgs, PublishArgs, PurgeArgs, ReplayArgs, ShowArgs, TailArgs,
};
use crate::dlq::{DeadLetter, Dlq, ReplayOptions, ReplayReport, Selection};
use crate::format::{clip, header_text, plural, short_time, table};
use crate::progress::ProgressLine;
use crate::publish::{build_event, publish, DataSource, PublishRequest, Published};
use crate::tail::{Tail, TailOptions};

/// The command line is wrong: exit code 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(String);

impl UsageError {
    /// A usage error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        UsageError(message.into())
    }
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Where a command reads and writes: results on `out`, progress, warnings and prompts on
/// `err`, data and answers from `input`.
pub struct Console<'a> {
    /// Standard output.
    pub out: &'a mut dyn Write,
    /// Standard error.
    pub err: &'a mut dyn Write,
    /// Standard input.
    pub input: &'a mut dyn BufRead,
    /// Whether standard input is a terminal (then `publish` does not read data from it).
    pub stdin_is_terminal: bool,
    /// Whether standard error is a terminal (then progress is redrawn in place).
    pub stderr_is_terminal: bool,
}

impl fmt::Debug for Console<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Console")
            .field("stdin_is_terminal", &self.stdin_is_terminal)
            .field("stderr_is_terminal", &self.stderr_is_terminal)
            .finish_non_exhaustive()
    }
}

/// The exit code for an error: 2 for a [`UsageError`], 1 for anything else.
pub fn exit_code(error: &anyhow::Error) -> u8 {
    if error.downcast_ref::<UsageError>().is_some() {
        2
    } else {
        1
    }
}

/// Whether the error is a closed standard output (`pubsub tail | head -1`): not a failure.
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The broker configuration: `url` (from `--url` or `AMQP_URL`), else a broker on
/// localhost. One connection attempt, unless the URL asks for more
/// (`?connection_attempts=5`): a command-line tool should fail fast.
///
/// # Errors
///
/// A [`UsageError`] for an invalid URL (its text never includes the password).
pub fn amqp_config(url: Option<&str>) -> Result<AmqpConfig, UsageError> {
    let url = url.map(str::trim).filter(|u| !u.is_empty());
    let config = match url {
        Some(url) => AmqpConfig::from_url(url)
            .map_err(|e| UsageError::new(format!("--url / AMQP_URL: {e}")))?,
        None => AmqpConfig::default(),
    };
    if url.is_some_and(|u| u.contains("connection_attempts=")) {
        Ok(config)
    } else {
        Ok(config.with_connection_attempts(1))
    }
}

/// Opens a connection named `pubsub-cli <what>` (the name shows in the broker's connection
/// list).
///
/// # Errors
///
/// A [`UsageError`] for an invalid URL; the broker is unreachable or refuses the
/// credentials.
pub fn connect(url: Option<&str>, what: &str) -> anyhow::Result<Connection> {
    let config = amqp_config(url)?.with_connection_name(&format!("pubsub-cli {what}"));
    Ok(Connection::open(&config)?)
}

/// Carries out the command line. `stop` ends `tail` and `replay` early (Ctrl-C).
///
/// # Errors
///
/// What went wrong, worded for the operator; [`exit_code`] tells the exit code.
pub fn run(cli: Cli, console: &mut Console<'_>, stop: &Receiver<()>) -> anyhow::Result<()> {
    let url = cli.url.as_deref();
    match cli.command {
        Command::Publish(args) => run_publish(url, args, console),
        Command::Tail(args) => run_tail(url, args, console, stop),
        Command::Dlq(DlqCommand::List(args)) => run_list(url, args, console),
        Command::Dlq(DlqCommand::Show(args)) => run_show(url, args, console),
        Command::Dlq(DlqCommand::Replay(args)) => run_replay(url, args, console, stop),
        Command::Dlq(DlqCommand::Purge(args)) => run_purge(url, args, console),
    }
}

fn run_publish(
    url: Option<&str>,
    args: PublishArgs,
    console: &mut Console<'_>,
) -> anyhow::Result<()> {
    let data = DataSource::from_arg(args.data.as_deref(), console.stdin_is_terminal)
        .read(console.input)?;
    let event = build_event(&args.routing_key, data, &args.event_version)?;
    let request = PublishRequest {
        exchange: args.exchange,
        app_id: args.app_id,
        correlation_id: args.correlation_id,
        declare: !args.no_declare,
    };
    let connection = connect(url, "publish")?;
    let outcome =
        publish(connection, &event, &request).with_context(|| format!("cannot publish {event}"))?;
    if outcome == Published::Unroutable {
        let what = format!(
            "no queue is bound to exchange `{}` for routing key `{}`: the broker dropped the event",
            request.exchange,
            event.routing_key()
        );
        if args.mandatory {
            bail!(what);
        }
        writeln!(console.err, "warning: {what}")?;
    }
    writeln!(console.out, "{}", event.event_id())?;
    Ok(())
}

fn run_tail(
    url: Option<&str>,
    args: TailArgs,
    console: &mut Console<'_>,
    stop: &Receiver<()>,
) -> anyhow::Result<()> {
    let patterns = args
        .patterns
        .iter()
        .map(|p| Pattern::parse(p).map_err(|e| UsageError::new(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let connection = connect(url, "tail")?;
    let options = TailOptions {
        exchange: args.exchange.clone(),
        patterns: patterns.clone(),
    };
    let mut tail = Tail::start(connection, &options)?;
    let shown: Vec<&str> = patterns.iter().map(Pattern::as_str).collect();
    writeln!(
        console.err,
        "tailing exchange `{}` for {} (queue `{}`); Ctrl-C to stop",
        args.exchange,
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

fn run_list(url: Option<&str>, args: ListArgs, console: &mut Console<'_>) -> anyhow::Result<()> {
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
        *by_kind.entry(letter.kind()).or_default() += 1;
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
        letter.kind(),
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

fn run_show(url: Option<&str>, args: ShowArgs, console: &mut Console<'_>) -> anyhow::Result<()> {
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
        bail!(
            "no message with event id `{}` in `{name}` ({} looked at)",
            clip(&args.event_id, 80),
            plural(seen, "message")
        );
    }
    let out = &mut *console.out;
    for (i, letter) in found.iter().enumerate() {
        if args.json {
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&letter.to_json(&name, true))?
            )?;
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
    field(out, "kind:", letter.kind())?;
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
        (
            "timestamp",
            p.timestamp.and_then(crate::format::epoch_rfc3339),
        ),
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

fn run_replay(
    url: Option<&str>,
    args: ReplayArgs,
    console: &mut Console<'_>,
    stop: &Receiver<()>,
) -> anyhow::Result<()> {
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
    bail!("replay incomplete: {}", problems.join("; "))
}

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

fn run_purge(url: Option<&str>, args: PurgeArgs, console: &mut Console<'_>) -> anyhow::Result<()> {
    let mut connection = connect(url, "dlq purge")?;
    let mut dlq = Dlq::open(&mut connection, &args.queue)?;
    let name = dlq.name().to_owned();
    if !args.yes {
        let count = dlq.message_count();
        if count == 0 {
            writeln!(console.out, "`{name}` is already empty")?;
            return Ok(());
        }
        write!(
            console.err,
            "Delete {} from `{name}`? This cannot be undone. [y/N] ",
            plural(count, "message")
        )?;
        console.err.flush()?;
        let mut answer = String::new();
        console
            .input
            .read_line(&mut answer)
            .context("cannot read the answer")?;
        if !console.stdin_is_terminal {
            // The answer was not typed, so no newline was echoed after the prompt.
            writeln!(console.err)?;
        }
        if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
            if !console.stdin_is_terminal && answer.is_empty() {
                bail!("purge cancelled: no answer on stdin (pass --yes to purge without asking)");
            }
            bail!("purge cancelled: nothing was deleted");
        }
    }
    let purged = dlq.purge()?;
    writeln!(
        console.out,
        "purged {} from `{name}`",
        plural(purged, "message")
    )?;
    Ok(())
}
