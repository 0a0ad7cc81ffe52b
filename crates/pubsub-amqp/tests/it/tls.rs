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

/// The front's `amqps://` URL with `query`, as pika and RabbitMQ's URI spec write it.
fn url_with(config: &AmqpConfig, port: u16, query: &str) -> String {
    format!(
        "amqps://{}:{}@localhost:{port}/%2f?connection_attempts=1&{query}",
        config.username(),
        config.password()
    )
}

/// Writes `bytes` to a new temporary file and returns its path.
fn temp_file(name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(pubsub_testkit::unique(name));
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn tls_url_parameters_are_honoured() {
    let Some((config, front, ca)) = front() else {
        return;
    };
    let ca_file = temp_file("ca.pem", ca.cert_pem());
    let ca_param = format!("cacertfile={}", ca_file.display());
    let open = |query: &str| {
        let config = AmqpConfig::from_url(&url_with(&config, front.port(), query)).unwrap();
        Connection::open(&config).map(|c| c.close())
    };
    // The CA from `cacertfile` verifies the server.
    assert!(open(&ca_param).is_ok());
    // Without it the server is not trusted, unless `verify=verify_none`.
    assert!(matches!(open("heartbeat=10"), Err(Error::Tls { .. })));
    assert!(open("verify=verify_none").is_ok());
    // `server_name_indication` is the name checked.
    let other_name = format!("{ca_param}&server_name_indication=broker.example.com");
    assert!(matches!(open(&other_name), Err(Error::Tls { .. })));
    // A client certificate and PKCS#8 key from `certfile` and `keyfile` are loaded and
    // presented when asked for (this front does not ask).
    let (cert, key) = ca.server_identity().unwrap();
    let cert_file = temp_file("client.pem", &cert);
    let key_file = temp_file("client.key", &key);
    let with_identity = format!(
        "{ca_param}&certfile={}&keyfile={}",
        cert_file.display(),
        key_file.display()
    );
    assert!(open(&with_identity).is_ok());
    // A key native-tls cannot use is a clear configuration error.
    let bad_key = format!(
        "{ca_param}&certfile={}&keyfile={}",
        cert_file.display(),
        cert_file.display()
    );
    let err = AmqpConfig::from_url(&url_with(&config, front.port(), &bad_key)).unwrap_err();
    assert!(err.to_string().contains("PKCS#8"), "{err}");
    for path in [ca_file, cert_file, key_file] {
        let _ = std::fs::remove_file(path);
    }
}
