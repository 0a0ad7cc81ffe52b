//! The broker's environment variables: `AMQP_URL`, `RABBITMQ_URL` and `RABBITMQ_EXCHANGE`.

use super::AmqpConfig;
use crate::error::{Error, Result};

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

impl AmqpConfig {
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
}

#[cfg(test)]
mod tests {
    use super::*;
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
}
