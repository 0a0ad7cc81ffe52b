//! The error type of this crate.

use std::fmt;

use pubsub_core::text::quote;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What the demo's handlers refuse, and what can go wrong building the demo's registry.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// An order asks for more of a product than is in stock.
    OutOfStock {
        /// The product (truncated).
        product_id: String,
        /// How many the order asks for, over all its lines.
        requested: u64,
        /// How many are in stock.
        available: u64,
    },
    /// An order names a product the inventory does not carry.
    UnknownProduct {
        /// The product (truncated).
        product_id: String,
    },
    /// A payment arrived for an order whose `order.created` has not been handled yet, so the
    /// customer's address is not known.
    UnknownOrder {
        /// The order (truncated).
        order_id: String,
    },
    /// A handler was given an event it is not written for (it is subscribed too widely).
    UnsupportedEvent {
        /// The handler's name.
        handler: &'static str,
        /// The event's routing key (truncated).
        routing_key: String,
    },
    /// A task's payload is not what the task needs.
    InvalidTask {
        /// The task's name.
        task: &'static str,
        /// What is wrong.
        message: &'static str,
    },
    /// A subscription of the demo's registry was refused.
    Registry(pubsub_registry::Error),
    /// An event's data is not what its type says.
    InvalidEvent {
        /// The decoding error.
        message: String,
    },
    /// The shop's database failed (its rows, or the outbox beside them).
    Database {
        /// What the shop was doing.
        doing: &'static str,
        /// The database's error, with its causes.
        message: String,
    },
}

impl Error {
    pub(crate) fn out_of_stock(product_id: &str, requested: u64, available: u64) -> Self {
        Error::OutOfStock {
            product_id: quote(product_id),
            requested,
            available,
        }
    }

    pub(crate) fn invalid_task(task: &'static str, message: &'static str) -> Self {
        Error::InvalidTask { task, message }
    }

    pub(crate) fn unknown_product(product_id: &str) -> Self {
        Error::UnknownProduct {
            product_id: quote(product_id),
        }
    }

    pub(crate) fn unknown_order(order_id: &str) -> Self {
        Error::UnknownOrder {
            order_id: quote(order_id),
        }
    }

    pub(crate) fn database(doing: &'static str, e: &(dyn std::error::Error + 'static)) -> Self {
        Error::Database {
            doing,
            message: pubsub_core::text::error_chain(e),
        }
    }

    pub(crate) fn unsupported(handler: &'static str, routing_key: &str) -> Self {
        Error::UnsupportedEvent {
            handler,
            routing_key: quote(routing_key),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::OutOfStock {
                product_id,
                requested,
                available,
            } => write!(
                f,
                "out of stock: product {product_id:?} has {available} left, the order asks for {requested}"
            ),
            Error::UnknownProduct { product_id } => {
                write!(f, "unknown product {product_id:?}")
            }
            Error::UnknownOrder { order_id } => write!(
                f,
                "no customer address known for order {order_id:?} (its order.created has not been handled yet)"
            ),
            Error::UnsupportedEvent {
                handler,
                routing_key,
            } => write!(f, "handler `{handler}` does not handle `{routing_key}` events"),
            Error::InvalidTask { task, message } => write!(f, "task `{task}`: {message}"),
            // The registry's error is the source: `{:#}` prints it after this.
            Error::Registry(_) => write!(f, "cannot build the demo registry"),
            Error::InvalidEvent { message } => write!(f, "invalid event: {message}"),
            Error::Database { doing, message } => {
                write!(f, "the shop's database failed while {doing}: {message}")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Registry(e) => Some(e),
            _ => None,
        }
    }
}

impl From<pubsub_core::Error> for Error {
    fn from(e: pubsub_core::Error) -> Self {
        Error::InvalidEvent {
            message: e.to_string(),
        }
    }
}

impl From<pubsub_registry::Error> for Error {
    fn from(e: pubsub_registry::Error) -> Self {
        Error::Registry(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_offending_value() {
        let check = |error: Error, expected: &str| assert_eq!(error.to_string(), expected);
        check(
            Error::out_of_stock("PROD-001", 3, 1),
            r#"out of stock: product "PROD-001" has 1 left, the order asks for 3"#,
        );
        check(Error::unknown_product("X"), r#"unknown product "X""#);
        check(
            Error::unsupported("send-email", "order.cancelled"),
            "handler `send-email` does not handle `order.cancelled` events",
        );
    }

    #[test]
    fn long_values_are_truncated() {
        let Error::UnknownOrder { order_id } = Error::unknown_order(&"9".repeat(1000)) else {
            panic!("wrong variant");
        };
        assert_eq!(order_id.len(), pubsub_core::text::QUOTE_LIMIT + 3);
    }

    #[test]
    fn no_message_repeats_its_source() {
        let refused = pubsub_registry::Error::InvalidPattern {
            pattern: "order..created".to_owned(),
            reason: "empty word",
        };
        let every_variant = [
            Error::out_of_stock("PROD-001", 3, 1),
            Error::unknown_product("X"),
            Error::unknown_order("ORD-1"),
            Error::unsupported("send-email", "order.cancelled"),
            Error::Registry(refused),
        ];
        for error in every_variant {
            let source = std::error::Error::source(&error).map(ToString::to_string);
            let repeated = source.filter(|source| error.to_string().contains(source.as_str()));
            assert_eq!(repeated, None, "`{error}` repeats its source");
        }
    }

    #[test]
    fn error_is_send_sync_static() {
        fn check<T: std::error::Error + Send + Sync + 'static>() {}
        check::<Error>();
    }
}
