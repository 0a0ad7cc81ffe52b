//! The same checks on each backend.

use pubsub_core::{Event, Metadata};
use pubsub_store::{
    Database, Error, EventQuery, EventRow, EventStore, NewTask, Order, TaskChange, TaskFilter,
    TaskRun, TaskStatus, TaskStore,
};
use serde_json::json;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::support::TestDb;

fn row(key: &str, at: OffsetDateTime, correlation: Option<&str>) -> (Event, EventRow) {
    let event = Event::from_routing_key(key)
        .data(json!({ "n": key }))
        .timestamp(at)
        .build()
        .unwrap();
    let mut headers = pubsub_core::Headers::new();
    headers.insert("x-trace".into(), json!("t-1"));
    let meta = Metadata::default()
        .with_correlation_id(correlation.map(str::to_owned))
        .with_app_id(Some("shop".into()))
        .with_headers(headers);
    let row = EventRow::new(&event, &meta, OffsetDateTime::now_utc());
    (event, row)
}

#[test]
fn events_are_stored_once_and_read_back_whole() {
    for db in TestDb::all() {
        let mut store = EventStore::open(&db.database).unwrap();
        let t0 = OffsetDateTime::now_utc()
            .replace_nanosecond(123_456_000)
            .unwrap();
        let (event, first) = row("order.created", t0, Some("flow-1"));
        assert_eq!(
            store.append(std::slice::from_ref(&first)).unwrap(),
            1,
            "{}",
            db.database
        );
        // Redelivered, alone or in a batch: stored once.
        assert_eq!(store.append(std::slice::from_ref(&first)).unwrap(), 0);
        let (_, second) = row("order.paid", t0 + Duration::seconds(1), Some("flow-1"));
        assert_eq!(store.append(&[first, second]).unwrap(), 1);
        assert_eq!(store.count().unwrap(), 2);

        let stored = store.get(event.event_id()).unwrap().expect("stored");
        assert_eq!(stored.event, event, "{}", db.database);
        assert_eq!(stored.routing_key, "order.created");
        assert_eq!(stored.correlation_id.as_deref(), Some("flow-1"));
        assert_eq!(stored.producer.as_deref(), Some("shop"));
        assert_eq!(stored.headers["x-trace"], json!("t-1"));
        assert!(store.get(Uuid::new_v4()).unwrap().is_none());

        // Opening again finds the schema in place.
        drop(store);
        let mut again = EventStore::open(&db.database).unwrap();
        assert_eq!(again.count().unwrap(), 2);
    }
}

#[test]
fn queries_select_by_pattern_time_chain_and_id() {
    for db in TestDb::all() {
        let mut store = EventStore::open(&db.database).unwrap();
        let t0 = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
        let (root, root_row) = row("order.created", t0, None);
        let root_id = root.event_id().to_string();
        let rows = vec![
            root_row,
            row("order.paid", t0 + Duration::seconds(1), Some(&root_id)).1,
            row("order.created.v2", t0 + Duration::seconds(2), None).1,
            row("user.registered", t0 + Duration::seconds(3), Some(&root_id)).1,
            row("user.deleted", t0 + Duration::seconds(4), Some("other")).1,
        ];
        store.append(&rows).unwrap();
        let keys = |q: EventQuery, store: &mut EventStore| -> Vec<String> {
            store
                .query(&q)
                .unwrap()
                .into_iter()
                .map(|e| e.routing_key)
                .collect()
        };
        let name = db.database.to_string();
        assert_eq!(
            keys(EventQuery::new().pattern("order.*").unwrap(), &mut store),
            ["order.created", "order.paid"],
            "{name}"
        );
        assert_eq!(
            keys(EventQuery::new().pattern("order.#").unwrap(), &mut store),
            ["order.created", "order.paid", "order.created.v2"]
        );
        assert_eq!(
            keys(EventQuery::new().pattern("*.created").unwrap(), &mut store),
            ["order.created"]
        );
        assert_eq!(
            keys(
                EventQuery::new()
                    .since(t0 + Duration::seconds(1))
                    .until(t0 + Duration::seconds(3)),
                &mut store
            ),
            ["order.paid", "order.created.v2"]
        );
        // A causal chain: the root event (by id) and every event correlated to it.
        assert_eq!(
            keys(EventQuery::new().correlation_id(&root_id), &mut store),
            ["order.created", "order.paid", "user.registered"]
        );
        assert_eq!(
            keys(EventQuery::new().event_id(root.event_id()), &mut store),
            ["order.created"]
        );
        assert_eq!(
            keys(
                EventQuery::new().order(Order::NewestFirst).limit(2),
                &mut store
            ),
            ["user.deleted", "user.registered"]
        );
        // The limit counts events the pattern admits.
        assert_eq!(
            keys(
                EventQuery::new().pattern("user.*").unwrap().limit(1),
                &mut store
            ),
            ["user.registered"]
        );
        assert!(keys(EventQuery::new().limit(0), &mut store).is_empty());
    }
}

#[test]
fn a_task_goes_from_pending_to_completed_or_failed() {
    for db in TestDb::all() {
        let mut tasks = TaskStore::open(&db.database).unwrap();
        let payload = json!({ "invoice": 7 });
        let new = |id| NewTask {
            task_id: id,
            task_name: "send-report",
            payload: &payload,
            routing_key: "routing.task.send.report",
            correlation_id: Some("flow-9"),
            producer: Some("billing"),
            time_limit: None,
        };
        let (ok, bad) = (Uuid::new_v4(), Uuid::new_v4());
        let record = tasks.receive(&new(ok)).unwrap();
        assert_eq!(record.status, TaskStatus::Pending, "{}", db.database);
        assert_eq!(record.attempts, 0);
        assert_eq!(record.payload, payload);
        assert_eq!(tasks.start(ok).unwrap().status, TaskStatus::Running);
        tasks.complete(ok, &json!({ "sent": 3 })).unwrap();
        // Delivered again: the record is kept as it is.
        let again = tasks.receive(&new(ok)).unwrap();
        assert_eq!(again.status, TaskStatus::Completed);
        assert_eq!(again.result, Some(json!({ "sent": 3 })));
        assert_eq!(again.attempts, 1);

        tasks.receive(&new(bad)).unwrap();
        tasks.start(bad).unwrap();
        tasks.retry_later(bad, "timeout").unwrap();
        let pending = tasks.get(bad).unwrap().unwrap();
        assert_eq!(
            (pending.status, pending.error.as_deref()),
            (TaskStatus::Pending, Some("timeout"))
        );
        assert_eq!(tasks.start(bad).unwrap().attempts, 2);
        tasks.fail(bad, "still failing").unwrap();
        let failed = tasks.get(bad).unwrap().unwrap();
        assert_eq!(failed.status, TaskStatus::Failed);
        assert_eq!(failed.attempts, 2);
        assert_eq!(failed.correlation_id.as_deref(), Some("flow-9"));
        assert_eq!(failed.producer.as_deref(), Some("billing"));

        let listed = tasks
            .list(&TaskFilter {
                status: Some(TaskStatus::Failed),
                ..TaskFilter::default()
            })
            .unwrap();
        assert_eq!(listed.iter().map(|t| t.task_id).collect::<Vec<_>>(), [bad]);
        assert_eq!(tasks.list(&TaskFilter::default()).unwrap().len(), 2);
        let missing = Uuid::new_v4();
        assert!(
            matches!(tasks.start(missing), Err(Error::UnknownTask { task_id }) if task_id == missing)
        );
    }
}

/// A `resize` task with `payload`, nothing else set.
fn resize(task_id: Uuid, payload: &serde_json::Value) -> NewTask<'_> {
    NewTask {
        task_id,
        task_name: "resize",
        payload,
        routing_key: "routing.task.resize",
        correlation_id: None,
        producer: None,
        time_limit: None,
    }
}

#[test]
fn a_worker_admits_tasks_in_one_statement_and_commits_them_by_batch() {
    for db in TestDb::all() {
        let mut tasks = TaskStore::open(&db.database).unwrap();
        let mut reader = TaskStore::open(&db.database).unwrap();
        let payload = json!({ "n": 1 });
        let new = |id| resize(id, &payload);
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        tasks.begin().unwrap();
        assert!(tasks.in_transaction());
        assert!(tasks.begin().is_err(), "one transaction at a time");
        let admitted = tasks.admit(&new(a)).unwrap();
        assert_eq!(
            (admitted.status, admitted.attempts),
            (TaskStatus::Running, 1)
        );
        assert!(admitted.started_at.is_some() && admitted.finished_at.is_none());
        tasks.complete(a, &json!("done")).unwrap();
        tasks.admit(&new(b)).unwrap();
        tasks.retry_later(b, "busy").unwrap();
        assert!(
            reader.get(a).unwrap().is_none(),
            "{}: not before the commit",
            db.database
        );
        tasks.commit().unwrap();
        assert!(!tasks.in_transaction());
        let done = reader.get(a).unwrap().unwrap();
        assert_eq!(done.status, TaskStatus::Completed, "{}", db.database);
        let (started, finished) = (done.started_at.unwrap(), done.finished_at.unwrap());
        assert!(
            done.created_at <= started && started <= finished,
            "{done:?}"
        );
        let waiting = reader.get(b).unwrap().unwrap();
        assert_eq!(waiting.status, TaskStatus::Pending);
        assert!(waiting.finished_at.is_none(), "a retry waits: not finished");
        // A COMPLETED task is not started again; another is, one attempt more.
        assert_eq!(tasks.admit(&new(a)).unwrap().status, TaskStatus::Completed);
        assert_eq!(tasks.admit(&new(a)).unwrap().attempts, 1);
        tasks.begin().unwrap();
        assert_eq!(tasks.admit(&new(b)).unwrap().attempts, 2);
        tasks.fail(b, "for good").unwrap();
        tasks.rollback().unwrap();
        let rolled_back = reader.get(b).unwrap().unwrap();
        assert_eq!(
            (rolled_back.status, rolled_back.attempts),
            (TaskStatus::Pending, 1)
        );
        tasks.admit(&new(b)).unwrap();
        tasks.fail(b, "for good").unwrap();
        let failed = reader.get(b).unwrap().unwrap();
        assert_eq!((failed.status, failed.attempts), (TaskStatus::Failed, 2));
        assert!(failed.finished_at.is_some());
    }
}

#[test]
fn a_batch_of_tasks_is_claimed_and_each_row_written_once() {
    for db in TestDb::all() {
        let mut tasks = TaskStore::open(&db.database).unwrap();
        let payloads: Vec<_> = (0..5)
            .map(|n| json!({ "n": n, "nul": "a\u{0}b" }))
            .collect();
        let ids: Vec<Uuid> = (0..5).map(|_| Uuid::new_v4()).collect();
        let batch: Vec<NewTask<'_>> = ids
            .iter()
            .zip(&payloads)
            .map(|(id, payload)| NewTask {
                task_id: *id,
                task_name: "resize",
                payload,
                routing_key: "routing.task.resize",
                correlation_id: Some("flow"),
                producer: None,
                time_limit: None,
            })
            .collect();
        // One COMPLETED before, one waiting for its second attempt.
        tasks.admit(&batch[2]).unwrap();
        tasks.complete(ids[2], &json!("before")).unwrap();
        tasks.admit(&batch[1]).unwrap();
        tasks.retry_later(ids[1], "first").unwrap();
        // Outside a transaction, or an id twice: clear errors.
        assert!(tasks.claim_all(&ids).is_err(), "{}", db.database);
        tasks.begin().unwrap();
        assert!(tasks.claim_all(&[ids[0], ids[0]]).is_err());
        let claimed = tasks.claim_all(&ids).unwrap();
        use TaskStatus::*;
        let states: Vec<_> = claimed
            .iter()
            .map(|c| c.map(|s| (s.status, s.attempts)))
            .collect();
        assert_eq!(
            states,
            [None, Some((Pending, 1)), Some((Completed, 1)), None, None],
            "{}",
            db.database
        );
        let started = OffsetDateTime::now_utc() - Duration::milliseconds(5);
        let nul = json!({ "text": "x\u{0}y" });
        let run = |i: usize, outcome| TaskRun {
            task: batch[i],
            started_at: started,
            outcome,
        };
        assert!(tasks.record_all(&[run(0, TaskChange::Start)]).is_err());
        let left = tasks
            .record_all(&[
                run(0, TaskChange::Complete(&nul)),
                run(1, TaskChange::RetryLater("busy")),
                run(2, TaskChange::Complete(&nul)),
                run(3, TaskChange::Fail("no\u{0}pe")),
                run(4, TaskChange::Complete(&nul)),
            ])
            .unwrap();
        assert_eq!(left, [ids[2]], "the COMPLETED one is left: {}", db.database);
        tasks.commit().unwrap();
        assert!(tasks
            .record_all(&[run(0, TaskChange::Complete(&nul))])
            .is_err());
        let mut read = |id| tasks.get(id).unwrap().unwrap();
        let done = read(ids[0]);
        assert_eq!(
            (done.status, done.result, done.attempts),
            (Completed, Some(nul.clone()), 1)
        );
        assert_eq!(done.payload, payloads[0], "NUL kept: {}", db.database);
        assert_eq!(done.correlation_id.as_deref(), Some("flow"));
        let at = |t: Option<OffsetDateTime>| t.map(|t| t.unix_timestamp_nanos() / 1_000_000);
        assert_eq!(at(done.started_at), at(Some(started)), "{}", db.database);
        assert!(done.finished_at.is_some() && done.finished_at >= done.started_at);
        let waiting = read(ids[1]);
        assert_eq!(
            (waiting.status, waiting.error.as_deref(), waiting.attempts),
            (Pending, Some("busy"), 2)
        );
        assert!(waiting.finished_at.is_none());
        let failed = read(ids[3]);
        assert_eq!(
            (failed.status, failed.error.as_deref()),
            (Failed, Some("no\u{0}pe"))
        );
        assert!(failed.finished_at.is_some());
        assert_eq!(read(ids[2]).result, Some(json!("before")));
        // A batch of changes: an id twice, or one never received: clear errors.
        let changes = [
            (ids[1], TaskChange::Fail("x")),
            (ids[1], TaskChange::Fail("x")),
        ];
        assert!(tasks.change_all(&changes).is_err());
        let missing = Uuid::new_v4();
        assert!(matches!(
            tasks.change_all(&[(ids[1], TaskChange::Fail("x")), (missing, TaskChange::Fail("x"))]),
            Err(Error::UnknownTask { task_id }) if task_id == missing
        ));
    }
}

#[test]
fn a_claim_opens_its_transaction_and_keeps_its_rows_from_other_workers() {
    for db in TestDb::all() {
        let mut tasks = TaskStore::open(&db.database).unwrap();
        let payload = json!({});
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
        let new = |id| resize(id, &payload);
        tasks.admit(&new(ids[0])).unwrap();
        tasks.complete(ids[0], &json!(1)).unwrap();
        tasks.admit(&new(ids[2])).unwrap();
        tasks.retry_later(ids[2], "first").unwrap();
        // An id twice: refused, nothing opened.
        assert!(tasks.begin_claim(&[ids[1], ids[1]]).is_err());
        assert!(!tasks.in_transaction());
        let claimed = tasks.begin_claim(&ids).unwrap();
        let states: Vec<_> = claimed
            .iter()
            .map(|c| c.map(|s| (s.task_id, s.status, s.attempts)))
            .collect();
        use TaskStatus::*;
        assert_eq!(
            states,
            [
                Some((ids[0], Completed, 1)),
                None,
                Some((ids[2], Pending, 1))
            ],
            "in the order asked: {}",
            db.database
        );
        assert!(tasks.in_transaction());
        assert!(tasks.begin_claim(&ids).is_err(), "one is open already");
        // The claim's transaction is the batch's: a record in it commits with it.
        let started = OffsetDateTime::now_utc();
        let left = tasks
            .record_all(&[TaskRun {
                task: new(ids[2]),
                started_at: started,
                outcome: TaskChange::Complete(&payload),
            }])
            .unwrap();
        assert!(left.is_empty());
        // Another worker claiming a stored task of the batch waits for its commit, then
        // reads what it committed.
        let (tx, rx) = std::sync::mpsc::channel();
        let other = {
            let database = db.database.clone();
            let id = ids[2];
            std::thread::spawn(move || {
                let mut tasks = TaskStore::open(&database).unwrap();
                let claimed = tasks.begin_claim(&[id]).unwrap();
                tx.send(claimed[0].map(|s| (s.status, s.attempts))).unwrap();
                tasks.rollback().unwrap();
            })
        };
        assert!(
            rx.recv_timeout(std::time::Duration::from_millis(300))
                .is_err(),
            "the other claim waits: {}",
            db.database
        );
        tasks.commit().unwrap();
        assert_eq!(
            rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap(),
            Some((Completed, 2)),
            "{}",
            db.database
        );
        other.join().unwrap();
        // Nothing to claim still opens the transaction.
        assert_eq!(tasks.begin_claim(&[]).unwrap(), []);
        assert!(tasks.in_transaction());
        tasks.rollback().unwrap();
    }
}

#[test]
fn tasks_are_cancelled_before_they_start_and_interrupted_runs_are_noted() {
    for db in TestDb::all() {
        let mut tasks = TaskStore::open(&db.database).unwrap();
        let payload = json!({});
        let new = |id, limit| NewTask {
            task_id: id,
            task_name: "export",
            payload: &payload,
            routing_key: "routing.task.export",
            correlation_id: None,
            producer: None,
            time_limit: limit,
        };
        // Cancelled before any worker saw it: a worker that receives it skips it.
        let early = Uuid::new_v4();
        let cancelled = tasks.cancel(early).unwrap();
        assert_eq!(cancelled.status, TaskStatus::Cancelled, "{}", db.database);
        assert!(cancelled.finished_at.is_some());
        assert_eq!(
            tasks.admit(&new(early, None)).unwrap().status,
            TaskStatus::Cancelled
        );
        assert_eq!(
            tasks.cancel(early).unwrap().status,
            TaskStatus::Cancelled,
            "again: fine"
        );
        // PENDING (a retry waits): cancelled; RUNNING or done: refused, clearly.
        let waiting = Uuid::new_v4();
        tasks.admit(&new(waiting, None)).unwrap();
        tasks.retry_later(waiting, "busy").unwrap();
        assert_eq!(tasks.cancel(waiting).unwrap().status, TaskStatus::Cancelled);
        let running = Uuid::new_v4();
        let limit = std::time::Duration::from_secs(30);
        let started = tasks.admit(&new(running, Some(limit))).unwrap();
        assert_eq!(started.time_limit, Some(limit));
        let e = tasks.cancel(running).unwrap_err();
        assert!(
            matches!(
                e,
                Error::NotCancellable {
                    status: "RUNNING",
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("is RUNNING"), "{e}");
        // Stuck: RUNNING past its limit, or past the default without one.
        let now = started.started_at.unwrap();
        assert!(!started.is_stuck(
            now + Duration::seconds(29),
            std::time::Duration::from_secs(3600)
        ));
        assert!(started.is_stuck(
            now + Duration::seconds(31),
            std::time::Duration::from_secs(3600)
        ));
        // Its worker died: the next delivery's admission says so in the record.
        let again = tasks.admit(&new(running, Some(limit))).unwrap();
        assert_eq!(again.attempts, 2);
        assert_eq!(
            again.error.as_deref(),
            Some("attempt 1 was interrupted: its worker stopped while running it (or another worker runs it now)"),
            "{}",
            db.database
        );
    }
}

#[test]
fn an_unreachable_database_is_a_clear_error() {
    let db = Database::parse("postgres://postgres@127.0.0.1:1/test?connect_timeout=2").unwrap();
    let e = EventStore::open(&db).unwrap_err();
    assert!(e.is_connection(), "{e}");
    assert!(e.to_string().contains("127.0.0.1:1"), "{e}");
    let e = TaskStore::open(&Database::sqlite("/proc/no-such-dir/events.db")).unwrap_err();
    assert!(matches!(e, Error::Connect { .. }), "{e}");
}

#[test]
fn a_row_the_database_refuses_is_sifted_out_and_the_rest_stored() {
    for db in TestDb::all() {
        let mut store = EventStore::open(&db.database).unwrap();
        let t0 = OffsetDateTime::now_utc();
        let rows: Vec<EventRow> = (0..9)
            .map(|i| row("order.created", t0 + Duration::seconds(i), None).1)
            .collect();
        let mut refused = rows.clone();
        // An indexed value larger than a PostgreSQL index row (SQLSTATE 54000): refused there.
        // Incompressible, so that TOAST cannot shrink it under the limit.
        let long: String = (0..20_000)
            .map(|i: u32| {
                char::from_u32(0x4e00 + (i.wrapping_mul(2_654_435_761) % 20_000)).unwrap()
            })
            .collect();
        refused[4].correlation_id = Some(long);
        let appended = store.append_batch(&refused).unwrap();
        let name = db.database.to_string();
        if db.database.backend_name() == "PostgreSQL" {
            assert_eq!(appended.inserted, 8, "{name}");
            assert_eq!(appended.refused.len(), 1, "{name}");
            assert_eq!(appended.refused[0].index, 4);
            let error = &appended.refused[0].error;
            assert_eq!(error.fault(), pubsub_store::Fault::Refused, "{error}");
            let chain = pubsub_core::text::error_chain(error);
            assert!(chain.contains("index row"), "{chain}");
        } else {
            // SQLite takes it.
            assert_eq!(
                (appended.inserted, appended.refused.len()),
                (9, 0),
                "{name}"
            );
        }
        // The batch again: stored once, nothing refused but the same row.
        let again = store.append_batch(&rows).unwrap();
        assert!(again.refused.is_empty(), "{name}");
        assert_eq!(store.count().unwrap(), 9, "{name}");
    }
}

/// A reader opened on a database without a store says so and creates nothing: no SQLite
/// file, no PostgreSQL schema. Once a store is there, both readers open it.
#[test]
fn a_reader_of_a_database_without_a_store_creates_nothing() {
    for db in TestDb::all() {
        let no_store = |e: Error| match e {
            Error::NoStore { missing, .. } => missing,
            other => panic!("{}: expected NoStore, got {other}", db.database),
        };
        let missing = no_store(EventStore::open_existing(&db.database).err().unwrap());
        no_store(TaskStore::open_existing(&db.database).err().unwrap());
        let message = EventStore::open_existing(&db.database)
            .err()
            .unwrap()
            .to_string();
        assert!(message.contains("holds no store"), "{message}");
        match db.url().strip_prefix("sqlite:") {
            Some(path) => {
                assert!(missing.contains("does not exist"), "{missing}");
                assert!(!std::path::Path::new(path).exists(), "{path} was created");
                // A file that is not a store: its tables are named as missing.
                std::fs::write(path, b"").unwrap();
                let missing = no_store(EventStore::open_existing(&db.database).err().unwrap());
                assert!(missing.contains("no store tables"), "{missing}");
                std::fs::remove_file(path).unwrap();
            }
            None => {
                assert!(missing.contains("has no store tables"), "{missing}");
                let url = pubsub_testkit::postgres_url().unwrap();
                let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
                let schema = db.url().rsplit("schema=").next().unwrap().to_owned();
                let found = client
                    .query_opt(
                        "SELECT 1 FROM information_schema.schemata WHERE schema_name = $1",
                        &[&schema],
                    )
                    .unwrap();
                assert!(found.is_none(), "schema {schema} was created");
            }
        }
        EventStore::open(&db.database).unwrap();
        assert_eq!(
            EventStore::open_existing(&db.database)
                .unwrap()
                .count()
                .unwrap(),
            0
        );
        TaskStore::open_existing(&db.database).unwrap();
    }
}

#[test]
fn a_watcher_is_told_of_task_commits_where_the_database_can_tell() {
    for db in TestDb::all() {
        let mut writer = TaskStore::open(&db.database).unwrap();
        let mut watcher = TaskStore::open(&db.database).unwrap();
        let can_tell = watcher.watch().unwrap();
        assert_eq!(can_tell, db.database.is_postgres(), "{}", db.database);
        if !can_tell {
            // Nothing to wait for: at once.
            let asked = std::time::Instant::now();
            assert!(!watcher
                .wait_for_commit(std::time::Duration::from_secs(5))
                .unwrap());
            assert!(asked.elapsed() < std::time::Duration::from_secs(1));
            continue;
        }
        // No commit: the wait times out.
        assert!(!watcher
            .wait_for_commit(std::time::Duration::from_millis(50))
            .unwrap());
        let payload = json!({});
        let task = NewTask {
            task_id: Uuid::new_v4(),
            task_name: "told",
            payload: &payload,
            routing_key: "routing.task.told",
            correlation_id: None,
            producer: None,
            time_limit: None,
        };
        let told = std::thread::scope(|scope| {
            let waiting = scope.spawn(|| {
                let asked = std::time::Instant::now();
                let came = watcher
                    .wait_for_commit(std::time::Duration::from_secs(10))
                    .unwrap();
                (came, asked.elapsed())
            });
            std::thread::sleep(std::time::Duration::from_millis(100));
            writer.begin().unwrap();
            writer.receive(&task).unwrap();
            writer.commit().unwrap();
            waiting.join().unwrap()
        });
        assert!(told.0, "told of the commit");
        assert!(told.1 < std::time::Duration::from_secs(5), "{:?}", told.1);
    }
}
