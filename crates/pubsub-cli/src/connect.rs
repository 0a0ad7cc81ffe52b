//! The broker a command talks to: [`amqp_config`] and [`connect`].

use pubsub_amqp::{AmqpConfig, Connection};

use crate::error::{Result, UsageError};

/// The broker configuration: `url` (from `--url` or `AMQP_URL`), else `RABBITMQ_URL`, else a
/// broker on localhost. One connection attempt, unless the URL asks for more
/// (`?connection_attempts=5`): a command-line tool should fail fast.
///
/// # Errors
///
/// A [`UsageError`] for an invalid URL (its text never includes the password).
pub fn amqp_config(url: Option<&str>) -> Result<AmqpConfig, UsageError> {
    let from_env = match url {
        Some(_) => None,
        None => pubsub_amqp::url_from_env()
            .map_err(|e| UsageError::new(e.to_string()))?
            .map(|(_, url)| url),
    };
    let url = url
        .or(from_env.as_deref())
        .map(str::trim)
        .filter(|u| !u.is_empty());
    let config = match url {
        Some(url) => AmqpConfig::from_url(url)
            .map_err(|e| UsageError::new(format!("--url / AMQP_URL / RABBITMQ_URL: {e}")))?,
        None => AmqpConfig::default(),
    };
    if url.is_some_and(|u| u.contains("connection_attempts=")) {
        Ok(config)
    } else {
        Ok(config.with_connection_attempts(1))
    }
}

/// The exchange a command works on: `--exchange` when given, else `RABBITMQ_EXCHANGE`
/// ([`pubsub_amqp::exchange_from_env`]), else `events`.
///
/// # Errors
///
/// A [`UsageError`] when `RABBITMQ_EXCHANGE` is not a valid exchange name.
pub(crate) fn exchange(flag: Option<&str>) -> Result<String, UsageError> {
    match flag {
        Some(name) => Ok(name.to_owned()),
        None => pubsub_amqp::exchange_from_env().map_err(|e| UsageError::new(e.to_string())),
    }
}

/// Opens a connection named `pubsub-cli <what>` (the name shows in the broker's connection
/// list).
///
/// # Errors
///
/// [`Error::Usage`](crate::Error::Usage) for an invalid URL; [`Error::Amqp`](crate::Error::Amqp)
/// when the broker is unreachable or refuses the credentials.
pub fn connect(url: Option<&str>, what: &str) -> Result<Connection> {
    let config = amqp_config(url)?.with_connection_name(&format!("pubsub-cli {what}"));
    Ok(Connection::open(&config)?)
}
