use super::*;

const S: fn(u64) -> Duration = Duration::from_secs;

fn death(queue: &str, reason: &str) -> Death {
    Death {
        queue: Some(queue.to_owned()),
        reason: Some(reason.to_owned()),
        exchange: Some(String::new()),
        routing_keys: vec![queue.to_owned()],
        time: Some(1),
        count: Some(1),
    }
}

#[test]
fn trust() {
    // (exchange, routing key, latest x-death, quorum, redelivered) -> (retry state, count)
    let check = |exchange: &str,
                 key: &str,
                 latest: Option<Death>,
                 quorum: bool,
                 redelivered: bool,
                 expected: (bool, bool)| {
        let arrival = Arrival {
            queue: "orders",
            quorum,
            exchange,
            routing_key: key,
            redelivered,
        };
        let got = Trust::of(&arrival, latest.as_ref());
        assert_eq!(
            (got.retry_state, got.delivery_count),
            expected,
            "{exchange:?} {key:?} {latest:?} quorum={quorum} redelivered={redelivered}"
        );
    };
    let retry = || Some(death("orders.retry.1s", "expired"));
    // A real retry: back from the delay queue through the default exchange.
    check("", "orders", retry(), false, false, (true, false));
    check(
        "",
        "orders",
        Some(death("orders.retry.1500ms", "expired")),
        false,
        false,
        (true, false),
    );
    // A retry redelivered after a lost connection is still a retry.
    check("", "orders", retry(), false, true, (true, false));
    // Fresh from the topic exchange, whatever its headers claim.
    check(
        "events",
        "order.created",
        None,
        false,
        false,
        (false, false),
    );
    check(
        "events",
        "order.created",
        retry(),
        false,
        false,
        (false, false),
    );
    check("events", "orders", retry(), false, false, (false, false));
    // Through the default exchange but not back from a delay queue.
    check("", "orders", None, false, false, (false, false));
    check(
        "",
        "orders",
        Some(death("orders.retry.1s", "rejected")),
        false,
        false,
        (false, false),
    );
    check(
        "",
        "orders",
        Some(death("orders", "expired")),
        false,
        false,
        (false, false),
    );
    check(
        "",
        "orders",
        Some(death("other.retry.1s", "expired")),
        false,
        false,
        (false, false),
    );
    check(
        "",
        "orders",
        Some(death("orders.retry.", "expired")),
        false,
        false,
        (false, false),
    );
    check(
        "",
        "orders",
        Some(death("orders.retry.xs", "expired")),
        false,
        false,
        (false, false),
    );
    check(
        "",
        "orders",
        Some(death("orders.retry.1s.x", "expired")),
        false,
        false,
        (false, false),
    );
    check("", "orders.dlq", retry(), false, false, (false, false));
    let no_queue = Death {
        queue: None,
        ..death("orders.retry.1s", "expired")
    };
    check("", "orders", Some(no_queue), false, false, (false, false));
    // The delivery count: a quorum queue's, on a redelivery.
    check("events", "order.created", None, true, true, (false, true));
    check("events", "order.created", None, true, false, (false, false));
    check("events", "order.created", None, false, true, (false, false));
}

fn first(alteration: Option<&str>, count: Option<i64>) -> Facts<'_> {
    Facts {
        alteration,
        delivery_count: count,
        retry: RetryState::first(),
    }
}

#[test]
fn admission() {
    let check = |facts: Facts<'_>, expected: Option<(DeadLetterKind, &str)>| {
        let got = admit(&facts, 10);
        match (&got, expected) {
            (None, None) => {}
            (
                Some(Decision::DeadLetter {
                    kind,
                    reason,
                    state: None,
                }),
                Some((k, r)),
            ) => {
                assert_eq!(*kind, k);
                assert!(reason.contains(r), "{reason}");
            }
            _ => panic!("{facts:?}: {got:?}, wanted {expected:?}"),
        }
    };
    check(first(None, None), None);
    check(first(None, Some(9)), None);
    check(
        first(None, Some(10)),
        Some((DeadLetterKind::RedeliveryLimit, "delivered 10 times")),
    );
    // An altered delivery is poison at once, its reason the guard's.
    check(
        first(Some("routing key is not UTF-8"), None),
        Some((DeadLetterKind::Poison, "routing key is not UTF-8")),
    );
    check(
        first(Some("headers nested deeper than 32 levels"), Some(99)),
        Some((
            DeadLetterKind::Poison,
            "headers nested deeper than 32 levels",
        )),
    );
    assert_eq!(
        admit(&first(Some("routing key is not UTF-8"), None), 10),
        Some(Decision::poison("routing key is not UTF-8".to_owned()))
    );
}

fn ok(subscription: &str) -> (&str, Option<(&str, bool)>) {
    (subscription, None)
}

fn failed<'a>(subscription: &'a str, error: &'a str) -> (&'a str, Option<(&'a str, bool)>) {
    (subscription, Some((error, false)))
}

fn permanent<'a>(subscription: &'a str, error: &'a str) -> (&'a str, Option<(&'a str, bool)>) {
    (subscription, Some((error, true)))
}

/// A summary of handlers `name@#` with these results.
fn run(outcomes: &[(&str, Option<(&str, bool)>)]) -> RunSummary {
    let mut summary = RunSummary {
        unhandled: outcomes.is_empty(),
        ..RunSummary::default()
    };
    if outcomes.iter().all(|(_, f)| f.is_none()) {
        return summary;
    }
    for (name, failure) in outcomes {
        match failure {
            None => summary.succeeded.push(format!("{name}@#")),
            Some((error, permanent)) => summary.failures.push(Failure {
                handler: (*name).to_owned(),
                error: (*error).to_owned(),
                permanent: *permanent,
            }),
        }
    }
    summary
}

fn state(attempt: u32, done: &[&str], first_failure: Option<&str>) -> RetryState {
    RetryState {
        attempt,
        done: done.iter().map(|d| (*d).to_owned()).collect(),
        first_failure: first_failure.map(str::to_owned),
        ..RetryState::default()
    }
}

/// What a decision comes to, in one line: `ack`, `unhandled`, `retry 2 in 1s done [..]
/// failed [..] first T: last error`, `dead <kind> attempt 3 done [..]: reason`.
fn show(decision: &Decision) -> String {
    match decision {
        Decision::Ack => "ack".into(),
        Decision::Unhandled => "unhandled".into(),
        Decision::Retry { delay, state } => format!(
            "retry {} in {}s done {:?} failed {:?} first {}: {}",
            state.attempt,
            delay.as_secs(),
            state.done,
            state.failed_handlers,
            state.first_failure.as_deref().unwrap_or("-"),
            state.last_error.as_deref().unwrap_or("-"),
        ),
        Decision::DeadLetter {
            kind,
            reason,
            state: Some(state),
        } => format!(
            "dead {kind} attempt {} done {:?} failed {:?} first {}: {reason}",
            state.attempt,
            state.done,
            state.failed_handlers,
            state.first_failure.as_deref().unwrap_or("-"),
        ),
        Decision::DeadLetter {
            kind,
            reason,
            state: None,
        } => format!("dead {kind}: {reason}"),
    }
}

#[test]
fn decisions_after_the_handlers_ran() {
    let policy = RetryPolicy::new(3, vec![S(1), S(5)]);
    let check = |retry: RetryState, summary: RunSummary, expected: &str| {
        let got = after_run(&retry, &summary, &policy, || "NOW".to_owned());
        assert_eq!(show(&got), expected, "{retry:?} {summary:?}");
    };
    // Success.
    check(state(1, &[], None), run(&[ok("a")]), "ack");
    check(state(1, &[], None), run(&[ok("a"), ok("b")]), "ack");
    // No handler matched.
    check(state(1, &[], None), run(&[]), "unhandled");
    // A retry whose failed handlers now succeed, the others skipped: acked, not unhandled.
    check(state(2, &["a@#"], Some("T")), run(&[ok("b")]), "ack");
    check(state(2, &["a@#", "b@#"], Some("T")), run(&[]), "ack");
    // Partial failure: retry, remembering what succeeded.
    check(
        state(1, &[], None),
        run(&[ok("a"), failed("b", "down")]),
        r#"retry 2 in 1s done ["a@#"] failed ["b"] first NOW: b: down"#,
    );
    // All failed.
    check(
        state(1, &[], None),
        run(&[failed("a", "x"), failed("b", "y")]),
        r#"retry 2 in 1s done [] failed ["a", "b"] first NOW: a: x; b: y"#,
    );
    // A second failure keeps the first failure's time and what was done.
    check(
        state(2, &["a@#"], Some("T")),
        run(&[failed("b", "down")]),
        r#"retry 3 in 5s done ["a@#"] failed ["b"] first T: b: down"#,
    );
    // Exhausted: the last attempt failed.
    check(
        state(3, &["a@#"], Some("T")),
        run(&[failed("b", "down")]),
        r#"dead exhausted attempt 3 done ["a@#"] failed ["b"] first T: failed 3 attempt(s): b: down"#,
    );
    // Past the last attempt (a policy lowered since): exhausted too.
    check(
        state(9, &[], Some("T")),
        run(&[failed("b", "down")]),
        r#"dead exhausted attempt 9 done [] failed ["b"] first T: failed 9 attempt(s): b: down"#,
    );
    // Permanent: every failure permanent, dead at once as poison.
    check(
        state(1, &[], None),
        run(&[ok("a"), permanent("b", "bad amount")]),
        r#"dead poison attempt 1 done ["a@#"] failed ["b"] first NOW: permanent failure: b: bad amount"#,
    );
    // One permanent and one transient failure: retried (the transient one may pass).
    check(
        state(1, &[], None),
        run(&[permanent("a", "bad"), failed("b", "down")]),
        r#"retry 2 in 1s done [] failed ["a", "b"] first NOW: a: bad; b: down"#,
    );
    // An attempt of 0 reads as 1.
    check(
        state(0, &[], None),
        run(&[failed("b", "down")]),
        r#"retry 2 in 1s done [] failed ["b"] first NOW: b: down"#,
    );
}

#[test]
fn no_retry_policy_dead_letters_the_first_failure() {
    let got = after_run(
        &RetryState::first(),
        &run(&[failed("b", "down")]),
        &RetryPolicy::none(),
        || "NOW".to_owned(),
    );
    assert_eq!(
        show(&got),
        r#"dead exhausted attempt 1 done [] failed ["b"] first NOW: failed 1 attempt(s): b: down"#
    );
}

#[test]
fn the_clock_is_read_only_on_a_first_failure() {
    let policy = RetryPolicy::default();
    let never = || -> String { panic!("read the clock") };
    after_run(&RetryState::first(), &run(&[ok("a")]), &policy, never);
    after_run(
        &state(2, &[], Some("T")),
        &run(&[failed("a", "x")]),
        &policy,
        never,
    );
}

/// Forged retry headers are read only where trusted: a fresh message decides as a first
/// delivery (every handler runs, a failure is a first failure), a real retry as the retry.
#[test]
fn facts_read_only_trusted_headers() {
    use crate::headers::{ATTEMPT, DELIVERY_COUNT, DONE, FIRST_FAILURE, X_DEATH};
    use pubsub_amqp::{HeaderValue, Headers};

    let mut h = Headers::new();
    h.insert(DONE.into(), vec!["a@#".to_owned()].into());
    h.insert(ATTEMPT.into(), HeaderValue::Int(3));
    h.insert(FIRST_FAILURE.into(), "T".into());
    h.insert(DELIVERY_COUNT.into(), HeaderValue::Int(50));
    let mut death = Headers::new();
    death.insert("queue".into(), "orders.retry.1s".into());
    death.insert("reason".into(), "expired".into());
    h.insert(
        X_DEATH.into(),
        HeaderValue::Array(vec![HeaderValue::Table(death)]),
    );

    let check = |exchange: &str,
                 key: &str,
                 quorum: bool,
                 redelivered: bool,
                 expected: (u32, &[&str], Option<i64>)| {
        let arrival = Arrival {
            queue: "orders",
            quorum,
            exchange,
            routing_key: key,
            redelivered,
        };
        let (facts, _) = facts(&arrival, None, |name| h.get(name).cloned());
        assert_eq!(
            (
                facts.retry.attempt,
                facts.retry.done.clone(),
                facts.delivery_count
            ),
            (
                expected.0,
                expected
                    .1
                    .iter()
                    .map(|d| (*d).to_owned())
                    .collect::<Vec<_>>(),
                expected.2
            ),
            "{exchange:?} {key:?} quorum={quorum} redelivered={redelivered}"
        );
    };
    // Fresh from the exchange: nothing believed.
    check("events", "order.created", false, false, (1, &[], None));
    check("events", "order.created", true, false, (1, &[], None));
    // A quorum queue's redelivery: the count, not the retry state.
    check("events", "order.created", true, true, (1, &[], Some(50)));
    // Back from the delay queue: the retry state.
    check("", "orders", false, false, (3, &["a@#"], None));

    // The fresh message: a failure is a first failure, every handler ran.
    let arrival = Arrival {
        queue: "orders",
        quorum: true,
        exchange: "events",
        routing_key: "order.created",
        redelivered: false,
    };
    let (facts, trust) = facts(&arrival, None, |name| h.get(name).cloned());
    assert_eq!(
        trust,
        Trust {
            retry_state: false,
            delivery_count: false
        }
    );
    assert_eq!(admit(&facts, 10), None);
    let got = after_run(
        &facts.retry,
        &run(&[ok("a"), failed("b", "down")]),
        &RetryPolicy::default(),
        || "NOW".to_owned(),
    );
    assert_eq!(
        show(&got),
        r#"retry 2 in 1s done ["a@#"] failed ["b"] first NOW: b: down"#
    );
}

#[test]
fn an_abandoned_run_is_retried_then_dead_lettered_as_any_failure() {
    let policy = RetryPolicy::new(2, vec![std::time::Duration::from_secs(1)]);
    match after_run(&RetryState::default(), &abandoned(), &policy, || {
        "now".to_owned()
    }) {
        Decision::Retry { state, .. } => {
            assert_eq!(state.attempt, 2);
            assert_eq!(state.failed_handlers, ["dispatch"]);
            assert!(state.done.is_empty());
        }
        other => panic!("expected a retry, got {other:?}"),
    }
    let last = RetryState {
        attempt: 2,
        ..RetryState::default()
    };
    assert!(matches!(
        after_run(&last, &abandoned(), &policy, || "now".to_owned()),
        Decision::DeadLetter { .. }
    ));
}
