//! [`Shop`]: the demo's tables (orders, users, stock levels and reservations) in a SQLite
//! database, beside the outbox that publishes its events.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use pubsub_core::Event;
use pubsub_outbox::Outbox;
use pubsub_store::Database;
use rusqlite::{params, Connection, OptionalExtension, Transaction};

use crate::error::{Error, Result};
use crate::events::{is, OrderCreated, OrderPaid, UserRegistered};

const TABLES: &str = "
    CREATE TABLE IF NOT EXISTS demo_orders (
        order_id TEXT PRIMARY KEY NOT NULL,
        customer_email TEXT NOT NULL,
        total_amount REAL NOT NULL,
        status TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS demo_users (
        user_id TEXT PRIMARY KEY NOT NULL,
        email TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS demo_stock (
        product_id TEXT PRIMARY KEY NOT NULL,
        level INTEGER NOT NULL
    );
    CREATE TABLE IF NOT EXISTS demo_reservations (
        order_id TEXT NOT NULL,
        product_id TEXT NOT NULL,
        quantity INTEGER NOT NULL,
        event_id TEXT NOT NULL
    );";

/// The shop's database: its orders, users, stock levels and the stock reserved for each
/// order, in SQLite (a file every connection shares: the inventory handler and the outbox's
/// relay open their own).
///
/// ```
/// use demo_domain::Shop;
///
/// let shop = Shop::scratch([("PROD-001", 10)])?;
/// assert_eq!(shop.stock("PROD-001")?, Some(10));
/// assert_eq!(shop.reservations()?, 0);
/// # Ok::<(), demo_domain::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Shop {
    database: Database,
    /// The directory of a scratch shop, removed with its last clone.
    _scratch: Option<Arc<Scratch>>,
}

#[derive(Debug)]
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Shop {
    /// The shop in `database` (a SQLite file), its tables created if missing, with `stock`
    /// as its stock levels (set, whatever they were).
    ///
    /// # Errors
    ///
    /// [`Error::Database`] when the database is not a SQLite file or cannot be written.
    pub fn open<P: Into<String>>(
        database: &Database,
        stock: impl IntoIterator<Item = (P, u64)>,
    ) -> Result<Shop> {
        let doing = "creating the shop's tables";
        if database.is_postgres() || database.is_in_memory() {
            return Err(Error::Database {
                doing,
                message: format!("{database}: the demo's shop keeps its tables in a SQLite file"),
            });
        }
        let shop = Shop {
            database: database.clone(),
            _scratch: None,
        };
        let mut connection = shop.connect()?;
        let tx = connection
            .transaction()
            .map_err(|e| Error::database(doing, &e))?;
        tx.execute_batch(TABLES)
            .map_err(|e| Error::database(doing, &e))?;
        for (product, level) in stock {
            tx.execute(
                "INSERT INTO demo_stock (product_id, level) VALUES (?1, ?2) \
                 ON CONFLICT (product_id) DO UPDATE SET level = excluded.level",
                params![product.into(), i64::try_from(level).unwrap_or(i64::MAX)],
            )
            .map_err(|e| Error::database(doing, &e))?;
        }
        tx.commit().map_err(|e| Error::database(doing, &e))?;
        Ok(shop)
    }

    /// A shop in a new SQLite file under the temporary directory, removed when its last
    /// clone is dropped: for tests and runs that keep nothing.
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    pub fn scratch<P: Into<String>>(stock: impl IntoIterator<Item = (P, u64)>) -> Result<Shop> {
        let dir = std::env::temp_dir().join(format!("demo-shop-{}", uuid::Uuid::new_v4()));
        let shop = Shop::open(&Database::sqlite(dir.join("shop.db")), stock)?;
        Ok(Shop {
            _scratch: Some(Arc::new(Scratch(dir))),
            ..shop
        })
    }

    /// Its database.
    pub fn database(&self) -> &Database {
        &self.database
    }

    /// A connection to its database.
    ///
    /// # Errors
    ///
    /// [`Error::Database`] when it cannot be opened.
    pub fn connect(&self) -> Result<Connection> {
        self.database
            .open_sqlite()
            .map_err(|e| Error::database("opening the shop's database", &e))
    }

    /// Writes what each of `events` says happened (an order created or paid, a user
    /// registered) and, with an outbox, stages the events themselves, all in one
    /// transaction: the rows and the events are kept together or not at all. An event of
    /// another kind is only staged.
    ///
    /// # Errors
    ///
    /// [`Error::Database`] (nothing is kept then), or the decoding error of an event whose
    /// data is not what its type says.
    pub fn commit(&self, outbox: Option<&Outbox>, events: &[Event]) -> Result<()> {
        let doing = "recording orders and staging their events";
        let mut connection = self.connect()?;
        let mut tx = connection
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| Error::database(doing, &e))?;
        for event in events {
            record(&tx, event)?;
            if let Some(outbox) = outbox {
                outbox
                    .stage(&mut tx, event)
                    .map_err(|e| Error::database(doing, &e))?;
            }
        }
        match outbox {
            Some(outbox) => outbox.commit(tx).map_err(|e| Error::database(doing, &e)),
            None => tx.commit().map_err(|e| Error::database(doing, &e)),
        }
    }

    /// How many of `product_id` are in stock; `None` for a product the shop does not carry.
    ///
    /// # Errors
    ///
    /// [`Error::Database`].
    pub fn stock(&self, product_id: &str) -> Result<Option<u64>> {
        let doing = "reading a stock level";
        self.connect()?
            .query_row(
                "SELECT level FROM demo_stock WHERE product_id = ?1",
                [product_id],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map(|level| level.map(|l| u64::try_from(l).unwrap_or(0)))
            .map_err(|e| Error::database(doing, &e))
    }

    /// Every product's stock level, by product id.
    ///
    /// # Errors
    ///
    /// [`Error::Database`].
    pub fn levels(&self) -> Result<BTreeMap<String, u64>> {
        let doing = "reading the stock levels";
        let connection = self.connect()?;
        let mut statement = connection
            .prepare("SELECT product_id, level FROM demo_stock ORDER BY product_id")
            .map_err(|e| Error::database(doing, &e))?;
        let rows = statement
            .query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)?)))
            .map_err(|e| Error::database(doing, &e))?;
        rows.map(|r| r.map(|(p, l)| (p, u64::try_from(l).unwrap_or(0))))
            .collect::<rusqlite::Result<_>>()
            .map_err(|e| Error::database(doing, &e))
    }

    /// How many reservation rows are kept (one per order line whose stock was taken).
    ///
    /// # Errors
    ///
    /// [`Error::Database`].
    pub fn reservations(&self) -> Result<u64> {
        self.count("demo_reservations")
    }

    /// How many orders are kept.
    ///
    /// # Errors
    ///
    /// [`Error::Database`].
    pub fn orders(&self) -> Result<u64> {
        self.count("demo_orders")
    }

    fn count(&self, table: &str) -> Result<u64> {
        let doing = "counting rows";
        self.connect()?
            .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| u64::try_from(n).unwrap_or(0))
            .map_err(|e| Error::database(doing, &e))
    }
}

/// Writes the row of one event (in the caller's transaction).
fn record(tx: &Transaction<'_>, event: &Event) -> Result<()> {
    let doing = "recording an order";
    let fail = |e: rusqlite::Error| Error::database(doing, &e);
    if is::<OrderCreated>(event) {
        let order = event.decode::<OrderCreated>()?;
        tx.execute(
            "INSERT INTO demo_orders (order_id, customer_email, total_amount, status) \
             VALUES (?1, ?2, ?3, 'created')",
            params![order.order_id, order.customer_email, order.total_amount],
        )
        .map_err(fail)?;
    } else if is::<OrderPaid>(event) {
        let paid = event.decode::<OrderPaid>()?;
        tx.execute(
            "UPDATE demo_orders SET status = 'paid' WHERE order_id = ?1",
            [paid.order_id],
        )
        .map_err(fail)?;
    } else if is::<UserRegistered>(event) {
        let user = event.decode::<UserRegistered>()?;
        tx.execute(
            "INSERT INTO demo_users (user_id, email) VALUES (?1, ?2) \
             ON CONFLICT (user_id) DO NOTHING",
            params![user.user_id, user.email],
        )
        .map_err(fail)?;
    }
    Ok(())
}
