//! A test's own corner of the broker: unique names ([`Names`]), and a [`Bus`] that declares
//! an exchange, hands out connections and queues, and deletes all of it at the end.

use std::cell::RefCell;
use std::time::Duration;

use pubsub_amqp::{AmqpConfig, Channel, Connection, ExchangeConfig, Properties, QueueConfig};

use crate::unique;

/// How long [`Bus::publish_raw`] waits for the broker's confirm.
const CONFIRM_WAIT: Duration = Duration::from_secs(10);

/// The names of one exchange and one queue: `<base>.x` and `<base>.q`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// The exchange.
    pub exchange: String,
    /// The queue.
    pub queue: String,
}

impl Names {
    /// Names no other test (or run) uses: under [`unique`]`(prefix)`.
    pub fn unique(prefix: &str) -> Names {
        Names::under(&unique(prefix))
    }

    /// `<base>.x` and `<base>.q`.
    pub fn under(base: &str) -> Names {
        Names {
            exchange: format!("{base}.x"),
            queue: format!("{base}.q"),
        }
    }

    /// Declares the exchange (durable topic), the queue with `queue_config`, and binds the
    /// queue to the exchange with `#`.
    ///
    /// # Errors
    ///
    /// The broker's refusal, e.g. [`pubsub_amqp::Error::Inequivalent`] when one of them exists
    /// with other settings.
    pub fn declare(
        &self,
        channel: &Channel,
        queue_config: &QueueConfig,
    ) -> pubsub_amqp::Result<()> {
        channel.declare_exchange(&self.exchange, &ExchangeConfig::default())?;
        channel.declare_queue(&self.queue, queue_config)?;
        channel.bind_queue(&self.queue, &self.exchange, "#")
    }
}

/// A test's own exchange on the broker under test, an admin connection, and, when dropped,
/// the deletion of that exchange and of every queue and exchange named through the bus.
///
/// It panics where a test would fail: a broker that refuses a declaration, or a queue that
/// does not exist when it should.
///
/// # Example
///
/// ```no_run
/// use pubsub_amqp::QueueConfig;
///
/// let Some(mut bus) = pubsub_testkit::Bus::new("orders") else { return };
/// let queue = bus.bound_queue("billing", "order.*", &QueueConfig::default());
/// // ... publish to `bus.exchange()` with a connection from `bus.connection()` ...
/// assert_eq!(bus.ready(&queue), Some(0));
/// // The queue and the exchange are deleted when `bus` goes out of scope.
/// ```
pub struct Bus {
    config: AmqpConfig,
    exchange: String,
    /// Declared first, dropped first: the channel before its connection.
    admin: Channel,
    connection: RefCell<Connection>,
    queues: Vec<String>,
    exchanges: Vec<String>,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("exchange", &self.exchange)
            .field("queues", &self.queues)
            .field("exchanges", &self.exchanges)
            .finish_non_exhaustive()
    }
}

impl Bus {
    /// Connects to the [`broker`](crate::broker) under test and declares a new exchange
    /// (durable topic, named [`unique`]`(prefix)`). `None` when the broker is not there and
    /// the test should skip.
    ///
    /// # Panics
    ///
    /// As [`broker`](crate::broker), and when the connection or the declaration fails.
    pub fn new(prefix: &str) -> Option<Bus> {
        let config = crate::broker()?;
        let mut connection = Connection::open(&config).expect("connect to the broker under test");
        let admin = connection.open_channel().expect("open an admin channel");
        let exchange = unique(prefix);
        admin
            .declare_exchange(&exchange, &ExchangeConfig::default())
            .expect("declare the test's exchange");
        Some(Bus {
            config,
            exchange: exchange.clone(),
            admin,
            connection: RefCell::new(connection),
            queues: Vec::new(),
            exchanges: vec![exchange],
        })
    }

    /// The broker's configuration.
    pub fn config(&self) -> &AmqpConfig {
        &self.config
    }

    /// The bus's exchange.
    pub fn exchange(&self) -> &str {
        &self.exchange
    }

    /// The admin channel, for what a test does by hand (consume, get, publish).
    pub fn admin(&self) -> &Channel {
        &self.admin
    }

    /// A new connection to the broker, e.g. for a publisher or a subscriber.
    ///
    /// # Panics
    ///
    /// When the broker refuses it.
    pub fn connection(&self) -> Connection {
        Connection::open(&self.config).expect("connect to the broker under test")
    }

    /// A new unique queue name, deleted at the end (the queue is not declared).
    pub fn queue_name(&mut self, prefix: &str) -> String {
        let queue = unique(prefix);
        self.delete_queue_at_end(&queue);
        queue
    }

    /// A new unique exchange name, deleted at the end (the exchange is not declared).
    pub fn exchange_name(&mut self, prefix: &str) -> String {
        let exchange = unique(prefix);
        self.exchanges.push(exchange.clone());
        exchange
    }

    /// Deletes `queue` at the end too: for the queues a test makes under names derived from
    /// its own (a subscriber's dead-letter and retry queues).
    pub fn delete_queue_at_end(&mut self, queue: &str) {
        if !self.queues.iter().any(|q| q == queue) {
            self.queues.push(queue.to_owned());
        }
    }

    /// A new queue, declared with `config` and bound to the bus's exchange with
    /// `binding_key`; deleted at the end.
    ///
    /// # Panics
    ///
    /// When the broker refuses the declaration or the binding.
    pub fn bound_queue(&mut self, prefix: &str, binding_key: &str, config: &QueueConfig) -> String {
        let queue = self.queue_name(prefix);
        self.admin
            .declare_queue(&queue, config)
            .expect("declare the test's queue");
        self.admin
            .bind_queue(&queue, &self.exchange, binding_key)
            .expect("bind the test's queue");
        queue
    }

    /// How many messages are ready in `queue`, or `None` if it does not exist.
    ///
    /// Asked on a channel of its own: the broker closes the channel that asks about a missing
    /// queue.
    ///
    /// # Panics
    ///
    /// When the broker is gone.
    pub fn ready(&self, queue: &str) -> Option<u32> {
        let channel = self
            .connection
            .borrow_mut()
            .open_channel()
            .expect("open a channel");
        let ready = channel
            .queue_info(queue)
            .ok()
            .map(|info| info.message_count);
        // A channel closed by a missing queue is already gone.
        let _ = channel.close();
        ready
    }

    /// Publishes `body` to `exchange` and waits for the broker's confirm, on a channel of its
    /// own (a missing exchange closes it): for messages no publisher would send (poison
    /// messages, other applications' messages).
    ///
    /// # Panics
    ///
    /// When the publish fails or the broker does not confirm it.
    pub fn publish_raw(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: &Properties,
    ) {
        let channel = self
            .connection
            .borrow_mut()
            .open_channel()
            .expect("open a channel");
        let confirms = channel.enable_confirms().expect("enable confirms");
        channel
            .publish(exchange, routing_key, body, properties, false)
            .expect("publish");
        let confirm = confirms
            .recv_timeout(CONFIRM_WAIT)
            .expect("the channel is open")
            .expect("a confirm within 10 s");
        assert!(confirm.ack, "the broker nacked a message to `{exchange}`");
        let _ = channel.close();
    }

    /// Takes (and acks) every message ready in `queue`, in order.
    ///
    /// # Panics
    ///
    /// When the queue does not exist.
    pub fn drain(&self, queue: &str) -> Vec<Taken> {
        let mut taken = Vec::new();
        while let Some((mut delivery, _)) = self.admin.get(queue).expect("get from the queue") {
            taken.push(Taken {
                exchange: delivery.exchange().to_owned(),
                routing_key: delivery.routing_key().to_owned(),
                properties: delivery.properties(),
                body: delivery.take_body(),
            });
            self.admin.ack(delivery).expect("ack");
        }
        taken
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        // Each on a channel that is open: a failed test may have left the admin channel
        // closed, and a failed deletion closes its channel.
        let connection = self.connection.get_mut();
        let mut channel = None;
        let queues = self.queues.iter().map(|name| (false, name));
        for (exchange, name) in queues.chain(self.exchanges.iter().map(|name| (true, name))) {
            if channel.is_none() {
                channel = connection.open_channel().ok();
            }
            let Some(open) = &channel else { return };
            let deleted = if exchange {
                open.delete_exchange(name)
            } else {
                open.delete_queue(name).map(drop)
            };
            if deleted.is_err() {
                channel = None;
            }
        }
    }
}

/// A message taken from a queue by [`Bus::drain`].
#[derive(Debug, Clone, PartialEq)]
pub struct Taken {
    /// The exchange it was published to.
    pub exchange: String,
    /// Its routing key.
    pub routing_key: String,
    /// Its properties and headers.
    pub properties: Properties,
    /// Its body.
    pub body: Vec<u8>,
}
