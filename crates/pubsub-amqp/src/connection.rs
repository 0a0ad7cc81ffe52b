//! [`Connection`]: one blocking AMQP connection, opened with retries, owned by one thread.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::marker::PhantomData;
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use amiquip::{Auth, ConnectionBlockedNotification, ConnectionOptions, ConnectionTuning};
use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::channel::Channel;
use crate::config::AmqpConfig;
use crate::error::{from_amiquip, Error, Op, Result};
use crate::guard::{GuardState, GuardedStream, OutboundGuard, PLACEHOLDER_PASSWORD};

/// How much longer than the connection timeout a handshake may take in all.
const HANDSHAKE_GRACE: Duration = Duration::from_secs(5);

/// How long [`Connection::close`] waits for the broker's close-ok before it cuts the socket.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// One AMQP connection to RabbitMQ, with the configuration it was opened with.
///
/// A connection belongs to one thread: it is `Send` (open it, then move it to the thread that
/// uses it) but not `Sync`, so it cannot be shared between threads, not even behind an `Arc`.
/// This is the original design's first rule ("never share a connection between publisher
/// and consumer or threads"), enforced by the compiler:
///
/// ```compile_fail
/// fn shared<T: Sync>() {}
/// shared::<pubsub_amqp::Connection>();
/// ```
///
/// The socket is opened by this crate with `TCP_NODELAY` (amiquip's own `open` leaves Nagle's
/// algorithm on, which caps a publish-and-wait-for-confirm loop at a few dozen messages per
/// second). Heartbeats are handled on amiquip's I/O thread, so a slow handler on the
/// connection's thread does not cost the connection.
///
/// Closing is bounded: [`close`](Self::close) and `Drop` wait at most a few seconds for the
/// broker, then cut the socket, so a blocked or silent broker cannot hang shutdown.
pub struct Connection {
    inner: Option<amiquip::Connection>,
    /// A second handle on the socket, to cut it when a close does not complete.
    socket: Option<TcpStream>,
    config: AmqpConfig,
    blocked_rx: Option<Receiver<ConnectionBlockedNotification>>,
    blocked: RefCell<Option<Blocked>>,
    /// What the frame guard between the socket and amiquip shares with the channels.
    guard: Arc<GuardState>,
    /// Not `Sync`: one connection, one thread.
    _not_sync: PhantomData<Cell<()>>,
}

/// The broker is blocking the connection because of a resource alarm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    /// The broker's reason, e.g. `low on memory`.
    pub reason: String,
    /// When the notification arrived.
    pub since: Instant,
}

impl Connection {
    /// Opens a connection, trying up to `config.connection_attempts()` times,
    /// `config.retry_delay()` apart, and logging each attempt.
    ///
    /// Errors that another attempt cannot fix (wrong credentials, unknown vhost, TLS setup)
    /// are returned at once.
    ///
    /// # Errors
    ///
    /// [`Error::Unreachable`] (refused, unreachable, timed out, unknown host),
    /// [`Error::AuthenticationFailed`], [`Error::VhostNotAllowed`], [`Error::Tls`], or
    /// [`Error::InvalidConfig`]. Each names `host:port` and the vhost, never the password.
    pub fn open(config: &AmqpConfig) -> Result<Connection> {
        config.validate()?;
        let attempts = config.connection_attempts();
        let mut last_cause = String::new();
        for attempt in 1..=attempts {
            log::info!(
                "connecting to {} (attempt {attempt}/{attempts})",
                config.redacted_url()
            );
            match Self::open_once(config) {
                Ok(connection) => {
                    log::info!("connected to {}", config.redacted_url());
                    return Ok(connection);
                }
                // The caller gets the error and decides how loud to be about it.
                Err(e) if e.is_permanent() => return Err(e),
                Err(e) => {
                    last_cause = match e {
                        Error::Unreachable { cause, .. } => cause,
                        other => other.to_string(),
                    };
                    if attempt < attempts {
                        log::warn!(
                            "connecting to {} failed: {last_cause}; retrying in {:.1}s",
                            config.address(),
                            config.retry_delay().as_secs_f64()
                        );
                        thread::sleep(config.retry_delay());
                    }
                }
            }
        }
        let err = Error::Unreachable {
            address: config.address(),
            vhost: config.virtual_host().to_owned(),
            attempts,
            cause: last_cause,
        };
        log::debug!("{err}");
        Err(err)
    }

    /// One connection attempt.
    fn open_once(config: &AmqpConfig) -> Result<Connection> {
        let unreachable = |cause: String| Error::Unreachable {
            address: config.address(),
            vhost: config.virtual_host().to_owned(),
            attempts: 1,
            cause,
        };
        let (stream, host) = connect_tcp(config).map_err(unreachable)?;
        stream
            .set_nodelay(true)
            .map_err(|e| unreachable(format!("cannot set TCP_NODELAY: {e}")))?;
        let socket = stream.try_clone().ok();

        // amiquip is never given the password: the guard writes it into the handshake (amiquip
        // logs the handshake's frames, SASL response included, at debug level).
        let mut options = ConnectionOptions::<Auth>::default()
            .auth(Auth::Plain {
                username: config.username().to_owned(),
                password: PLACEHOLDER_PASSWORD.to_owned(),
            })
            .virtual_host(config.virtual_host())
            .heartbeat(u16::try_from(config.heartbeat().as_secs()).unwrap_or(u16::MAX))
            .connection_timeout(Some(config.connection_timeout()));
        if let Some(name) = config.connection_name() {
            options = options.information(Some(name.to_owned()));
        }
        if let Some(channel_max) = config.channel_max() {
            options = options.channel_max(channel_max);
        }
        if let Some(frame_max) = config.frame_max() {
            options = options.frame_max(frame_max);
        }
        let tuning = ConnectionTuning::default();

        // amiquip's handshake timeout measures silence: it fires only when a poll returns no
        // event. A peer that keeps the socket busy without completing the handshake (a proxy
        // that accepts and says nothing useful) would hold it for as long as it likes, so a
        // watchdog cuts the socket a grace period after the timeout. The grace covers
        // RabbitMQ's own pause before it refuses a login (3 s).
        let watchdog = socket
            .as_ref()
            .and_then(|s| s.try_clone().ok())
            .and_then(|s| SocketWatchdog::arm(s, config.connection_timeout() + HANDSHAKE_GRACE));
        let guard = Arc::new(GuardState::default());
        let outbound = OutboundGuard::new(config.username(), config.password());
        // The guard must see plaintext frames, so TLS is done here, below it, not by amiquip.
        let opened = match config.tls() {
            None => {
                let evented = evented(&stream).map_err(&unreachable)?;
                let guarded = GuardedStream::new(stream, evented, outbound, guard.clone());
                amiquip::Connection::insecure_open_stream(guarded, options, tuning)
            }
            Some(tls) => {
                let tls_stream = tls_handshake(config, tls, &host, stream)?;
                let evented = evented(tls_stream.get_ref()).map_err(&unreachable)?;
                let guarded = GuardedStream::new(tls_stream, evented, outbound, guard.clone());
                amiquip::Connection::insecure_open_stream(guarded, options, tuning)
            }
        };
        let timed_out = watchdog.is_some_and(SocketWatchdog::disarm);
        let mut inner = opened.map_err(|e| {
            if timed_out {
                classify_open_error(amiquip::Error::ConnectionTimeout, config)
            } else {
                classify_open_error(e, config)
            }
        })?;
        let blocked_rx = inner.listen_for_connection_blocked().ok();
        Ok(Connection {
            inner: Some(inner),
            socket,
            config: config.clone(),
            blocked_rx,
            blocked: RefCell::new(None),
            guard,
            _not_sync: PhantomData,
        })
    }

    /// The configuration this connection was opened with; open another connection like this
    /// one with `Connection::open(connection.config())`.
    pub fn config(&self) -> &AmqpConfig {
        &self.config
    }

    /// Opens a channel on this connection.
    ///
    /// # Errors
    ///
    /// [`Error::ConnectionLost`] if the connection is gone.
    pub fn open_channel(&mut self) -> Result<Channel> {
        let inner = self.inner.as_mut().ok_or_else(closed)?;
        let channel = inner
            .open_channel(None)
            .map_err(|e| from_amiquip(e, Op::Other))?;
        // Delivery tags start again on a channel number used before.
        self.guard.forget_channel(channel.channel_id());
        Ok(Channel::new(channel, self.guard.clone()))
    }

    /// Whether the broker is blocking this connection (a resource alarm), and since when.
    pub fn blocked(&self) -> Option<Blocked> {
        if let Some(rx) = &self.blocked_rx {
            let mut state = self.blocked.borrow_mut();
            while let Ok(note) = rx.try_recv() {
                match note {
                    ConnectionBlockedNotification::Blocked(reason) => {
                        log::warn!("RabbitMQ blocked the connection: {reason}");
                        if state.is_none() {
                            *state = Some(Blocked {
                                reason,
                                since: Instant::now(),
                            });
                        }
                    }
                    ConnectionBlockedNotification::Unblocked => {
                        log::info!("RabbitMQ unblocked the connection");
                        *state = None;
                    }
                }
            }
        }
        self.blocked.borrow().clone()
    }

    /// Closes the connection: sends the AMQP close and waits for the broker's reply and for
    /// the I/O thread to end; after a few seconds without a reply, cuts the socket instead.
    ///
    /// # Errors
    ///
    /// [`Error::ConnectionLost`] if the connection was already gone (nothing is left open
    /// either way).
    pub fn close(mut self) -> Result<()> {
        self.close_bounded()
    }

    fn close_bounded(&mut self) -> Result<()> {
        let Some(inner) = self.inner.take() else {
            return Ok(());
        };
        let watchdog = self
            .socket
            .take()
            .and_then(|socket| SocketWatchdog::arm(socket, CLOSE_TIMEOUT));
        let result = inner.close().map_err(|e| match self.guard.fault() {
            // The guard ended the connection: its words say what the broker sent.
            Some(fault) => Error::ConnectionLost {
                reason: format!("the frame guard ended the connection: {fault}"),
            },
            None => from_amiquip(e, Op::Other),
        });
        if watchdog.is_some_and(SocketWatchdog::disarm) {
            log::warn!(
                "the broker did not answer the connection close in time; the socket was cut"
            );
        }
        result
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Err(e) = self.close_bounded() {
            log::debug!("closing a dropped connection: {e}");
        }
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("config", &self.config)
            .field("open", &self.inner.is_some())
            .finish_non_exhaustive()
    }
}

/// Cuts a socket if it is not disarmed within a timeout: bounds what amiquip waits for.
struct SocketWatchdog {
    disarm: crossbeam_channel::Sender<()>,
    thread: thread::JoinHandle<bool>,
}

impl SocketWatchdog {
    /// Starts watching; `None` if no thread could be started (nothing is then bounded).
    fn arm(socket: TcpStream, timeout: Duration) -> Option<SocketWatchdog> {
        let (disarm, disarmed) = crossbeam_channel::bounded::<()>(0);
        let thread = thread::Builder::new()
            .name("pubsub-amqp-watchdog".to_owned())
            .spawn(move || match disarmed.recv_timeout(timeout) {
                Err(RecvTimeoutError::Timeout) => {
                    let _ = socket.shutdown(Shutdown::Both);
                    true
                }
                _ => false,
            })
            .ok()?;
        Some(SocketWatchdog { disarm, thread })
    }

    /// Stops watching and joins the thread; true if the socket was cut.
    fn disarm(self) -> bool {
        drop(self.disarm);
        self.thread.join().unwrap_or(false)
    }
}

/// A second handle on the socket for amiquip's poll (mio 0.6); it makes the socket
/// non-blocking.
fn evented(stream: &TcpStream) -> std::result::Result<mio::net::TcpStream, String> {
    stream
        .try_clone()
        .and_then(mio::net::TcpStream::from_stream)
        .map_err(|e| format!("cannot prepare the socket: {e}"))
}

/// The TLS handshake, on the blocking socket, bounded by the connection timeout.
fn tls_handshake(
    config: &AmqpConfig,
    tls: &crate::config::TlsConfig,
    host: &str,
    stream: TcpStream,
) -> Result<native_tls::TlsStream<TcpStream>> {
    let tls_error = |message: String| Error::Tls {
        address: config.address(),
        message,
    };
    let connector = tls.connector().map_err(tls_error)?;
    let timeout = Some(config.connection_timeout());
    let timeouts = stream
        .set_read_timeout(timeout)
        .and_then(|()| stream.set_write_timeout(timeout));
    if let Err(e) = timeouts {
        return Err(Error::Unreachable {
            address: config.address(),
            vhost: config.virtual_host().to_owned(),
            attempts: 1,
            cause: format!("cannot set socket timeouts: {e}"),
        });
    }
    match connector.connect(tls.server_name(host), stream) {
        Ok(tls_stream) => {
            let socket = tls_stream.get_ref();
            let _ = socket.set_read_timeout(None);
            let _ = socket.set_write_timeout(None);
            Ok(tls_stream)
        }
        Err(native_tls::HandshakeError::Failure(e)) => Err(tls_error(e.to_string())),
        Err(native_tls::HandshakeError::WouldBlock(_)) => Err(Error::Unreachable {
            address: config.address(),
            vhost: config.virtual_host().to_owned(),
            attempts: 1,
            cause: format!(
                "no TLS handshake within {:.1}s (is this a TLS port?)",
                config.connection_timeout().as_secs_f64()
            ),
        }),
    }
}

fn closed() -> Error {
    Error::ConnectionLost {
        reason: "the connection is closed".to_owned(),
    }
}

/// Connects to the first of the configured hosts (in the configured order) that answers;
/// returns the socket and the host it reached (the name TLS checks).
fn connect_tcp(config: &AmqpConfig) -> std::result::Result<(TcpStream, String), String> {
    let hosts = config.hosts();
    let mut failures = Vec::new();
    for i in crate::hosts::connect_order(hosts.len(), config.host_order()) {
        let (host, port) = hosts[i];
        match connect_host(host, port, config.connection_timeout()) {
            Ok(stream) => {
                if !failures.is_empty() {
                    log::warn!(
                        "connected to {} after: {}",
                        crate::config::address_of(host, port),
                        failures.join("; ")
                    );
                }
                return Ok((stream, host.to_owned()));
            }
            Err(e) => failures.push(e),
        }
    }
    Err(failures.join("; "))
}

/// Resolves one host and connects to the first of its addresses that answers.
fn connect_host(
    host: &str,
    port: u16,
    timeout: Duration,
) -> std::result::Result<TcpStream, String> {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve host {host:?}: {e}"))?
        .collect();
    let mut last = format!("host {host:?} resolves to no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(stream) => return Ok(stream),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                last = format!(
                    "TCP connect to {addr} timed out after {:.1}s",
                    timeout.as_secs_f64()
                );
            }
            Err(e) => last = format!("TCP connect to {addr} failed: {e}"),
        }
    }
    Err(last)
}

/// Tells apart why the AMQP handshake failed.
fn classify_open_error(err: amiquip::Error, config: &AmqpConfig) -> Error {
    let address = config.address();
    let vhost = config.virtual_host().to_owned();
    let username = config.username().to_owned();
    match err {
        amiquip::Error::InvalidCredentials => Error::AuthenticationFailed {
            address,
            vhost,
            username,
        },
        amiquip::Error::ServerClosedConnection { code: 403, .. } => Error::AuthenticationFailed {
            address,
            vhost,
            username,
        },
        amiquip::Error::ServerClosedConnection { code: 530, message } => Error::VhostNotAllowed {
            address,
            vhost,
            username,
            message,
        },
        amiquip::Error::TlsHandshake { source } => Error::Tls {
            address,
            message: source.to_string(),
        },
        amiquip::Error::CreateTlsConnector { source } => Error::Tls {
            address,
            message: source.to_string(),
        },
        amiquip::Error::ConnectionTimeout => Error::Unreachable {
            address,
            vhost,
            attempts: 1,
            cause: format!(
                "no AMQP handshake within {:.1}s (is this a RabbitMQ port?)",
                config.connection_timeout().as_secs_f64()
            ),
        },
        other => match from_amiquip(other, Op::Other) {
            Error::ConnectionLost { reason } => Error::Unreachable {
                address,
                vhost,
                attempts: 1,
                cause: format!("the AMQP handshake failed: {reason}"),
            },
            e => e,
        },
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;

    use super::*;

    /// A server that accepts connections and answers them with `reply` (forever), returning
    /// its port. The thread ends with the test process.
    fn server(reply: fn(TcpStream)) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                thread::spawn(move || reply(stream));
            }
        });
        port
    }

    fn open(port: u16) -> (Result<Connection>, Duration) {
        let config = AmqpConfig::new("127.0.0.1")
            .with_port(port)
            .with_connection_attempts(1)
            .with_connection_timeout(Duration::from_millis(500));
        let started = Instant::now();
        (Connection::open(&config), started.elapsed())
    }

    #[test]
    fn a_peer_that_never_answers_times_out() {
        let port = server(|stream| {
            thread::sleep(Duration::from_secs(30));
            drop(stream);
        });
        let (result, took) = open(port);
        let err = result.unwrap_err();
        assert!(matches!(err, Error::Unreachable { .. }), "{err}");
        assert!(err.to_string().contains("no AMQP handshake"), "{err}");
        assert!(took < Duration::from_secs(3), "{took:?}");
    }

    #[test]
    fn a_peer_that_keeps_talking_nonsense_is_cut_at_the_deadline() {
        // It reads the protocol header, then trickles bytes that never make a frame.
        let port = server(|mut stream| {
            let mut header = [0u8; 8];
            let _ = stream.read_exact(&mut header);
            // A frame header announcing a large payload, then one byte at a time.
            let _ = stream.write_all(&[1, 0, 0, 0, 0, 0x10, 0]);
            for _ in 0..3000 {
                if stream.write_all(&[0]).is_err() {
                    return;
                }
                thread::sleep(Duration::from_millis(10));
            }
        });
        let (result, took) = open(port);
        assert!(result.is_err());
        assert!(
            took < Duration::from_millis(500) + HANDSHAKE_GRACE + Duration::from_secs(2),
            "{took:?}"
        );
    }
}
