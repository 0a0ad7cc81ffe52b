//! The databases under test, each removed at the end of its test.

use std::path::PathBuf;

use pubsub_store::Database;

/// A database a test owns: a SQLite file, or a PostgreSQL schema of its own; deleted on drop.
pub(crate) struct TestDb {
    pub(crate) database: Database,
    cleanup: Cleanup,
}

enum Cleanup {
    File(PathBuf),
    Schema { url: String, schema: String },
}

impl TestDb {
    /// A new SQLite file in the temporary directory.
    pub(crate) fn sqlite() -> TestDb {
        let path = std::env::temp_dir().join(format!("{}.db", pubsub_testkit::unique("store")));
        TestDb {
            database: Database::sqlite(&path),
            cleanup: Cleanup::File(path),
        }
    }

    /// A new schema in the PostgreSQL database under test, or `None` (skip) outside CI when
    /// it is unreachable.
    pub(crate) fn postgres() -> Option<TestDb> {
        let url = pubsub_testkit::postgres_url()?;
        let schema = pubsub_testkit::unique("store").replace('.', "_");
        let database = Database::parse(&url)
            .and_then(|db| db.with_schema(&schema))
            .expect("the test database URL");
        Some(TestDb {
            database,
            cleanup: Cleanup::Schema { url, schema },
        })
    }

    /// Both kinds, SQLite first.
    pub(crate) fn all() -> Vec<TestDb> {
        let mut all = vec![TestDb::sqlite()];
        all.extend(TestDb::postgres());
        all
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::File(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let mut p = path.clone().into_os_string();
                    p.push(suffix);
                    let _ = std::fs::remove_file(p);
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
