//! The RTMP server session: handshake, chunk streams and the NetConnection /
//! NetStream commands of a publisher, as one sans-IO state machine.
//!
//! ```text
//!  Handshake(ExpectC0C1) ─C0C1─> Handshake(ExpectC2) ─C2─> Connected
//!  Connected:  connect ──> _result (after Window Ack Size, Set Peer Bandwidth, Set Chunk Size)
//!              releaseStream / FCPublish / createStream ──> answers
//!              publish ──> ServerEvent::PublishRequested   [Idle -> Pending]
//!                 caller: accept_publish()  [-> Publishing]  or reject_publish()  [-> closed]
//!                 (reject: onStatus Denied / BadName / Failed + the caller's reason)
//!              audio / video / @setDataFrame ──> ServerEvent::Audio / Video / Metadata
//!              FCUnpublish / deleteStream / closeStream ──> ServerEvent::PublishEnded  [-> Idle]
//! ```
//!
//! Run loop: after every [`ServerSession::handle_input`] (and after
//! [`ServerSession::accept_publish`] / [`ServerSession::reject_publish`]),
//! write every [`ServerSession::poll_output`] to the peer and handle every
//! [`ServerSession::poll_event`]. The session reads no clock and owns no
//! socket; timeouts are the caller's.
//!
//! After a rejection the session is closed: write its last output, then
//! half-close the connection and keep reading (and discarding) until the
//! peer closes or a short linger passes. Closing at once makes the kernel
//! answer the client's next writes with a reset, so it may never show the
//! status (librtmp even dies of SIGPIPE). The tokio adapter does this.
//!
//! ```
//! use ugc_core::DenyKind;
//! use ugc_proto::rtmp::{ServerEvent, ServerSession, SessionConfig};
//!
//! let mut session = ServerSession::new(SessionConfig::default());
//! # let mut incoming: Vec<Vec<u8>> = vec![vec![3; 1537]];
//! # let mut written = Vec::new();
//! for bytes in incoming.drain(..) {
//!     session.handle_input(&bytes)?;
//!     while let Some(out) = session.poll_output() {
//!         written.extend_from_slice(&out); // socket.write_all(&out)
//!     }
//!     while let Some(event) = session.poll_event() {
//!         match event {
//!             ServerEvent::PublishRequested { app, key, .. } => {
//!                 if app == "live" && !key.is_empty() {
//!                     session.accept_publish()?;
//!                 } else {
//!                     session.reject_publish(DenyKind::Unauthorized, "unknown stream key")?;
//!                 }
//!             }
//!             ServerEvent::Video { timestamp_ms, body } => { let _ = (timestamp_ms, body); }
//!             _ => {}
//!         }
//!     }
//! }
//! # assert_eq!(written.len(), 1 + 2 * 1536);
//! # Ok::<(), ugc_proto::Error>(())
//! ```

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use ugc_codec::flv::FlvMetadata;
use ugc_core::DenyKind;

use super::amf0::{self, Amf0Value};
use super::chunk::{
    ChunkDecoder, ChunkEncoder, ChunkLimits, Message, be_u32, csid, is_ping_request, msg_type,
    ping_response, user_control,
};
use super::handshake::{C0C1Outcome, C2Outcome, ExpectC0C1, ExpectC2};
use crate::error::{Error, Result, short_hex};

/// Settings of a [`ServerSession`].
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// The chunk size we send with (announced after `connect`).
    pub chunk_size: u32,
    /// Window Acknowledgement Size we announce.
    pub window_ack_size: u32,
    /// Set Peer Bandwidth we announce.
    pub peer_bandwidth: u32,
    /// Limits of the chunk layer once a publish is accepted (a 4K keyframe
    /// can be megabytes).
    pub limits: ChunkLimits,
    /// Limits of the chunk layer until then: a peer nobody authorized yet
    /// sends commands of a few hundred bytes, and may not make us hold
    /// 16 MiB messages (whose AMF0 would decode into many times that) per
    /// connection. Default: messages up to 64 KiB, 256 KiB in reassembly.
    pub unauthorized_limits: ChunkLimits,
    /// Message streams a client may create.
    pub max_message_streams: u32,
    /// Seeds the random filler of S1/S2 (the core reads no entropy).
    pub handshake_seed: u64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            chunk_size: 4096,
            window_ack_size: 2_500_000,
            peer_bandwidth: 2_500_000,
            limits: ChunkLimits::default(),
            unauthorized_limits: ChunkLimits {
                max_message_size: 64 << 10,
                max_pending_bytes: 256 << 10,
                ..ChunkLimits::default()
            },
            max_message_streams: 8,
            handshake_seed: 0x9e37_79b9_7f4a_7c15,
        }
    }
}

/// What a [`ServerSession`] reports to its caller.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ServerEvent {
    /// The client asked to publish. Answer with
    /// [`ServerSession::accept_publish`] or [`ServerSession::reject_publish`].
    PublishRequested {
        /// Application (`live` in `rtmp://host/live/key`).
        app: String,
        /// Stream key, without the query string.
        key: String,
        /// What followed `?` in the publish name (`token=...`), if anything.
        query: Option<String>,
        /// `tcUrl` from `connect`.
        tc_url: Option<String>,
    },
    /// The publisher stopped (`FCUnpublish`, `deleteStream`, `closeStream`).
    PublishEnded,
    /// `@setDataFrame` / `onMetaData`.
    Metadata(FlvMetadata),
    /// One audio message: an FLV AUDIODATA body.
    Audio {
        /// Timestamp in milliseconds, widened past the 32-bit wrap.
        timestamp_ms: i64,
        /// The body (shares the reassembled message buffer).
        body: Bytes,
    },
    /// One video message: an FLV VIDEODATA body.
    Video {
        /// Timestamp in milliseconds, widened past the 32-bit wrap.
        timestamp_ms: i64,
        /// The body (shares the reassembled message buffer).
        body: Bytes,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Publish {
    Idle,
    Pending { stream_id: u32 },
    Publishing { stream_id: u32 },
}

#[derive(Debug)]
struct Conn {
    decoder: ChunkDecoder,
    encoder: ChunkEncoder,
    app: Option<String>,
    tc_url: Option<String>,
    streams_created: u32,
    publish: Publish,
    publish_key: String,
    received: u64,
    last_ack: u64,
    peer_window: u32,
}

#[derive(Debug)]
enum Phase {
    C0C1(ExpectC0C1),
    C2(ExpectC2),
    Connected(Box<Conn>),
    /// Between phases (only observable after a bug).
    Transition,
}

/// One RTMP server connection as a state machine. See the module docs for
/// the run loop.
#[derive(Debug)]
pub struct ServerSession {
    config: SessionConfig,
    phase: Phase,
    /// Handshake bytes not consumed yet.
    hs_input: BytesMut,
    out: BytesMut,
    events: VecDeque<ServerEvent>,
    closed: bool,
}

impl ServerSession {
    /// A session waiting for C0C1.
    pub fn new(config: SessionConfig) -> Self {
        let hs = ExpectC0C1::new(config.handshake_seed, 0);
        ServerSession {
            config,
            phase: Phase::C0C1(hs),
            hs_input: BytesMut::new(),
            out: BytesMut::new(),
            events: VecDeque::new(),
            closed: false,
        }
    }

    /// Whether the handshake is complete.
    pub fn is_connected(&self) -> bool {
        matches!(self.phase, Phase::Connected(_))
    }

    /// Whether the session is publishing (accepted).
    pub fn is_publishing(&self) -> bool {
        matches!(&self.phase, Phase::Connected(c) if matches!(c.publish, Publish::Publishing { .. }))
    }

    /// Whether the session was closed by an error or a rejection; the caller
    /// should flush [`Self::poll_output`] and close the connection.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Bytes the session has consumed after the handshake.
    pub fn chunk_offset(&self) -> u64 {
        match &self.phase {
            Phase::Connected(c) => c.decoder.offset(),
            _ => 0,
        }
    }

    /// Feeds bytes received from the peer. Afterwards drain
    /// [`Self::poll_output`] and [`Self::poll_event`]. An error means the
    /// peer misbehaved; the session is closed (what it already queued, e.g.
    /// events of earlier messages, can still be drained).
    pub fn handle_input(&mut self, input: &[u8]) -> Result<()> {
        if self.closed {
            return Err(Error::Closed);
        }
        let r = self.input_inner(input);
        if r.is_err() {
            self.closed = true;
        }
        r
    }

    fn input_inner(&mut self, input: &[u8]) -> Result<()> {
        if let Phase::Connected(conn) = &mut self.phase {
            return conn.feed(input, &self.config, &mut self.out, &mut self.events);
        }
        self.hs_input.extend_from_slice(input);
        loop {
            match std::mem::replace(&mut self.phase, Phase::Transition) {
                Phase::C0C1(hs) => match hs.read(&mut self.hs_input, &mut self.out)? {
                    C0C1Outcome::NeedMore(hs) => {
                        self.phase = Phase::C0C1(hs);
                        return Ok(());
                    }
                    C0C1Outcome::Done(next) => self.phase = Phase::C2(next),
                },
                Phase::C2(hs) => match hs.read(&mut self.hs_input)? {
                    C2Outcome::NeedMore(hs) => {
                        self.phase = Phase::C2(hs);
                        return Ok(());
                    }
                    C2Outcome::Done(_connected) => {
                        let mut conn = Box::new(Conn {
                            decoder: ChunkDecoder::new(self.config.unauthorized_limits.clone()),
                            encoder: ChunkEncoder::new(),
                            app: None,
                            tc_url: None,
                            streams_created: 0,
                            publish: Publish::Idle,
                            publish_key: String::new(),
                            received: 0,
                            last_ack: 0,
                            peer_window: self.config.window_ack_size,
                        });
                        let rest = std::mem::take(&mut self.hs_input);
                        let r = conn.feed(&rest, &self.config, &mut self.out, &mut self.events);
                        self.phase = Phase::Connected(conn);
                        return r;
                    }
                },
                Phase::Connected(_) | Phase::Transition => {
                    return Err(Error::InvalidState("handshake phase lost"));
                }
            }
        }
    }

    /// Bytes to send to the peer, if any. Call until `None` after every input.
    pub fn poll_output(&mut self) -> Option<Bytes> {
        if self.out.is_empty() {
            None
        } else {
            Some(self.out.split().freeze())
        }
    }

    /// The next event, if any. Call until `None` after every input.
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }

    /// Accepts the pending publish: sends Stream Begin and `onStatus`
    /// `NetStream.Publish.Start` on the publishing message stream, then
    /// handles what the client sent after `publish` (drain
    /// [`Self::poll_output`] and [`Self::poll_event`] afterwards). Fails with
    /// [`Error::InvalidState`] without a pending publish, or with the peer's
    /// error if that queued input was bad (the session is then closed).
    pub fn accept_publish(&mut self) -> Result<()> {
        let Phase::Connected(conn) = &mut self.phase else {
            return Err(Error::InvalidState("accept_publish before connect"));
        };
        let Publish::Pending { stream_id } = conn.publish else {
            return Err(Error::InvalidState(
                "accept_publish without a pending publish",
            ));
        };
        conn.publish = Publish::Publishing { stream_id };
        // Authorized: media may come in messages as large as the stream needs.
        conn.decoder.set_limits(self.config.limits.clone());
        let mut uc = [0u8; 6];
        uc[..2].copy_from_slice(&user_control::STREAM_BEGIN.to_be_bytes());
        uc[2..].copy_from_slice(&stream_id.to_be_bytes());
        conn.encoder.write(
            csid::CONTROL,
            0,
            msg_type::USER_CONTROL,
            0,
            &uc,
            &mut self.out,
        );
        let desc = format!("{} is now published.", conn.publish_key);
        let key = conn.publish_key.clone();
        conn.on_status(
            stream_id,
            "status",
            "NetStream.Publish.Start",
            &desc,
            Some(key),
            &mut self.out,
        );
        let r = conn.process_queued(&self.config, &mut self.out, &mut self.events);
        if r.is_err() {
            self.closed = true;
        }
        r
    }

    /// Refuses the pending publish with an `onStatus` of level `error` on
    /// the publishing stream, whose code says what kind of refusal it is
    /// ([`refusal_code`]) and whose description is `reason` (at most
    /// [`MAX_DESCRIPTION`] bytes, control characters blanked), and closes
    /// the session. Flush [`Self::poll_output`], then half-close the
    /// connection and let the peer read it (see the module docs).
    ///
    /// What clients print for [`DenyKind::Unauthorized`]
    /// (`NetStream.Publish.Denied`): ffmpeg `Server error: <reason>`;
    /// GStreamer `rtmp2sink` `publish denied: {.. "description": "<reason>" }`;
    /// OBS's librtmp `NetStream.Publish.Denied (<reason>)` in its log.
    pub fn reject_publish(&mut self, kind: DenyKind, reason: &str) -> Result<()> {
        let Phase::Connected(conn) = &mut self.phase else {
            return Err(Error::InvalidState("reject_publish before connect"));
        };
        let Publish::Pending { stream_id } = conn.publish else {
            return Err(Error::InvalidState(
                "reject_publish without a pending publish",
            ));
        };
        conn.publish = Publish::Idle;
        // What the client sent after `publish` is dropped unread.
        while conn.decoder.poll_message().is_some() {}
        conn.on_status(
            stream_id,
            "error",
            refusal_code(kind),
            &status_description(reason),
            None,
            &mut self.out,
        );
        self.closed = true;
        Ok(())
    }
}

/// The longest `onStatus` description we send, in bytes.
pub const MAX_DESCRIPTION: usize = 256;

/// The `onStatus` code that refuses a publish for `kind`:
///
/// | kind | code | meaning (Adobe's) and what clients do |
/// |---|---|---|
/// | `Unauthorized` | `NetStream.Publish.Denied` | GStreamer `rtmp2sink`: "publish denied" (permission denied); OBS's librtmp: closes and logs it |
/// | `BadName` | `NetStream.Publish.BadName` | "a stream of that name is already published": `rtmp2sink` says "stream already exists" |
/// | `Unavailable` | `NetStream.Failed` | "an error for another reason"; librtmp closes on it |
///
/// ffmpeg prints the description of any `error`-level status.
pub fn refusal_code(kind: DenyKind) -> &'static str {
    match kind {
        DenyKind::Unauthorized => "NetStream.Publish.Denied",
        DenyKind::BadName => "NetStream.Publish.BadName",
        // Unavailable, and kinds added later.
        _ => "NetStream.Failed",
    }
}

/// `reason` as an `onStatus` description: control characters (a client
/// prints it in its log) become spaces, and it is cut at a character
/// boundary to at most [`MAX_DESCRIPTION`] bytes.
fn status_description(reason: &str) -> String {
    let mut out = String::with_capacity(reason.len().min(MAX_DESCRIPTION));
    for c in reason.chars() {
        if out.len() + c.len_utf8() > MAX_DESCRIPTION {
            break;
        }
        out.push(if c.is_control() { ' ' } else { c });
    }
    out
}

impl Conn {
    fn feed(
        &mut self,
        input: &[u8],
        config: &SessionConfig,
        out: &mut BytesMut,
        events: &mut VecDeque<ServerEvent>,
    ) -> Result<()> {
        self.received += input.len() as u64;
        let fed = self.decoder.feed(input);
        self.process_queued(config, out, events)?;
        fed?;
        if matches!(self.publish, Publish::Pending { .. })
            && self.decoder.queued_bytes() > config.limits.max_pending_bytes
        {
            return Err(Error::Protocol(format!(
                "{} bytes of messages queued while the publish awaits a decision",
                self.decoder.queued_bytes()
            )));
        }
        if self.received - self.last_ack >= u64::from(self.peer_window) {
            self.last_ack = self.received;
            // The sequence number wraps at 2^32 by definition.
            let seq = (self.received & 0xffff_ffff) as u32;
            self.encoder.write(
                csid::CONTROL,
                0,
                msg_type::ACKNOWLEDGEMENT,
                0,
                &seq.to_be_bytes(),
                out,
            );
        }
        Ok(())
    }

    /// Handles the decoded messages, stopping while a publish awaits the
    /// caller's decision: what the client sent after `publish` (media, or an
    /// `FCUnpublish` in the same read) is handled after the decision, in order.
    fn process_queued(
        &mut self,
        config: &SessionConfig,
        out: &mut BytesMut,
        events: &mut VecDeque<ServerEvent>,
    ) -> Result<()> {
        while !matches!(self.publish, Publish::Pending { .. }) {
            let Some(m) = self.decoder.poll_message() else {
                break;
            };
            self.on_message(m, config, out, events)?;
        }
        Ok(())
    }

    fn media_stream(&self) -> Option<u32> {
        match self.publish {
            Publish::Pending { stream_id } | Publish::Publishing { stream_id } => Some(stream_id),
            Publish::Idle => None,
        }
    }

    fn on_message(
        &mut self,
        m: Message,
        config: &SessionConfig,
        out: &mut BytesMut,
        events: &mut VecDeque<ServerEvent>,
    ) -> Result<()> {
        match m.type_id {
            msg_type::AUDIO | msg_type::VIDEO
                if self.media_stream() == Some(m.stream_id) && !m.payload.is_empty() =>
            {
                events.push_back(media_event(m.type_id, m.timestamp, m.payload));
            }
            msg_type::USER_CONTROL if is_ping_request(&m.payload) => {
                let p = ping_response(&m.payload);
                self.encoder
                    .write(csid::CONTROL, 0, msg_type::USER_CONTROL, 0, &p, out);
            }
            msg_type::WINDOW_ACK_SIZE => {
                if let Some(v) = be_u32(&m.payload)
                    && v > 0
                {
                    self.peer_window = v;
                }
            }
            msg_type::COMMAND_AMF0 | msg_type::COMMAND_AMF3 => {
                let body = amf_body(m.type_id == msg_type::COMMAND_AMF3, &m.payload);
                let values = amf0::decode(body)?;
                self.on_command(m.stream_id, values, config, out, events)?;
            }
            msg_type::DATA_AMF0 | msg_type::DATA_AMF3 => {
                let body = amf_body(m.type_id == msg_type::DATA_AMF3, &m.payload);
                let values = amf0::decode(body)?;
                if self.media_stream() == Some(m.stream_id)
                    && let Some(meta) = metadata(&values)
                {
                    events.push_back(ServerEvent::Metadata(meta));
                }
            }
            msg_type::AGGREGATE if self.media_stream() == Some(m.stream_id) => {
                split_aggregate(m.timestamp, &m.payload, events)?;
            }
            // Set Chunk Size and Abort were obeyed by the decoder;
            // Acknowledgement and Set Peer Bandwidth need nothing from a
            // server that sends little; other types are ignored.
            _ => {}
        }
        Ok(())
    }

    fn on_command(
        &mut self,
        stream_id: u32,
        values: Vec<Amf0Value>,
        config: &SessionConfig,
        out: &mut BytesMut,
        events: &mut VecDeque<ServerEvent>,
    ) -> Result<()> {
        let mut it = values.into_iter();
        let Some(Amf0Value::String(name)) = it.next() else {
            // Not a command; ignore.
            return Ok(());
        };
        let txid = it.next().and_then(|v| v.as_f64()).unwrap_or(0.0);
        let args: Vec<Amf0Value> = it.collect();
        let arg_str = |i: usize| args.get(i).and_then(Amf0Value::as_str).map(str::to_owned);
        match name.as_str() {
            "connect" => {
                if self.app.is_some() {
                    return Err(Error::Protocol("second connect on one connection".into()));
                }
                let obj = args.first();
                let prop = |k: &str| obj.and_then(|o| o.get(k));
                let app = prop("app").and_then(Amf0Value::as_str).unwrap_or_default();
                let app = app.trim_end_matches('/').to_owned();
                self.tc_url = prop("tcUrl").and_then(Amf0Value::as_str).map(str::to_owned);
                let encoding = prop("objectEncoding")
                    .and_then(Amf0Value::as_f64)
                    .unwrap_or(0.0);
                self.app = Some(app);
                self.encoder.write(
                    csid::CONTROL,
                    0,
                    msg_type::WINDOW_ACK_SIZE,
                    0,
                    &config.window_ack_size.to_be_bytes(),
                    out,
                );
                let mut bw = [2u8; 5];
                bw[..4].copy_from_slice(&config.peer_bandwidth.to_be_bytes());
                self.encoder
                    .write(csid::CONTROL, 0, msg_type::SET_PEER_BANDWIDTH, 0, &bw, out);
                let cs = config.chunk_size.clamp(1, super::chunk::MAX_CHUNK_SIZE);
                self.encoder.write(
                    csid::CONTROL,
                    0,
                    msg_type::SET_CHUNK_SIZE,
                    0,
                    &cs.to_be_bytes(),
                    out,
                );
                self.encoder.set_chunk_size(cs);
                self.command(
                    0,
                    &[
                        s("_result"),
                        Amf0Value::Number(txid),
                        Amf0Value::Object(vec![
                            ("fmsVer".into(), s("FMS/3,0,1,123")),
                            ("capabilities".into(), Amf0Value::Number(31.0)),
                        ]),
                        Amf0Value::Object(vec![
                            ("level".into(), s("status")),
                            ("code".into(), s("NetConnection.Connect.Success")),
                            ("description".into(), s("Connection succeeded.")),
                            ("objectEncoding".into(), Amf0Value::Number(encoding)),
                        ]),
                    ],
                    out,
                );
            }
            "releaseStream" => {
                self.command(
                    0,
                    &[
                        s("_result"),
                        Amf0Value::Number(txid),
                        Amf0Value::Null,
                        Amf0Value::Undefined,
                    ],
                    out,
                );
            }
            "FCPublish" => {
                let name = arg_str(1).unwrap_or_default();
                self.command(
                    0,
                    &[
                        s("onFCPublish"),
                        Amf0Value::Number(0.0),
                        Amf0Value::Null,
                        Amf0Value::Object(vec![
                            ("code".into(), s("NetStream.Publish.Start")),
                            ("description".into(), s(&name)),
                        ]),
                    ],
                    out,
                );
            }
            "createStream" => {
                if self.streams_created >= config.max_message_streams {
                    return Err(Error::TooMany {
                        what: "message streams",
                        limit: config.max_message_streams as usize,
                    });
                }
                self.streams_created += 1;
                let id = self.streams_created;
                self.command(
                    0,
                    &[
                        s("_result"),
                        Amf0Value::Number(txid),
                        Amf0Value::Null,
                        Amf0Value::Number(f64::from(id)),
                    ],
                    out,
                );
            }
            "publish" => {
                let Some(app) = self.app.clone() else {
                    return Err(Error::Protocol("publish before connect".into()));
                };
                if self.publish != Publish::Idle {
                    return Err(Error::Protocol("publish while already publishing".into()));
                }
                let full = arg_str(1).unwrap_or_default();
                let (key, query) = match full.split_once('?') {
                    Some((k, q)) => (k.to_owned(), Some(q.to_owned())),
                    None => (full, None),
                };
                self.publish = Publish::Pending { stream_id };
                self.publish_key = key.clone();
                events.push_back(ServerEvent::PublishRequested {
                    app,
                    key,
                    query,
                    tc_url: self.tc_url.clone(),
                });
            }
            "FCUnpublish" => self.end_publish(None, events),
            "deleteStream" => {
                let id = args.get(1).and_then(Amf0Value::as_f64);
                self.end_publish(id.map(|v| v as u32), events);
            }
            "closeStream" => self.end_publish(Some(stream_id), events),
            "play" | "play2" => {
                self.on_status(
                    stream_id,
                    "error",
                    "NetStream.Play.Failed",
                    "playback is not supported by this server",
                    None,
                    out,
                );
            }
            "_result" | "_error" | "onBWDone" | "@setDataFrame" | "receiveAudio"
            | "receiveVideo" => {}
            _ => {
                if txid != 0.0 {
                    self.command(
                        0,
                        &[
                            s("_error"),
                            Amf0Value::Number(txid),
                            Amf0Value::Null,
                            Amf0Value::Object(vec![
                                ("level".into(), s("error")),
                                ("code".into(), s("NetConnection.Call.Failed")),
                                ("description".into(), s("unknown command")),
                            ]),
                        ],
                        out,
                    );
                }
            }
        }
        Ok(())
    }

    fn end_publish(&mut self, stream_id: Option<u32>, events: &mut VecDeque<ServerEvent>) {
        if let Some(current) = self.media_stream()
            && stream_id.is_none_or(|id| id == current)
        {
            self.publish = Publish::Idle;
            events.push_back(ServerEvent::PublishEnded);
        }
    }

    fn command(&mut self, stream_id: u32, values: &[Amf0Value], out: &mut BytesMut) {
        let mut body = BytesMut::with_capacity(256);
        amf0::encode_all(values, &mut body);
        let csid = if stream_id == 0 {
            csid::COMMAND
        } else {
            csid::STREAM
        };
        self.encoder
            .write(csid, 0, msg_type::COMMAND_AMF0, stream_id, &body, out);
    }

    fn on_status(
        &mut self,
        stream_id: u32,
        level: &str,
        code: &str,
        description: &str,
        details: Option<String>,
        out: &mut BytesMut,
    ) {
        let mut info = vec![
            ("level".into(), s(level)),
            ("code".into(), s(code)),
            ("description".into(), s(description)),
        ];
        if let Some(d) = details {
            info.push(("details".into(), Amf0Value::String(d)));
        }
        self.command(
            stream_id,
            &[
                s("onStatus"),
                Amf0Value::Number(0.0),
                Amf0Value::Null,
                Amf0Value::Object(info),
            ],
            out,
        );
    }
}

fn s(v: &str) -> Amf0Value {
    Amf0Value::String(v.to_owned())
}

/// AMF3 command/data messages start with a format byte (0) before AMF0 values.
fn amf_body(amf3: bool, payload: &[u8]) -> &[u8] {
    if amf3 && payload.first() == Some(&0) {
        &payload[1..]
    } else {
        payload
    }
}

fn media_event(type_id: u8, timestamp_ms: i64, body: Bytes) -> ServerEvent {
    if type_id == msg_type::AUDIO {
        ServerEvent::Audio { timestamp_ms, body }
    } else {
        ServerEvent::Video { timestamp_ms, body }
    }
}

/// `[@setDataFrame,] onMetaData, {..}` -> metadata.
fn metadata(values: &[Amf0Value]) -> Option<FlvMetadata> {
    let mut it = values.iter();
    let mut first = it.next()?.as_str()?;
    if first == "@setDataFrame" {
        first = it.next()?.as_str()?;
    }
    if first != "onMetaData" {
        return None;
    }
    let obj = it.next()?;
    obj.properties()?;
    let num = |k: &str| obj.get(k).and_then(Amf0Value::as_f64);
    let to_u32 = |v: f64| {
        if v.is_finite() && v >= 0.0 {
            Some(v.min(f64::from(u32::MAX)) as u32)
        } else {
            None
        }
    };
    Some(FlvMetadata {
        has_audio: obj.get("hasAudio").and_then(Amf0Value::as_bool),
        has_video: obj.get("hasVideo").and_then(Amf0Value::as_bool),
        width: num("width").and_then(to_u32),
        height: num("height").and_then(to_u32),
        frame_rate_milli: num("framerate")
            .or_else(|| num("fps"))
            .and_then(|f| to_u32((f * 1000.0).round())),
        video_bitrate: num("videodatarate").and_then(|k| to_u32((k * 1000.0).round())),
        audio_bitrate: num("audiodatarate").and_then(|k| to_u32((k * 1000.0).round())),
    })
}

/// An aggregate message: FLV tags (11-byte header, body, 4-byte previous tag
/// size). Tag timestamps are relative to the first tag's and offset by the
/// message timestamp.
fn split_aggregate(base: i64, whole: &Bytes, events: &mut VecDeque<ServerEvent>) -> Result<()> {
    let mut p: &[u8] = whole;
    let mut pos = 0usize;
    let mut first_ts: Option<i64> = None;
    while !p.is_empty() {
        let Some(h) = p.get(..11) else {
            return Err(Error::Protocol(format!(
                "aggregate message: truncated tag header at {pos} ({})",
                short_hex(p)
            )));
        };
        let size = u32::from_be_bytes([0, h[1], h[2], h[3]]) as usize;
        let ts = i64::from(u32::from_be_bytes([h[7], h[4], h[5], h[6]]));
        let end = 11 + size;
        if p.len() < end {
            return Err(Error::Protocol(format!(
                "aggregate message: tag of {size} bytes at {pos} overruns the message"
            )));
        }
        let first = *first_ts.get_or_insert(ts);
        let t = base.saturating_add(ts - first);
        if (h[0] == msg_type::AUDIO || h[0] == msg_type::VIDEO) && size > 0 {
            events.push_back(media_event(h[0], t, whole.slice(pos + 11..pos + end)));
        }
        let skip = (end + 4).min(p.len());
        p = &p[skip..];
        pos += skip;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
