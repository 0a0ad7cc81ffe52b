//! `amqps://` end to end: a TLS listener in front of the broker (certificates made at test
//! time), the server verified against the test's CA, and the frame guard above TLS.

use std::net::{SocketAddr, ToSocketAddrs};

use pubsub_amqp::{AmqpConfig, Connection, Error, Properties, QueueConfig, TlsConfig};
use pubsub_testkit::tls::{TestCa, TlsFront};

/// The broker under test, the TLS front before it, and its CA.
pub(crate) fn front() -> Option<(AmqpConfig, TlsFront, TestCa)> {
    let broker = pubsub_testkit::broker()?;
    let upstream: SocketAddr = (broker.host(), broker.port())
        .to_socket_addrs()
        .unwrap()
        .next()
        .unwrap();
    let ca = TestCa::new("pubsub-test-ca").expect("openssl makes the test CA");
    let front = TlsFront::start(&ca, upstream).unwrap();
    let url = format!(
        "amqps://{}:{}@localhost:{}/%2f",
        broker.username(),
        broker.password(),
        front.port()
    );
    let config = AmqpConfig::from_url(&url)
        .unwrap()
        .with_connection_attempts(1)
        .with_tls(Some(
            TlsConfig::default().root_certificate_pem(ca.cert_pem().to_vec()),
        ));
    Some((config, front, ca))
}

#[test]
fn amqps_connects_with_the_server_verified_and_moves_messages() {
    let Some((config, _front, _ca)) = front() else {
        return;
    };
    let mut connection = Connection::open(&config).unwrap();
    let channel = connection.open_channel().unwrap();
    let queue = pubsub_testkit::unique("tls");
    channel
        .declare_queue(&queue, &QueueConfig::default())
        .unwrap();
    let body = vec![b'x'; 200_000]; // several TLS records and AMQP frames
    channel
        .publish("", &queue, &body, &Properties::default(), false)
        .unwrap();
    let (delivery, _) = loop {
        if let Some(got) = channel.get(&queue).unwrap() {
            break got;
        }
    };
    assert_eq!(delivery.body(), &body[..]);
    assert_eq!(delivery.alteration(), None);
    channel.ack(delivery).unwrap();
    channel.delete_queue(&queue).unwrap();
    connection.close().unwrap();
}

#[test]
fn a_certificate_from_another_ca_is_a_tls_error() {
    let Some((config, _front, _ca)) = front() else {
        return;
    };
    let other = TestCa::new("another-ca").unwrap();
    let config = config.with_tls(Some(
        TlsConfig::default().root_certificate_pem(other.cert_pem().to_vec()),
    ));
    let err = Connection::open(&config).unwrap_err();
    assert!(matches!(err, Error::Tls { .. }), "{err:?}");
    assert!(err.is_permanent());
}

#[test]
fn a_certificate_for_another_host_is_a_tls_error() {
    let Some((config, _front, ca)) = front() else {
        return;
    };
    let config = config.with_tls(Some(
        TlsConfig::default()
            .root_certificate_pem(ca.cert_pem().to_vec())
            .domain("broker.example.com"),
    ));
    let err = Connection::open(&config).unwrap_err();
    assert!(matches!(err, Error::Tls { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.to_lowercase().contains("certificate"), "{text}");
}
