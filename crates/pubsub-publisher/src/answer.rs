//! A one-shot answer from the publishing thread to one caller, which the caller either waits
//! for (blocking its thread) or awaits (a [`Future`] on any executor: no runtime is named,
//! and awaiting never blocks the executor's thread).
//!
//! The thread holds the [`Answerer`]; the caller the [`Answer`]. An answerer dropped without
//! answering (a bug, or a thread that died) resolves the answer to `None`, so that no
//! caller waits for ever.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

/// Makes a pair: the thread answers through the first, the caller receives from the second.
pub(crate) fn pair<T>() -> (Answerer<T>, Answer<T>) {
    let slot = Arc::new(Slot {
        state: Mutex::new(State {
            value: None,
            closed: false,
            waiting: false,
            waker: None,
        }),
        ready: Condvar::new(),
    });
    (
        Answerer {
            slot: Some(slot.clone()),
        },
        Answer { slot },
    )
}

struct Slot<T> {
    state: Mutex<State<T>>,
    /// Signalled once the answer is there or the answerer is gone.
    ready: Condvar,
}

struct State<T> {
    value: Option<T>,
    /// The answerer is gone (answered or dropped).
    closed: bool,
    /// A thread blocks in `wait` (only then is the condition variable signalled: most
    /// answers come before anyone waits, and signalling costs a system call).
    waiting: bool,
    /// The task awaiting the answer, woken when it comes.
    waker: Option<Waker>,
}

impl<T> Slot<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        // The lock guards plain data and no code panics while holding it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stores `value` (if any), closes, and wakes whoever waits.
    fn close(&self, value: Option<T>) {
        let (waker, waiting) = {
            let mut state = self.lock();
            if value.is_some() {
                state.value = value;
            }
            state.closed = true;
            (state.waker.take(), state.waiting)
        };
        if waiting {
            self.ready.notify_all();
        }
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// The publishing thread's side: answers once.
pub(crate) struct Answerer<T> {
    slot: Option<Arc<Slot<T>>>,
}

impl<T> Answerer<T> {
    /// Hands `value` to the caller (a caller that stopped waiting is not an error).
    pub(crate) fn send(mut self, value: T) {
        if let Some(slot) = self.slot.take() {
            slot.close(Some(value));
        }
    }
}

impl<T> Drop for Answerer<T> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            slot.close(None);
        }
    }
}

/// The caller's side: the answer, or `None` if the answerer was dropped without one.
pub(crate) struct Answer<T> {
    slot: Arc<Slot<T>>,
}

impl<T> Answer<T> {
    /// Blocks this thread until the answer is there.
    pub(crate) fn wait(self) -> Option<T> {
        let mut state = self.slot.lock();
        while !state.closed {
            state.waiting = true;
            state = self
                .slot
                .ready
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        state.value.take()
    }

    /// Whether the answer is there (then [`wait`](Self::wait) returns at once).
    pub(crate) fn is_ready(&self) -> bool {
        self.slot.lock().closed
    }
}

impl<T> Future for Answer<T> {
    type Output = Option<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut state = self.slot.lock();
        if state.closed {
            return Poll::Ready(state.value.take());
        }
        match &mut state.waker {
            Some(waker) => waker.clone_from(cx.waker()),
            None => state.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl<T> fmt::Debug for Answer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Answer")
            .field("ready", &self.is_ready())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;
    use std::thread;
    use std::time::Duration;

    use super::*;

    /// Counts its wake-ups.
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn poll<T>(answer: &mut Answer<T>, count: &Arc<Count>) -> Poll<Option<T>> {
        let waker = Waker::from(count.clone());
        Pin::new(answer).poll(&mut Context::from_waker(&waker))
    }

    #[test]
    fn an_answer_sent_before_the_wait_is_there_at_once() {
        let (answerer, answer) = pair();
        assert!(!answer.is_ready());
        answerer.send(7);
        assert!(answer.is_ready());
        assert_eq!(answer.wait(), Some(7));
    }

    #[test]
    fn a_waiting_thread_gets_the_answer_sent_from_another() {
        let (answerer, answer) = pair();
        let waiter = thread::spawn(move || answer.wait());
        thread::sleep(Duration::from_millis(20));
        answerer.send("confirmed");
        assert_eq!(waiter.join().ok().flatten(), Some("confirmed"));
    }

    #[test]
    fn an_answerer_dropped_unanswered_resolves_to_none_for_both_sides() {
        let (answerer, answer) = pair::<u8>();
        let waiter = thread::spawn(move || answer.wait());
        thread::sleep(Duration::from_millis(20));
        drop(answerer);
        assert_eq!(waiter.join().ok(), Some(None));

        let (answerer, mut answer) = pair::<u8>();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        assert_eq!(poll(&mut answer, &count), Poll::Pending);
        drop(answerer);
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert_eq!(poll(&mut answer, &count), Poll::Ready(None));
    }

    #[test]
    fn a_polled_answer_wakes_its_task_once_when_answered() {
        let (answerer, mut answer) = pair();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        assert_eq!(poll(&mut answer, &count), Poll::Pending);
        // Polled again before the answer: one waker kept, not two.
        assert_eq!(poll(&mut answer, &count), Poll::Pending);
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
        answerer.send(3);
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert_eq!(poll(&mut answer, &count), Poll::Ready(Some(3)));
    }

    #[test]
    fn a_caller_that_stopped_waiting_does_not_trouble_the_answerer() {
        let (answerer, answer) = pair();
        drop(answer);
        answerer.send(1);
    }
}
