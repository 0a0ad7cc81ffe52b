//! The outbox and the inbox against the real broker, on a SQLite file and the local
//! PostgreSQL server.

#![cfg(feature = "postgres")] // every test runs on SQLite and PostgreSQL
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod inbox;
mod outbox;

use std::time::{Duration, Instant};

use pubsub_core::Event;
use pubsub_store::Database;
use pubsub_testkit::TestDatabase;

/// Each database under test: a SQLite file, and a PostgreSQL schema when PostgreSQL answers
/// (always under `CI=true`).
fn databases(prefix: &str) -> Vec<(TestDatabase, Database)> {
    TestDatabase::all(prefix)
        .into_iter()
        .map(|owned| {
            let database = Database::parse(owned.url()).unwrap();
            (owned, database)
        })
        .collect()
}

fn event(i: usize) -> Event {
    Event::new("order", "created", serde_json::json!({ "n": i })).unwrap()
}

/// Waits up to `timeout` for `done`.
fn wait_for(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    done()
}

/// Runs `f` with a transaction of `database`'s backend, committed with `commit` when `f`
/// returns true (else rolled back).
fn in_transaction(
    database: &Database,
    f: impl FnOnce(&mut dyn FnMut(&Event), &mut dyn FnMut(&str)),
    outbox: &pubsub_outbox::Outbox,
    commit: bool,
) {
    if database.is_postgres() {
        let mut client = database.connect_postgres().unwrap();
        client
            .batch_execute("CREATE TABLE IF NOT EXISTS things (name TEXT NOT NULL)")
            .unwrap();
        let mut tx = client.transaction().unwrap();
        let mut names = Vec::new();
        let mut events = Vec::new();
        f(&mut |e| events.push(e.clone()), &mut |n| {
            names.push(n.to_owned())
        });
        for name in &names {
            tx.execute("INSERT INTO things (name) VALUES ($1)", &[name])
                .unwrap();
        }
        for e in &events {
            outbox.stage(&mut tx, e).unwrap();
        }
        if commit {
            // PostgreSQL's own commit: the notification wakes the relay.
            tx.commit().unwrap();
        }
    } else {
        let mut connection = database.open_sqlite().unwrap();
        connection
            .execute("CREATE TABLE IF NOT EXISTS things (name TEXT NOT NULL)", [])
            .unwrap();
        let mut tx = connection.transaction().unwrap();
        let mut names = Vec::new();
        let mut events = Vec::new();
        f(&mut |e| events.push(e.clone()), &mut |n| {
            names.push(n.to_owned())
        });
        for name in &names {
            tx.execute("INSERT INTO things (name) VALUES (?1)", [name])
                .unwrap();
        }
        for e in &events {
            outbox.stage(&mut tx, e).unwrap();
        }
        if commit {
            outbox.commit(tx).unwrap();
        }
    }
}
