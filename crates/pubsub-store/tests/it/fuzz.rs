//! The store's write path under the frame guard's fuzz corpus (`crates/pubsub-amqp/fuzz`):
//! every corpus file's bytes made into the strings, keys, headers, correlation id and body of
//! an event (NUL, control characters, replacement characters, long runs), written to each
//! backend and read back unchanged.

use pubsub_core::{Event, Headers, Metadata};
use pubsub_store::{EventRow, EventStore};
use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use crate::support::TestDb;

/// The event `bytes` make: their text (lossy UTF-8) as a value, a key, a nested value and a
/// header; the bytes themselves as the body.
fn row_of(bytes: &[u8]) -> (Event, EventRow) {
    let text = String::from_utf8_lossy(bytes).into_owned();
    let short: String = text.chars().take(200).collect();
    let mut data = Map::new();
    data.insert("text".into(), Value::from(text.as_str()));
    data.insert(
        format!("k{short}"),
        json!({ "nested": [short, bytes.len()] }),
    );
    let event = Event::from_routing_key("fuzz.case")
        .data(Value::Object(data))
        .build()
        .expect("a valid event");
    let mut headers = Headers::new();
    headers.insert(format!("x-{short}"), Value::from(text.as_str()));
    let meta = Metadata::default()
        .with_correlation_id(Some(short.clone()))
        .with_app_id(Some(short))
        .with_headers(headers);
    let row = EventRow::new(&event, &meta, OffsetDateTime::now_utc()).with_body(bytes);
    (event, row)
}

#[test]
fn the_fuzz_corpus_is_stored_and_read_back_unchanged() {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../pubsub-amqp/fuzz/corpus/inbound"
    );
    let mut inputs: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| std::fs::read(entry.unwrap().path()).unwrap())
        .collect();
    assert!(inputs.len() >= 10, "the seed corpus is missing");
    inputs.push(b"\0".to_vec());
    inputs.push(b"a\0b\xff\xfe\\u0000\x01".to_vec());
    inputs.push(vec![0; 10_000]);
    for db in TestDb::all() {
        let name = db.database.to_string();
        let mut store = EventStore::open(&db.database).unwrap();
        let (events, rows): (Vec<Event>, Vec<EventRow>) =
            inputs.iter().map(|bytes| row_of(bytes)).unzip();
        let appended = store.append_batch(&rows).unwrap();
        assert!(
            appended.refused.is_empty(),
            "{name}: {:?}",
            appended.refused
        );
        assert_eq!(appended.inserted, rows.len(), "{name}");
        for ((event, row), bytes) in events.iter().zip(&rows).zip(&inputs) {
            let stored = store.get(event.event_id()).unwrap().expect("stored");
            assert_eq!(&stored.event, event, "{name}");
            assert_eq!(stored.body.as_deref(), Some(&bytes[..]), "{name}");
            assert_eq!(stored.correlation_id, row.correlation_id, "{name}");
            assert_eq!(stored.producer, row.producer, "{name}");
            let headers: Value = serde_json::from_str(&row.headers).unwrap();
            assert_eq!(
                Value::Object(stored.headers.into_iter().collect()),
                headers,
                "{name}"
            );
        }
    }
}
