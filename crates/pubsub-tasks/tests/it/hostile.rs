//! Data the database refuses, in a task: a NUL in the payload, the result, the error. On
//! both backends the function runs once per delivery attempt, and the record shows what
//! happened, byte for byte.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use pubsub_core::Permanent;
use pubsub_store::TaskStatus;
use pubsub_subscriber::Disposition;
use serde_json::json;

use crate::support::{Setup, TestDb};

/// SQLite, then PostgreSQL when it is there.
fn databases() -> Vec<TestDb> {
    let mut all = vec![TestDb::sqlite()];
    all.extend(TestDb::postgres());
    all
}

#[test]
fn a_nul_in_the_payload_result_or_error_is_recorded_and_runs_once() {
    for db in databases() {
        let name = db.database.to_string();
        let Some(setup) = Setup::new("hostile", db) else {
            return;
        };
        let runs = Arc::new(AtomicU32::new(0));
        let (ok_runs, bad_runs) = (runs.clone(), runs.clone());
        let worker = setup
            .worker()
            .task("echo-nul", move |task| {
                ok_runs.fetch_add(1, Ordering::SeqCst);
                Ok(json!({ "out": "a\u{0}b", "k\u{0}": task.payload()["in"] }))
            })
            .task("fail-nul", move |_| {
                bad_runs.fetch_add(1, Ordering::SeqCst);
                Err(Permanent::new("bad\u{0}error").into())
            })
            .build()
            .unwrap()
            .start()
            .unwrap();
        let queue = setup.task_queue();
        let payload = json!({ "in": "x\u{0}y", "n\u{0}": 1 });
        let ok = queue
            .submit("echo-nul", payload.clone())
            .unwrap()
            .to_string();
        let reports = setup.settled(&ok);
        assert_eq!(reports.len(), 1, "{name}: {reports:#?}");
        assert_eq!(reports[0].disposition, Disposition::Acked, "{name}");
        let record = setup.record(&ok);
        assert_eq!(record.status, TaskStatus::Completed, "{name}");
        assert_eq!(record.attempts, 1, "{name}");
        assert_eq!(record.payload, payload, "{name}");
        assert_eq!(
            record.result,
            Some(json!({ "out": "a\u{0}b", "k\u{0}": "x\u{0}y" })),
            "{name}"
        );

        let bad = queue.submit("fail-nul", json!({})).unwrap().to_string();
        let reports = setup.settled(&bad);
        assert_eq!(reports.len(), 1, "{name}: {reports:#?}");
        assert!(
            matches!(reports[0].disposition, Disposition::DeadLettered { .. }),
            "{name}: {reports:#?}"
        );
        let record = setup.record(&bad);
        assert_eq!(record.status, TaskStatus::Failed, "{name}");
        let error = record.error.unwrap_or_default();
        assert!(error.starts_with("bad\u{0}error"), "{name}: {error:?}");
        assert_eq!(
            runs.load(Ordering::SeqCst),
            2,
            "{name}: each function ran once"
        );
        worker.stop().unwrap();
    }
}
