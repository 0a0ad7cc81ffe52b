//! The same bus API without a broker.

use std::sync::{Arc, Mutex};

use pubsub::{handler_fn, Error, EventBus, EventType, Metadata, PublishOptions};

use crate::{event, shipped, ItemShipped};

type Seen = Arc<Mutex<Vec<(String, Metadata)>>>;

fn recorder(seen: &Seen, name: &str) -> impl pubsub::EventHandler + 'static {
    let seen = seen.clone();
    handler_fn(name, move |event, meta| {
        seen.lock()
            .unwrap()
            .push((event.routing_key().to_owned(), meta.clone()));
        Ok(())
    })
}

#[test]
fn handlers_run_in_the_callers_thread_with_metadata_and_correlation() {
    let mut bus = EventBus::in_process("shop").unwrap();
    let seen: Seen = Arc::default();
    let publisher = bus.publisher();
    {
        // A handler that publishes: the follow-up is correlated with what it handles.
        let publisher = publisher.clone();
        bus.subscribe(
            "order.created",
            handler_fn("ship", move |_, _| {
                publisher.publish(shipped("book", 2))?;
                Ok(())
            }),
        )
        .unwrap();
    }
    let typed = seen.clone();
    bus.subscribe_typed::<ItemShipped, _>(move |shipped, meta| {
        assert_eq!(shipped.count, 2);
        typed
            .lock()
            .unwrap()
            .push(("typed".to_owned(), meta.clone()));
        Ok(())
    })
    .unwrap();
    bus.subscribe("#", recorder(&seen, "audit")).unwrap();

    // Publishing before start is refused, with the event back.
    let early = publisher.publish(event("order", "created", 0)).unwrap_err();
    assert!(matches!(early.error(), Error::NotStarted), "{early}");
    assert_eq!(early.event().routing_key(), "order.created");

    bus.start().unwrap();
    let created = event("order", "created", 1);
    let created_id = created.event_id().to_string();
    publisher
        .publish_with(
            created,
            PublishOptions {
                event_type: Some(EventType::Integration),
                ..PublishOptions::correlated("flow-1")
            },
        )
        .unwrap();

    let seen = seen.lock().unwrap();
    let keys: Vec<&str> = seen.iter().map(|(k, _)| k.as_str()).collect();
    // The follow-up is handled inside the first handler, before `audit` sees the first event.
    assert_eq!(keys, ["typed", "item.shipped", "order.created"]);
    let (_, follow_up) = &seen[1];
    assert_eq!(follow_up.correlation_id(), Some("flow-1"));
    assert_eq!(follow_up.causation_id(), Some(created_id.as_str()));
    assert_eq!(follow_up.source(), Some("shop"));
    assert_eq!(follow_up.event_type(), Some(EventType::Domain));
    let (_, first) = &seen[2];
    assert_eq!(first.correlation_id(), Some("flow-1"));
    assert_eq!(first.causation_id(), None);
    assert_eq!(first.event_type(), Some(EventType::Integration));
    drop(seen);

    let stats = bus.stop().unwrap();
    assert_eq!(stats.workers, 0);
    let late = publisher.publish(event("order", "created", 2)).unwrap_err();
    assert!(matches!(late.error(), Error::Stopped), "{late}");
    assert_eq!(late.into_event().routing_key(), "order.created");
}

#[test]
fn a_failing_handler_fails_the_publish_and_gives_the_event_back() {
    let mut bus = EventBus::in_process("failing").unwrap();
    bus.subscribe("a.b", handler_fn("ok", |_, _| Ok(())))
        .unwrap();
    bus.subscribe(
        "a.*",
        handler_fn("broken", |_, _| Err("database down".into())),
    )
    .unwrap();
    bus.start().unwrap();
    let failed = bus.publish(event("a", "b", 1)).unwrap_err();
    assert_eq!(
        failed.error().to_string(),
        "1 handler(s) failed, first broken: database down"
    );
    let result = bus
        .dispatch(failed.event(), PublishOptions::default())
        .unwrap();
    assert_eq!((result.succeeded(), result.failed()), (1, 1));
    // A typed event that does not decode: a permanent failure.
    let mut typed = EventBus::in_process("typed").unwrap();
    typed
        .subscribe_typed::<ItemShipped, _>(|_, _| Ok(()))
        .unwrap();
    typed.start().unwrap();
    let bad = pubsub::Event::new("item", "shipped", serde_json::json!({ "item": 1 })).unwrap();
    let result = typed.dispatch(&bad, PublishOptions::default()).unwrap();
    assert!(result
        .failures()
        .all(|f| f.failure().is_some_and(|f| f.is_permanent())));
}

#[test]
fn bad_input_gets_a_clear_error() {
    let invalid = EventBus::in_process("my service").unwrap_err();
    assert!(
        invalid
            .to_string()
            .starts_with("invalid service name \"my service\": use ASCII letters"),
        "{invalid}"
    );
    assert!(matches!(
        EventBus::in_process("amq.x").unwrap_err(),
        Error::InvalidServiceName { .. }
    ));
    let exchange = EventBus::builder("svc").in_process().exchange("").build();
    assert!(matches!(
        exchange.unwrap_err(),
        Error::InvalidExchange { .. }
    ));

    let mut bus = EventBus::in_process("svc").unwrap();
    let pattern = bus.subscribe("order..created", handler_fn("h", |_, _| Ok(())));
    let pattern = pattern.unwrap_err().to_string();
    assert!(
        pattern.starts_with("invalid pattern \"order..created\": empty word"),
        "{pattern}"
    );
    bus.subscribe("order.*", handler_fn("h", |_, _| Ok(())))
        .unwrap();
    let twice = bus.subscribe("order.*", handler_fn("h", |_, _| Ok(())));
    assert!(matches!(twice.unwrap_err(), Error::Subscribe(_)));
    bus.start().unwrap();
    let late = bus.subscribe("user.*", handler_fn("late", |_, _| Ok(())));
    assert!(matches!(late.unwrap_err(), Error::AlreadyStarted));
    assert!(matches!(bus.start().unwrap_err(), Error::AlreadyStarted));
    bus.stop().unwrap();
    assert!(matches!(bus.start().unwrap_err(), Error::Stopped));
    let receipt = bus.publisher().send(event("order", "created", 1));
    assert!(matches!(receipt.unwrap_err().error(), Error::Stopped));
}
