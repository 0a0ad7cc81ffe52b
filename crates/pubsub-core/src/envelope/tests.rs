//! The envelopes' tests: decoding by routing key, ids, round trips, arbitrary bytes.

use serde_json::json;
use time::macros::datetime;

use super::*;

const ID: &str = "7c9e6679-7425-40de-944b-e07fc1f90ae7";
const NOW: OffsetDateTime = datetime!(2024-05-01 12:00 UTC);

fn received(key: Option<&'static str>) -> Received<'static> {
    Received {
        routing_key: key,
        message_id: None,
        timestamp: None,
        received_at: NOW,
    }
}

#[test]
fn namespace_is_the_documented_uuid5() {
    let url = "https://github.com/pubsub-rs/pubsub/bare-event";
    assert_eq!(
        Uuid::new_v5(&Uuid::NAMESPACE_URL, url.as_bytes()),
        BARE_ID_NAMESPACE
    );
}

/// One decode: (envelope, body, routing key, message id, timestamp property) gives
/// (routing key, version, event id, timestamp) or an error containing a word.
#[allow(clippy::type_complexity)]
fn check(
    envelope: Envelope,
    body: Value,
    key: Option<&'static str>,
    props: (Option<&str>, Option<u64>),
    expected: std::result::Result<(&str, &str, Option<&str>, Option<OffsetDateTime>), &str>,
) {
    let bytes = serde_json::to_vec(&body).unwrap();
    let received = Received {
        message_id: props.0,
        timestamp: props.1,
        ..received(key)
    };
    let got = envelope.decode(&bytes, &received);
    match (got, expected) {
        (Ok(event), Ok((routing_key, version, id, ts))) => {
            assert_eq!(event.routing_key(), routing_key, "{body}");
            assert_eq!(event.version(), version, "{body}");
            if let Some(id) = id {
                assert_eq!(event.event_id().to_string(), id, "{body}");
            }
            if let Some(ts) = ts {
                assert_eq!(event.timestamp(), ts, "{body}");
            }
        }
        (Err(e), Err(word)) => assert!(e.to_string().contains(word), "{e} lacks {word}"),
        (got, want) => panic!("{body}: got {got:?}, wanted {want:?}"),
    }
}

fn standard(domain: &str, action: &str) -> Value {
    json!({"domain": domain, "action": action, "data": {"x": 1}, "event_id": ID,
           "timestamp": "2024-05-01T12:30:00", "version": "1.0"})
}

#[test]
fn standard_envelope_takes_the_arrival_key() {
    use Envelope::Standard as S;
    let none = (None, None);
    check(
        S,
        standard("order", "created"),
        Some("order.created"),
        none,
        Ok(("order.created", "1.0", Some(ID), None)),
    );
    check(
        S,
        standard("order", "created"),
        Some("order.created.v2"),
        none,
        Ok(("order.created.v2", "1.0", Some(ID), None)),
    );
    check(
        S,
        standard("order", "created"),
        None,
        none,
        Ok(("order.created", "1.0", Some(ID), None)),
    );
    check(
        S,
        standard("order", "created"),
        Some("order.paid"),
        none,
        Err("disagrees"),
    );
    check(
        S,
        standard("order", "created"),
        Some("order.created.final"),
        none,
        Err("disagrees"),
    );
    check(
        S,
        json!({"resource_id": "r"}),
        Some("order.created"),
        none,
        Err("missing field `domain`"),
    );
}

#[test]
fn bare_envelope_takes_everything_but_data_from_the_message() {
    use Envelope::Bare as B;
    let body = || json!({"resource_id": "r-1", "accessed_at": "2024-05-01T10:00:00Z"});
    check(
        B,
        body(),
        Some("resource.accessed"),
        (Some(ID), Some(1_714_557_600)),
        Ok((
            "resource.accessed",
            "1.0",
            Some(ID),
            Some(datetime!(2024-05-01 10:00 UTC)),
        )),
    );
    check(
        B,
        body(),
        Some("resource.accessed.v2"),
        (None, None),
        Ok(("resource.accessed.v2", "2.0", None, Some(NOW))),
    );
    check(B, body(), None, (None, None), Err("routing_key"));
    check(
        B,
        body(),
        Some("resource"),
        (None, None),
        Err("routing key"),
    );
    check(B, body(), Some("a.b.c"), (None, None), Err("routing key"));
    check(B, json!([1]), Some("a.b"), (None, None), Err("array"));
    check(B, json!("text"), Some("a.b"), (None, None), Err("string"));
}

#[test]
fn bare_event_ids_are_deterministic() {
    let id = |key: &'static str, body: &[u8], message_id: Option<&str>| {
        let received = Received {
            message_id,
            ..received(Some(key))
        };
        Envelope::Bare.decode(body, &received).unwrap().event_id()
    };
    let derived = id("a.b", b"{}", None);
    assert_eq!(derived.get_version_num(), 5);
    assert_eq!(derived, id("a.b", b"{}", None));
    assert_ne!(derived, id("a.c", b"{}", None));
    assert_ne!(derived, id("a.b", b"{ }", None));
    let mut name = b"a.b".to_vec();
    name.push(0);
    name.extend_from_slice(b"{}");
    assert_eq!(derived, Uuid::new_v5(&BARE_ID_NAMESPACE, &name));
    assert_eq!(
        id("a.b", b"{}", Some("msg-17")),
        Uuid::new_v5(&BARE_ID_NAMESPACE, b"msg-17")
    );
    assert_eq!(id("a.b", b"{}", Some(ID)).to_string(), ID);
}

fn bus(fields: Value) -> Value {
    let mut base = json!({"id": ID, "name": "user.registered", "source": "accounts",
                          "event_type": "domain", "timestamp": "2024-05-01T12:30:00+00:00",
                          "data": {"user_id": "U-1"}});
    for (k, v) in fields.as_object().unwrap() {
        if v.is_null() {
            base.as_object_mut().unwrap().remove(k);
        } else {
            base[k] = v.clone();
        }
    }
    base
}

#[test]
fn event_bus_envelope() {
    use Envelope::EventBus as E;
    let none = (None, None);
    let key = Some("user.registered");
    let at = datetime!(2024-05-01 12:30 UTC);
    check(
        E,
        bus(json!({})),
        key,
        none,
        Ok(("user.registered", "1.0", Some(ID), Some(at))),
    );
    check(
        E,
        bus(json!({"timestamp": 1_714_566_600.5})),
        key,
        none,
        Ok((
            "user.registered",
            "1.0",
            None,
            Some(datetime!(2024-05-01 12:30:00.5 UTC)),
        )),
    );
    check(
        E,
        bus(json!({"version": "2.1"})),
        Some("user.registered.v2"),
        none,
        Ok(("user.registered.v2", "2.1", None, None)),
    );
    check(
        E,
        bus(json!({"name": "user.registered.v2"})),
        Some("user.registered.v2"),
        none,
        Ok(("user.registered.v2", "2.0", None, None)),
    );
    check(
        E,
        bus(json!({"id": null, "event_id": ID})),
        key,
        none,
        Ok(("user.registered", "1.0", Some(ID), None)),
    );
    check(
        E,
        bus(json!({})),
        Some("user.deleted"),
        none,
        Err("disagrees"),
    );
    check(E, bus(json!({"name": null})), key, none, Err("`name`"));
    check(E, bus(json!({"name": 3})), key, none, Err("name"));
    check(E, bus(json!({"id": "x"})), key, none, Err("not a UUID"));
    check(E, bus(json!({"id": null})), key, none, Err("`id`"));
    check(E, bus(json!({"data": [1]})), key, none, Err("data"));
    check(
        E,
        bus(json!({"timestamp": "soon"})),
        key,
        none,
        Err("timestamp"),
    );
    check(
        E,
        bus(json!({"timestamp": -5})),
        key,
        none,
        Err("timestamp"),
    );
    check(
        E,
        bus(json!({"timestamp": 1e300})),
        key,
        none,
        Err("timestamp"),
    );
}

#[test]
fn every_envelope_round_trips() {
    let event = Event::builder("user", "registered")
        .key_version(2)
        .data(json!({"user_id": "U-1"}))
        .event_id(Uuid::parse_str(ID).unwrap())
        .timestamp(datetime!(2024-05-01 12:30:00.25 UTC))
        .build()
        .unwrap();
    for envelope in [Envelope::Standard, Envelope::Bare, Envelope::EventBus] {
        let bytes = envelope.encode(&event, "accounts");
        let received = Received {
            message_id: Some(ID),
            timestamp: None,
            routing_key: Some("user.registered.v2"),
            received_at: datetime!(2024-05-01 12:30:00.25 UTC),
        };
        let back = envelope.decode(&bytes, &received).unwrap();
        assert_eq!(back, event, "{envelope}");
        assert_eq!(envelope.name().parse::<Envelope>().unwrap(), envelope);
    }
    let bus: Value =
        serde_json::from_slice(&Envelope::EventBus.encode(&event, "accounts")).unwrap();
    assert_eq!(bus["name"], "user.registered.v2");
    assert_eq!(bus["source"], "accounts");
    assert_eq!(bus["event_type"], "domain");
    assert!("xml".parse::<Envelope>().is_err());
}

#[test]
fn never_panics_on_arbitrary_bytes() {
    let bodies: [&[u8]; 6] = [
        b"",
        b"\xff",
        b"[",
        b"null",
        b"{\"name\":{}}",
        b"{\"timestamp\":1e999}",
    ];
    for body in bodies {
        for envelope in [
            Envelope::Standard,
            Envelope::Bare,
            Envelope::EventBus,
            Envelope::Task,
        ] {
            let result = envelope.decode(body, &received(Some("a.b")));
            // Only a bare body may be any JSON object.
            assert!(result.is_err() || envelope == Envelope::Bare, "{body:?}");
        }
    }
}

#[test]
fn task_envelope() {
    use Envelope::Task as T;
    let key = Some("routing.task.send.report");
    let none = (None, None);
    let task = |name: Value, payload: Value| json!({"task_name": name, "payload": payload});
    check(
        T,
        task(json!("send-report"), json!({"n": 1})),
        key,
        (Some(ID), Some(1_714_566_600)),
        Ok((
            "task.send-report",
            "1.0",
            Some(ID),
            Some(datetime!(2024-05-01 12:30 UTC)),
        )),
    );
    // The routing key only routes: any key, or none, is fine.
    check(
        T,
        task(json!("process_upload"), json!({})),
        Some("x"),
        none,
        Ok(("task.process_upload", "1.0", None, Some(NOW))),
    );
    check(
        T,
        task(json!("a"), json!({})),
        None,
        none,
        Ok(("task.a", "1.0", None, None)),
    );
    check(
        T,
        json!({"task_name": "a"}),
        key,
        none,
        Ok(("task.a", "1.0", None, None)),
    );
    check(
        T,
        task(json!("a"), json!(null)),
        key,
        none,
        Ok(("task.a", "1.0", None, None)),
    );
    check(T, json!({"payload": {}}), key, none, Err("`task_name`"));
    check(T, task(json!(7), json!({})), key, none, Err("task_name"));
    check(T, task(json!(""), json!({})), key, none, Err("task_name"));
    check(
        T,
        task(json!("pkg.module"), json!({})),
        key,
        none,
        Err("task_name"),
    );
    check(T, task(json!("a"), json!([1])), key, none, Err("payload"));
    check(T, json!([]), key, none, Err("array"));
    let body = serde_json::to_vec(&task(json!("a"), json!({"x": 1}))).unwrap();
    let event = T.decode(&body, &received(key)).unwrap();
    assert_eq!(event.data()["x"], 1);
    // Without a message id, the id is the bare rule's: a redelivery gets the same one.
    let mut name = b"routing.task.send.report".to_vec();
    name.push(0);
    name.extend_from_slice(&body);
    assert_eq!(event.event_id(), Uuid::new_v5(&BARE_ID_NAMESPACE, &name));
    assert_eq!(
        T.decode(&body, &received(key)).unwrap().event_id(),
        event.event_id()
    );
    assert_eq!("seed-003".parse::<Envelope>().unwrap(), T);
}

#[test]
fn task_envelope_round_trips() {
    let event = Event::builder(TASK_DOMAIN, "send-report")
        .data(json!({"to": "ops"}))
        .event_id(Uuid::parse_str(ID).unwrap())
        .timestamp(datetime!(2024-05-01 12:30 UTC))
        .build()
        .unwrap();
    let bytes = Envelope::Task.encode(&event, "unused");
    assert_eq!(
        bytes,
        br#"{"task_name":"send-report","payload":{"to":"ops"}}"#
    );
    let received = Received {
        message_id: Some(ID),
        timestamp: Some(1_714_566_600),
        routing_key: Some("routing.task.send.report"),
        received_at: NOW,
    };
    assert_eq!(Envelope::Task.decode(&bytes, &received).unwrap(), event);
}

#[test]
fn event_bus_fields_reach_the_meta() {
    // (extra fields of the body) -> (source, event_type as written, extra left)
    let check = |fields: Value,
                 source: Option<&str>,
                 kind: Option<&str>,
                 known: Option<EventType>,
                 extra: Value| {
        let bytes = serde_json::to_vec(&bus(fields.clone())).unwrap();
        let (event, meta) = Envelope::EventBus
            .decode_with_meta(&bytes, &received(Some("user.registered")))
            .unwrap();
        assert_eq!(event.routing_key(), "user.registered", "{fields}");
        assert_eq!(meta.source(), source, "{fields}");
        assert_eq!(meta.event_type_name(), kind, "{fields}");
        assert_eq!(meta.event_type(), known, "{fields}");
        assert_eq!(Value::Object(meta.extra().clone()), extra, "{fields}");
    };
    let d = Some(EventType::Domain);
    check(json!({}), Some("accounts"), Some("domain"), d, json!({}));
    check(
        json!({"event_type": "INTEGRATION"}),
        Some("accounts"),
        Some("INTEGRATION"),
        Some(EventType::Integration),
        json!({}),
    );
    check(
        json!({"event_type": "audit"}),
        Some("accounts"),
        Some("audit"),
        None,
        json!({}),
    );
    check(json!({"source": null}), None, Some("domain"), d, json!({}));
    check(
        json!({"source": 7, "event_type": ["x"]}),
        None,
        None,
        None,
        json!({"source": 7, "event_type": ["x"]}),
    );
    check(
        json!({"tenant": "acme", "metadata": {"correlation_id": "c-1"}, "version": true}),
        Some("accounts"),
        Some("domain"),
        d,
        json!({"tenant": "acme", "metadata": {"correlation_id": "c-1"}, "version": true}),
    );
    check(
        json!({"id": ID, "event_id": "other"}),
        Some("accounts"),
        Some("domain"),
        d,
        json!({"event_id": "other"}),
    );
    // The other envelopes carry nothing besides the event.
    let standard = json::to_vec(&Event::new("a", "b", json!({})).unwrap());
    let (_, meta) = Envelope::Standard
        .decode_with_meta(&standard, &received(Some("a.b")))
        .unwrap();
    assert!(meta.is_empty());
    // A key that names another event is still an error.
    let bytes = serde_json::to_vec(&bus(json!({}))).unwrap();
    assert!(Envelope::EventBus
        .decode_with_meta(&bytes, &received(Some("user.deleted")))
        .is_err());
}

#[test]
fn event_bus_writes_the_chosen_type() {
    let event = Event::new("user", "registered", json!({"user_id": "U-1"})).unwrap();
    for kind in EventType::ALL {
        let bytes = Envelope::EventBus.encode_as(&event, "accounts", kind);
        let (back, meta) = Envelope::EventBus
            .decode_with_meta(&bytes, &received(Some("user.registered")))
            .unwrap();
        assert_eq!(back, event);
        assert_eq!(meta.event_type(), Some(kind));
        assert_eq!(meta.source(), Some("accounts"));
        assert!(meta.extra().is_empty());
    }
    // The other envelopes have no place for a type: the same bytes as `encode`.
    for envelope in [Envelope::Standard, Envelope::Bare, Envelope::Task] {
        assert_eq!(
            envelope.encode_as(&event, "s", EventType::System),
            envelope.encode(&event, "s"),
            "{envelope}"
        );
    }
    let default: Value = serde_json::from_slice(&Envelope::EventBus.encode(&event, "s")).unwrap();
    assert_eq!(default["event_type"], EVENT_BUS_DEFAULT_TYPE);
}

#[test]
fn any_envelope_keeps_every_json_body() {
    use Envelope::Any as A;
    let at = datetime!(2024-05-01 12:30 UTC);
    // A six-field event under its own key: exactly as the standard envelope.
    check(
        A,
        standard("order", "created"),
        Some("order.created"),
        (None, None),
        Ok(("order.created", "1.0", Some(ID), Some(at))),
    );
    check(
        A,
        standard("order", "created"),
        Some("order.created.v2"),
        (None, None),
        Ok(("order.created.v2", "1.0", Some(ID), None)),
    );
    // Under another key, or any other JSON: derived from the key.
    check(
        A,
        standard("order", "created"),
        Some("user.left"),
        (None, None),
        Ok(("user.left", "1.0", None, Some(NOW))),
    );
    check(
        A,
        json!({"id": 1, "name": "ada"}),
        Some("routing.event.create.user"),
        (Some(ID), Some(1_714_566_600)),
        Ok(("routing.event-create-user", "1.0", Some(ID), Some(at))),
    );
    check(
        A,
        json!({"x": 1}),
        Some("legacy.thing.v3"),
        (None, None),
        Ok(("legacy.thing.v3", "3.0", None, None)),
    );
    check(
        A,
        json!([1, 2]),
        Some("one"),
        (None, None),
        Ok(("one.received", "1.0", None, None)),
    );
    check(
        A,
        json!(null),
        Some(""),
        (None, None),
        Ok(("message.received", "1.0", None, None)),
    );
    check(
        A,
        json!("s"),
        None,
        (None, None),
        Ok(("message.received", "1.0", None, None)),
    );
    check(
        A,
        json!({}),
        Some("a b.c*.#..d"),
        (None, None),
        Ok(("a_b.c_-_-d", "1.0", None, None)),
    );
    let err = A
        .decode(b"not json", &received(Some("routing.event.create.user")))
        .unwrap_err();
    assert!(err.to_string().contains("JSON"), "{err}");
    assert!(A.decode(b"\xff", &received(Some("a.b"))).is_err());
}

#[test]
fn any_envelope_ids_and_data() {
    let key = "routing.event.create.user";
    let body = br#"{ "name" : "ada" }"#;
    let event = Envelope::Any.decode(body, &received(Some(key))).unwrap();
    let mut name = key.as_bytes().to_vec();
    name.push(0);
    name.extend_from_slice(body);
    assert_eq!(event.event_id(), Uuid::new_v5(&BARE_ID_NAMESPACE, &name));
    assert_eq!(event.data()["name"], "ada");
    let list = Envelope::Any
        .decode(b"[1,2]", &received(Some(key)))
        .unwrap();
    assert_eq!(list.data()[ANY_BODY_FIELD], json!([1, 2]));
    // A long key still makes a valid event.
    let long = format!("{}.{}", "a".repeat(200), "b".repeat(54));
    let event = Envelope::Any
        .decode(b"{}", &Received::new(&long, NOW))
        .unwrap();
    assert!(event.routing_key().len() <= 255);
    let one = "w".repeat(255);
    assert!(Envelope::Any
        .decode(b"{}", &Received::new(&one, NOW))
        .is_ok());
    assert_eq!("any".parse::<Envelope>().unwrap(), Envelope::Any);
    assert_eq!(Envelope::Any.name(), "any");
    let standard = Event::new("order", "created", json!({"a": 1})).unwrap();
    assert_eq!(
        Envelope::Any.encode(&standard, "s"),
        json::to_vec(&standard)
    );
}
