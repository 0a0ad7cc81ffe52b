use time::macros::datetime;

use super::*;
use crate::model::TaskStatus;

const EVENTS: &str = "SELECT event_id, routing_key, version, timestamp, data, correlation_id, \
                      causation_id, producer, headers, received_at, body, originals, domain, action \
                      FROM pubsub_events WHERE 1 = 1";

const TASKS: &str = "SELECT task_id, task_name, payload, status, result, error, attempts, \
                     routing_key, correlation_id, producer, created_at, updated_at, originals, \
                     result_original, error_original, started_at, finished_at, time_limit_ms FROM pubsub_tasks WHERE 1 = 1";

fn text(s: &str) -> Param {
    Param::Text(s.to_owned())
}

#[test]
fn event_queries() {
    let t0 = datetime!(2024-05-01 12:00 UTC);
    let t1 = datetime!(2024-05-02 12:00 UTC);
    let id = Uuid::from_u128(7);
    let oldest = " ORDER BY timestamp, event_id";
    // (query, style) -> (SQL after the common head, parameters)
    let check = |query: EventQuery, style: Placeholder, tail: &str, params: Vec<Param>| {
        let got = events(&query, style);
        assert_eq!(got.sql, format!("{EVENTS}{tail}"), "{query:?} {style:?}");
        assert_eq!(got.params, params, "{query:?} {style:?}");
    };
    use Placeholder::{Dollar, Question};
    check(EventQuery::new(), Question, oldest, vec![]);
    check(EventQuery::new(), Dollar, oldest, vec![]);
    check(
        EventQuery::new().order(Order::NewestFirst).limit(5),
        Dollar,
        " ORDER BY timestamp DESC, event_id DESC",
        vec![],
    );
    check(
        EventQuery::new().since(t0).until(t1),
        Question,
        &format!(" AND timestamp >= ?1 AND timestamp < ?2{oldest}"),
        vec![Param::Time(t0), Param::Time(t1)],
    );
    check(
        EventQuery::new().since(t0).until(t1),
        Dollar,
        &format!(" AND timestamp >= $1 AND timestamp < $2{oldest}"),
        vec![Param::Time(t0), Param::Time(t1)],
    );
    check(
        EventQuery::new().event_id(id),
        Dollar,
        &format!(" AND event_id = $1{oldest}"),
        vec![Param::Uuid(id)],
    );
    check(
        EventQuery::new().correlation_id("Flow-A"),
        Question,
        &format!(" AND (correlation_id = ?1 OR CAST(event_id AS TEXT) = ?2){oldest}"),
        vec![text("Flow-A"), text("flow-a")],
    );
    // A plain first word narrows on the domain; the pattern itself is the caller's.
    check(
        EventQuery::new().pattern("order.*").unwrap(),
        Dollar,
        &format!(" AND domain = $1{oldest}"),
        vec![text("order")],
    );
    check(
        EventQuery::new().pattern("*.created").unwrap(),
        Dollar,
        oldest,
        vec![],
    );
    // Every criterion, numbered in order.
    check(
        EventQuery::new()
            .since(t0)
            .until(t1)
            .event_id(id)
            .correlation_id("c")
            .pattern("user.#")
            .unwrap(),
        Dollar,
        &format!(
            " AND timestamp >= $1 AND timestamp < $2 AND event_id = $3 \
             AND (correlation_id = $4 OR CAST(event_id AS TEXT) = $5) AND domain = $6{oldest}"
        ),
        vec![
            Param::Time(t0),
            Param::Time(t1),
            Param::Uuid(id),
            text("c"),
            text("c"),
            text("user"),
        ],
    );
}

#[test]
fn values_never_enter_the_sql_text() {
    let hostile = "x' OR '1'='1?$1";
    let select = events(
        &EventQuery::new().correlation_id(hostile),
        Placeholder::Dollar,
    );
    assert!(!select.sql.contains(hostile), "{}", select.sql);
    assert_eq!(select.params[0], text(hostile));
    let select = tasks(
        &TaskFilter {
            task_name: Some(hostile.to_owned()),
            ..TaskFilter::default()
        },
        Placeholder::Question,
    );
    assert!(!select.sql.contains(hostile), "{}", select.sql);
}

#[test]
fn task_filters() {
    let newest = " ORDER BY created_at DESC, task_id DESC";
    let check = |filter: TaskFilter, style: Placeholder, tail: &str, params: Vec<Param>| {
        let got = tasks(&filter, style);
        assert_eq!(got.sql, format!("{TASKS}{tail}"), "{filter:?} {style:?}");
        assert_eq!(got.params, params, "{filter:?} {style:?}");
    };
    use Placeholder::{Dollar, Question};
    check(TaskFilter::default(), Question, newest, vec![]);
    check(
        TaskFilter {
            limit: Some(20),
            ..TaskFilter::default()
        },
        Dollar,
        &format!("{newest} LIMIT 20"),
        vec![],
    );
    let both = TaskFilter {
        status: Some(TaskStatus::Failed),
        task_name: Some("send-report".to_owned()),
        limit: Some(3),
    };
    check(
        both.clone(),
        Question,
        &format!(" AND status = ?1 AND task_name = ?2{newest} LIMIT 3"),
        vec![text("FAILED"), text("send-report")],
    );
    check(
        both,
        Dollar,
        &format!(" AND status = $1 AND task_name = $2{newest} LIMIT 3"),
        vec![text("FAILED"), text("send-report")],
    );
    check(
        TaskFilter {
            task_name: Some("a".to_owned()),
            ..TaskFilter::default()
        },
        Dollar,
        &format!(" AND task_name = $1{newest}"),
        vec![text("a")],
    );
}
