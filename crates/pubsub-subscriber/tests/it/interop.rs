//! Interop with the seeds' Python services, through pika against the real broker (issue 14):
//! versioned routing keys both ways, a queue pika declared, and messages in seed 002's bare
//! body and seed 004's envelope (its `source`, `event_type` and other fields both ways). Under `CI=true` these fail when pika is missing
//! (`pip install pika`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::Receiver;
use pubsub_amqp::QueueConfig;
use pubsub_core::envelope::{Envelope, BARE_ID_NAMESPACE};
use pubsub_core::{handler_fn, Event, EventType, Metadata, Migration, TypedEvent};
use pubsub_publisher::{EventPublisher, PublishOptions};
use pubsub_registry::HandlerRegistry;
use pubsub_subscriber::{
    dead_letter_queue_name, retry_queue_name, DeliveryReport, Disposition, EventSubscriber,
    RetryPolicy, SubscriberBuilder,
};
use pubsub_testkit::python::pika;
use pubsub_testkit::Bus;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(15);

/// Seed 002's event, version 1: routing key `resource.accessed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ResourceAccessed {
    resource_id: String,
}

impl TypedEvent for ResourceAccessed {
    const DOMAIN: &'static str = "resource";
    const ACTION: &'static str = "accessed";
}

/// Seed 002's breaking change: routing key `resource.accessed.v2`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ResourceAccessedV2 {
    resource_id: String,
    resource_name: String,
}

impl TypedEvent for ResourceAccessedV2 {
    const DOMAIN: &'static str = "resource";
    const ACTION: &'static str = "accessed";
    const VERSION: &'static str = "2.0";
    const VERSIONED_KEY: bool = true;
}

/// The Python side's common part: a blocking connection from `AMQP_URL` and a publisher in
/// the seeds' style (persistent, JSON).
const PY_PRELUDE: &str = r#"
import datetime, json, os, sys, time, uuid
import pika

connection = pika.BlockingConnection(pika.URLParameters(os.environ["AMQP_URL"]))
channel = connection.channel()

def publish(exchange, key, body, **props):
    channel.basic_publish(
        exchange=exchange, routing_key=key, body=body,
        properties=pika.BasicProperties(
            delivery_mode=2, content_type="application/json", **props))

def six_fields(domain, action, data, version="1.0"):
    return json.dumps({"domain": domain, "action": action, "data": data,
                       "event_id": str(uuid.uuid4()),
                       "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                       "version": version})

def take_all(queue, expected):
    # basic_get until `expected` messages or 15 s.
    deadline = time.time() + 15
    taken = []
    while len(taken) < expected and time.time() < deadline:
        method, props, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            time.sleep(0.05)
            continue
        taken.append({"routing_key": method.routing_key, "body": body.decode(),
                      "message_id": props.message_id, "app_id": props.app_id})
    print(json.dumps(taken))
"#;

fn python(bus: &Bus, script: &str, args: &[&str]) -> Option<String> {
    pika(bus.config(), &format!("{PY_PRELUDE}\n{script}"), args)
}

/// A subscriber on `queue` bound to the bus's exchange, whose queue, dead-letter queue and
/// retry queues are deleted at the end; reports go to the returned channel.
fn service(
    bus: &mut Bus,
    queue: &str,
    registry: HandlerRegistry,
    retry: RetryPolicy,
) -> (SubscriberBuilder, Receiver<DeliveryReport>) {
    bus.delete_queue_at_end(queue);
    bus.delete_queue_at_end(&dead_letter_queue_name(queue));
    for delay in [
        Duration::from_millis(200),
        Duration::from_secs(1),
        Duration::from_secs(5),
    ] {
        bus.delete_queue_at_end(&retry_queue_name(queue, delay));
    }
    let (tx, rx) = crossbeam_channel::unbounded();
    let builder = EventSubscriber::builder(bus.connection(), queue, Arc::new(registry))
        .exchange(bus.exchange())
        .retry(retry)
        .observer(tx);
    (builder, rx)
}

fn reports(rx: &Receiver<DeliveryReport>, n: usize) -> Vec<DeliveryReport> {
    (0..n)
        .map(|i| {
            rx.recv_timeout(WAIT)
                .unwrap_or_else(|_| panic!("report {} of {n} within {WAIT:?}", i + 1))
        })
        .collect()
}

/// Records every event a handler sees.
fn recorder(
    seen: &Arc<Mutex<Vec<Event>>>,
) -> impl Fn(&Event, &pubsub_core::Metadata) -> pubsub_core::HandlerResult + Send + Sync {
    let seen = seen.clone();
    move |event, _| {
        seen.lock().unwrap().push(event.clone());
        Ok(())
    }
}

#[test]
fn interop_pika_v2_events_dispatch_on_the_versioned_key() {
    let Some(mut bus) = Bus::new("interop-v2-in") else {
        return;
    };
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut registry = HandlerRegistry::new();
    registry
        .subscribe("resource.accessed.v2", handler_fn("v2", recorder(&seen)))
        .unwrap();
    registry
        .subscribe("order.created.v2", handler_fn("orders-v2", recorder(&seen)))
        .unwrap();
    let queue = pubsub_testkit::unique("interop-v2-in");
    let (builder, rx) = service(&mut bus, &queue, registry, RetryPolicy::none());
    let mut subscriber = builder
        .envelope_for("resource.#", Envelope::Bare)
        .build()
        .unwrap();
    subscriber.setup().unwrap();
    let running = subscriber.spawn().unwrap();

    // Seed 002's publisher: the bare model under the v2 key, and the v1 key beside it (not
    // bound here); a seed 000 service's six fields under a v2 key; and one whose body names
    // another event than its key.
    let sent = python(
        &bus,
        r#"
ex = sys.argv[1]
publish(ex, "resource.accessed", json.dumps({"resource_id": "r-1"}))
publish(ex, "resource.accessed.v2", json.dumps({"resource_id": "r-1", "resource_name": "Report"}))
publish(ex, "order.created.v2", six_fields("order", "created", {"order_id": "O-2"}, "2.0"))
# A seed 000 service's Event.get_routing_key() is domain.action: it puts the word in the action.
publish(ex, "order.created.v2", six_fields("order", "created.v2", {"order_id": "O-3"}))
publish(ex, "order.created.v2", six_fields("user", "registered", {}))
connection.close()
"#,
        &[bus.exchange()],
    );
    if sent.is_none() {
        running.stop().unwrap();
        return;
    }
    let reports = reports(&rx, 4);
    let acked: Vec<&str> = reports
        .iter()
        .filter(|r| r.disposition == Disposition::Acked)
        .map(|r| r.routing_key.as_str())
        .collect();
    assert_eq!(acked.len(), 3, "{reports:?}");
    assert!(acked.contains(&"resource.accessed.v2") && acked.contains(&"order.created.v2"));
    let reasons: Vec<&str> = reports
        .iter()
        .filter_map(|r| match &r.disposition {
            Disposition::DeadLettered { reason, .. } => Some(reason.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        reasons.len(),
        1,
        "a mismatched body is dead-lettered: {reports:?}"
    );
    assert!(reasons[0].contains("disagrees"), "{}", reasons[0]);
    assert!(reasons[0].contains("user.registered"), "{}", reasons[0]);
    running.stop().unwrap();

    let mut seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3, "{seen:?}");
    seen.sort_by_key(|e| {
        (
            std::cmp::Reverse(e.routing_key().to_owned()),
            e.data().get("order_id").map(ToString::to_string),
        )
    });
    let bare = &seen[0];
    assert_eq!(bare.routing_key(), "resource.accessed.v2");
    assert_eq!((bare.domain(), bare.action()), ("resource", "accessed"));
    assert_eq!(bare.key_version(), Some(2));
    assert!(bare.is::<ResourceAccessedV2>() && !bare.is::<ResourceAccessed>());
    assert_eq!(
        bare.decode::<ResourceAccessedV2>().unwrap(),
        ResourceAccessedV2 {
            resource_id: "r-1".into(),
            resource_name: "Report".into()
        }
    );
    let six = &seen[1];
    assert_eq!(six.routing_key(), "order.created.v2");
    assert_eq!(six.version(), "2.0");
    assert_eq!(six.data()["order_id"], "O-2");
    let in_action = &seen[2];
    assert_eq!(in_action.routing_key(), "order.created.v2");
    assert_eq!(
        (in_action.action(), in_action.key_version()),
        ("created", Some(2))
    );
    assert_eq!(in_action.data()["order_id"], "O-3");
    drop(seen);
    assert_eq!(bus.ready(&dead_letter_queue_name(&queue)), Some(1));
}

#[test]
fn interop_rust_v2_events_and_migration_reach_pika() {
    let Some(mut bus) = Bus::new("interop-v2-out") else {
        return;
    };
    let six = bus.bound_queue(
        "interop-six",
        "resource.accessed.#",
        &QueueConfig::default(),
    );
    let bare = bus.bound_queue(
        "interop-bare",
        "resource.accessed.v2",
        &QueueConfig::default(),
    );

    let migration = Migration::new(
        &ResourceAccessed {
            resource_id: "r-9".into(),
        },
        &ResourceAccessedV2 {
            resource_id: "r-9".into(),
            resource_name: "Ledger".into(),
        },
    )
    .unwrap();
    let mut publisher = EventPublisher::builder(bus.connection(), bus.exchange())
        .app_id("rust-svc")
        .build()
        .unwrap();
    publisher.publish_migration(&migration).unwrap();
    // Drain the bare queue of the six-field copy, then publish the bare model a seed 002
    // consumer reads.
    bus.drain(&bare);
    let mut bare_publisher = EventPublisher::builder(bus.connection(), bus.exchange())
        .envelope(Envelope::Bare)
        .build()
        .unwrap();
    bare_publisher
        .publish(
            &Event::from_typed(&ResourceAccessedV2 {
                resource_id: "r-10".into(),
                resource_name: "Atlas".into(),
            })
            .unwrap(),
        )
        .unwrap();

    let Some(out) = python(
        &bus,
        r#"
take_all(sys.argv[1], 2)
take_all(sys.argv[2], 1)
connection.close()
"#,
        &[&six, &bare],
    ) else {
        return;
    };
    let mut lines = out.lines();
    let six_taken: Vec<Value> = serde_json::from_str(lines.next().unwrap()).unwrap();
    let bare_taken: Vec<Value> = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(six_taken.len(), 2, "{six_taken:?}");
    let keys: Vec<&str> = six_taken
        .iter()
        .map(|m| m["routing_key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["resource.accessed", "resource.accessed.v2"]);
    let bodies: Vec<Value> = six_taken
        .iter()
        .map(|m| serde_json::from_str(m["body"].as_str().unwrap()).unwrap())
        .collect();
    for body in &bodies {
        assert_eq!(
            (&body["domain"], &body["action"]),
            (&json!("resource"), &json!("accessed"))
        );
        assert_eq!(body["event_id"], bodies[0]["event_id"], "one fact, one id");
    }
    assert_eq!(
        (&bodies[0]["version"], &bodies[1]["version"]),
        (&json!("1.0"), &json!("2.0"))
    );
    assert_eq!(bodies[1]["data"]["resource_name"], "Ledger");
    assert_eq!(six_taken[0]["app_id"], "rust-svc");

    assert_eq!(bare_taken.len(), 1, "{bare_taken:?}");
    assert_eq!(bare_taken[0]["routing_key"], "resource.accessed.v2");
    let model: Value = serde_json::from_str(bare_taken[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        model,
        json!({"resource_id": "r-10", "resource_name": "Atlas"})
    );
}

#[test]
fn interop_a_queue_pika_declared_is_consumed_with_retries_and_dead_letters() {
    let Some(mut bus) = Bus::new("interop-existing") else {
        return;
    };
    let queue = pubsub_testkit::unique("interop-existing");
    let attempts = Arc::new(Mutex::new(0u32));
    let mut registry = HandlerRegistry::new();
    {
        let attempts = attempts.clone();
        registry
            .subscribe(
                "job.*",
                handler_fn("flaky", move |_, meta| {
                    *attempts.lock().unwrap() += 1;
                    if meta.attempt() == 1 {
                        Err("first attempt fails".into())
                    } else {
                        Ok(())
                    }
                }),
            )
            .unwrap();
    }
    let retry = RetryPolicy::new(2, vec![Duration::from_millis(200)]);
    let (builder, rx) = service(&mut bus, &queue, registry, retry.clone());

    // The Python service declares its queue as seed 002 does: durable, no arguments.
    let declared = python(
        &bus,
        r#"
channel.queue_declare(sys.argv[2], durable=True)
channel.queue_bind(sys.argv[2], sys.argv[1], routing_key="job.*")
connection.close()
"#,
        &[bus.exchange(), &queue],
    );
    if declared.is_none() {
        return;
    }

    // Declaring it with the subscriber's dead-letter arguments is refused...
    let mut declaring =
        EventSubscriber::builder(bus.connection(), &queue, Arc::new(HandlerRegistry::new()))
            .exchange(bus.exchange())
            .build()
            .unwrap();
    let refused = declaring.setup().unwrap_err();
    assert!(
        matches!(
            &refused,
            pubsub_subscriber::Error::Amqp(pubsub_amqp::Error::Inequivalent { .. })
        ),
        "{refused:?}"
    );

    // ...consuming it as it is works, retries and dead letters included.
    let mut subscriber = builder.existing_queue(true).build().unwrap();
    subscriber.setup().unwrap();
    let running = subscriber.spawn().unwrap();
    python(
        &bus,
        r#"
publish(sys.argv[1], "job.done", six_fields("job", "done", {"job_id": "J-1"}))
publish(sys.argv[1], "job.done", "not json at all")
connection.close()
"#,
        &[bus.exchange()],
    );
    let mut reports = reports(&rx, 3);
    reports.sort_by_key(|r| r.attempt);
    let dispositions: Vec<String> = reports.iter().map(|r| r.disposition.to_string()).collect();
    assert!(
        reports.iter().any(|r| matches!(
            r.disposition,
            Disposition::Retried {
                next_attempt: 2,
                ..
            }
        )),
        "{dispositions:?}"
    );
    assert!(
        reports
            .iter()
            .any(|r| r.attempt == 2 && r.disposition == Disposition::Acked),
        "{dispositions:?}"
    );
    assert!(
        reports
            .iter()
            .any(|r| matches!(r.disposition, Disposition::DeadLettered { .. })),
        "{dispositions:?}"
    );
    running.stop().unwrap();
    assert_eq!(*attempts.lock().unwrap(), 2);
    assert_eq!(bus.ready(&dead_letter_queue_name(&queue)), Some(1));

    // The queue kept its own (absent) arguments: pika declares it again unchanged.
    python(
        &bus,
        r#"
channel.queue_declare(sys.argv[1], durable=True)
connection.close()
"#,
        &[&queue],
    );
}

#[test]
fn interop_a_missing_existing_queue_is_a_clear_error() {
    let Some(mut bus) = Bus::new("interop-missing") else {
        return;
    };
    let queue = pubsub_testkit::unique("interop-missing");
    let (builder, _rx) = service(
        &mut bus,
        &queue,
        HandlerRegistry::new(),
        RetryPolicy::none(),
    );
    let mut subscriber = builder.existing_queue(true).build().unwrap();
    let err = subscriber.setup().unwrap_err();
    assert!(
        matches!(
            &err,
            pubsub_subscriber::Error::Amqp(pubsub_amqp::Error::NotFound { .. })
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains(&queue), "{err}");
}

#[test]
fn interop_bare_and_event_bus_messages_from_pika_are_decoded() {
    let Some(mut bus) = Bus::new("interop-envelopes") else {
        return;
    };
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut registry = HandlerRegistry::new();
    registry
        .subscribe("user.registered", handler_fn("users", recorder(&seen)))
        .unwrap();
    registry
        .subscribe(
            "resource.accessed",
            handler_fn("resources", recorder(&seen)),
        )
        .unwrap();
    let queue = pubsub_testkit::unique("interop-envelopes");
    let (builder, rx) = service(&mut bus, &queue, registry, RetryPolicy::none());
    let mut subscriber = builder
        .envelope(Envelope::Bare)
        .envelope_for("user.*", Envelope::EventBus)
        .build()
        .unwrap();
    subscriber.setup().unwrap();
    let running = subscriber.spawn().unwrap();

    let ns = BARE_ID_NAMESPACE.to_string();
    let Some(out) = python(
        &bus,
        r#"
ex, ns = sys.argv[1], uuid.UUID(sys.argv[2])
# Seed 004's event bus: Event.create(name=..., source=..., event_type=EventType.DOMAIN, data=...)
bus_id = str(uuid.uuid4())
publish(ex, "user.registered", json.dumps({
    "id": bus_id, "name": "user.registered", "source": "accounts", "event_type": "domain",
    "timestamp": time.time(), "data": {"user_id": "U-1", "username": "john_doe"}}))
# Seed 002's bare model, with a message id, then without (the id is derived).
with_id = str(uuid.uuid4())
publish(ex, "resource.accessed", json.dumps({"resource_id": "r-1"}), message_id=with_id,
        timestamp=1714557600)
body = json.dumps({"resource_id": "r-2"})
derived = str(uuid.uuid5(ns, "resource.accessed" + "\x00" + body))
publish(ex, "resource.accessed", body)
print(json.dumps({"bus_id": bus_id, "with_id": with_id, "derived": derived}))
connection.close()
"#,
        &[bus.exchange(), &ns],
    ) else {
        running.stop().unwrap();
        return;
    };
    let ids: Value = serde_json::from_str(out.trim()).unwrap();
    let reports = reports(&rx, 3);
    for report in &reports {
        assert_eq!(report.disposition, Disposition::Acked, "{report:?}");
    }
    running.stop().unwrap();

    let mut seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3, "{seen:?}");
    // The order of arrival: user, then the two resources (one queue, one consumer).
    seen.sort_by_key(|e| e.domain() != "user");
    let user = &seen[0];
    assert_eq!(user.routing_key(), "user.registered");
    assert_eq!(user.event_id().to_string(), ids["bus_id"]);
    assert_eq!(user.data()["username"], "john_doe");
    let age = time::OffsetDateTime::now_utc() - user.timestamp();
    assert!(
        age.whole_seconds().abs() < 60,
        "timestamp from the envelope: {age}"
    );
    let first = &seen[1];
    assert_eq!(first.routing_key(), "resource.accessed");
    assert_eq!(first.event_id().to_string(), ids["with_id"]);
    assert_eq!(first.timestamp().unix_timestamp(), 1_714_557_600);
    assert_eq!(first.data()["resource_id"], "r-1");
    let second = &seen[2];
    assert_eq!(
        second.event_id().to_string(),
        ids["derived"],
        "the same UUID v5 as Python's"
    );
    assert_eq!(second.data()["resource_id"], "r-2");
}

#[test]
fn interop_rust_publishes_seed_004_envelopes_pika_reads() {
    let Some(mut bus) = Bus::new("interop-bus-out") else {
        return;
    };
    let queue = bus.bound_queue("interop-bus-out", "user.#", &QueueConfig::default());
    let mut publisher = EventPublisher::builder(bus.connection(), bus.exchange())
        .app_id("accounts")
        .envelope(Envelope::EventBus)
        .build()
        .unwrap();
    let event = Event::new("user", "registered", json!({"user_id": "U-7"})).unwrap();
    publisher.publish(&event).unwrap();
    let Some(out) = python(
        &bus,
        r#"
take_all(sys.argv[1], 1)
connection.close()
"#,
        &[&queue],
    ) else {
        return;
    };
    let taken: Vec<Value> = serde_json::from_str(out.trim()).unwrap();
    let body: Value = serde_json::from_str(taken[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["name"], "user.registered");
    assert_eq!(body["source"], "accounts");
    assert_eq!(body["event_type"], "domain");
    assert_eq!(body["id"], event.event_id().to_string());
    assert_eq!(body["data"], json!({"user_id": "U-7"}));
    assert!(body["timestamp"]
        .as_str()
        .is_some_and(|t| t.ends_with("+00:00")));
}

#[test]
fn interop_pika_seed_004_source_type_and_fields_reach_metadata() {
    let Some(mut bus) = Bus::new("interop-bus-meta") else {
        return;
    };
    let seen: Arc<Mutex<Vec<(Event, Metadata)>>> = Arc::new(Mutex::new(Vec::new()));
    let mut registry = HandlerRegistry::new();
    let record = seen.clone();
    registry
        .subscribe(
            "user.*",
            handler_fn("users", move |event, meta| {
                record.lock().unwrap().push((event.clone(), meta.clone()));
                Ok(())
            }),
        )
        .unwrap();
    let queue = pubsub_testkit::unique("interop-bus-meta");
    let (builder, rx) = service(&mut bus, &queue, registry, RetryPolicy::none());
    let mut subscriber = builder.envelope(Envelope::EventBus).build().unwrap();
    subscriber.setup().unwrap();
    let running = subscriber.spawn().unwrap();

    // No app_id: the source and the type come from the body alone.
    let Some(_) = python(
        &bus,
        r#"
ex = sys.argv[1]
def event_bus(name, source, event_type, data, **extra):
    body = {"id": str(uuid.uuid4()), "name": name, "source": source, "event_type": event_type,
            "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(), "data": data}
    body.update(extra)
    return json.dumps(body)
publish(ex, "user.registered", event_bus("user.registered", "accounts", "integration",
        {"user_id": "U-1"}, tenant="acme", metadata={"correlation_id": "flow-1", "hops": 2}))
publish(ex, "user.deleted", event_bus("user.deleted", "gdpr", "AUDIT", {"user_id": "U-2"}))
connection.close()
"#,
        &[bus.exchange()],
    ) else {
        running.stop().unwrap();
        return;
    };
    for report in reports(&rx, 2) {
        assert_eq!(report.disposition, Disposition::Acked, "{report:?}");
    }
    running.stop().unwrap();

    let mut seen = seen.lock().unwrap();
    seen.sort_by(|a, b| b.0.action().cmp(a.0.action()));
    let (registered, meta) = &seen[0];
    assert_eq!(registered.routing_key(), "user.registered");
    assert_eq!(meta.app_id(), None);
    assert_eq!(meta.source(), Some("accounts"));
    assert_eq!(meta.event_type(), Some(EventType::Integration));
    assert_eq!(
        Value::Object(meta.extra().clone()),
        json!({"tenant": "acme", "metadata": {"correlation_id": "flow-1", "hops": 2}})
    );
    let (deleted, meta) = &seen[1];
    assert_eq!(deleted.routing_key(), "user.deleted");
    assert_eq!(meta.source(), Some("gdpr"));
    // A type of the producer's own: not one of EventType's, kept as written.
    assert_eq!(meta.event_type(), None);
    assert_eq!(meta.envelope().event_type_name(), Some("AUDIT"));
    assert!(meta.extra().is_empty());
}

#[test]
fn interop_rust_publishes_seed_004_with_the_chosen_type_pika_reads() {
    let Some(mut bus) = Bus::new("interop-bus-type") else {
        return;
    };
    let queue = bus.bound_queue("interop-bus-type", "user.#", &QueueConfig::default());
    let mut publisher = EventPublisher::builder(bus.connection(), bus.exchange())
        .app_id("accounts")
        .envelope(Envelope::EventBus)
        .build()
        .unwrap();
    let typed = Event::new("user", "registered", json!({"user_id": "U-8"})).unwrap();
    publisher
        .publish_with(
            &typed,
            &PublishOptions {
                event_type: Some(EventType::Integration),
                ..PublishOptions::default()
            },
        )
        .unwrap();
    // Seed 004's Event.create(name, source, event_type, data).
    let created = Event::create(
        "user.notified",
        "mailer",
        EventType::Notification,
        json!({"user_id": "U-8"}),
    )
    .unwrap();
    publisher
        .publish_with(created.event(), &PublishOptions::sourced(&created))
        .unwrap();
    let Some(out) = python(
        &bus,
        r#"
take_all(sys.argv[1], 2)
connection.close()
"#,
        &[&queue],
    ) else {
        return;
    };
    let taken: Vec<Value> = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(taken.len(), 2, "{taken:?}");
    let body =
        |i: usize| -> Value { serde_json::from_str(taken[i]["body"].as_str().unwrap()).unwrap() };
    let first = body(0);
    assert_eq!(first["name"], "user.registered");
    assert_eq!(first["source"], "accounts");
    assert_eq!(first["event_type"], "integration");
    assert_eq!(taken[0]["app_id"], "accounts");
    let second = body(1);
    assert_eq!(second["name"], "user.notified");
    assert_eq!(second["id"], created.event().event_id().to_string());
    assert_eq!(second["source"], "mailer");
    assert_eq!(second["event_type"], "notification");
    assert_eq!(second["data"], json!({"user_id": "U-8"}));
    assert_eq!(taken[1]["app_id"], "mailer");
}
