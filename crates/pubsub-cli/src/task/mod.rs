//! `pubsub task`: submit a task to the task queue (`pubsub-tasks`), and read tasks from the
//! task store (`pubsub-store`): one task's status, or a list filtered by status and name.
//!
//! Each subcommand's arguments and running are here; the printing, pure, is in `show`.

use clap::{Args, Subcommand};
use pubsub_store::{Database, TaskFilter, TaskStatus, TaskStore};
use pubsub_tasks::{SubmitOptions, TaskOutcome, TaskQueue};
use serde_json::Value;
use uuid::Uuid;

use crate::connect::connect;
use crate::console::Console;
use crate::error::{Error, Result, UsageError};
use crate::publish::DataSource;

mod show;

/// The long help of `pubsub task`.
pub(crate) const ABOUT: &str = "\
Submit tasks to the task queue and read their status from the task store.

Tasks travel in seed 003's format: the body {\"task_name\": ..., \"payload\": {...}} on the direct
exchange `task.exchange`, routing key routing.task.<action>.<entity> (send-report:
routing.task.send.report). Workers (pubsub_tasks::TaskWorker) record each task in the task
store: PENDING, RUNNING, COMPLETED with its result or FAILED with its error, or CANCELLED
before it started.";

/// The examples under `pubsub task --help`.
pub(crate) const EXAMPLES: &str = "\
Examples:
  pubsub task submit send-report --payload '{\"to\":\"ops\"}'
  pubsub task submit send-report --after 30m --priority 5
  pubsub task status 7c9e6679-7425-40de-944b-e07fc1f90ae7
  pubsub task list --status failed
  pubsub task list --stuck --stuck-after 30m
  pubsub task cancel 7c9e6679-7425-40de-944b-e07fc1f90ae7
  pubsub task wait 7c9e6679-7425-40de-944b-e07fc1f90ae7 --timeout 5m
  DATABASE_URL=postgres://app@db/app pubsub task list --name send-report --limit 5";

/// A subcommand of `pubsub task`.
#[derive(Debug, Subcommand)]
pub enum TaskCommand {
    /// Submit a task (with publisher confirms) and print its task id.
    Submit(SubmitArgs),
    /// Show one task from the task store: status, attempts, result or error.
    Status(StatusArgs),
    /// List tasks from the task store, newest first.
    List(ListArgs),
    /// Cancel a task that has not started (PENDING, or not yet received by a worker): a
    /// worker that receives it skips it, and it stays CANCELLED.
    Cancel(CancelArgs),
    /// Wait for a task to be done for good, and print its result (exit 1 when it FAILED, was
    /// CANCELLED, or did not finish in time).
    Wait(WaitArgs),
}

/// The task store's URL argument, shared by `status` and `list`.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// The task store: `sqlite:PATH` or `postgres://user:password@host/db`.
    #[arg(
        long,
        env = "DATABASE_URL",
        hide_env_values = true,
        default_value = "sqlite:pubsub.db",
        value_name = "URL"
    )]
    pub database: String,
}

/// Arguments of `pubsub task submit`.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// The task's name (letters, digits, `_`, `-`), e.g. `send-report`.
    #[arg(value_name = "NAME")]
    pub name: String,

    /// The task's payload, a JSON object: inline, `@path` to read a file, or `-` for stdin;
    /// `None`: stdin when it is not a terminal, else `{}`.
    #[arg(
        long,
        short,
        value_name = "JSON|@FILE|-",
        help = "The task's payload, a JSON object: inline, @path to read a file, or - for stdin [default: stdin when it is not a terminal, else {}]"
    )]
    pub payload: Option<String>,

    /// The correlation id that ties this task to a flow (the task id when unset).
    #[arg(long, value_name = "ID")]
    pub correlation_id: Option<String>,

    /// The routing key instead of `routing.task.<action>.<entity>`.
    #[arg(long, value_name = "KEY")]
    pub routing_key: Option<String>,

    /// The task exchange.
    #[arg(long, default_value = pubsub_tasks::DEFAULT_EXCHANGE)]
    pub exchange: String,

    /// The submitting application's name (the `producer_app` header and `app_id`).
    #[arg(long, default_value = "pubsub-cli", value_name = "NAME")]
    pub producer: String,

    /// Use the exchange as it is instead of declaring it (a durable direct exchange).
    #[arg(long)]
    pub no_declare: bool,

    /// Run it no earlier than this from now (`90s`, `30m`, `2h`, `1d`): it waits in a delay
    /// queue of the broker, then goes to the workers' queue (`--queue`).
    #[arg(long, value_name = "AGE", value_parser = parse_age, conflicts_with = "at")]
    pub after: Option<std::time::Duration>,

    /// Run it no earlier than this time (RFC 3339, `2026-12-24T18:00:00Z`).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub at: Option<time::OffsetDateTime>,

    /// Its priority, 0 to 255: in a queue with priorities (a worker's `max_priority`), higher
    /// ones run first; other queues ignore it.
    #[arg(long, value_name = "N")]
    pub priority: Option<u8>,

    /// The workers' queue, where a scheduled task goes once its delay has passed.
    #[arg(long, default_value = pubsub_tasks::DEFAULT_QUEUE, value_name = "QUEUE")]
    pub queue: String,
}

/// Arguments of `pubsub task status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The task id `submit` printed.
    #[arg(value_name = "ID")]
    pub id: String,

    /// Print the task as one JSON object.
    #[arg(long)]
    pub json: bool,

    /// The task store.
    #[command(flatten)]
    pub store: StoreArgs,
}

/// Arguments of `pubsub task list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only tasks with this status: pending, running, completed or failed.
    #[arg(long, value_name = "STATUS", value_parser = parse_status)]
    pub status: Option<TaskStatus>,

    /// Only tasks of this name.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// At most this many tasks.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,

    /// Only stuck tasks: RUNNING longer than their time limit, or than `--stuck-after` when
    /// they have none (their worker died, or they never end).
    #[arg(long)]
    pub stuck: bool,

    /// How long a task without a time limit may be RUNNING before `--stuck` shows it
    /// (`90s`, `30m`, `2h`, `1d`).
    #[arg(long, value_name = "AGE", default_value = "1h", value_parser = parse_age)]
    pub stuck_after: std::time::Duration,

    /// The task store.
    #[command(flatten)]
    pub store: StoreArgs,
}

/// Arguments of `pubsub task wait`.
#[derive(Debug, Args)]
pub struct WaitArgs {
    /// The task id `submit` printed.
    #[arg(value_name = "ID")]
    pub id: String,

    /// How long to wait (`90s`, `30m`, `2h`).
    #[arg(long, value_name = "AGE", default_value = "1m", value_parser = parse_age)]
    pub timeout: std::time::Duration,

    /// The task store.
    #[command(flatten)]
    pub store: StoreArgs,
}

/// Arguments of `pubsub task cancel`.
#[derive(Debug, Args)]
pub struct CancelArgs {
    /// The task id `submit` printed.
    #[arg(value_name = "ID")]
    pub id: String,

    /// The task store.
    #[command(flatten)]
    pub store: StoreArgs,
}

fn parse_status(text: &str) -> Result<TaskStatus, String> {
    text.parse()
        .map_err(|_| "expected pending, running, completed, failed or cancelled".to_owned())
}

/// A time in RFC 3339.
fn parse_time(text: &str) -> Result<time::OffsetDateTime, String> {
    time::OffsetDateTime::parse(text.trim(), &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("`{text}` is not an RFC 3339 time (2026-12-24T18:00:00Z): {e}"))
}

/// An age: a number and a unit, `ms`, `s`, `m`, `h` or `d` (pure).
fn parse_age(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{text}`: expected a number and a unit, like 90s, 30m, 2h or 1d"))?;
    let seconds = |s: u64| std::time::Duration::from_secs(n.saturating_mul(s));
    match unit {
        "ms" => Ok(std::time::Duration::from_millis(n)),
        "s" => Ok(seconds(1)),
        "m" => Ok(seconds(60)),
        "h" => Ok(seconds(3_600)),
        "d" => Ok(seconds(86_400)),
        _ => Err(format!("`{text}`: the unit is ms, s, m, h or d")),
    }
}

/// Runs a `pubsub task` subcommand.
pub(crate) fn run(
    url: Option<&str>,
    command: TaskCommand,
    console: &mut Console<'_>,
) -> Result<()> {
    match command {
        TaskCommand::Submit(args) => submit(url, args, console),
        TaskCommand::Status(args) => status(args, console),
        TaskCommand::List(args) => list(args, console),
        TaskCommand::Cancel(args) => cancel(args, console),
        TaskCommand::Wait(args) => wait(args, console),
    }
}

fn submit(url: Option<&str>, args: SubmitArgs, console: &mut Console<'_>) -> Result<()> {
    let payload = DataSource::from_arg(args.payload.as_deref(), console.stdin_is_terminal)
        .read_named(console.input, "payload", "--payload")?;
    let connection = connect(url, "task submit")?;
    let queue = TaskQueue::builder(connection)
        .exchange(&args.exchange)
        .producer(&args.producer)
        .declare_exchange(!args.no_declare)
        .queue(&args.queue)
        .build()
        .map_err(Error::Tasks)?;
    let delay = match (args.after, args.at) {
        (Some(after), _) => Some(after),
        (None, Some(at)) => {
            let left = at - time::OffsetDateTime::now_utc();
            Some(std::time::Duration::try_from(left).unwrap_or_default())
        }
        (None, None) => None,
    };
    let options = SubmitOptions {
        correlation_id: args.correlation_id,
        routing_key: args.routing_key,
        delay,
        priority: args.priority,
    };
    let submitted = queue.submit_with(&args.name, Value::Object(payload), &options);
    if let Err(e) = queue.close() {
        log::debug!("closing the connection: {e}");
    }
    let id = submitted.map_err(|e| match e {
        pubsub_tasks::Error::InvalidTaskName { .. } | pubsub_tasks::Error::InvalidConfig { .. } => {
            Error::Usage(UsageError::new(e.to_string()))
        }
        other => Error::Tasks(other),
    })?;
    writeln!(console.out, "{id}")?;
    Ok(())
}

fn open_store(args: &StoreArgs) -> Result<TaskStore> {
    let database = Database::parse(&args.database)
        .map_err(|e| UsageError::new(format!("--database / DATABASE_URL: {e}")))?;
    TaskStore::open_existing(&database).map_err(store_error)
}

fn store_error(e: pubsub_store::Error) -> Error {
    Error::from(e)
}

/// A task id argument.
fn task_id(text: &str) -> Result<Uuid> {
    Ok(Uuid::try_parse(text.trim()).map_err(|_| {
        UsageError::new(format!(
            "task id `{}` is not a UUID",
            pubsub_core::text::clip(text, 80)
        ))
    })?)
}

fn cancel(args: CancelArgs, console: &mut Console<'_>) -> Result<()> {
    let id = task_id(&args.id)?;
    let mut store = open_store(&args.store)?;
    let record = store.cancel(id).map_err(store_error)?;
    writeln!(console.out, "task {id} {}", record.status.as_str())?;
    Ok(())
}

fn wait(args: WaitArgs, console: &mut Console<'_>) -> Result<()> {
    let id = task_id(&args.id)?;
    let database = Database::parse(&args.store.database)
        .map_err(|e| UsageError::new(format!("--database / DATABASE_URL: {e}")))?;
    match pubsub_tasks::wait(&database, id, args.timeout).map_err(Error::Tasks)? {
        TaskOutcome::Completed(result) => {
            writeln!(console.out, "{result}")?;
            Ok(())
        }
        TaskOutcome::Failed(error) => Err(Error::TaskNotCompleted {
            id,
            outcome: format!("FAILED: {error}"),
        }),
        TaskOutcome::Cancelled => Err(Error::TaskNotCompleted {
            id,
            outcome: "was CANCELLED".to_owned(),
        }),
    }
}

fn status(args: StatusArgs, console: &mut Console<'_>) -> Result<()> {
    let id = task_id(&args.id)?;
    let mut store = open_store(&args.store)?;
    let record = store
        .get(id)
        .map_err(store_error)?
        .ok_or(Error::NoSuchTask { id })?;
    if args.json {
        writeln!(console.out, "{}", show::json(&record))?;
    } else {
        write!(console.out, "{}", show::status(&record))?;
    }
    Ok(())
}

fn list(args: ListArgs, console: &mut Console<'_>) -> Result<()> {
    let mut store = open_store(&args.store)?;
    if args.stuck && args.status.is_some_and(|s| s != TaskStatus::Running) {
        return Err(UsageError::new("--stuck lists RUNNING tasks: drop --status").into());
    }
    let filter = TaskFilter {
        status: if args.stuck {
            Some(TaskStatus::Running)
        } else {
            args.status
        },
        task_name: args.name,
        // Stuck ones are picked from every RUNNING task.
        limit: (!args.stuck).then_some(args.limit),
    };
    let mut records = store.list(&filter).map_err(store_error)?;
    if args.stuck {
        let now = time::OffsetDateTime::now_utc();
        records.retain(|r| r.is_stuck(now, args.stuck_after));
        records.truncate(args.limit);
    }
    write!(console.out, "{}", show::list(&records))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn ages() {
        use std::time::Duration;
        let check = |text: &str, expected: Result<Duration, ()>| {
            assert_eq!(parse_age(text).map_err(drop), expected, "{text}");
        };
        check("90s", Ok(Duration::from_secs(90)));
        check("30m", Ok(Duration::from_secs(1_800)));
        check(" 2h ", Ok(Duration::from_secs(7_200)));
        check("1d", Ok(Duration::from_secs(86_400)));
        check("250ms", Ok(Duration::from_millis(250)));
        check("0s", Ok(Duration::ZERO));
        check("5", Err(()));
        check("h", Err(()));
        check("5w", Err(()));
        check("-5s", Err(()));
        check("99999999999999999999s", Err(()));
    }
    use crate::cli::{Cli, Command};

    fn task(args: &[&str]) -> TaskCommand {
        let cli = Cli::try_parse_from(["pubsub", "task"].iter().chain(args)).unwrap();
        match cli.command {
            Command::Task(command) => command,
            other => panic!("not a task command: {other:?}"),
        }
    }

    #[test]
    fn task_commands_parse() {
        let TaskCommand::List(list) = task(&[
            "list",
            "--status",
            "FAILED",
            "--database",
            "sqlite::memory:",
        ]) else {
            panic!("not list")
        };
        assert_eq!(list.status, Some(TaskStatus::Failed));
        assert_eq!(list.limit, 20);
        assert_eq!(list.store.database, "sqlite::memory:");
        let TaskCommand::Submit(submit) = task(&["submit", "send-report", "--payload", "{}"])
        else {
            panic!("not submit")
        };
        assert_eq!(submit.exchange, "task.exchange");
        assert_eq!(submit.payload.as_deref(), Some("{}"));
        assert!(Cli::try_parse_from(["pubsub", "task", "list", "--status", "lost"]).is_err());
        let TaskCommand::List(stuck) = task(&["list", "--stuck", "--stuck-after", "30m"]) else {
            panic!("list");
        };
        assert!(stuck.stuck);
        assert_eq!(stuck.stuck_after, std::time::Duration::from_secs(1_800));
        let TaskCommand::Cancel(cancel) = task(&["cancel", "7c9e6679-7425-40de-944b-e07fc1f90ae7"])
        else {
            panic!("cancel");
        };
        assert_eq!(cancel.id, "7c9e6679-7425-40de-944b-e07fc1f90ae7");
    }
}
