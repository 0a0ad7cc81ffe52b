use std::time::{Duration, Instant};

use pubsub_amqp::{AmqpConfig, Connection, Error};

#[test]
fn connects_and_closes() {
    let Some(config) = pubsub_testkit::broker() else {
        return;
    };
    let mut connection = Connection::open(&config).unwrap();
    let channel = connection.open_channel().unwrap();
    channel.close().unwrap();
    assert!(connection.blocked().is_none());
    connection.close().unwrap();
}

#[test]
fn wrong_password_is_an_authentication_error_without_the_password() {
    let Some(config) = pubsub_testkit::broker() else {
        return;
    };
    let config = config.with_credentials("guest", "not-the-password-123");
    let started = Instant::now();
    let err = Connection::open(&config.with_connection_attempts(3)).unwrap_err();
    assert!(matches!(err, Error::AuthenticationFailed { .. }), "{err:?}");
    let text = format!("{err} {err:?}");
    assert!(!text.contains("not-the-password-123"), "{text}");
    assert!(text.contains("guest"), "{text}");
    // Not retried: another attempt cannot fix a wrong password.
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn unknown_vhost_is_its_own_error() {
    let Some(config) = pubsub_testkit::broker() else {
        return;
    };
    let config = config
        .with_credentials("guest", "guest")
        .with_virtual_host("no-such-vhost-xyz");
    let err = Connection::open(&config).unwrap_err();
    assert!(matches!(err, Error::VhostNotAllowed { .. }), "{err:?}");
    assert!(err.to_string().contains("no-such-vhost-xyz"), "{err}");
}

#[test]
fn unreachable_broker_names_the_address_and_attempts() {
    // A port nothing listens on: refused at once.
    let config = AmqpConfig::new("127.0.0.1")
        .with_port(1)
        .with_credentials("u", "hunter2")
        .with_connection_attempts(2)
        .with_retry_delay(Duration::from_millis(50));
    let err = Connection::open(&config).unwrap_err();
    assert!(
        matches!(err, Error::Unreachable { attempts: 2, .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains("127.0.0.1:1"), "{text}");
    assert!(text.contains("after 2 attempts"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}

#[test]
fn unknown_host_is_unreachable() {
    let config = AmqpConfig::new("no-such-host.invalid").with_connection_attempts(1);
    let err = Connection::open(&config).unwrap_err();
    assert!(matches!(err, Error::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().contains("no-such-host.invalid"), "{err}");
}

#[test]
fn tls_to_a_plain_port_is_a_tls_error() {
    let Some(config) = pubsub_testkit::broker() else {
        return;
    };
    // amqps:// against the plain AMQP port: the TLS handshake cannot succeed.
    let config = config.with_tls(Some(pubsub_amqp::TlsConfig::default()));
    let started = Instant::now();
    let err = Connection::open(&config.with_connection_attempts(3)).unwrap_err();
    assert!(matches!(err, Error::Tls { .. }), "{err:?}");
    assert!(err.to_string().starts_with("TLS with RabbitMQ at"), "{err}");
    // Not retried: another attempt meets the same broker.
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn a_host_list_falls_over_to_the_host_that_answers() {
    let Some(config) = pubsub_testkit::broker() else {
        return;
    };
    // Port 1 refuses at once: the broker is the second host, then one of three, shuffled.
    let listed = config
        .clone()
        .with_hosts(&[("127.0.0.1", 1), (config.host(), config.port())]);
    let started = Instant::now();
    Connection::open(&listed).unwrap().close().unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    for _ in 0..5 {
        let shuffled = config
            .clone()
            .with_hosts(&[
                ("127.0.0.1", 1),
                (config.host(), config.port()),
                ("127.0.0.1", 2),
            ])
            .with_host_order(pubsub_amqp::HostOrder::Shuffled);
        Connection::open(&shuffled).unwrap().close().unwrap();
    }
    // None answers: the error names every host.
    let none = config
        .with_hosts(&[("127.0.0.1", 1), ("127.0.0.1", 2)])
        .with_connection_attempts(1);
    let err = Connection::open(&none).unwrap_err();
    assert!(matches!(err, Error::Unreachable { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("127.0.0.1:1,127.0.0.1:2"), "{text}");
}
