//! Exactly-once effects through the bus (feature `outbox`): the bus runs the outbox's relay,
//! and an inbox handler's writes, its record of the event and the events it stages commit
//! together.

use std::time::{Duration, Instant};

use pubsub::outbox::{Database, Outbox, SqliteInbox};
use pubsub::{handler_fn, EventBus};
use pubsub_testkit::{unique, Bus, TestDatabase};

use crate::{event, WAIT};

fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_redelivered_event_applies_its_effect_and_stages_its_follow_up_once() {
    let Some(mut fixture) = Bus::new("once") else {
        return;
    };
    let db = TestDatabase::sqlite("once");
    let database = Database::parse(db.url()).unwrap();
    let connection = database.open_sqlite().unwrap();
    connection
        .execute("CREATE TABLE reservations (order_n INTEGER NOT NULL)", [])
        .unwrap();
    let outbox = Outbox::open(&database).unwrap();
    let service = unique("once");
    let mut bus = EventBus::builder(&service)
        .amqp(fixture.config().clone())
        .exchange(fixture.exchange())
        .outbox(outbox.clone())
        .build()
        .unwrap();
    for queue in bus.queues() {
        fixture.delete_queue_at_end(&queue);
    }
    let staging = outbox.clone();
    bus.subscribe(
        "order.created",
        SqliteInbox::new(&database, "reserve-stock", move |event, _, tx| {
            tx.execute(
                "INSERT INTO reservations (order_n) VALUES (?1)",
                [event.data()["n"].as_i64()],
            )?;
            let reserved = pubsub::Event::new("stock", "reserved", event.data().clone().into())?;
            staging.stage(tx, &reserved)?;
            Ok(())
        })
        .unwrap(),
    )
    .unwrap();
    let (seen, reserved) = crossbeam_channel::unbounded();
    bus.subscribe(
        "stock.reserved",
        handler_fn("count", move |event, _| {
            seen.send(event.data()["n"].as_u64()).unwrap();
            Ok(())
        }),
    )
    .unwrap();
    bus.start().unwrap();

    // The same event three times (a publisher's retry, a redelivery): one effect.
    let created = event("order", "created", 7);
    for _ in 0..3 {
        bus.publish(created.clone()).unwrap();
    }
    // Staged in the handler's transaction, committed with its effect: the relay publishes it
    // (on SQLite within its poll interval, as that commit is not the outbox's own).
    assert_eq!(reserved.recv_timeout(WAIT).unwrap(), Some(7));
    eventually("the outbox to drain", || outbox.pending().unwrap() == 0);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        reserved.try_recv().is_err(),
        "stock.reserved published twice"
    );
    let effects: i64 = connection
        .query_row("SELECT COUNT(*) FROM reservations", [], |r| r.get(0))
        .unwrap();
    assert_eq!(effects, 1);

    let stats = bus.stop().unwrap();
    let relay = stats.relay.unwrap();
    assert_eq!(relay.published, 1, "{stats}");
    assert!(
        stats.to_string().contains("outbox relay, 1 published"),
        "{stats}"
    );
}

#[test]
fn an_in_process_bus_cannot_run_a_relay() {
    let db = TestDatabase::sqlite("once-inproc");
    let outbox = Outbox::open(&Database::parse(db.url()).unwrap()).unwrap();
    let e = EventBus::builder("svc")
        .in_process()
        .outbox(outbox)
        .build()
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("the outbox's relay run over the broker"),
        "{e}"
    );
}
