//! Scheduled tasks through a worker restart and a broker restart: tasks submitted for later
//! wait in their delay queues while the only worker stops and the broker's application is
//! stopped and started; a new worker then runs every one of them, none earlier than asked.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use pubsub_amqp::{AmqpConfig, Connection};
use pubsub_store::{Database, TaskStatus, TaskStore};
use pubsub_subscriber::{queue_names, RetryPolicy};
use pubsub_tasks::{delay_bucket, delay_queue_name, RunningWorker, TaskQueue, TaskWorker};
use pubsub_testkit::{Names, TestDatabase};
use serde_json::json;

use super::Ctx;
use crate::harness::{wait_for, Line};

/// The delays asked for: the first ends while the broker is down, the others after.
const DELAYS: [Duration; 3] = [
    Duration::from_millis(2_000),
    Duration::from_millis(4_000),
    Duration::from_millis(6_000),
];

/// Tasks of each delay.
const EACH: usize = 50;

/// When each task ran (every run), by its number.
type Runs = Arc<Mutex<HashMap<u64, Vec<Instant>>>>;

pub(crate) fn scheduled_tasks(ctx: &Ctx) -> Result<Line> {
    let mut line = Line::new("scheduled-tasks");
    let names = Names::unique("faults-scheduled");
    let owned = TestDatabase::sqlite("faults-scheduled");
    let database = Database::parse(owned.url())?;
    let retry = RetryPolicy::new(3, vec![Duration::from_millis(200)]);
    let result = run(ctx, &mut line, &names, &database, &retry);
    cleanup(&ctx.broker, &names, &retry);
    result.map(|()| line)
}

fn worker(
    broker: &AmqpConfig,
    names: &Names,
    database: &Database,
    retry: &RetryPolicy,
    runs: &Runs,
) -> Result<RunningWorker> {
    let runs = runs.clone();
    Ok(TaskWorker::builder(broker.clone(), database.clone())
        .exchange(&names.exchange)
        .queue(&names.queue)
        .retry(retry.clone())
        .task("tick", move |task| {
            if let (Some(i), Ok(mut runs)) = (task.payload()["i"].as_u64(), runs.lock()) {
                runs.entry(i).or_default().push(Instant::now());
            }
            Ok(serde_json::Value::Null)
        })
        .build()?
        .start()?)
}

fn run(
    ctx: &Ctx,
    line: &mut Line,
    names: &Names,
    database: &Database,
    retry: &RetryPolicy,
) -> Result<()> {
    let runs: Runs = Arc::default();
    let first = worker(&ctx.broker, names, database, retry, &runs)?;
    let queue = TaskQueue::builder(Connection::open(&ctx.broker)?)
        .exchange(&names.exchange)
        .queue(&names.queue)
        .producer("faults")
        .build()?;
    // (number, delay asked, when submit was called, task id)
    let mut submitted = Vec::new();
    for (d, &delay) in DELAYS.iter().enumerate() {
        for k in 0..EACH {
            let i = (d * EACH + k) as u64;
            let called = Instant::now();
            line.sent += 1;
            let handle = queue
                .submit_after(delay, "tick", json!({ "i": i }))
                .context("submitting a scheduled task")?;
            line.confirmed += 1;
            submitted.push((i, delay, called, handle.id()));
        }
    }
    queue.close()?;
    // The only worker stops while every task waits; then the broker stops for 2 s.
    first.stop()?;
    pubsub_testkit::rabbitmqctl(&["-q", "stop_app"]).map_err(|e| anyhow!(e))?;
    thread::sleep(Duration::from_secs(2));
    let started = pubsub_testkit::rabbitmqctl(&["-q", "start_app"])
        .and_then(|_| pubsub_testkit::rabbitmqctl(&["-q", "await_startup"]));
    if let Err(e) = started {
        ctx.guard.restore();
        return Err(anyhow!(e));
    }
    let restarted = Instant::now();
    let second = worker(&ctx.broker, names, database, retry, &runs)?;
    let all_ran = wait_for(Duration::from_secs(30), || {
        runs.lock().map(|r| r.len()).unwrap_or(0) >= submitted.len()
    });
    second.stop()?;
    let runs = runs
        .lock()
        .map_err(|_| anyhow!("a task function panicked"))?
        .clone();
    line.consumed = runs.len();
    line.lost = submitted.len() - runs.len();
    line.duplicated = runs
        .values()
        .map(|r| r.len().saturating_sub(1) as u64)
        .sum();
    line.check(
        all_ran,
        format!(
            "only {} of {} tasks ran in 30 s",
            runs.len(),
            submitted.len()
        ),
    );
    // None earlier than asked, counted from the submit call (before the broker took it).
    let early = submitted
        .iter()
        .filter(|(i, delay, called, _)| {
            runs.get(i)
                .and_then(|r| r.first())
                .is_some_and(|ran| ran.duration_since(*called) < *delay)
        })
        .count();
    line.check(
        early == 0,
        format!("{early} task(s) ran earlier than asked"),
    );
    let mut store = TaskStore::open(database)?;
    let mut not_completed = 0;
    for (_, _, _, id) in &submitted {
        let completed = store
            .get(*id)?
            .is_some_and(|r| r.status == TaskStatus::Completed);
        not_completed += usize::from(!completed);
    }
    line.check(
        not_completed == 0,
        format!("{not_completed} task(s) not recorded COMPLETED"),
    );
    // How late the tasks whose delay ended during the outage ran, after the broker was back.
    let late = submitted
        .iter()
        .filter(|(_, delay, _, _)| *delay == DELAYS[0])
        .filter_map(|(i, _, _, _)| runs.get(i).and_then(|r| r.first()))
        .map(|ran| ran.saturating_duration_since(restarted))
        .max();
    if let Some(late) = late {
        line.recover = Some(late);
        line.notes.push(format!(
            "the {} ms tasks, due while the broker was down, all ran {:.2}s after it was back",
            DELAYS[0].as_millis(),
            late.as_secs_f64()
        ));
    }
    line.notes
        .push("worker stopped and a new one started; broker stopped 2 s".into());
    Ok(())
}

/// Deletes the scenario's queues (the worker's, its retry and dead-letter queues, the delay
/// queues) and its exchange, on a new connection (the broker restarted).
fn cleanup(broker: &AmqpConfig, names: &Names, retry: &RetryPolicy) {
    let deleted = (|| {
        let mut connection = Connection::open(broker)?;
        let channel = connection.open_channel()?;
        let mut queues = queue_names(&names.queue, retry);
        queues.extend(
            DELAYS
                .iter()
                .map(|&d| delay_queue_name(&names.queue, delay_bucket(d))),
        );
        for queue in queues {
            let _ = channel.delete_queue(&queue);
        }
        let _ = channel.delete_exchange(&names.exchange);
        connection.close()
    })();
    if let Err(e) = deleted {
        log::warn!("scheduled-tasks: cleaning up: {e}");
    }
}
