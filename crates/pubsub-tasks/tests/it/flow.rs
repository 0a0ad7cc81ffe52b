//! A task's life through a worker: completed with its result, retried then failed and
//! dead-lettered, an unknown name, a duplicate delivery, a body that is not a task, several
//! workers.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use pubsub_amqp::Properties;
use pubsub_core::Permanent;
use pubsub_store::{TaskFilter, TaskStatus};
use pubsub_subscriber::{dead_letter_queue_name, DeadLetterKind, Disposition};
use pubsub_tasks::{SubmitOptions, TaskWorker};
use serde_json::json;

use crate::support::{Setup, TestDb};

/// SQLite, then PostgreSQL when it is there.
pub(crate) fn databases() -> Vec<TestDb> {
    let mut all = vec![TestDb::sqlite()];
    all.extend(TestDb::postgres());
    all
}

#[test]
fn a_submitted_task_completes_with_its_result() {
    for db in databases() {
        let Some(setup) = Setup::new("complete", db) else {
            return;
        };
        let worker = setup
            .worker()
            .task("send-report", |task| {
                Ok(json!({ "sent_to": task.payload()["to"], "attempt": task.attempt() }))
            })
            .build()
            .unwrap()
            .start()
            .unwrap();
        let queue = setup.task_queue();
        let id = queue
            .submit("send-report", json!({ "to": "ops" }))
            .unwrap()
            .to_string();

        let reports = setup.settled(&id);
        assert_eq!(reports.len(), 1, "{reports:#?}");
        assert_eq!(reports[0].disposition, Disposition::Acked);
        let task = setup.record(&id);
        assert_eq!(task.status, TaskStatus::Completed);
        assert_eq!(task.result, Some(json!({ "sent_to": "ops", "attempt": 1 })));
        assert_eq!(task.attempts, 1);
        assert_eq!(task.error, None);
        assert_eq!(task.task_name, "send-report");
        assert_eq!(task.payload, json!({ "to": "ops" }));
        assert_eq!(task.routing_key, "routing.task.send.report");
        assert_eq!(task.producer.as_deref(), Some("tests"));
        assert_eq!(task.correlation_id.as_deref(), Some(id.as_str()));

        let stats = worker.stop().unwrap();
        assert_eq!(
            (stats.subscriber.received, stats.subscriber.acked),
            (1, 1),
            "{stats}"
        );
    }
}

#[test]
fn a_failing_task_is_retried_then_failed_and_dead_lettered() {
    for db in databases() {
        let Some(setup) = Setup::new("failing", db) else {
            return;
        };
        let runs = Arc::new(AtomicU32::new(0));
        let counted = runs.clone();
        let flaky_runs = Arc::new(AtomicU32::new(0));
        let flaky_counted = flaky_runs.clone();
        let worker = setup
            .worker()
            .task("send-report", move |_task| {
                counted.fetch_add(1, Ordering::SeqCst);
                Err("the mail server is down".into())
            })
            .task("flaky", move |task| {
                if flaky_counted.fetch_add(1, Ordering::SeqCst) == 0 {
                    panic!("first run panics");
                }
                Ok(json!({ "attempt": task.attempt() }))
            })
            .task("refuse", |_task| {
                Err(Permanent::new("payload can never work").into())
            })
            .build()
            .unwrap()
            .start()
            .unwrap();
        let queue = setup.task_queue();

        let id = queue.submit("send-report", json!({})).unwrap().to_string();
        let reports = setup.settled(&id);
        let dispositions: Vec<String> = reports.iter().map(|r| r.disposition.to_string()).collect();
        assert_eq!(reports.len(), 3, "{dispositions:?}");
        assert!(
            matches!(
                &reports[2].disposition,
                Disposition::DeadLettered {
                    kind: DeadLetterKind::Exhausted,
                    ..
                }
            ),
            "{dispositions:?}"
        );
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        let task = setup.record(&id);
        assert_eq!(task.status, TaskStatus::Failed);
        assert_eq!(task.attempts, 3);
        assert!(
            task.error
                .as_deref()
                .unwrap()
                .contains("mail server is down"),
            "{task:?}"
        );
        assert_eq!(task.result, None);

        // A panic is a failure like another: retried, then completed.
        let id = queue.submit("flaky", json!({})).unwrap().to_string();
        assert_eq!(setup.settled(&id).len(), 2);
        let task = setup.record(&id);
        assert_eq!(task.status, TaskStatus::Completed);
        assert_eq!(task.attempts, 2);
        assert_eq!(task.result, Some(json!({ "attempt": 2 })));

        // A permanent error is not retried.
        let id = queue.submit("refuse", json!({})).unwrap().to_string();
        let reports = setup.settled(&id);
        assert_eq!(reports.len(), 1);
        assert!(matches!(
            &reports[0].disposition,
            Disposition::DeadLettered {
                kind: DeadLetterKind::Poison,
                ..
            }
        ));
        let task = setup.record(&id);
        assert_eq!((task.status, task.attempts), (TaskStatus::Failed, 1));

        let dlq = dead_letter_queue_name(&setup.queue);
        assert_eq!(setup.bus.ready(&dlq), Some(2));
        let failed = setup
            .store()
            .list(&TaskFilter {
                status: Some(TaskStatus::Failed),
                ..TaskFilter::default()
            })
            .unwrap();
        assert_eq!(failed.len(), 2);
        worker.stop().unwrap();
    }
}

#[test]
fn an_unknown_task_is_failed_at_once_and_dead_lettered_as_poison() {
    let Some(setup) = Setup::new("unknown", TestDb::sqlite()) else {
        return;
    };
    let worker = setup
        .worker()
        .task("send-report", |_task| Ok(json!(null)))
        .build()
        .unwrap()
        .start()
        .unwrap();
    let queue = setup.task_queue();
    // A key the worker binds, a name it does not know.
    let options = SubmitOptions {
        routing_key: Some("routing.task.send.report".into()),
        ..SubmitOptions::default()
    };
    let id = queue
        .submit_with("resize-image", json!({ "n": 1 }), &options)
        .unwrap()
        .to_string();

    let reports = setup.settled(&id);
    assert_eq!(reports.len(), 1, "{reports:#?}");
    let Disposition::DeadLettered { kind, reason } = &reports[0].disposition else {
        panic!("not dead-lettered: {reports:#?}")
    };
    assert_eq!(*kind, DeadLetterKind::Poison);
    assert!(reason.contains("unknown task `resize-image`"), "{reason}");
    let task = setup.record(&id);
    assert_eq!(task.status, TaskStatus::Failed);
    assert_eq!(task.attempts, 0);
    assert!(task.error.unwrap().contains("runs send-report"));
    assert_eq!(
        setup.bus.ready(&dead_letter_queue_name(&setup.queue)),
        Some(1)
    );

    // A task nobody serves is refused at submit, not lost.
    let unroutable = queue.submit("resize-image", json!({})).unwrap_err();
    assert!(matches!(
        unroutable,
        pubsub_tasks::Error::Publish(pubsub_publisher::Error::Unroutable { .. })
    ));
    worker.stop().unwrap();
}

#[test]
fn a_completed_task_is_not_run_again() {
    let Some(setup) = Setup::new("twice", TestDb::sqlite()) else {
        return;
    };
    let runs = Arc::new(AtomicU32::new(0));
    let counted = runs.clone();
    let worker = setup
        .worker()
        .task("send-report", move |_task| {
            Ok(json!({ "run": counted.fetch_add(1, Ordering::SeqCst) + 1 }))
        })
        .build()
        .unwrap()
        .start()
        .unwrap();
    let id = uuid::Uuid::new_v4().to_string();
    let properties = Properties {
        message_id: Some(id.clone()),
        persistent: true,
        ..Properties::default()
    };
    let body = br#"{"task_name": "send-report", "payload": {"to": "ops"}}"#;
    for _ in 0..2 {
        setup.bus.publish_raw(
            &setup.exchange,
            "routing.task.send.report",
            body,
            &properties,
        );
        let reports = setup.settled(&id);
        assert_eq!(reports[0].disposition, Disposition::Acked);
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let task = setup.record(&id);
    assert_eq!(task.status, TaskStatus::Completed);
    assert_eq!((task.attempts, task.result), (1, Some(json!({ "run": 1 }))));
    worker.stop().unwrap();
}

#[test]
fn a_message_that_is_not_a_task_is_poison_without_a_record() {
    let Some(setup) = Setup::new("poison", TestDb::sqlite()) else {
        return;
    };
    let worker = setup
        .worker()
        .task("send-report", |_task| Ok(json!(null)))
        .build()
        .unwrap()
        .start()
        .unwrap();
    for body in [
        &b"not json"[..],
        br#"{"payload": {}}"#,
        br#"{"task_name": "a.b"}"#,
    ] {
        setup.bus.publish_raw(
            &setup.exchange,
            "routing.task.send.report",
            body,
            &Properties::default(),
        );
    }
    let dlq = dead_letter_queue_name(&setup.queue);
    for _ in 0..3 {
        let report = setup.reports.recv_timeout(crate::support::WAIT).unwrap();
        assert!(
            matches!(
                report.disposition,
                Disposition::DeadLettered {
                    kind: DeadLetterKind::Poison,
                    ..
                }
            ),
            "{report:?}"
        );
    }
    assert_eq!(setup.bus.ready(&dlq), Some(3));
    assert!(setup
        .store()
        .list(&TaskFilter::default())
        .unwrap()
        .is_empty());
    worker.stop().unwrap();
}

#[test]
fn several_workers_share_the_queue() {
    let Some(setup) = Setup::new("workers", TestDb::sqlite()) else {
        return;
    };
    let worker = setup
        .worker()
        .task("add", |task| {
            let n = task.payload()["n"].as_u64().unwrap_or_default();
            Ok(json!(n + 1))
        })
        .workers(3)
        .build()
        .unwrap();
    assert_eq!(worker.bindings(), ["routing.task.add"]);
    let worker = worker.start().unwrap();
    let queue = setup.task_queue();
    let mut outcomes = queue.submit_all((0..61).map(|n| match n {
        60 => ("not.a.name", json!({})),
        n => ("add", json!({ "n": n })),
    }));
    assert!(matches!(
        outcomes.pop(),
        Some(Err(pubsub_tasks::Error::InvalidTaskName { .. }))
    ));
    let ids: Vec<String> = outcomes
        .into_iter()
        .map(|id| id.unwrap().to_string())
        .collect();
    let settled = setup.settle_all(ids.len());
    assert!(settled.iter().all(|r| r.disposition == Disposition::Acked));
    let mut store = setup.store();
    let done = store
        .list(&TaskFilter {
            status: Some(TaskStatus::Completed),
            ..TaskFilter::default()
        })
        .unwrap();
    assert_eq!(done.len(), 60);
    let first = setup.record(&ids[0]);
    assert_eq!(first.result, Some(json!(1)));
    let stats = worker.stop().unwrap();
    assert_eq!(stats.subscriber.acked, 60, "{stats}");
}

#[test]
fn clones_of_one_queue_submit_from_several_threads() {
    let Some(setup) = Setup::new("threads", TestDb::sqlite()) else {
        return;
    };
    let worker = setup
        .worker()
        .task("add", |task| {
            let n = task.payload()["n"].as_u64().unwrap_or_default();
            Ok(json!(n + 1))
        })
        .build()
        .unwrap()
        .start()
        .unwrap();
    let queue = setup.task_queue();
    let ids: Vec<String> = std::thread::scope(|s| {
        let submitting: Vec<_> = (0..4)
            .map(|n| {
                let queue = queue.clone();
                s.spawn(move || queue.submit("add", json!({ "n": n })).unwrap())
            })
            .collect();
        submitting
            .into_iter()
            .map(|t| t.join().unwrap().to_string())
            .collect()
    });
    // The clones are gone; the last handle joins the publishing thread.
    queue.close().unwrap();
    let settled = setup.settle_all(ids.len());
    assert!(settled.iter().all(|r| r.disposition == Disposition::Acked));
    for id in &ids {
        assert_eq!(setup.record(id).status, TaskStatus::Completed);
    }
    let stats = worker.stop().unwrap();
    assert_eq!(stats.subscriber.acked, 4, "{stats}");
}

#[test]
fn settings_are_checked() {
    let config = pubsub_amqp::AmqpConfig::default();
    let db = pubsub_store::Database::sqlite_in_memory();
    let build = |b: pubsub_tasks::TaskWorkerBuilder| b.build().map(|_| ()).unwrap_err().to_string();
    assert!(build(TaskWorker::builder(config.clone(), db.clone())).contains("no task"));
    let twice = TaskWorker::builder(config.clone(), db.clone())
        .task("a", |_t| Ok(json!(null)))
        .task("a", |_t| Ok(json!(null)));
    assert!(build(twice).contains("`a` is registered twice"));
    let dotted = TaskWorker::builder(config, db).task("a.b", |_t| Ok(json!(null)));
    assert!(build(dotted).contains("invalid task name `a.b`"));
}

#[test]
fn a_queue_declared_elsewhere_is_consumed_as_it_is() {
    let Some(setup) = Setup::new("existing", TestDb::sqlite()) else {
        return;
    };
    // As a Python service declares it: durable, no arguments of ours.
    setup
        .bus
        .admin()
        .declare_queue(&setup.queue, &pubsub_amqp::QueueConfig::default())
        .unwrap();
    let worker = setup
        .worker()
        .task("send-report", |_task| Ok(json!("sent")))
        .existing_queue(true)
        .build()
        .unwrap()
        .start()
        .unwrap();
    let id = setup
        .task_queue()
        .submit("send-report", json!({}))
        .unwrap()
        .to_string();
    assert_eq!(setup.settled(&id)[0].disposition, Disposition::Acked);
    assert_eq!(setup.record(&id).result, Some(json!("sent")));
    worker.stop().unwrap();
}
