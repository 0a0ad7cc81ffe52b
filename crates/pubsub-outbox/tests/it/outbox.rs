//! The outbox: staged in a transaction, published by the relay once it commits.

use std::time::Duration;

use pubsub_amqp::QueueConfig;
use pubsub_core::json;
use pubsub_outbox::{Error, Outbox};
use pubsub_store::Database;
use pubsub_testkit::Bus;

use crate::{databases, event, in_transaction, wait_for};

#[test]
fn committed_events_are_published_in_order_and_rolled_back_ones_never() {
    let Some(mut bus) = Bus::new("outbox") else {
        return;
    };
    let queue = bus.bound_queue("outboxq", "#", &QueueConfig::default());
    for (_owned, database) in databases("outbox") {
        let outbox = Outbox::open(&database).unwrap();
        // A poll far longer than the test: only the wake-ups (the outbox's own commit on
        // SQLite, the commit's notification on PostgreSQL) can make the relay publish in time.
        let relay = outbox
            .relay(bus.config(), bus.exchange())
            .app_id("outbox-test")
            .poll(Duration::from_secs(120))
            .start()
            .unwrap();
        for i in 0..50 {
            in_transaction(&database, |stage, _| stage(&event(i)), &outbox, true);
        }
        in_transaction(&database, |stage, _| stage(&event(999)), &outbox, false);
        assert!(
            wait_for(Duration::from_secs(20), || bus.ready(&queue) == Some(50)),
            "{database}: {:?} ready",
            bus.ready(&queue)
        );
        let taken = bus.drain(&queue);
        let numbers: Vec<u64> = taken
            .iter()
            .map(|t| {
                json::from_slice(&t.body).unwrap().data()["n"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(numbers, (0..50).collect::<Vec<_>>(), "{database}");
        assert_eq!(taken[0].properties.app_id.as_deref(), Some("outbox-test"));
        assert!(wait_for(Duration::from_secs(5), || outbox
            .pending()
            .unwrap()
            == 0));
        let stats = relay.stop().unwrap();
        assert_eq!(stats.published, 50, "{database}");
    }
}

#[test]
fn events_committed_while_no_relay_runs_are_published_when_one_starts() {
    let Some(mut bus) = Bus::new("outbox") else {
        return;
    };
    let queue = bus.bound_queue("outboxq", "#", &QueueConfig::default());
    for (_owned, database) in databases("outbox-later") {
        let outbox = Outbox::open(&database).unwrap();
        for i in 0..10 {
            in_transaction(&database, |stage, _| stage(&event(i)), &outbox, true);
        }
        // Ten more in one statement (one round trip on PostgreSQL), in order.
        let batch: Vec<_> = (10..20).map(event).collect();
        if database.is_postgres() {
            let mut client = database.connect_postgres().unwrap();
            let mut tx = client.transaction().unwrap();
            outbox.stage_all(&mut tx, &batch).unwrap();
            outbox.commit(tx).unwrap();
        } else {
            let mut connection = database.open_sqlite().unwrap();
            let mut tx = connection.transaction().unwrap();
            outbox.stage_all(&mut tx, &batch).unwrap();
            outbox.commit(tx).unwrap();
        }
        assert_eq!(outbox.pending().unwrap(), 20);
        let relay = outbox
            .relay(bus.config(), bus.exchange())
            .batch(7)
            .start()
            .unwrap();
        assert!(wait_for(Duration::from_secs(20), || bus.ready(&queue) == Some(20)));
        assert_eq!(bus.drain(&queue).len(), 20);
        assert_eq!(relay.stop().unwrap().batches, 3, "{database}");
    }
}

#[test]
fn relays_sharing_an_outbox_publish_each_event_once() {
    let Some(mut bus) = Bus::new("outbox") else {
        return;
    };
    let queue = bus.bound_queue("outboxq", "#", &QueueConfig::default());
    for (_owned, database) in databases("outbox-shared") {
        let outbox = Outbox::open(&database).unwrap();
        let relays: Vec<_> = (0..3)
            .map(|_| {
                // Each instance of a service opens the outbox itself.
                Outbox::open(&database)
                    .unwrap()
                    .relay(bus.config(), bus.exchange())
                    .poll(Duration::from_millis(50))
                    .start()
                    .unwrap()
            })
            .collect();
        for i in 0..300 {
            in_transaction(&database, |stage, _| stage(&event(i)), &outbox, true);
        }
        assert!(wait_for(Duration::from_secs(30), || outbox
            .pending()
            .unwrap()
            == 0));
        std::thread::sleep(Duration::from_millis(300));
        let taken = bus.drain(&queue);
        assert_eq!(taken.len(), 300, "{database}: each event once");
        let published: u64 = relays
            .into_iter()
            .map(|r| r.stop().unwrap().published)
            .sum();
        assert_eq!(published, 300);
    }
}

#[test]
fn a_standby_takes_over_when_the_lease_holder_stops() {
    let Some(mut bus) = Bus::new("outbox") else {
        return;
    };
    let queue = bus.bound_queue("outboxq", "#", &QueueConfig::default());
    for (_owned, database) in databases("outbox-standby") {
        let outbox = Outbox::open(&database).unwrap();
        let start = || {
            outbox
                .relay(bus.config(), bus.exchange())
                .poll(Duration::from_millis(100))
                .lease(Duration::from_secs(60))
                .start()
                .unwrap()
        };
        let first = start();
        assert!(wait_for(Duration::from_secs(5), || first.stats().batches == 0));
        in_transaction(&database, |stage, _| stage(&event(1)), &outbox, true);
        assert!(wait_for(Duration::from_secs(10), || bus.ready(&queue) == Some(1)));
        let second = start();
        // The first gives its lease up on stop: the second publishes at once, long before
        // the 60 s lease would have ended.
        first.stop().unwrap();
        in_transaction(&database, |stage, _| stage(&event(2)), &outbox, true);
        assert!(
            wait_for(Duration::from_secs(10), || bus.ready(&queue) == Some(2)),
            "{database}"
        );
        assert_eq!(second.stop().unwrap().published, 1);
        bus.drain(&queue);
    }
}

#[test]
fn bad_databases_get_clear_errors() {
    // PostgreSQL down (nothing listens on port 1).
    let down = Database::parse("postgres://postgres@127.0.0.1:1/test?connect_timeout=2").unwrap();
    let e = Outbox::open(&down).unwrap_err();
    assert!(matches!(e, Error::Store(_)), "{e:?}");
    assert!(
        pubsub_core::text::error_chain(&e).contains("cannot open the database"),
        "{e}"
    );
    // Outbox tables of a newer schema.
    for (_owned, database) in databases("outbox-newer") {
        Outbox::open(&database).unwrap();
        if database.is_postgres() {
            let mut c = database.connect_postgres().unwrap();
            c.execute(
                "INSERT INTO pubsub_outbox_schema (version) VALUES (99)",
                &[],
            )
            .unwrap();
        } else {
            let c = database.open_sqlite().unwrap();
            c.execute("INSERT INTO pubsub_outbox_schema (version) VALUES (99)", [])
                .unwrap();
        }
        let e = Outbox::open(&database).unwrap_err();
        assert!(
            pubsub_core::text::error_chain(&e).contains("outbox schema is version 99"),
            "{database}: {e}"
        );
    }
}

#[test]
fn events_staged_by_an_inbox_handler_wake_the_relay_once_committed() {
    use pubsub_core::group_commit::Scope;
    use pubsub_core::{EventHandler, Metadata};
    let Some(mut bus) = Bus::new("outbox-inbox") else {
        return;
    };
    let queue = bus.bound_queue("reactions", "stock.#", &QueueConfig::default());
    for (_owned, database) in databases("outbox-inbox") {
        let outbox = Outbox::open(&database).unwrap();
        // Only a wake-up can make the relay publish in time.
        let relay = outbox
            .relay(bus.config(), bus.exchange())
            .poll(Duration::from_secs(120))
            .start()
            .unwrap();
        let staging = outbox.clone();
        let react = move |n: u64| {
            pubsub_core::Event::new("stock", "reserved", serde_json::json!({ "n": n })).unwrap()
        };
        let handler: Box<dyn EventHandler> = if database.is_postgres() {
            Box::new(
                pubsub_outbox::PostgresInbox::new(&database, "react", move |event, _, tx| {
                    staging.stage(tx, &react(event.data()["n"].as_u64().unwrap_or(0)))?;
                    Ok(())
                })
                .unwrap(),
            )
        } else {
            Box::new(
                pubsub_outbox::SqliteInbox::new(&database, "react", move |event, _, tx| {
                    staging.stage(tx, &react(event.data()["n"].as_u64().unwrap_or(0)))?;
                    Ok(())
                })
                .unwrap(),
            )
        };
        let meta = Metadata::default();
        // Alone, the handler commits its own transaction, and the relay is woken.
        handler.handle(&event(1), &meta).unwrap();
        assert!(
            wait_for(Duration::from_secs(10), || bus.ready(&queue) == Some(1)),
            "{database}: {:?} ready",
            bus.ready(&queue)
        );
        // Under a worker's group commit: published once the batch commits, not before.
        let scope = Scope::enter().unwrap();
        handler.handle(&event(2), &meta).unwrap();
        handler.handle(&event(3), &meta).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(
            bus.ready(&queue),
            Some(1),
            "{database}: nothing before the commit"
        );
        scope.commit().unwrap();
        drop(scope);
        assert!(
            wait_for(Duration::from_secs(10), || bus.ready(&queue) == Some(3)),
            "{database}: {:?} ready",
            bus.ready(&queue)
        );
        bus.drain(&queue);
        relay.stop().unwrap();
    }
}

/// An async service stages in its own `tokio_postgres` transaction: published if and only
/// if it commits.
#[cfg(feature = "tokio")]
#[test]
fn events_staged_in_an_async_transaction_are_kept_only_if_it_commits() {
    use pubsub_publisher::PublishOptions;
    let Some(owned) = pubsub_testkit::TestDatabase::postgres("outbox-async") else {
        return;
    };
    let database = Database::parse(owned.url()).unwrap();
    let outbox = Outbox::open(&database).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // The test database is a schema of the database under test.
        let (base, schema) = owned.url().rsplit_once("schema=").unwrap();
        let base = base.trim_end_matches(['?', '&']);
        let (mut client, connection) = tokio_postgres::connect(base, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
            .batch_execute(&format!("SET search_path TO {schema}"))
            .await
            .unwrap();
        let options = PublishOptions::correlated("flow-7");
        let tx = client.transaction().await.unwrap();
        outbox.stage_async(&tx, &event(1), &options).await.unwrap();
        tx.commit().await.unwrap();
        let tx = client.transaction().await.unwrap();
        outbox.stage_async(&tx, &event(2), &options).await.unwrap();
        tx.rollback().await.unwrap();
    });
    assert_eq!(outbox.pending().unwrap(), 1);
}
