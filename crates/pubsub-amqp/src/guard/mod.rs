//! The frame guard: every byte between the socket and amiquip passes through it.
//!
//! Inbound, it reads each frame the broker sends with a bounded, iterative parser
//! ([`InboundGuard`]) and makes it safe for amiquip's parser before amiquip sees it: no
//! frame another client put on the broker can abort the process (a header nested thousands of
//! levels deep overflows the stack of amiquip's recursive parser) or kill the connection
//! (bytes that are not UTF-8 where amiquip expects a string). A delivery it had to change is
//! marked; [`Delivery::alteration`](crate::Delivery::alteration) says why, and the subscriber
//! dead-letters it as poison with its original body.
//!
//! Outbound, it writes the real password into the handshake, so that amiquip (which logs the
//! handshake at debug level) only ever holds a placeholder.
//!
//! On `amqps://` connections this crate does the TLS handshake itself and the guard sits
//! above TLS: it sees the plaintext frames.
//!
//! The parser is public so that it can be fuzzed (`crates/pubsub-amqp/fuzz`); applications
//! have no need to call it.

#[cfg(any(test, feature = "fuzzing"))]
mod check;
mod inbound;
mod outbound;

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use mio::{Evented, Poll, PollOpt, Ready, Token};

#[cfg(any(test, feature = "fuzzing"))]
pub use self::check::check;
pub use self::inbound::{Altered, FrameError, InboundGuard, Progress, MAX_DEPTH, MAX_FRAME};
pub(crate) use self::outbound::{OutboundGuard, PLACEHOLDER_PASSWORD};

/// How much the read buffer holds at first; it grows for larger frames.
const READ_BUFFER: usize = 64 * 1024;

/// How long a handshake write may wait for a full socket (it is a few hundred bytes on a new
/// connection: in practice it never waits).
const HANDSHAKE_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the guard of one connection shares with the connection's channels: the deliveries it
/// altered, until a consumer takes them, and the fault that ended the connection, if any.
#[derive(Debug, Default)]
pub(crate) struct GuardState {
    /// How many alterations wait to be taken (read without the lock on every delivery).
    waiting: AtomicUsize,
    altered: Mutex<HashMap<(u16, u64), String>>,
    fault: Mutex<Option<String>>,
}

impl GuardState {
    fn record(&self, altered: &mut Vec<Altered>) {
        let mut map = self.altered.lock().unwrap_or_else(PoisonError::into_inner);
        for a in altered.drain(..) {
            // The subscriber logs what it does with the delivery; this is the detail.
            log::debug!(
                "frame guard: delivery {} on channel {} altered: {}",
                a.delivery_tag,
                a.channel,
                a.reason
            );
            map.insert((a.channel, a.delivery_tag), a.reason);
        }
        self.waiting.store(map.len(), Ordering::Release);
    }

    /// Why the delivery `delivery_tag` of `channel` was altered, if it was (once: the record
    /// is removed).
    pub(crate) fn take(&self, channel: u16, delivery_tag: u64) -> Option<String> {
        // The record is made on the I/O thread before amiquip parses the frame, and so
        // before the delivery is handed to the consumer's thread.
        if self.waiting.load(Ordering::Acquire) == 0 {
            return None;
        }
        let mut map = self.altered.lock().unwrap_or_else(PoisonError::into_inner);
        let reason = map.remove(&(channel, delivery_tag));
        self.waiting.store(map.len(), Ordering::Release);
        reason
    }

    /// Forgets what is recorded for a channel number (a new channel reuses it, and delivery
    /// tags start again).
    pub(crate) fn forget_channel(&self, channel: u16) {
        if self.waiting.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut map = self.altered.lock().unwrap_or_else(PoisonError::into_inner);
        map.retain(|(c, _), _| *c != channel);
        self.waiting.store(map.len(), Ordering::Release);
    }

    /// The fault that made the guard end the connection.
    pub(crate) fn fault(&self) -> Option<String> {
        self.fault
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_fault(&self, fault: String) {
        *self.fault.lock().unwrap_or_else(PoisonError::into_inner) = Some(fault);
    }
}

/// The stream amiquip reads and writes: `io` (a TCP socket, or TLS over one) behind the
/// guard. `evented` is the same socket, for amiquip's poll.
pub(crate) struct GuardedStream<S> {
    io: S,
    evented: mio::net::TcpStream,
    inbound: InboundGuard,
    /// Bytes read: `[served..ready]` sanitized and not yet handed on, `[ready..filled]` an
    /// incomplete frame.
    rbuf: Vec<u8>,
    served: usize,
    ready: usize,
    filled: usize,
    altered: Vec<Altered>,
    outbound: OutboundGuard,
    /// Handshake bytes rewritten and not yet written.
    wbuf: Vec<u8>,
    state: Arc<GuardState>,
}

impl<S: Read + Write> GuardedStream<S> {
    pub(crate) fn new(
        io: S,
        evented: mio::net::TcpStream,
        outbound: OutboundGuard,
        state: Arc<GuardState>,
    ) -> Self {
        GuardedStream {
            io,
            evented,
            inbound: InboundGuard::new(),
            rbuf: vec![0; READ_BUFFER],
            served: 0,
            ready: 0,
            filled: 0,
            altered: Vec::new(),
            outbound,
            wbuf: Vec::new(),
            state,
        }
    }

    /// Writes what is left of the rewritten handshake; `WouldBlock` if some is still left.
    fn flush_handshake(&mut self) -> io::Result<()> {
        while !self.wbuf.is_empty() {
            let n = self.io.write(&self.wbuf)?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.wbuf.drain(..n);
        }
        Ok(())
    }

    /// Writes the rewritten handshake, waiting for room on the socket if need be.
    fn flush_handshake_waiting(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + HANDSHAKE_WRITE_TIMEOUT;
        loop {
            match self.flush_handshake() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if Instant::now() >= deadline {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "the socket took no handshake bytes for 5s",
                        ));
                    }
                    thread::sleep(Duration::from_millis(1));
                }
                other => return other,
            }
        }
    }
}

impl<S: Read + Write> Read for GuardedStream<S> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.served < self.ready {
                let n = out.len().min(self.ready - self.served);
                out[..n].copy_from_slice(&self.rbuf[self.served..self.served + n]);
                self.served += n;
                return Ok(n);
            }
            if self.ready > 0 {
                self.rbuf.copy_within(self.ready..self.filled, 0);
                self.filled -= self.ready;
                self.ready = 0;
                self.served = 0;
            }
            if self.filled == self.rbuf.len() {
                // An incomplete frame fills the buffer: make room for it.
                let larger = (self.rbuf.len() * 2).min(MAX_FRAME + 8);
                if larger == self.rbuf.len() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "malformed AMQP frame: larger than the guard accepts",
                    ));
                }
                self.rbuf.resize(larger, 0);
            }
            let n = self.io.read(&mut self.rbuf[self.filled..])?;
            if n == 0 {
                return Ok(0);
            }
            self.filled += n;
            match self
                .inbound
                .process(&mut self.rbuf[..self.filled], 0, &mut self.altered)
            {
                Ok(progress) => {
                    self.filled = progress.len;
                    self.ready = progress.ready;
                }
                Err(e) => {
                    log::error!("frame guard: {e}; closing the connection");
                    self.state.set_fault(e.to_string());
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                }
            }
            if !self.altered.is_empty() {
                self.state.record(&mut self.altered);
            }
        }
    }
}

impl<S: Read + Write> Write for GuardedStream<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.outbound.is_done() && self.wbuf.is_empty() {
            return self.io.write(buf);
        }
        self.flush_handshake_waiting()?;
        if self.outbound.is_done() {
            return self.io.write(buf);
        }
        self.outbound.push(buf, &mut self.wbuf);
        self.flush_handshake_waiting()?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_handshake_waiting()?;
        self.io.flush()
    }
}

impl<S> Evented for GuardedStream<S> {
    fn register(
        &self,
        poll: &Poll,
        token: Token,
        interest: Ready,
        opts: PollOpt,
    ) -> io::Result<()> {
        self.evented.register(poll, token, interest, opts)
    }

    fn reregister(
        &self,
        poll: &Poll,
        token: Token,
        interest: Ready,
        opts: PollOpt,
    ) -> io::Result<()> {
        self.evented.reregister(poll, token, interest, opts)
    }

    fn deregister(&self, poll: &Poll) -> io::Result<()> {
        self.evented.deregister(poll)
    }
}

impl<S: Read + Write + Send + 'static> amiquip::IoStream for GuardedStream<S> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alterations_are_taken_once_and_forgotten_with_their_channel() {
        let state = GuardState::default();
        assert_eq!(state.take(1, 1), None);
        let altered = |channel, delivery_tag| Altered {
            channel,
            delivery_tag,
            reason: "routing key is not UTF-8".to_owned(),
        };
        state.record(&mut vec![altered(1, 1), altered(1, 2), altered(2, 1)]);
        assert_eq!(
            state.take(1, 1).as_deref(),
            Some("routing key is not UTF-8")
        );
        assert_eq!(state.take(1, 1), None);
        state.forget_channel(1);
        assert_eq!(state.take(1, 2), None);
        assert!(state.take(2, 1).is_some());
        assert_eq!(state.waiting.load(Ordering::Acquire), 0);
    }
}
