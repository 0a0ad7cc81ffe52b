//! [`Database`]: which database a store uses, parsed from a URL.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
#[cfg(feature = "postgres")]
use std::time::Duration;

use crate::error::{Error, Result};

/// The environment variable [`Database::from_env`] reads.
pub const DATABASE_URL_ENV: &str = "DATABASE_URL";

/// The database [`Database::from_env`] uses when [`DATABASE_URL_ENV`] is not set: a SQLite
/// file in the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite:pubsub.db";

/// Which database a store keeps its rows in: a SQLite file (embedded, nothing to set up), or
/// PostgreSQL (for production).
///
/// Parsed from a URL:
///
/// | URL | database |
/// | --- | --- |
/// | `sqlite:events.db`, `sqlite://events.db` | the file `events.db`, created if missing |
/// | `sqlite:///events.db` (SQLAlchemy's) | the relative path `events.db` |
/// | `sqlite:////var/lib/app/events.db` (SQLAlchemy's), `sqlite:/var/lib/app/events.db` | an absolute path |
/// | `sqlite::memory:`, `sqlite:///:memory:` | in memory, gone when the store is dropped (tests) |
/// | `sqlite+aiosqlite:///events.db`, `sqlite+pysqlite:////abs.db` | SQLAlchemy's forms with a driver: the same files (`sqlite+aiosqlite://` alone: in memory) |
/// | `postgres://user:password@host:5432/db`, `postgresql://...` | PostgreSQL, with libpq's URL parameters (`connect_timeout`, `sslmode=disable`, ...) |
/// | `postgresql+asyncpg://...`, `postgresql+psycopg://...`, `postgresql+psycopg2://...` | SQLAlchemy's forms (seed 003's `DATABASE_URL`): the driver is dropped, the rest is as above |
///
/// A service of the original design and this crate can thus share one `DATABASE_URL`. Before,
/// `sqlite:///path` was read as the absolute `/path`; it now means what it means to
/// SQLAlchemy (the relative `path`): write `sqlite:////path` or `sqlite:/path` for an
/// absolute one.
///
/// A PostgreSQL URL may add `schema=NAME` (a `pubsub_`-style name: letters, digits, `_`): the
/// store's tables live in that schema, created if missing, instead of `public`.
///
/// `Debug` and `Display` never show the password.
///
/// ```
/// use pubsub_store::Database;
///
/// let db: Database = "postgres://app:secret@db.internal:5432/events".parse()?;
/// assert_eq!(db.to_string(), "postgres://app@db.internal:5432/events");
/// assert!("mysql://localhost".parse::<Database>().is_err());
/// # Ok::<(), pubsub_store::Error>(())
/// ```
#[derive(Clone)]
pub struct Database {
    pub(crate) kind: Kind,
}

#[derive(Clone)]
pub(crate) enum Kind {
    /// A SQLite file, or memory.
    Sqlite(SqliteTarget),
    /// PostgreSQL.
    #[cfg(feature = "postgres")]
    Postgres {
        config: Box<postgres::Config>,
        /// The schema the tables live in (`None`: the connection's search path).
        schema: Option<String>,
    },
}

/// Where a SQLite database is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SqliteTarget {
    File(PathBuf),
    Memory,
}

/// How long connecting to PostgreSQL may take unless the URL says otherwise.
#[cfg(feature = "postgres")]
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl Database {
    /// Parses a database URL (see the type's documentation).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming what is wrong: an unknown scheme, an empty SQLite
    /// path, a PostgreSQL URL libpq would not take, an invalid schema name.
    pub fn parse(url: &str) -> Result<Database> {
        let invalid = |message: String| Error::InvalidConfig { message };
        let url = url.trim();
        if let Some(target) = sqlite_target(url) {
            return match target {
                Some(target) => Ok(Database {
                    kind: Kind::Sqlite(target),
                }),
                None => Err(invalid(
                    "a SQLite URL needs a path: `sqlite:events.db` or `sqlite::memory:`".into(),
                )),
            };
        }
        #[cfg(not(feature = "postgres"))]
        if postgres_url(url).is_some() {
            return Err(invalid(
                "this program was built without PostgreSQL: enable the `postgres` feature of \
                 pubsub-store (on by default), or use `sqlite:PATH`"
                    .into(),
            ));
        }
        #[cfg(feature = "postgres")]
        if let Some(url) = postgres_url(url) {
            let (base, schema) = take_schema(&url)?;
            let mut config = postgres::Config::from_str(&base)
                .map_err(|e| invalid(format!("not a PostgreSQL URL libpq accepts: {e}")))?;
            if config.get_connect_timeout().is_none() {
                config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
            }
            if config.get_application_name().is_none() {
                config.application_name("pubsub-store");
            }
            return Ok(Database {
                kind: Kind::Postgres {
                    config: Box::new(config),
                    schema,
                },
            });
        }
        let scheme = url.split(':').next().unwrap_or_default();
        Err(invalid(format!(
            "unknown database `{}`: use `sqlite:PATH`, `sqlite::memory:`, `postgres://...` or SQLAlchemy's `sqlite+DRIVER:///PATH`, `postgresql+DRIVER://...`",
            pubsub_core::text::quote(scheme)
        )))
    }

    /// The database named by `DATABASE_URL`, or [`DEFAULT_DATABASE_URL`] (a SQLite file in the
    /// working directory).
    ///
    /// # Errors
    ///
    /// As [`parse`](Self::parse).
    pub fn from_env() -> Result<Database> {
        match std::env::var(DATABASE_URL_ENV) {
            Ok(url) if !url.trim().is_empty() => Database::parse(&url),
            _ => Database::parse(DEFAULT_DATABASE_URL),
        }
    }

    /// A SQLite file (created if missing).
    pub fn sqlite(path: impl Into<PathBuf>) -> Database {
        Database {
            kind: Kind::Sqlite(SqliteTarget::File(path.into())),
        }
    }

    /// A SQLite database in memory, gone when its store is dropped.
    pub fn sqlite_in_memory() -> Database {
        Database {
            kind: Kind::Sqlite(SqliteTarget::Memory),
        }
    }

    /// The same PostgreSQL database with its tables in `schema` (created if missing).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] if this is not PostgreSQL or `schema` is not a plain name.
    pub fn with_schema(mut self, schema: &str) -> Result<Database> {
        check_schema(schema)?;
        match &mut self.kind {
            #[cfg(feature = "postgres")]
            Kind::Postgres { schema: s, .. } => {
                *s = Some(schema.to_owned());
                Ok(self)
            }
            Kind::Sqlite(_) => Err(Error::InvalidConfig {
                message: "a schema applies to PostgreSQL only".into(),
            }),
        }
    }

    /// `"SQLite"` or `"PostgreSQL"`.
    pub fn backend_name(&self) -> &'static str {
        match self.kind {
            Kind::Sqlite(_) => "SQLite",
            #[cfg(feature = "postgres")]
            Kind::Postgres { .. } => "PostgreSQL",
        }
    }
}

impl FromStr for Database {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Database::parse(s)
    }
}

/// The SQLite database of a `sqlite:` URL, or of SQLAlchemy's `sqlite+DRIVER:` forms; `None`
/// for another scheme, `Some(None)` for a SQLite URL without a path.
///
/// Three slashes are SQLAlchemy's: `sqlite:///app.db` is the relative path `app.db`,
/// `sqlite:////var/lib/app.db` the absolute one. Without a driver, two slashes or none are
/// this crate's own forms (`sqlite://app.db`, `sqlite:app.db`); with a driver, SQLAlchemy's
/// `sqlite+aiosqlite://` without a path is its in-memory database.
fn sqlite_target(url: &str) -> Option<Option<SqliteTarget>> {
    let (scheme, rest) = url.split_once(':')?;
    let driver = match scheme.strip_prefix("sqlite")? {
        "" => false,
        d if d.starts_with('+') && d.len() > 1 => true,
        _ => return None,
    };
    let path = match rest.strip_prefix("///") {
        Some(path) => path,
        None => rest.strip_prefix("//").unwrap_or(rest),
    };
    let target = match path {
        "" if driver && rest == "//" => Some(SqliteTarget::Memory),
        "" => None,
        ":memory:" => Some(SqliteTarget::Memory),
        path => Some(SqliteTarget::File(PathBuf::from(path))),
    };
    Some(target)
}

/// A PostgreSQL URL as libpq takes it: `postgres://` and `postgresql://`, and SQLAlchemy's
/// `postgresql+DRIVER://` (`+asyncpg`, `+psycopg`, `+psycopg2`, ...) without the driver.
fn postgres_url(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let base = scheme.split_once('+').map_or(
        scheme,
        |(base, driver)| {
            if driver.is_empty() {
                scheme
            } else {
                base
            }
        },
    );
    matches!(base, "postgres" | "postgresql").then(|| format!("postgresql://{rest}"))
}

/// Splits a `schema=NAME` parameter off a PostgreSQL URL (libpq does not know it).
#[cfg(feature = "postgres")]
fn take_schema(url: &str) -> Result<(String, Option<String>)> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), None));
    };
    let mut schema = None;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("schema", name)) => {
                check_schema(name)?;
                schema = Some(name.to_owned());
            }
            _ => kept.push(pair),
        }
    }
    let base = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((base, schema))
}

/// A schema name the store can put in SQL unquoted: `[a-z_][a-z0-9_]*`, at most 63 bytes.
fn check_schema(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit();
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidConfig {
            message: format!(
                "schema `{}` is not a plain name (lowercase letters, digits and `_`, at most 63 bytes)",
                pubsub_core::text::quote(name)
            ),
        })
    }
}

impl fmt::Display for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Sqlite(SqliteTarget::Memory) => f.write_str("sqlite::memory:"),
            Kind::Sqlite(SqliteTarget::File(path)) => write!(f, "sqlite:{}", path.display()),
            #[cfg(feature = "postgres")]
            Kind::Postgres { config, schema } => {
                f.write_str("postgres://")?;
                if let Some(user) = config.get_user() {
                    write!(f, "{user}@")?;
                }
                match config.get_hosts().first() {
                    Some(postgres::config::Host::Tcp(host)) => f.write_str(host)?,
                    #[cfg(unix)]
                    Some(postgres::config::Host::Unix(path)) => write!(f, "{}", path.display())?,
                    None => f.write_str("localhost")?,
                }
                if let Some(port) = config.get_ports().first() {
                    write!(f, ":{port}")?;
                }
                if let Some(db) = config.get_dbname() {
                    write!(f, "/{db}")?;
                }
                if let Some(schema) = schema {
                    write!(f, "?schema={schema}")?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Database({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let check = |url: &str, shown: Option<&str>| {
            let parsed = Database::parse(url);
            match shown {
                Some(shown) => assert_eq!(parsed.unwrap().to_string(), shown, "{url}"),
                None => assert!(parsed.is_err(), "{url} parsed"),
            }
        };
        check("sqlite:events.db", Some("sqlite:events.db"));
        check("sqlite://events.db", Some("sqlite:events.db"));
        check("sqlite:/var/lib/a.db", Some("sqlite:/var/lib/a.db"));
        check("sqlite::memory:", Some("sqlite::memory:"));
        check("sqlite:", None);
        check("sqlite://", None);
        check("sqlite:///", None);
        // SQLAlchemy's forms: three slashes relative, four absolute, any driver.
        check("sqlite:///var/lib/a.db", Some("sqlite:var/lib/a.db"));
        check("sqlite:///relative.db", Some("sqlite:relative.db"));
        check("sqlite:////absolute.db", Some("sqlite:/absolute.db"));
        check("sqlite:///:memory:", Some("sqlite::memory:"));
        check(
            "sqlite+aiosqlite:///relative.db",
            Some("sqlite:relative.db"),
        );
        check(
            "sqlite+aiosqlite:///./data/app.db",
            Some("sqlite:./data/app.db"),
        );
        check(
            "sqlite+aiosqlite:////absolute.db",
            Some("sqlite:/absolute.db"),
        );
        check(
            "sqlite+pysqlite:////var/lib/a.db",
            Some("sqlite:/var/lib/a.db"),
        );
        check("sqlite+aiosqlite://", Some("sqlite::memory:"));
        check("sqlite+aiosqlite:///:memory:", Some("sqlite::memory:"));
        check("sqlite+:///a.db", None);
        check("sqlite3:///a.db", None);
        check(
            "postgresql+asyncpg://app:secret@db.internal:5433/events",
            Some("postgres://app@db.internal:5433/events"),
        );
        check(
            "postgresql+psycopg://app:secret@db/events?schema=audit",
            Some("postgres://app@db:5432/events?schema=audit"),
        );
        check(
            "postgresql+psycopg2://app@db/events",
            Some("postgres://app@db:5432/events"),
        );
        check(
            "postgres+asyncpg://app@db/events",
            Some("postgres://app@db:5432/events"),
        );
        check(
            "postgresql://app@db/events",
            Some("postgres://app@db:5432/events"),
        );
        check("postgresql+://app@db/events", None);
        check("mysql+aiomysql://app@db/events", None);
        check(
            "postgres://postgres@127.0.0.1:5432/test",
            Some("postgres://postgres@127.0.0.1:5432/test"),
        );
        check(
            "postgresql://u:secret@db/x?schema=audit&sslmode=disable",
            Some("postgres://u@db:5432/x?schema=audit"),
        );
        check("postgres://u@db/x?schema=Bad-Name", None);
        check("postgres://u@db/x?schema=1st", None);
        check("postgres://u@db/x?bogus=1", None);
        check("mysql://localhost/x", None);
        check("events.db", None);
    }

    #[test]
    fn the_password_is_never_shown() {
        let db = Database::parse("postgres://app:hunter2@db:5432/events").unwrap();
        assert!(!format!("{db} {db:?}").contains("hunter2"));
        let e = Database::parse("postgres://app:hunter2@db:notaport/x").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        for url in [
            "postgresql+asyncpg://app:hunter2@db:5432/events",
            "postgresql+psycopg://app:hunter2@db/events?sslmode=disable",
        ] {
            let db = Database::parse(url).unwrap();
            assert!(!format!("{db} {db:?}").contains("hunter2"), "{url}");
        }
        for url in [
            "postgresql+asyncpg://app:hunter2@db:notaport/x",
            "postgresql+asyncpg://app:hunter2@db/x?bogus=1",
            "mysql+aiomysql://app:hunter2@db/x",
        ] {
            let e = Database::parse(url).unwrap_err();
            assert!(!e.to_string().contains("hunter2"), "{url}: {e}");
        }
    }

    #[test]
    fn schemas_are_for_postgres() {
        assert!(Database::sqlite_in_memory().with_schema("a").is_err());
        let db = Database::parse("postgres://u@db/x").unwrap();
        assert_eq!(
            db.with_schema("t_1").unwrap().to_string(),
            "postgres://u@db:5432/x?schema=t_1"
        );
    }
}
