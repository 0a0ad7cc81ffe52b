//! An async service on the bus: tasks of a tokio runtime publish through one handle and
//! await their receipts, which resolve on the broker's confirms without blocking the
//! runtime's threads.

use std::collections::HashSet;
use std::time::Duration;

use pubsub::{handler_fn, Error, Event, EventBus, RetryPolicy};
use pubsub_testkit::{unique, Bus};

use crate::WAIT;

const TASKS: usize = 200;
const EACH: usize = 20;

#[test]
fn tasks_on_a_runtime_await_their_confirms_through_one_handle() {
    let Some(fixture) = Bus::new("awaiting") else {
        return;
    };
    let service = unique("awaiting");
    let mut bus = EventBus::builder(&service)
        .amqp(fixture.config().clone())
        .exchange(fixture.exchange())
        .retry(RetryPolicy::new(1, vec![Duration::from_millis(100)]))
        .build()
        .unwrap();
    let (tx, rx) = crossbeam_channel::unbounded::<String>();
    bus.subscribe(
        "load.*",
        handler_fn("collect", move |event, _| {
            let _ = tx.send(event.data()["id"].as_str().unwrap_or_default().to_owned());
            Ok(())
        }),
    )
    .unwrap();
    bus.start().unwrap();
    let publisher = bus.publisher();

    // Two runtime threads for TASKS tasks: a receipt that blocked its thread would stall
    // the others; each task awaits one event at a time, then a batch.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let sent: Vec<String> = runtime.block_on(async {
        let mut tasks = Vec::new();
        for t in 0..TASKS {
            let publisher = publisher.clone();
            tasks.push(tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in 0..EACH / 2 {
                    let id = format!("{t}-{i}");
                    let event = Event::new("load", "one", serde_json::json!({ "id": id })).unwrap();
                    publisher.send(event).unwrap().await.unwrap();
                    ids.push(id);
                }
                let batch: Vec<Event> = (EACH / 2..EACH)
                    .map(|i| {
                        ids.push(format!("{t}-{i}"));
                        Event::new(
                            "load",
                            "many",
                            serde_json::json!({ "id": format!("{t}-{i}") }),
                        )
                        .unwrap()
                    })
                    .collect();
                for outcome in publisher.send_all(batch).await {
                    outcome.unwrap();
                }
                ids
            }));
        }
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await.unwrap());
        }
        all
    });
    assert_eq!(sent.len(), TASKS * EACH);
    let mut handled = HashSet::new();
    while handled.len() < sent.len() {
        let id = rx
            .recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("only {} of {} handled", handled.len(), sent.len()));
        handled.insert(id);
    }
    assert_eq!(handled, sent.into_iter().collect::<HashSet<_>>());

    // After stop, a receipt resolves at once with the event given back.
    bus.teardown().unwrap();
    let event = Event::new("load", "late", serde_json::json!({})).unwrap();
    let failed = publisher.send(event);
    assert!(matches!(failed.unwrap_err().error(), Error::Stopped));
    let late = vec![Event::new("load", "late", serde_json::json!({})).unwrap()];
    let outcomes = runtime.block_on(publisher.send_all(late));
    assert!(matches!(
        outcomes[0].as_ref().unwrap_err().error(),
        Error::Stopped
    ));
}
