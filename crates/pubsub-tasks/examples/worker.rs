//! A task worker to try the task queue with the `pubsub task` commands: it runs `echo`
//! (returns its payload) and `fail` (always fails, so it is retried, then FAILED and
//! dead-lettered) for SECONDS seconds (60 by default).
//!
//! ```sh
//! cargo run -p pubsub-tasks --example worker -- 60 &
//! pubsub task submit echo --payload '{"hello":"world"}'
//! pubsub task status <ID>
//! pubsub task list --status failed
//! ```
//!
//! The broker is `AMQP_URL` (else RabbitMQ on localhost), the task store `DATABASE_URL`
//! (else `sqlite:pubsub.db`).

use std::time::Duration;

use pubsub_amqp::AmqpConfig;
use pubsub_store::Database;
use pubsub_tasks::TaskWorker;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let seconds = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let worker = TaskWorker::builder(AmqpConfig::from_env()?, Database::from_env()?)
        .task("echo", |task| Ok(task.payload().clone()))
        .task("fail", |task| {
            Err(format!("attempt {} failed on purpose", task.attempt()).into())
        })
        .build()?
        .start()?;
    std::thread::sleep(Duration::from_secs(seconds));
    let stats = worker.stop()?;
    log::info!("stopped: {stats}");
    Ok(())
}
