//! The metrics endpoint of a bus over the real broker, scraped as Prometheus would.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use pubsub::{handler_fn, EventBus, Permanent, RetryPolicy};
use pubsub_testkit::{unique, Bus};

use crate::{event, WAIT};

/// `GET path` on `address`: the status line and the body.
fn get(address: SocketAddr, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect_timeout(&address, WAIT).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nAccept: text/plain\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.lines().next().unwrap().to_owned();
    if status.contains("200") {
        assert!(
            head.contains("Content-Type: text/plain; version=0.0.4"),
            "{head}"
        );
    }
    (status, body.to_owned())
}

/// The samples of a scrape: `name{labels}` to value (comments skipped).
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            (series.to_owned(), value.parse().unwrap())
        })
        .collect()
}

#[test]
fn a_running_bus_is_scraped() {
    let Some(fixture) = Bus::new("metrics") else {
        return;
    };
    let service = unique("metrics");
    let mut bus = EventBus::builder(&service)
        .amqp(fixture.config().clone())
        .exchange(fixture.exchange())
        .retry(RetryPolicy::new(2, vec![Duration::from_millis(100)]))
        .metrics_endpoint(SocketAddr::from(([127, 0, 0, 1], 0)))
        .build()
        .unwrap();
    let (tx, rx) = crossbeam_channel::unbounded();
    bus.subscribe(
        "order.*",
        handler_fn("ship", move |event, _| {
            tx.send(()).unwrap();
            match event.action() {
                "cancelled" => Err(Permanent::new("nothing to ship").into()),
                _ => Ok(()),
            }
        }),
    )
    .unwrap();
    bus.subscribe("order.created", handler_fn("count", |_, _| Ok(())))
        .unwrap();
    bus.start().unwrap();
    let address = bus.metrics_address().unwrap();
    assert_ne!(address.port(), 0);

    for n in 0..3 {
        bus.publish(event("order", "created", n)).unwrap();
    }
    bus.publish(event("order", "cancelled", 3)).unwrap();
    for _ in 0..4 {
        rx.recv_timeout(WAIT).unwrap();
    }
    // Settled (acked, dead-lettered) shortly after the handlers ran.
    let queue = format!("queue=\"{service}\"");
    let deadline = Instant::now() + WAIT;
    let scrape = loop {
        let (status, body) = get(address, "/metrics");
        assert_eq!(status, "HTTP/1.1 200 OK");
        let scrape = samples(&body);
        let settled = scrape.get(&format!("pubsub_in_flight{{{queue}}}")) == Some(&0.0)
            && scrape.get(&format!("pubsub_acked_total{{{queue}}}")) == Some(&3.0);
        if settled || Instant::now() > deadline {
            break scrape;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let publisher = format!("service=\"{service}\",exchange=\"{}\"", fixture.exchange());
    let expected = [
        (format!("pubsub_published_total{{{publisher}}}"), 4.0),
        (format!("pubsub_confirmed_total{{{publisher}}}"), 4.0),
        (format!("pubsub_nacked_total{{{publisher}}}"), 0.0),
        (format!("pubsub_received_total{{{queue}}}"), 4.0),
        (format!("pubsub_acked_total{{{queue}}}"), 3.0),
        (format!("pubsub_retried_total{{{queue}}}"), 0.0),
        (
            format!("pubsub_dead_lettered_total{{{queue},kind=\"poison\"}}"),
            1.0,
        ),
        (
            format!("pubsub_dead_lettered_total{{{queue},kind=\"exhausted\"}}"),
            0.0,
        ),
        (format!("pubsub_handler_failures_total{{{queue}}}"), 1.0),
        (format!("pubsub_in_flight{{{queue}}}"), 0.0),
        (
            format!("pubsub_reconnects_total{{service=\"{service}\",connection=\"subscriber\"}}"),
            0.0,
        ),
        (
            format!("pubsub_handler_duration_seconds_count{{{queue},handler=\"ship\"}}"),
            4.0,
        ),
        (
            format!(
                "pubsub_handler_duration_seconds_bucket{{{queue},handler=\"ship\",le=\"+Inf\"}}"
            ),
            4.0,
        ),
        (
            format!("pubsub_handler_duration_seconds_count{{{queue},handler=\"count\"}}"),
            3.0,
        ),
    ];
    for (series, value) in &expected {
        assert_eq!(scrape.get(series), Some(value), "{series} in {scrape:#?}");
    }
    // The same text without HTTP.
    assert!(bus.metrics().unwrap().contains("pubsub_received_total"));
    assert!(get(address, "/").0.contains("404"));

    bus.teardown().unwrap();
    // The endpoint stops with the bus.
    assert!(TcpStream::connect_timeout(&address, Duration::from_secs(1)).is_err());
}

#[test]
fn metrics_are_off_by_default() {
    let bus = EventBus::in_process("quiet").unwrap();
    assert_eq!(bus.metrics(), None);
    assert_eq!(bus.metrics_address(), None);
}

#[test]
fn an_endpoint_that_cannot_listen_fails_the_start() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap();
    let mut bus = EventBus::builder("busy-port")
        .in_process()
        .metrics_endpoint(address)
        .build()
        .unwrap();
    bus.subscribe("order.*", handler_fn("ship", |_, _| Ok(())))
        .unwrap();
    match bus.start() {
        Err(pubsub::Error::MetricsEndpoint { address: a, .. }) => assert_eq!(a, address),
        other => panic!("{other:?}"),
    }
    // Nothing is left running.
    assert!(!bus.is_running());
    let refused = bus.publish(event("order", "created", 1)).unwrap_err();
    assert!(matches!(refused.error(), pubsub::Error::Stopped));
}
