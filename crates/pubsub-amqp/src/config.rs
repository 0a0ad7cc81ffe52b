//! [`AmqpConfig`]: where the broker is and how to talk to it.

use std::fmt;
use std::time::Duration;

use url::Url;

use crate::error::{Error, Result};
use crate::hosts::{self, HostOrder};

/// Environment variable [`AmqpConfig::from_env`] reads first.
pub const AMQP_URL_ENV: &str = "AMQP_URL";

/// Environment variable [`AmqpConfig::from_env`] reads when [`AMQP_URL_ENV`] is not set: the
/// name the seeds' Python services use (`Settings.rabbitmq_url`).
pub const RABBITMQ_URL_ENV: &str = "RABBITMQ_URL";

/// Environment variable [`exchange_from_env`] reads (the seeds' `Settings.rabbitmq_exchange`).
pub const RABBITMQ_EXCHANGE_ENV: &str = "RABBITMQ_EXCHANGE";

/// The exchange [`exchange_from_env`] gives when [`RABBITMQ_EXCHANGE_ENV`] is not set, as in
/// the original design.
pub const DEFAULT_EXCHANGE: &str = "events";

/// The exchange name from `RABBITMQ_EXCHANGE`, or [`DEFAULT_EXCHANGE`] (`events`) when it is
/// unset or empty: every service of an estate must use the same exchange, so it comes from
/// configuration, as seed 002 asks.
///
/// # Errors
///
/// [`Error::InvalidConfig`] when the value is not Unicode or not a valid exchange name
/// (at most 255 bytes of letters, digits, `-`, `_`, `.` and `:`).
pub fn exchange_from_env() -> Result<String> {
    let value = match std::env::var(RABBITMQ_EXCHANGE_ENV) {
        Ok(value) => value,
        Err(std::env::VarError::NotPresent) => String::new(),
        Err(std::env::VarError::NotUnicode(_)) => {
            return Err(Error::InvalidConfig {
                field: "exchange",
                message: format!("{RABBITMQ_EXCHANGE_ENV} is not valid Unicode"),
            })
        }
    };
    exchange_name(&value)
}

/// The exchange named by a `RABBITMQ_EXCHANGE` value: the default when empty.
fn exchange_name(value: &str) -> Result<String> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(DEFAULT_EXCHANGE.to_owned());
    }
    let valid = value.len() <= 255
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    if !valid {
        return Err(Error::InvalidConfig {
            field: "exchange",
            message: format!(
                "{RABBITMQ_EXCHANGE_ENV}={:?} is not an exchange name (at most 255 letters, digits, '-', '_', '.', ':')",
                value.chars().take(64).collect::<String>()
            ),
        });
    }
    Ok(value.to_owned())
}

/// Which URL the environment gives, by precedence: `AMQP_URL` (this workspace's own
/// variable, so that a deployment that sets it keeps its behaviour), then `RABBITMQ_URL`;
/// empty values count as unset. The variable's name comes with it; both set to different
/// URLs is worth a warning (returned), since one is ignored.
fn pick_url(
    amqp_url: Option<String>,
    rabbitmq_url: Option<String>,
) -> (Option<(&'static str, String)>, Option<String>) {
    let amqp_url = amqp_url.filter(|u| !u.trim().is_empty());
    let rabbitmq_url = rabbitmq_url.filter(|u| !u.trim().is_empty());
    match (amqp_url, rabbitmq_url) {
        (Some(a), Some(r)) => {
            let warning = (a.trim() != r.trim()).then(|| {
                format!("{AMQP_URL_ENV} and {RABBITMQ_URL_ENV} are both set and differ; using {AMQP_URL_ENV}")
            });
            (Some((AMQP_URL_ENV, a)), warning)
        }
        (Some(a), None) => (Some((AMQP_URL_ENV, a)), None),
        (None, Some(r)) => (Some((RABBITMQ_URL_ENV, r)), None),
        (None, None) => (None, None),
    }
}

/// One environment variable: `None` when unset.
fn env_var(name: &'static str) -> Result<Option<String>> {
    match std::env::var(name) {
        Ok(value) => Ok(Some(value)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(Error::InvalidConfig {
            field: "url",
            message: format!("{name} is not valid Unicode"),
        }),
    }
}

/// The broker URL the environment gives: `AMQP_URL`, else `RABBITMQ_URL` (see
/// [`AmqpConfig::from_env`]), with the name of the variable it came from; `None` when
/// neither is set.
///
/// # Errors
///
/// [`Error::InvalidConfig`] when the variable is not Unicode.
pub fn url_from_env() -> Result<Option<(&'static str, String)>> {
    let (url, warning) = pick_url(env_var(AMQP_URL_ENV)?, env_var(RABBITMQ_URL_ENV)?);
    if let Some(warning) = warning {
        log::warn!("{warning}");
    }
    Ok(url)
}

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

    /// Parses an AMQP URL: `amqp[s]://user:pass@host:port/vhost?heartbeat=10&...`.
    ///
    /// The user, password and vhost are percent-decoded (`%2f` is the `/` vhost). A missing
    /// path, or a path of just `/`, means the `/` vhost. Query parameters are those of the
    /// table on [`AmqpConfig`]; an unknown one is logged as a warning and ignored (RabbitMQ's
    /// URI spec and pika define more than apply here). The TLS parameters read their files
    /// here; with an `amqp://` URL they are ignored with a warning.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the part of the URL that is wrong (a known parameter
    /// with an invalid value, a TLS file that cannot be read or parsed). The message never
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
        let mut tls = TlsParams::default();
        for (key, value) in parsed.query_pairs() {
            if let Some(warning) = apply_query(&mut config, &mut tls, &key, &value)? {
                log::warn!("AMQP URL: {warning}");
            }
        }
        if !tls.is_empty() {
            match config.tls.take() {
                Some(base) => config.tls = Some(tls.into_config(base, &read_file)?),
                None => log::warn!(
                    "AMQP URL: the TLS parameters {} are ignored: the URL is amqp://, not amqps://",
                    tls.names.join(", ")
                ),
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

    /// Reads the broker URL from the environment: `AMQP_URL`, else `RABBITMQ_URL` (the seeds'
    /// name); the default configuration (a broker on localhost) when neither is set. When both
    /// are set `AMQP_URL` wins, with a warning if they differ.
    ///
    /// # Errors
    ///
    /// As [`from_url`](Self::from_url), when the variable holds an invalid URL (the error
    /// names the variable) or is not Unicode.
    pub fn from_env() -> Result<Self> {
        match url_from_env()? {
            Some((name, url)) => Self::from_url(&url).map_err(|e| match e {
                Error::InvalidConfig { field, message } => Error::InvalidConfig {
                    field,
                    message: format!("{name}: {message}"),
                },
                other => other,
            }),
            None => Ok(Self::default()),
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
            .field("channel_max", &self.channel_max)
            .field("frame_max", &self.frame_max)
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
#[derive(Clone, PartialEq, Eq)]
pub struct TlsConfig {
    domain: Option<String>,
    root_certificate_pem: Option<Vec<u8>>,
    accept_invalid_certificates: bool,
    /// Client certificate chain and PKCS#8 key, PEM.
    identity_pem: Option<(Vec<u8>, Vec<u8>)>,
    use_sni: bool,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            domain: None,
            root_certificate_pem: None,
            accept_invalid_certificates: false,
            identity_pem: None,
            use_sni: true,
        }
    }
}

/// The private key is never shown.
impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("domain", &self.domain)
            .field("root_certificate", &self.root_certificate_pem.is_some())
            .field(
                "accept_invalid_certificates",
                &self.accept_invalid_certificates,
            )
            .field("client_identity", &self.identity_pem.is_some())
            .field("use_sni", &self.use_sni)
            .finish()
    }
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

    /// Presents this client certificate (PEM, with its chain) and key (PEM, PKCS#8:
    /// `BEGIN PRIVATE KEY`) to the broker, for brokers that verify their peers.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] when native-tls cannot read the pair.
    pub fn client_identity_pem(mut self, certificate: Vec<u8>, key: Vec<u8>) -> Result<Self> {
        native_tls::Identity::from_pkcs8(&certificate, &key).map_err(|e| Error::InvalidConfig {
            field: "tls",
            message: format!(
                "the client certificate and key cannot be used ({e}); the key must be PKCS#8 PEM (BEGIN PRIVATE KEY): convert it with `openssl pkcs8 -topk8 -nocrypt`"
            ),
        })?;
        self.identity_pem = Some((certificate, key));
        Ok(self)
    }

    /// Whether to send the server name (SNI) in the handshake; on by default.
    #[must_use]
    pub fn use_sni(mut self, use_sni: bool) -> Self {
        self.use_sni = use_sni;
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
        if let Some((certificate, key)) = &self.identity_pem {
            let identity = native_tls::Identity::from_pkcs8(certificate, key)
                .map_err(|e| format!("invalid client certificate or key: {e}"))?;
            builder.identity(identity);
        }
        builder.danger_accept_invalid_certs(self.accept_invalid_certificates);
        builder.use_sni(self.use_sni);
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

/// TLS settings of a URL's query (RabbitMQ's URI spec), applied once the whole query is
/// read.
#[derive(Debug, Default)]
struct TlsParams {
    /// The parameters given, for the warning when the URL is not `amqps`.
    names: Vec<&'static str>,
    cacertfile: Option<String>,
    certfile: Option<String>,
    keyfile: Option<String>,
    verify_none: bool,
    server_name: Option<String>,
    no_sni: bool,
}

impl TlsParams {
    fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// `base` with these settings, reading the files with `read`.
    fn into_config(
        self,
        base: TlsConfig,
        read: &dyn Fn(&'static str, &str) -> Result<Vec<u8>>,
    ) -> Result<TlsConfig> {
        let mut tls = base;
        if let Some(path) = &self.cacertfile {
            tls = tls.root_certificate_pem(read("cacertfile", path)?);
        }
        match (&self.certfile, &self.keyfile) {
            (Some(cert), Some(key)) => {
                tls = tls.client_identity_pem(read("certfile", cert)?, read("keyfile", key)?)?;
            }
            (None, None) => {}
            _ => {
                return Err(Error::InvalidConfig {
                    field: "tls",
                    message: "certfile and keyfile go together: give both or neither".to_owned(),
                })
            }
        }
        if self.verify_none {
            tls = tls.danger_accept_invalid_certificates(true);
        }
        if let Some(name) = &self.server_name {
            tls = tls.domain(name);
        }
        if self.no_sni {
            tls = tls.use_sni(false);
        }
        Ok(tls)
    }
}

/// Reads a file named by a TLS parameter.
fn read_file(field: &'static str, path: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::InvalidConfig {
        field: "tls",
        message: format!("cannot read {field} {path:?}: {e}"),
    })
}

/// Applies one query parameter of an AMQP URL; `Ok(Some(warning))` when it is ignored.
fn apply_query(
    config: &mut AmqpConfig,
    tls: &mut TlsParams,
    key: &str,
    value: &str,
) -> Result<Option<String>> {
    let invalid = |field: &'static str, what: &str| Error::InvalidConfig {
        field,
        message: format!("{key}={value:?} is not {what}"),
    };
    // pika writes seconds as floats (`retry_delay=2.5`).
    let seconds = |field: &'static str| -> Result<Duration> {
        value
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s >= 0.0 && *s < 1e9)
            .map(Duration::from_secs_f64)
            .ok_or_else(|| invalid(field, "a number of seconds"))
    };
    let mut tls_param = |name: &'static str| {
        if !tls.names.contains(&name) {
            tls.names.push(name);
        }
    };
    match key {
        "heartbeat" => {
            let heartbeat = value
                .parse::<u64>()
                .map_err(|_| invalid("heartbeat", "a whole number of seconds"))?;
            config.heartbeat = Duration::from_secs(heartbeat);
        }
        "retry_delay" => config.retry_delay = seconds("retry_delay")?,
        "blocked_connection_timeout" => {
            config.blocked_connection_timeout = seconds("blocked_connection_timeout")?
        }
        "connection_timeout" => {
            let ms = value
                .parse::<u64>()
                .map_err(|_| invalid("connection_timeout", "a whole number of milliseconds"))?;
            config.connection_timeout = Duration::from_millis(ms);
        }
        "socket_timeout" => config.connection_timeout = seconds("connection_timeout")?,
        "connection_attempts" => {
            config.connection_attempts = value
                .parse::<u32>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| invalid("connection_attempts", "a positive number"))?
        }
        "connection_name" => config.connection_name = Some(value.to_owned()),
        "channel_max" => {
            config.channel_max = Some(
                value
                    .parse::<u16>()
                    .map_err(|_| invalid("channel_max", "a number from 0 to 65535"))?,
            )
        }
        "frame_max" => {
            config.frame_max = Some(
                value
                    .parse::<u32>()
                    .map_err(|_| invalid("frame_max", "a number of bytes"))?,
            )
        }
        "auth_mechanism" => {
            if !value.eq_ignore_ascii_case("plain") {
                return Err(invalid(
                    "auth_mechanism",
                    "supported: only PLAIN (user and password) is",
                ));
            }
        }
        "cacertfile" => {
            tls_param("cacertfile");
            tls.cacertfile = Some(value.to_owned());
        }
        "certfile" => {
            tls_param("certfile");
            tls.certfile = Some(value.to_owned());
        }
        "keyfile" => {
            tls_param("keyfile");
            tls.keyfile = Some(value.to_owned());
        }
        "verify" => {
            tls_param("verify");
            tls.verify_none = match value {
                "verify_peer" => false,
                "verify_none" => true,
                _ => return Err(invalid("verify", "verify_peer or verify_none")),
            };
        }
        "server_name_indication" => {
            tls_param("server_name_indication");
            if value == "disable" {
                tls.no_sni = true;
            } else {
                tls.server_name = Some(value.to_owned());
            }
        }
        "fail_if_no_peer_cert" | "depth" | "password" | "ssl_options" => {
            return Ok(Some(format!(
                "ignoring the TLS parameter `{key}`: not supported here (use cacertfile, certfile, keyfile, verify, server_name_indication)"
            )))
        }
        "locale" | "stack_timeout" | "tcp_options" | "backpressure_detection" => {
            return Ok(Some(format!(
                "ignoring the parameter `{key}`: it has no equivalent here"
            )))
        }
        _ => {
            // The name only: an unknown parameter's value could be a secret.
            return Ok(Some(format!(
                "ignoring the unknown query parameter `{}`",
                key.chars().take(64).collect::<String>()
            )));
        }
    }
    Ok(None)
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
    fn unknown_and_foreign_query_parameters_are_warnings() {
        let check = |query: &str, warned: Option<&str>| {
            let mut config = AmqpConfig::default();
            let mut tls = TlsParams::default();
            let (key, value) = query.split_once('=').unwrap_or((query, ""));
            let warning = apply_query(&mut config, &mut tls, key, value).unwrap();
            match (warning, warned) {
                (None, None) => {}
                (Some(w), Some(part)) => assert!(w.contains(part), "{query}: {w}"),
                (got, want) => panic!("{query}: {got:?}, wanted {want:?}"),
            }
        };
        check("hearbeat=10", Some("unknown query parameter `hearbeat`"));
        check("x-secret=hunter2", Some("x-secret"));
        check("locale=en_US", Some("locale"));
        check("stack_timeout=15", Some("no equivalent"));
        check("ssl_options=%7B%7D", Some("cacertfile"));
        check("fail_if_no_peer_cert=true", Some("not supported"));
        check("auth_mechanism=PLAIN", None);
        check("socket_timeout=2.5", None);
        check("cacertfile=/ca.pem", None);
        let warned = |query: &str| {
            let mut config = AmqpConfig::default();
            let (key, value) = query.split_once('=').unwrap_or((query, ""));
            apply_query(&mut config, &mut TlsParams::default(), key, value)
                .unwrap()
                .unwrap_or_default()
        };
        assert!(!warned("x-secret=hunter2").contains("hunter2"));
        let c = AmqpConfig::from_url("amqp://h/?hearbeat=10&locale=en_US&heartbeat=7").unwrap();
        assert_eq!(c.heartbeat(), Duration::from_secs(7));
    }

    #[test]
    fn pika_and_rabbitmq_parameters_map_where_they_exist() {
        let c = AmqpConfig::from_url(
            "amqp://h/?socket_timeout=2.5&retry_delay=0.5&blocked_connection_timeout=1.5&channel_max=16&frame_max=131072&auth_mechanism=plain",
        )
        .unwrap();
        assert_eq!(c.connection_timeout(), Duration::from_millis(2500));
        assert_eq!(c.retry_delay(), Duration::from_millis(500));
        assert_eq!(c.blocked_connection_timeout(), Duration::from_millis(1500));
        assert_eq!(c.channel_max(), Some(16));
        assert_eq!(c.frame_max(), Some(131_072));
        for bad in [
            "amqp://h/?socket_timeout=soon",
            "amqp://h/?channel_max=70000",
            "amqp://h/?frame_max=100",
            "amqp://h/?auth_mechanism=external",
            "amqps://h/?verify=maybe",
            "amqps://h/?cacertfile=/nonexistent/ca.pem",
            "amqps://h/?certfile=/nonexistent/c.pem",
        ] {
            assert!(AmqpConfig::from_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tls_parameters_are_honoured_on_amqps_and_ignored_on_amqp() {
        let c = AmqpConfig::from_url(
            "amqps://h/?verify=verify_none&server_name_indication=rabbit.internal",
        )
        .unwrap();
        let tls = c.tls().unwrap();
        assert!(tls.accept_invalid_certificates);
        assert_eq!(tls.server_name("h"), "rabbit.internal");
        let c = AmqpConfig::from_url("amqps://h/?server_name_indication=disable").unwrap();
        assert!(!c.tls().unwrap().use_sni);
        // On amqp:// the files are not even read.
        let c = AmqpConfig::from_url("amqp://h/?cacertfile=/nonexistent/ca.pem").unwrap();
        assert!(c.tls().is_none());
        let read =
            |_: &'static str, path: &str| -> Result<Vec<u8>> { Ok(path.as_bytes().to_vec()) };
        let params = TlsParams {
            names: vec!["cacertfile"],
            cacertfile: Some("PEM".into()),
            ..TlsParams::default()
        };
        let tls = params.into_config(TlsConfig::default(), &read).unwrap();
        assert_eq!(tls.root_certificate_pem.as_deref(), Some(&b"PEM"[..]));
        let half = TlsParams {
            names: vec!["certfile"],
            certfile: Some("c".into()),
            ..TlsParams::default()
        };
        assert!(half.into_config(TlsConfig::default(), &read).is_err());
        let bad_key = TlsConfig::default().client_identity_pem(b"x".to_vec(), b"y".to_vec());
        assert!(bad_key.unwrap_err().to_string().contains("PKCS#8"));
    }

    #[test]
    fn environment_precedence() {
        let some = |s: &str| Some(s.to_owned());
        let (url, warning) = pick_url(some("amqp://a"), some("amqp://b"));
        assert_eq!(url, Some((AMQP_URL_ENV, "amqp://a".to_owned())));
        assert!(warning.is_some());
        let (url, warning) = pick_url(some("amqp://a"), some("amqp://a"));
        assert_eq!(url, Some((AMQP_URL_ENV, "amqp://a".to_owned())));
        assert!(warning.is_none());
        let (url, _) = pick_url(None, some("amqp://b"));
        assert_eq!(url, Some((RABBITMQ_URL_ENV, "amqp://b".to_owned())));
        let (url, _) = pick_url(some(" "), some("amqp://b"));
        assert_eq!(url, Some((RABBITMQ_URL_ENV, "amqp://b".to_owned())));
        assert_eq!(pick_url(None, None), (None, None));
    }

    #[test]
    fn exchange_names() {
        assert_eq!(exchange_name("").unwrap(), DEFAULT_EXCHANGE);
        assert_eq!(exchange_name(" shop.events ").unwrap(), "shop.events");
        assert_eq!(exchange_name("a:b_c-1").unwrap(), "a:b_c-1");
        assert!(exchange_name("has space").is_err());
        assert!(exchange_name(&"x".repeat(256)).is_err());
    }

    #[test]
    fn tls_debug_hides_the_key() {
        let tls = TlsConfig {
            identity_pem: Some((b"CERT".to_vec(), b"SECRET-KEY".to_vec())),
            ..TlsConfig::default()
        };
        assert!(!format!("{tls:?}").contains("SECRET"));
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
