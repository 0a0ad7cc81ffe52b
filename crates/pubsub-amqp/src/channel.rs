//! [`Channel`]: topology, publishing, consuming and acknowledgements on one AMQP channel.

use std::cell::Cell;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use amiquip::{
    ConsumerMessage, ConsumerOptions, ExchangeDeclareOptions, FieldTable, Publish,
    QueueDeclareOptions, QueueDeleteOptions,
};
use crossbeam_channel::{select, Receiver, RecvTimeoutError, TryRecvError};

use crate::error::{from_amiquip, Error, Op, Result};
use crate::guard::GuardState;
use crate::properties::{table_to_amqp, value_from_amqp, HeaderValue, Properties};
use crate::topology::{ExchangeConfig, QueueConfig, QueueInfo};

/// How long [`Consumer::cancel`] waits for the end of the consumer's stream.
const CANCEL_WAIT: Duration = Duration::from_secs(5);

/// An AMQP channel. Like a [`Connection`](crate::Connection), it is `Send` but not `Sync`: the
/// thread that consumes on a channel is the one that acks on it.
///
/// A channel the broker closed because of an error (a missing exchange, inequivalent
/// arguments) stays closed: every later call fails, and a new channel must be opened.
pub struct Channel {
    inner: amiquip::Channel,
    guard: Arc<GuardState>,
}

impl Channel {
    pub(crate) fn new(inner: amiquip::Channel, guard: Arc<GuardState>) -> Self {
        Channel { inner, guard }
    }

    /// The channel's number on its connection.
    pub fn id(&self) -> u16 {
        self.inner.channel_id()
    }

    /// Declares an exchange (idempotent when it exists with the same settings).
    ///
    /// # Errors
    ///
    /// [`Error::Inequivalent`] if it exists with another kind or durability.
    pub fn declare_exchange(&self, name: &str, config: &ExchangeConfig) -> Result<()> {
        let options = ExchangeDeclareOptions {
            durable: config.durable,
            auto_delete: config.auto_delete,
            internal: false,
            arguments: FieldTable::new(),
        };
        self.inner
            .exchange_declare(config.kind.to_amqp(), name, options)
            .map(|_| ())
            .map_err(|e| from_amiquip(e, Op::Exchange(name)))
    }

    /// Checks that an exchange exists without declaring it.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if it does not (the channel is then closed).
    pub fn exchange_exists(&self, name: &str) -> Result<()> {
        self.inner
            .exchange_declare_passive(name)
            .map(|_| ())
            .map_err(|e| from_amiquip(e, Op::Exchange(name)))
    }

    /// Deletes an exchange.
    ///
    /// # Errors
    ///
    /// [`Error::ChannelClosed`] if the broker refuses.
    pub fn delete_exchange(&self, name: &str) -> Result<()> {
        self.inner
            .exchange_delete(name, false)
            .map_err(|e| from_amiquip(e, Op::Exchange(name)))
    }

    /// Declares a queue (idempotent when it exists with the same settings).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for settings the broker would refuse, and
    /// [`Error::Inequivalent`] naming the queue and the argument if it exists with other
    /// settings.
    pub fn declare_queue(&self, name: &str, config: &QueueConfig) -> Result<QueueInfo> {
        config.validate(name)?;
        let arguments = table_to_amqp(&config.arguments)?;
        let options = QueueDeclareOptions {
            durable: config.durable,
            exclusive: config.exclusive,
            auto_delete: config.auto_delete,
            arguments,
        };
        let queue = self
            .inner
            .queue_declare(name, options)
            .map_err(|e| from_amiquip(e, Op::Queue(name)))?;
        Ok(QueueInfo {
            message_count: queue.declared_message_count().unwrap_or(0),
            consumer_count: queue.declared_consumer_count().unwrap_or(0),
        })
    }

    /// Looks a queue up without declaring it.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if it does not exist (the channel is then closed).
    pub fn queue_info(&self, name: &str) -> Result<QueueInfo> {
        let queue = self
            .inner
            .queue_declare_passive(name)
            .map_err(|e| from_amiquip(e, Op::Queue(name)))?;
        Ok(QueueInfo {
            message_count: queue.declared_message_count().unwrap_or(0),
            consumer_count: queue.declared_consumer_count().unwrap_or(0),
        })
    }

    /// Binds a queue to an exchange with a binding key.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] or [`Error::ChannelClosed`] if the queue or exchange is missing.
    pub fn bind_queue(&self, queue: &str, exchange: &str, binding_key: &str) -> Result<()> {
        self.inner
            .queue_bind(queue, exchange, binding_key, FieldTable::new())
            .map_err(|e| from_amiquip(e, Op::Queue(queue)))
    }

    /// Removes a binding.
    ///
    /// # Errors
    ///
    /// [`Error::ChannelClosed`] if the broker refuses.
    pub fn unbind_queue(&self, queue: &str, exchange: &str, binding_key: &str) -> Result<()> {
        self.inner
            .queue_unbind(queue, exchange, binding_key, FieldTable::new())
            .map_err(|e| from_amiquip(e, Op::Queue(queue)))
    }

    /// Deletes a queue and returns how many messages it held.
    ///
    /// # Errors
    ///
    /// [`Error::ChannelClosed`] if the broker refuses.
    pub fn delete_queue(&self, name: &str) -> Result<u32> {
        self.inner
            .queue_delete(name, QueueDeleteOptions::default())
            .map_err(|e| from_amiquip(e, Op::Queue(name)))
    }

    /// Removes every ready message from a queue and returns how many there were.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if the queue does not exist.
    pub fn purge_queue(&self, name: &str) -> Result<u32> {
        self.inner
            .queue_purge(name)
            .map_err(|e| from_amiquip(e, Op::Queue(name)))
    }

    /// Limits the unacknowledged deliveries the broker sends to each consumer of this channel.
    ///
    /// # Errors
    ///
    /// [`Error::ConnectionLost`] if the connection is gone.
    pub fn set_prefetch(&self, prefetch: u16) -> Result<()> {
        self.inner
            .qos(0, prefetch, false)
            .map_err(|e| from_amiquip(e, Op::Other))
    }

    /// Turns publisher confirms on and returns the stream of the broker's confirms. Delivery
    /// tags start at 1 and count every publish on this channel from now on.
    ///
    /// # Errors
    ///
    /// [`Error::ConnectionLost`] if the connection is gone.
    pub fn enable_confirms(&self) -> Result<Confirms> {
        let rx = self
            .inner
            .listen_for_publisher_confirms()
            .map_err(|e| from_amiquip(e, Op::Other))?;
        self.inner
            .enable_publisher_confirms()
            .map_err(|e| from_amiquip(e, Op::Other))?;
        Ok(Confirms { rx })
    }

    /// Why a channel with confirms on stopped confirming: the broker's channel exception
    /// (e.g. [`Error::NotFound`] for a publish to a missing exchange), or
    /// [`Error::ConnectionLost`].
    ///
    /// Call it after [`Confirms`] reported the channel gone. It makes one round trip
    /// (`confirm.select`, harmless on a channel in confirm mode); on a live channel it returns
    /// a [`Error::ChannelClosed`] saying nothing was wrong.
    pub fn why_closed(&self) -> Error {
        match self.inner.enable_publisher_confirms() {
            Ok(()) => Error::ChannelClosed {
                code: 0,
                message: "the channel is still open".to_owned(),
            },
            Err(e) => from_amiquip(e, Op::Other),
        }
    }

    /// Returns the stream of messages the broker returns as unroutable (published with
    /// `mandatory` and matching no queue).
    ///
    /// # Errors
    ///
    /// [`Error::ConnectionLost`] if the connection is gone.
    pub fn listen_for_returns(&self) -> Result<Returns> {
        let rx = self
            .inner
            .listen_for_returns()
            .map_err(|e| from_amiquip(e, Op::Other))?;
        Ok(Returns { rx })
    }

    /// Publishes a message. This does not wait for the broker: with confirms on, the confirm
    /// arrives on [`Confirms`]; without, the message may be lost if the connection fails.
    ///
    /// With `mandatory`, a message that matches no queue comes back on [`Returns`] (before
    /// its confirm).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidMessage`] for properties AMQP cannot carry, [`Error::ConnectionLost`] or
    /// [`Error::ChannelClosed`] if the channel is gone.
    pub fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: &Properties,
        mandatory: bool,
    ) -> Result<()> {
        if routing_key.len() > 255 {
            return Err(Error::InvalidMessage {
                field: "routing_key",
                message: format!(
                    "the routing key is {} bytes long; AMQP allows 255",
                    routing_key.len()
                ),
            });
        }
        let publish = Publish {
            body,
            routing_key: routing_key.to_owned(),
            mandatory,
            immediate: false,
            properties: properties.to_amqp()?,
        };
        self.inner
            .basic_publish(exchange, publish)
            .map_err(|e| from_amiquip(e, Op::Exchange(exchange)))
    }

    /// Starts consuming from a queue, with manual acknowledgements.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if the queue does not exist, [`Error::ChannelClosed`] (405) if it is
    /// exclusive to another connection.
    pub fn consume(&self, queue: &str, exclusive: bool) -> Result<Consumer<'_>> {
        let options = ConsumerOptions {
            no_ack: false,
            exclusive,
            ..ConsumerOptions::default()
        };
        let inner = self
            .inner
            .basic_consume(queue, options)
            .map_err(|e| from_amiquip(e, Op::Queue(queue)))?;
        Ok(Consumer {
            inner,
            channel_id: self.id(),
            guard: self.guard.clone(),
            cancelled: Cell::new(false),
        })
    }

    /// Takes one message from a queue, if there is one, without a consumer (`basic.get`). It
    /// must be acked, nacked or rejected like a consumed delivery.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if the queue does not exist.
    pub fn get(&self, queue: &str) -> Result<Option<(Delivery, u32)>> {
        let got = self
            .inner
            .basic_get(queue, false)
            .map_err(|e| from_amiquip(e, Op::Queue(queue)))?;
        Ok(got.map(|g| {
            let altered = self.guard.take(self.id(), g.delivery.delivery_tag());
            (
                Delivery {
                    inner: g.delivery,
                    channel_id: self.id(),
                    altered,
                },
                g.message_count,
            )
        }))
    }

    /// Acknowledges one delivery: the broker forgets the message.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidMessage`] if the delivery came from another channel,
    /// [`Error::ConnectionLost`] if the connection is gone (the broker will redeliver).
    pub fn ack(&self, delivery: Delivery) -> Result<()> {
        self.check(&delivery)?;
        delivery
            .inner
            .ack(&self.inner)
            .map_err(|e| from_amiquip(e, Op::Other))
    }

    /// Acknowledges this delivery and every earlier unacknowledged one on this channel.
    ///
    /// # Errors
    ///
    /// As [`ack`](Self::ack).
    pub fn ack_multiple(&self, delivery: Delivery) -> Result<()> {
        self.check(&delivery)?;
        delivery
            .inner
            .ack_multiple(&self.inner)
            .map_err(|e| from_amiquip(e, Op::Other))
    }

    /// Rejects one delivery; with `requeue` false the broker drops it or dead-letters it to
    /// the queue's dead-letter exchange, if it has one.
    ///
    /// # Errors
    ///
    /// As [`ack`](Self::ack).
    pub fn reject(&self, delivery: Delivery, requeue: bool) -> Result<()> {
        self.check(&delivery)?;
        delivery
            .inner
            .reject(&self.inner, requeue)
            .map_err(|e| from_amiquip(e, Op::Other))
    }

    /// Rejects this delivery and every earlier unacknowledged one on this channel.
    ///
    /// # Errors
    ///
    /// As [`ack`](Self::ack).
    pub fn nack_multiple(&self, delivery: Delivery, requeue: bool) -> Result<()> {
        self.check(&delivery)?;
        delivery
            .inner
            .nack_multiple(&self.inner, requeue)
            .map_err(|e| from_amiquip(e, Op::Other))
    }

    fn check(&self, delivery: &Delivery) -> Result<()> {
        if delivery.channel_id != self.id() {
            return Err(Error::InvalidMessage {
                field: "delivery",
                message: format!(
                    "delivery {} came on channel {} and cannot be settled on channel {}",
                    delivery.delivery_tag(),
                    delivery.channel_id,
                    self.id()
                ),
            });
        }
        Ok(())
    }

    /// Closes the channel; unacknowledged deliveries go back to their queues.
    ///
    /// # Errors
    ///
    /// [`Error::ConnectionLost`] or [`Error::ChannelClosed`] if it was already gone.
    pub fn close(self) -> Result<()> {
        self.inner.close().map_err(|e| from_amiquip(e, Op::Other))
    }
}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel").field("id", &self.id()).finish()
    }
}

/// A consumer on a queue: the deliveries, and how it ended.
///
/// Dropping it cancels it.
pub struct Consumer<'ch> {
    inner: amiquip::Consumer<'ch>,
    channel_id: u16,
    guard: Arc<GuardState>,
    cancelled: Cell<bool>,
}

/// What a consumer receives.
// Nearly every event is a delivery: boxing it would cost an allocation per message.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum ConsumerEvent {
    /// A message.
    Delivery(Delivery),
    /// The consumer was cancelled: by us, or by the broker (its queue was deleted, or it
    /// failed over).
    Cancelled {
        /// Whether the broker cancelled it.
        by_server: bool,
    },
    /// The channel or connection closed; no more deliveries will come.
    Closed(Error),
}

/// What [`Consumer::next_or`] saw first.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Next<T> {
    /// Something from the consumer.
    Event(ConsumerEvent),
    /// A message on the other channel (`None`: the other channel is disconnected).
    Other(Option<T>),
    /// Neither within the timeout.
    Timeout,
}

impl Consumer<'_> {
    /// The consumer tag the broker assigned.
    pub fn tag(&self) -> &str {
        self.inner.consumer_tag()
    }

    /// The next event if one is waiting, without blocking.
    pub fn try_next(&self) -> Option<ConsumerEvent> {
        match self.inner.receiver().try_recv() {
            Ok(message) => Some(self.convert(message)),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => Some(stream_ended()),
        }
    }

    /// The next event, waiting up to `timeout`; `None` if nothing came.
    pub fn next_timeout(&self, timeout: Duration) -> Option<ConsumerEvent> {
        match self.inner.receiver().recv_timeout(timeout) {
            Ok(message) => Some(self.convert(message)),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => Some(stream_ended()),
        }
    }

    /// Waits up to `timeout` for the next event or a message on `other` (a stop signal,
    /// say), whichever comes first.
    pub fn next_or<T>(&self, other: &Receiver<T>, timeout: Duration) -> Next<T> {
        select! {
            recv(self.inner.receiver()) -> message => match message {
                Ok(message) => Next::Event(self.convert(message)),
                Err(_) => Next::Event(stream_ended()),
            },
            recv(other) -> message => Next::Other(message.ok()),
            default(timeout) => Next::Timeout,
        }
    }

    /// How many deliveries are waiting in the client's buffer.
    pub fn buffered(&self) -> usize {
        self.inner.receiver().len()
    }

    /// Cancels the consumer: the broker sends no more deliveries. Deliveries not taken yet
    /// are left unacknowledged: the broker requeues them when the channel closes.
    ///
    /// # Errors
    ///
    /// [`Error::ConnectionLost`] if the connection is gone.
    pub fn cancel(&self) -> Result<()> {
        if self.cancelled.replace(true) {
            return Ok(());
        }
        self.inner
            .cancel()
            .map_err(|e| from_amiquip(e, Op::Other))?;
        // amiquip's I/O thread answers the cancel call first and only then tells the consumer
        // stream `ClientCancelled`; if the stream is dropped in between, that send fails and
        // the I/O thread kills the whole connection. Wait for the end of the stream, so that
        // dropping the consumer afterwards is safe.
        let deadline = Instant::now() + CANCEL_WAIT;
        while let Ok(message) = self.inner.receiver().recv_deadline(deadline) {
            if !matches!(message, ConsumerMessage::Delivery(_)) {
                break;
            }
        }
        Ok(())
    }

    fn convert(&self, message: ConsumerMessage) -> ConsumerEvent {
        match message {
            ConsumerMessage::Delivery(inner) => ConsumerEvent::Delivery(Delivery {
                altered: self.guard.take(self.channel_id, inner.delivery_tag()),
                inner,
                channel_id: self.channel_id,
            }),
            ConsumerMessage::ClientCancelled => ConsumerEvent::Cancelled { by_server: false },
            ConsumerMessage::ServerCancelled => ConsumerEvent::Cancelled { by_server: true },
            ConsumerMessage::ClientClosedChannel => ConsumerEvent::Closed(Error::ChannelClosed {
                code: 0,
                message: "the channel was closed by this client".to_owned(),
            }),
            ConsumerMessage::ClientClosedConnection => {
                ConsumerEvent::Closed(Error::ConnectionLost {
                    reason: "the connection was closed by this client".to_owned(),
                })
            }
            ConsumerMessage::ServerClosedChannel(e)
            | ConsumerMessage::ServerClosedConnection(e) => {
                ConsumerEvent::Closed(from_amiquip(e, Op::Other))
            }
        }
    }
}

impl Drop for Consumer<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.cancel() {
            log::debug!("cancelling a dropped consumer: {e}");
        }
    }
}

impl fmt::Debug for Consumer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("tag", &self.tag())
            .field("channel", &self.channel_id)
            .finish()
    }
}

fn stream_ended() -> ConsumerEvent {
    ConsumerEvent::Closed(Error::ConnectionLost {
        reason: crate::error::IO_THREAD_STOPPED.to_owned(),
    })
}

/// One delivered message, to be settled (acked, nacked or rejected) on the channel it came
/// on.
pub struct Delivery {
    inner: amiquip::Delivery,
    channel_id: u16,
    /// Why the frame guard altered the frames of this delivery, if it did.
    altered: Option<String>,
}

impl Delivery {
    /// The body.
    pub fn body(&self) -> &[u8] {
        &self.inner.body
    }

    /// Takes the body out, leaving the delivery (still to be settled) without it.
    pub fn take_body(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.inner.body)
    }

    /// The routing key it was published with.
    pub fn routing_key(&self) -> &str {
        &self.inner.routing_key
    }

    /// The exchange it was published to (empty: the default exchange).
    pub fn exchange(&self) -> &str {
        &self.inner.exchange
    }

    /// Whether the broker delivered it before to a consumer that did not ack it.
    pub fn redelivered(&self) -> bool {
        self.inner.redelivered
    }

    /// The delivery tag, unique on its channel.
    pub fn delivery_tag(&self) -> u64 {
        self.inner.delivery_tag()
    }

    /// The `content_type` property.
    pub fn content_type(&self) -> Option<&str> {
        self.inner.properties.content_type().as_deref()
    }

    /// The `correlation_id` property.
    pub fn correlation_id(&self) -> Option<&str> {
        self.inner.properties.correlation_id().as_deref()
    }

    /// The `app_id` property: the publishing application.
    pub fn app_id(&self) -> Option<&str> {
        self.inner.properties.app_id().as_deref()
    }

    /// The `message_id` property.
    pub fn message_id(&self) -> Option<&str> {
        self.inner.properties.message_id().as_deref()
    }

    /// The `timestamp` property, seconds since the Unix epoch.
    pub fn timestamp(&self) -> Option<u64> {
        *self.inner.properties.timestamp()
    }

    /// One header, if present.
    pub fn header(&self, name: &str) -> Option<HeaderValue> {
        self.inner
            .properties
            .headers()
            .as_ref()
            .and_then(|h| h.get(name))
            .map(value_from_amqp)
    }

    /// Every header (empty when there are none), without the other properties.
    pub fn headers(&self) -> crate::properties::Headers {
        self.inner
            .properties
            .headers()
            .as_ref()
            .map(crate::properties::table_from_amqp)
            .unwrap_or_default()
    }

    /// All the properties, including every header.
    pub fn properties(&self) -> Properties {
        Properties::from_amqp(&self.inner.properties)
    }

    /// Why the connection's frame guard had to alter this delivery before the AMQP client
    /// could read it (`routing key is not UTF-8`, `headers nested deeper than 32 levels`), or
    /// `None` for a delivery that arrived intact.
    ///
    /// The body of an altered delivery is the one that was published; its routing key or
    /// properties are not (bytes that are not UTF-8 were replaced, too deep a header was
    /// flattened, or an unreadable content header was replaced by an empty one). Treat it as
    /// poison: dead-letter it with this reason.
    pub fn alteration(&self) -> Option<&str> {
        self.altered.as_deref()
    }
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("delivery_tag", &self.delivery_tag())
            .field("routing_key", &self.routing_key())
            .field("redelivered", &self.redelivered())
            .field("body_len", &self.body().len())
            .finish()
    }
}

/// A broker's confirm of published messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Confirm {
    /// The delivery tag of the (last) message confirmed.
    pub delivery_tag: u64,
    /// Whether every earlier unconfirmed message is confirmed too.
    pub multiple: bool,
    /// `true` for ack (the broker took responsibility), `false` for nack (it did not).
    pub ack: bool,
}

/// The stream of confirms of a channel; see [`Channel::enable_confirms`].
pub struct Confirms {
    rx: Receiver<amiquip::Confirm>,
}

impl Confirms {
    /// The next confirm, waiting up to `timeout`; `Ok(None)` if none came in time.
    ///
    /// # Errors
    ///
    /// [`Error::ConnectionLost`] if the channel is gone (no confirm will ever come).
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Option<Confirm>> {
        match self.rx.recv_timeout(timeout) {
            Ok(c) => Ok(Some(convert_confirm(c))),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err(confirms_ended()),
        }
    }

    /// The next confirm if one is waiting.
    ///
    /// # Errors
    ///
    /// As [`recv_timeout`](Self::recv_timeout).
    pub fn try_recv(&self) -> Result<Option<Confirm>> {
        match self.rx.try_recv() {
            Ok(c) => Ok(Some(convert_confirm(c))),
            Err(TryRecvError::Empty) => Ok(None),
            Err(TryRecvError::Disconnected) => Err(confirms_ended()),
        }
    }
}

impl fmt::Debug for Confirms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Confirms")
            .field("pending", &self.rx.len())
            .finish()
    }
}

fn confirms_ended() -> Error {
    Error::ConnectionLost {
        reason: "the channel closed before the broker confirmed".to_owned(),
    }
}

fn convert_confirm(c: amiquip::Confirm) -> Confirm {
    match c {
        amiquip::Confirm::Ack(p) => Confirm {
            delivery_tag: p.delivery_tag,
            multiple: p.multiple,
            ack: true,
        },
        amiquip::Confirm::Nack(p) => Confirm {
            delivery_tag: p.delivery_tag,
            multiple: p.multiple,
            ack: false,
        },
    }
}

/// A message the broker returned as unroutable.
#[derive(Debug, Clone)]
pub struct Returned {
    /// The AMQP reply code (312 NO_ROUTE).
    pub reply_code: u16,
    /// The broker's text.
    pub reply_text: String,
    /// The exchange it was published to.
    pub exchange: String,
    /// Its routing key.
    pub routing_key: String,
    /// Its `message_id` property.
    pub message_id: Option<String>,
}

/// The stream of returned messages of a channel; see [`Channel::listen_for_returns`].
pub struct Returns {
    rx: Receiver<amiquip::Return>,
}

impl Returns {
    /// The next returned message, if one is waiting.
    pub fn try_recv(&self) -> Option<Returned> {
        self.rx.try_recv().ok().map(|r| Returned {
            reply_code: r.reply_code,
            reply_text: r.reply_text,
            exchange: r.exchange,
            routing_key: r.routing_key,
            message_id: r.properties.message_id().clone(),
        })
    }
}

impl fmt::Debug for Returns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Returns")
            .field("pending", &self.rx.len())
            .finish()
    }
}
