//! Whose fault a failed write is: the database's (an outage: try again later) or the row's
//! (data the database refuses: it will never take it). Decided from the database's own
//! error codes, without I/O; and [`sift`], which finds the refused rows of a batch.

use std::ops::Range;

/// What a failed statement says about trying it again.
///
/// Decided from the database's error code (see [`Fault::of_sqlstate`] for PostgreSQL; for
/// SQLite, its primary result codes):
///
/// | | PostgreSQL (SQLSTATE class) | SQLite |
/// | --- | --- | --- |
/// | [`Refused`](Fault::Refused) | `22` data exception (invalid text, `\u0000`, a value out of range, bad encoding), `23` integrity constraint violation, `54` program limit exceeded (an index row too large, nesting too deep) | `SQLITE_CONSTRAINT`, `SQLITE_TOOBIG`, `SQLITE_MISMATCH`; a value the driver cannot bind |
/// | [`Outage`](Fault::Outage) | everything else: `08` connection, `53` insufficient resources (disk full, out of memory, too many connections), `57` operator intervention (shutdown, cancel), `58` system (I/O), `40` rollback (serialization, deadlock), `55` lock not available, `25` read-only transaction (a standby), `42` a schema or privilege problem, `XX` internal; and every error without a code (a broken connection) | everything else: busy, locked, I/O, full, read-only, cannot open, corrupt, out of memory, ... |
///
/// A refused row is one that fails on its own with a code that says so; anything the store
/// does not understand counts as an outage, so an event is never dead-lettered because of
/// the database's trouble: the worst case is the issue's old behaviour, a batch that waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// The database is down, busy, full or misconfigured: the same write may succeed later.
    Outage,
    /// The database refuses the data: the same write will never succeed.
    Refused,
}

impl Fault {
    /// The fault a PostgreSQL error with this SQLSTATE code means (its class, the first two
    /// characters, decides; see the table on [`Fault`]).
    ///
    /// ```
    /// use pubsub_store::Fault;
    ///
    /// assert_eq!(Fault::of_sqlstate("22P05"), Fault::Refused); // untranslatable character
    /// assert_eq!(Fault::of_sqlstate("57P01"), Fault::Outage); // admin shutdown
    /// ```
    pub fn of_sqlstate(code: &str) -> Fault {
        match code.get(..2) {
            Some("22" | "23" | "54") => Fault::Refused,
            _ => Fault::Outage,
        }
    }

    /// The fault a SQLite error with this primary result code means.
    pub(crate) fn of_sqlite(code: rusqlite::ErrorCode) -> Fault {
        use rusqlite::ErrorCode;
        match code {
            ErrorCode::ConstraintViolation | ErrorCode::TooBig | ErrorCode::TypeMismatch => {
                Fault::Refused
            }
            _ => Fault::Outage,
        }
    }

    /// The fault of a rusqlite error.
    pub(crate) fn of_rusqlite(error: &rusqlite::Error) -> Fault {
        match error {
            rusqlite::Error::SqliteFailure(e, _) => Fault::of_sqlite(e.code),
            rusqlite::Error::ToSqlConversionFailure(_) => Fault::Refused,
            _ => Fault::Outage,
        }
    }

    #[cfg(feature = "postgres")]
    /// The fault of a postgres client error: a server error by its SQLSTATE, anything else
    /// (I/O, a closed connection, a protocol error) is an outage.
    pub(crate) fn of_postgres(error: &postgres::Error) -> Fault {
        match error.code() {
            Some(code) if !error.is_closed() => Fault::of_sqlstate(code.code()),
            _ => Fault::Outage,
        }
    }
}

/// What [`sift`] found in a batch: how many rows the successful writes reported (new rows),
/// and the rows refused alone, each with its error, in batch order.
#[derive(Debug)]
pub(crate) struct Sifted<E> {
    pub(crate) written: usize,
    pub(crate) refused: Vec<(usize, E)>,
}

/// Writes the rows `0..n` with `write` (each call one transaction over a range of rows),
/// finding the rows the database refuses by bisection: a range that fails with a
/// [`Fault::Refused`] error is split in two and each half written; a single row that fails so
/// is refused. `k` refused rows cost about `2k log n` writes; none cost one.
///
/// # Errors
///
/// The first [`Fault::Outage`] error: the ranges written before it stay written.
pub(crate) fn sift<E>(
    n: usize,
    mut write: impl FnMut(Range<usize>) -> Result<usize, E>,
    fault: impl Fn(&E) -> Fault,
) -> Result<Sifted<E>, E> {
    let mut sifted = Sifted {
        written: 0,
        refused: Vec::new(),
    };
    // Ranges to write, the next one last; in batch order.
    let mut todo: Vec<Range<usize>> = Vec::new();
    todo.push(0..n);
    while let Some(range) = todo.pop() {
        if range.is_empty() {
            continue;
        }
        match write(range.clone()) {
            Ok(written) => sifted.written += written,
            Err(e) if fault(&e) == Fault::Outage => return Err(e),
            Err(e) if range.len() == 1 => sifted.refused.push((range.start, e)),
            Err(_) => {
                let middle = range.start + range.len() / 2;
                todo.push(middle..range.end);
                todo.push(range.start..middle);
            }
        }
    }
    Ok(sifted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates() {
        let check = |code: &str, expected: Fault| {
            assert_eq!(Fault::of_sqlstate(code), expected, "{code}");
        };
        use Fault::{Outage, Refused};
        // The data: the same row will never be taken.
        check("22P05", Refused); // untranslatable character (\u0000 in jsonb)
        check("22021", Refused); // character not in repertoire (a NUL byte in text)
        check("22001", Refused); // string data right truncation
        check("22003", Refused); // numeric value out of range
        check("22P02", Refused); // invalid text representation
        check("2202E", Refused); // array subscript error
        check("23502", Refused); // not null violation
        check("23514", Refused); // check violation
        check("54000", Refused); // program limit exceeded (index row size)
        check("54001", Refused); // statement too complex (nesting, stack depth)
                                 // The database: try again later.
        check("08006", Outage); // connection failure
        check("08001", Outage);
        check("53100", Outage); // disk full
        check("53200", Outage); // out of memory
        check("53300", Outage); // too many connections
        check("57P01", Outage); // admin shutdown
        check("57014", Outage); // query canceled
        check("58030", Outage); // I/O error
        check("40001", Outage); // serialization failure
        check("40P01", Outage); // deadlock
        check("55P03", Outage); // lock not available
        check("25006", Outage); // read-only transaction (a standby after failover)
        check("42P01", Outage); // undefined table (dropped under the store)
        check("42501", Outage); // insufficient privilege
        check("XX000", Outage); // internal error
        check("", Outage);
        check("2", Outage);
        check("é2000", Outage);
    }

    #[test]
    fn sqlite_codes() {
        use rusqlite::ErrorCode::*;
        let check = |code: rusqlite::ErrorCode, expected: Fault| {
            assert_eq!(Fault::of_sqlite(code), expected, "{code:?}");
        };
        check(ConstraintViolation, Fault::Refused);
        check(TooBig, Fault::Refused);
        check(TypeMismatch, Fault::Refused);
        for code in [
            DatabaseBusy,
            DatabaseLocked,
            SystemIoFailure,
            DiskFull,
            ReadOnly,
            CannotOpen,
            DatabaseCorrupt,
            NotADatabase,
            OutOfMemory,
            PermissionDenied,
            SchemaChanged,
            OperationInterrupted,
            Unknown,
        ] {
            check(code, Fault::Outage);
        }
    }

    /// The ranges a test database was given, in order.
    type Calls = std::rc::Rc<std::cell::RefCell<Vec<Range<usize>>>>;

    #[allow(clippy::type_complexity)] // a test's closure and its log
    /// A database that refuses the rows in `bad` and fails with an outage on the write
    /// number `down_at`, if any; it records every range it was given.
    fn database(
        bad: &'static [usize],
        down_at: Option<usize>,
    ) -> (
        impl FnMut(Range<usize>) -> Result<usize, (Fault, Range<usize>)>,
        Calls,
    ) {
        let calls = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let seen = calls.clone();
        let write = move |range: Range<usize>| {
            seen.borrow_mut().push(range.clone());
            if Some(seen.borrow().len()) == down_at {
                return Err((Fault::Outage, range));
            }
            if bad.iter().any(|b| range.contains(b)) {
                Err((Fault::Refused, range))
            } else {
                Ok(range.len())
            }
        };
        (write, calls)
    }

    #[test]
    fn sifting_finds_the_refused_rows() {
        // (rows, refused) -> (written, refused, at most this many writes)
        let check = |n: usize, bad: &'static [usize], max_writes: usize| {
            let (write, calls) = database(bad, None);
            let sifted = sift(n, write, |e| e.0).unwrap();
            let refused: Vec<usize> = sifted.refused.iter().map(|(i, _)| *i).collect();
            assert_eq!(refused, bad, "{n} {bad:?}");
            assert_eq!(sifted.written, n - bad.len(), "{n} {bad:?}");
            let writes = calls.borrow().len();
            assert!(writes <= max_writes, "{n} {bad:?}: {writes} writes");
        };
        check(0, &[], 0);
        check(1, &[], 1);
        check(500, &[], 1);
        check(1, &[0], 1);
        check(2, &[1], 3);
        check(500, &[0], 2 * 9 + 1);
        check(500, &[499], 2 * 9 + 1);
        check(500, &[3, 250, 251, 498], 4 * 2 * 9 + 1);
        check(7, &[0, 1, 2, 3, 4, 5, 6], 13);
    }

    #[test]
    fn an_outage_stops_sifting() {
        // The second write (the first half) fails as an outage: the error is returned.
        let (write, calls) = database(&[5], Some(2));
        let e = sift(10, write, |e| e.0).unwrap_err();
        assert_eq!(e, (Fault::Outage, 0..5));
        assert_eq!(calls.borrow().len(), 2);
        // The first write fails as an outage: nothing else is tried.
        let (write, calls) = database(&[], Some(1));
        assert!(sift(10, write, |e| e.0).is_err());
        assert_eq!(calls.borrow().len(), 1);
        assert_eq!(calls.borrow()[0], 0..10);
    }
}
