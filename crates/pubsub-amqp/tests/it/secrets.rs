//! Passwords never appear in logs (at trace level, amiquip's included, with no
//! `RedactingLogger` installed: the frame guard keeps the password from amiquip) nor in errors.

use std::sync::{Arc, Mutex, OnceLock};

use log::{Log, Metadata, Record};
use pubsub_amqp::Connection;

#[derive(Default)]
struct Capture(Mutex<Vec<String>>);

impl Log for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &Record<'_>) {
        if let Ok(mut lines) = self.0.lock() {
            lines.push(format!(
                "{} {} {}",
                record.level(),
                record.target(),
                record.args()
            ));
        }
    }
    fn flush(&self) {}
}

struct Shared(Arc<Capture>);

impl Log for Shared {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        self.0.enabled(m)
    }
    fn log(&self, r: &Record<'_>) {
        self.0.log(r)
    }
    fn flush(&self) {}
}

fn capture() -> Arc<Capture> {
    static CAPTURE: OnceLock<Arc<Capture>> = OnceLock::new();
    CAPTURE
        .get_or_init(|| {
            let capture = Arc::new(Capture::default());
            let _ = log::set_boxed_logger(Box::new(Shared(capture.clone())));
            log::set_max_level(log::LevelFilter::Trace);
            capture
        })
        .clone()
}

/// A broker user that exists for the duration of the test.
struct User {
    name: String,
    password: String,
}

impl User {
    fn create() -> Option<User> {
        let suffix = pubsub_testkit::unique("u").replace('.', "-");
        let user = User {
            name: format!("pubsub-{suffix}"),
            password: format!("pw-{suffix}-Secret"),
        };
        let created = pubsub_testkit::rabbitmqctl(&["-q", "add_user", &user.name, &user.password])
            .and_then(|_| {
                pubsub_testkit::rabbitmqctl(&[
                    "-q",
                    "set_permissions",
                    "-p",
                    "/",
                    &user.name,
                    ".*",
                    ".*",
                    ".*",
                ])
            });
        match created {
            Ok(_) => Some(user),
            Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => panic!("{e}"),
            Err(e) => {
                eprintln!("skipping: cannot create a broker user: {e}");
                None
            }
        }
    }
}

impl Drop for User {
    fn drop(&mut self) {
        let _ = pubsub_testkit::rabbitmqctl(&["-q", "delete_user", &self.name]);
    }
}

#[test]
fn passwords_never_reach_logs_or_errors() {
    let Some(base) = pubsub_testkit::broker() else {
        return;
    };
    let Some(user) = User::create() else { return };
    let capture = capture();
    let wrong = format!("{}-wrong", user.password);
    let config = base
        .with_credentials(&user.name, &user.password)
        .with_connection_name("secrets-test");
    let mut texts = vec![
        format!("{config}"),
        format!("{config:?}"),
        config.redacted_url(),
    ];

    let mut connection = Connection::open(&config).unwrap();
    let channel = connection.open_channel().unwrap();
    texts.push(format!("{connection:?}"));
    // The broker kills the connection, as an operator would.
    pubsub_testkit::close_connections_named("secrets-test").unwrap();
    let _ = channel
        .set_prefetch(1)
        .map_err(|e| texts.push(format!("{e} {e:?}")));
    drop(channel);
    let _ = connection
        .close()
        .map_err(|e| texts.push(format!("{e} {e:?}")));

    let err = Connection::open(&config.clone().with_credentials(&user.name, &wrong)).unwrap_err();
    texts.push(format!("{err} {err:?}"));
    let err = Connection::open(&config.clone().with_virtual_host("no-such-vhost")).unwrap_err();
    texts.push(format!("{err} {err:?}"));
    let url = format!("amqp://{}:{}@127.0.0.1:1/%2f", user.name, user.password);
    let err = pubsub_amqp::AmqpConfig::from_url(&url)
        .and_then(|c| Connection::open(&c.with_connection_attempts(1)))
        .unwrap_err();
    texts.push(format!("{err} {err:?}"));

    let logs = capture.0.lock().unwrap().clone();
    assert!(
        logs.iter().any(|l| l.contains("handshake")),
        "amiquip's handshake was not logged at trace level: the test would prove nothing"
    );
    assert!(
        logs.iter()
            .any(|l| l.contains("password withheld from amiquip")),
        "amiquip's SASL response was not logged: the test would prove nothing"
    );
    for text in logs.iter().chain(&texts) {
        assert!(!text.contains(&user.password), "password leaked: {text}");
    }
}
