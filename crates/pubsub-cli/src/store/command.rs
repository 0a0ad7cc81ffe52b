//! Running `pubsub store run|query|replay`.

use std::time::Duration;

use crossbeam_channel::Receiver;
use pubsub_recorder::{RecordOptions, ReplayOptions, ReplayTarget};
use pubsub_store::{Database, EventQuery, EventStore, Order};
use pubsub_subscriber::RetryPolicy;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::connect::{amqp_config, connect};
use crate::console::Console;
use crate::error::{Error, Result, UsageError};
use crate::format::{plural, table, time_millis};
use crate::progress::ProgressLine;
use crate::store::{parse_when, QueryArgs, ReplayArgs, RunArgs, SelectArgs, StoreCommand};

/// Carries out a `pubsub store` subcommand.
pub(crate) fn run(
    url: Option<&str>,
    command: StoreCommand,
    console: &mut Console<'_>,
    stop: &Receiver<()>,
) -> Result<()> {
    match command {
        StoreCommand::Run(args) => serve(url, args, console, stop),
        StoreCommand::Query(args) => query(args, console),
        StoreCommand::Replay(args) => replay(url, args, console, stop),
    }
}

fn database(url: &str) -> Result<Database> {
    Database::parse(url)
        .map_err(|e| UsageError::new(format!("--database / DATABASE_URL: {e}")).into())
}

/// The query `select` describes.
fn selection(select: &SelectArgs, now: OffsetDateTime) -> Result<EventQuery, UsageError> {
    let mut query = EventQuery::new();
    if let Some(pattern) = &select.pattern {
        query = query
            .pattern(pattern)
            .map_err(|e| UsageError::new(format!("pattern: {e}")))?;
    }
    if let Some(since) = &select.since {
        query = query
            .since(parse_when(since, now).map_err(|e| UsageError::new(format!("--since: {e}")))?);
    }
    if let Some(until) = &select.until {
        query = query
            .until(parse_when(until, now).map_err(|e| UsageError::new(format!("--until: {e}")))?);
    }
    if let Some(correlation) = &select.correlation_id {
        query = query.correlation_id(correlation);
    }
    if let Some(id) = &select.event_id {
        let id = Uuid::try_parse(id.trim()).map_err(|_| {
            UsageError::new(format!(
                "--id: `{}` is not an event id (a UUID)",
                pubsub_core::text::quote(id)
            ))
        })?;
        query = query.event_id(id);
    }
    Ok(query)
}

fn serve(
    url: Option<&str>,
    args: RunArgs,
    console: &mut Console<'_>,
    stop: &Receiver<()>,
) -> Result<()> {
    let db = database(&args.database.database)?;
    let options = RecordOptions {
        queue: args.queue,
        exchange: args.exchange,
        pattern: args.pattern,
        prefetch: args.prefetch,
        envelope: args.envelope,
    };
    let config = amqp_config(url)?.with_connection_name("pubsub-cli store");
    let running = pubsub_recorder::start(&config, &db, &options, 1)?;
    writeln!(
        console.err,
        "storing every `{}` event of exchange `{}` in {db} (queue `{}`); Ctrl-C to stop",
        options.pattern, options.exchange, options.queue
    )
    .map_err(Error::Io)?;
    loop {
        if stop.recv_timeout(Duration::from_millis(200)).is_ok() || !running.is_running() {
            break;
        }
    }
    let done = running.stop()?;
    let (stored, stats) = (done.stored, done.pool.subscriber);
    writeln!(
        console.err,
        "stored {} ({} received, {} dead-lettered)",
        plural(stored, "new event"),
        stats.received,
        stats.dead_lettered()
    )
    .map_err(Error::Io)?;
    // A store's queue outlives the process on purpose: what is published while it is down
    // waits there. After a try-out, that is a queue that keeps collecting.
    let queues = pubsub_subscriber::queue_names(&options.queue, &RetryPolicy::default());
    writeln!(
        console.err,
        "queue `{}` stays and keeps collecting events until the store runs again (nothing is lost); \
         after a try-out, delete it and its companions: {}",
        options.queue,
        queues
            .iter()
            .map(|q| format!("rabbitmqctl delete_queue {q}"))
            .collect::<Vec<_>>()
            .join("; ")
    )
    .map_err(Error::Io)?;
    Ok(())
}

fn query(args: QueryArgs, console: &mut Console<'_>) -> Result<()> {
    let db = database(&args.database.database)?;
    let query = selection(&args.select, OffsetDateTime::now_utc())?
        .limit(args.limit)
        .order(if args.newest {
            Order::NewestFirst
        } else {
            Order::OldestFirst
        });
    let mut store = EventStore::open_existing(&db)?;
    if args.json {
        let mut failed = None;
        store.for_each(&query, |event| {
            let line = serde_json::to_string(&event).unwrap_or_default();
            match writeln!(console.out, "{line}") {
                Ok(()) => true,
                Err(e) => {
                    failed = Some(e);
                    false
                }
            }
        })?;
        return failed.map_or(Ok(()), |e| Err(Error::Io(e)));
    }
    let rows: Vec<Vec<String>> = store
        .query(&query)?
        .into_iter()
        .map(|s| {
            vec![
                time_millis(s.event.timestamp()),
                s.routing_key,
                s.event.event_id().to_string(),
                s.correlation_id.unwrap_or_else(|| "-".into()),
                s.producer.unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    if rows.is_empty() {
        writeln!(
            console.err,
            "no stored event matches ({})",
            query.describe()
        )
        .map_err(Error::Io)?;
        return Ok(());
    }
    let text = table(
        &["TIME", "ROUTING KEY", "EVENT ID", "CORRELATION", "PRODUCER"],
        &rows,
    );
    console.out.write_all(text.as_bytes()).map_err(Error::Io)?;
    console.out.flush().map_err(Error::Io)?;
    writeln!(console.err, "{}", plural(rows.len() as u64, "event")).map_err(Error::Io)
}

fn replay(
    url: Option<&str>,
    args: ReplayArgs,
    console: &mut Console<'_>,
    stop: &Receiver<()>,
) -> Result<()> {
    let db = database(&args.database.database)?;
    let mut query = selection(&args.select, OffsetDateTime::now_utc())?;
    query.limit = args.limit;
    let target = match (args.to_exchange, args.to_queue) {
        (Some(exchange), _) => ReplayTarget::Exchange(exchange),
        (None, Some(queue)) => ReplayTarget::Queue(queue),
        (None, None) => {
            return Err(UsageError::new("--to-exchange or --to-queue is required").into())
        }
    };
    if let Some(rate) = args.rate {
        if !(rate.is_finite() && rate > 0.0) {
            return Err(UsageError::new(format!("--rate: {rate} is not a positive number")).into());
        }
    }
    let mut store = EventStore::open_existing(&db)?;
    let options = ReplayOptions {
        target: target.clone(),
        rate: args.rate,
        batch: 100,
    };
    let mut line = ProgressLine::new(console.stderr_is_terminal);
    let err = &mut *console.err;
    let done = pubsub_recorder::replay(
        &mut store,
        &query,
        connect(url, "store replay")?,
        &options,
        |p| {
            line.update(err, || {
                format!("replayed {} ({:.0}/s)", p.published, line_rate(p))
            })
        },
        || stop.try_recv().is_ok(),
    )?;
    line.finish(console.err);
    let to = match &target {
        ReplayTarget::Exchange(x) => format!("exchange `{x}`"),
        ReplayTarget::Queue(q) => format!("queue `{q}`"),
    };
    writeln!(
        console.err,
        "replayed {} to {to} in {:.1}s ({})",
        plural(done.published, "event"),
        done.elapsed.as_secs_f64(),
        query.describe()
    )
    .map_err(Error::Io)?;
    if done.failed > 0 {
        return Err(Error::ReplayIncomplete {
            problems: vec![format!(
                "{} refused or unroutable (does the target exist?)",
                plural(done.failed, "event")
            )],
        });
    }
    Ok(())
}

fn line_rate(p: &pubsub_recorder::ReplayProgress) -> f64 {
    let secs = p.elapsed.as_secs_f64();
    if secs > 0.0 {
        p.published as f64 / secs
    } else {
        0.0
    }
}
