//! The service the exactly-once scenarios kill: `pubsub-faults outbox-service DATABASE
//! EXCHANGE QUEUE ORDERS RATE`.
//!
//! It creates orders `0..ORDERS` (at most `RATE` a second, 0: as fast as it can), each in its
//! own transaction: the order's row and its `fault.order` event staged in the outbox. Its bus
//! runs the outbox's relay and one inbox handler, `apply`, that writes one row per event into
//! `effects` (no unique key: an effect applied twice shows as two rows). It says `started`,
//! `created N` on standard error, then consumes until killed. With the fault points on
//! (`PUBSUB_OUTBOX_PAUSE_AT`), it stops for good at the point named, for the suite to kill it
//! there.

use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use pubsub::outbox::{Database, Outbox, PostgresInbox, SqliteInbox};
use pubsub::{AmqpConfig, Event, EventBus, ReconnectPolicy, RetryPolicy};

/// The first argument that selects this mode.
pub(crate) const MODE: &str = "outbox-service";

/// The event the service stages for each order.
pub(crate) const KEY: &str = "fault.order";

/// Its retry policy: enough attempts to outlast a database restart.
pub(crate) fn retry() -> RetryPolicy {
    RetryPolicy::new(40, vec![Duration::from_millis(500)])
}

/// Runs the service (never returns unless it fails).
pub(crate) fn main(args: &[String]) -> ExitCode {
    match serve(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("outbox-service: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: &[String]) -> Result<()> {
    let [database, exchange, queue, orders, rate] = args else {
        bail!("usage: pubsub-faults {MODE} DATABASE EXCHANGE QUEUE ORDERS RATE");
    };
    let database = Database::parse(database)?;
    let orders: i64 = orders.parse().context("ORDERS")?;
    let rate: u32 = rate.parse().context("RATE")?;
    tables(&database)?;
    let outbox = Outbox::open(&database)?;
    let mut bus = EventBus::builder(queue)
        .amqp(AmqpConfig::from_env()?)
        .exchange(exchange)
        .retry(retry())
        .reconnect(ReconnectPolicy::default().forever())
        .outbox(outbox.clone())
        .build()?;
    if database.is_postgres() {
        bus.subscribe(
            KEY,
            PostgresInbox::new(&database, "apply", |event, _, tx| {
                let n = event.data()["n"].as_i64().unwrap_or(-1);
                tx.execute("INSERT INTO effects (order_n) VALUES ($1)", &[&n])?;
                Ok(())
            })?,
        )?;
    } else {
        bus.subscribe(
            KEY,
            SqliteInbox::new(&database, "apply", |event, _, tx| {
                let n = event.data()["n"].as_i64().unwrap_or(-1);
                tx.execute("INSERT INTO effects (order_n) VALUES (?1)", [n])?;
                Ok(())
            })?,
        )?;
    }
    bus.start()?;
    eprintln!("started");
    let started = Instant::now();
    let mut connection = None;
    for n in 0..orders {
        if rate > 0 {
            let due = started + Duration::from_secs_f64(n as f64 / f64::from(rate));
            thread::sleep(due.saturating_duration_since(Instant::now()));
        }
        // A failed attempt (the database away) is tried again, on a new connection, until it
        // commits; an attempt whose commit went through unanswered finds its row and stops.
        while let Err(e) = create(&database, &mut connection, &outbox, n) {
            log::info!("order {n}: {e}; trying again");
            connection = None;
            thread::sleep(Duration::from_millis(200));
        }
    }
    eprintln!("created {orders}");
    loop {
        thread::sleep(Duration::from_secs(3600));
    }
}

/// The business tables: the orders, and the effects of their events.
fn tables(database: &Database) -> Result<()> {
    const SQL: &str = "CREATE TABLE IF NOT EXISTS orders (order_n BIGINT PRIMARY KEY);
                       CREATE TABLE IF NOT EXISTS effects (order_n BIGINT NOT NULL);";
    if database.is_postgres() {
        database.connect_postgres()?.batch_execute(SQL)?;
    } else {
        database.open_sqlite()?.execute_batch(SQL)?;
    }
    Ok(())
}

/// The service's own connection.
enum Connection {
    Sqlite(rusqlite::Connection),
    Postgres(postgres::Client),
}

/// Order `n`'s row and its event, in one transaction (nothing when the row is there), on
/// `connection` (opened first if `None`).
fn create(
    database: &Database,
    connection: &mut Option<Connection>,
    outbox: &Outbox,
    n: i64,
) -> Result<()> {
    let event = Event::new("fault", "order", serde_json::json!({ "n": n }))?;
    let connection = match connection {
        Some(c) => c,
        None if database.is_postgres() => {
            connection.insert(Connection::Postgres(database.connect_postgres()?))
        }
        None => connection.insert(Connection::Sqlite(database.open_sqlite()?)),
    };
    match connection {
        Connection::Postgres(client) => {
            let mut tx = client.transaction()?;
            let new = tx.execute(
                "INSERT INTO orders (order_n) VALUES ($1) ON CONFLICT DO NOTHING",
                &[&n],
            )?;
            if new == 1 {
                outbox.stage(&mut tx, &event)?;
                outbox.commit(tx)?;
            }
        }
        Connection::Sqlite(connection) => {
            let mut tx = connection.transaction()?;
            let new = tx.execute(
                "INSERT INTO orders (order_n) VALUES (?1) ON CONFLICT DO NOTHING",
                [n],
            )?;
            if new == 1 {
                outbox.stage(&mut tx, &event)?;
                outbox.commit(tx)?;
            }
        }
    }
    Ok(())
}

/// What the database holds: orders, effects, distinct effects, events still staged.
pub(crate) fn counts(database: &Database) -> Result<(u64, u64, u64, u64)> {
    const SQL: &str = "SELECT (SELECT COUNT(*) FROM orders), (SELECT COUNT(*) FROM effects), \
                       (SELECT COUNT(DISTINCT order_n) FROM effects), \
                       (SELECT COUNT(*) FROM pubsub_outbox)";
    let row: [i64; 4] = if database.is_postgres() {
        let row = database.connect_postgres()?.query_one(SQL, &[])?;
        [
            row.try_get(0)?,
            row.try_get(1)?,
            row.try_get(2)?,
            row.try_get(3)?,
        ]
    } else {
        database.open_sqlite()?.query_row(SQL, [], |r| {
            Ok([r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?])
        })?
    };
    let [orders, effects, distinct, staged] = row.map(|n| u64::try_from(n).unwrap_or(0));
    Ok((orders, effects, distinct, staged))
}
