//! [`TlsFront`]: a TLS listener in front of the broker, with certificates made at test time.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// A certificate authority made for one test: its certificate (PEM) and the files it signs
/// with.
#[derive(Debug)]
pub struct TestCa {
    dir: PathBuf,
    cert_pem: Vec<u8>,
}

impl TestCa {
    /// Makes a new CA (an EC key and a self-signed certificate) with the `openssl` command,
    /// in a fresh temporary folder.
    ///
    /// # Errors
    ///
    /// When `openssl` is missing or fails.
    pub fn new(name: &str) -> io::Result<TestCa> {
        let dir = std::env::temp_dir().join(crate::unique(name));
        std::fs::create_dir_all(&dir)?;
        openssl(
            &dir,
            &[
                &["req", "-x509"][..],
                &NEW_KEY,
                &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj"],
            ]
            .concat(),
            &format!("/CN={name}"),
        )?;
        let cert_pem = std::fs::read(dir.join("ca.pem"))?;
        Ok(TestCa { dir, cert_pem })
    }

    /// The CA's certificate, PEM: what a client trusts.
    pub fn cert_pem(&self) -> &[u8] {
        &self.cert_pem
    }

    /// A server certificate and PKCS#8 key (PEM) for `localhost` and `127.0.0.1`, signed by
    /// this CA.
    ///
    /// # Errors
    ///
    /// When `openssl` fails.
    pub fn server_identity(&self) -> io::Result<(Vec<u8>, Vec<u8>)> {
        openssl(
            &self.dir,
            &[
                &["req"][..],
                &NEW_KEY,
                &["-keyout", "server.key", "-out", "server.csr", "-subj"],
            ]
            .concat(),
            "/CN=localhost",
        )?;
        std::fs::write(
            self.dir.join("ext.cnf"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )?;
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.pem",
                "-days",
                "2",
                "-extfile",
            ],
            "ext.cnf",
        )?;
        Ok((
            std::fs::read(self.dir.join("server.pem"))?,
            std::fs::read(self.dir.join("server.key"))?,
        ))
    }
}

impl Drop for TestCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The `openssl req` arguments for a new key on the P-256 curve, not encrypted: the CA's and
/// the server's.
const NEW_KEY: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];

fn openssl(dir: &Path, args: &[&str], last: &str) -> io::Result<()> {
    let output = Command::new("openssl")
        .args(args)
        .arg(last)
        .current_dir(dir)
        .output()?;
    if output.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "openssl {} failed: {}",
            args.first().unwrap_or(&""),
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

/// A TLS listener on a local port that forwards the decrypted bytes to the broker: an
/// `amqps://` endpoint for tests, without reconfiguring the broker.
///
/// Its certificate names `localhost` and `127.0.0.1` and is signed by the [`TestCa`] it was
/// started with. Dropping it stops accepting; open connections end with their client.
#[derive(Debug)]
pub struct TlsFront {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl TlsFront {
    /// Starts listening on a free local port, forwarding to `upstream`.
    ///
    /// # Errors
    ///
    /// When the certificate cannot be made or the port cannot be opened.
    pub fn start(ca: &TestCa, upstream: SocketAddr) -> io::Result<TlsFront> {
        let (cert, key) = ca.server_identity()?;
        let identity = native_tls::Identity::from_pkcs8(&cert, &key).map_err(io::Error::other)?;
        let acceptor = native_tls::TlsAcceptor::new(identity).map_err(io::Error::other)?;
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        thread::Builder::new()
            .name("tls-front".to_owned())
            .spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((client, _)) => {
                            let acceptor = acceptor.clone();
                            let _ = thread::Builder::new()
                                .name("tls-front-conn".to_owned())
                                .spawn(move || forward(&acceptor, client, upstream));
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            thread::sleep(Duration::from_millis(10));
                        }
                        Err(_) => return,
                    }
                }
            })?;
        Ok(TlsFront { port, stop })
    }

    /// The port it listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Moves bytes both ways between a TLS client and the broker until either side closes.
fn forward(acceptor: &native_tls::TlsAcceptor, client: TcpStream, upstream: SocketAddr) {
    let _ = client.set_nonblocking(false);
    let Ok(mut tls) = acceptor.accept(client) else {
        return; // the client refused our certificate, or is not speaking TLS
    };
    let Ok(mut broker) = TcpStream::connect(upstream) else {
        return;
    };
    let tick = Some(Duration::from_millis(1));
    if tls.get_ref().set_read_timeout(tick).is_err() || broker.set_read_timeout(tick).is_err() {
        return;
    }
    let _ = broker.set_nodelay(true);
    let _ = tls.get_ref().set_nodelay(true);
    let mut buf = vec![0u8; 64 * 1024];
    while pump(&mut tls, &mut broker, &mut buf) && pump(&mut broker, &mut tls, &mut buf) {}
}

/// Moves what `from` has to say (waiting at most its read timeout) to `to`. `false` when
/// either side has closed or failed.
fn pump(from: &mut impl Read, to: &mut impl Write, buf: &mut [u8]) -> bool {
    match from.read(buf) {
        Ok(0) => false,
        Ok(n) => to.write_all(&buf[..n]).is_ok(),
        Err(e) => matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
    }
}
