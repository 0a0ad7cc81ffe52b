//! Handlers dispatched elsewhere: a dispatcher that answers out of order, from other threads,
//! after random delays. Every delivery is settled once (acked, retried or dead-lettered as
//! with handlers on the subscriber's thread), a job dropped unanswered is retried, and the
//! queue ends empty.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pubsub_core::Event;
use pubsub_registry::{
    subscription_id, HandlerFailure, HandlerOutcome, HandlerRegistry, InvocationResult, Pattern,
};
use pubsub_subscriber::{Dispatcher, Disposition, Job};

use crate::support::{event, reports, test_bus, BusExt};

/// Answers each job from a thread of its own after 0-19 ms: `fail` events fail their first
/// attempt, `drop` events have their job dropped unanswered on the first attempt, `doomed`
/// events always fail.
struct Threads {
    runs: Arc<Mutex<HashMap<String, u32>>>,
}

impl Dispatcher for Threads {
    fn dispatch(&self, job: Job) {
        let runs = self.runs.clone();
        std::thread::spawn(move || {
            let (event, meta, _done_before, done) = job.into_parts();
            let key = event.data()["n"].to_string();
            let pause = event.event_id().as_u128() % 20;
            std::thread::sleep(Duration::from_millis(pause as u64));
            let attempt = {
                let mut runs = runs.lock().unwrap();
                let n = runs.entry(format!("{}:{key}", event.action())).or_insert(0);
                *n += 1;
                *n
            };
            let id = subscription_id("threads", &Pattern::parse("order.*").unwrap());
            let result = match (event.action(), attempt) {
                ("dropped", 1) => return drop(done),
                ("failing", 1) | ("doomed", _) => Err(HandlerFailure::returned(
                    format!("attempt {} of {}", meta.attempt(), event.action()).into(),
                )),
                _ => Ok(()),
            };
            done.finish(InvocationResult::from_outcomes(vec![HandlerOutcome::new(
                "threads", &id, result,
            )]));
        });
    }
}

#[test]
fn deliveries_answered_out_of_order_are_each_settled_once() {
    let Some(mut bus) = test_bus() else {
        return;
    };
    let (builder, queue) = bus.service("dispatch", HandlerRegistry::new());
    let (reports_tx, reports_rx) = crossbeam_channel::unbounded();
    let runs = Arc::new(Mutex::new(HashMap::new()));
    let mut subscriber = builder
        .bindings(["order.*"])
        .prefetch(64)
        .observer(reports_tx)
        .dispatcher(
            Arc::new(Threads { runs: runs.clone() }),
            Duration::from_secs(5),
        )
        .build()
        .unwrap();
    subscriber.setup().unwrap();
    let running = subscriber.spawn().unwrap();

    let mut sent: Vec<Event> = Vec::new();
    for n in 0..200 {
        let action = match n % 20 {
            0 => "failing",
            1 => "dropped",
            2 if n < 40 => "doomed",
            _ => "created",
        };
        sent.push(event("order", action, n));
    }
    let mut publisher = bus.publisher();
    for r in publisher.publish_all(&sent) {
        r.unwrap();
    }
    // 200 first deliveries, 20 retried once (failing, dropped), 2 retried twice then dead.
    let all = reports(&reports_rx, 200 + 20 + 4);
    let mut last: HashMap<String, Disposition> = HashMap::new();
    for report in all {
        last.insert(report.event_id.expect("an event id"), report.disposition);
    }
    assert_eq!(last.len(), 200);
    for e in &sent {
        let disposition = &last[&e.event_id().to_string()];
        match e.action() {
            "doomed" => assert!(
                matches!(disposition, Disposition::DeadLettered { .. }),
                "{disposition:?}"
            ),
            _ => assert!(
                matches!(disposition, Disposition::Acked),
                "{} {disposition:?}",
                e.action()
            ),
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while bus.ready(&queue) != Some(0) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let stats = running.stop().unwrap();
    assert_eq!(stats.acked, 198, "{stats}");
    assert_eq!(stats.retried, 24, "{stats}");
    assert_eq!(stats.dead_lettered_exhausted, 2, "{stats}");
    assert_eq!(stats.in_flight, 0, "{stats}");
    assert_eq!(bus.ready(&queue), Some(0));
    assert_eq!(bus.ready(&format!("{queue}.dlq")), Some(2));
}
