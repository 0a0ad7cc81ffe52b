//! [`AmqpConfig`]: where the broker is and how to talk to it.

use std::fmt;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::hosts::HostOrder;

mod env;
mod tls;
mod url;

pub use self::env::{
    exchange_from_env, url_from_env, AMQP_URL_ENV, DEFAULT_EXCHANGE, RABBITMQ_EXCHANGE_ENV,
    RABBITMQ_URL_ENV,
};
pub use self::tls::TlsConfig;

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
    channel_max: Option<u16>,
    frame_max: Option<u32>,
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
            channel_max: None,
            frame_max: None,
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

    /// Checks the settings that code can get wrong.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for an empty host, zero connection attempts, a heartbeat over
    /// 65535 s, a zero connection timeout or a frame max under 4096 bytes.
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
        if self.frame_max.is_some_and(|f| f < 4096) {
            return invalid("frame_max", "the frame max must be at least 4096 bytes");
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

    /// Sets the highest channel number the client asks for (the broker's limit otherwise).
    #[must_use]
    pub fn with_channel_max(mut self, channel_max: Option<u16>) -> Self {
        self.channel_max = channel_max;
        self
    }

    /// Sets the largest frame the client asks for, in bytes (at least 4096; the broker's
    /// limit otherwise).
    #[must_use]
    pub fn with_frame_max(mut self, frame_max: Option<u32>) -> Self {
        self.frame_max = frame_max;
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

    /// The highest channel number asked for, if set.
    pub fn channel_max(&self) -> Option<u16> {
        self.channel_max
    }

    /// The largest frame asked for, if set.
    pub fn frame_max(&self) -> Option<u32> {
        self.frame_max
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

    /// The URL of this configuration, password included (percent-encoded): for handing the
    /// broker to another client, such as a Python service under test. Never log it; the
    /// `Display` form ([`redacted_url`](Self::redacted_url)) is the one to show.
    pub fn url_with_password(&self) -> String {
        self.url(&percent_encode(&self.password))
    }

    /// The URL with `password` in the password's place (already encoded).
    fn url(&self, password: &str) -> String {
        let scheme = if self.tls.is_some() { "amqps" } else { "amqp" };
        format!(
            "{scheme}://{}:{password}@{}/{}",
            percent_encode(&self.username),
            self.address(),
            percent_encode(&self.virtual_host)
        )
    }
}

/// The URL form, with the password as `***`.
impl fmt::Display for AmqpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url("***"))
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
            .field("channel_max", &self.channel_max)
            .field("frame_max", &self.frame_max)
            .field("tls", &self.tls)
            .field("more_hosts", &self.more_hosts)
            .field("host_order", &self.host_order)
            .finish()
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
    fn password_is_redacted_everywhere() {
        let c = AmqpConfig::new("h").with_credentials("u", "hunter2");
        assert_eq!(c.url_with_password(), "amqp://u:hunter2@h:5672/%2F");
        let c2 = AmqpConfig::new("h").with_credentials("u", "p@ss/");
        assert_eq!(c2.url_with_password(), "amqp://u:p%40ss%2F@h:5672/%2F");
        assert!(!format!("{c}").contains("hunter2"));
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!c.redacted_url().contains("hunter2"));
        assert_eq!(c.password(), "hunter2");
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
