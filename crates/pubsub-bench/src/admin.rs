//! The broker, as the benchmark harness sees it: its address, unique names for each run's
//! exchange and queues, and their deletion afterwards.
//!
//! Every name the benchmark creates is written to a ledger file
//! (`$TMPDIR/pubsub-bench/<pid>.names`) first. A run deletes its exchanges and queues as it
//! goes, and removes its ledger at the end; a run that was killed leaves its ledger behind,
//! and the next run deletes what it lists (only ledgers of processes that are gone, so
//! benchmarks running side by side never touch each other's queues).

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use pubsub_amqp::{AmqpConfig, Channel, Connection, QueueConfig};
use pubsub_subscriber::{dead_letter_queue_name, retry_queue_name, RetryPolicy};
use pubsub_testkit::Names;

/// The broker from `AMQP_URL` (or localhost), with one connection attempt.
pub(crate) fn config_from_env() -> Result<AmqpConfig> {
    Ok(pubsub_testkit::config_from_env()?)
}

/// The broker from `AMQP_URL`, checked to accept connections.
pub(crate) fn broker_config() -> Result<AmqpConfig> {
    let config = config_from_env()?;
    if !pubsub_testkit::reachable(&config) {
        bail!(
            "RabbitMQ is not reachable at {} (AMQP_URL={}); start it with `just broker`",
            config.address(),
            config.redacted_url()
        );
    }
    Ok(config)
}

/// Opens a connection with a single attempt: a benchmark does not wait for a broker.
pub(crate) fn open(config: &AmqpConfig) -> Result<Connection> {
    Ok(Connection::open(
        &config.clone().with_connection_attempts(1),
    )?)
}

/// Every queue that may exist under `names`: the queue, and the subscriber's dead-letter and
/// retry queues.
fn queues(names: &Names) -> Vec<String> {
    let policy = RetryPolicy::default();
    let mut queues = vec![names.queue.clone(), dead_letter_queue_name(&names.queue)];
    for attempt in 1..policy.max_attempts() {
        if let Some(delay) = policy.delay_after(attempt) {
            let name = retry_queue_name(&names.queue, delay);
            if !queues.contains(&name) {
                queues.push(name);
            }
        }
    }
    queues
}

/// A connection for the harness: names, declarations for publish-only runs, deletions.
pub(crate) struct Admin {
    config: AmqpConfig,
    connection: Connection,
    channel: Option<Channel>,
    run: String,
    ledger: PathBuf,
    /// Whether everything recorded in the ledger has been deleted.
    clean: bool,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin")
            .field("run", &self.run)
            .field("ledger", &self.ledger)
            .finish_non_exhaustive()
    }
}

impl Admin {
    /// Connects, and deletes what killed runs left behind.
    pub(crate) fn open(config: &AmqpConfig) -> Result<Admin> {
        let dir = std::env::temp_dir().join("pubsub-bench");
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut admin = Admin {
            config: config.clone(),
            connection: open(config)?,
            channel: None,
            run: uuid::Uuid::new_v4().simple().to_string()[..8].to_owned(),
            ledger: dir.join(format!("{}.names", std::process::id())),
            clean: true,
        };
        admin.sweep(&dir);
        Ok(admin)
    }

    /// The broker's configuration.
    pub(crate) fn config(&self) -> &AmqpConfig {
        &self.config
    }

    /// New unique names for a measurement called `tag`, recorded in the ledger.
    pub(crate) fn names(&mut self, tag: &str) -> Result<Names> {
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..6];
        let names = Names::under(&format!("pubsub-bench.{}.{tag}.{suffix}", self.run));
        let mut ledger = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.ledger)
            .with_context(|| format!("cannot write {}", self.ledger.display()))?;
        writeln!(ledger, "exchange {}", names.exchange)?;
        for queue in queues(&names) {
            writeln!(ledger, "queue {queue}")?;
        }
        Ok(names)
    }

    /// Declares the exchange and the queue bound with `#`, for runs without a consumer.
    pub(crate) fn declare_bound_queue(&mut self, names: &Names) -> Result<()> {
        names.declare(self.channel()?, &QueueConfig::default())?;
        Ok(())
    }

    /// Messages ready in a queue.
    pub(crate) fn depth(&mut self, queue: &str) -> Result<u32> {
        Ok(self.channel()?.queue_info(queue)?.message_count)
    }

    /// Consumers of a queue.
    pub(crate) fn consumers(&mut self, queue: &str) -> Result<u32> {
        Ok(self.channel()?.queue_info(queue)?.consumer_count)
    }

    /// Removes every ready message from a queue.
    pub(crate) fn purge(&mut self, queue: &str) -> Result<()> {
        self.channel()?.purge_queue(queue)?;
        Ok(())
    }

    /// Deletes the exchange and queues of `names` (best effort: a failure is reported and the
    /// ledger keeps the names for the next run).
    pub(crate) fn delete(&mut self, names: &Names) {
        for queue in queues(names) {
            self.delete_one(false, &queue);
        }
        self.delete_one(true, &names.exchange);
    }

    /// Deletes one queue (best effort, as [`delete`](Self::delete)).
    pub(crate) fn delete_queue(&mut self, name: &str) {
        self.delete_one(false, name);
    }

    fn delete_one(&mut self, exchange: bool, name: &str) {
        let result = self.channel().and_then(|channel| {
            if exchange {
                channel.delete_exchange(name)?;
            } else {
                channel.delete_queue(name)?;
            }
            Ok(())
        });
        if let Err(e) = result {
            // The channel may be closed by the error; the next call opens another.
            self.channel = None;
            self.clean = false;
            eprintln!("warning: cannot delete {name}: {e:#}");
        }
    }

    fn channel(&mut self) -> Result<&Channel> {
        if self.channel.is_none() {
            self.channel = Some(self.connection.open_channel()?);
        }
        self.channel.as_ref().context("no admin channel")
    }

    /// Deletes what the ledgers of dead benchmark processes list.
    fn sweep(&mut self, dir: &Path) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(pid) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".names"))
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
                continue;
            }
            let Ok(text) = fs::read_to_string(&path) else {
                continue;
            };
            let mut deleted = 0;
            for line in text.lines() {
                match line.split_once(' ') {
                    Some(("queue", name)) => self.delete_one(false, name),
                    Some(("exchange", name)) => self.delete_one(true, name),
                    _ => continue,
                }
                deleted += 1;
            }
            eprintln!("deleted {deleted} leftover exchange(s) and queue(s) of an interrupted run");
            let _ = fs::remove_file(&path);
        }
    }

    /// Closes the connection and removes this run's ledger if everything in it was deleted.
    pub(crate) fn close(self) -> Result<()> {
        drop(self.channel);
        if self.clean {
            let _ = fs::remove_file(&self.ledger);
        }
        self.connection.close()?;
        Ok(())
    }
}
