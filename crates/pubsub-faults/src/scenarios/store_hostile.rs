//! The event store's hostile-data scenario: 10,000 events into a store on PostgreSQL with 50
//! messages whose data the database refuses as it is (a NUL in a string, a key, a header;
//! a lone surrogate, a number out of range, deep nesting, a long key) mixed in.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use pubsub_amqp::{Connection, HeaderValue, Headers, Properties};
use pubsub_recorder::{RecordOptions, Recorder};
use pubsub_store::{Database, EventQuery, EventStore};

use crate::harness::{publish_beside, wait_for, wait_progress, Flow, Line};
use crate::scenarios::Ctx;

/// A hostile message: its data as JSON text and its headers; whether the store keeps it.
fn hostile(i: usize) -> (String, Headers, bool) {
    let mut headers = Headers::new();
    let (data, stored) = match i % 7 {
        0 => (r#"{"a":"bad\u0000x"}"#.to_owned(), true),
        1 => (r#"{"k\u0000":{"n":["\u0000"]}}"#.to_owned(), true),
        2 => {
            headers.insert("x-h".into(), HeaderValue::Str("v\u{0}".into()));
            (r#"{"ok":true}"#.to_owned(), true)
        }
        3 => (r#"{"a":"\ud800"}"#.to_owned(), false),
        4 => (r#"{"a":1e400}"#.to_owned(), false),
        5 => (
            format!(r#"{{"d":{}1{}}}"#, "[".repeat(500), "]".repeat(500)),
            false,
        ),
        _ => (format!(r#"{{"{}":"\u0000"}}"#, "k".repeat(50_000)), true),
    };
    (data, headers, stored)
}

/// 10,000 events and 50 hostile ones into the store on PostgreSQL: every good event stored
/// once, every hostile one stored faithfully or dead-lettered, the store never stuck.
pub(crate) fn store_hostile(ctx: &Ctx) -> Result<Line> {
    let mut line = Line::new("store-hostile");
    let owned = pubsub_testkit::TestDatabase::postgres("faults")
        .ok_or_else(|| anyhow!("PostgreSQL is not reachable"))?;
    let database = Database::parse(owned.url())?;
    let recorder = Recorder::new(&database)?;
    let (n, count) = (10_000, 50);
    let flow = Flow::start(
        &ctx.broker,
        &ctx.broker,
        "store-hostile",
        |_| {},
        |b| b.prefetch(RecordOptions::default().prefetch).sink(recorder),
    )?;
    let mut hostile_stored = HashSet::new();
    let (tally, injected) = publish_beside(&ctx.broker, &flow.exchange, n, |progress| {
        let mut connection = Connection::open(&ctx.broker)?;
        let channel = connection.open_channel()?;
        let confirms = channel.enable_confirms()?;
        let mut sent = Vec::new();
        for i in 0..count {
            wait_progress(progress, n * (i + 1) / (count + 1));
            let (data, headers, stored) = hostile(i);
            let id = uuid::Uuid::new_v4();
            let body = format!(
                r#"{{"domain":"order","action":"created","data":{data},"event_id":"{id}","timestamp":"2024-05-01T12:30:00+00:00","version":"1.0"}}"#
            );
            let properties = Properties {
                message_id: Some(id.to_string()),
                headers,
                ..Properties::default()
            };
            channel
                .publish(
                    &flow.exchange,
                    "order.created",
                    body.as_bytes(),
                    &properties,
                    false,
                )
                .with_context(|| format!("publishing hostile message {i}"))?;
            let confirm = confirms.recv_timeout(Duration::from_secs(10))?;
            if !confirm.is_some_and(|c| c.ack) {
                return Err(anyhow!("hostile message {i} was not confirmed"));
            }
            sent.push((id.as_u128(), stored));
        }
        let _ = channel.close();
        Ok(sent)
    })?;
    let expected_dead = injected.iter().filter(|(_, stored)| !stored).count() as u32;
    let mut stored = HashSet::new();
    let mut rows = 0;
    wait_for(Duration::from_secs(60), || {
        if let Ok((ids, r)) = stored_ids(&database) {
            stored = ids;
            rows = r;
        }
        tally.confirmed.iter().all(|id| stored.contains(id))
            && flow.dead_letters().unwrap_or(0) >= expected_dead
    });
    line.sent = tally.sent;
    line.confirmed = tally.confirmed.len();
    line.consumed = tally
        .confirmed
        .iter()
        .filter(|id| stored.contains(id))
        .count();
    line.lost = tally.confirmed.len() - line.consumed;
    line.duplicated = rows - stored.len() as u64;
    for (id, keep) in &injected {
        if *keep && stored.contains(id) {
            hostile_stored.insert(*id);
        }
    }
    let should_store = injected.iter().filter(|(_, keep)| *keep).count();
    let dead = flow.dead_letters()?;
    line.notes.push(format!(
        "{} of {count} hostile stored (of {should_store} storable), {dead} dead-lettered (of {expected_dead})",
        hostile_stored.len()
    ));
    line.check(
        hostile_stored.len() == should_store,
        "a hostile event the store can keep was not stored",
    );
    line.check(
        dead == expected_dead,
        "the dead-lettered hostile events do not add up",
    );
    let stats = flow.finish()?;
    line.check(
        stats.reconnects == 0,
        format!("the store reconnected {} time(s)", stats.reconnects),
    );
    drop(owned);
    Ok(line)
}

/// The ids stored, and how many rows hold them.
fn stored_ids(database: &Database) -> pubsub_store::Result<(HashSet<u128>, u64)> {
    let mut store = EventStore::open(database)?;
    let mut ids = HashSet::new();
    let mut rows = 0;
    store.for_each(&EventQuery::new(), |e| {
        rows += 1;
        ids.insert(e.event.event_id().as_u128());
        true
    })?;
    Ok((ids, rows))
}
