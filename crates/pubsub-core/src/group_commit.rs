//! Group commit: handlers leave their database work open on the consumer's thread, and the
//! consumer commits all of it before it acks the deliveries, one commit for a batch of events
//! instead of one per event.
//!
//! The consumer (a subscriber running handlers on its own thread) [`enter`](Scope::enter)s a
//! [`Scope`] for its session, and calls [`Scope::commit`] before each ack: what handlers left
//! open is durable before any delivery it covers is acked. Dropping the scope (the session
//! ended on a failure) drops the open work, which rolls it back: its deliveries were not acked
//! either, and come back from the broker.
//!
//! A handler that writes to a database [`take`]s the work it left open on this thread (its
//! transaction), or opens new work, does its part, and [`leave`]s it open. Where no scope is
//! open (the handler runs on another thread, or in a test), `leave` hands the work back, and
//! the handler commits it at once: a handler is correct either way, and fast under a scope.
//!
//! ```
//! use pubsub_core::group_commit::{self, OpenWork, Scope, WorkError};
//!
//! /// A transaction, pretend: it counts the writes it holds.
//! struct Writes(u32);
//!
//! impl OpenWork for Writes {
//!     fn commit(self: Box<Self>) -> Result<(), WorkError> {
//!         println!("committing {} writes at once", self.0);
//!         Ok(())
//!     }
//! }
//!
//! /// One handler call: adds a write to the work open on this thread.
//! fn handle() -> Result<(), WorkError> {
//!     let mut work = group_commit::take::<Writes>("db").unwrap_or_else(|| Box::new(Writes(0)));
//!     work.0 += 1;
//!     match group_commit::leave("db", work) {
//!         Ok(()) => Ok(()),               // the consumer commits it before the ack
//!         Err(work) => work.commit(),     // no scope on this thread: commit now
//!     }
//! }
//!
//! let scope = Scope::enter().expect("no scope open on this thread yet");
//! for _ in 0..3 {
//!     handle()?;
//! }
//! assert_eq!(scope.commit()?, 1); // one commit, three writes
//! # Ok::<(), WorkError>(())
//! ```

use std::any::Any;
use std::cell::RefCell;
use std::fmt;
use std::marker::PhantomData;

/// The error of committing open work: a database driver's.
pub type WorkError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Work a handler left open in a [`Scope`]: a database transaction, committed by the consumer
/// before the deliveries it covers are acked. Dropping it without committing rolls it back.
pub trait OpenWork: Any {
    /// Makes the work durable.
    ///
    /// # Errors
    ///
    /// The database failed: nothing of the work is durable, and the consumer acks none of the
    /// deliveries it covers.
    fn commit(self: Box<Self>) -> Result<(), WorkError>;
}

/// An open scope: the work left open, by key, in the order it was left, and what runs once
/// all of it committed, by key.
#[derive(Default)]
struct Open {
    units: Vec<(String, Box<dyn OpenWork>)>,
    after: Vec<(String, Box<dyn FnOnce()>)>,
    /// A commit that failed: the scope's later commits fail with it.
    failed: Option<String>,
}

thread_local! {
    /// The open scope of this thread, if any.
    static OPEN: RefCell<Option<Open>> = const { RefCell::new(None) };
}

/// The consumer's side: open while a session runs on this thread. Not `Send`: it belongs to
/// the thread it was entered on.
pub struct Scope {
    _thread: PhantomData<*const ()>,
}

impl Scope {
    /// Opens a scope on this thread; `None` when one is open already (the outer one commits).
    pub fn enter() -> Option<Scope> {
        OPEN.with(|open| {
            let mut open = open.borrow_mut();
            if open.is_some() {
                return None;
            }
            *open = Some(Open::default());
            Some(Scope {
                _thread: PhantomData,
            })
        })
    }

    /// Commits the work left open, in the order it was left, then runs what waited for the
    /// commit ([`after_commit`]); returns how many units it committed. The scope stays open,
    /// empty.
    ///
    /// # Errors
    ///
    /// The first unit that fails to commit: the units after it are dropped (rolled back),
    /// what waited for the commit is dropped unrun, and the caller must not ack what they
    /// cover. The scope fails every later commit too, until it is dropped: what its session
    /// holds unacked must come back from the broker, so the session ends (a later flush, on
    /// its way out, must not ack it either).
    pub fn commit(&self) -> Result<usize, WorkError> {
        let taken = OPEN.with(|open| {
            open.borrow_mut().as_mut().map(|o| {
                (
                    std::mem::take(&mut o.units),
                    std::mem::take(&mut o.after),
                    o.failed.clone(),
                )
            })
        });
        let Some((units, after, failed)) = taken else {
            return Ok(0);
        };
        if let Some(failed) = failed {
            // What was left open since is dropped with `units`: rolled back.
            return Err(failed.into());
        }
        commit_units(units, after).inspect_err(fail_scope)
    }

    /// Whether nothing is left open, and nothing waits for a commit.
    pub fn is_empty(&self) -> bool {
        OPEN.with(|open| {
            open.borrow()
                .as_ref()
                .is_none_or(|o| o.units.is_empty() && o.after.is_empty() && o.failed.is_none())
        })
    }
}

impl Drop for Scope {
    /// Closes the scope; the work still open is dropped, which rolls it back.
    fn drop(&mut self) {
        // Taken out first: a unit's drop may log, or look at the scope.
        let work = OPEN.with(|open| open.borrow_mut().take());
        drop(work);
    }
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let open = OPEN.with(|open| open.borrow().as_ref().map_or(0, |o| o.units.len()));
        f.debug_struct("Scope").field("open", &open).finish()
    }
}

/// Commits `units` in order, then runs `after`; the first failure drops the rest.
fn commit_units(
    units: Vec<(String, Box<dyn OpenWork>)>,
    after: Vec<(String, Box<dyn FnOnce()>)>,
) -> Result<usize, WorkError> {
    let count = units.len();
    for (_, unit) in units {
        unit.commit()?;
    }
    for (_, then) in after {
        then();
    }
    Ok(count)
}

/// Commits the work open on this thread's scope now, from inside a handler (before a long
/// step, so that what the batch holds does not wait for it); returns how many units it
/// committed, 0 without a scope. Committing early is always safe: the consumer acks later.
///
/// # Errors
///
/// A unit failed to commit: the rest are dropped (rolled back), and the scope's later
/// commits fail too ([`Scope::commit`]), so that the consumer acks none of what they covered.
pub fn commit_now() -> Result<usize, WorkError> {
    let taken = OPEN.with(|open| {
        open.borrow_mut()
            .as_mut()
            .map(|o| (std::mem::take(&mut o.units), std::mem::take(&mut o.after)))
    });
    let Some((units, after)) = taken else {
        return Ok(0);
    };
    commit_units(units, after).inspect_err(fail_scope)
}

/// Marks this thread's scope failed by `e`: its later commits fail with it.
fn fail_scope(e: &WorkError) {
    let message = format!("an earlier commit of the batch failed: {e}");
    OPEN.with(|open| {
        if let Some(open) = open.borrow_mut().as_mut() {
            open.failed.get_or_insert(message);
        }
    });
}

/// Whether a scope is open on this thread.
pub fn in_scope() -> bool {
    OPEN.with(|open| open.borrow().is_some())
}

/// Takes the work of type `W` left open under `key` on this thread's scope, if any: the
/// handler adds to it, then [`leave`]s it again. `None`: no scope, or no such work yet.
pub fn take<W: OpenWork>(key: &str) -> Option<Box<W>> {
    OPEN.with(|open| {
        let mut open = open.borrow_mut();
        let work = &mut open.as_mut()?.units;
        let at = work
            .iter()
            .position(|(k, unit)| k == key && <dyn Any>::is::<W>(unit.as_ref() as &dyn Any))?;
        let (_, unit) = work.remove(at);
        let unit: Box<dyn Any> = unit;
        unit.downcast::<W>().ok()
    })
}

/// Leaves `work` open under `key` on this thread's scope, for the consumer to commit before
/// its next ack.
///
/// # Errors
///
/// No scope is open on this thread: the work comes back, and the caller commits it now.
pub fn leave<W: OpenWork>(key: &str, work: Box<W>) -> Result<(), Box<W>> {
    OPEN.with(|open| {
        let mut open = open.borrow_mut();
        match open.as_mut() {
            Some(open) => {
                open.units.push((key.to_owned(), work));
                Ok(())
            }
            None => Err(work),
        }
    })
}

/// Runs `then` once the work open on this thread's scope has committed (an in-process
/// wake-up: a relay told that rows it publishes are there), once per `key` and commit: a
/// second `then` under the same key replaces the first. Dropped unrun if the commit fails.
///
/// # Errors
///
/// No scope is open on this thread: `then` comes back, unrun.
pub fn after_commit<F: FnOnce() + 'static>(key: &str, then: F) -> Result<(), F> {
    OPEN.with(|open| {
        let mut open = open.borrow_mut();
        let Some(open) = open.as_mut() else {
            return Err(then);
        };
        match open.after.iter_mut().find(|(k, _)| k == key) {
            Some((_, slot)) => *slot = Box::new(then),
            None => open.after.push((key.to_owned(), Box::new(then))),
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    /// Work that records what became of it.
    struct Probe {
        name: &'static str,
        log: Rc<RefCell<Vec<String>>>,
        fail: bool,
        done: bool,
    }

    impl Probe {
        fn new(name: &'static str, log: &Rc<RefCell<Vec<String>>>, fail: bool) -> Box<Probe> {
            Box::new(Probe {
                name,
                log: log.clone(),
                fail,
                done: false,
            })
        }
    }

    impl OpenWork for Probe {
        fn commit(mut self: Box<Self>) -> Result<(), WorkError> {
            self.done = true;
            self.log.borrow_mut().push(format!("commit {}", self.name));
            if self.fail {
                Err("disk full".into())
            } else {
                Ok(())
            }
        }
    }

    impl Drop for Probe {
        fn drop(&mut self) {
            if !self.done {
                self.log
                    .borrow_mut()
                    .push(format!("rollback {}", self.name));
            }
        }
    }

    #[test]
    fn without_a_scope_the_work_comes_back() {
        let log = Rc::default();
        assert!(!in_scope());
        assert!(take::<Probe>("a").is_none());
        let back = leave("a", Probe::new("a", &log, false));
        assert!(back.is_err());
    }

    #[test]
    fn work_left_open_is_taken_again_and_committed_once() {
        let log = Rc::new(RefCell::new(Vec::new()));
        let scope = Scope::enter().unwrap();
        assert!(Scope::enter().is_none(), "one scope per thread");
        assert!(leave("a", Probe::new("a", &log, false)).is_ok());
        assert!(leave("b", Probe::new("b", &log, false)).is_ok());
        let a = take::<Probe>("a").unwrap();
        assert!(take::<Probe>("a").is_none(), "taken: gone until left again");
        assert!(leave("a", a).is_ok());
        assert!(!scope.is_empty());
        assert_eq!(scope.commit().unwrap(), 2);
        assert!(scope.is_empty());
        assert_eq!(*log.borrow(), ["commit b", "commit a"]);
        assert_eq!(scope.commit().unwrap(), 0);
    }

    #[test]
    fn a_failed_commit_rolls_back_the_rest() {
        let log = Rc::new(RefCell::new(Vec::new()));
        let scope = Scope::enter().unwrap();
        assert!(leave("a", Probe::new("a", &log, true)).is_ok());
        assert!(leave("b", Probe::new("b", &log, false)).is_ok());
        assert!(scope.commit().is_err());
        assert_eq!(*log.borrow(), ["commit a", "rollback b"]);
        // Nothing commits in this scope again: what its session holds must not be acked.
        assert!(leave("c", Probe::new("c", &log, false)).is_ok());
        assert!(scope.commit().is_err());
        assert!(!scope.is_empty());
        assert_eq!(*log.borrow(), ["commit a", "rollback b", "rollback c"]);
        drop(scope);
        let scope = Scope::enter().unwrap();
        assert_eq!(scope.commit().unwrap(), 0, "a new scope starts clean");
    }

    #[test]
    fn what_waits_for_the_commit_runs_after_it_once_per_key() {
        let log = Rc::new(RefCell::new(Vec::new()));
        assert!(after_commit("wake", || ()).is_err(), "no scope");
        let scope = Scope::enter().unwrap();
        assert!(leave("a", Probe::new("a", &log, false)).is_ok());
        for n in 0..3 {
            let l = log.clone();
            assert!(after_commit("wake", move || l.borrow_mut().push(format!("wake {n}"))).is_ok());
        }
        assert!(!scope.is_empty());
        scope.commit().unwrap();
        assert_eq!(*log.borrow(), ["commit a", "wake 2"]);
        // A failed commit runs nothing.
        assert!(leave("b", Probe::new("b", &log, true)).is_ok());
        let l = log.clone();
        assert!(after_commit("wake", move || l.borrow_mut().push("late".into())).is_ok());
        assert!(scope.commit().is_err());
        assert_eq!(*log.borrow(), ["commit a", "wake 2", "commit b"]);
    }

    #[test]
    fn a_commit_from_inside_a_handler_is_early_and_a_failed_one_fails_the_scope() {
        let log = Rc::new(RefCell::new(Vec::new()));
        assert_eq!(commit_now().unwrap(), 0, "no scope: nothing");
        let scope = Scope::enter().unwrap();
        assert!(leave("a", Probe::new("a", &log, false)).is_ok());
        assert_eq!(commit_now().unwrap(), 1);
        assert!(scope.is_empty());
        assert!(leave("b", Probe::new("b", &log, true)).is_ok());
        assert!(commit_now().is_err());
        assert!(!scope.is_empty(), "the failure waits for the consumer");
        assert!(scope.commit().is_err(), "the consumer acks nothing");
        assert!(scope.commit().is_err(), "nor later: its session must end");
        assert_eq!(*log.borrow(), ["commit a", "commit b"]);
    }

    #[test]
    fn a_closed_scope_rolls_back_what_is_open() {
        let log = Rc::new(RefCell::new(Vec::new()));
        let scope = Scope::enter().unwrap();
        assert!(leave("a", Probe::new("a", &log, false)).is_ok());
        drop(scope);
        assert_eq!(*log.borrow(), ["rollback a"]);
        assert!(!in_scope());
        assert!(Scope::enter().is_some(), "a new scope can open");
    }

    #[test]
    fn work_of_another_type_under_the_same_key_is_not_taken() {
        struct Other;
        impl OpenWork for Other {
            fn commit(self: Box<Self>) -> Result<(), WorkError> {
                Ok(())
            }
        }
        let _scope = Scope::enter().unwrap();
        assert!(leave("a", Box::new(Other)).is_ok());
        assert!(take::<Probe>("a").is_none());
        assert!(take::<Other>("a").is_some());
    }
}
