//! Async handlers (feature `tokio`): the [`AsyncEventHandler`] trait, closures as handlers
//! ([`async_handler_fn`]), and running the handlers of one delivery as the subscriber's
//! [`Dispatcher`](pubsub_subscriber::Dispatcher) asks: in order, each with the event as its
//! task's current one, a panic or an error isolated to its handler.

use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use pubsub_core::{Event, HandlerResult, Metadata};
use pubsub_registry::{subscription_id, HandlerFailure, HandlerOutcome, InvocationResult, Pattern};
use pubsub_subscriber::Job;

use crate::context::{Incoming, TASK_CURRENT};
use crate::metrics::Histogram;

/// The future an [`AsyncEventHandler`] returns: boxed, `Send`, owning what it needs.
pub type HandlerFuture = Pin<Box<dyn Future<Output = HandlerResult> + Send + 'static>>;

/// A handler whose work is async: it receives the event and its metadata (owned, so that the
/// future can keep them across `.await` points) and returns a future of its result.
///
/// Errors and panics are isolated to the handler, as with a blocking
/// [`EventHandler`](pubsub_core::EventHandler): the other handlers of the event still run,
/// and the delivery is retried for the ones that failed (a
/// [`Permanent`](pubsub_core::Permanent) error skips the retries).
pub trait AsyncEventHandler: Send + Sync + 'static {
    /// Handles one event.
    fn handle(&self, event: Event, meta: Metadata) -> HandlerFuture;

    /// The handler's name, in logs, metrics and retry state.
    fn name(&self) -> &str;
}

/// A closure as an [`AsyncEventHandler`], made by [`async_handler_fn`].
pub struct AsyncFnHandler<F> {
    name: String,
    f: F,
}

/// An async closure as a handler named `name`:
///
/// ```
/// use pubsub::async_handler_fn;
///
/// let audit = async_handler_fn("audit", |event, meta| async move {
///     log::info!("{event} from {:?}", meta.source());
///     Ok(())
/// });
/// # let _ = audit;
/// ```
pub fn async_handler_fn<F, Fut>(name: &str, f: F) -> AsyncFnHandler<F>
where
    F: Fn(Event, Metadata) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = HandlerResult> + Send + 'static,
{
    AsyncFnHandler {
        name: name.to_owned(),
        f,
    }
}

impl<F, Fut> AsyncEventHandler for AsyncFnHandler<F>
where
    F: Fn(Event, Metadata) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = HandlerResult> + Send + 'static,
{
    fn handle(&self, event: Event, meta: Metadata) -> HandlerFuture {
        Box::pin((self.f)(event, meta))
    }

    fn name(&self) -> &str {
        &self.name
    }
}

impl<F> fmt::Debug for AsyncFnHandler<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncFnHandler")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// One async handler subscribed to one pattern.
pub(crate) struct Subscription {
    pattern: Pattern,
    id: String,
    handler: Arc<dyn AsyncEventHandler>,
    /// Its durations, when metrics are on.
    durations: Option<Arc<Histogram>>,
}

/// The async handlers of a bus, in subscription order.
#[derive(Default)]
pub(crate) struct Handlers {
    subscriptions: Vec<Subscription>,
}

impl Handlers {
    /// Subscribes `handler` to `pattern`; the error says why not (an invalid pattern, or
    /// the same handler name on the same pattern twice).
    pub(crate) fn subscribe(
        &mut self,
        pattern: &str,
        handler: Arc<dyn AsyncEventHandler>,
        durations: Option<Arc<Histogram>>,
    ) -> Result<(), pubsub_registry::Error> {
        let pattern = Pattern::parse(pattern)?;
        let id = subscription_id(handler.name(), &pattern);
        if self.subscriptions.iter().any(|s| s.id == id) {
            return Err(pubsub_registry::Error::DuplicateSubscription {
                pattern: pattern.as_str().to_owned(),
                handler: handler.name().to_owned(),
            });
        }
        self.subscriptions.push(Subscription {
            pattern,
            id,
            handler,
            durations,
        });
        Ok(())
    }

    /// The binding keys the queue needs for every pattern.
    pub(crate) fn bindings(&self) -> Vec<String> {
        pubsub_registry::binding_keys(self.subscriptions.iter().map(|s| &s.pattern))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.subscriptions.is_empty()
    }

    /// Runs the handlers of `job`'s event that match its routing key and are not done with
    /// it yet, one after the other, each with the event as its task's current one; answers
    /// with how each fared. Dropped before it ends (cancelled, or its runtime shut down),
    /// the job answers by itself that the handlers did not finish.
    pub(crate) async fn run(&self, job: Job) {
        // The delivery's consumer span (`otel`): the handlers run in it.
        #[cfg(feature = "otel")]
        let span = job.span().cloned();
        let (event, meta, done_before, done) = job.into_parts();
        #[cfg(feature = "otel")]
        let result = self
            .invoke(&event, &meta, &done_before, span.as_ref())
            .await;
        #[cfg(not(feature = "otel"))]
        let result = self.invoke(&event, &meta, &done_before).await;
        done.finish(result);
    }

    /// Runs the handlers of `event` that match its routing key and are not in `done_before`,
    /// one after the other, each with the event as its task's current one (and, with
    /// `otel`, inside `span`); how each fared.
    pub(crate) async fn invoke(
        &self,
        event: &Event,
        meta: &Metadata,
        done_before: &[String],
        #[cfg(feature = "otel")] span: Option<&tracing::Span>,
    ) -> InvocationResult {
        let incoming = Incoming::of(event, meta);
        let mut outcomes = Vec::new();
        for sub in &self.subscriptions {
            if !sub.pattern.matches(event.routing_key()) || done_before.contains(&sub.id) {
                continue;
            }
            let running = sub.handler.handle(event.clone(), meta.clone());
            // The event is the task's current one while the handler runs (and only then).
            let scoped: HandlerFuture = Box::pin(TASK_CURRENT.scope(incoming.clone(), running));
            #[cfg(feature = "otel")]
            let scoped: HandlerFuture = match span {
                Some(span) => Box::pin(tracing::Instrument::instrument(scoped, span.clone())),
                None => scoped,
            };
            let started = sub.durations.is_some().then(Instant::now);
            let caught = CatchUnwind(scoped).await;
            if let (Some(durations), Some(started)) = (&sub.durations, started) {
                durations.observe(started.elapsed());
            }
            let result = match caught {
                Ok(Ok(())) => Ok(()),
                Ok(Err(error)) => {
                    log::warn!(
                        "handler `{}` failed on {event}: {error}",
                        sub.handler.name()
                    );
                    Err(HandlerFailure::returned(error))
                }
                Err(failure) => {
                    log::error!(
                        "handler `{}` panicked on {event}: {failure}",
                        sub.handler.name()
                    );
                    Err(failure)
                }
            };
            outcomes.push(HandlerOutcome::new(sub.handler.name(), &sub.id, result));
        }
        if outcomes.is_empty() {
            log::debug!("no async handler for {event}");
        }
        #[cfg(feature = "otel")]
        if let Some(span) = span {
            if outcomes.iter().any(|o| !o.is_ok()) {
                span.record("otel.status_code", "error");
            }
        }
        InvocationResult::from_outcomes(outcomes)
    }
}

impl fmt::Debug for Handlers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.subscriptions.iter().map(|s| &s.id))
            .finish()
    }
}

/// A future whose panic, while polled, becomes a [`HandlerFailure`] instead of unwinding
/// into the task (which would take the other handlers of the event with it).
struct CatchUnwind<F>(F);

impl<F: Future + Unpin> Future for CatchUnwind<F> {
    type Output = Result<F::Output, HandlerFailure>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = &mut self.0;
        match catch_unwind(AssertUnwindSafe(|| Pin::new(&mut *inner).poll(cx))) {
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => Poll::Ready(Err(HandlerFailure::from_panic(&*payload))),
        }
    }
}
