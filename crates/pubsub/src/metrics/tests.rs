use std::time::Duration;

use pubsub_publisher::PublisherStats;
use pubsub_subscriber::SubscriberStats;

use super::endpoint::{response, route, wake_address, Route};
use super::*;

#[test]
fn durations_land_in_their_bucket() {
    let check = |elapsed: Duration, bucket: usize| {
        let h = Histogram::default();
        h.observe(elapsed);
        let s = h.snapshot();
        let mut expected = vec![0; DURATION_BUCKETS.len() + 1];
        expected[bucket] = 1;
        assert_eq!(s.buckets, expected, "{elapsed:?}");
        assert_eq!((s.count, s.sum), (1, elapsed));
    };
    check(Duration::ZERO, 0);
    check(Duration::from_micros(100), 0);
    check(Duration::from_micros(101), 1);
    check(Duration::from_millis(1), 3);
    check(Duration::from_millis(7), 6);
    check(Duration::from_secs(10), 15);
    check(Duration::from_secs(11), 16);
    check(Duration::from_secs(3600), 16);
}

#[test]
fn label_values_are_escaped() {
    let check = |value: &str, expected: &str| assert_eq!(escape(value), expected);
    check("audit", "audit");
    check("a\"b", "a\\\"b");
    check("a\\b", "a\\\\b");
    check("a\nb", "a\\nb");
    check("é", "é");
}

fn lines_of(text: &str, prefix: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_snapshot_renders_as_prometheus_text() {
    let h = Histogram::default();
    h.observe(Duration::from_micros(50));
    h.observe(Duration::from_millis(3));
    let handlers = vec![("send \"mail\"".to_owned(), h.snapshot())];
    let text = render(&Snapshot {
        service: "audit",
        exchange: "events",
        publisher: Some(PublisherStats {
            published: 5,
            confirmed: 4,
            nacked: 1,
            returned: 0,
            reconnects: 2,
        }),
        subscriber: Some(SubscriberStats {
            received: 7,
            acked: 4,
            retried: 1,
            dead_lettered_poison: 1,
            dead_lettered_exhausted: 1,
            in_flight: 3,
            reconnects: 1,
            ..SubscriberStats::default()
        }),
        handlers: &handlers,
    });
    let check = |prefix: &str, expected: &[&str]| {
        assert_eq!(lines_of(&text, prefix), expected, "{text}");
    };
    check(
        "pubsub_published_total",
        &[r#"pubsub_published_total{service="audit",exchange="events"} 5"#],
    );
    check(
        "pubsub_nacked_total",
        &[r#"pubsub_nacked_total{service="audit",exchange="events"} 1"#],
    );
    check(
        "pubsub_received_total",
        &[r#"pubsub_received_total{queue="audit"} 7"#],
    );
    check(
        "pubsub_dead_lettered_total",
        &[
            r#"pubsub_dead_lettered_total{queue="audit",kind="poison"} 1"#,
            r#"pubsub_dead_lettered_total{queue="audit",kind="exhausted"} 1"#,
            r#"pubsub_dead_lettered_total{queue="audit",kind="redelivery-limit"} 0"#,
        ],
    );
    check(
        "pubsub_in_flight",
        &[r#"pubsub_in_flight{queue="audit"} 3"#],
    );
    check(
        "pubsub_reconnects_total",
        &[
            r#"pubsub_reconnects_total{service="audit",connection="publisher"} 2"#,
            r#"pubsub_reconnects_total{service="audit",connection="subscriber"} 1"#,
        ],
    );
    let labels = r#"queue="audit",handler="send \"mail\"""#;
    let buckets = lines_of(&text, "pubsub_handler_duration_seconds_bucket");
    assert_eq!(buckets.len(), DURATION_BUCKETS.len() + 1);
    assert_eq!(
        buckets[0],
        format!(r#"pubsub_handler_duration_seconds_bucket{{{labels},le="0.0001"}} 1"#)
    );
    assert_eq!(
        buckets[5],
        format!(r#"pubsub_handler_duration_seconds_bucket{{{labels},le="0.005"}} 2"#)
    );
    assert_eq!(
        buckets[16],
        format!(r#"pubsub_handler_duration_seconds_bucket{{{labels},le="+Inf"}} 2"#)
    );
    check(
        "pubsub_handler_duration_seconds_count",
        &[&format!(
            "pubsub_handler_duration_seconds_count{{{labels}}} 2"
        )],
    );
    check(
        "pubsub_handler_duration_seconds_sum",
        &[&format!(
            "pubsub_handler_duration_seconds_sum{{{labels}}} 0.00305"
        )],
    );
    // Every family is announced once, before its samples.
    check(
        "# TYPE pubsub_handler_duration_seconds",
        &["# TYPE pubsub_handler_duration_seconds histogram"],
    );
    check(
        "# TYPE pubsub_in_flight",
        &["# TYPE pubsub_in_flight gauge"],
    );
    assert!(text.ends_with('\n'));
}

#[test]
fn what_is_not_running_is_not_shown() {
    let text = render(&Snapshot {
        service: "audit",
        exchange: "events",
        publisher: None,
        subscriber: None,
        handlers: &[],
    });
    assert_eq!(text, "");
}

#[test]
fn requests_are_routed_by_their_request_line() {
    let check = |line: &str, expected: Route| assert_eq!(route(line), expected, "{line:?}");
    check("GET /metrics HTTP/1.1", Route::Metrics { head: false });
    check("GET /metrics?x=1 HTTP/1.0", Route::Metrics { head: false });
    check("HEAD /metrics HTTP/1.1", Route::Metrics { head: true });
    check("GET / HTTP/1.1", Route::NotFound);
    check("GET /metricsx HTTP/1.1", Route::NotFound);
    check("POST /metrics HTTP/1.1", Route::MethodNotAllowed);
    check("GET /metrics", Route::BadRequest);
    check("GET /metrics SPDY/3", Route::BadRequest);
    check("", Route::BadRequest);
    check("GET  /metrics HTTP/1.1", Route::BadRequest);
}

#[test]
fn responses_carry_their_length() {
    let text = |route| String::from_utf8(response(route, || "a 1\n".to_owned())).unwrap();
    assert_eq!(
        text(Route::Metrics { head: false }),
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: 4\r\nConnection: close\r\n\r\na 1\n"
    );
    assert!(text(Route::Metrics { head: true })
        .ends_with("Content-Length: 4\r\nConnection: close\r\n\r\n"));
    assert!(text(Route::NotFound).starts_with("HTTP/1.1 404 Not Found\r\n"));
    assert!(text(Route::MethodNotAllowed).starts_with("HTTP/1.1 405 "));
    assert!(text(Route::BadRequest).starts_with("HTTP/1.1 400 "));
}

#[test]
fn a_listener_on_every_interface_is_woken_on_its_loopback() {
    let check = |listening: &str, expected: &str| {
        let listening: std::net::SocketAddr = listening.parse().unwrap();
        assert_eq!(wake_address(listening), expected.parse().unwrap());
    };
    check("0.0.0.0:9464", "127.0.0.1:9464");
    check("[::]:9464", "[::1]:9464");
    check("127.0.0.1:9464", "127.0.0.1:9464");
    check("10.1.2.3:80", "10.1.2.3:80");
}
