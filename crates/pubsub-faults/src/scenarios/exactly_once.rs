//! The exactly-once scenarios: a service with a transactional outbox and an inbox handler
//! (`outbox_service.rs`, a child process) killed with `kill -9` at each point between its
//! commit and the ack, and its database and broker restarted under load. The effects are
//! counted in its business table: every committed order's effect is there, once.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use crossbeam_channel::Receiver;
use pubsub::outbox::{Database, PAUSE_AT_ENV};
use pubsub_testkit::{Bus, TestDatabase};

use super::Ctx;
use crate::harness::{wait_for, Line};
use crate::outbox_service::{self, counts, MODE};

/// Orders each kill scenario creates.
const KILL_ORDERS: u64 = 300;
/// Orders the restart scenarios create, and how many a second.
const LOAD_ORDERS: u64 = 2_000;
const LOAD_RATE: u32 = 400;

/// One run of the service, its standard error read line by line.
struct Service {
    child: Child,
    lines: Receiver<String>,
}

/// The log filter of the services the exactly-once scenarios spawn (`RUST_LOG` syntax;
/// `warn` unless set). Their lines are logged at debug level under `outbox-service:`.
pub(crate) const SERVICE_LOG_ENV: &str = "PUBSUB_FAULTS_SERVICE_LOG";

impl Service {
    fn spawn(
        database: &str,
        fixture: &Bus,
        queue: &str,
        orders: u64,
        rate: u32,
        pause: Option<&str>,
    ) -> Result<Service> {
        let mut command = Command::new(std::env::current_exe()?);
        command
            .args([MODE, database, fixture.exchange(), queue])
            .arg(orders.to_string())
            .arg(rate.to_string())
            .env(
                "RUST_LOG",
                std::env::var(SERVICE_LOG_ENV).unwrap_or_else(|_| "warn".to_owned()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        match pause {
            Some(point) => command.env(PAUSE_AT_ENV, point),
            None => command.env_remove(PAUSE_AT_ENV),
        };
        let mut child = command.spawn().context("starting the outbox service")?;
        let stderr = child
            .stderr
            .take()
            .context("the service's standard error")?;
        let (tx, lines) = crossbeam_channel::unbounded();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                log::debug!("outbox-service: {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Service { child, lines })
    }

    /// Waits for a line starting with each of `prefixes` (in any order).
    fn wait_lines(&self, prefixes: &[&str], timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut missing: Vec<&str> = prefixes.to_vec();
        while !missing.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .map_err(|_| anyhow!("the service never said {missing:?}"))?;
            if line.starts_with("outbox-service:") {
                return Err(anyhow!("the service failed: {line}"));
            }
            missing.retain(|p| !line.starts_with(p));
        }
        Ok(())
    }

    /// `kill -9`.
    fn kill(mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The broker names of one run: the exchange (the fixture's) and the service's queues,
/// deleted at the end.
fn names(prefix: &str) -> Result<(Bus, String)> {
    let mut fixture = Bus::new(prefix).ok_or_else(|| anyhow!("the broker is not reachable"))?;
    let queue = pubsub_testkit::unique(prefix);
    for name in pubsub_subscriber::queue_names(&queue, &outbox_service::retry()) {
        fixture.delete_queue_at_end(&name);
    }
    Ok((fixture, queue))
}

/// Waits until every committed order's effect is there and nothing is left staged, then
/// fills `line` from the business table.
fn settle(line: &mut Line, database: &Database, what: &str, timeout: Duration) -> Result<()> {
    let done = wait_for(timeout, || {
        counts(database).is_ok_and(|(orders, _, distinct, staged)| {
            orders > 0 && distinct == orders && staged == 0
        })
    });
    // A late duplicate would show in this time.
    thread::sleep(Duration::from_millis(500));
    let (orders, effects, distinct, staged) = counts(database)?;
    line.sent += orders as usize;
    line.confirmed += orders as usize;
    line.consumed += distinct as usize;
    line.lost += orders.saturating_sub(distinct) as usize;
    line.duplicated += effects - distinct;
    line.check(
        done,
        format!(
            "{what}: not every effect applied in time ({distinct} of {orders}, {staged} staged)"
        ),
    );
    line.check(
        effects == distinct,
        format!("{what}: {} effect(s) applied twice", effects - distinct),
    );
    Ok(())
}

/// The service killed (`kill -9`) at `point`, once every order is committed; started again,
/// it must apply each order's effect once. On SQLite and on PostgreSQL.
fn killed_at(name: &'static str, point: &str) -> Result<Line> {
    let mut line = Line::new(name);
    for owned in [
        Some(TestDatabase::sqlite(name)),
        TestDatabase::postgres("faults"),
    ]
    .into_iter()
    .flatten()
    {
        let database = Database::parse(owned.url())?;
        let backend = database.backend_name();
        let (fixture, queue) = names(name)?;
        let first = Service::spawn(owned.url(), &fixture, &queue, KILL_ORDERS, 0, Some(point))?;
        first.wait_lines(
            &["started", &format!("created {KILL_ORDERS}"), "paused at"],
            Duration::from_secs(60),
        )?;
        let (_, effects_before, _, staged_before) = counts(&database)?;
        first.kill()?;
        let second = Service::spawn(owned.url(), &fixture, &queue, 0, 0, None)?;
        second.wait_lines(&["started"], Duration::from_secs(30))?;
        settle(&mut line, &database, backend, Duration::from_secs(60))?;
        line.notes.push(format!(
            "{backend}: killed with {staged_before} staged and {effects_before} applied"
        ));
        second.kill()?;
    }
    Ok(line)
}

/// `kill -9` after the order's commit, before the relay publishes.
pub(crate) fn kill_before_publish(_: &Ctx) -> Result<Line> {
    killed_at("kill-before-publish", "relay-before-publish")
}

/// `kill -9` after the relay's publish is confirmed, before its rows are deleted.
pub(crate) fn kill_after_publish(_: &Ctx) -> Result<Line> {
    killed_at("kill-after-publish", "relay-after-publish")
}

/// `kill -9` after the inbox handler's commit, before the ack.
pub(crate) fn kill_before_ack(_: &Ctx) -> Result<Line> {
    killed_at("kill-before-ack", "inbox-after-commit")
}

/// The service creating orders at a steady rate while `fault` runs once 30% are committed.
fn under_load(
    line: &mut Line,
    owned: &TestDatabase,
    fault: impl FnOnce() -> Result<()>,
) -> Result<()> {
    let database = Database::parse(owned.url())?;
    let (fixture, queue) = names(line.scenario)?;
    let service = Service::spawn(owned.url(), &fixture, &queue, LOAD_ORDERS, LOAD_RATE, None)?;
    service.wait_lines(&["started"], Duration::from_secs(30))?;
    wait_for(Duration::from_secs(60), || {
        counts(&database).is_ok_and(|(orders, ..)| orders >= LOAD_ORDERS * 3 / 10)
    });
    let t = Instant::now();
    fault()?;
    service.wait_lines(
        &[&format!("created {LOAD_ORDERS}")],
        Duration::from_secs(120),
    )?;
    settle(
        line,
        &database,
        database.backend_name(),
        Duration::from_secs(120),
    )?;
    line.recover = Some(t.elapsed());
    service.kill()?;
    // The fixture's own connection may not have outlived the fault: delete on a new one.
    let mut connection = pubsub_amqp::Connection::open(fixture.config())?;
    let channel = connection.open_channel()?;
    for name in pubsub_subscriber::queue_names(&queue, &outbox_service::retry()) {
        channel.delete_queue(&name)?;
    }
    channel.delete_exchange(fixture.exchange())?;
    Ok(())
}

/// PostgreSQL stopped for 3 s while the service commits orders and applies their effects.
pub(crate) fn postgres_restart(_: &Ctx) -> Result<Line> {
    let mut line = Line::new("outbox-postgres");
    let owned =
        TestDatabase::postgres("faults").ok_or_else(|| anyhow!("PostgreSQL is not reachable"))?;
    under_load(&mut line, &owned, || {
        super::postgres_restart::pg_ctl("stop")?;
        thread::sleep(Duration::from_secs(3));
        super::postgres_restart::pg_ctl("start")
    })?;
    Ok(line)
}

/// The broker's application stopped for 2 s while the service commits orders (on SQLite).
pub(crate) fn broker_restart(ctx: &Ctx) -> Result<Line> {
    let mut line = Line::new("outbox-broker");
    let owned = TestDatabase::sqlite("outbox-broker");
    under_load(&mut line, &owned, || {
        pubsub_testkit::rabbitmqctl(&["-q", "stop_app"]).map_err(|e| anyhow!(e))?;
        thread::sleep(Duration::from_secs(2));
        let started = pubsub_testkit::rabbitmqctl(&["-q", "start_app"])
            .and_then(|_| pubsub_testkit::rabbitmqctl(&["-q", "await_startup"]));
        if let Err(e) = started {
            ctx.guard.restore();
            return Err(anyhow!(e));
        }
        Ok(())
    })?;
    Ok(line)
}
