//! Time limits, cancelling, waiting for a result, and what a stuck task looks like.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pubsub_store::TaskStatus;
use pubsub_subscriber::Disposition;
use serde_json::json;

use crate::flow::databases;
use crate::support::Setup;

#[test]
fn a_task_past_its_time_limit_is_failed_retried_and_its_thread_counted() {
    for db in databases() {
        let Some(setup) = Setup::new("limits", db) else {
            return;
        };
        let runs = Arc::new(AtomicU32::new(0));
        let counted = runs.clone();
        let worker = setup
            .worker()
            .task("slow", move |_task| {
                counted.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(400));
                Ok(json!("too late"))
            })
            .task("quick", |_task| Ok(json!("in time")))
            .time_limit(Duration::from_secs(10))
            .limit("slow", Duration::from_millis(100))
            .build()
            .unwrap()
            .start()
            .unwrap();
        let queue = setup.task_queue();
        let slow = queue.submit("slow", json!({})).unwrap().to_string();
        let reports = setup.settled(&slow);
        assert_eq!(
            reports.len(),
            3,
            "retried by the policy, then dead-lettered"
        );
        assert!(matches!(
            reports[2].disposition,
            Disposition::DeadLettered { .. }
        ));
        assert!(
            worker.abandoned_threads() >= 1,
            "a thread that ran past its limit is counted"
        );
        let record = setup.record(&slow);
        assert_eq!(record.status, TaskStatus::Failed);
        assert!(
            record.error.as_deref().unwrap().starts_with("timed out"),
            "{:?}",
            record.error
        );
        assert_eq!(record.time_limit, Some(Duration::from_millis(100)));
        // Once they end, the threads are no longer counted.
        let deadline = Instant::now() + Duration::from_secs(5);
        while worker.abandoned_threads() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(worker.abandoned_threads(), 0);
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        // A task under the worker's limit runs on as usual.
        let quick = queue.submit("quick", json!({})).unwrap().to_string();
        setup.settled(&quick);
        let record = setup.record(&quick);
        assert_eq!(record.status, TaskStatus::Completed);
        assert_eq!(record.time_limit, Some(Duration::from_secs(10)));
        worker.stop().unwrap();
    }
}

#[test]
fn a_cancelled_task_is_skipped_and_recorded_as_cancelled() {
    for db in databases() {
        let Some(setup) = Setup::new("cancel", db) else {
            return;
        };
        let runs = Arc::new(AtomicU32::new(0));
        let counted = runs.clone();
        let worker = setup.worker().task("export", move |_task| {
            counted.fetch_add(1, Ordering::SeqCst);
            Ok(json!(null))
        });
        // The queue exists before the task is submitted, and no worker runs yet.
        let worker = worker.build().unwrap();
        worker.setup().unwrap();
        let queue = setup.task_queue();
        let cancelled = queue.submit("export", json!({ "n": 1 })).unwrap();
        let kept = queue.submit("export", json!({ "n": 2 })).unwrap();
        setup.store().cancel(cancelled.id()).unwrap();
        let running = worker.start().unwrap();
        setup.settled(&cancelled.to_string());
        setup.settled(&kept.to_string());
        assert_eq!(
            runs.load(Ordering::SeqCst),
            1,
            "the cancelled task did not run"
        );
        let record = setup.record(&cancelled.to_string());
        assert_eq!(record.status, TaskStatus::Cancelled);
        assert_eq!(
            setup.record(&kept.to_string()).status,
            TaskStatus::Completed
        );
        // A task that ran cannot be cancelled any more.
        let e = setup.store().cancel(kept.id()).unwrap_err();
        assert!(e.to_string().contains("COMPLETED"), "{e}");
        running.stop().unwrap();
    }
}

#[test]
fn time_limits_are_checked_when_the_worker_is_built() {
    let db = crate::support::TestDb::sqlite();
    let Some(setup) = Setup::new("limits-bad", db) else {
        return;
    };
    let e = setup
        .worker()
        .task("a", |_t| Ok(json!(null)))
        .limit("b", Duration::from_secs(1))
        .build()
        .err()
        .unwrap();
    assert!(
        e.to_string().contains("`b`, which is not registered"),
        "{e}"
    );
    let e = setup
        .worker()
        .task("a", |_t| Ok(json!(null)))
        .time_limit(Duration::ZERO)
        .build()
        .err()
        .unwrap();
    assert!(e.to_string().contains("must not be zero"), "{e}");
}

#[test]
fn a_handle_waits_for_the_outcome_of_its_task() {
    use pubsub_core::Permanent;
    use pubsub_tasks::{Error, TaskOutcome, TaskQueue};
    for db in databases() {
        let Some(setup) = Setup::new("wait", db) else {
            return;
        };
        let ended: std::sync::Arc<std::sync::Mutex<Option<std::time::Instant>>> =
            Default::default();
        let end = ended.clone();
        let worker = setup
            .worker()
            .task("long", move |_task| {
                std::thread::sleep(Duration::from_millis(1_200));
                *end.lock().unwrap() = Some(std::time::Instant::now());
                Ok(json!(null))
            })
            .task("double", |task| {
                let n = task.payload()["n"].as_i64().unwrap_or(0);
                Ok(json!(n * 2))
            })
            .task("refuse", |_task| Err(Permanent::new("never works").into()))
            .task("slow", |_task| {
                std::thread::sleep(Duration::from_millis(300));
                Ok(json!(null))
            })
            .build()
            .unwrap()
            .start()
            .unwrap();
        let queue = TaskQueue::builder(setup.bus.connection())
            .exchange(&setup.exchange)
            .results(setup.db.database.clone())
            .build()
            .unwrap();
        let wait = Duration::from_secs(20);
        let doubled = queue.submit("double", json!({ "n": 21 })).unwrap();
        assert_eq!(
            doubled.wait(wait).unwrap(),
            TaskOutcome::Completed(json!(42))
        );
        let refused = queue.submit("refuse", json!({})).unwrap();
        assert_eq!(
            refused.wait(wait).unwrap(),
            TaskOutcome::Failed("never works".into())
        );
        let slow = queue.submit("slow", json!({})).unwrap();
        let e = slow.wait(Duration::from_millis(50)).unwrap_err();
        assert!(
            matches!(e, Error::Timeout { task_id, .. } if task_id == slow.id()),
            "{e}"
        );
        assert_eq!(
            slow.wait(wait).unwrap(),
            TaskOutcome::Completed(json!(null))
        );
        // On PostgreSQL the waiter is told of the commit (LISTEN/NOTIFY), in any process:
        // not up to a backed-off pause (500 ms by then) late.
        if setup.db.database.is_postgres() {
            let long = queue.submit("long", json!({})).unwrap();
            assert_eq!(
                long.wait(wait).unwrap(),
                TaskOutcome::Completed(json!(null))
            );
            let late = ended.lock().unwrap().expect("it ran").elapsed();
            assert!(
                late < Duration::from_millis(250),
                "told {late:?} after it ended"
            );
        }
        // Without the store, a handle says what is missing.
        let blind = setup
            .task_queue()
            .submit("double", json!({ "n": 1 }))
            .unwrap();
        assert!(blind
            .wait(wait)
            .unwrap_err()
            .to_string()
            .contains("results"));
        queue.close().unwrap();
        worker.stop().unwrap();
    }
}

#[test]
fn a_scheduled_task_runs_no_earlier_than_asked() {
    use pubsub_tasks::{delay_queue_name, TaskQueue, MAX_DELAY};
    let Some(mut setup) = Setup::new("later", crate::support::TestDb::sqlite()) else {
        return;
    };
    // The buckets of 300 ms and 1.2 s (rounded up to 1.216 s), removed at the end.
    for ms in [300, 1_216] {
        let name = delay_queue_name(&setup.queue, Duration::from_millis(ms));
        setup.bus.delete_queue_at_end(&name);
    }
    let worker = setup
        .worker()
        .task("remind", |_task| Ok(json!("reminded")))
        .build()
        .unwrap()
        .start()
        .unwrap();
    let queue = TaskQueue::builder(setup.bus.connection())
        .exchange(&setup.exchange)
        .queue(&setup.queue)
        .results(setup.db.database.clone())
        .build()
        .unwrap();
    let submitted = Instant::now();
    let soon = queue
        .submit_after(Duration::from_millis(300), "remind", json!({}))
        .unwrap();
    let later = queue
        .submit_at(
            std::time::SystemTime::now() + Duration::from_millis(1_200),
            "remind",
            json!({}),
        )
        .unwrap();
    let now = queue.submit("remind", json!({})).unwrap();
    let wait = Duration::from_secs(20);
    assert_eq!(
        now.wait(wait).unwrap(),
        pubsub_tasks::TaskOutcome::Completed(json!("reminded"))
    );
    assert!(
        submitted.elapsed() < Duration::from_millis(300),
        "not held up by the others"
    );
    soon.wait(wait).unwrap();
    assert!(submitted.elapsed() >= Duration::from_millis(300));
    later.wait(wait).unwrap();
    assert!(submitted.elapsed() >= Duration::from_millis(1_200));
    // Each record: received (by the worker) no earlier than asked.
    let record = setup.record(&later.to_string());
    let first = setup.record(&now.to_string());
    let apart = (record.created_at - first.created_at).whole_milliseconds();
    assert!(apart >= 1_100, "received {apart} ms after the first");
    let e = queue
        .submit_after(MAX_DELAY * 2, "remind", json!({}))
        .unwrap_err();
    assert!(e.to_string().contains("at most 30 days"), "{e}");
    queue.close().unwrap();
    worker.stop().unwrap();
    // With no workers' queue for it to go to, a task is not scheduled: the broker would
    // drop it when its delay ends.
    let nowhere = format!("{}-none", setup.queue);
    let queue = TaskQueue::builder(setup.bus.connection())
        .exchange(&setup.exchange)
        .queue(&nowhere)
        .build()
        .unwrap();
    let e = queue
        .submit_after(Duration::from_millis(300), "remind", json!({}))
        .unwrap_err();
    assert!(
        matches!(&e, pubsub_tasks::Error::NoWorkerQueue { queue } if *queue == nowhere),
        "{e}"
    );
    assert!(e.to_string().contains("start a worker"), "{e}");
    queue.close().unwrap();
}

#[test]
fn higher_priorities_run_first_where_the_queue_has_them() {
    use pubsub_tasks::{SubmitOptions, TaskQueue};
    use std::sync::Mutex;
    let Some(setup) = Setup::new("priority", crate::support::TestDb::sqlite()) else {
        return;
    };
    let ran = Arc::new(Mutex::new(Vec::new()));
    let log = ran.clone();
    let worker = setup
        .worker()
        .max_priority(10)
        .task("job", move |task| {
            log.lock()
                .unwrap()
                .push(task.payload()["p"].as_u64().unwrap_or(99));
            Ok(json!(null))
        })
        .build()
        .unwrap();
    worker.setup().unwrap();
    let queue = TaskQueue::builder(setup.bus.connection())
        .exchange(&setup.exchange)
        .build()
        .unwrap();
    let mut last = None;
    for p in [1u8, 9, 5, 0] {
        let options = SubmitOptions {
            priority: Some(p),
            ..SubmitOptions::default()
        };
        last = Some(
            queue
                .submit_with("job", json!({ "p": p }), &options)
                .unwrap(),
        );
    }
    let running = worker.start().unwrap();
    setup.settled(&last.unwrap().to_string());
    let deadline = Instant::now() + Duration::from_secs(10);
    while ran.lock().unwrap().len() < 4 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(*ran.lock().unwrap(), [9, 5, 1, 0]);
    running.stop().unwrap();

    // A queue declared without priorities, asked for with them: a clear error.
    let plain = Setup::new("plain", crate::support::TestDb::sqlite()).unwrap();
    plain
        .worker()
        .task("job", |_task| Ok(json!(null)))
        .build()
        .unwrap()
        .setup()
        .unwrap();
    let e = plain
        .worker()
        .max_priority(5)
        .task("job", |_task| Ok(json!(null)))
        .build()
        .unwrap()
        .setup()
        .unwrap_err();
    assert!(
        e.to_string().contains("exists without priorities 0 to 5"),
        "{e}"
    );
}

#[test]
fn a_long_task_does_not_hold_back_the_commits_of_the_others() {
    use pubsub_tasks::{TaskOutcome, TaskQueue};
    let Some(setup) = Setup::new("long", crate::support::TestDb::sqlite()) else {
        return;
    };
    let worker = setup
        .worker()
        .task("quick", |_task| Ok(json!("quick")))
        .task("long", |_task| {
            std::thread::sleep(Duration::from_millis(1_500));
            Ok(json!("long"))
        })
        .build()
        .unwrap();
    worker.setup().unwrap();
    let queue = TaskQueue::builder(setup.bus.connection())
        .exchange(&setup.exchange)
        .results(setup.db.database.clone())
        .build()
        .unwrap();
    // Both wait in the queue, so that the worker takes them as one batch.
    let quick = queue.submit("quick", json!({})).unwrap();
    let long = queue.submit("long", json!({})).unwrap();
    let started = Instant::now();
    let running = worker.start().unwrap();
    assert_eq!(
        quick.wait(Duration::from_secs(20)).unwrap(),
        TaskOutcome::Completed(json!("quick"))
    );
    assert!(
        started.elapsed() < Duration::from_millis(1_200),
        "the quick task's status waited {:?} for the long one",
        started.elapsed()
    );
    // The long one is seen RUNNING while it runs: its start is committed before its function
    // runs (it may come in the next batch, a moment after the quick one's answer).
    let mut store = setup.store();
    let mut seen_running = false;
    while !seen_running && started.elapsed() < Duration::from_millis(1_400) {
        seen_running = store
            .get(long.id())
            .unwrap()
            .is_some_and(|r| r.status == TaskStatus::Running);
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        seen_running,
        "the long one's start was not committed while it ran ({:?} after the start)",
        started.elapsed()
    );
    assert_eq!(
        long.wait(Duration::from_secs(20)).unwrap(),
        TaskOutcome::Completed(json!("long"))
    );
    running.stop().unwrap();
}
