//! The publishing thread through a fake sink: batching, answers, panics and the end of the
//! thread, without a broker.

use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use pubsub_core::serde_json::json;

use super::*;

/// How long a test waits for something the thread should do at once.
const SOON: Duration = Duration::from_secs(10);

/// A sink that records each batch (the events' actions and correlation ids), then, while it
/// has a gate, waits on it; it refuses the events of domain `bad` (nacked) and panics on the
/// events of domain `boom`.
struct Fake {
    batches: Sender<Vec<(String, Option<String>)>>,
    gate: Option<Receiver<()>>,
    closed: Sender<()>,
}

impl Sink for Fake {
    fn publish_each(
        &mut self,
        events: &[Event],
        options: &[PublishOptions],
    ) -> Vec<Result<(), PublishError>> {
        assert_eq!(events.len(), options.len(), "one options per event");
        let seen = events
            .iter()
            .zip(options)
            .map(|(e, o)| (e.action().to_owned(), o.correlation_id.clone()))
            .collect();
        let _ = self.batches.send(seen);
        if let Some(gate) = &self.gate {
            if gate.recv_timeout(SOON).is_err() {
                self.gate = None;
            }
        }
        events
            .iter()
            .map(|e| match e.domain() {
                "bad" => Err(PublishError::new(e.clone(), Error::Nacked)),
                "boom" => panic!("the fake sink panics"),
                _ => Ok(()),
            })
            .collect()
    }

    fn close(self) -> Result<()> {
        let _ = self.closed.send(());
        Err(Error::Amqp(pubsub_amqp::Error::ConnectionLost {
            reason: "closed by the test".to_owned(),
        }))
    }
}

/// A running thread over a fake sink: its handle, the thread, its batches, its close, and
/// the gate (when asked for one).
struct Running {
    shared: SharedPublisher,
    thread: PublishingThread,
    batches: Receiver<Vec<(String, Option<String>)>>,
    closed: Receiver<()>,
    gate: Option<Sender<()>>,
}

fn start(gated: bool) -> Running {
    let (batches_tx, batches) = crossbeam_channel::unbounded();
    let (closed_tx, closed) = crossbeam_channel::unbounded();
    let (gate_tx, gate_rx) = crossbeam_channel::unbounded();
    let fake = Fake {
        batches: batches_tx,
        gate: gated.then_some(gate_rx),
        closed: closed_tx,
    };
    let (shared, thread) = spawn_serving(fake, 64, "pubsub-pub-test".to_owned()).unwrap();
    Running {
        shared,
        thread,
        batches,
        closed,
        gate: gated.then_some(gate_tx),
    }
}

impl Running {
    fn next_batch(&self) -> Vec<String> {
        let batch = self.batches.recv_timeout(SOON).expect("a batch");
        batch.into_iter().map(|(action, _)| action).collect()
    }

    /// Drops the handle and joins the thread: the close's result.
    fn stop(self) -> Result<()> {
        let Running { shared, thread, .. } = self;
        drop(shared);
        thread.join()
    }
}

fn event(domain: &str, action: &str) -> Event {
    Event::new(domain, action, json!({})).unwrap()
}

#[test]
fn a_publish_is_answered_with_its_outcome() {
    let running = start(false);
    assert!(running
        .shared
        .publish(event("order", "created"), PublishOptions::default())
        .is_ok());
    let refused = event("bad", "created");
    let failed = running
        .shared
        .publish(refused.clone(), PublishOptions::correlated("c-1"))
        .unwrap_err();
    assert!(matches!(failed.error(), Error::Nacked));
    assert_eq!(failed.event(), &refused);
    assert_eq!(running.next_batch(), ["created"]);
    let second = running.batches.recv_timeout(SOON).unwrap();
    assert_eq!(second, [("created".to_owned(), Some("c-1".to_owned()))]);
}

#[test]
fn queued_requests_share_one_batch() {
    let running = start(true);
    let gate = running.gate.clone().unwrap();
    // The first batch waits at the gate while three more requests queue.
    let first = running
        .shared
        .send(event("order", "a"), PublishOptions::default())
        .unwrap();
    assert_eq!(running.next_batch(), ["a"]);
    let queued: Vec<Receipt> = ["b", "c", "d"]
        .iter()
        .map(|action| {
            running
                .shared
                .send(event("order", action), PublishOptions::default())
                .unwrap()
        })
        .collect();
    gate.send(()).unwrap();
    gate.send(()).unwrap();
    assert!(first.wait().is_ok());
    for receipt in queued {
        assert!(receipt.wait().is_ok());
    }
    assert_eq!(running.next_batch(), ["b", "c", "d"]);
}

#[test]
fn a_batch_request_is_answered_per_event_in_order() {
    let running = start(false);
    let events = vec![event("order", "a"), event("bad", "b"), event("order", "c")];
    // Fewer options than events: the rest get the defaults.
    let outcomes = running
        .shared
        .publish_each(events.clone(), vec![PublishOptions::correlated("first")]);
    assert_eq!(outcomes.len(), 3);
    assert!(outcomes[0].is_ok() && outcomes[2].is_ok());
    assert_eq!(outcomes[1].as_ref().unwrap_err().event(), &events[1]);
    let batch = running.batches.recv_timeout(SOON).unwrap();
    let correlations: Vec<Option<&str>> = batch.iter().map(|(_, c)| c.as_deref()).collect();
    assert_eq!(correlations, [Some("first"), None, None]);
}

#[test]
fn an_empty_batch_request_is_answered() {
    let running = start(false);
    assert!(running
        .shared
        .publish_each(Vec::new(), Vec::new())
        .is_empty());
}

#[test]
fn a_request_larger_than_a_batch_is_not_split() {
    let running = start(false);
    let events: Vec<Event> = (0..MAX_BATCH + 10)
        .map(|_| event("order", "bulk"))
        .collect();
    let outcomes = running.shared.publish_each(events, Vec::new());
    assert_eq!(outcomes.len(), MAX_BATCH + 10);
    assert!(outcomes.iter().all(Result::is_ok));
    assert_eq!(running.next_batch().len(), MAX_BATCH + 10);
}

#[test]
fn after_a_panic_every_request_is_given_back() {
    let running = start(false);
    let boom = event("boom", "created");
    let failed = running
        .shared
        .publish(boom.clone(), PublishOptions::default())
        .unwrap_err();
    assert!(matches!(failed.error(), Error::PublisherGone));
    assert_eq!(failed.into_event(), boom);
    // The sink is not asked again.
    let later = event("order", "created");
    let failed = running
        .shared
        .publish(later.clone(), PublishOptions::default())
        .unwrap_err();
    assert!(matches!(failed.error(), Error::PublisherGone));
    assert_eq!(failed.into_event(), later);
    let outcomes = running
        .shared
        .publish_each(vec![event("order", "a"), event("order", "b")], Vec::new());
    assert!(outcomes.iter().all(|o| matches!(
        o.as_ref().map_err(PublishError::error),
        Err(Error::PublisherGone)
    )));
    assert_eq!(running.batches.len(), 1, "only the batch that panicked");
    // The thread still ends and closes its connection.
    let closed = running.closed.clone();
    assert!(running.stop().is_err());
    assert!(closed.try_recv().is_ok());
}

#[test]
fn the_thread_answers_what_is_queued_then_ends_with_the_last_handle() {
    let running = start(true);
    let gate = running.gate.clone().unwrap();
    let other = running.shared.clone();
    let receipts: Vec<Receipt> = (0..5)
        .map(|i| {
            other
                .send(event("order", &format!("e{i}")), PublishOptions::default())
                .unwrap()
        })
        .collect();
    drop(other);
    let closed = running.closed.clone();
    // Every handle is gone, but five requests are queued: they are published and answered
    // before the thread closes its connection.
    let stopping = std::thread::spawn(move || running.stop());
    assert!(closed.try_recv().is_err());
    for _ in 0..5 {
        let _ = gate.send(());
    }
    for receipt in receipts {
        assert!(receipt.wait().is_ok());
    }
    let joined = stopping.join().unwrap();
    assert!(matches!(
        joined,
        Err(Error::Amqp(pubsub_amqp::Error::ConnectionLost { .. }))
    ));
    assert!(closed.try_recv().is_ok());
}

#[test]
fn a_receipt_is_ready_once_answered() {
    let running = start(true);
    let receipt = running
        .shared
        .send(event("order", "created"), PublishOptions::default())
        .unwrap();
    assert!(!receipt.is_ready());
    running.gate.as_ref().unwrap().send(()).unwrap();
    let deadline = Instant::now() + SOON;
    while !receipt.is_ready() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(receipt.is_ready());
    assert!(receipt.wait().is_ok());
}

#[test]
fn requests_to_a_thread_that_is_gone_give_the_events_back() {
    let (tx, rx) = crossbeam_channel::bounded(1);
    drop(rx);
    let shared = SharedPublisher { tx };
    let lone = event("order", "created");
    let failed = shared
        .send(lone.clone(), PublishOptions::default())
        .unwrap_err();
    assert!(matches!(failed.error(), Error::PublisherGone));
    assert_eq!(failed.into_event(), lone);
    let events = vec![event("order", "a"), event("order", "b")];
    let outcomes = shared.publish_each(events.clone(), Vec::new());
    let given_back: Vec<Event> = outcomes
        .into_iter()
        .map(|o| o.unwrap_err().into_event())
        .collect();
    assert_eq!(given_back, events);
}

#[test]
fn answers_go_to_each_caller_in_order() {
    let mut batch = Batch::default();
    let (one_tx, one) = crate::answer::pair();
    let (many_tx, many) = crate::answer::pair();
    let (dropped_tx, dropped) = crate::answer::pair::<Result<(), PublishError>>();
    let (last_tx, last) = crate::answer::pair();
    let e = |action: &str| event("order", action);
    let taken = [
        batch.take(Command::One {
            event: e("a"),
            options: PublishOptions::default(),
            reply: one_tx,
        }),
        batch.take(Command::Many {
            events: vec![e("b"), e("c")],
            options: Vec::new(),
            reply: many_tx,
        }),
        batch.take(Command::One {
            event: e("d"),
            options: PublishOptions::default(),
            reply: dropped_tx,
        }),
        batch.take(Command::One {
            event: e("e"),
            options: PublishOptions::default(),
            reply: last_tx,
        }),
    ];
    assert_eq!(taken, [1, 2, 1, 1]);
    assert_eq!(batch.events.len(), 5);
    assert_eq!(batch.options.len(), 5);
    // A caller that stopped waiting does not keep the others from their answers.
    drop(dropped);
    let refused = |action: &str| Err(PublishError::new(e(action), Error::Nacked));
    batch.answer(vec![Ok(()), refused("b"), Ok(()), Ok(()), refused("e")]);
    assert!(one.is_ready() && many.is_ready() && last.is_ready());
    assert!(one.wait().unwrap().is_ok());
    let both = many.wait().unwrap();
    assert_eq!(both.len(), 2);
    assert!(both[0].is_err() && both[1].is_ok());
    assert_eq!(last.wait().unwrap().unwrap_err().event().action(), "e");
    assert!(batch.events.is_empty() && batch.options.is_empty() && batch.replies.is_empty());
}

/// Runs `future` to completion on this thread: a minimal executor that parks until woken
/// (the receipts name no runtime).
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        std::thread::park();
    }
}

#[test]
fn receipts_are_futures_resolved_by_the_thread_on_any_executor() {
    let running = start(true);
    let gate = running.gate.clone().unwrap();
    let one = running
        .shared
        .send(event("order", "created"), PublishOptions::default())
        .unwrap();
    let refused = running
        .shared
        .send(event("bad", "created"), PublishOptions::default())
        .unwrap();
    let many = running.shared.send_each(
        vec![event("order", "a"), event("bad", "b")],
        vec![PublishOptions::default()],
    );
    // The thread answers from its own side while this thread is parked in the executor.
    let opener = std::thread::spawn(move || {
        for _ in 0..3 {
            let _ = gate.send(());
        }
    });
    let (one, refused, many) = block_on(async { (one.await, refused.await, many.await) });
    opener.join().unwrap();
    assert!(one.is_ok());
    assert!(matches!(refused.unwrap_err().error(), Error::Nacked));
    assert_eq!(many.len(), 2);
    assert!(many[0].is_ok() && many[1].is_err());
    // A batch to a thread that is gone resolves at once, with every event given back.
    let (tx, rx) = crossbeam_channel::bounded(1);
    drop(rx);
    let gone = SharedPublisher { tx }.send_each(vec![event("order", "c")], Vec::new());
    assert!(matches!(
        block_on(gone)[0].as_ref().unwrap_err().error(),
        Error::PublisherGone
    ));
    let _ = running.stop();
}
