//! The sans-IO SRT caller: the handshake of one outgoing connection (a
//! restream to an SRT listener), then the established [`SrtConnection`]
//! that sends.
//!
//! Built on `srt-protocol` 0.4.4's `Connect` state machine, every call
//! under `catch_unwind` as in [`super::listener`]: a listener answering
//! with something `srt-protocol` cannot take fails this call, not the
//! process.
//!
//! Run loop (see `srt::push` for the tokio one):
//!
//! 1. [`SrtCaller::handle_timeout`] when [`SrtCaller::poll_timeout`] is due
//!    (the first call sends the induction; later ones resend the pending
//!    handshake packet, every [`RETRANSMIT`]);
//! 2. each datagram from the listener to [`SrtCaller::handle_datagram`];
//! 3. after either, send what [`SrtCaller::poll_transmit`] gives and take
//!    [`SrtCaller::poll_event`]: [`CallerEvent::Connected`] hands over the
//!    connection, [`CallerEvent::Rejected`] and [`CallerEvent::Failed`] end
//!    the attempt.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use bytes::Bytes;
use srt_protocol::options::{KeySize, Passphrase};
use srt_protocol::packet::SeqNumber;
use srt_protocol::protocol::pending_connection::ConnectionResult;
use srt_protocol::protocol::pending_connection::connect::Connect;
use srt_protocol::settings::{ConnInitSettings, KeySettings};

use super::listener::{RejectCode, SrtConnection, parse_packet, reject_code_of, serialize};

/// How often an unanswered handshake packet is sent again (libsrt: 250 ms).
pub const RETRANSMIT: Duration = Duration::from_millis(250);

/// Settings of one call.
#[derive(Debug, Clone)]
pub struct CallerConfig {
    /// The stream id sent in the handshake (`SRTO_STREAMID`), at most 512
    /// bytes.
    pub stream_id: Option<String>,
    /// The passphrase (10..=79 bytes) that encrypts the stream; none for an
    /// unencrypted one.
    pub passphrase: Option<String>,
    /// Key length with a passphrase: 16, 24 or 32 bytes.
    pub key_len: u8,
    /// Latency we ask for (TSBPD); the larger of ours and the listener's
    /// wins. Default 120 ms.
    pub latency: Duration,
    /// The connection ends when the listener sends nothing for this long.
    pub peer_idle_timeout: Duration,
}

impl Default for CallerConfig {
    fn default() -> Self {
        CallerConfig {
            stream_id: None,
            passphrase: None,
            key_len: 16,
            latency: Duration::from_millis(120),
            peer_idle_timeout: Duration::from_secs(5),
        }
    }
}

/// What a call came to.
#[derive(Debug)]
pub enum CallerEvent {
    /// The listener accepted: the connection, ready to send.
    Connected(Box<SrtConnection>),
    /// The listener refused, with its reason (`SRT_REJ_*`, or 2000 + an
    /// HTTP status from its access control).
    Rejected(RejectCode),
    /// The handshake cannot go on (a network error, or `srt-protocol`
    /// failed on the listener's answer).
    Failed(String),
}

/// One outgoing SRT handshake; see the [module documentation](self).
pub struct SrtCaller {
    connect: Connect,
    remote: SocketAddr,
    next_tick: Option<Instant>,
    transmit: VecDeque<Bytes>,
    events: VecDeque<CallerEvent>,
    done: bool,
    ignored: u64,
}

impl std::fmt::Debug for SrtCaller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtCaller")
            .field("remote", &self.remote)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl SrtCaller {
    /// A call to `remote` from a socket on `local_ip`; nothing is sent
    /// before the first [`Self::handle_timeout`]. `random` seeds the socket
    /// id and the first sequence number (from the caller's RNG, so this
    /// stays deterministic under test). A passphrase or key length SRT
    /// does not allow is an error here, before anything goes out.
    pub fn new(
        config: &CallerConfig,
        remote: SocketAddr,
        local_ip: IpAddr,
        random: [u32; 2],
    ) -> Result<Self, String> {
        let key_settings = match &config.passphrase {
            None => None,
            Some(p) => {
                let key_size = match config.key_len {
                    16 => KeySize::AES128,
                    24 => KeySize::AES192,
                    32 => KeySize::AES256,
                    n => return Err(format!("key length {n} is not 16, 24 or 32")),
                };
                let passphrase = Passphrase::try_from(p.clone())
                    .map_err(|e| format!("passphrase: {e} (10 to 79 characters)"))?;
                Some(KeySettings {
                    key_size,
                    passphrase,
                })
            }
        };
        if config.stream_id.as_ref().is_some_and(|s| s.len() > 512) {
            return Err("stream id longer than 512 bytes".into());
        }
        let settings = ConnInitSettings {
            local_sockid: srt_protocol::packet::SocketId(random[0] & 0x7fff_ffff | 1),
            key_settings,
            send_latency: config.latency,
            recv_latency: config.latency,
            peer_idle_timeout: config.peer_idle_timeout,
            send_buffer_size: super::listener::SEND_BUFFER_PACKETS,
            ..ConnInitSettings::default()
        };
        let connect = catch_unwind(AssertUnwindSafe(|| {
            Connect::new(
                remote,
                local_ip,
                settings,
                config.stream_id.clone(),
                SeqNumber::new_truncate(random[1]),
            )
        }))
        .map_err(|_| "srt-protocol failed to set up the call".to_string())?;
        Ok(SrtCaller {
            connect,
            remote,
            next_tick: None,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            done: false,
            ignored: 0,
        })
    }

    /// The listener this call goes to.
    pub fn remote(&self) -> SocketAddr {
        self.remote
    }

    /// Whether the call is over (an event says how).
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Datagrams from the listener that did not fit the handshake's state
    /// (ignored; the call waits on).
    pub fn ignored(&self) -> u64 {
        self.ignored
    }

    /// When [`Self::handle_timeout`] is due: at once before the first
    /// call, then every [`RETRANSMIT`].
    pub fn poll_timeout(&self, now: Instant) -> Instant {
        self.next_tick.unwrap_or(now)
    }

    /// Sends the induction (first call) or the unanswered handshake packet
    /// again.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.done || self.next_tick.is_some_and(|t| now < t) {
            return;
        }
        self.next_tick = Some(now + RETRANSMIT);
        let result = catch_unwind(AssertUnwindSafe(|| self.connect.handle_tick(now)));
        self.on_result(result);
    }

    /// A datagram from `from`; anything not from the listener is ignored.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        if self.done || from != self.remote {
            return;
        }
        let Some(packet) = parse_packet(data, self.remote.is_ipv6()) else {
            return;
        };
        let result = catch_unwind(AssertUnwindSafe(|| {
            self.connect.handle_packet(Ok((packet, from)), now)
        }));
        self.on_result(result);
    }

    /// The next datagram to send to the listener.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.transmit.pop_front()
    }

    /// What the call came to, once.
    pub fn poll_event(&mut self) -> Option<CallerEvent> {
        self.events.pop_front()
    }

    fn on_result(&mut self, result: std::thread::Result<ConnectionResult>) {
        let Ok(result) = result else {
            return self.fail("srt-protocol failed on the listener's answer".into());
        };
        match result {
            ConnectionResult::SendPacket((p, _)) => self.transmit.push_back(serialize(&p)),
            ConnectionResult::Connected(packet, connection) => {
                if let Some((p, _)) = packet {
                    self.transmit.push_back(serialize(&p));
                }
                self.done = true;
                match SrtConnection::new(connection) {
                    Ok(c) => self.events.push_back(CallerEvent::Connected(Box::new(c))),
                    Err(e) => self.events.push_back(CallerEvent::Failed(e.to_string())),
                }
            }
            ConnectionResult::Reject(packet, reject) => {
                if let Some((p, _)) = packet {
                    self.transmit.push_back(serialize(&p));
                }
                self.done = true;
                self.events
                    .push_back(CallerEvent::Rejected(reject_code_of(&reject)));
            }
            ConnectionResult::Failure(e) => self.fail(e.to_string()),
            // A stray or unexpected packet: keep waiting for the answer.
            ConnectionResult::NotHandled(_) => self.ignored += 1,
            ConnectionResult::NoAction | ConnectionResult::RequestAccess(_) => {}
        }
    }

    fn fail(&mut self, why: String) {
        self.done = true;
        self.events.push_back(CallerEvent::Failed(why));
    }
}
