//! How `pubsub task status` and `list` print tasks: pure functions of the records.

use pubsub_core::text::clip;
use pubsub_store::TaskRecord;
use serde_json::Value;

use crate::format::{plural, table, time_millis};

/// One task in full, a field a line.
pub(super) fn status(task: &TaskRecord) -> String {
    let or_dash = |v: Option<&str>| v.unwrap_or("-").to_owned();
    let mut lines = vec![
        ("task", task.task_id.to_string()),
        ("name", task.task_name.clone()),
        (
            "status",
            format!(
                "{} ({})",
                task.status.as_str(),
                plural(task.attempts, "attempt")
            ),
        ),
    ];
    if let Some(result) = &task.result {
        lines.push(("result", compact(result)));
    }
    if let Some(error) = &task.error {
        lines.push(("error", error.clone()));
    }
    lines.extend([
        ("payload", compact(&task.payload)),
        ("routing key", task.routing_key.clone()),
        ("producer", or_dash(task.producer.as_deref())),
        ("correlation", or_dash(task.correlation_id.as_deref())),
        ("received", time_millis(task.created_at)),
    ]);
    if let Some(started) = task.started_at {
        lines.push(("started", time_millis(started)));
    }
    if let Some(finished) = task.finished_at {
        lines.push(("finished", time_millis(finished)));
    }
    if let Some(limit) = task.time_limit {
        lines.push(("time limit", format!("{limit:?}")));
    }
    lines.push(("updated", time_millis(task.updated_at)));
    let mut out = String::new();
    for (name, value) in lines {
        out.push_str(&format!("{name:<12} {value}\n"));
    }
    out
}

/// Tasks as a table, newest first as given; a line saying so when there are none.
pub(super) fn list(tasks: &[TaskRecord]) -> String {
    if tasks.is_empty() {
        return "no task\n".to_owned();
    }
    let rows: Vec<Vec<String>> = tasks
        .iter()
        .map(|t| {
            vec![
                t.task_id.to_string(),
                clip(&t.task_name, 40),
                t.status.as_str().to_owned(),
                t.attempts.to_string(),
                time_millis(t.updated_at),
                t.error.as_deref().map_or_else(String::new, |e| clip(e, 60)),
            ]
        })
        .collect();
    table(
        &["TASK", "NAME", "STATUS", "ATTEMPTS", "UPDATED", "ERROR"],
        &rows,
    )
}

/// One task as a JSON object: the store's record, as it serializes.
pub(super) fn json(task: &TaskRecord) -> Value {
    serde_json::to_value(task).unwrap_or(Value::Null)
}

/// A JSON value on one line, cut to a screen's width.
fn compact(value: &Value) -> String {
    clip(&value.to_string(), 200)
}

#[cfg(test)]
mod tests {
    use pubsub_store::TaskStatus;
    use serde_json::json;
    use time::macros::datetime;
    use uuid::Uuid;

    use super::*;

    fn record(status: TaskStatus) -> TaskRecord {
        TaskRecord {
            task_id: Uuid::from_u128(7),
            task_name: "send-report".into(),
            payload: json!({"to": "ops"}),
            status,
            result: (status == TaskStatus::Completed).then(|| json!({"sent": true})),
            error: (status == TaskStatus::Failed).then(|| "smtp down".to_owned()),
            attempts: if status == TaskStatus::Failed { 3 } else { 1 },
            routing_key: "routing.task.send.report".into(),
            correlation_id: Some("flow-1".into()),
            producer: None,
            created_at: datetime!(2024-05-01 12:30 UTC),
            updated_at: datetime!(2024-05-01 12:30:01 UTC),
            started_at: Some(datetime!(2024-05-01 12:30:00.5 UTC)),
            finished_at: (status != TaskStatus::Pending)
                .then_some(datetime!(2024-05-01 12:30:01 UTC)),
            time_limit: Some(std::time::Duration::from_secs(30)),
        }
    }

    #[test]
    fn status_shows_the_outcome() {
        let done = status(&record(TaskStatus::Completed));
        assert!(
            done.contains("status       COMPLETED (1 attempt)"),
            "{done}"
        );
        assert!(done.contains(r#"result       {"sent":true}"#), "{done}");
        assert!(done.contains("producer     -"), "{done}");
        assert!(done.contains("received     2024-05-01"), "{done}");
        assert!(done.contains("started      2024-05-01"), "{done}");
        assert!(done.contains("finished     2024-05-01"), "{done}");
        assert!(done.contains("time limit   30s"), "{done}");
        assert!(!done.contains("error"), "{done}");
        let failed = status(&record(TaskStatus::Failed));
        assert!(failed.contains("FAILED (3 attempts)"), "{failed}");
        assert!(failed.contains("error        smtp down"), "{failed}");
    }

    #[test]
    fn lists_and_json() {
        assert_eq!(list(&[]), "no task\n");
        let table = list(&[record(TaskStatus::Failed), record(TaskStatus::Pending)]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        assert!(lines[0].starts_with("TASK"), "{table}");
        assert!(
            lines[1].contains("FAILED") && lines[1].ends_with("smtp down"),
            "{table}"
        );
        let one = json(&record(TaskStatus::Completed));
        assert_eq!(one["status"], "COMPLETED");
        assert_eq!(one["result"]["sent"], true);
        assert_eq!(one["created_at"], "2024-05-01T12:30:00Z");
        assert_eq!(one["producer"], Value::Null);
    }
}
