//! The publisher (I/O).

use super::*;

/// A publisher that speaks AMQP 0-9-1 itself on a plain TCP socket, with publisher confirms
/// on channel 1, heartbeats off. One thread, one message at a time.
///
/// The connection names itself `pubsub-testkit-raw` (or the configuration's connection
/// name). Dropping it just closes the socket; [`close`](Self::close) closes the connection
/// properly.
#[derive(Debug)]
pub struct RawPublisher {
    stream: TcpStream,
    buf: Vec<u8>,
    frame_max: u32,
    published: u64,
}

impl RawPublisher {
    /// Connects to the broker of `config` (host, port, username, password, virtual host),
    /// opens channel 1 and turns publisher confirms on.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the broker cannot be reached or stops answering for
    /// [`IO_TIMEOUT`], [`Error::Closed`] when it refuses the login or the virtual host,
    /// [`Error::Unsupported`] for TLS.
    pub fn connect(config: &AmqpConfig) -> Result<RawPublisher> {
        if config.tls().is_some() {
            return Err(Error::Unsupported("TLS (amqps)"));
        }
        let io = |doing| move |source| Error::Io { doing, source };
        let addrs = (config.host(), config.port())
            .to_socket_addrs()
            .map_err(io("resolving the broker's address"))?;
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
        let mut stream = None;
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, config.connection_timeout()) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = e,
            }
        }
        let stream = stream.ok_or(Error::Io {
            doing: "connecting",
            source: last,
        })?;
        stream
            .set_read_timeout(Some(IO_TIMEOUT))
            .and_then(|()| stream.set_write_timeout(Some(IO_TIMEOUT)))
            .and_then(|()| stream.set_nodelay(true))
            .map_err(io("setting socket options"))?;
        let mut publisher = RawPublisher {
            stream,
            buf: Vec::new(),
            frame_max: MAX_FRAME_BEFORE_TUNE,
            published: 0,
        };
        publisher.handshake(config)?;
        Ok(publisher)
    }

    pub(super) fn handshake(&mut self, config: &AmqpConfig) -> Result<()> {
        self.write(PROTOCOL_HEADER, "sending the protocol header")?;

        let start = self.expect(0, CLASS_CONNECTION, 10)?;
        let mut start = Args { bytes: &start };
        let (_major, _minor) = (start.u8()?, start.u8()?);
        let _server_properties = start.long_str()?;
        let mechanisms = start.long_str()?;
        if !mechanisms.split(|&b| b == b' ').any(|m| m == b"PLAIN") {
            return Err(Error::Protocol(format!(
                "the broker does not offer PLAIN (it offers {})",
                String::from_utf8_lossy(mechanisms)
            )));
        }

        let name = config.connection_name().unwrap_or("pubsub-testkit-raw");
        let client_properties = FieldTable::new()
            .long_string("product", "pubsub-testkit raw publisher")
            .long_string("information", name);
        let mut args = client_properties.encode();
        put_short_str(&mut args, "mechanism", b"PLAIN")?;
        put_long_str(
            &mut args,
            &plain_response(config.username(), config.password()),
        );
        put_short_str(&mut args, "locale", b"en_US")?;
        self.send_method(0, CLASS_CONNECTION, 11, &args)?;

        let tune = self.expect(0, CLASS_CONNECTION, 30)?;
        let mut tune = Args { bytes: &tune };
        let _channel_max = tune.u16()?; // one channel is all it uses
        let frame_max = negotiate_frame_max(tune.u32()?);
        let mut args = Vec::new();
        put_u16(&mut args, 1);
        put_u32(&mut args, frame_max);
        put_u16(&mut args, 0); // heartbeats off
        self.send_method(0, CLASS_CONNECTION, 31, &args)?;
        self.frame_max = frame_max;

        let mut args = Vec::new();
        put_short_str(&mut args, "virtual host", config.virtual_host().as_bytes())?;
        put_short_str(&mut args, "capabilities", b"")?;
        args.push(0); // insist
        self.send_method(0, CLASS_CONNECTION, 40, &args)?;
        self.expect(0, CLASS_CONNECTION, 41)?;

        self.send_method(CHANNEL, CLASS_CHANNEL, 10, &[0])?; // reserved short string ""
        self.expect(CHANNEL, CLASS_CHANNEL, 11)?;
        self.send_method(CHANNEL, CLASS_CONFIRM, 10, &[0])?; // nowait off
        self.expect(CHANNEL, CLASS_CONFIRM, 11)?;
        Ok(())
    }

    /// Publishes one message to `exchange` with `routing_key` (any bytes), `header` and
    /// `body`, and waits for the broker's confirm.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the broker closes the channel or the connection over the
    /// message (the publisher is then unusable), [`Error::Nacked`] when it refuses it,
    /// [`Error::TooLong`] for a short string over 255 bytes, [`Error::Io`] when the
    /// broker stops answering.
    pub fn publish(
        &mut self,
        exchange: &str,
        routing_key: &[u8],
        header: &ContentHeader,
        body: &[u8],
    ) -> Result<()> {
        let frames = encode_publish(
            exchange.as_bytes(),
            routing_key,
            header,
            body,
            self.frame_max,
        )?;
        self.write(&frames, "publishing")?;
        self.published += 1;
        let tag = self.published;
        loop {
            let (channel, class, id, args) = self.next_method()?;
            let mut args = Args { bytes: &args };
            match (channel, class, id) {
                (CHANNEL, CLASS_BASIC, 80) => {
                    let acked = args.u64()?;
                    let multiple = args.u8()? & 1 == 1;
                    if acked == tag || (multiple && acked >= tag) {
                        return Ok(());
                    }
                }
                (CHANNEL, CLASS_BASIC, 120) => {
                    let nacked = args.u64()?;
                    let multiple = args.u8()? & 1 == 1;
                    if nacked == tag || (multiple && nacked >= tag) {
                        return Err(Error::Nacked { delivery_tag: tag });
                    }
                }
                // basic.return and anything else on the way: not ours to answer.
                _ => {}
            }
        }
    }

    /// Closes the connection (`connection.close`, then waits for `close-ok`, bounded by
    /// [`IO_TIMEOUT`]).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the broker does not answer.
    pub fn close(mut self) -> Result<()> {
        let mut args = Vec::new();
        put_u16(&mut args, 200);
        put_short_str(&mut args, "reply text", b"bye")?;
        put_u16(&mut args, 0);
        put_u16(&mut args, 0);
        self.send_method(0, CLASS_CONNECTION, 50, &args)?;
        let deadline = Instant::now() + IO_TIMEOUT;
        while Instant::now() < deadline {
            let frame = self.read_frame()?;
            if frame.kind == FRAME_METHOD && frame.channel == 0 {
                if let Ok((CLASS_CONNECTION, 51, _)) = parse_method(&frame.payload) {
                    return Ok(());
                }
            }
        }
        Err(Error::Protocol(
            "the broker did not answer connection.close".to_owned(),
        ))
    }

    pub(super) fn write(&mut self, bytes: &[u8], doing: &'static str) -> Result<()> {
        self.stream
            .write_all(bytes)
            .map_err(|source| Error::Io { doing, source })
    }

    pub(super) fn send_method(
        &mut self,
        channel: u16,
        class: u16,
        id: u16,
        args: &[u8],
    ) -> Result<()> {
        let frame = encode_frame(FRAME_METHOD, channel, &method(class, id, args));
        self.write(&frame, "sending a method")
    }

    pub(super) fn read_frame(&mut self) -> Result<Frame> {
        loop {
            if let Some((frame, used)) = parse_frame(&self.buf, self.frame_max)? {
                self.buf.drain(..used);
                return Ok(frame);
            }
            let mut chunk = [0u8; 8192];
            let n = self.stream.read(&mut chunk).map_err(|source| Error::Io {
                doing: "reading from the broker",
                source,
            })?;
            if n == 0 {
                return Err(Error::Io {
                    doing: "reading from the broker",
                    source: io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the broker closed the socket",
                    ),
                });
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The next method frame, skipping heartbeats and content; a `connection.close` or
    /// `channel.close` is answered and returned as [`Error::Closed`].
    pub(super) fn next_method(&mut self) -> Result<(u16, u16, u16, Vec<u8>)> {
        loop {
            let frame = self.read_frame()?;
            if frame.kind != FRAME_METHOD {
                continue; // heartbeat, or the content of a basic.return
            }
            let (class, id, args) = parse_method(&frame.payload)?;
            match (class, id) {
                (CLASS_CONNECTION, 50) => {
                    let (code, text) = parse_close(args)?;
                    let _ = self.send_method(0, CLASS_CONNECTION, 51, &[]);
                    return Err(Error::Closed {
                        scope: "connection",
                        code,
                        text,
                    });
                }
                (CLASS_CHANNEL, 40) => {
                    let (code, text) = parse_close(args)?;
                    let _ = self.send_method(frame.channel, CLASS_CHANNEL, 41, &[]);
                    return Err(Error::Closed {
                        scope: "channel",
                        code,
                        text,
                    });
                }
                _ => return Ok((frame.channel, class, id, args.bytes.to_vec())),
            }
        }
    }

    /// Reads methods until `class.id` on `channel`; anything else is a protocol error.
    pub(super) fn expect(&mut self, channel: u16, class: u16, id: u16) -> Result<Vec<u8>> {
        let (ch, c, m, args) = self.next_method()?;
        if (ch, c, m) != (channel, class, id) {
            return Err(Error::Protocol(format!(
                "expected method {class}.{id} on channel {channel}, got {c}.{m} on channel {ch}"
            )));
        }
        Ok(args)
    }
}
