//! The opt-in HTTP endpoint: `GET /metrics` answered with [`render`](super::render)'s text,
//! on one thread of its own, one short connection at a time.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// The most bytes of a request read (its head; a scrape sends a few hundred).
const MAX_REQUEST: usize = 8 * 1024;

/// How long a client may take to send its request or read the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// The content type of the Prometheus text format.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// `GET /metrics` (or `HEAD`): the metrics.
    Metrics { head: bool },
    /// Another path.
    NotFound,
    /// Another method.
    MethodNotAllowed,
    /// Not an HTTP request line.
    BadRequest,
}

/// Routes a request by its request line (`GET /metrics HTTP/1.1`); a query string is ignored.
pub(crate) fn route(request_line: &str) -> Route {
    let mut words = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return Route::BadRequest;
    };
    if !version.starts_with("HTTP/1.") {
        return Route::BadRequest;
    }
    let path = target.split('?').next().unwrap_or(target);
    let head = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Route::MethodNotAllowed,
    };
    match path {
        "/metrics" => Route::Metrics { head },
        _ => Route::NotFound,
    }
}

/// The response to `route`, with `body` (the metrics) when it asks for them.
pub(crate) fn response(route: Route, body: impl FnOnce() -> String) -> Vec<u8> {
    let (status, content_type, body, head) = match route {
        Route::Metrics { head } => ("200 OK", CONTENT_TYPE, body(), head),
        Route::NotFound => (
            "404 Not Found",
            "text/plain",
            "not found: metrics are at /metrics\n".to_owned(),
            false,
        ),
        Route::MethodNotAllowed => (
            "405 Method Not Allowed",
            "text/plain",
            "only GET\n".to_owned(),
            false,
        ),
        Route::BadRequest => (
            "400 Bad Request",
            "text/plain",
            "bad request\n".to_owned(),
            false,
        ),
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

/// The running endpoint: its address, and its thread until [`stop`](Self::stop).
#[derive(Debug)]
pub(crate) struct Endpoint {
    address: SocketAddr,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Endpoint {
    /// Binds `address` and serves `render`'s text on `/metrics` from a thread of its own.
    pub(crate) fn start(
        address: SocketAddr,
        name: &str,
        render: impl Fn() -> String + Send + 'static,
    ) -> io::Result<Endpoint> {
        let listener = TcpListener::bind(address)?;
        let address = listener.local_addr()?;
        let stopping = Arc::new(AtomicBool::new(false));
        let stop = stopping.clone();
        let thread = thread::Builder::new()
            .name(format!(
                "pubsub-metrics-{}",
                name.chars().take(16).collect::<String>()
            ))
            .spawn(move || serve(&listener, &stop, &render))?;
        log::info!("serving metrics on http://{address}/metrics");
        Ok(Endpoint {
            address,
            stopping,
            thread: Some(thread),
        })
    }

    /// The address it listens on (the port chosen when asked for port 0).
    pub(crate) fn address(&self) -> SocketAddr {
        self.address
    }

    /// Stops serving and joins the thread.
    pub(crate) fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.stopping.store(true, Ordering::SeqCst);
        // Wakes the blocking accept; the thread sees `stopping` and ends.
        if let Err(e) = TcpStream::connect_timeout(&wake_address(self.address), CLIENT_TIMEOUT) {
            log::warn!("cannot wake the metrics endpoint on {}: {e}", self.address);
        }
        if thread.join().is_err() {
            log::error!("the metrics endpoint on {} panicked", self.address);
        }
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Where to connect to reach a listener on `address`: its loopback when it listens on every
/// interface (`0.0.0.0`, `::`).
pub(crate) fn wake_address(address: SocketAddr) -> SocketAddr {
    let ip = match address.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, address.port())
}

fn serve(listener: &TcpListener, stopping: &AtomicBool, render: &dyn Fn() -> String) {
    for stream in listener.incoming() {
        if stopping.load(Ordering::SeqCst) {
            return;
        }
        match stream {
            Ok(stream) => {
                if let Err(e) = answer(stream, render) {
                    log::debug!("a metrics request failed: {e}");
                }
            }
            Err(e) => {
                log::warn!("the metrics endpoint cannot accept a connection: {e}");
                // Out of file descriptors, say: do not spin.
                thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Reads one request's head (bounded in size and time) and answers it.
fn answer(mut stream: TcpStream, render: &dyn Fn() -> String) -> io::Result<()> {
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    let mut request = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < MAX_REQUEST {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&request);
    let line = head.lines().next().unwrap_or_default();
    stream.write_all(&response(route(line), render))?;
    stream.flush()?;
    let _ = stream.shutdown(Shutdown::Both);
    Ok(())
}
