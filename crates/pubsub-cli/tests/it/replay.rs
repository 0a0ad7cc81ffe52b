//! `pubsub dlq replay`: exactly the confirmed messages leave the dead-letter queue, and none
//! is lost when publishing fails part-way.

use std::collections::BTreeSet;

use pubsub_amqp::{Connection, HeaderValue, Properties, QueueConfig};
use pubsub_cli::dlq::{Dlq, ReplayOptions, ReplayReport, Selection, REPLAYED};
use pubsub_core::{json, Event};
use pubsub_subscriber::{dead_letter_queue_name, headers};
use pubsub_testkit::{Bus, Taken};

use crate::support::{assert_exit, event, pubsub, sorted_ids, stderr, stdout, test_bus, BusExt};

fn replay(connection: &mut Connection, queue: &str, options: &ReplayOptions) -> ReplayReport {
    Dlq::open(connection, queue)
        .unwrap()
        .replay(options, &crossbeam_channel::never(), |_| {})
        .unwrap()
}

fn ids(taken: &[Taken]) -> BTreeSet<String> {
    taken
        .iter()
        .map(|t| t.properties.message_id.clone().unwrap_or_default())
        .collect()
}

/// Puts an event straight into a dead-letter queue, with the headers the subscriber writes
/// and `exchange` / `routing_key` as its original destination.
fn dead_letter_raw(bus: &Bus, dlq: &str, event: &Event, exchange: &str, routing_key: &str) {
    let headers = [
        (headers::ORIGINAL_EXCHANGE, HeaderValue::from(exchange)),
        (
            headers::ORIGINAL_ROUTING_KEY,
            HeaderValue::from(routing_key),
        ),
        (headers::DEAD_LETTER_KIND, HeaderValue::from("exhausted")),
        (
            headers::DEAD_LETTER_REASON,
            HeaderValue::from("failed 3 attempt(s)"),
        ),
        (headers::ATTEMPT, HeaderValue::Int(3)),
        (headers::DONE, HeaderValue::from(vec!["audit@#".to_owned()])),
    ];
    let properties = Properties {
        content_type: Some(json::CONTENT_TYPE.to_owned()),
        persistent: true,
        message_id: Some(event.event_id().to_string()),
        kind: Some(event.routing_key().to_owned()),
        headers: headers
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
        ..Properties::default()
    };
    bus.publish_raw("", dlq, &json::to_vec(event), &properties);
}

#[test]
fn replay_moves_every_message_back_with_a_fresh_set_of_attempts() {
    let Some(mut bus) = test_bus() else { return };
    let events = [
        event("order", "created", 1),
        event("order", "paid", 2),
        event("user", "registered", 3),
    ];
    let queue = bus.dead_letter("orders", &events);
    let dlq = dead_letter_queue_name(&queue);

    let mut connection = bus.connection();
    let report = replay(&mut connection, &queue, &ReplayOptions::default());
    connection.close().unwrap();
    assert!(report.is_complete(), "{report:?}");
    assert_eq!(report.moved.len(), 3);
    assert_eq!(report.total, 3);
    bus.wait_ready(&dlq, 0);
    bus.wait_ready(&queue, 3);

    let taken = bus.drain(&queue);
    assert_eq!(
        ids(&taken).into_iter().collect::<Vec<_>>(),
        sorted_ids(&events)
    );
    for t in &taken {
        let original = events
            .iter()
            .find(|e| Some(e.event_id().to_string()) == t.properties.message_id)
            .unwrap();
        assert_eq!(t.exchange, bus.exchange());
        assert_eq!(t.routing_key, original.routing_key());
        assert_eq!(t.body, json::to_vec(original), "the body is unchanged");
        assert_eq!(t.properties.app_id.as_deref(), Some("cli-test"));
        assert!(t.properties.persistent);
        let h = &t.properties.headers;
        assert_eq!(h[REPLAYED], HeaderValue::Int(1));
        assert_eq!(
            h[headers::ORIGINAL_EXCHANGE],
            HeaderValue::from(bus.exchange())
        );
        for gone in [
            headers::ATTEMPT,
            headers::DONE,
            headers::FAILED_HANDLERS,
            headers::LAST_ERROR,
            headers::FIRST_FAILURE,
            headers::DEAD_LETTER_KIND,
            headers::DEAD_LETTER_REASON,
            headers::DEAD_LETTERED_AT,
            headers::SOURCE_QUEUE,
        ] {
            assert!(!h.contains_key(gone), "{gone} was kept");
        }
    }
}

#[test]
fn replay_by_id_moves_only_that_message() {
    let Some(mut bus) = test_bus() else { return };
    let events = [event("order", "created", 1), event("order", "paid", 2)];
    let queue = bus.dead_letter("orders", &events);
    let dlq = dead_letter_queue_name(&queue);
    let id = events[1].event_id().to_string();

    let output = pubsub(&["dlq", "replay", &queue, "--id", &id]);
    assert_exit(&output, 0);
    assert_eq!(
        stdout(&output).trim(),
        format!("moved 1 message out of `{dlq}` (0 stayed, 1 not selected)")
    );
    bus.wait_ready(&queue, 1);
    assert_eq!(ids(&bus.drain(&queue)), BTreeSet::from([id]));
    bus.wait_ready(&dlq, 1);
    assert_eq!(
        ids(&bus.drain(&dlq)),
        BTreeSet::from([events[0].event_id().to_string()])
    );

    let output = pubsub(&["dlq", "replay", &queue, "--id", "not-there"]);
    assert_exit(&output, 1);
    assert!(stdout(&output).contains("no message with event id `not-there`"));
    assert!(stderr(&output).contains("replay incomplete: 1 event id not found"));
}

#[test]
fn a_dry_run_changes_nothing() {
    let Some(mut bus) = test_bus() else { return };
    let events = [event("order", "created", 1), event("order", "paid", 2)];
    let queue = bus.dead_letter("orders", &events);
    let dlq = dead_letter_queue_name(&queue);

    let output = pubsub(&["dlq", "replay", &dlq, "--all", "--dry-run"]);
    assert_exit(&output, 0);
    let text = stdout(&output);
    assert!(text.contains("WOULD GO TO"), "{text}");
    assert!(
        text.contains(&format!("`{}` / `order.paid`", bus.exchange())),
        "{text}"
    );
    assert!(text.contains(&format!(
        "dry run: would move 2 messages out of `{dlq}` (0 would stay, 0 not selected); nothing was changed"
    )), "{text}");
    bus.wait_ready(&dlq, 2);
    assert_eq!(bus.ready(&queue), Some(0));
}

#[test]
fn messages_whose_exchange_is_missing_stay_and_the_others_move() {
    let Some(mut bus) = test_bus() else { return };
    let target = bus.bound_queue("orders", "order.*", &QueueConfig::default());
    let (service, dlq) = bus.dead_letter_queue("orders");
    let missing = bus.exchange_name("deleted");
    let events: Vec<Event> = (0..6).map(|n| event("order", "created", n)).collect();
    let (mut good, mut bad) = (BTreeSet::new(), BTreeSet::new());
    for (n, e) in events.iter().enumerate() {
        // Every other one was published to an exchange that no longer exists.
        let exchange = if n % 2 == 0 {
            bus.exchange()
        } else {
            missing.as_str()
        };
        dead_letter_raw(&bus, &dlq, e, exchange, e.routing_key());
        if n % 2 == 0 { &mut good } else { &mut bad }.insert(e.event_id().to_string());
    }
    bus.wait_ready(&dlq, 6);

    let output = pubsub(&["dlq", "replay", &service, "--all"]);
    assert_exit(&output, 1);
    let text = stdout(&output);
    assert!(
        text.contains(&format!(
            "moved 3 messages out of `{dlq}` (3 stayed, 0 not selected)"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("exchange `{missing}` does not exist")),
        "{text}"
    );
    assert!(stderr(&output).contains(&format!(
        "error: replay incomplete: 3 messages stayed in `{dlq}`"
    )));

    bus.wait_ready(&target, 3);
    bus.wait_ready(&dlq, 3);
    assert_eq!(ids(&bus.drain(&target)), good);
    assert_eq!(ids(&bus.drain(&dlq)), bad);
}

#[test]
fn a_publish_refused_midway_leaves_exactly_the_unconfirmed_messages() {
    let Some(mut bus) = test_bus() else { return };
    // The target queue takes two messages, then makes the broker refuse (nack) publishes.
    let full_after_two = QueueConfig::default()
        .max_length(2)
        .argument("x-overflow", "reject-publish");
    let target = bus.bound_queue("orders", "order.*", &full_after_two);
    let (service, dlq) = bus.dead_letter_queue("orders");
    let events: Vec<Event> = (0..5).map(|n| event("order", "paid", n)).collect();
    for e in &events {
        dead_letter_raw(&bus, &dlq, e, bus.exchange(), e.routing_key());
    }
    bus.wait_ready(&dlq, 5);

    let mut connection = bus.connection();
    let report = replay(&mut connection, &service, &ReplayOptions::default());
    connection.close().unwrap();
    assert!(!report.is_complete());
    assert_eq!(report.moved.len(), 2, "{report:?}");
    assert_eq!(report.stayed.len(), 3, "{report:?}");
    assert!(report
        .stayed
        .iter()
        .all(|s| s.reason == "the broker refused it (negative confirm)"));

    bus.wait_ready(&dlq, 3);
    let in_target = ids(&bus.drain(&target));
    let in_dlq = ids(&bus.drain(&dlq));
    let moved: BTreeSet<String> = report
        .moved
        .iter()
        .filter_map(|m| m.event_id.clone())
        .collect();
    assert_eq!(in_target, moved, "exactly the confirmed messages moved");
    assert!(in_target.is_disjoint(&in_dlq));
    let all: BTreeSet<String> = in_target.union(&in_dlq).cloned().collect();
    assert_eq!(
        all.into_iter().collect::<Vec<_>>(),
        sorted_ids(&events),
        "none lost"
    );
}

#[test]
fn unroutable_messages_stay() {
    let Some(mut bus) = test_bus() else { return };
    let target = bus.bound_queue("orders", "order.created", &QueueConfig::default());
    let (service, dlq) = bus.dead_letter_queue("orders");
    let routed = event("order", "created", 1);
    let unbound = event("order", "archived", 2); // no queue is bound for it any more
    dead_letter_raw(&bus, &dlq, &routed, bus.exchange(), routed.routing_key());
    dead_letter_raw(&bus, &dlq, &unbound, bus.exchange(), unbound.routing_key());
    bus.wait_ready(&dlq, 2);

    let mut connection = bus.connection();
    let report = replay(&mut connection, &service, &ReplayOptions::default());
    connection.close().unwrap();
    assert_eq!(report.moved.len(), 1, "{report:?}");
    assert_eq!(report.stayed.len(), 1, "{report:?}");
    assert_eq!(
        report.stayed[0].reason,
        format!(
            "no queue is bound to exchange `{}` for routing key `order.archived`",
            bus.exchange()
        )
    );
    bus.wait_ready(&target, 1);
    bus.wait_ready(&dlq, 1);
    assert_eq!(
        ids(&bus.drain(&dlq)),
        BTreeSet::from([unbound.event_id().to_string()])
    );
}

#[test]
fn a_lost_connection_midway_loses_nothing() {
    let Some(mut bus) = test_bus() else { return };
    let target = bus.bound_queue("orders", "order.*", &QueueConfig::default());
    let (service, dlq) = bus.dead_letter_queue("orders");
    let events: Vec<Event> = (0..10).map(|n| event("order", "created", n)).collect();
    for e in &events {
        dead_letter_raw(&bus, &dlq, e, bus.exchange(), e.routing_key());
    }
    bus.wait_ready(&dlq, 10);

    let name = pubsub_testkit::unique("replay-connection");
    let mut connection =
        Connection::open(&bus.config().clone().with_connection_name(&name)).unwrap();
    let options = ReplayOptions {
        batch_size: 2,
        ..ReplayOptions::default()
    };
    let mut killed = false;
    let report = Dlq::open(&mut connection, &service)
        .unwrap()
        .replay(&options, &crossbeam_channel::never(), |p| {
            // After the first batch, an operator (or the network) kills the connection.
            if p.moved == 2 && !killed {
                killed = true;
                let closed = pubsub_testkit::close_connections_named(&name)
                    .expect("rabbitmqctl closes the connection");
                assert_eq!(closed, 1);
            }
        })
        .unwrap();
    drop(connection);
    assert!(killed);
    assert!(report.aborted.is_some(), "{report:?}");
    assert!(
        report.moved.len() >= 2 && report.moved.len() < 10,
        "{report:?}"
    );

    // Every message is in the target or back in the dead-letter queue.
    crate::support::wait_until("the unmoved messages are back", || {
        bus.ready(&dlq).unwrap() + bus.ready(&target).unwrap() >= 10
    });
    let in_target = ids(&bus.drain(&target));
    let in_dlq = ids(&bus.drain(&dlq));
    let moved: BTreeSet<String> = report
        .moved
        .iter()
        .filter_map(|m| m.event_id.clone())
        .collect();
    assert!(
        moved.is_subset(&in_target),
        "every message reported moved arrived"
    );
    let all: BTreeSet<String> = in_target.union(&in_dlq).cloned().collect();
    assert_eq!(
        all.into_iter().collect::<Vec<_>>(),
        sorted_ids(&events),
        "none lost"
    );
}

#[test]
fn messages_rabbitmq_dead_lettered_go_back_where_x_death_says() {
    let Some(mut bus) = test_bus() else { return };
    let user = event("user", "deleted", 1);
    let (queue, dlq) = bus.rejected_by_the_broker("legacy", &user);

    let mut connection = bus.connection();
    let report = replay(&mut connection, &queue, &ReplayOptions::default());
    connection.close().unwrap();
    assert!(report.is_complete(), "{report:?}");
    bus.wait_ready(&queue, 1);
    let taken = bus.drain(&queue);
    assert_eq!(taken[0].routing_key, "user.deleted");
    assert_eq!(taken[0].exchange, bus.exchange());
    assert!(!taken[0].properties.headers.contains_key("x-death"));
    assert_eq!(bus.ready(&dlq), Some(0));
}

#[test]
fn to_queue_replays_to_one_service_only() {
    let Some(mut bus) = test_bus() else { return };
    let events = [event("order", "created", 1)];
    let queue = bus.dead_letter("orders", &events);
    // Another service that handled the event fine the first time.
    let audit = bus.bound_queue("audit", "order.*", &QueueConfig::default());

    let mut connection = bus.connection();
    let options = ReplayOptions {
        selection: Selection::Ids(vec![events[0].event_id().to_string()]),
        to_queue: Some(queue.clone()),
        ..ReplayOptions::default()
    };
    let report = replay(&mut connection, &queue, &options);
    connection.close().unwrap();
    assert!(report.is_complete(), "{report:?}");
    bus.wait_ready(&queue, 1);
    assert_eq!(bus.ready(&audit), Some(0));
    assert_eq!(bus.ready(&dead_letter_queue_name(&queue)), Some(0));
}
