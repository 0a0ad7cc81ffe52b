//! Events the database may refuse, through the real broker into each backend: a NUL in each
//! JSON position and in headers, a lone surrogate, a number out of f64's range, very long
//! strings and keys, deep nesting, a 100 MB body, header values of every AMQP type. Each
//! between two good events: the good ones are stored, and the bad one is either stored
//! faithfully (its data, headers and body as sent) or dead-lettered with its reason.

use std::time::{Duration, Instant};

use pubsub_amqp::{HeaderValue, Headers, Properties};
use pubsub_recorder::{record, RecordOptions, Recorder};
use pubsub_store::EventStore;
use pubsub_subscriber::headers::DEAD_LETTER_REASON;
use pubsub_subscriber::{queue_names, RetryPolicy};
use pubsub_testkit::Bus;
use serde_json::Value;

use crate::support::TestDb;

/// What must become of a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Stored, data and headers as sent.
    Stored,
    /// Dead-lettered, the reason containing this.
    DeadLettered(&'static str),
}

/// One hostile message: its name, its `data` as JSON text (put in the body as it is), its
/// headers, and what must become of it.
struct Case {
    name: &'static str,
    data: String,
    headers: Headers,
    expect: Expect,
}

fn case(name: &'static str, data: impl Into<String>, expect: Expect) -> Case {
    Case {
        name,
        data: data.into(),
        headers: Headers::new(),
        expect,
    }
}

fn with_header(name: &'static str, key: &str, value: HeaderValue) -> Case {
    let mut headers = Headers::new();
    headers.insert(key.to_owned(), value);
    Case {
        name,
        data: r#"{"ok":true}"#.to_owned(),
        headers,
        expect: Expect::Stored,
    }
}

fn nested(depth: usize) -> String {
    format!(r#"{{"d":{}1{}}}"#, "[".repeat(depth), "]".repeat(depth))
}

fn cases() -> Vec<Case> {
    use Expect::*;
    let mut table = Headers::new();
    table.insert("n\u{0}".into(), HeaderValue::Str("v\u{0}".into()));
    // Not NaN nor an infinity: RabbitMQ itself cannot parse such a double (it closes the
    // publisher's channel), so no consumer ever gets one.
    let every_type = [
        ("bool", HeaderValue::Bool(true)),
        ("int", HeaderValue::Int(i64::MIN)),
        ("float", HeaderValue::Float(1.5e300)),
        ("str", HeaderValue::Str("s".into())),
        ("bytes", HeaderValue::Bytes(vec![0, 255, 0])),
        (
            "array",
            HeaderValue::Array(vec![HeaderValue::Void, HeaderValue::Str("\u{0}".into())]),
        ),
        ("table", HeaderValue::Table(table)),
        ("timestamp", HeaderValue::Timestamp(u64::MAX)),
        ("void", HeaderValue::Void),
    ];
    let mut all = vec![
        case("nul in a string", r#"{"a":"bad\u0000x"}"#, Stored),
        case("nul in a key", r#"{"k\u0000":1}"#, Stored),
        case(
            "nul nested",
            r#"{"a":{"b":["x","\u0000",{"\u0000":"\u0000"}]}}"#,
            Stored,
        ),
        case(
            "lone surrogate",
            r#"{"a":"\ud800"}"#,
            DeadLettered("not valid JSON"),
        ),
        case(
            "lone low surrogate",
            r#"{"a":"\udc00x"}"#,
            DeadLettered("not valid JSON"),
        ),
        case(
            "number out of range",
            r#"{"a":1e400}"#,
            DeadLettered("number out of range"),
        ),
        case(
            "negative out of range",
            r#"{"a":-1e400}"#,
            DeadLettered("number out of range"),
        ),
        case("huge integer", r#"{"a":18446744073709551615}"#, Stored),
        case(
            "long string",
            format!(r#"{{"a":"{}"}}"#, "x".repeat(1 << 20)),
            Stored,
        ),
        case(
            "long key",
            format!(r#"{{"{}":1}}"#, "k".repeat(100_000)),
            Stored,
        ),
        case("nested 100 deep", nested(100), Stored),
        case(
            "nested 5000 deep",
            nested(5_000),
            DeadLettered("recursion limit"),
        ),
        case(
            "100 MB body",
            format!(r#"{{"a":"{}"}}"#, "x".repeat(100 << 20)),
            DeadLettered("exceeds the maximum"),
        ),
        with_header(
            "nul in a header value",
            "x-h",
            HeaderValue::Str("v\u{0}".into()),
        ),
        with_header(
            "nul in a header name",
            "x\u{0}h",
            HeaderValue::Str("v".into()),
        ),
    ];
    for (name, value) in every_type {
        let mut headers = Headers::new();
        headers.insert(format!("x-{name}"), value);
        all.push(Case {
            name: "a header of each AMQP type",
            data: r#"{"ok":true}"#.to_owned(),
            headers,
            expect: Stored,
        });
    }
    all
}

/// A body of the standard envelope with `data` as it is.
fn body(id: uuid::Uuid, data: &str) -> Vec<u8> {
    format!(
        r#"{{"domain":"order","action":"created","data":{data},"event_id":"{id}","timestamp":"2024-05-01T12:30:00.123456+00:00","version":"1.0"}}"#
    )
    .into_bytes()
}

#[test]
fn hostile_events_are_stored_faithfully_or_dead_lettered_with_a_reason() {
    for db in TestDb::all() {
        let name = db.database.to_string();
        let Some(mut bus) = Bus::new("store-hostile") else {
            return;
        };
        let queue = bus.queue_name("store-hostile");
        for q in queue_names(&queue, &RetryPolicy::default()) {
            bus.delete_queue_at_end(&q);
        }
        let options = RecordOptions {
            queue: queue.clone(),
            exchange: bus.exchange().to_owned(),
            prefetch: 20,
            ..RecordOptions::default()
        };
        let recorder = Recorder::new(&db.database).unwrap();
        let subscriber = record(bus.connection(), recorder, &options).unwrap();
        let dlq = subscriber.dead_letter_queue();
        let running = subscriber.spawn().unwrap();

        let cases = cases();
        let mut good = Vec::new();
        let mut bad = Vec::new();
        let publish = |id: uuid::Uuid, data: &str, headers: &Headers| {
            let properties = Properties {
                content_type: Some("application/json".into()),
                message_id: Some(id.to_string()),
                headers: headers.clone(),
                ..Properties::default()
            };
            bus.publish_raw(
                bus.exchange(),
                "order.created",
                &body(id, data),
                &properties,
            );
        };
        for case in &cases {
            let before = uuid::Uuid::new_v4();
            publish(before, r#"{"good":1}"#, &Headers::new());
            good.push(before);
            let id = uuid::Uuid::new_v4();
            publish(id, &case.data, &case.headers);
            bad.push(id);
        }
        let last = uuid::Uuid::new_v4();
        publish(last, r#"{"good":2}"#, &Headers::new());
        good.push(last);

        let stored_n = good.len() + cases.iter().filter(|c| c.expect == Expect::Stored).count();
        let dead_n = cases.len() + good.len() - stored_n;
        let mut store = EventStore::open(&db.database).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while store.count().unwrap() < stored_n as u64 || bus.ready(&dlq) < Some(dead_n as u32) {
            assert!(
                Instant::now() < deadline,
                "{name}: {} stored of {stored_n}, {:?} dead-lettered of {dead_n}",
                store.count().unwrap(),
                bus.ready(&dlq)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let stats = running.stop().unwrap();
        assert_eq!(store.count().unwrap(), stored_n as u64, "{name}: {stats}");
        for id in &good {
            assert!(store.get(*id).unwrap().is_some(), "{name}: good event {id}");
        }
        let dead = bus.drain(&dlq);
        assert_eq!(dead.len(), dead_n, "{name}");
        for (case, id) in cases.iter().zip(&bad) {
            let sent = body(*id, &case.data);
            match case.expect {
                Expect::Stored => {
                    let stored = store.get(*id).unwrap();
                    let stored =
                        stored.unwrap_or_else(|| panic!("{name}: {} not stored", case.name));
                    let data: Value = serde_json::from_str(&case.data).unwrap();
                    assert_eq!(
                        Value::Object(stored.event.data().clone()),
                        data,
                        "{name}: {}",
                        case.name
                    );
                    assert_eq!(
                        stored.body.as_deref(),
                        Some(&sent[..]),
                        "{name}: {}",
                        case.name
                    );
                    for (key, value) in &case.headers {
                        let header = stored.headers.get(key);
                        assert!(header.is_some(), "{name}: {}: header {key:?}", case.name);
                        if let HeaderValue::Str(s) = value {
                            assert_eq!(
                                header,
                                Some(&Value::from(s.as_str())),
                                "{name}: {}",
                                case.name
                            );
                        }
                    }
                }
                Expect::DeadLettered(why) => {
                    let copy = dead.iter().find(|t| t.body == sent);
                    let copy =
                        copy.unwrap_or_else(|| panic!("{name}: {} not dead-lettered", case.name));
                    let reason = copy.properties.headers.get(DEAD_LETTER_REASON);
                    let reason = reason.and_then(HeaderValue::as_str).unwrap_or_default();
                    assert!(reason.contains(why), "{name}: {}: {reason}", case.name);
                    assert!(store.get(*id).unwrap().is_none(), "{name}: {}", case.name);
                }
            }
        }
    }
}
