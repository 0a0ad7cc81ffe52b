//! The databases under test, each removed at the end of its test.

use pubsub_store::Database;
use pubsub_testkit::TestDatabase;

/// A database a test owns (see [`TestDatabase`]), parsed for the store.
pub(crate) struct TestDb {
    pub(crate) database: Database,
    _owned: TestDatabase,
}

impl TestDb {
    fn of(owned: TestDatabase) -> TestDb {
        TestDb {
            database: Database::parse(owned.url()).expect("the test database URL"),
            _owned: owned,
        }
    }

    /// Its URL.
    pub(crate) fn url(&self) -> &str {
        self._owned.url()
    }

    /// Both kinds, SQLite first (PostgreSQL when it answers, or under `CI=true`).
    pub(crate) fn all() -> Vec<TestDb> {
        TestDatabase::all("store")
            .into_iter()
            .map(TestDb::of)
            .collect()
    }
}
