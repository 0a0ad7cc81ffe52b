//! [`FaultProxy`]: a small TCP proxy that injects network faults between a client and the
//! broker. For tests only: std::net and threads, no tuning.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How often blocked reads and the acceptor look at the proxy's flags.
const TICK: Duration = Duration::from_millis(20);

/// A TCP proxy on `127.0.0.1:<random port>` forwarding to an upstream address (the broker),
/// that can cut every open connection ([`cut_all`](Self::cut_all)) or stop forwarding
/// while keeping the sockets open ([`set_blackhole`](Self::set_blackhole)): the two network
/// faults a client must detect by itself.
///
/// Every thread it starts is joined when it is dropped.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    state: Arc<State>,
    acceptor: Option<JoinHandle<()>>,
}

#[derive(Debug, Default)]
struct State {
    stop: AtomicBool,
    blackhole: AtomicBool,
    links: Mutex<Vec<Link>>,
}

/// One proxied connection: both sockets and the two pump threads.
#[derive(Debug)]
struct Link {
    opened: Instant,
    client: TcpStream,
    upstream: TcpStream,
    pumps: Vec<JoinHandle<()>>,
}

impl Link {
    fn cut(&self) {
        let _ = self.client.shutdown(Shutdown::Both);
        let _ = self.upstream.shutdown(Shutdown::Both);
    }
}

impl FaultProxy {
    /// Starts a proxy to `upstream`.
    ///
    /// # Errors
    ///
    /// When no local port can be bound or `upstream` does not resolve.
    pub fn start(upstream: impl ToSocketAddrs) -> std::io::Result<FaultProxy> {
        let upstream = upstream.to_socket_addrs()?.next().ok_or_else(|| {
            std::io::Error::new(ErrorKind::NotFound, "upstream resolves to nothing")
        })?;
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State::default());
        let acceptor = {
            let state = state.clone();
            thread::Builder::new()
                .name("fault-proxy-accept".to_owned())
                .spawn(move || accept_loop(&listener, upstream, &state))?
        };
        Ok(FaultProxy {
            addr,
            state,
            acceptor: Some(acceptor),
        })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Cuts every connection open now (both sides see the socket close). New connections are
    /// accepted as before. Returns how many were cut.
    pub fn cut_all(&self) -> usize {
        let links: Vec<Link> = match self.state.links.lock() {
            Ok(mut links) => links.drain(..).collect(),
            Err(_) => return 0,
        };
        for link in &links {
            link.cut();
        }
        let count = links.len();
        for link in links {
            for pump in link.pumps {
                let _ = pump.join();
            }
        }
        count
    }

    /// Stops (or resumes) forwarding: while on, bytes are read and dropped in both
    /// directions, so sockets stay open but nothing arrives, as with a dead peer behind a
    /// stateful firewall.
    pub fn set_blackhole(&self, on: bool) {
        self.state.blackhole.store(on, Ordering::SeqCst);
    }

    /// How many connections go through the proxy now.
    pub fn open_connections(&self) -> usize {
        self.open_connections_since(None)
    }

    /// How many connections opened before `before` (all, with `None`) are still open: the
    /// clients of those have not noticed a fault yet.
    pub fn open_connections_since(&self, before: Option<Instant>) -> usize {
        match self.state.links.lock() {
            Ok(mut links) => {
                let (done, open): (Vec<Link>, Vec<Link>) = links
                    .drain(..)
                    .partition(|l| l.pumps.iter().all(JoinHandle::is_finished));
                *links = open;
                for link in done {
                    for pump in link.pumps {
                        let _ = pump.join();
                    }
                }
                links
                    .iter()
                    .filter(|l| before.is_none_or(|t| l.opened < t))
                    .count()
            }
            Err(_) => 0,
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        self.cut_all();
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, upstream: SocketAddr, state: &Arc<State>) {
    while !state.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((client, _)) => {
                if let Err(e) = open_link(client, upstream, state) {
                    log::warn!("fault proxy: cannot reach {upstream}: {e}");
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(TICK),
            Err(e) => {
                log::warn!("fault proxy: accept failed: {e}");
                thread::sleep(TICK);
            }
        }
    }
}

fn open_link(client: TcpStream, upstream: SocketAddr, state: &Arc<State>) -> std::io::Result<()> {
    client.set_nonblocking(false)?;
    let server = TcpStream::connect_timeout(&upstream, Duration::from_secs(5))?;
    for s in [&client, &server] {
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(TICK))?;
    }
    let pumps = vec![
        spawn_pump(client.try_clone()?, server.try_clone()?, state.clone())?,
        spawn_pump(server.try_clone()?, client.try_clone()?, state.clone())?,
    ];
    if let Ok(mut links) = state.links.lock() {
        links.push(Link {
            opened: Instant::now(),
            client,
            upstream: server,
            pumps,
        });
    }
    Ok(())
}

fn spawn_pump(
    from: TcpStream,
    to: TcpStream,
    state: Arc<State>,
) -> std::io::Result<JoinHandle<()>> {
    thread::Builder::new()
        .name("fault-proxy-pump".to_owned())
        .spawn(move || pump(from, to, &state))
}

/// Copies `from` to `to` until either closes or the proxy stops; drops the bytes while the
/// proxy black-holes.
fn pump(mut from: TcpStream, mut to: TcpStream, state: &State) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        if state.stop.load(Ordering::SeqCst) {
            break;
        }
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if !state.blackhole.load(Ordering::SeqCst) && to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(_) => break,
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server on a random port; returns its address and the thread.
    fn echo() -> (SocketAddr, JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = thread::spawn(move || {
            for stream in listener.incoming().take(2) {
                let Ok(mut stream) = stream else { return };
                thread::spawn(move || {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = stream.read(&mut buf) {
                        if n == 0 || stream.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        (addr, handle)
    }

    fn round_trip(stream: &mut TcpStream) -> Option<Vec<u8>> {
        stream.write_all(b"ping").ok()?;
        let mut buf = [0u8; 4];
        stream.read_exact(&mut buf).ok()?;
        Some(buf.to_vec())
    }

    #[test]
    fn forwards_blackholes_and_cuts() {
        let (upstream, _server) = echo();
        let proxy = FaultProxy::start(upstream).unwrap();
        let mut client = TcpStream::connect(proxy.addr()).unwrap();
        client
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        assert_eq!(round_trip(&mut client).as_deref(), Some(&b"ping"[..]));

        proxy.set_blackhole(true);
        assert_eq!(round_trip(&mut client), None);
        proxy.set_blackhole(false);

        assert_eq!(proxy.cut_all(), 1);
        let mut buf = [0u8; 4];
        assert!(matches!(client.read(&mut buf), Ok(0) | Err(_)));

        let mut again = TcpStream::connect(proxy.addr()).unwrap();
        again
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        assert_eq!(round_trip(&mut again).as_deref(), Some(&b"ping"[..]));
    }
}
