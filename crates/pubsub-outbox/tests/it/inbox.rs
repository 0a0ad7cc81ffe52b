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
        handler.handle(again, &meta).unwrap(); // a duplicate within the batch
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
        handler.handle(&events[1], &meta).unwrap(); // committed in the first batch
        scope.commit().unwrap();
        assert_eq!(effects(&database), 5, "{database}");
    }
}
