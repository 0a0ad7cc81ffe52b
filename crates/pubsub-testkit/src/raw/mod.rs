//! A raw AMQP 0-9-1 publisher, for hostile-client tests: it writes the frames itself on a
//! [`TcpStream`], so the caller controls every byte a well-behaved client (amiquip included)
//! would refuse to send.
//!
//! # Overview
//!
//! - [`RawPublisher`]: connects (protocol header, `connection.start`/`start-ok` with PLAIN,
//!   `tune`/`tune-ok`, `connection.open`, `channel.open`, `confirm.select`), then
//!   [`publish`](RawPublisher::publish)es one message at a time (`basic.publish`, a content
//!   header frame, body frames) and waits for the broker's `basic.ack`.
//! - [`ContentHeader`]: what follows the body size in the content header frame, either built
//!   from [`RawProperties`] (each short string given as raw bytes) or given byte for byte
//!   ([`ContentHeader::Raw`]).
//! - [`FieldTable`] and [`FieldArray`]: header tables and arrays encoded as the caller says,
//!   including keys and strings that are not UTF-8, unknown field types and lying lengths.
//! - [`hostile`]: ready-made hostile header tables and one hostile message of every class.
//!
//! What the broker sends back is parsed only as far as needed, with bounds on every length
//! and a timeout on the socket ([`IO_TIMEOUT`]); nothing here panics on what it reads. The
//! encoders and the frame parser are pure functions, tested without a broker.
//!
//! Plain TCP only: an `amqps://` configuration is refused ([`Error::Unsupported`]).
//!
//! # Example
//!
//! ```no_run
//! use pubsub_testkit::raw::{RawProperties, RawPublisher};
//!
//! let Some(config) = pubsub_testkit::broker() else { return Ok(()) };
//! let mut publisher = RawPublisher::connect(&config)?;
//! let properties = RawProperties::new()
//!     .content_type("application/json")
//!     .message_id(b"id-\xff".to_vec()); // not UTF-8
//! publisher.publish("events", b"order.\xffcreated", &properties.into(), b"{}")?;
//! publisher.close()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use pubsub_amqp::AmqpConfig;

use crate::error::{Error, Result};

mod decode;
mod encode;
pub mod hostile;
mod publisher;
#[cfg(test)]
mod tests;

use self::decode::*;
pub use self::decode::{parse_frame, Frame};
use self::encode::*;
pub use self::encode::{
    encode_frame, encode_publish, ContentHeader, FieldArray, FieldTable, RawProperties,
    ShortStringProperty,
};
pub use self::publisher::RawPublisher;

/// How long a read or write on the socket may block before the publisher gives up.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest frame read before `tune` has set the connection's frame size.
const MAX_FRAME_BEFORE_TUNE: u32 = 128 * 1024;
/// The frame size asked for when the broker sets no limit (RabbitMQ's default).
const DEFAULT_FRAME_MAX: u32 = 128 * 1024;
/// The smallest frame size AMQP allows.
const MIN_FRAME_MAX: u32 = 4096;

const PROTOCOL_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";
const FRAME_METHOD: u8 = 1;
const FRAME_HEADER: u8 = 2;
const FRAME_BODY: u8 = 3;
const FRAME_END: u8 = 0xCE;
/// Frame type, channel and size; then the payload and the end octet.
const FRAME_OVERHEAD: usize = 8;

const CLASS_CONNECTION: u16 = 10;
const CLASS_CHANNEL: u16 = 20;
const CLASS_BASIC: u16 = 60;
const CLASS_CONFIRM: u16 = 85;

/// The one channel the publisher uses.
const CHANNEL: u16 = 1;
