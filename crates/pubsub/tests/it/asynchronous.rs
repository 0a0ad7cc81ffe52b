//! The async bus (feature `tokio`) over the real broker: handlers as tasks, at most
//! `concurrency` at once; correlation across `.await` points; a panic retried; a typed event
//! that does not decode dead-lettered; a bus dropped mid-handler loses nothing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pubsub::{AsyncEventBus, Error, Event, EventBus, EventBusBuilder, RetryPolicy};
use pubsub_testkit::{unique, Bus};
use serde_json::json;

use crate::{shipped, ItemShipped, WAIT};

fn builder(fixture: &Bus, service: &str) -> EventBusBuilder {
    EventBus::builder(service)
        .amqp(fixture.config().clone())
        .exchange(fixture.exchange())
        .retry(RetryPolicy::new(3, vec![Duration::from_millis(100)]))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap()
}

/// Waits (async) until `done` is true, for at most [`WAIT`].
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[test]
fn handlers_run_as_tasks_at_most_concurrency_at_once() {
    let Some(fixture) = Bus::new("async-conc") else {
        return;
    };
    let service = unique("async-conc");
    runtime().block_on(async {
        let mut bus = builder(&fixture, &service)
            .concurrency(16)
            .metrics(true)
            .build_async()
            .unwrap();
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let handled = Arc::new(AtomicUsize::new(0));
        let (r, p, h) = (running.clone(), peak.clone(), handled.clone());
        bus.subscribe_fn("load.*", "slow", move |_event, _meta| {
            let (r, p, h) = (r.clone(), p.clone(), h.clone());
            async move {
                let now = r.fetch_add(1, Ordering::SeqCst) + 1;
                p.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                r.fetch_sub(1, Ordering::SeqCst);
                h.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        })
        .unwrap();
        bus.start().await.unwrap();
        let events: Vec<Event> = (0..200)
            .map(|n| Event::new("load", "one", json!({ "n": n })).unwrap())
            .collect();
        for outcome in bus.publish_all(events).await {
            outcome.unwrap();
        }
        until("200 handled", || handled.load(Ordering::SeqCst) == 200).await;
        let metrics = bus.metrics().unwrap();
        let count = format!(
            "pubsub_handler_duration_seconds_count{{queue=\"{service}\",handler=\"slow\"}} 200"
        );
        assert!(metrics.contains(&count), "{metrics}");
        let stats = bus.teardown().await.unwrap().stats;
        let peak = peak.load(Ordering::SeqCst);
        assert!(peak > 1, "the handlers ran one at a time");
        assert!(
            peak <= 16,
            "{peak} handlers ran at once, over the concurrency of 16"
        );
        assert_eq!(stats.subscriber.acked, 200, "{}", stats.subscriber);
    });
}

#[test]
fn a_publish_after_an_await_in_a_handler_is_correlated_with_its_event() {
    let Some(fixture) = Bus::new("async-corr") else {
        return;
    };
    let service = unique("async-corr");
    runtime().block_on(async {
        let mut bus = builder(&fixture, &service).build_async().unwrap();
        let publisher = bus.publisher();
        bus.subscribe_fn("order.created", "audit", move |event, _meta| {
            let publisher = publisher.clone();
            async move {
                // Across an await (and possibly another runtime thread).
                tokio::time::sleep(Duration::from_millis(5)).await;
                tokio::task::yield_now().await;
                let audited = Event::new("order", "audited", json!({ "of": event.event_id() }))?;
                publisher.send(audited)?.await?;
                Ok(())
            }
        })
        .unwrap();
        let seen = Arc::new(Mutex::new(None));
        let s = seen.clone();
        bus.subscribe_fn("order.audited", "record", move |_event, meta| {
            let s = s.clone();
            async move {
                *s.lock().unwrap() = Some((
                    meta.correlation_id().map(str::to_owned),
                    meta.causation_id().map(str::to_owned),
                ));
                Ok(())
            }
        })
        .unwrap();
        bus.start().await.unwrap();
        let created = Event::new("order", "created", json!({})).unwrap();
        let id = created.event_id().to_string();
        bus.publish(created).await.unwrap();
        until("the audit", || seen.lock().unwrap().is_some()).await;
        let (correlation, causation) = seen.lock().unwrap().clone().unwrap();
        assert_eq!(correlation.as_deref(), Some(id.as_str()));
        assert_eq!(causation.as_deref(), Some(id.as_str()));
        bus.teardown().await.unwrap();
    });
}

#[test]
fn a_panic_is_retried_and_a_typed_event_that_does_not_decode_is_poison() {
    let Some(fixture) = Bus::new("async-fail") else {
        return;
    };
    let service = unique("async-fail");
    runtime().block_on(async {
        let mut bus = builder(&fixture, &service).build_async().unwrap();
        let runs: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
        let r = runs.clone();
        bus.subscribe_fn("flaky.*", "flaky", move |event, meta| {
            let r = r.clone();
            async move {
                *r.lock()
                    .unwrap()
                    .entry(event.event_id().to_string())
                    .or_default() += 1;
                tokio::task::yield_now().await;
                if meta.attempt() <= 1 {
                    panic!("the first attempt panics");
                }
                Ok(())
            }
        })
        .unwrap();
        let items = Arc::new(AtomicUsize::new(0));
        let i = items.clone();
        bus.subscribe_typed(move |item: ItemShipped, _meta| {
            let i = i.clone();
            async move {
                i.fetch_add(item.count as usize, Ordering::SeqCst);
                Ok(())
            }
        })
        .unwrap();
        bus.start().await.unwrap();
        let flaky = Event::new("flaky", "one", json!({})).unwrap();
        let flaky_id = flaky.event_id().to_string();
        let not_an_item = Event::new("item", "shipped", json!({ "item": 7 })).unwrap();
        for outcome in bus
            .publish_all(vec![flaky, shipped("book", 2), not_an_item])
            .await
        {
            outcome.unwrap();
        }
        until("the retried run", || {
            runs.lock().unwrap().get(&flaky_id).copied() == Some(2)
        })
        .await;
        until("the item", || items.load(Ordering::SeqCst) == 2).await;
        // Settled before stop returns (the retry's ack included).
        tokio::time::sleep(Duration::from_millis(200)).await;
        let stats = bus.teardown().await.unwrap().stats.subscriber;
        assert_eq!(stats.retried, 1, "{stats}");
        assert_eq!(stats.dead_lettered_poison, 1, "{stats}");
        assert_eq!(stats.acked, 2, "{stats}");
    });
}

#[test]
fn a_bus_dropped_mid_handler_leaves_the_delivery_to_the_next_one() {
    let Some(fixture) = Bus::new("async-drop") else {
        return;
    };
    let service = unique("async-drop");
    let rt = runtime();
    let stuck = Arc::new(AtomicUsize::new(0));
    rt.block_on(async {
        let mut bus = builder(&fixture, &service).build_async().unwrap();
        bus.drain_timeout(Duration::from_millis(200));
        let s = stuck.clone();
        bus.subscribe_fn("job.*", "stuck", move |_event, _meta| {
            let s = s.clone();
            async move {
                s.fetch_add(1, Ordering::SeqCst);
                std::future::pending::<()>().await;
                Ok(())
            }
        })
        .unwrap();
        bus.start().await.unwrap();
        bus.publish(Event::new("job", "run", json!({})).unwrap())
            .await
            .unwrap();
        until("the stuck handler", || stuck.load(Ordering::SeqCst) == 1).await;
        drop(bus); // without stop
    });
    // The next instance of the service gets the delivery the dropped one left.
    rt.block_on(async {
        let mut bus = builder(&fixture, &service).build_async().unwrap();
        let handled = Arc::new(AtomicUsize::new(0));
        let h = handled.clone();
        bus.subscribe_fn("job.*", "stuck", move |_event, _meta| {
            let h = h.clone();
            async move {
                h.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        })
        .unwrap();
        bus.start().await.unwrap();
        until("the redelivery", || handled.load(Ordering::SeqCst) == 1).await;
        bus.teardown().await.unwrap();
    });
}

#[test]
fn bad_settings_and_starting_off_a_runtime_are_typed_errors() {
    let Some(fixture) = Bus::new("async-bad") else {
        return;
    };
    let service = unique("async-bad");
    let zero = builder(&fixture, &service).concurrency(0).build_async();
    assert!(matches!(zero, Err(Error::InvalidConfig { .. })));
    let huge = builder(&fixture, &service)
        .concurrency(70_000)
        .build_async();
    assert!(matches!(huge, Err(Error::InvalidConfig { .. })));
    let mut bus: AsyncEventBus = builder(&fixture, &service).build_async().unwrap();
    assert!(matches!(
        bus.subscribe_fn("order..created", "bad", |_, _| async { Ok(()) }),
        Err(Error::Subscribe(_))
    ));
    // Off a runtime: a plain executor polls start, which refuses.
    let started = futures_lite_block_on(bus.start());
    assert!(
        matches!(started, Err(Error::InvalidConfig { .. })),
        "{started:?}"
    );
}

/// Polls `future` on this thread, outside any tokio runtime.
fn futures_lite_block_on<F: std::future::Future>(future: F) -> F::Output {
    use std::task::{Context, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        std::thread::park();
    }
}

/// A whole async service (features `store`, `tasks`): async handlers, the event store and a
/// task function on one bus, as seed 003's service is one.
#[cfg(all(feature = "store", feature = "tasks"))]
#[test]
fn an_async_service_keeps_its_events_and_runs_its_tasks() {
    use pubsub::store::{Database, EventStore, TaskStatus, TaskStore};
    use pubsub_testkit::TestDatabase;

    let Some(mut fixture) = Bus::new("async-svc") else {
        return;
    };
    let db = TestDatabase::sqlite("async-svc");
    let database = Database::parse(db.url()).unwrap();
    let service = unique("async-svc");
    let task_exchange = fixture.exchange_name("async-svc-tasks");
    runtime().block_on(async {
        let mut bus = builder(&fixture, &service)
            .store(database.clone())
            .task("send-invoice", |task| {
                Ok(json!({ "invoiced": task.payload()["order"] }))
            })
            .task_exchange(&task_exchange)
            .build_async()
            .unwrap();
        for queue in bus.queues() {
            fixture.delete_queue_at_end(&queue);
        }
        let tasks = bus.task_queue().unwrap();
        let (submitted, ids) = crossbeam_channel::unbounded();
        bus.subscribe_fn("order.created", "invoice", move |event, _meta| {
            let (tasks, submitted) = (tasks.clone(), submitted.clone());
            async move {
                // Submitting blocks until confirmed: off the runtime's threads.
                let order = event.data()["n"].clone();
                let id = tokio::task::spawn_blocking(move || {
                    tasks.submit("send-invoice", json!({ "order": order }))
                })
                .await??;
                submitted.send(id)?;
                Ok(())
            }
        })
        .unwrap();
        bus.start().await.unwrap();
        bus.publish(crate::event("order", "created", 7))
            .await
            .unwrap();
        let id = tokio::task::spawn_blocking(move || ids.recv_timeout(WAIT))
            .await
            .unwrap()
            .expect("the handler submitted the task")
            .id();
        let mut task_store = TaskStore::open(&database).unwrap();
        until("the task to complete", || {
            task_store
                .get(id)
                .unwrap()
                .is_some_and(|t| t.status == TaskStatus::Completed)
        })
        .await;
        let mut events = EventStore::open(&database).unwrap();
        until("the event to be stored", || events.count().unwrap() == 1).await;
        let stats = bus.stop().await.unwrap();
        assert_eq!(stats.subscriber.acked, 1, "{stats}");
        assert_eq!(stats.store.expect("the store ran").stored, 1, "{stats}");
        assert_eq!(
            stats.tasks.expect("the tasks ran").subscriber.acked,
            1,
            "{stats}"
        );
    });
}

/// In process (no broker), for async tests: a publish runs the matching handlers as its
/// receipt is awaited; a failing handler fails the publish; what a handler publishes runs
/// the handlers in turn, correlated.
#[test]
fn in_process_a_publish_runs_the_async_handlers_when_awaited() {
    runtime().block_on(async {
        let mut bus = EventBus::builder("async-in-process")
            .in_process()
            .build_async()
            .unwrap();
        let publisher = bus.publisher();
        /// Each handled routing key, with its correlation id.
        type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;
        let seen: Seen = Arc::default();
        let s = seen.clone();
        bus.subscribe_fn("order.*", "record", move |event, meta| {
            let s = s.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(1)).await;
                s.lock().unwrap().push((
                    event.routing_key().to_owned(),
                    meta.correlation_id().map(str::to_owned),
                ));
                if event.action() == "refused" {
                    return Err("refused by the test".into());
                }
                Ok(())
            }
        })
        .unwrap();
        bus.subscribe_fn("order.created", "follow-up", move |_event, _meta| {
            let publisher = publisher.clone();
            async move {
                tokio::task::yield_now().await;
                publisher
                    .send(Event::new("order", "checked", json!({}))?)?
                    .await?;
                Ok(())
            }
        })
        .unwrap();
        bus.start().await.unwrap();
        let created = Event::new("order", "created", json!({})).unwrap();
        let id = created.event_id().to_string();
        bus.publish(created).await.unwrap();
        let seen_now = seen.lock().unwrap().clone();
        assert_eq!(
            seen_now,
            [
                ("order.created".to_owned(), None),
                ("order.checked".to_owned(), Some(id)),
            ]
        );
        let refused = bus
            .publish(Event::new("order", "refused", json!({})).unwrap())
            .await
            .unwrap_err();
        assert!(
            matches!(refused.error(), Error::Handlers { failed: 1, .. }),
            "{refused}"
        );
        assert_eq!(refused.event().action(), "refused");
        // Waited on from a thread outside the runtime, the handlers run through it.
        let receipt = bus
            .publisher()
            .send(Event::new("order", "waited", json!({})).unwrap())
            .unwrap();
        tokio::task::spawn_blocking(move || receipt.wait())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(seen.lock().unwrap().len(), 4);
        let outcomes = bus
            .publish_all(vec![Event::new("order", "batched", json!({})).unwrap()])
            .await;
        assert!(outcomes[0].is_ok());
        bus.stop().await.unwrap();
        let late = bus
            .publish(Event::new("order", "late", json!({})).unwrap())
            .await;
        assert!(matches!(late.unwrap_err().error(), Error::Stopped));
    });
}
