//! `pubsub task`: submit a task to the task queue (`pubsub-tasks`), and read tasks from the
//! task store (`pubsub-store`): one task's status, or a list filtered by status and name.
//!
//! Each subcommand's arguments and running are here; the printing, pure, is in `show`.

use clap::{Args, Subcommand};
use pubsub_store::{Database, TaskFilter, TaskStatus, TaskStore};
use pubsub_tasks::{SubmitOptions, TaskQueue};
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
store: PENDING, RUNNING, COMPLETED with its result or FAILED with its error.";

/// The examples under `pubsub task --help`.
pub(crate) const EXAMPLES: &str = "\
Examples:
  pubsub task submit send-report --payload '{\"to\":\"ops\"}'
  pubsub task status 7c9e6679-7425-40de-944b-e07fc1f90ae7
  pubsub task list --status failed
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

    /// The task store.
    #[command(flatten)]
    pub store: StoreArgs,
}

fn parse_status(text: &str) -> Result<TaskStatus, String> {
    text.parse()
        .map_err(|_| "expected pending, running, completed or failed".to_owned())
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
        .build()
        .map_err(Error::Tasks)?;
    let options = SubmitOptions {
        correlation_id: args.correlation_id,
        routing_key: args.routing_key,
    };
    let submitted = queue.submit_with(&args.name, Value::Object(payload), &options);
    if let Err(e) = queue.close() {
        log::debug!("closing the connection: {e}");
    }
    let id = submitted.map_err(|e| match e {
        pubsub_tasks::Error::InvalidTaskName { .. } => Error::Usage(UsageError::new(e.to_string())),
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

fn status(args: StatusArgs, console: &mut Console<'_>) -> Result<()> {
    let id = Uuid::try_parse(args.id.trim()).map_err(|_| {
        UsageError::new(format!(
            "task id `{}` is not a UUID",
            pubsub_core::text::clip(&args.id, 80)
        ))
    })?;
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
    let filter = TaskFilter {
        status: args.status,
        task_name: args.name,
        limit: Some(args.limit),
    };
    let records = store.list(&filter).map_err(store_error)?;
    write!(console.out, "{}", show::list(&records))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
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
    }
}
