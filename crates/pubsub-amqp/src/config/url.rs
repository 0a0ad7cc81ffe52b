//! [`AmqpConfig::from_url`]: an AMQP URL, with the query parameters of RabbitMQ's URI spec and
//! pika's.

use std::time::Duration;

use url::Url;

use super::{AmqpConfig, TlsConfig};
use crate::error::{Error, Result};
use crate::hosts;

impl AmqpConfig {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HostOrder;
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
}
