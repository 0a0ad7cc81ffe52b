//! Task names, the routing keys they map to, and the seed's headers: pure functions.

use pubsub_core::Metadata;

/// The header naming the service that submitted a task (seed 003's `producer_app`).
pub const PRODUCER_APP_HEADER: &str = "producer_app";

/// The header carrying a task's correlation id (seed 003's `correlation_id`, beside the
/// AMQP property of the same name).
pub const CORRELATION_ID_HEADER: &str = "correlation_id";

/// The queue workers consume unless told otherwise (seed 003's `tasks`).
pub const DEFAULT_QUEUE: &str = "tasks";

/// The prefix of seed 003's task routing keys: `routing.task.<action>.<entity>`.
pub const ROUTING_KEY_PREFIX: &str = "routing.task.";

/// The longest task name accepted: the routing key `routing.task.<name>` stays well within
/// AMQP's 255 bytes.
pub const MAX_TASK_NAME_LEN: usize = 200;

/// Why `name` cannot name a task, or `None` when it can: 1 to [`MAX_TASK_NAME_LEN`] bytes of
/// ASCII letters, digits, `_` and `-` (a word of a routing key, as a Python module name is).
pub(crate) fn invalid_task_name(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("a task name must not be empty");
    }
    if name.len() > MAX_TASK_NAME_LEN {
        return Some("a task name is at most 200 bytes long");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Some("a task name has only ASCII letters, digits, '_' and '-'");
    }
    None
}

/// The routing key a task is submitted with and its worker binds, in seed 003's convention
/// `routing.task.<action>.<entity>`: the name's first word (up to the first `-` or `_`) is
/// the action, the rest the entity. `send-report` and `send_report` become
/// `routing.task.send.report`; `send-monthly-report` becomes
/// `routing.task.send.monthly-report`; a name of one word, `cleanup`, becomes
/// `routing.task.cleanup`.
///
/// ```
/// assert_eq!(pubsub_tasks::routing_key("send-report"), "routing.task.send.report");
/// assert_eq!(pubsub_tasks::routing_key("process_upload"), "routing.task.process.upload");
/// ```
pub fn routing_key(task_name: &str) -> String {
    match task_name.find(['-', '_']) {
        Some(i) if i > 0 && i + 1 < task_name.len() => format!(
            "{ROUTING_KEY_PREFIX}{}.{}",
            &task_name[..i],
            &task_name[i + 1..]
        ),
        _ => format!("{ROUTING_KEY_PREFIX}{task_name}"),
    }
}

/// Who submitted a task and the flow it belongs to, as the delivery says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Origin {
    /// The `correlation_id` header, else the AMQP `correlation_id` property.
    pub(crate) correlation_id: Option<String>,
    /// The `producer_app` header, else the AMQP `app_id` property.
    pub(crate) producer: Option<String>,
}

impl Origin {
    /// Reads the seed's headers first (a pika producer sets only those), then the AMQP
    /// properties; empty strings count as absent.
    pub(crate) fn of(meta: &Metadata) -> Origin {
        let header = |name: &str| {
            meta.header(name)
                .and_then(|v| v.as_str())
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let property = |value: Option<&str>| value.filter(|s| !s.is_empty()).map(str::to_owned);
        Origin {
            correlation_id: header(CORRELATION_ID_HEADER)
                .or_else(|| property(meta.correlation_id())),
            producer: header(PRODUCER_APP_HEADER).or_else(|| property(meta.app_id())),
        }
    }
}

#[cfg(test)]
mod tests {
    use pubsub_core::serde_json::json;

    use super::*;

    #[test]
    fn routing_keys() {
        let check = |name: &str, key: &str| assert_eq!(routing_key(name), key, "{name}");
        check("send-report", "routing.task.send.report");
        check("send_report", "routing.task.send.report");
        check("process_upload", "routing.task.process.upload");
        check("send-monthly-report", "routing.task.send.monthly-report");
        check("send_monthly-report", "routing.task.send.monthly-report");
        check("cleanup", "routing.task.cleanup");
        check("-x", "routing.task.-x");
        check("x-", "routing.task.x-");
    }

    #[test]
    fn task_names() {
        let check =
            |name: &str, ok: bool| assert_eq!(invalid_task_name(name).is_none(), ok, "{name}");
        check("send-report", true);
        check("process_upload", true);
        check("A1", true);
        check(&"a".repeat(200), true);
        check(&"a".repeat(201), false);
        check("", false);
        check("pkg.module", false);
        check("send report", false);
        check("séance", false);
        check("a*", false);
    }

    #[test]
    fn origin_prefers_the_seed_headers() {
        let headers = |pairs: &[(&str, serde_json::Value)]| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect()
        };
        let meta = Metadata::default()
            .with_correlation_id(Some("prop-corr".into()))
            .with_app_id(Some("prop-app".into()));
        assert_eq!(
            Origin::of(&meta),
            Origin {
                correlation_id: Some("prop-corr".into()),
                producer: Some("prop-app".into())
            }
        );
        let seeded = meta.clone().with_headers(headers(&[
            (CORRELATION_ID_HEADER, json!("c-1")),
            (PRODUCER_APP_HEADER, json!("reports")),
        ]));
        assert_eq!(
            Origin::of(&seeded),
            Origin {
                correlation_id: Some("c-1".into()),
                producer: Some("reports".into())
            }
        );
        // Not a string, or empty: the property instead.
        let odd = meta.with_headers(headers(&[
            (CORRELATION_ID_HEADER, json!(7)),
            (PRODUCER_APP_HEADER, json!("")),
        ]));
        assert_eq!(
            Origin::of(&odd).correlation_id.as_deref(),
            Some("prop-corr")
        );
        assert_eq!(Origin::of(&odd).producer.as_deref(), Some("prop-app"));
        assert_eq!(Origin::of(&Metadata::default()), Origin::default());
    }
}
