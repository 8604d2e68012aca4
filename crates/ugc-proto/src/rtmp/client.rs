//! The sans-IO RTMP publishing client (restream push), sharing the chunk,
//! AMF0 and handshake layers with the server.
//!
//! ```text
//!  new() ── C0C1 ──> AwaitS0S1S2 ── C2, connect ──> AwaitConnect
//!        ── _result ── releaseStream, FCPublish, createStream ──> AwaitCreateStream
//!        ── _result(stream id) ── publish(key, "live") ──> AwaitPublishStart
//!        ── onStatus NetStream.Publish.Start ──> Publishing   (ClientEvent::Publishing)
//!  any `_error` / onStatus level "error" ──> Closed            (ClientEvent::Rejected)
//! ```
//!
//! A refusal reports the server's status `code` and `description` (the
//! reason a server such as ours gives: "unknown stream key"). `_error`
//! answers to `releaseStream` and `FCPublish` are not refusals: many servers
//! do not implement those Adobe leftovers (ffmpeg ignores them too).
//!
//! Run loop: [`ClientSession::handle_input`] with every read, then write
//! every [`ClientSession::poll_output`] and handle every
//! [`ClientSession::poll_event`]. Once publishing, send with
//! [`ClientSession::send_video`] / [`ClientSession::send_audio`] /
//! [`ClientSession::send_metadata`] and drain the output again. The session
//! reads no clock: timestamps are the caller's (milliseconds).

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use super::amf0::{self, Amf0Value};
use super::chunk::{
    ChunkDecoder, ChunkEncoder, ChunkLimits, Message, csid, is_ping_request, msg_type,
    ping_response,
};
use super::handshake::{PACKET_SIZE, RTMP_VERSION};
use crate::error::{Error, Result};

/// What a [`ClientSession`] publishes to.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Application (`live` in `rtmp://host/live/<key>`).
    pub app: String,
    /// `tcUrl`: `rtmp://host[:port]/<app>`.
    pub tc_url: String,
    /// The stream key (publish name).
    pub stream_key: String,
    /// Our outgoing chunk size (announced after the handshake).
    pub chunk_size: u32,
    /// Seed of the C1 random bytes.
    pub seed: u64,
}

impl ClientConfig {
    /// Splits an `rtmp://` / `rtmps://` URL `scheme://host[:port]/app[/more]/key`
    /// into app (everything between host and the last segment) and key.
    pub fn from_url(url: &str) -> Result<ClientConfig> {
        let rest = url
            .strip_prefix("rtmp://")
            .or_else(|| url.strip_prefix("rtmps://"))
            .ok_or(Error::InvalidState(
                "URL must start with rtmp:// or rtmps://",
            ))?;
        let scheme_len = url.len() - rest.len();
        let (host, path) = rest
            .split_once('/')
            .ok_or(Error::InvalidState("URL has no /app/key path"))?;
        let (app, key) = path
            .rsplit_once('/')
            .ok_or(Error::InvalidState("URL has no /app/key path"))?;
        if host.is_empty() || app.is_empty() || key.is_empty() {
            return Err(Error::InvalidState("URL needs a host, an app and a key"));
        }
        Ok(ClientConfig {
            app: app.to_owned(),
            tc_url: format!("{}{host}/{app}", &url[..scheme_len]),
            stream_key: key.to_owned(),
            chunk_size: 4096,
            seed: 0x5eed,
        })
    }
}

/// What the client reports.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// The server accepted the publish: media may be sent now.
    Publishing,
    /// The server refused (`_error`, or an error `onStatus`); the session is
    /// closed.
    Rejected {
        /// The status code (`NetStream.Publish.Denied`,
        /// `NetStream.Publish.BadName`, `NetConnection.Connect.Rejected`), or
        /// `_error` when the answer had none.
        code: String,
        /// The server's description: why (empty if it gave none).
        description: String,
    },
    /// The server ended the publish (`onStatus` `NetStream.Unpublish.Success`
    /// or similar); the session is closed.
    Ended {
        /// The status code.
        code: String,
        /// The server's description (empty if it gave none).
        description: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitS0S1S2,
    AwaitConnect,
    AwaitCreateStream,
    AwaitPublishStart,
    Publishing,
    Closed,
}

/// The sans-IO RTMP publishing client; see the [module documentation](self).
#[derive(Debug)]
pub struct ClientSession {
    config: ClientConfig,
    phase: Phase,
    handshake: BytesMut,
    decoder: ChunkDecoder,
    encoder: ChunkEncoder,
    out: BytesMut,
    events: VecDeque<ClientEvent>,
    stream_id: u32,
    next_txn: f64,
    create_txn: f64,
    /// Transactions of `releaseStream` and `FCPublish`, whose `_error` is
    /// no refusal.
    optional_txns: [f64; 2],
    received: u64,
    last_ack: u64,
    peer_window: u32,
    bytes_out: u64,
}

fn s(v: &str) -> Amf0Value {
    Amf0Value::String(v.to_owned())
}

impl ClientSession {
    /// A session; C0C1 is queued in the output at once.
    pub fn new(config: ClientConfig) -> Self {
        let mut out = BytesMut::with_capacity(1 + PACKET_SIZE);
        out.extend_from_slice(&[RTMP_VERSION]);
        out.extend_from_slice(&[0u8; 8]); // time 0, zero
        let mut x = config.seed | 1;
        for _ in 0..(PACKET_SIZE - 8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.extend_from_slice(&[(x >> 24) as u8]);
        }
        ClientSession {
            config,
            phase: Phase::AwaitS0S1S2,
            handshake: BytesMut::new(),
            decoder: ChunkDecoder::new(ChunkLimits::default()),
            encoder: ChunkEncoder::new(),
            out,
            events: VecDeque::new(),
            stream_id: 0,
            next_txn: 1.0,
            create_txn: 0.0,
            optional_txns: [0.0; 2],
            received: 0,
            last_ack: 0,
            peer_window: 2_500_000,
            bytes_out: 0,
        }
    }

    /// Whether media may be sent.
    pub fn is_publishing(&self) -> bool {
        self.phase == Phase::Publishing
    }

    /// Whether the session is over.
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Bytes handed out by [`poll_output`](Self::poll_output) so far.
    pub fn bytes_sent(&self) -> u64 {
        self.bytes_out
    }

    /// Bytes to write to the server, in order.
    pub fn poll_output(&mut self) -> Option<Bytes> {
        if self.out.is_empty() {
            return None;
        }
        let b = self.out.split().freeze();
        self.bytes_out += b.len() as u64;
        Some(b)
    }

    /// Output bytes queued and not yet polled.
    pub fn queued_output(&self) -> usize {
        self.out.len()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// Bytes read from the server.
    pub fn handle_input(&mut self, mut input: &[u8]) -> Result<()> {
        if self.phase == Phase::Closed {
            return Err(Error::Closed);
        }
        self.received += input.len() as u64;
        if self.phase == Phase::AwaitS0S1S2 {
            let need = 1 + 2 * PACKET_SIZE - self.handshake.len();
            let take = need.min(input.len());
            self.handshake.extend_from_slice(&input[..take]);
            input = &input[take..];
            if self.handshake.len() < 1 + 2 * PACKET_SIZE {
                return Ok(());
            }
            if self.handshake[0] != RTMP_VERSION {
                self.phase = Phase::Closed;
                return Err(Error::Handshake(format!(
                    "server answered version {:#04x}",
                    self.handshake[0]
                )));
            }
            // C2 echoes S1.
            let s1 = self.handshake.get(1..1 + PACKET_SIZE).unwrap_or(&[]);
            self.out.extend_from_slice(s1);
            self.handshake = BytesMut::new();
            self.start_connect();
        }
        // Messages completed before bad bytes are handled first: a status
        // right before garbage still reaches the caller.
        let fed = if input.is_empty() {
            Ok(())
        } else {
            self.decoder.feed(input)
        };
        while let Some(m) = self.decoder.poll_message() {
            self.on_message(m)?;
        }
        if let Err(e) = fed {
            self.phase = Phase::Closed;
            return Err(e);
        }
        if self.received - self.last_ack >= u64::from(self.peer_window) {
            self.last_ack = self.received;
            let seq = (self.received & 0xffff_ffff) as u32;
            self.encoder.write(
                csid::CONTROL,
                0,
                msg_type::ACKNOWLEDGEMENT,
                0,
                &seq.to_be_bytes(),
                &mut self.out,
            );
        }
        Ok(())
    }

    fn command(&mut self, stream_id: u32, values: &[Amf0Value]) {
        let mut body = BytesMut::with_capacity(256);
        amf0::encode_all(values, &mut body);
        self.encoder.write(
            csid::COMMAND,
            0,
            msg_type::COMMAND_AMF0,
            stream_id,
            &body,
            &mut self.out,
        );
    }

    fn txn(&mut self) -> f64 {
        let t = self.next_txn;
        self.next_txn += 1.0;
        t
    }

    fn start_connect(&mut self) {
        let cs = self.config.chunk_size.clamp(128, 65_536);
        self.encoder.write(
            csid::CONTROL,
            0,
            msg_type::SET_CHUNK_SIZE,
            0,
            &cs.to_be_bytes(),
            &mut self.out,
        );
        self.encoder.set_chunk_size(cs);
        let txn = self.txn();
        let props = vec![
            ("app".to_owned(), s(&self.config.app)),
            ("type".to_owned(), s("nonprivate")),
            ("flashVer".to_owned(), s("FMLE/3.0 (compatible; ugc)")),
            ("tcUrl".to_owned(), s(&self.config.tc_url)),
        ];
        self.command(
            0,
            &[
                s("connect"),
                Amf0Value::Number(txn),
                Amf0Value::Object(props),
            ],
        );
        self.phase = Phase::AwaitConnect;
    }

    fn on_message(&mut self, m: Message) -> Result<()> {
        match m.type_id {
            msg_type::USER_CONTROL if is_ping_request(&m.payload) => {
                let p = ping_response(&m.payload);
                self.encoder.write(
                    csid::CONTROL,
                    0,
                    msg_type::USER_CONTROL,
                    0,
                    &p,
                    &mut self.out,
                );
            }
            msg_type::WINDOW_ACK_SIZE => {
                if let Some(v) = m.payload.get(..4) {
                    let v = u32::from_be_bytes([v[0], v[1], v[2], v[3]]);
                    if v > 0 {
                        self.peer_window = v;
                    }
                }
            }
            msg_type::COMMAND_AMF0 | msg_type::COMMAND_AMF3 => {
                let body = if m.type_id == msg_type::COMMAND_AMF3 {
                    m.payload.get(1..).unwrap_or(&[])
                } else {
                    &m.payload[..]
                };
                let values = amf0::decode(body)?;
                self.on_command(values);
            }
            _ => {}
        }
        Ok(())
    }

    fn reject(&mut self, code: String, description: String) {
        self.phase = Phase::Closed;
        self.events
            .push_back(ClientEvent::Rejected { code, description });
    }

    fn on_command(&mut self, values: Vec<Amf0Value>) {
        let name = values.first().and_then(|v| v.as_str()).unwrap_or("");
        let txn = values.get(1).and_then(|v| v.as_f64()).unwrap_or(0.0);
        // The info object is the one with a `code` (an `_error` may carry
        // a command object such as `{fmsVer, capabilities}` before it).
        let info = values
            .iter()
            .skip(2)
            .find(|v| v.get("code").is_some())
            .or_else(|| values.iter().skip(2).find(|v| v.properties().is_some()));
        let field = |k: &str| {
            info.and_then(|i| i.get(k))
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_owned()
        };
        match (name, self.phase) {
            ("_error", _) if self.optional_txns.contains(&txn) => {}
            ("_error", _) => {
                let code = field("code");
                let desc = field("description");
                self.reject(
                    if code.is_empty() {
                        "_error".into()
                    } else {
                        code
                    },
                    desc,
                );
            }
            ("_result", Phase::AwaitConnect) => {
                let key = self.config.stream_key.clone();
                let t1 = self.txn();
                self.optional_txns[0] = t1;
                self.command(
                    0,
                    &[
                        s("releaseStream"),
                        Amf0Value::Number(t1),
                        Amf0Value::Null,
                        s(&key),
                    ],
                );
                let t2 = self.txn();
                self.optional_txns[1] = t2;
                self.command(
                    0,
                    &[
                        s("FCPublish"),
                        Amf0Value::Number(t2),
                        Amf0Value::Null,
                        s(&key),
                    ],
                );
                let t3 = self.txn();
                self.create_txn = t3;
                self.command(
                    0,
                    &[s("createStream"), Amf0Value::Number(t3), Amf0Value::Null],
                );
                self.phase = Phase::AwaitCreateStream;
            }
            ("_result", Phase::AwaitCreateStream) if txn == self.create_txn => {
                let id = values
                    .iter()
                    .skip(2)
                    .find_map(|v| v.as_f64())
                    .unwrap_or(1.0);
                self.stream_id = if id.is_finite() && (0.0..=16_777_215.0).contains(&id) {
                    id as u32
                } else {
                    1
                };
                let key = self.config.stream_key.clone();
                let t = self.txn();
                let stream_id = self.stream_id;
                let mut body = BytesMut::with_capacity(128);
                amf0::encode_all(
                    &[
                        s("publish"),
                        Amf0Value::Number(t),
                        Amf0Value::Null,
                        s(&key),
                        s("live"),
                    ],
                    &mut body,
                );
                self.encoder.write(
                    csid::STREAM,
                    0,
                    msg_type::COMMAND_AMF0,
                    stream_id,
                    &body,
                    &mut self.out,
                );
                self.phase = Phase::AwaitPublishStart;
            }
            ("onStatus", _) => {
                let level = field("level");
                let code = field("code");
                if level == "error" {
                    let desc = field("description");
                    self.reject(code, desc);
                } else if code == "NetStream.Publish.Start" {
                    if self.phase == Phase::AwaitPublishStart {
                        self.phase = Phase::Publishing;
                        self.events.push_back(ClientEvent::Publishing);
                    }
                } else if code.starts_with("NetStream.Unpublish")
                    || code == "NetConnection.Connect.Closed"
                {
                    self.phase = Phase::Closed;
                    let description = field("description");
                    self.events
                        .push_back(ClientEvent::Ended { code, description });
                }
            }
            _ => {}
        }
    }

    fn media(&mut self, csid: u32, type_id: u8, timestamp_ms: u32, body: &[u8]) -> Result<()> {
        if self.phase != Phase::Publishing {
            return Err(Error::InvalidState("media before NetStream.Publish.Start"));
        }
        let stream_id = self.stream_id;
        self.encoder
            .write(csid, timestamp_ms, type_id, stream_id, body, &mut self.out);
        Ok(())
    }

    /// Sends an FLV video tag body at `timestamp_ms`.
    pub fn send_video(&mut self, timestamp_ms: u32, body: &[u8]) -> Result<()> {
        self.media(csid::VIDEO, msg_type::VIDEO, timestamp_ms, body)
    }

    /// Sends an FLV audio tag body at `timestamp_ms`.
    pub fn send_audio(&mut self, timestamp_ms: u32, body: &[u8]) -> Result<()> {
        self.media(csid::AUDIO, msg_type::AUDIO, timestamp_ms, body)
    }

    /// Sends `@setDataFrame("onMetaData", props)`.
    pub fn send_metadata(&mut self, props: Vec<(String, Amf0Value)>) -> Result<()> {
        let mut body = BytesMut::with_capacity(256);
        amf0::encode_all(
            &[
                s("@setDataFrame"),
                s("onMetaData"),
                Amf0Value::EcmaArray(props),
            ],
            &mut body,
        );
        self.media(csid::STREAM, msg_type::DATA_AMF0, 0, &body)
    }

    /// Ends the publish politely (`FCUnpublish`, `deleteStream`).
    pub fn unpublish(&mut self) {
        if self.phase == Phase::Closed {
            return;
        }
        let key = self.config.stream_key.clone();
        let t = self.txn();
        self.command(
            0,
            &[
                s("FCUnpublish"),
                Amf0Value::Number(t),
                Amf0Value::Null,
                s(&key),
            ],
        );
        let t = self.txn();
        let id = f64::from(self.stream_id);
        self.command(
            0,
            &[
                s("deleteStream"),
                Amf0Value::Number(t),
                Amf0Value::Null,
                Amf0Value::Number(id),
            ],
        );
        self.phase = Phase::Closed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtmp::{ServerEvent, ServerSession, SessionConfig};
    use ugc_core::DenyKind;

    #[test]
    fn url_splits_into_app_and_key() {
        let c = ClientConfig::from_url("rtmp://a.example:1936/live2/app/k3y").unwrap();
        assert_eq!(c.app, "live2/app");
        assert_eq!(c.stream_key, "k3y");
        assert_eq!(c.tc_url, "rtmp://a.example:1936/live2/app");
        let c = ClientConfig::from_url("rtmps://b/live/x").unwrap();
        assert_eq!(c.tc_url, "rtmps://b/live");
        for bad in [
            "http://a/b/c",
            "rtmp://a",
            "rtmp://a/k",
            "rtmp:///live/k",
            "rtmp://a/live/",
        ] {
            assert!(ClientConfig::from_url(bad).is_err(), "{bad}");
        }
    }

    /// Runs our client against our server core in memory until the server
    /// asks for a publish decision, which `decide` makes; returns the
    /// client's events after that.
    fn publish_against_our_server(
        key: &str,
        decide: impl FnOnce(&mut ServerSession),
    ) -> (ClientSession, Vec<ClientEvent>) {
        let mut client =
            ClientSession::new(ClientConfig::from_url(&format!("rtmp://h/live/{key}")).unwrap());
        let mut server = ServerSession::new(SessionConfig::default());
        let mut decide = Some(decide);
        let mut events = Vec::new();
        for _ in 0..20 {
            while let Some(b) = client.poll_output() {
                if !server.is_closed() {
                    server.handle_input(&b).unwrap();
                }
            }
            while let Some(ev) = server.poll_event() {
                if let ServerEvent::PublishRequested { .. } = ev {
                    (decide.take().expect("one publish request"))(&mut server);
                }
            }
            while let Some(b) = server.poll_output() {
                client.handle_input(&b).unwrap();
            }
            events.extend(std::iter::from_fn(|| client.poll_event()));
            if !events.is_empty() {
                break;
            }
        }
        (client, events)
    }

    #[test]
    fn a_refusal_reports_the_servers_code_and_reason() {
        let (client, events) = publish_against_our_server("wrong", |s| {
            s.reject_publish(DenyKind::Unauthorized, "unknown stream key")
                .unwrap();
        });
        assert_eq!(
            events,
            vec![ClientEvent::Rejected {
                code: "NetStream.Publish.Denied".into(),
                description: "unknown stream key".into(),
            }]
        );
        assert!(client.is_closed());
        let (_, events) = publish_against_our_server("taken", |s| {
            s.reject_publish(DenyKind::BadName, "already publishing")
                .unwrap();
        });
        assert_eq!(
            events,
            vec![ClientEvent::Rejected {
                code: "NetStream.Publish.BadName".into(),
                description: "already publishing".into(),
            }]
        );
    }

    /// Server messages, chunked at the default 128-byte chunk size.
    fn server_says(messages: &[&[Amf0Value]]) -> BytesMut {
        let mut enc = ChunkEncoder::new();
        let mut out = BytesMut::new();
        for m in messages {
            let mut body = BytesMut::new();
            amf0::encode_all(m, &mut body);
            enc.write(csid::COMMAND, 0, msg_type::COMMAND_AMF0, 0, &body, &mut out);
        }
        out
    }

    fn handshaken_client() -> ClientSession {
        let mut c = ClientSession::new(ClientConfig::from_url("rtmp://h/app/key").unwrap());
        c.handle_input(&vec![RTMP_VERSION; 1 + 2 * PACKET_SIZE])
            .unwrap();
        assert_eq!(c.phase, Phase::AwaitConnect);
        c
    }

    /// FMS-style `_error` answers to `connect` carry a command object
    /// (`fmsVer`, `capabilities`) before the info object; the refusal is in
    /// the latter.
    #[test]
    fn a_connect_refusal_is_read_from_the_info_object() {
        let mut c = handshaken_client();
        let input = server_says(&[&[
            s("_error"),
            Amf0Value::Number(1.0),
            Amf0Value::Object(vec![
                ("fmsVer".into(), s("FMS/3,5,7,7009")),
                ("capabilities".into(), Amf0Value::Number(31.0)),
            ]),
            Amf0Value::Object(vec![
                ("level".into(), s("error")),
                ("code".into(), s("NetConnection.Connect.Rejected")),
                (
                    "description".into(),
                    s("[ AccessManager.Reject ] : authentication failed"),
                ),
            ]),
        ]]);
        c.handle_input(&input).unwrap();
        assert_eq!(
            c.poll_event(),
            Some(ClientEvent::Rejected {
                code: "NetConnection.Connect.Rejected".into(),
                description: "[ AccessManager.Reject ] : authentication failed".into(),
            })
        );
        assert!(c.is_closed());
    }

    /// Servers without `releaseStream` / `FCPublish` answer them with
    /// `_error`; the publish goes on, and a later refusal is still reported.
    #[test]
    fn errors_for_release_stream_and_fc_publish_are_not_refusals() {
        let mut c = handshaken_client();
        let connected = server_says(&[&[
            s("_result"),
            Amf0Value::Number(1.0),
            Amf0Value::Null,
            Amf0Value::Object(vec![("code".into(), s("NetConnection.Connect.Success"))]),
        ]]);
        c.handle_input(&connected).unwrap();
        assert_eq!(c.phase, Phase::AwaitCreateStream);
        let not_found = |txn: f64| {
            vec![
                s("_error"),
                Amf0Value::Number(txn),
                Amf0Value::Null,
                Amf0Value::Object(vec![
                    ("level".into(), s("error")),
                    ("code".into(), s("NetConnection.Call.Failed")),
                    ("description".into(), s("Method not found")),
                ]),
            ]
        };
        let (release, fc_publish) = (not_found(2.0), not_found(3.0));
        let created = [
            s("_result"),
            Amf0Value::Number(4.0),
            Amf0Value::Null,
            Amf0Value::Number(1.0),
        ];
        c.handle_input(&server_says(&[&release, &fc_publish, &created]))
            .unwrap();
        assert_eq!(c.poll_event(), None);
        assert_eq!(c.phase, Phase::AwaitPublishStart);
        c.handle_input(&server_says(&[&[
            s("onStatus"),
            Amf0Value::Number(0.0),
            Amf0Value::Null,
            Amf0Value::Object(vec![
                ("level".into(), s("error")),
                ("code".into(), s("NetStream.Publish.Denied")),
                ("description".into(), s("stream key was rotated or deleted")),
            ]),
        ]]))
        .unwrap();
        assert_eq!(
            c.poll_event(),
            Some(ClientEvent::Rejected {
                code: "NetStream.Publish.Denied".into(),
                description: "stream key was rotated or deleted".into(),
            })
        );
    }

    /// Our client against our server core, in memory.
    #[test]
    fn client_publishes_to_our_server_session() {
        let mut client = ClientSession::new(ClientConfig::from_url("rtmp://h/live/key1").unwrap());
        let mut server = ServerSession::new(SessionConfig::default());
        let mut got = Vec::new();
        let mut publishing = false;
        for _ in 0..20 {
            while let Some(b) = client.poll_output() {
                server.handle_input(&b).unwrap();
            }
            while let Some(ev) = server.poll_event() {
                match ev {
                    ServerEvent::PublishRequested { app, key, .. } => {
                        assert_eq!((app.as_str(), key.as_str()), ("live", "key1"));
                        server.accept_publish().unwrap();
                    }
                    ServerEvent::Video { timestamp_ms, body } => got.push((timestamp_ms, body)),
                    _ => {}
                }
            }
            while let Some(b) = server.poll_output() {
                client.handle_input(&b).unwrap();
            }
            while let Some(ev) = client.poll_event() {
                assert_eq!(ev, ClientEvent::Publishing);
                publishing = true;
            }
            if publishing && got.is_empty() {
                client.send_video(40, &[0x17, 1, 0, 0, 0, 0xaa]).unwrap();
                client.send_video(80, &vec![0x27; 10_000]).unwrap();
            }
            if got.len() == 2 {
                break;
            }
        }
        assert!(publishing);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0, 40);
        assert_eq!(got[1].1.len(), 10_000);
    }
}
