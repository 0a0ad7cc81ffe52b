//! The inbox: a redelivered event whose transaction committed is not handled again.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use pubsub_core::{EventHandler, Metadata};
use pubsub_outbox::{inbox, SqliteInbox};
use pubsub_store::Database;

use crate::{databases, event};

/// The effects table's row count for `database`.
fn effects(database: &Database) -> i64 {
    if database.is_postgres() {
        let mut c = database.connect_postgres().unwrap();
        c.query_one("SELECT COUNT(*) FROM effects", &[])
            .unwrap()
            .get(0)
    } else {
        let c = database.open_sqlite().unwrap();
        c.query_row("SELECT COUNT(*) FROM effects", [], |r| r.get(0))
            .unwrap()
    }
}

/// An inbox handler that writes one effect row per event, failing while `fail` is above 0.
fn handler(database: &Database, fail: Arc<AtomicUsize>) -> Box<dyn EventHandler> {
    if database.is_postgres() {
        let mut c = database.connect_postgres().unwrap();
        c.batch_execute("CREATE TABLE effects (n BIGINT NOT NULL)")
            .unwrap();
        Box::new(
            pubsub_outbox::PostgresInbox::new(database, "effects", move |event, _, tx| {
                let n = event.data()["n"].as_i64().unwrap_or_default();
                tx.execute("INSERT INTO effects (n) VALUES ($1)", &[&n])?;
                if fail.load(Ordering::SeqCst) > 0 {
                    fail.fetch_sub(1, Ordering::SeqCst);
                    return Err("failing after its write".into());
                }
                Ok(())
            })
            .unwrap(),
        )
    } else {
        let c = database.open_sqlite().unwrap();
        c.execute("CREATE TABLE effects (n INTEGER NOT NULL)", [])
            .unwrap();
        Box::new(
            SqliteInbox::new(database, "effects", move |event, _, tx| {
                let n = event.data()["n"].as_i64().unwrap_or_default();
                tx.execute("INSERT INTO effects (n) VALUES (?1)", [n])?;
                if fail.load(Ordering::SeqCst) > 0 {
                    fail.fetch_sub(1, Ordering::SeqCst);
                    return Err("failing after its write".into());
                }
                Ok(())
            })
            .unwrap(),
        )
    }
}

#[test]
fn an_effect_is_applied_once_however_often_its_event_is_delivered() {
    for (_owned, database) in databases("inbox") {
        let fail = Arc::new(AtomicUsize::new(0));
        let handler = handler(&database, fail.clone());
        assert_eq!(handler.name(), "effects");
        let meta = Metadata::default();
        let first = event(1);
        for _ in 0..3 {
            handler.handle(&first, &meta).unwrap();
        }
        assert_eq!(effects(&database), 1, "{database}");
        assert!(inbox::handled(&database, "effects", first.event_id()).unwrap());
        // A failed handler's write is rolled back with its record: the retry runs it again.
        let second = event(2);
        fail.store(1, Ordering::SeqCst);
        assert!(handler.handle(&second, &meta).is_err());
        assert!(!inbox::handled(&database, "effects", second.event_id()).unwrap());
        assert_eq!(effects(&database), 1);
        handler.handle(&second, &meta).unwrap();
        handler.handle(&second, &meta).unwrap();
        assert_eq!(effects(&database), 2, "{database}");
        // Pruning keeps what is younger than asked.
        assert_eq!(
            inbox::prune(&database, std::time::Duration::from_secs(3600)).unwrap(),
            0
        );
    }
}

#[test]
fn a_database_in_memory_is_refused() {
    let e = SqliteInbox::new(&Database::sqlite_in_memory(), "x", |_, _, _| Ok(())).unwrap_err();
    assert!(e.to_string().contains("invalid outbox settings"), "{e}");
}

#[test]
fn under_a_group_commit_a_batch_commits_once_before_its_ack() {
    use pubsub_core::group_commit::Scope;
    for (_owned, database) in databases("group") {
        let fail = Arc::new(AtomicUsize::new(0));
        let handler = handler(&database, fail.clone());
        let meta = Metadata::default();
        let events: Vec<_> = (0..=6).map(event).collect();
        // What a worker does: a scope for its session, the handlers, a commit before the ack.
        let scope = Scope::enter().unwrap();
        for event in &events[1..=3] {
            handler.handle(event, &meta).unwrap();
        }
        // A failed handler's writes go back to its savepoint; the batch's others stay.
        fail.store(1, Ordering::SeqCst);
        assert!(handler.handle(&events[4], &meta).is_err());
        let again = &events[5];
        handler.handle(again, &meta).unwrap();
        // A duplicate within the batch, marked as the broker marks a copy it delivers again
        // (an unmarked one on PostgreSQL: `on_postgresql_a_batch_records_its_events_at_its_commit`).
        let redelivered = Metadata::default().with_redelivered(true);
        handler.handle(again, &redelivered).unwrap();
        assert_eq!(
            effects(&database),
            0,
            "nothing is visible before the commit: {database}"
        );
        assert_eq!(scope.commit().unwrap(), 1, "one transaction for the batch");
        assert_eq!(effects(&database), 4, "{database}");
        // A batch whose session ends before its commit is rolled back: delivered again, it
        // runs again, once.
        handler.handle(&events[6], &meta).unwrap();
        drop(scope);
        assert_eq!(effects(&database), 4, "{database}");
        let scope = Scope::enter().unwrap();
        handler.handle(&events[6], &meta).unwrap();
        handler.handle(&events[1], &redelivered).unwrap(); // committed in the first batch
        scope.commit().unwrap();
        assert_eq!(effects(&database), 5, "{database}");
    }
}

/// Effects of `n` in the table, PostgreSQL.
fn effects_of(client: &mut postgres::Client, n: i64) -> i64 {
    client
        .query_one("SELECT COUNT(*) FROM effects WHERE n = $1", &[&n])
        .unwrap()
        .get(0)
}

#[test]
fn on_postgresql_a_batch_records_its_events_at_its_commit() {
    use pubsub_core::group_commit::Scope;
    let Some((_owned, database)) = databases("batched")
        .into_iter()
        .find(|(_, d)| d.is_postgres())
    else {
        return; // PostgreSQL is not configured here (under CI=true it is, or `databases` fails)
    };
    let mut client = database.connect_postgres().unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    // Fails on the event whose `n` is in `failing`, counts every run.
    let failing = Arc::new(std::sync::Mutex::new(Vec::<i64>::new()));
    let handler = {
        let (runs, failing) = (runs.clone(), failing.clone());
        client
            .batch_execute("CREATE TABLE effects (n BIGINT NOT NULL)")
            .unwrap();
        pubsub_outbox::PostgresInbox::new(&database, "effects", move |event, _, tx| {
            let n = event.data()["n"].as_i64().unwrap_or_default();
            runs.fetch_add(1, Ordering::SeqCst);
            tx.execute("INSERT INTO effects (n) VALUES ($1)", &[&n])?;
            if failing.lock().unwrap().contains(&n) {
                return Err(format!("refusing {n}").into());
            }
            Ok(())
        })
        .unwrap()
    };
    let fresh = Metadata::default();
    let redelivered = Metadata::default().with_redelivered(true);
    let events: Vec<_> = (0..=9).map(event).collect();

    // A failure in mid-batch: its writes go, the earlier deliveries run again (their writes
    // were rolled back with it), and the rest of the batch runs checked.
    let scope = Scope::enter().unwrap();
    for e in &events[1..=3] {
        handler.handle(e, &fresh).unwrap();
    }
    failing.lock().unwrap().push(4);
    assert!(handler.handle(&events[4], &fresh).is_err());
    handler.handle(&events[5], &fresh).unwrap();
    assert_eq!(scope.commit().unwrap(), 1);
    assert_eq!(runs.load(Ordering::SeqCst), 3 + 1 + 3 + 1, "1-3 ran twice");
    for n in [1, 2, 3, 5] {
        assert_eq!(effects_of(&mut client, n), 1, "event {n}");
        assert!(inbox::handled(&database, "effects", events[n as usize].event_id()).unwrap());
    }
    assert_eq!(effects_of(&mut client, 4), 0);
    assert!(!inbox::handled(&database, "effects", events[4].event_id()).unwrap());

    // A copy of an event handled before, not marked: the batch's commit fails, nothing of it
    // is kept; delivered again, marked, the copy is acked without running.
    handler.handle(&events[6], &fresh).unwrap();
    handler.handle(&events[1], &fresh).unwrap();
    let e = scope.commit().unwrap_err();
    let text = pubsub_core::text::error_chain(e.as_ref());
    assert!(text.contains("handled before"), "{text}");
    assert_eq!(effects_of(&mut client, 6), 0);
    assert_eq!(effects_of(&mut client, 1), 1);
    // The session ends (its scope fails every later commit), and the next one runs the batch.
    drop(scope);
    let scope = Scope::enter().unwrap();
    handler.handle(&events[6], &redelivered).unwrap();
    let before = runs.load(Ordering::SeqCst);
    handler.handle(&events[1], &redelivered).unwrap();
    assert_eq!(
        runs.load(Ordering::SeqCst),
        before,
        "not run: recorded before"
    );
    scope.commit().unwrap();
    assert_eq!(effects_of(&mut client, 6), 1);
    assert_eq!(effects_of(&mut client, 1), 1);

    // Two copies in one batch, neither marked: the same.
    handler.handle(&events[7], &fresh).unwrap();
    handler.handle(&events[7], &fresh).unwrap();
    assert!(scope.commit().is_err());
    assert_eq!(effects_of(&mut client, 7), 0);
    drop(scope);
    let scope = Scope::enter().unwrap();

    // A handler that succeeds on an event, then fails on it when its batch runs again: the
    // batch is not kept (its success was reported, and must not be acked).
    handler.handle(&events[8], &fresh).unwrap();
    failing.lock().unwrap().extend([8, 9]);
    assert!(handler.handle(&events[9], &fresh).is_err());
    let e = scope.commit().unwrap_err();
    let text = pubsub_core::text::error_chain(e.as_ref());
    assert!(text.contains("then failed on it"), "{text}");
    assert_eq!(effects_of(&mut client, 8), 0);
    drop(scope);
}
