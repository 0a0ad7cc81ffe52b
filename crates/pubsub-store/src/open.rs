//! Opening a store's database: the backend its URL names, created or only found.

use crate::backend::{Backend, Opening};
use crate::error::Result;

/// Opens the backend of `database`, its schema created (or only found) and migrated.
pub(crate) fn open(database: &crate::Database, opening: Opening) -> Result<Box<dyn Backend>> {
    match &database.kind {
        crate::database::Kind::Sqlite(target) => Ok(Box::new(crate::sqlite::Sqlite::open(
            target, database, opening,
        )?)),
        #[cfg(feature = "postgres")]
        crate::database::Kind::Postgres { config, schema } => Ok(Box::new(
            crate::postgres::Postgres::open(config, schema.as_deref(), database, opening)?,
        )),
    }
}
