//! `pubsub dlq list`, `show` and `purge`.

use pubsub_amqp::{HeaderValue, Properties};
use pubsub_cli::dlq::Dlq;
use pubsub_subscriber::{dead_letter_queue_name, headers, DeadLetterKind};

use crate::support::{
    assert_exit, event, pubsub, pubsub_with_stdin, sorted_ids, stderr, stdout, test_bus, BusExt,
};

#[test]
fn list_counts_and_tables_the_dead_letters_without_consuming_them() {
    let Some(mut bus) = test_bus() else { return };
    let events = [
        event("order", "created", 1),
        event("order", "created", 2),
        event("order", "paid", 3),
    ];
    let queue = bus.dead_letter("orders", &events);
    let dlq = dead_letter_queue_name(&queue);

    // The library: every message, with what the subscriber's headers say.
    let mut connection = bus.connection();
    let mut seen = Vec::new();
    let count = Dlq::open(&mut connection, &queue)
        .unwrap()
        .peek(|letter, _| seen.push(letter))
        .unwrap();
    assert_eq!(count, 3);
    let mut ids: Vec<String> = seen.iter().map(|l| l.event_id().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, sorted_ids(&events));
    for letter in &seen {
        assert_eq!(letter.kind(), Some(DeadLetterKind::Exhausted));
        assert_eq!(letter.failed_handlers(), ["mailer"]);
        assert_eq!(letter.attempts(), Some(1));
        assert!(letter.first_failure().is_some());
        assert_eq!(letter.source_queue().as_deref(), Some(queue.as_str()));
        assert!(letter.reason().unwrap().contains("smtp server unavailable"));
        let destination = letter.destination(&dlq).unwrap();
        assert_eq!(destination.exchange, bus.exchange());
    }
    connection.close().unwrap();
    bus.wait_ready(&dlq, 3);

    // The binary, by service queue and by dead-letter queue name.
    for name in [queue.as_str(), dlq.as_str()] {
        let output = pubsub(&["dlq", "list", name]);
        assert_exit(&output, 0);
        let text = stdout(&output);
        assert!(text.contains(&format!("`{dlq}`: 3 messages")), "{text}");
        assert!(text.contains("by kind:        exhausted 3"), "{text}");
        assert!(
            text.contains("by routing key: order.created 2, order.paid 1"),
            "{text}"
        );
        assert!(text.contains("ROUTING KEY"), "{text}");
        for e in &events {
            let row = text
                .lines()
                .find(|l| l.contains(&e.event_id().to_string()))
                .unwrap_or_else(|| panic!("no row for {e}: {text}"));
            assert!(row.starts_with(e.routing_key()), "{row}");
            assert!(row.contains("exhausted"), "{row}");
            assert!(row.contains("mailer"), "{row}");
        }
    }
    bus.wait_ready(&dlq, 3);

    // JSON lines.
    let output = pubsub(&["dlq", "list", &queue, "--json"]);
    assert_exit(&output, 0);
    let rows: Vec<serde_json::Value> = stdout(&output)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3);
    assert!(rows
        .iter()
        .all(|r| r["kind"] == "exhausted" && r["attempts"] == 1));
    assert!(rows
        .iter()
        .all(|r| r["failed_handlers"] == serde_json::json!(["mailer"])));

    // --limit shows fewer rows, but counts everything.
    let output = pubsub(&["dlq", "list", &queue, "--limit", "1"]);
    assert_exit(&output, 0);
    assert!(stdout(&output).contains("(showing 1 of 3; --limit 0 shows every row)"));
    bus.wait_ready(&dlq, 3);
}

#[test]
fn list_reads_what_rabbitmq_dead_lettered_itself() {
    let Some(mut bus) = test_bus() else { return };
    let user = event("user", "deleted", 1);
    let (queue, _) = bus.rejected_by_the_broker("legacy", &user);

    let output = pubsub(&["dlq", "list", &queue]);
    assert_exit(&output, 0);
    let text = stdout(&output);
    let row = text
        .lines()
        .find(|l| l.contains(&user.event_id().to_string()))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(row.starts_with("user.deleted"), "{row}");
    assert!(row.contains("rejected (broker)"), "{row}");
    assert!(
        row.contains(&format!("rejected by RabbitMQ in queue `{queue}`")),
        "{row}"
    );
}

#[test]
fn show_prints_one_message_in_full() {
    let Some(mut bus) = test_bus() else { return };
    let events = [event("order", "created", 1), event("order", "paid", 2)];
    let queue = bus.dead_letter("orders", &events);
    let id = events[1].event_id().to_string();

    let output = pubsub(&["dlq", "show", &queue, &id]);
    assert_exit(&output, 0);
    let text = stdout(&output);
    for needle in [
        format!("event id:        {id}"),
        "routing key:     order.paid".to_owned(),
        "kind:            exhausted".to_owned(),
        "failed handlers: mailer".to_owned(),
        "last error:      mailer: smtp server unavailable".to_owned(),
        format!("replays to:      `{}` / `order.paid`", bus.exchange()),
        format!("  {}: 1", headers::ATTEMPT),
        "\"data\":{\"n\":2}".to_owned(),
    ] {
        assert!(text.contains(&needle), "{needle:?} not in:\n{text}");
    }

    let output = pubsub(&["dlq", "show", &queue, &id, "--json"]);
    assert_exit(&output, 0);
    let value: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(value["event_id"], id.as_str());
    assert_eq!(value["body"]["data"]["n"], 2);
    assert_eq!(value["headers"][headers::DEAD_LETTER_KIND], "exhausted");
    assert_eq!(value["replay_to"]["routing_key"], "order.paid");

    let output = pubsub(&["dlq", "show", &queue, "no-such-id"]);
    assert_exit(&output, 1);
    assert!(stderr(&output).contains("no message with event id `no-such-id`"));
    bus.wait_ready(&dead_letter_queue_name(&queue), 2);
}

#[test]
fn a_missing_queue_is_named() {
    let Some(mut bus) = test_bus() else { return };
    let queue = bus.queue_name("nope");
    for (given, expected) in [
        (queue.clone(), dead_letter_queue_name(&queue)),
        (
            dead_letter_queue_name(&queue),
            dead_letter_queue_name(&queue),
        ),
    ] {
        for args in [
            vec!["dlq", "list", &given],
            vec!["dlq", "show", &given, "some-id"],
            vec!["dlq", "replay", &given, "--all"],
            vec!["dlq", "purge", &given, "--yes"],
        ] {
            let output = pubsub(&args);
            assert_exit(&output, 1);
            assert_eq!(
                stderr(&output).trim(),
                format!("error: queue `{expected}` does not exist")
            );
        }
    }
}

#[test]
fn purge_asks_first() {
    let Some(mut bus) = test_bus() else { return };
    let (queue, dlq) = bus.dead_letter_queue("orders");
    for n in 0..3 {
        let properties = Properties {
            message_id: Some(format!("m-{n}")),
            headers: [(
                headers::DEAD_LETTER_KIND.to_owned(),
                HeaderValue::from("poison"),
            )]
            .into_iter()
            .collect(),
            ..Properties::default()
        };
        bus.publish_raw("", &dlq, b"junk", &properties);
    }
    bus.wait_ready(&dlq, 3);

    let no = pubsub_with_stdin(&["dlq", "purge", &queue], Some("n\n"));
    assert_exit(&no, 1);
    assert!(
        stderr(&no).contains("Delete 3 messages from"),
        "{}",
        stderr(&no)
    );
    assert!(stderr(&no).contains("purge cancelled: nothing was deleted"));
    let silent = pubsub(&["dlq", "purge", &queue]);
    assert_exit(&silent, 1);
    assert!(
        stderr(&silent).contains("pass --yes"),
        "{}",
        stderr(&silent)
    );
    bus.wait_ready(&dlq, 3);

    let yes = pubsub_with_stdin(&["dlq", "purge", &queue], Some("y\n"));
    assert_exit(&yes, 0);
    assert_eq!(
        stdout(&yes).trim(),
        format!("purged 3 messages from `{dlq}`")
    );
    bus.wait_ready(&dlq, 0);

    bus.publish_raw("", &dlq, b"junk", &Properties::default());
    bus.wait_ready(&dlq, 1);
    let forced = pubsub(&["dlq", "purge", &dlq, "--yes"]);
    assert_exit(&forced, 0);
    assert_eq!(
        stdout(&forced).trim(),
        format!("purged 1 message from `{dlq}`")
    );
    bus.wait_ready(&dlq, 0);
}
