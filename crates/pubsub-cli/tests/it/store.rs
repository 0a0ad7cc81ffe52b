//! `pubsub store run|query|replay` as an operator uses them.

use std::process::{Command, Stdio};

use pubsub_amqp::QueueConfig;
use pubsub_core::{json, Event, Metadata};
use pubsub_store::{Database, EventRow, EventStore};
use pubsub_subscriber::{queue_names, RetryPolicy};

use crate::support::{assert_exit, event, pubsub, stderr, stdout, test_bus, wait_until};

/// A SQLite file of its own, deleted at the end.
struct DbFile(std::path::PathBuf);

impl DbFile {
    fn new() -> DbFile {
        DbFile(std::env::temp_dir().join(format!("{}.db", pubsub_testkit::unique("cli-store"))))
    }

    fn url(&self) -> String {
        format!("sqlite:{}", self.0.display())
    }
}

impl Drop for DbFile {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut f = self.0.clone().into_os_string();
            f.push(suffix);
            let _ = std::fs::remove_file(f);
        }
    }
}

fn stored(db: &DbFile, events: &[Event]) {
    let mut store = EventStore::open(&Database::sqlite(&db.0)).unwrap();
    let meta = Metadata::default().with_correlation_id(Some("flow-3".into()));
    let now = time::OffsetDateTime::now_utc();
    let rows: Vec<EventRow> = events
        .iter()
        .map(|e| EventRow::new(e, &meta, now))
        .collect();
    store.append(&rows).unwrap();
}

#[test]
fn query_prints_a_table_or_json_lines() {
    let db = DbFile::new();
    let events = [event("order", "created", 1), event("user", "registered", 2)];
    stored(&db, &events);
    let url = db.url();

    let output = pubsub(&["store", "query", "--database", &url]);
    assert_exit(&output, 0);
    let table = stdout(&output);
    assert!(table.starts_with("TIME"), "{table}");
    assert!(
        table.contains("order.created") && table.contains("user.registered"),
        "{table}"
    );
    assert!(table.contains("flow-3"), "{table}");

    let output = pubsub(&["store", "query", "order.*", "--database", &url, "--json"]);
    assert_exit(&output, 0);
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with(r#"{"domain":"order","action":"created""#),
        "{}",
        lines[0]
    );
    let back = json::from_str(lines[0]).unwrap();
    assert_eq!(back, events[0]);

    let id = events[1].event_id().to_string();
    let output = pubsub(&["store", "query", "--database", &url, "--id", &id]);
    assert!(stdout(&output).contains("user.registered"));
    let output = pubsub(&["store", "query", "nothing.*", "--database", &url]);
    assert_exit(&output, 0);
    assert!(
        stderr(&output).contains("no stored event matches"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn bad_input_is_a_usage_error_and_a_database_that_is_down_a_failure() {
    let db = DbFile::new();
    let url = db.url();
    let check = |args: &[&str], code: i32, needle: &str| {
        let output = pubsub(args);
        assert_exit(&output, code);
        assert!(
            stderr(&output).contains(needle),
            "{args:?}: {}",
            stderr(&output)
        );
    };
    check(
        &["store", "query", "--database", &url, "--since", "yesterday"],
        2,
        "--since",
    );
    check(
        &["store", "query", "--database", &url, "--id", "42"],
        2,
        "not an event id",
    );
    check(
        &["store", "query", "a..b", "--database", &url],
        2,
        "pattern",
    );
    check(
        &["store", "query", "--database", "mysql://db/x"],
        2,
        "unknown database",
    );
    check(&["store", "replay", "--database", &url], 2, "--to-exchange");
    check(
        &[
            "store",
            "replay",
            "--database",
            &url,
            "--to-queue",
            "q",
            "--rate",
            "0",
        ],
        2,
        "--rate",
    );
    check(
        &[
            "store",
            "query",
            "--database",
            "postgres://app:hunter2@127.0.0.1:1/x?connect_timeout=2",
        ],
        1,
        "cannot open the database postgres://app@127.0.0.1:1/x",
    );
    let output = pubsub(&[
        "store",
        "query",
        "--database",
        "postgres://app:hunter2@127.0.0.1:1/x?connect_timeout=2",
    ]);
    assert!(!stderr(&output).contains("hunter2"));
    // A database that holds no store: said so, exit 1, and nothing is created there.
    for args in [
        &["store", "query", "--database", &url][..],
        &["store", "replay", "--database", &url, "--to-queue", "q"][..],
        &["task", "list", "--database", &url][..],
        &[
            "task",
            "status",
            "7c9e6679-7425-40de-944b-e07fc1f90ae7",
            "--database",
            &url,
        ][..],
    ] {
        check(args, 1, "holds no store (the file");
        assert!(!db.0.exists(), "{args:?} created {}", db.0.display());
    }
}

#[test]
fn replay_publishes_a_selection_to_the_exchange() {
    let Some(mut bus) = test_bus() else {
        return;
    };
    let db = DbFile::new();
    let events = [
        event("order", "created", 1),
        event("order", "paid", 2),
        event("user", "registered", 3),
    ];
    stored(&db, &events);
    let queue = bus.bound_queue("replayed", "order.*", &QueueConfig::default());
    let url = bus.config().url_with_password();
    let output = pubsub(&[
        "store",
        "replay",
        "order.*",
        "--database",
        &db.url(),
        "--to-exchange",
        bus.exchange(),
        "--url",
        &url,
    ]);
    assert_exit(&output, 0);
    assert!(
        stderr(&output).contains("replayed 2 events"),
        "{}",
        stderr(&output)
    );
    let taken = bus.drain(&queue);
    let got: Vec<Event> = taken
        .iter()
        .map(|t| json::from_slice(&t.body).unwrap())
        .collect();
    assert_eq!(got, events[..2]);
    assert_eq!(
        taken[0].properties.correlation_id.as_deref(),
        Some("flow-3")
    );
}

#[test]
fn run_keeps_what_flows_until_interrupted() {
    let Some(mut bus) = test_bus() else {
        return;
    };
    let db = DbFile::new();
    let queue = pubsub_testkit::unique("store-run");
    for name in queue_names(&queue, &RetryPolicy::default()) {
        bus.delete_queue_at_end(&name);
    }
    let url = bus.config().url_with_password();
    let child = Command::new(env!("CARGO_BIN_EXE_pubsub"))
        .args([
            "store",
            "run",
            "--database",
            &db.url(),
            "--exchange",
            bus.exchange(),
            "--queue",
            &queue,
            "--url",
            &url,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the store's queue", || bus.ready(&queue).is_some());
    for n in 0..2 {
        let data = format!("{{\"n\":{n}}}");
        let output = pubsub(&[
            "publish",
            "order.created",
            "--data",
            &data,
            "--exchange",
            bus.exchange(),
            "--url",
            &url,
        ]);
        assert_exit(&output, 0);
    }
    let mut store = EventStore::open(&Database::sqlite(&db.0)).unwrap();
    wait_until("2 stored events", || store.count().unwrap() == 2);
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let output = child.wait_with_output().unwrap();
    assert_exit(&output, 0);
    assert!(
        stderr(&output).contains("stored 2 new events"),
        "{}",
        stderr(&output)
    );
    // It says that its queue stays, and how to remove it after a try-out.
    assert!(
        stderr(&output).contains("stays and keeps collecting")
            && stderr(&output).contains("rabbitmqctl delete_queue"),
        "{}",
        stderr(&output)
    );
}
