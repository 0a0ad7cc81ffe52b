//! [`TestDatabase`]: a database a test owns, named by its URL, removed at the end.

use std::path::PathBuf;

/// A database a test owns: a new SQLite file, or a schema of its own in the PostgreSQL
/// database under test ([`postgres_url`](crate::postgres_url)); deleted when dropped.
///
/// It hands out a URL (`sqlite:PATH`, `postgres://...?schema=NAME`) for the store under
/// test to parse, so that testkit does not depend on the store.
#[derive(Debug)]
pub struct TestDatabase {
    url: String,
    cleanup: Cleanup,
}

#[derive(Debug)]
enum Cleanup {
    File(PathBuf),
    Schema { url: String, schema: String },
}

impl TestDatabase {
    /// A new SQLite file in the temporary directory, named after `prefix`.
    pub fn sqlite(prefix: &str) -> TestDatabase {
        let path = std::env::temp_dir().join(format!("{}.db", crate::unique(prefix)));
        TestDatabase {
            url: format!("sqlite:{}", path.display()),
            cleanup: Cleanup::File(path),
        }
    }

    /// A new schema, named after `prefix`, in the PostgreSQL database under test; `None`
    /// (skip) when it is unreachable outside CI.
    ///
    /// # Panics
    ///
    /// As [`postgres_url`](crate::postgres_url), under `CI=true` when PostgreSQL is down.
    pub fn postgres(prefix: &str) -> Option<TestDatabase> {
        let url = crate::postgres_url()?;
        let schema = crate::unique(prefix).replace(['.', '-'], "_");
        let separator = if url.contains('?') { '&' } else { '?' };
        Some(TestDatabase {
            url: format!("{url}{separator}schema={schema}"),
            cleanup: Cleanup::Schema { url, schema },
        })
    }

    /// A SQLite one, then a PostgreSQL one when PostgreSQL answers (or under `CI=true`).
    pub fn all(prefix: &str) -> Vec<TestDatabase> {
        let mut all = vec![TestDatabase::sqlite(prefix)];
        all.extend(TestDatabase::postgres(prefix));
        all
    }

    /// Its URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::File(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let mut file = path.clone().into_os_string();
                    file.push(suffix);
                    let _ = std::fs::remove_file(file);
                }
            }
            Cleanup::Schema { url, schema } => {
                if let Ok(mut client) = postgres::Client::connect(url, postgres::NoTls) {
                    let _ =
                        client.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
                }
            }
        }
    }
}
