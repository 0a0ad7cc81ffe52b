//! The exactly-once rows (`--outbox`, and a section of the full benchmark), on SQLite and on
//! PostgreSQL, interleaved round by round:
//!
//! - **outbox throughput**: events staged in transactions of 500 and published by the relay,
//!   from the first commit until the broker confirmed the last, against `publish_all`
//!   through the bus of the same events (batches of 500);
//! - **latency** from the commit to the handler, p50 and p99, at 500 events/s (one event a
//!   transaction), against a direct publish through the bus (from the publish call);
//! - **inbox handler** writing one row per event (its record and its row committed together
//!   before the ack) against the event store's rate, both through a subscriber: at the bus's
//!   prefetch (the target's row), and at the event store's (its commit batches).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use pubsub::outbox::{Database, Outbox, PostgresInbox, SqliteInbox};
use pubsub::{handler_fn, Event, EventBus};
use pubsub_core::EventHandler;
use pubsub_registry::HandlerRegistry;
use pubsub_subscriber::EventSubscriber;
use pubsub_testkit::TestDatabase;
use serde_json::json;

use crate::admin::{open, Admin};
use crate::cli::Options;
use crate::report::Stat;
use crate::workload;

/// Events per transaction (and per `publish_all` batch) of the throughput rows.
const BATCH: usize = 500;
/// The latency rows' rate.
const RATE: u64 = 500;

/// A database of one backend for one run, removed when dropped.
struct RunDb {
    database: Database,
    _owned: TestDatabase,
}

fn run_db(postgres: bool) -> Result<RunDb> {
    let owned = if postgres {
        TestDatabase::postgres("bench").ok_or_else(|| anyhow!("PostgreSQL is not reachable"))?
    } else {
        TestDatabase::sqlite("bench")
    };
    Ok(RunDb {
        database: Database::parse(owned.url())?,
        _owned: owned,
    })
}

fn events(n: u64) -> Result<Vec<Event>> {
    (0..n).map(|i| workload::event(i, 0)).collect()
}

/// Stages `events` in transactions of `per_tx` ([`Outbox::stage_all`]), each committed with
/// [`Outbox::commit`].
fn stage(database: &Database, outbox: &Outbox, events: &[Event], per_tx: usize) -> Result<()> {
    if database.is_postgres() {
        let mut client = database.connect_postgres()?;
        for chunk in events.chunks(per_tx) {
            let mut tx = client.transaction()?;
            outbox.stage_all(&mut tx, chunk)?;
            outbox.commit(tx)?;
        }
    } else {
        let mut connection = database.open_sqlite()?;
        for chunk in events.chunks(per_tx) {
            let mut tx = connection.transaction()?;
            outbox.stage_all(&mut tx, chunk)?;
            outbox.commit(tx)?;
        }
    }
    Ok(())
}

/// Events per second through `publish_all` on a bus, until every confirm.
fn publish_all_rate(admin: &mut Admin, n: u64) -> Result<f64> {
    let names = admin.names("outbox")?;
    admin.declare_bound_queue(&names)?;
    let result = (|| {
        let mut bus = EventBus::builder(&names.queue)
            .amqp(admin.config().clone())
            .exchange(&names.exchange)
            .build()?;
        bus.start()?;
        let publisher = bus.publisher();
        let events = events(n)?;
        let start = Instant::now();
        for chunk in events.chunks(BATCH) {
            for outcome in publisher.publish_all(chunk.to_vec()) {
                outcome.map_err(|e| anyhow!("{e}"))?;
            }
        }
        let rate = n as f64 / start.elapsed().as_secs_f64();
        bus.stop()?;
        Ok(rate)
    })();
    admin.delete(&names);
    result
}

/// Events per second from the first commit until the relay's last confirm.
fn outbox_rate(admin: &mut Admin, postgres: bool, n: u64) -> Result<f64> {
    let names = admin.names("outbox")?;
    admin.declare_bound_queue(&names)?;
    let db = run_db(postgres)?;
    let result = (|| {
        let outbox = Outbox::open(&db.database)?;
        let relay = outbox
            .relay(admin.config(), &names.exchange)
            .batch(BATCH)
            .start()?;
        let events = events(n)?;
        let start = Instant::now();
        stage(&db.database, &outbox, &events, BATCH)?;
        let deadline = Instant::now() + Duration::from_secs(120);
        while relay.stats().published < n {
            if Instant::now() > deadline || !relay.is_running() {
                bail!("the relay published {} of {n}", relay.stats().published);
            }
            thread::sleep(Duration::from_micros(200));
        }
        let rate = n as f64 / start.elapsed().as_secs_f64();
        relay.stop()?;
        Ok(rate)
    })();
    admin.delete(&names);
    drop(db);
    result
}

/// p50 and p99 in ms from the commit (outbox) or the publish call (direct) to the handler,
/// `n` events at [`RATE`] a second.
fn latency(admin: &mut Admin, postgres: bool, through_outbox: bool, n: u64) -> Result<(f64, f64)> {
    let names = admin.names("outbox-lat")?;
    let db = run_db(postgres)?;
    let result = (|| {
        let outbox = Outbox::open(&db.database)?;
        let (seen, handled) = crossbeam_channel::unbounded();
        let mut builder = EventBus::builder(&names.queue)
            .amqp(admin.config().clone())
            .exchange(&names.exchange);
        if through_outbox {
            builder = builder.outbox(outbox.clone());
        }
        let mut bus = builder.build()?;
        bus.subscribe(
            "#",
            handler_fn("timed", move |event, _| {
                let i = event.data()["n"].as_u64().unwrap_or(u64::MAX);
                let _ = seen.send((i, Instant::now()));
                Ok(())
            }),
        )?;
        bus.start()?;
        let publisher = bus.publisher();
        let mut client = if postgres {
            Some(db.database.connect_postgres()?)
        } else {
            None
        };
        let mut sqlite = if postgres {
            None
        } else {
            Some(db.database.open_sqlite()?)
        };
        let mut sent = Vec::with_capacity(n as usize);
        let start = Instant::now();
        for i in 0..n {
            let due = start + Duration::from_micros(i * 1_000_000 / RATE);
            thread::sleep(due.saturating_duration_since(Instant::now()));
            let event = Event::new("bench", "latency", json!({ "n": i }))?;
            if through_outbox {
                match (&mut client, &mut sqlite) {
                    (Some(client), _) => {
                        let mut tx = client.transaction()?;
                        outbox.stage(&mut tx, &event)?;
                        outbox.commit(tx)?;
                    }
                    (None, Some(connection)) => {
                        let mut tx = connection.transaction()?;
                        outbox.stage(&mut tx, &event)?;
                        outbox.commit(tx)?;
                    }
                    (None, None) => bail!("no connection"),
                }
                sent.push(Instant::now());
            } else {
                sent.push(Instant::now());
                publisher.publish(event).map_err(|e| anyhow!("{e}"))?;
            }
        }
        let mut latencies = Vec::with_capacity(n as usize);
        while latencies.len() < n as usize {
            let (i, at) = handled
                .recv_timeout(Duration::from_secs(30))
                .map_err(|_| anyhow!("{} of {n} events handled", latencies.len()))?;
            if let Some(t0) = sent.get(i as usize) {
                latencies.push(at.saturating_duration_since(*t0).as_secs_f64() * 1e3);
            }
        }
        bus.teardown()?;
        latencies.sort_by(f64::total_cmp);
        let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
        Ok((at(0.5), at(0.99)))
    })();
    drop(db);
    result
}

/// Events per second through a subscriber at `prefetch` whose one handler is an inbox handler
/// writing one row per event.
fn inbox_rate(admin: &mut Admin, postgres: bool, n: u64, prefetch: u16) -> Result<f64> {
    let names = admin.names("inbox")?;
    let db = run_db(postgres)?;
    let result = (|| {
        let handled = Arc::new(AtomicU64::new(0));
        let h = handled.clone();
        let handler: Arc<dyn EventHandler> = if postgres {
            db.database
                .connect_postgres()?
                .batch_execute("CREATE TABLE effects (n BIGINT NOT NULL)")?;
            Arc::new(PostgresInbox::new(
                &db.database,
                "effects",
                move |event, _, tx| {
                    let i = event
                        .data()
                        .get("seq")
                        .and_then(serde_json::Value::as_i64)
                        .unwrap_or(-1);
                    tx.execute("INSERT INTO effects (n) VALUES ($1)", &[&i])?;
                    h.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                },
            )?)
        } else {
            db.database
                .open_sqlite()?
                .execute("CREATE TABLE effects (n INTEGER NOT NULL)", [])?;
            Arc::new(SqliteInbox::new(
                &db.database,
                "effects",
                move |event, _, tx| {
                    let i = event
                        .data()
                        .get("seq")
                        .and_then(serde_json::Value::as_i64)
                        .unwrap_or(-1);
                    tx.execute("INSERT INTO effects (n) VALUES (?1)", [i])?;
                    h.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                },
            )?)
        };
        let mut registry = HandlerRegistry::new();
        registry.subscribe_arc("#", handler)?;
        let mut subscriber =
            EventSubscriber::builder(open(admin.config())?, &names.queue, Arc::new(registry))
                .exchange(&names.exchange)
                .prefetch(prefetch)
                .build()?;
        subscriber.setup()?;
        let running = subscriber.spawn()?;
        while admin.consumers(&names.queue)? == 0 {
            thread::sleep(Duration::from_millis(2));
        }
        let events = events(n)?;
        let mut publisher =
            pubsub_publisher::EventPublisher::new(open(admin.config())?, &names.exchange)?;
        let start = Instant::now();
        for chunk in events.chunks(1_000) {
            for outcome in publisher.publish_all(chunk) {
                outcome.map_err(|e| anyhow!("{e}"))?;
            }
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        while handled.load(Ordering::Relaxed) < n {
            if Instant::now() > deadline || running.is_finished() {
                bail!(
                    "the inbox handled {} of {n}",
                    handled.load(Ordering::Relaxed)
                );
            }
            thread::sleep(Duration::from_micros(200));
        }
        let rate = n as f64 / start.elapsed().as_secs_f64();
        publisher.close()?;
        running.stop()?;
        Ok(rate)
    })();
    admin.delete(&names);
    drop(db);
    result
}

/// Events per second on PostgreSQL without a broker, one prepared statement each, committed
/// by transactions of 100: the inbox row's handler write alone (`INSERT INTO effects`), and
/// that write beside a record of the event in a table keyed as the inbox's (a prepared
/// `INSERT .. ON CONFLICT DO NOTHING`, no savepoint). The second is the most any inbox that
/// writes its record with a statement of its own per event can reach, before the broker and
/// the subscriber cost anything.
fn postgres_without_broker(n: u64) -> Result<(f64, f64)> {
    let db = run_db(true)?;
    let mut client = db.database.connect_postgres()?;
    client.batch_execute(
        "CREATE TABLE effects (n BIGINT NOT NULL); CREATE TABLE records (consumer TEXT NOT NULL, \
         event_id UUID NOT NULL, PRIMARY KEY (consumer, event_id))",
    )?;
    let effect = client.prepare("INSERT INTO effects (n) VALUES ($1)")?;
    let record = client.prepare(
        "INSERT INTO records (consumer, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )?;
    let mut rates = [0.0; 2];
    for (with_record, rate) in rates.iter_mut().enumerate() {
        let start = Instant::now();
        let mut i: i64 = 0;
        while (i as u64) < n {
            let mut tx = client.transaction()?;
            for _ in 0..100 {
                if with_record == 1 {
                    tx.execute(&record, &[&"bench", &uuid::Uuid::new_v4()])?;
                }
                tx.execute(&effect, &[&i])?;
                i += 1;
            }
            tx.commit()?;
        }
        *rate = i as f64 / start.elapsed().as_secs_f64();
    }
    Ok((rates[0], rates[1]))
}

/// Runs the rows and prints them, with a JSON line each, and the targets.
pub(crate) fn run(admin: &mut Admin, options: &Options) -> Result<()> {
    let n: u64 = if options.quick { 5_000 } else { 20_000 };
    let latency_n: u64 = if options.quick { 500 } else { 2_000 };
    let rounds = if options.quick { 2 } else { 3 };
    let mut backends = vec![false];
    if pubsub_testkit::postgres_url().is_some() {
        backends.push(true);
    }
    eprintln!("outbox and inbox: {rounds} round(s)...");
    for &postgres in &backends {
        let name = if postgres { "PostgreSQL" } else { "SQLite" };
        let (mut throughput, mut bus_rates, mut outbox_rates) = (vec![], vec![], vec![]);
        let (mut p50s, mut p99s, mut direct, mut relayed) = (vec![], vec![], vec![], vec![]);
        let (mut inbox, mut store, mut inbox_rates) = (vec![], vec![], vec![]);
        let (mut same_batches, mut same_batch_rates) = (vec![], vec![]);
        let store_prefetch = pubsub_recorder::RecordOptions::default().prefetch;
        let (mut handler_alone, mut with_record) = (vec![], vec![]);
        for _ in 0..rounds {
            if postgres {
                let (alone, recorded) = postgres_without_broker(n)?;
                handler_alone.push(alone);
                with_record.push(recorded);
            }
            let plain = publish_all_rate(admin, n)?;
            let relayed_rate = outbox_rate(admin, postgres, n)?;
            bus_rates.push(plain);
            outbox_rates.push(relayed_rate);
            throughput.push(relayed_rate / plain);
            let d = latency(admin, postgres, false, latency_n)?;
            let o = latency(admin, postgres, true, latency_n)?;
            p50s.push(o.0 / d.0);
            p99s.push(o.1 / d.1);
            direct.push(d);
            relayed.push(o);
            let kind = if postgres {
                crate::store::Kind::Postgres
            } else {
                crate::store::Kind::Sqlite
            };
            let stored = crate::store::run_once(admin, kind, n)?;
            let handled = inbox_rate(admin, postgres, n, pubsub_subscriber::DEFAULT_PREFETCH)?;
            store.push(stored);
            inbox_rates.push(handled);
            inbox.push(handled / stored);
            let batched = inbox_rate(admin, postgres, n, store_prefetch)?;
            same_batch_rates.push(batched);
            same_batches.push(batched / stored);
        }
        let median = |v: &[f64]| Stat::of(v).map_or(f64::NAN, |s| s.median);
        let range = |v: &[f64]| {
            Stat::of(v).map_or("-".to_owned(), |s| {
                format!("{:.2}x [{:.2}-{:.2}]", s.median, s.min, s.max)
            })
        };
        let ms = |v: &[(f64, f64)], p99: bool| {
            let values: Vec<f64> = v.iter().map(|x| if p99 { x.1 } else { x.0 }).collect();
            median(&values)
        };
        println!();
        println!("## Exactly-once effects on {name} ({rounds} rounds, medians [min-max])");
        println!("| row | ours | baseline | ratio |");
        println!("|---|---|---|---|");
        println!(
            "| outbox, {n} events in transactions of {BATCH}, commit to confirm | {:.0}/s | publish_all through the bus {:.0}/s | {} |",
            median(&outbox_rates),
            median(&bus_rates),
            range(&throughput)
        );
        println!(
            "| latency at {RATE}/s, commit to handler, p50 | {:.2} ms | direct publish {:.2} ms | {} |",
            ms(&relayed, false),
            ms(&direct, false),
            range(&p50s)
        );
        println!(
            "| latency at {RATE}/s, commit to handler, p99 | {:.2} ms | direct publish {:.2} ms | {} |",
            ms(&relayed, true),
            ms(&direct, true),
            range(&p99s)
        );
        println!(
            "| inbox handler, one row per event, at the bus's prefetch ({}) | {:.0}/s | the event store {:.0}/s | {} |",
            pubsub_subscriber::DEFAULT_PREFETCH,
            median(&inbox_rates),
            median(&store),
            range(&inbox)
        );
        println!(
            "| inbox handler, one row per event, at the event store's prefetch ({}: the same batches) | {:.0}/s | the event store {:.0}/s | {} |",
            store_prefetch,
            median(&same_batch_rates),
            median(&store),
            range(&same_batches)
        );
        if postgres {
            let alone = median(&handler_alone);
            let recorded = median(&with_record);
            let stored = median(&store);
            println!(
                "| without a broker: the handler's write alone (a prepared one-row INSERT per event, transactions of 100) | {alone:.0}/s | the event store {stored:.0}/s | {:.2}x |",
                alone / stored
            );
            println!(
                "| without a broker: that write and a prepared inbox-like record per event (no savepoint) | {recorded:.0}/s | the event store {stored:.0}/s | {:.2}x |",
                recorded / stored
            );
        }
        println!(
            "{}",
            json!({
                "bench": "exactly_once",
                "database": name,
                "outbox_per_s": median(&outbox_rates),
                "publish_all_per_s": median(&bus_rates),
                "outbox_ratio": median(&throughput),
                "latency_p50_ms": ms(&relayed, false),
                "latency_p99_ms": ms(&relayed, true),
                "direct_p50_ms": ms(&direct, false),
                "direct_p99_ms": ms(&direct, true),
                "inbox_per_s": median(&inbox_rates),
                "event_store_per_s": median(&store),
                "inbox_ratio": median(&inbox),
                "inbox_same_batches_per_s": median(&same_batch_rates),
                "inbox_same_batches_ratio": median(&same_batches),
                "postgres_handler_alone_per_s": median(&handler_alone),
                "postgres_handler_and_record_per_s": median(&with_record),
            })
        );
        let target = |what: &str, value: f64, met: bool| {
            println!(
                "target: {name} {what}: {value:.2}x {}",
                if met { "MET" } else { "MISSED" }
            );
        };
        let t = median(&throughput);
        target("outbox at least 0.7x publish_all", t, t >= 0.7);
        let (a, b) = (median(&p50s), median(&p99s));
        target("latency p50 at most 2x a direct publish", a, a <= 2.0);
        target("latency p99 at most 2x a direct publish", b, b <= 2.0);
        let i = median(&inbox);
        target(
            "inbox handler at least 0.7x the event store, at the bus's prefetch",
            i,
            i >= 0.7,
        );
        let j = median(&same_batches);
        target(
            "inbox handler at least 0.7x the event store, at its prefetch (the same batches)",
            j,
            j >= 0.7,
        );
    }
    Ok(())
}
