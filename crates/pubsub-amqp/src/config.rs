//! [`AmqpConfig`]: where the broker is and how to talk to it.

use std::fmt;
use std::time::Duration;

use url::Url;

use crate::error::{Error, Result};
use crate::hosts::{self, HostOrder};

/// Environment variable [`AmqpConfig::from_env`] reads.
pub const AMQP_URL_ENV: &str = "AMQP_URL";

/// How to reach and talk to a RabbitMQ broker.
///
/// Built from code (a builder over sensible defaults), from an AMQP URL, or from the
/// `AMQP_URL` environment variable. The password never appears in `Debug`, `Display`, logs or
/// errors: it is shown as `***`.
///
/// | setting | default | URL query parameter |
/// | --- | --- | --- |
/// | host | `localhost` | (authority; several: `node1:5673,node2:5674,node3`) |
/// | port | 5672, 5671 for `amqps` | (authority) |
/// | username / password | `guest` / `guest` | (authority) |
/// | virtual host | `/` | (path, percent-encoded: `/%2f`) |
/// | connection attempts | 3 | `connection_attempts` |
/// | retry delay | 2 s | `retry_delay` (seconds) |
/// | heartbeat | 60 s (0 disables) | `heartbeat` (seconds) |
/// | blocked-connection timeout | 60 s | `blocked_connection_timeout` (seconds) |
/// | connection timeout | 10 s | `connection_timeout` (milliseconds, as RabbitMQ's URI spec) |
/// | connection name | none | `connection_name` |
/// | TLS | off; on for `amqps://` | |
///
/// ```
/// use std::time::Duration;
///
/// use pubsub_amqp::AmqpConfig;
///
/// let config = AmqpConfig::from_url("amqp://app:s3cret@rabbit:5672/%2f?heartbeat=10")?;
/// assert_eq!(config.host(), "rabbit");
/// assert_eq!(config.heartbeat(), Duration::from_secs(10));
/// assert_eq!(config.to_string(), "amqp://app:***@rabbit:5672/%2F");
///
/// let config = AmqpConfig::new("localhost")
///     .with_credentials("app", "s3cret")
///     .with_virtual_host("orders");;
/// assert!(!format!("{config:?}").contains("s3cret"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct AmqpConfig {
    host: String,
    port: u16,
    username: String,
    password: String,
    virtual_host: String,
    connection_attempts: u32,
    retry_delay: Duration,
    heartbeat: Duration,
    blocked_connection_timeout: Duration,
    connection_timeout: Duration,
    connection_name: Option<String>,
    tls: Option<TlsConfig>,
    /// The hosts after the first (`host`, `port`), tried when it does not answer.
    more_hosts: Vec<(String, u16)>,
    host_order: HostOrder,
}

impl Default for AmqpConfig {
    /// `amqp://guest:guest@localhost:5672/%2f`, RabbitMQ's out-of-the-box broker.
    fn default() -> Self {
        AmqpConfig {
            host: "localhost".to_owned(),
            port: 5672,
            username: "guest".to_owned(),
            password: "guest".to_owned(),
            virtual_host: "/".to_owned(),
            connection_attempts: 3,
            retry_delay: Duration::from_secs(2),
            heartbeat: Duration::from_secs(60),
            blocked_connection_timeout: Duration::from_secs(60),
            connection_timeout: Duration::from_secs(10),
            connection_name: None,
            tls: None,
            more_hosts: Vec::new(),
            host_order: HostOrder::InOrder,
        }
    }
}

impl AmqpConfig {
    /// The default configuration for a broker on `host`.
    pub fn new(host: &str) -> Self {
        AmqpConfig {
            host: host.to_owned(),
            ..Self::default()
        }
    }

    /// Parses an AMQP URL: `amqp[s]://user:pass@host:port/vhost?heartbeat=10&...`.
    ///
    /// The user, password and vhost are percent-decoded (`%2f` is the `/` vhost). A missing
    /// path, or a path of just `/`, means the `/` vhost. Query parameters are those of the
    /// table on [`AmqpConfig`]; an unknown one is an error, so a typo is not silently ignored.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the part of the URL that is wrong. The message never
    /// contains the password.
    pub fn from_url(url: &str) -> Result<Self> {
        let (url, more_hosts) = hosts::split_url(url)?;
        let parsed = Url::parse(&url).map_err(|e| Error::InvalidConfig {
            field: "url",
            // The text is not echoed: where it does not parse, the password cannot be found
            // in it to be redacted.
            message: format!(
                "cannot parse the AMQP URL ({e}); expected amqp://user:password@host:port/vhost"
            ),
        })?;
        let mut config = AmqpConfig::default();
        match parsed.scheme() {
            "amqp" => {}
            "amqps" => {
                config.port = 5671;
                config.tls = Some(TlsConfig::default());
            }
            other => {
                return Err(Error::InvalidConfig {
                    field: "url",
                    message: format!("unsupported URL scheme {other:?}: expected amqp or amqps"),
                })
            }
        }
        if let Some(host) = parsed.host_str().filter(|h| !h.is_empty()) {
            config.host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
        }
        if let Some(port) = parsed.port() {
            config.port = port;
        }
        if !parsed.username().is_empty() {
            config.username = percent_decode(parsed.username(), "username")?;
        }
        if let Some(password) = parsed.password() {
            config.password = percent_decode(password, "password")?;
        }
        let path = parsed.path();
        let vhost = path.strip_prefix('/').unwrap_or(path);
        if vhost.contains('/') {
            return Err(Error::InvalidConfig {
                field: "virtual_host",
                message: format!(
                    "the URL path {path:?} has more than one segment; encode a '/' in the vhost as %2f"
                ),
            });
        }
        if !vhost.is_empty() {
            config.virtual_host = percent_decode(vhost, "virtual_host")?;
        }
        for (key, value) in parsed.query_pairs() {
            let seconds = |field: &'static str| -> Result<Duration> {
                value
                    .parse::<u64>()
                    .map(Duration::from_secs)
                    .map_err(|_| Error::InvalidConfig {
                        field,
                        message: format!("{key}={value:?} is not a whole number of seconds"),
                    })
            };
            match &*key {
                "heartbeat" => config = config.with_heartbeat(seconds("heartbeat")?),
                "retry_delay" => config.retry_delay = seconds("retry_delay")?,
                "blocked_connection_timeout" => {
                    config.blocked_connection_timeout = seconds("blocked_connection_timeout")?
                }
                "connection_timeout" => {
                    let ms = value.parse::<u64>().map_err(|_| Error::InvalidConfig {
                        field: "connection_timeout",
                        message: format!("{key}={value:?} is not a whole number of milliseconds"),
                    })?;
                    config.connection_timeout = Duration::from_millis(ms);
                }
                "connection_attempts" => {
                    config.connection_attempts =
                        value
                            .parse::<u32>()
                            .ok()
                            .filter(|n| *n > 0)
                            .ok_or_else(|| Error::InvalidConfig {
                                field: "connection_attempts",
                                message: format!("{key}={value:?} is not a positive number"),
                            })?
                }
                "connection_name" => config.connection_name = Some(value.into_owned()),
                other => {
                    return Err(Error::InvalidConfig {
                        field: "url",
                        message: format!(
                            "unknown URL query parameter {other:?}; known: heartbeat, connection_timeout, \
                             connection_attempts, retry_delay, blocked_connection_timeout, connection_name"
                        ),
                    })
                }
            }
        }
        let default_port = if config.tls.is_some() { 5671 } else { 5672 };
        config.more_hosts = more_hosts
            .into_iter()
            .map(|(host, port)| (host, port.unwrap_or(default_port)))
            .collect();
        config.validate()?;
        Ok(config)
    }

    /// Reads the `AMQP_URL` environment variable; the default configuration (a broker on
    /// localhost) when it is not set.
    ///
    /// # Errors
    ///
    /// As [`from_url`](Self::from_url), when the variable holds an invalid URL or is not
    /// Unicode.
    pub fn from_env() -> Result<Self> {
        match std::env::var(AMQP_URL_ENV) {
            Ok(url) => Self::from_url(&url),
            Err(std::env::VarError::NotPresent) => Ok(Self::default()),
            Err(std::env::VarError::NotUnicode(_)) => Err(Error::InvalidConfig {
                field: "url",
                message: format!("{AMQP_URL_ENV} is not valid Unicode"),
            }),
        }
    }

    /// Checks the settings that code can get wrong.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for an empty host, zero connection attempts, a heartbeat over
    /// 65535 s or a zero connection timeout.
    pub fn validate(&self) -> Result<()> {
        let invalid = |field, message: &str| {
            Err(Error::InvalidConfig {
                field,
                message: message.to_owned(),
            })
        };
        if self.host.is_empty() || self.more_hosts.iter().any(|(h, _)| h.is_empty()) {
            return invalid("host", "the host must not be empty");
        }
        if self.connection_attempts == 0 {
            return invalid(
                "connection_attempts",
                "at least one connection attempt is needed",
            );
        }
        if self.heartbeat.as_secs() > u64::from(u16::MAX) {
            return invalid("heartbeat", "the heartbeat must be at most 65535 seconds");
        }
        if self.connection_timeout.is_zero() {
            return invalid(
                "connection_timeout",
                "the connection timeout must not be zero",
            );
        }
        Ok(())
    }

    /// Sets the port.
    #[must_use]
    pub fn with_port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Sets several hosts (the nodes of a cluster), each with its port: a connection tries them
    /// in order (or shuffled, see [`with_host_order`](Self::with_host_order)) on every
    /// connect and reconnect. An empty list leaves the hosts as they are.
    #[must_use]
    pub fn with_hosts(mut self, hosts: &[(&str, u16)]) -> Self {
        if let Some(((host, port), more)) = hosts.split_first() {
            self.host = (*host).to_owned();
            self.port = *port;
            self.more_hosts = more.iter().map(|(h, p)| ((*h).to_owned(), *p)).collect();
        }
        self
    }

    /// Sets the order in which the hosts are tried.
    #[must_use]
    pub fn with_host_order(mut self, order: HostOrder) -> Self {
        self.host_order = order;
        self
    }

    /// Sets the username and password.
    #[must_use]
    pub fn with_credentials(mut self, username: &str, password: &str) -> Self {
        self.username = username.to_owned();
        self.password = password.to_owned();
        self
    }

    /// Sets the virtual host (`/` by default).
    #[must_use]
    pub fn with_virtual_host(mut self, virtual_host: &str) -> Self {
        self.virtual_host = virtual_host.to_owned();
        self
    }

    /// Sets how many times [`Connection::open`](crate::Connection::open) tries to connect
    /// before it gives up (at least 1).
    #[must_use]
    pub fn with_connection_attempts(mut self, attempts: u32) -> Self {
        self.connection_attempts = attempts;
        self
    }

    /// Sets the pause between two connection attempts.
    #[must_use]
    pub fn with_retry_delay(mut self, delay: Duration) -> Self {
        self.retry_delay = delay;
        self
    }

    /// Sets the heartbeat interval (whole seconds; zero disables heartbeats). A peer that
    /// stays silent for about two intervals is considered dead.
    #[must_use]
    pub fn with_heartbeat(mut self, heartbeat: Duration) -> Self {
        self.heartbeat = Duration::from_secs(heartbeat.as_secs());
        self
    }

    /// Sets how long a publish waits while the broker blocks the connection (a resource
    /// alarm) before it fails.
    #[must_use]
    pub fn with_blocked_connection_timeout(mut self, timeout: Duration) -> Self {
        self.blocked_connection_timeout = timeout;
        self
    }

    /// Sets the timeout of one connection attempt: the TCP connect, and any silence of the
    /// broker during the TLS and AMQP handshakes. A handshake that goes on without completing
    /// is cut 5 s after this timeout.
    #[must_use]
    pub fn with_connection_timeout(mut self, timeout: Duration) -> Self {
        self.connection_timeout = timeout;
        self
    }

    /// Sets a name shown for the connection in the management UI and `rabbitmqctl`
    /// (the `information` client property).
    #[must_use]
    pub fn with_connection_name(mut self, name: &str) -> Self {
        self.connection_name = Some(name.to_owned());
        self
    }

    /// Turns TLS on with the given settings (or off with `None`).
    #[must_use]
    pub fn with_tls(mut self, tls: Option<TlsConfig>) -> Self {
        self.tls = tls;
        self
    }

    /// The broker's host name or address.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The broker's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every host with its port, the first ([`host`](Self::host), [`port`](Self::port))
    /// included.
    pub fn hosts(&self) -> Vec<(&str, u16)> {
        std::iter::once((self.host.as_str(), self.port))
            .chain(self.more_hosts.iter().map(|(h, p)| (h.as_str(), *p)))
            .collect()
    }

    /// The order in which the hosts are tried.
    pub fn host_order(&self) -> HostOrder {
        self.host_order
    }

    /// The username.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// The password. Handle with care: never log it.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The virtual host.
    pub fn virtual_host(&self) -> &str {
        &self.virtual_host
    }

    /// How many connection attempts [`Connection::open`](crate::Connection::open) makes.
    pub fn connection_attempts(&self) -> u32 {
        self.connection_attempts
    }

    /// The pause between connection attempts.
    pub fn retry_delay(&self) -> Duration {
        self.retry_delay
    }

    /// The heartbeat interval (zero: heartbeats off).
    pub fn heartbeat(&self) -> Duration {
        self.heartbeat
    }

    /// How long a publish waits on a blocked connection.
    pub fn blocked_connection_timeout(&self) -> Duration {
        self.blocked_connection_timeout
    }

    /// The timeout of one connection attempt.
    pub fn connection_timeout(&self) -> Duration {
        self.connection_timeout
    }

    /// The connection's name, if set.
    pub fn connection_name(&self) -> Option<&str> {
        self.connection_name.as_deref()
    }

    /// The TLS settings, if TLS is on.
    pub fn tls(&self) -> Option<&TlsConfig> {
        self.tls.as_ref()
    }

    /// `host:port` (`host1:port1,host2:port2` for several), for messages.
    pub fn address(&self) -> String {
        self.hosts()
            .into_iter()
            .map(|(host, port)| address_of(host, port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The URL of this configuration with the password replaced by `***`.
    pub fn redacted_url(&self) -> String {
        self.to_string()
    }
}

/// The URL form, with the password as `***`.
impl fmt::Display for AmqpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls.is_some() { "amqps" } else { "amqp" };
        write!(
            f,
            "{scheme}://{}:***@{}/{}",
            percent_encode(&self.username),
            self.address(),
            percent_encode(&self.virtual_host)
        )
    }
}

impl fmt::Debug for AmqpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmqpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &"***")
            .field("virtual_host", &self.virtual_host)
            .field("connection_attempts", &self.connection_attempts)
            .field("retry_delay", &self.retry_delay)
            .field("heartbeat", &self.heartbeat)
            .field(
                "blocked_connection_timeout",
                &self.blocked_connection_timeout,
            )
            .field("connection_timeout", &self.connection_timeout)
            .field("connection_name", &self.connection_name)
            .field("tls", &self.tls)
            .field("more_hosts", &self.more_hosts)
            .field("host_order", &self.host_order)
            .finish()
    }
}

/// TLS settings for `amqps://` connections.
///
/// By default the broker's certificate is checked against the system's roots and the host
/// name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    domain: Option<String>,
    root_certificate_pem: Option<Vec<u8>>,
    accept_invalid_certificates: bool,
}

impl TlsConfig {
    /// Checks the certificate against this name instead of the configured host.
    #[must_use]
    pub fn domain(mut self, domain: &str) -> Self {
        self.domain = Some(domain.to_owned());
        self
    }

    /// Trusts this CA certificate (PEM) in addition to the system's roots.
    #[must_use]
    pub fn root_certificate_pem(mut self, pem: Vec<u8>) -> Self {
        self.root_certificate_pem = Some(pem);
        self
    }

    /// Accepts any certificate. For tests against a self-signed broker only: it removes the
    /// protection TLS gives against a man in the middle.
    #[must_use]
    pub fn danger_accept_invalid_certificates(mut self, accept: bool) -> Self {
        self.accept_invalid_certificates = accept;
        self
    }

    pub(crate) fn server_name<'a>(&'a self, host: &'a str) -> &'a str {
        self.domain.as_deref().unwrap_or(host)
    }

    pub(crate) fn connector(&self) -> std::result::Result<native_tls::TlsConnector, String> {
        let mut builder = native_tls::TlsConnector::builder();
        if let Some(pem) = &self.root_certificate_pem {
            let cert = native_tls::Certificate::from_pem(pem)
                .map_err(|e| format!("invalid root certificate: {e}"))?;
            builder.add_root_certificate(cert);
        }
        builder.danger_accept_invalid_certs(self.accept_invalid_certificates);
        builder.build().map_err(|e| e.to_string())
    }
}

/// `host:port`, with an IPv6 address in brackets.
pub(crate) fn address_of(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn percent_decode(text: &str, field: &'static str) -> Result<String> {
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .map(|decoded| decoded.into_owned())
        .map_err(|_| Error::InvalidConfig {
            field,
            message: format!("the URL's {field} is not valid UTF-8 once percent-decoded"),
        })
}

fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_full_urls() {
        let c = AmqpConfig::from_url(
            "amqp://app:p%40ss@rabbit.local:5673/orders?heartbeat=10&connection_timeout=2500&connection_attempts=5&retry_delay=1&blocked_connection_timeout=30&connection_name=billing",
        )
        .unwrap();
        assert_eq!(c.host(), "rabbit.local");
        assert_eq!(c.port(), 5673);
        assert_eq!(c.username(), "app");
        assert_eq!(c.password(), "p@ss");
        assert_eq!(c.virtual_host(), "orders");
        assert_eq!(c.heartbeat(), Duration::from_secs(10));
        assert_eq!(c.connection_timeout(), Duration::from_millis(2500));
        assert_eq!(c.connection_attempts(), 5);
        assert_eq!(c.retry_delay(), Duration::from_secs(1));
        assert_eq!(c.blocked_connection_timeout(), Duration::from_secs(30));
        assert_eq!(c.connection_name(), Some("billing"));
        assert!(c.tls().is_none());
    }

    #[test]
    fn vhost_forms() {
        let vhost = |url: &str| AmqpConfig::from_url(url).unwrap().virtual_host().to_owned();
        assert_eq!(vhost("amqp://localhost"), "/");
        assert_eq!(vhost("amqp://localhost/"), "/");
        assert_eq!(vhost("amqp://localhost/%2f"), "/");
        assert_eq!(vhost("amqp://localhost/%2F"), "/");
        assert_eq!(vhost("amqp://localhost/my%2Fvhost"), "my/vhost");
        assert_eq!(vhost("amqp://localhost/staging"), "staging");
        assert!(AmqpConfig::from_url("amqp://localhost/a/b").is_err());
    }

    #[test]
    fn defaults_and_amqps() {
        let c = AmqpConfig::from_url("amqp://").unwrap();
        assert_eq!(c, AmqpConfig::default());
        let c = AmqpConfig::from_url("amqps://secure.example").unwrap();
        assert_eq!(c.port(), 5671);
        assert!(c.tls().is_some());
        assert_eq!(c.to_string(), "amqps://guest:***@secure.example:5671/%2F");
    }

    #[test]
    fn bad_urls_are_errors_without_the_password() {
        for url in [
            "http://u:hunter2@host/",
            "amqp://u:hunter2@host:notaport/",
            "amqp://u:hunter2@host/?heartbeat=soon",
            "amqp://u:hunter2@host/?hearbeat=10",
            "amqp://u:hunter2@host/?connection_attempts=0",
            "amqp://u:hunter2@host/?heartbeat=70000",
            "amqp://u:hunter2@ho st/",
            "not a url hunter2",
        ] {
            let err = AmqpConfig::from_url(url).expect_err(url).to_string();
            assert!(!err.contains("hunter2"), "{url}: {err}");
        }
    }

    #[test]
    fn password_is_redacted_everywhere() {
        let c = AmqpConfig::new("h").with_credentials("u", "hunter2");
        assert!(!format!("{c}").contains("hunter2"));
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!c.redacted_url().contains("hunter2"));
        assert_eq!(c.password(), "hunter2");
    }

    #[test]
    fn display_round_trips_through_from_url() {
        let c = AmqpConfig::new("h")
            .with_credentials("a b", "pw")
            .with_virtual_host("x/y");
        let shown = c.to_string();
        let back = AmqpConfig::from_url(&shown.replace("***", "pw")).unwrap();
        assert_eq!(back.username(), "a b");
        assert_eq!(back.virtual_host(), "x/y");
    }

    #[test]
    fn several_hosts_from_the_url_and_from_code() {
        let c = AmqpConfig::from_url("amqp://u:pw@n1:5673,n2:5674,n3/%2f?heartbeat=5").unwrap();
        assert_eq!(c.hosts(), [("n1", 5673), ("n2", 5674), ("n3", 5672)]);
        assert_eq!((c.host(), c.port()), ("n1", 5673));
        assert_eq!(c.heartbeat(), Duration::from_secs(5));
        assert_eq!(c.to_string(), "amqp://u:***@n1:5673,n2:5674,n3:5672/%2F");
        let back = AmqpConfig::from_url(&c.to_string().replace("***", "pw")).unwrap();
        assert_eq!(back.hosts(), c.hosts());
        let tls = AmqpConfig::from_url("amqps://u:pw@a,b:1/").unwrap();
        assert_eq!(tls.hosts(), [("a", 5671), ("b", 1)]);

        let c = AmqpConfig::default()
            .with_hosts(&[("10.0.0.1", 5672), ("::1", 5673)])
            .with_host_order(HostOrder::Shuffled);
        assert_eq!(c.address(), "10.0.0.1:5672,[::1]:5673");
        assert_eq!(c.host_order(), HostOrder::Shuffled);
        assert_eq!(AmqpConfig::new("h").with_hosts(&[]).hosts(), [("h", 5672)]);
        assert!(AmqpConfig::from_url("amqp://u:secret@a,,b/").is_err());
    }

    #[test]
    fn validate_refuses_bad_settings() {
        assert!(AmqpConfig::new("").validate().is_err());
        assert!(AmqpConfig::default()
            .with_connection_attempts(0)
            .validate()
            .is_err());
        assert!(AmqpConfig::default()
            .with_connection_timeout(Duration::ZERO)
            .validate()
            .is_err());
        assert!(AmqpConfig::default().validate().is_ok());
    }
}
