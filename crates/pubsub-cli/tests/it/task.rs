//! `pubsub task`: submit to a worker running here, then read its record from the store.

use std::time::Duration;

use pubsub_store::Database;
use pubsub_subscriber::{queue_names, Disposition, RetryPolicy};
use pubsub_tasks::TaskWorker;
use serde_json::{json, Value};

use crate::support::{assert_exit, pubsub, stderr, stdout, test_bus};

#[test]
fn submit_then_status_and_list_from_the_store() {
    let Some(mut bus) = test_bus() else { return };
    let exchange = bus.exchange_name("tasks");
    let queue = bus.queue_name("tasks");
    let retry = RetryPolicy::new(2, vec![Duration::from_millis(50)]);
    for name in queue_names(&queue, &retry) {
        bus.delete_queue_at_end(&name);
    }
    let path = std::env::temp_dir().join(format!("{}.db", pubsub_testkit::unique("cli-tasks")));
    let database_url = format!("sqlite:{}", path.display());
    let (reports_tx, reports) = crossbeam_channel::unbounded();
    let worker = TaskWorker::builder(bus.config().clone(), Database::sqlite(&path))
        .exchange(&exchange)
        .queue(&queue)
        .retry(retry)
        .observer(reports_tx)
        .task("echo", |task| Ok(task.payload().clone()))
        .task("fail", |task| {
            Err(format!("no luck on attempt {}", task.attempt()).into())
        })
        .build()
        .unwrap()
        .start()
        .unwrap();
    let submit = |name: &str| {
        let output = pubsub(&[
            "task",
            "submit",
            name,
            "--payload",
            r#"{"n":1}"#,
            "--exchange",
            &exchange,
        ]);
        assert_exit(&output, 0);
        stdout(&output).trim().to_owned()
    };
    let echo = submit("echo");
    let fail = submit("fail");
    let mut settled = 0;
    while settled < 2 {
        let report = reports.recv_timeout(Duration::from_secs(20)).unwrap();
        if !matches!(report.disposition, Disposition::Retried { .. }) {
            settled += 1;
        }
    }

    let status = pubsub(&["task", "status", &echo, "--database", &database_url]);
    assert_exit(&status, 0);
    let text = stdout(&status);
    assert!(text.contains("COMPLETED (1 attempt)"), "{text}");
    assert!(text.contains(r#"result       {"n":1}"#), "{text}");
    assert!(text.contains("producer     pubsub-cli"), "{text}");
    let json_status = pubsub(&[
        "task",
        "status",
        &fail,
        "--json",
        "--database",
        &database_url,
    ]);
    assert_exit(&json_status, 0);
    let record: Value = serde_json::from_str(stdout(&json_status).trim()).unwrap();
    assert_eq!(record["status"], "FAILED");
    assert_eq!(record["attempts"], 2);
    assert_eq!(record["error"], "no luck on attempt 2");
    assert_eq!(record["payload"], json!({ "n": 1 }));

    let failed = pubsub(&[
        "task",
        "list",
        "--status",
        "failed",
        "--database",
        &database_url,
    ]);
    assert_exit(&failed, 0);
    let table = stdout(&failed);
    assert!(table.contains(&fail) && !table.contains(&echo), "{table}");

    // Replayed from the dead-letter queue, a failed task runs again (and fails again).
    let replay = pubsub(&["dlq", "replay", &queue, "--all"]);
    assert_exit(&replay, 0);
    loop {
        let report = reports.recv_timeout(Duration::from_secs(20)).unwrap();
        if !matches!(report.disposition, Disposition::Retried { .. }) {
            break;
        }
    }
    let again = pubsub(&[
        "task",
        "status",
        &fail,
        "--json",
        "--database",
        &database_url,
    ]);
    let record: Value = serde_json::from_str(stdout(&again).trim()).unwrap();
    // The function's attempt and the record's count agree across the replay.
    assert_eq!(
        (
            record["status"].as_str(),
            record["attempts"].as_u64(),
            record["error"].as_str()
        ),
        (Some("FAILED"), Some(4), Some("no luck on attempt 4"))
    );

    // Waiting: the result of a completed task, exit 1 for a failed one.
    let waited = pubsub(&[
        "task",
        "wait",
        &echo,
        "--timeout",
        "10s",
        "--database",
        &database_url,
    ]);
    assert_exit(&waited, 0);
    assert_eq!(stdout(&waited).trim(), r#"{"n":1}"#);
    let waited = pubsub(&[
        "task",
        "wait",
        &fail,
        "--timeout",
        "10s",
        "--database",
        &database_url,
    ]);
    assert_exit(&waited, 1);
    assert!(
        stderr(&waited).contains("FAILED: no luck on attempt 4"),
        "{}",
        stderr(&waited)
    );
    // Cancelling: a task no worker received yet is CANCELLED; one that ran cannot be.
    let unseen = "0b7e2a0c-1d7f-4c3a-9a55-5b2c6f7d8e90";
    let cancelled = pubsub(&["task", "cancel", unseen, "--database", &database_url]);
    assert_exit(&cancelled, 0);
    assert_eq!(
        stdout(&cancelled).trim(),
        format!("task {unseen} CANCELLED")
    );
    let waited = pubsub(&["task", "wait", unseen, "--database", &database_url]);
    assert_exit(&waited, 1);
    assert!(
        stderr(&waited).contains("was CANCELLED"),
        "{}",
        stderr(&waited)
    );
    let refused = pubsub(&["task", "cancel", &echo, "--database", &database_url]);
    assert_exit(&refused, 1);
    assert!(
        stderr(&refused).contains("is COMPLETED"),
        "{}",
        stderr(&refused)
    );
    // Nothing RUNNING: nothing stuck.
    let stuck = pubsub(&["task", "list", "--stuck", "--database", &database_url]);
    assert_exit(&stuck, 0);
    assert_eq!(stdout(&stuck).trim(), "no task");

    let missing = pubsub(&[
        "task",
        "status",
        "7c9e6679-7425-40de-944b-e07fc1f90ae7",
        "--database",
        &database_url,
    ]);
    assert_exit(&missing, 1);
    assert!(stderr(&missing).contains("no task"), "{}", stderr(&missing));
    let unserved = pubsub(&[
        "task",
        "submit",
        "nobody-runs-this",
        "--exchange",
        &exchange,
    ]);
    assert_exit(&unserved, 1);
    assert!(
        stderr(&unserved).contains("no queue is bound"),
        "{}",
        stderr(&unserved)
    );
    let bad_name = pubsub(&["task", "submit", "a.b", "--exchange", &exchange]);
    assert_exit(&bad_name, 2);

    worker.stop().unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.clone().into_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
}
