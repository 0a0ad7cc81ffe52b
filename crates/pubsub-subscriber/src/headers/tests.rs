use super::*;

fn headers(entries: &[(&str, HeaderValue)]) -> Headers {
    entries
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

fn table(entries: &[(&str, HeaderValue)]) -> HeaderValue {
    HeaderValue::Table(headers(entries))
}

fn death(queue: &str, reason: &str, exchange: &str, key: &str, time: u64) -> HeaderValue {
    table(&[
        ("queue", HeaderValue::from(queue)),
        ("reason", HeaderValue::from(reason)),
        ("exchange", HeaderValue::from(exchange)),
        ("routing-keys", HeaderValue::from(vec![key.to_owned()])),
        ("time", HeaderValue::Timestamp(time)),
        ("count", HeaderValue::Int(1)),
    ])
}

fn x_death(entries: Vec<HeaderValue>) -> (&'static str, HeaderValue) {
    (X_DEATH, HeaderValue::Array(entries))
}

#[test]
fn dead_letter_kinds_parse_exactly() {
    for kind in DeadLetterKind::ALL {
        assert_eq!(kind.as_str().parse::<DeadLetterKind>().ok(), Some(kind));
        assert_eq!(DeadLetterKind::try_from(kind.as_str()).ok(), Some(kind));
    }
    for bad in ["", "Poison", "poison ", "redelivery_limit", "exhausted!"] {
        let err = bad.parse::<DeadLetterKind>().unwrap_err();
        assert!(err.to_string().contains(DEAD_LETTER_KIND), "{err}");
    }
}

#[test]
fn retry_state_round_trips() {
    let state = RetryState {
        attempt: 3,
        done: vec!["a@order.*".into(), "b@#".into()],
        failed_handlers: vec!["c".into()],
        last_error: Some("c: down".into()),
        first_failure: Some("2024-05-01T12:30:00Z".into()),
    };
    let mut h = headers(&[("tenant", "acme".into())]);
    state.write_to(&mut h);
    assert_eq!(RetryState::from_headers(&h), state);
    assert_eq!(h["tenant"], HeaderValue::from("acme"));
    assert_eq!(h[ATTEMPT], HeaderValue::Int(3));
}

#[test]
fn retry_state_reads_leniently() {
    let check = |entries: &[(&str, HeaderValue)], attempt: u32, done: &[&str]| {
        let state = RetryState::from_headers(&headers(entries));
        assert_eq!(state.attempt, attempt, "{entries:?}");
        assert_eq!(state.done, done, "{entries:?}");
    };
    check(&[], 1, &[]);
    check(&[(ATTEMPT, HeaderValue::Int(0))], 1, &[]);
    check(&[(ATTEMPT, HeaderValue::Int(-5))], 1, &[]);
    check(&[(ATTEMPT, HeaderValue::Int(i64::MAX))], 1, &[]);
    check(&[(ATTEMPT, "2".into())], 1, &[]);
    check(&[(ATTEMPT, HeaderValue::Int(2))], 2, &[]);
    check(&[(DONE, "a@#".into())], 1, &[]);
    check(
        &[(
            DONE,
            HeaderValue::Array(vec!["a@#".into(), HeaderValue::Int(1), "b@#".into()]),
        )],
        1,
        &["a@#", "b@#"],
    );
    assert_eq!(
        RetryState::first(),
        RetryState::from_headers(&Headers::new())
    );
}

#[test]
fn absent_optional_state_removes_its_header() {
    let mut h = headers(&[(LAST_ERROR, "old".into()), (FIRST_FAILURE, "t".into())]);
    RetryState::first().write_to(&mut h);
    assert!(!h.contains_key(LAST_ERROR));
    assert!(!h.contains_key(FIRST_FAILURE));
}

#[test]
fn long_errors_are_clipped_on_write() {
    let mut h = Headers::new();
    let state = RetryState {
        last_error: Some("é".repeat(1000)),
        ..RetryState::first()
    };
    state.write_to(&mut h);
    let written = h[LAST_ERROR].as_str().unwrap();
    assert!(written.len() <= MAX_TEXT + 3 && written.ends_with("..."));
}

#[test]
fn dead_letter_record_round_trips() {
    let record = DeadLetterRecord {
        kind: DeadLetterKind::RedeliveryLimit,
        reason: "delivered 10 times".into(),
        dead_lettered_at: "2024-05-01T12:30:00Z".into(),
        source_queue: "orders".into(),
    };
    let mut h = Headers::new();
    record.write_to(&mut h);
    assert_eq!(DeadLetterRecord::from_headers(&h), Some(record));
    h.insert(DEAD_LETTER_KIND.into(), "melted".into());
    assert_eq!(DeadLetterRecord::from_headers(&h), None);
}

#[test]
fn origins() {
    let check = |entries: &[(&str, HeaderValue)], expected: Option<(&str, &str)>| {
        let got = DeadLetterHeaders::new(&headers(entries)).origin();
        let expected = expected.map(|(e, k)| Origin {
            exchange: e.into(),
            routing_key: k.into(),
        });
        assert_eq!(got, expected, "{entries:?}");
    };
    // The subscriber's headers win.
    check(
        &[
            (ORIGINAL_EXCHANGE, "events".into()),
            (ORIGINAL_ROUTING_KEY, "order.created".into()),
            x_death(vec![death("q.retry.1s", "expired", "", "q.retry.1s", 1)]),
        ],
        Some(("events", "order.created")),
    );
    // Else RabbitMQ's oldest record: the original publish.
    check(
        &[x_death(vec![
            death("orders.retry", "expired", "dlx", "orders", 2),
            death("orders", "rejected", "events", "order.paid", 1),
        ])],
        Some(("events", "order.paid")),
    );
    // Half of the subscriber's pair is not an origin.
    check(&[(ORIGINAL_EXCHANGE, "events".into())], None);
    check(&[], None);
    check(&[x_death(vec![table(&[("queue", "q".into())])])], None);
}

#[test]
fn subscriber_records_are_read() {
    let h = headers(&[
        (DEAD_LETTER_KIND, "exhausted".into()),
        (DEAD_LETTER_REASON, "failed 3 attempt(s): mail: down".into()),
        (FAILED_HANDLERS, vec!["mail".to_owned()].into()),
        (ATTEMPT, HeaderValue::Int(3)),
        (FIRST_FAILURE, "2024-05-01T12:30:00Z".into()),
        (DEAD_LETTERED_AT, "2024-05-01T12:30:06Z".into()),
        (LAST_ERROR, "mail: down".into()),
        (SOURCE_QUEUE, "orders".into()),
        (REPLAYED, HeaderValue::Int(2)),
    ]);
    let l = DeadLetterHeaders::new(&h);
    assert_eq!(
        l.cause(),
        DeadLetterCause::Subscriber(DeadLetterKind::Exhausted)
    );
    assert_eq!(l.cause().to_string(), "exhausted");
    assert_eq!(l.kind(), Some(DeadLetterKind::Exhausted));
    assert_eq!(
        l.reason().as_deref(),
        Some("failed 3 attempt(s): mail: down")
    );
    assert_eq!(l.failed_handlers(), ["mail"]);
    assert_eq!(l.attempts(), Some(3));
    assert_eq!(l.first_failure().as_deref(), Some("2024-05-01T12:30:00Z"));
    assert_eq!(
        l.dead_lettered_at().as_deref(),
        Some("2024-05-01T12:30:06Z")
    );
    assert_eq!(l.last_error().as_deref(), Some("mail: down"));
    assert_eq!(l.source_queue().as_deref(), Some("orders"));
    assert_eq!(l.replayed(), 2);
}

#[test]
fn broker_records_are_read() {
    let h = headers(&[x_death(vec![
        HeaderValue::Int(7), // not a table: skipped
        death("orders", "rejected", "events", "order.paid", 1_714_566_600),
    ])]);
    let l = DeadLetterHeaders::new(&h);
    assert_eq!(l.cause(), DeadLetterCause::Broker("rejected".into()));
    assert_eq!(l.cause().to_string(), "rejected (broker)");
    assert_eq!(l.kind(), None);
    assert_eq!(
        l.reason().as_deref(),
        Some("rejected by RabbitMQ in queue `orders`")
    );
    assert_eq!(l.first_failure().as_deref(), Some("2024-05-01T12:30:00Z"));
    assert_eq!(l.source_queue().as_deref(), Some("orders"));
    assert!(l.failed_handlers().is_empty());
    assert_eq!(l.attempts(), None);
    assert_eq!(l.replayed(), 0);
    assert_eq!(l.deaths().len(), 1);
}

#[test]
fn causes() {
    let check = |entries: &[(&str, HeaderValue)], expected: &str| {
        assert_eq!(
            DeadLetterHeaders::new(&headers(entries))
                .cause()
                .to_string(),
            expected
        );
    };
    check(&[], "unknown");
    check(&[(DEAD_LETTER_KIND, "poison".into())], "poison");
    check(&[(DEAD_LETTER_KIND, "melted".into())], "melted");
    check(&[(DELIVERY_COUNT, HeaderValue::Int(4))], "unknown");
    check(&[x_death(vec![table(&[("queue", "q".into())])])], "unknown");
    check(
        &[x_death(vec![death("q", "delivery_limit", "", "q", 1)])],
        "delivery_limit (broker)",
    );
    // A quorum queue's delivery count stands in for the attempts.
    let h = headers(&[(DELIVERY_COUNT, HeaderValue::Int(4))]);
    assert_eq!(DeadLetterHeaders::new(&h).attempts(), Some(4));
}

#[test]
fn replay_strips_the_retry_state_and_counts_replays() {
    let mut h = headers(&[
        (ATTEMPT, HeaderValue::Int(3)),
        (DONE, vec!["a@#".to_owned()].into()),
        (FAILED_HANDLERS, vec!["b".to_owned()].into()),
        (LAST_ERROR, "b: boom".into()),
        (FIRST_FAILURE, "t".into()),
        (DEAD_LETTER_KIND, "exhausted".into()),
        (DEAD_LETTER_REASON, "r".into()),
        (DEAD_LETTERED_AT, "t".into()),
        (SOURCE_QUEUE, "orders".into()),
        (ORIGINAL_EXCHANGE, "events".into()),
        (ORIGINAL_ROUTING_KEY, "order.created".into()),
        x_death(vec![]),
        ("x-first-death-queue", "orders".into()),
        ("x-last-death-reason", "rejected".into()),
        ("x-pubsub-dead-letter-future", "x".into()),
        (DELIVERY_COUNT, HeaderValue::Int(2)),
        ("tenant", "acme".into()),
    ]);
    strip_for_replay(&mut h);
    let names: Vec<&str> = h.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        ["tenant", ORIGINAL_EXCHANGE, ORIGINAL_ROUTING_KEY, REPLAYED]
    );
    assert_eq!(h[REPLAYED], HeaderValue::Int(1));
    strip_for_replay(&mut h);
    assert_eq!(h[REPLAYED], HeaderValue::Int(2));
}

#[test]
fn clip_cuts_long_text_on_a_char_boundary() {
    assert_eq!(clip("short"), "short");
    let long = "é".repeat(1000);
    let clipped = clip(&long);
    assert!(clipped.len() <= MAX_TEXT + 3);
    assert!(clipped.ends_with("..."));
}

#[test]
fn now_is_rfc3339() {
    let now = now_rfc3339();
    assert!(now.ends_with('Z'), "{now}");
    assert!(now.contains('T'), "{now}");
}
