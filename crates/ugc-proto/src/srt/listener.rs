//! The sans-IO SRT listener: handshakes of many callers on one UDP port,
//! decided by the caller of this module, and the established connections.
//!
//! Built on `srt-protocol` 0.4.4's own sans-IO pieces (the per-caller
//! `Listen` handshake state machine and `DuplexConnection`), driven here
//! instead of by `srt-tokio`'s listener task, because that crate's HSv5 code
//! panics (`unimplemented!`) on some key-settings mismatches a caller can
//! provoke, and its listener task would die with it for every caller on the
//! port. Here:
//!
//! * the caller's keying material (KMREQ) is read from its conclusion
//!   handshake before the answer is built, so the answer always matches it:
//!   the key size is the caller's, a passphrase sent to an unencrypted stream
//!   and an encrypted stream called without one are refused with
//!   `SRT_REJ_UNSECURE` (1011) before `srt-protocol` sees them, a wrong
//!   passphrase with `SRT_REJ_BADSECRET` (1010);
//! * every call into `srt-protocol` runs under `catch_unwind`: a panic loses
//!   only that caller's handshake (it is answered with a rejection) or that
//!   one connection, and is counted. (This needs the default
//!   `panic = "unwind"`; a binary built with `panic = "abort"` loses it.)
//!
//! Run loop (see [`crate::srt::server`] for the tokio one):
//!
//! 1. datagrams from peers without an established [`SrtConnection`] go to
//!    [`SrtListener::handle_datagram`];
//! 2. drain [`SrtListener::poll_transmit`] (send each to its address) and
//!    [`SrtListener::poll_event`]: answer every
//!    [`ListenerEvent::AccessRequested`] with [`SrtListener::accept`] or
//!    [`SrtListener::reject`] (now or later; the caller retransmits its
//!    conclusion meanwhile), and take every [`ListenerEvent::Connected`]
//!    connection;
//! 3. call [`SrtListener::handle_timeout`] now and then (every 100 ms is
//!    plenty) to expire stale handshakes;
//! 4. when a connection taken from [`ListenerEvent::Connected`] ends, call
//!    [`SrtListener::connection_closed`], which frees its place under
//!    [`ListenerConfig::max_connections_per_ip`].
//!
//! ## What one address may hold
//!
//! Handshakes in progress are keyed by the caller's address and port, so a
//! flood from one host with many source ports could take every one of
//! [`ListenerConfig::max_pending`] places for [`ListenerConfig::handshake_timeout`]
//! and lock every other caller out. One IP address may therefore hold at
//! most [`ListenerConfig::max_pending_per_ip`] handshakes (further
//! inductions from it are ignored, as over `max_pending`, and counted in
//! [`ListenerStats::ip_cap_drops`]) and
//! [`ListenerConfig::max_connections_per_ip`] connections (a further caller
//! from it is refused with [`RejectCode::OVERLOAD`] before its access is
//! asked for, counted in [`ListenerStats::ip_cap_rejects`]).

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use bytes::Bytes;
use srt_protocol::connection::{Connection, DuplexConnection};
use srt_protocol::options::{KeySize, Passphrase};
use srt_protocol::packet::{
    CompressedLossList, ControlPacket, ControlTypes, HandshakeControlInfo, HandshakeVsInfo, Packet,
    RejectReason, ShakeType, SrtControlPacket, TimeStamp,
};
use srt_protocol::protocol::pending_connection::listen::Listen;
use srt_protocol::protocol::pending_connection::{AccessControlResponse, ConnectionResult};
use srt_protocol::settings::{ConnInitSettings, KeySettings};

use super::streamid::{StreamId, StreamIdError};
use crate::limits::ExemptIps;

/// Settings of an [`SrtListener`].
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// Receiver latency (TSBPD) we ask for; the larger of ours and the
    /// caller's wins. Default 120 ms; 3-4x the RTT is recommended.
    pub latency: Duration,
    /// Handshakes in progress at once; further callers are ignored until
    /// some finish.
    pub max_pending: usize,
    /// Handshakes in progress at once from one IP address (any port);
    /// further inductions from it are ignored until some finish. 0 = no cap.
    pub max_pending_per_ip: usize,
    /// Established connections of one IP address (as counted between
    /// [`ListenerEvent::Connected`] and [`SrtListener::connection_closed`]);
    /// a further caller from it is refused with [`RejectCode::OVERLOAD`].
    /// 0 = no cap. An encoder farm behind one NAT address publishes all
    /// its streams from that address: raise it for them.
    pub max_connections_per_ip: usize,
    /// Addresses neither per-address cap (`max_pending_per_ip`,
    /// `max_connections_per_ip`) applies to; `max_pending` still does.
    pub per_ip_exempt: Option<ExemptIps>,
    /// How long a handshake may take, including the access decision.
    pub handshake_timeout: Duration,
    /// A connection that hears nothing from its peer this long closes.
    pub peer_idle_timeout: Duration,
}

impl ListenerConfig {
    /// `cap` (a per-address cap) as it applies to `ip`: 0 (none) for an
    /// exempt address.
    fn cap_for(&self, cap: usize, ip: IpAddr) -> usize {
        match &self.per_ip_exempt {
            Some(exempt) if exempt.contains(ip) => 0,
            _ => cap,
        }
    }
}

impl Default for ListenerConfig {
    fn default() -> Self {
        ListenerConfig {
            latency: Duration::from_millis(120),
            max_pending: 1024,
            max_pending_per_ip: 32,
            max_connections_per_ip: 64,
            per_ip_exempt: None,
            handshake_timeout: Duration::from_secs(10),
            peer_idle_timeout: Duration::from_secs(5),
        }
    }
}

/// An SRT rejection reason as sent to the caller (`SRT_REJ_*` codes: 1000+
/// core, 2000+ access control = 2000 + an HTTP status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RejectCode(pub u16);

impl RejectCode {
    /// 1010 `SRT_REJ_BADSECRET`: wrong passphrase.
    pub const BAD_SECRET: RejectCode = RejectCode(1010);
    /// 1011 `SRT_REJ_UNSECURE`: passphrase required, or given where none is.
    pub const UNSECURE: RejectCode = RejectCode(1011);
    /// 1004 `SRT_REJ_ROGUE`: incorrect data in the handshake (packets
    /// under [`MIN_PACKET_SIZE`]).
    pub const ROGUE: RejectCode = RejectCode(1004);
    /// 1006 `SRT_REJ_IPE`: internal error (a handshake that panicked).
    pub const INTERNAL: RejectCode = RejectCode(1006);
    /// 2400: malformed stream id.
    pub const BAD_REQUEST: RejectCode = RejectCode(2400);
    /// 2401: unknown or revoked stream key.
    pub const UNAUTHORIZED: RejectCode = RejectCode(2401);
    /// 2403: publishing refused by policy.
    pub const FORBIDDEN: RejectCode = RejectCode(2403);
    /// 2402 (`SRT_REJX_OVERLOAD`): the caller's address holds as many
    /// connections as it may.
    pub const OVERLOAD: RejectCode = RejectCode(2402);
    /// 2405: a mode other than publish.
    pub const BAD_MODE: RejectCode = RejectCode(2405);
    /// 2409: the stream cannot take this publisher.
    pub const CONFLICT: RejectCode = RejectCode(2409);
    /// 2503: the server is shutting down or overloaded.
    pub const UNAVAILABLE: RejectCode = RejectCode(2503);

    fn to_reason(self) -> RejectReason {
        let c = i32::from(self.0);
        RejectReason::try_from(c).unwrap_or(RejectReason::User(c))
    }
}

/// The encryption a caller asked for in its handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallerEncryption {
    /// No keying material: the caller has no passphrase.
    None,
    /// Keying material with keys of this many bytes (16, 24, 32).
    Aes {
        /// Key length in bytes.
        key_len: u8,
    },
}

/// What the listener reports.
#[derive(Debug)]
#[non_exhaustive]
pub enum ListenerEvent {
    /// A caller completed the cookie exchange and asks to connect with this
    /// stream id; answer with [`SrtListener::accept`] or
    /// [`SrtListener::reject`]. A malformed stream id is refused already
    /// (this event carries the parse error for the log).
    AccessRequested {
        /// The caller.
        peer: SocketAddr,
        /// The parsed stream id, or why it was refused.
        stream_id: Result<StreamId, StreamIdError>,
        /// The caller's keying material.
        encryption: CallerEncryption,
    },
    /// A caller is connected: drive the connection from now on.
    Connected {
        /// The caller.
        peer: SocketAddr,
        /// The connection.
        connection: Box<SrtConnection>,
    },
    /// A caller was refused.
    Rejected {
        /// The caller.
        peer: SocketAddr,
        /// The reason sent.
        code: RejectCode,
    },
}

/// Counters of an [`SrtListener`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListenerStats {
    /// Datagrams handled.
    pub datagrams: u64,
    /// Datagrams that did not parse as SRT.
    pub parse_errors: u64,
    /// Callers connected.
    pub connected: u64,
    /// Callers refused.
    pub rejected: u64,
    /// Handshakes that timed out.
    pub timed_out: u64,
    /// Panics inside `srt-protocol` caught (handshakes and connections).
    pub panics: u64,
    /// Inductions ignored because too many handshakes were in progress.
    pub overload_drops: u64,
    /// Inductions ignored because their IP address had
    /// [`ListenerConfig::max_pending_per_ip`] handshakes in progress.
    pub ip_cap_drops: u64,
    /// Callers refused because their IP address held
    /// [`ListenerConfig::max_connections_per_ip`] connections.
    pub ip_cap_rejects: u64,
}

struct Pending {
    listen: Listen,
    started: Instant,
    /// The caller's last conclusion handshake (to answer a rejection
    /// ourselves) and its packet timestamp.
    conclusion: Option<(TimeStamp, HandshakeControlInfo)>,
    encryption: CallerEncryption,
    caller_key_size: KeySize,
    awaiting_decision: bool,
}

struct Rejected {
    answer: Packet,
    until: Instant,
}

/// Handshakes in progress by caller, with a count per IP address kept in
/// step with every insertion and removal.
#[derive(Default)]
struct PendingTable {
    by_peer: HashMap<SocketAddr, Pending>,
    per_ip: HashMap<IpAddr, usize>,
}

impl PendingTable {
    fn len(&self) -> usize {
        self.by_peer.len()
    }

    fn of_ip(&self, ip: IpAddr) -> usize {
        self.per_ip.get(&ip).copied().unwrap_or(0)
    }

    fn insert(&mut self, peer: SocketAddr, p: Pending) {
        if self.by_peer.insert(peer, p).is_none() {
            *self.per_ip.entry(peer.ip()).or_insert(0) += 1;
        }
    }

    fn remove(&mut self, peer: &SocketAddr) -> Option<Pending> {
        let p = self.by_peer.remove(peer)?;
        uncount(&mut self.per_ip, peer.ip());
        Some(p)
    }

    /// Keeps the handshakes `keep` holds for; how many went.
    fn retain(&mut self, mut keep: impl FnMut(&Pending) -> bool) -> usize {
        let per_ip = &mut self.per_ip;
        let before = self.by_peer.len();
        self.by_peer.retain(|peer, p| {
            let k = keep(p);
            if !k {
                uncount(per_ip, peer.ip());
            }
            k
        });
        before - self.by_peer.len()
    }
}

/// Established connections by caller, with a count per IP address.
#[derive(Default)]
struct ConnectedTable {
    peers: HashSet<SocketAddr>,
    per_ip: HashMap<IpAddr, usize>,
}

impl ConnectedTable {
    fn of_ip(&self, ip: IpAddr) -> usize {
        self.per_ip.get(&ip).copied().unwrap_or(0)
    }

    fn insert(&mut self, peer: SocketAddr) {
        if self.peers.insert(peer) {
            *self.per_ip.entry(peer.ip()).or_insert(0) += 1;
        }
    }

    fn remove(&mut self, peer: &SocketAddr) {
        if self.peers.remove(peer) {
            uncount(&mut self.per_ip, peer.ip());
        }
    }
}

fn uncount(per_ip: &mut HashMap<IpAddr, usize>, ip: IpAddr) {
    if let Some(n) = per_ip.get_mut(&ip) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            per_ip.remove(&ip);
        }
    }
}

/// The sans-IO SRT listener; see the [module documentation](self).
pub struct SrtListener {
    config: ListenerConfig,
    base: ConnInitSettings,
    pending: PendingTable,
    connected: ConnectedTable,
    rejected: HashMap<SocketAddr, Rejected>,
    transmit: VecDeque<(Bytes, SocketAddr)>,
    events: VecDeque<ListenerEvent>,
    stats: ListenerStats,
}

impl std::fmt::Debug for SrtListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtListener")
            .field("pending", &self.pending.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

pub(crate) fn serialize(p: &Packet) -> Bytes {
    let mut v = Vec::with_capacity(p.wire_size());
    p.serialize(&mut v);
    Bytes::from(v)
}

/// Parses one datagram, never letting a parser panic escape.
pub(crate) fn parse_packet(data: &[u8], ipv6: bool) -> Option<Packet> {
    catch_unwind(|| {
        let mut buf = data;
        Packet::parse(&mut buf, ipv6).ok()
    })
    .ok()
    .flatten()
}

impl SrtListener {
    /// A listener with `config`.
    pub fn new(config: ListenerConfig) -> Self {
        let base = ConnInitSettings {
            recv_latency: config.latency,
            send_latency: config.latency,
            peer_idle_timeout: config.peer_idle_timeout,
            key_settings: None,
            send_buffer_size: SEND_BUFFER_PACKETS,
            ..ConnInitSettings::default()
        };
        SrtListener {
            config,
            base,
            pending: PendingTable::default(),
            connected: ConnectedTable::default(),
            rejected: HashMap::new(),
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            stats: ListenerStats::default(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> &ListenerStats {
        &self.stats
    }

    /// Handshakes in progress.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Whether `peer` has a handshake in progress.
    pub fn is_pending(&self, peer: &SocketAddr) -> bool {
        self.pending.by_peer.contains_key(peer)
    }

    /// Handshakes in progress from `ip`, and its established connections.
    pub fn of_ip(&self, ip: IpAddr) -> (usize, usize) {
        (self.pending.of_ip(ip), self.connected.of_ip(ip))
    }

    /// The connection of `peer` (from [`ListenerEvent::Connected`]) ended,
    /// or was never used: its place under
    /// [`ListenerConfig::max_connections_per_ip`] is free. Calling it again,
    /// or for a peer never connected, does nothing.
    pub fn connection_closed(&mut self, peer: &SocketAddr) {
        self.connected.remove(peer);
    }

    /// The next datagram to send and its destination.
    pub fn poll_transmit(&mut self) -> Option<(Bytes, SocketAddr)> {
        self.transmit.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ListenerEvent> {
        self.events.pop_front()
    }

    /// A datagram from `from`, a peer without an established connection.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        self.stats.datagrams += 1;
        let Some(packet) = parse_packet(data, from.is_ipv6()) else {
            self.stats.parse_errors += 1;
            return;
        };
        let Packet::Control(control) = &packet else {
            // Data from a peer we have no connection with: ignore.
            return;
        };
        let ControlTypes::Handshake(shake) = &control.control_type else {
            return;
        };
        if let Some(r) = self.rejected.get(&from) {
            // Answer retransmitted conclusions with the same rejection; a new
            // induction starts over.
            if shake.shake_type != ShakeType::Induction {
                self.transmit.push_back((serialize(&r.answer), from));
                return;
            }
            self.rejected.remove(&from);
        }
        if !self.pending.by_peer.contains_key(&from) {
            if shake.shake_type != ShakeType::Induction {
                return;
            }
            if self.pending.len() >= self.config.max_pending {
                self.stats.overload_drops += 1;
                return;
            }
            let per_ip = self
                .config
                .cap_for(self.config.max_pending_per_ip, from.ip());
            if per_ip > 0 && self.pending.of_ip(from.ip()) >= per_ip {
                self.stats.ip_cap_drops += 1;
                return;
            }
            self.pending.insert(
                from,
                Pending {
                    listen: Listen::new(self.base.copy_randomize(), true),
                    started: now,
                    conclusion: None,
                    encryption: CallerEncryption::None,
                    caller_key_size: KeySize::Unspecified,
                    awaiting_decision: false,
                },
            );
        }
        let Some(p) = self.pending.by_peer.get_mut(&from) else {
            return;
        };
        if p.awaiting_decision {
            // The caller retransmits its conclusion while we decide.
            return;
        }
        if shake.shake_type == ShakeType::Conclusion
            && let HandshakeVsInfo::V5(info) = &shake.info
        {
            p.conclusion = Some((control.timestamp, shake.clone()));
            p.caller_key_size = info.key_size;
            p.encryption = match &info.ext_km {
                Some(SrtControlPacket::KeyRefreshRequest(km)) => {
                    let keys = km.key_flags.bits().count_ones().max(1) as usize;
                    let len = km.wrapped_keys.len().saturating_sub(8) / keys;
                    CallerEncryption::Aes {
                        key_len: u8::try_from(len).unwrap_or(0),
                    }
                }
                // Keying material that is not a request: treat as encrypted
                // with an unusable key (refused below).
                Some(_) => CallerEncryption::Aes { key_len: 0 },
                None => CallerEncryption::None,
            };
        }
        let result = catch_unwind(AssertUnwindSafe(|| {
            p.listen.handle_packet(now, Ok((packet, from)))
        }));
        self.on_result(now, from, result);
    }

    /// Accepts the pending caller `peer`, with `passphrase` if its stream is
    /// encrypted. Refuses it instead when its keying material does not fit
    /// (`SRT_REJ_UNSECURE` / `SRT_REJ_BADSECRET`), or when its address
    /// came to hold [`ListenerConfig::max_connections_per_ip`] connections
    /// while it was being decided ([`RejectCode::OVERLOAD`]).
    pub fn accept(&mut self, now: Instant, peer: SocketAddr, passphrase: Option<&str>) {
        // Callers of one address decided at once: the cap holds at the end.
        let per_ip = self
            .config
            .cap_for(self.config.max_connections_per_ip, peer.ip());
        let deciding = self
            .pending
            .by_peer
            .get(&peer)
            .is_some_and(|p| p.awaiting_decision);
        if deciding && per_ip > 0 && self.connected.of_ip(peer.ip()) >= per_ip {
            self.stats.ip_cap_rejects += 1;
            return self.reject(now, peer, RejectCode::OVERLOAD);
        }
        let Some(p) = self.pending.by_peer.get_mut(&peer) else {
            return;
        };
        if !p.awaiting_decision {
            return;
        }
        let keys = match (passphrase, p.encryption) {
            (None, CallerEncryption::None) => None,
            (None, CallerEncryption::Aes { .. }) | (Some(_), CallerEncryption::None) => {
                return self.reject(now, peer, RejectCode::UNSECURE);
            }
            (Some(pass), CallerEncryption::Aes { key_len }) => {
                // The answer must use the caller's key size field exactly;
                // an unspecified size means 16-byte keys.
                let expected = match p.caller_key_size {
                    KeySize::Unspecified => 16,
                    k => k.as_usize(),
                };
                if usize::from(key_len) != expected {
                    return self.reject(now, peer, RejectCode::BAD_SECRET);
                }
                let Ok(passphrase) = Passphrase::try_from(pass.to_owned()) else {
                    return self.reject(now, peer, RejectCode::BAD_SECRET);
                };
                Some(KeySettings {
                    key_size: p.caller_key_size,
                    passphrase,
                })
            }
        };
        p.awaiting_decision = false;
        let result = catch_unwind(AssertUnwindSafe(|| {
            p.listen
                .handle_access_control_response(now, AccessControlResponse::Accepted(keys))
        }));
        self.on_result(now, peer, result);
    }

    /// Refuses the pending caller `peer` with `code`.
    pub fn reject(&mut self, now: Instant, peer: SocketAddr, code: RejectCode) {
        let Some(p) = self.pending.by_peer.get_mut(&peer) else {
            return;
        };
        if !p.awaiting_decision {
            return;
        }
        p.awaiting_decision = false;
        let result = catch_unwind(AssertUnwindSafe(|| {
            p.listen.handle_access_control_response(
                now,
                AccessControlResponse::Rejected(code.to_reason()),
            )
        }));
        self.on_result(now, peer, result);
    }

    /// Expires stale handshakes and remembered rejections.
    pub fn handle_timeout(&mut self, now: Instant) {
        let limit = self.config.handshake_timeout;
        let expired = self
            .pending
            .retain(|p| now.saturating_duration_since(p.started) < limit);
        self.stats.timed_out += expired as u64;
        self.rejected.retain(|_, r| now < r.until);
    }

    fn on_result(
        &mut self,
        now: Instant,
        peer: SocketAddr,
        result: std::thread::Result<ConnectionResult>,
    ) {
        let result = match result {
            Ok(r) => r,
            Err(_) => {
                self.stats.panics += 1;
                return self.reject_ourselves(now, peer, RejectCode::INTERNAL);
            }
        };
        match result {
            ConnectionResult::SendPacket((p, to)) => {
                self.transmit.push_back((serialize(&p), to));
            }
            ConnectionResult::RequestAccess(req) => {
                let encryption = self
                    .pending
                    .by_peer
                    .get(&peer)
                    .map_or(CallerEncryption::None, |p| p.encryption);
                let sid = req.stream_id.as_ref().map(|s| s.as_str()).unwrap_or("");
                let stream_id = StreamId::parse(sid);
                if let Some(p) = self.pending.by_peer.get_mut(&peer) {
                    p.awaiting_decision = true;
                }
                let per_ip = self
                    .config
                    .cap_for(self.config.max_connections_per_ip, peer.ip());
                if per_ip > 0 && self.connected.of_ip(peer.ip()) >= per_ip {
                    // Refused before anyone is asked; no access event.
                    self.stats.ip_cap_rejects += 1;
                    return self.reject(now, peer, RejectCode::OVERLOAD);
                }
                match &stream_id {
                    Ok(_) => {}
                    Err(e) => {
                        let code = RejectCode(e.reject_code());
                        self.reject(now, peer, code);
                    }
                }
                self.events.push_back(ListenerEvent::AccessRequested {
                    peer,
                    stream_id,
                    encryption,
                });
            }
            ConnectionResult::Reject(answer, reason) => {
                let code = reject_code_of(&reason);
                match answer {
                    Some((p, to)) => {
                        self.transmit.push_back((serialize(&p), to));
                        self.remember_rejection(now, peer, p);
                    }
                    None => {
                        self.pending.remove(&peer);
                    }
                }
                self.stats.rejected += 1;
                self.events
                    .push_back(ListenerEvent::Rejected { peer, code });
            }
            ConnectionResult::Connected(_, connection)
                if connection.settings.max_packet_size.0 < MIN_PACKET_SIZE =>
            {
                // Answered with a rejection instead of the conclusion
                // `srt-protocol` made: the caller learns at once why,
                // rather than sending into nothing until its timeout.
                self.reject_ourselves(now, peer, RejectCode::ROGUE);
            }
            ConnectionResult::Connected(answer, connection) => {
                self.pending.remove(&peer);
                if let Some((p, to)) = answer {
                    self.transmit.push_back((serialize(&p), to));
                }
                match SrtConnection::new(connection) {
                    Ok(c) => {
                        self.stats.connected += 1;
                        self.connected.insert(peer);
                        self.events.push_back(ListenerEvent::Connected {
                            peer,
                            connection: Box::new(c),
                        });
                    }
                    // (Refused above, with an answer.)
                    Err(StartError::SmallPackets(_)) => self.stats.rejected += 1,
                    Err(StartError::Panicked) => self.stats.panics += 1,
                }
            }
            ConnectionResult::NotHandled(_) | ConnectionResult::NoAction => {}
            ConnectionResult::Failure(_) => {
                self.pending.remove(&peer);
            }
        }
    }

    fn remember_rejection(&mut self, now: Instant, peer: SocketAddr, answer: Packet) {
        self.pending.remove(&peer);
        self.rejected.insert(
            peer,
            Rejected {
                answer,
                until: now + Duration::from_secs(5),
            },
        );
    }

    /// Answers `peer`'s last conclusion with a rejection built here (when
    /// `srt-protocol` could not answer).
    fn reject_ourselves(&mut self, now: Instant, peer: SocketAddr, code: RejectCode) {
        let Some(p) = self.pending.remove(&peer) else {
            return;
        };
        self.stats.rejected += 1;
        if let Some((timestamp, shake)) = p.conclusion {
            let answer = Packet::Control(ControlPacket {
                timestamp,
                dest_sockid: shake.socket_id,
                control_type: ControlTypes::Handshake(HandshakeControlInfo {
                    shake_type: ShakeType::Rejection(code.to_reason()),
                    socket_id: p.listen.settings().local_sockid,
                    ..shake
                }),
            });
            self.transmit.push_back((serialize(&answer), peer));
            self.rejected.insert(
                peer,
                Rejected {
                    answer,
                    until: now + Duration::from_secs(5),
                },
            );
        }
        self.events
            .push_back(ListenerEvent::Rejected { peer, code });
    }
}

pub(crate) fn reject_code_of(
    r: &srt_protocol::protocol::pending_connection::ConnectionReject,
) -> RejectCode {
    use srt_protocol::protocol::pending_connection::ConnectionReject as C;
    let reason = match r {
        C::Rejecting(r) | C::Rejected(r) => *r,
    };
    let code: i32 = reason.into();
    RejectCode(u16::try_from(code).unwrap_or(0))
}

/// Statistics of one SRT connection (receiving side).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SrtConnectionStats {
    /// Smoothed round-trip time, microseconds.
    pub rtt_us: u64,
    /// Data packets received (including retransmissions).
    pub rx_packets: u64,
    /// Data packets detected lost (sequence gaps).
    pub rx_lost: u64,
    /// Retransmitted packets received.
    pub rx_retransmitted: u64,
    /// Packets dropped as too late (never delivered).
    pub rx_dropped: u64,
    /// Packets that failed to decrypt.
    pub rx_decrypt_errors: u64,
    /// Payload bytes received.
    pub rx_bytes: u64,
    /// Receive bitrate over the last statistics interval, bits/s.
    pub rx_bitrate: u64,
    /// Negotiated receive latency, milliseconds.
    pub latency_ms: u64,
    /// NAKs refused for naming more than [`MAX_NAK_SPAN`] lost packets.
    pub naks_refused: u64,
}

/// The most lost packets one NAK may name: SRT's default flow window
/// (packets in flight), beyond which no sender holds anything to resend.
pub const MAX_NAK_SPAN: u64 = 25_600;

/// How many sequence numbers `srt-protocol` 0.4.4 walks for a NAK's
/// compressed loss list. A word with the top bit set starts a range that
/// the next word ends; its decompressor counts a `u32` up from the start
/// until it equals the end word as sent (top bit and all, wrapping), so an
/// end below the start, equal to it or with its top bit set walks up to
/// 2^32 numbers. A range without an end word (it would panic) counts as
/// unbounded.
fn nak_span(list: &CompressedLossList) -> u64 {
    const RANGE: u32 = 1 << 31;
    let mut span = 0u64;
    let mut words = list.iter_compressed();
    while let Some(w) = words.next() {
        if w & RANGE == 0 {
            span = span.saturating_add(1);
            continue;
        }
        let start = w & !RANGE;
        let Some(end) = words.next() else {
            return u64::MAX;
        };
        // `start` itself, then start + 1 up to `end` inclusive.
        let walked = u64::from(end.wrapping_sub(start + 1)) + 1;
        span = span.saturating_add(1 + walked);
    }
    span
}

/// One established SRT connection, accepted by an [`SrtListener`] (we
/// receive) or made by an [`super::SrtCaller`] (we send with
/// [`send`](Self::send)): a sans-IO wrapper around `srt-protocol`'s
/// `DuplexConnection` where every call is panic-contained.
///
/// Loop: [`handle_datagram`](Self::handle_datagram) for each datagram from
/// the peer; then [`handle_timeout`](Self::handle_timeout) when
/// [`poll_timeout`](Self::poll_timeout) is due; after either, drain
/// [`poll_transmit`](Self::poll_transmit) and [`poll_data`](Self::poll_data);
/// stop when [`is_closed`](Self::is_closed).
pub struct SrtConnection {
    conn: DuplexConnection,
    peer: SocketAddr,
    naks_refused: u64,
    stream_id: Option<String>,
    closed: bool,
    panicked: bool,
    bitrate: (Instant, u64, u64),
}

impl std::fmt::Debug for SrtConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtConnection")
            .field("peer", &self.peer)
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

/// The smallest packet a peer's handshake may ask for (its MSS field;
/// libsrt's floor for `SRTO_MSS`). `srt-protocol` takes the peer's value
/// as it comes and splits what it sends into packets of that size: at 0 it
/// never finishes the first send (a busy loop that grows its buffer until
/// the process runs out of memory; found by the `srt_caller` fuzz smoke
/// of `make test`), and a few bytes turn each 1,316-byte send into
/// hundreds of packets. A hostile SRT restream target or caller could
/// ask either.
pub const MIN_PACKET_SIZE: u64 = 76;

/// Packets a connection keeps to send and to send again until the peer
/// acknowledges them: libsrt's default (`SRTO_SNDBUF`, 8192 packets).
/// `srt-protocol`'s default is 46,592 bytes, 32 packets, and it makes room
/// by dropping the oldest packet, sent or not: a burst of more than 32
/// messages queued at once (one keyframe of over 42 KB, or a sending task
/// that fell a few milliseconds behind) lost its first packets before they
/// were sent, and the `srt-protocol` receiver at the other end then
/// delivered nothing more, ever. Memory is taken only as packets wait
/// (acknowledged ones leave within a round trip; none stays past 1.25x
/// the latency, at least 1 s), and their payloads share the queued
/// messages' buffers (unencrypted).
pub(crate) const SEND_BUFFER_PACKETS: srt_protocol::options::PacketCount =
    srt_protocol::options::PacketCount(8192);

/// Why a connection `srt-protocol` made is not started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StartError {
    /// The peer asked for packets of this many bytes, under
    /// [`MIN_PACKET_SIZE`].
    SmallPackets(u64),
    /// `srt-protocol` panicked starting it.
    Panicked,
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::SmallPackets(n) => write!(
                f,
                "the peer's handshake asks for packets of {n} bytes, under SRT's minimum of {MIN_PACKET_SIZE}"
            ),
            StartError::Panicked => f.write_str("srt-protocol failed to start the connection"),
        }
    }
}

impl SrtConnection {
    /// The connection `srt-protocol` made, or why it is refused.
    pub(crate) fn new(connection: Connection) -> Result<Self, StartError> {
        let size = connection.settings.max_packet_size.0;
        if size < MIN_PACKET_SIZE {
            return Err(StartError::SmallPackets(size));
        }
        let peer = connection.settings.remote;
        let stream_id = connection.settings.stream_id.clone();
        let start = connection.settings.socket_start_time;
        let conn = catch_unwind(AssertUnwindSafe(|| DuplexConnection::new(connection)))
            .map_err(|_| StartError::Panicked)?;
        Ok(SrtConnection {
            conn,
            peer,
            naks_refused: 0,
            stream_id,
            closed: false,
            panicked: false,
            bitrate: (start, 0, 0),
        })
    }

    /// The peer.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The stream id the caller sent.
    pub fn stream_id(&self) -> Option<&str> {
        self.stream_id.as_deref()
    }

    /// NAKs refused for naming more than [`MAX_NAK_SPAN`] lost packets.
    pub fn naks_refused(&self) -> u64 {
        self.naks_refused
    }

    /// Whether `srt-protocol` panicked inside this connection (it is closed).
    pub fn panicked(&self) -> bool {
        self.panicked
    }

    fn guard<T>(&mut self, f: impl FnOnce(&mut DuplexConnection) -> T) -> Option<T> {
        if self.closed {
            return None;
        }
        match catch_unwind(AssertUnwindSafe(|| f(&mut self.conn))) {
            Ok(v) => Some(v),
            Err(_) => {
                self.closed = true;
                self.panicked = true;
                None
            }
        }
    }

    /// A datagram from the peer. A NAK claiming more than
    /// [`MAX_NAK_SPAN`] lost packets is refused (counted in
    /// [`naks_refused`](Self::naks_refused)): `srt-protocol` 0.4.4's sender
    /// walks a NAK's ranges one sequence number at a time, so a single
    /// datagram naming a range of 2^30 kept a thread busy for minutes.
    pub fn handle_datagram(&mut self, now: Instant, data: &[u8]) {
        let Some(packet) = parse_packet(data, self.peer.is_ipv6()) else {
            return;
        };
        if let Packet::Control(c) = &packet
            && let ControlTypes::Nak(list) = &c.control_type
            && nak_span(list) > MAX_NAK_SPAN
        {
            self.naks_refused += 1;
            return;
        }
        let peer = self.peer;
        self.guard(|c| c.handle_packet_input(now, Ok((packet, peer))));
    }

    /// Runs the connection's timers (ACK, NAK, keep-alive, idle timeout).
    pub fn handle_timeout(&mut self, now: Instant) {
        let closed = self.guard(|c| {
            let close = c.should_close(now);
            if c.should_update_statistics(now) {
                c.update_statistics(now);
            }
            close
        });
        if closed.unwrap_or(true) {
            self.closed = true;
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) is due next.
    pub fn poll_timeout(&mut self, now: Instant) -> Instant {
        self.guard(|c| c.next_timer(now))
            .unwrap_or(now + Duration::from_secs(1))
    }

    /// The next datagram to send to the peer, serialized into `out`
    /// (cleared first); false when there is none.
    pub fn poll_transmit(&mut self, now: Instant, out: &mut Vec<u8>) -> bool {
        out.clear();
        match self.guard(|c| c.next_packet(now)).flatten() {
            Some((p, _)) => {
                p.serialize(out);
                true
            }
            None => false,
        }
    }

    /// Queues `data` (one message of at most 1316 bytes: seven TS packets)
    /// to send, stamped `now` (its TSBPD origin time); false when the
    /// connection is closed.
    pub fn send(&mut self, now: Instant, data: Bytes) -> bool {
        self.guard(|c| c.handle_data_input(now, Some((now, data))))
            .is_some()
    }

    /// Payload bytes sent, retransmissions included, and packets
    /// retransmitted.
    pub fn tx_totals(&self) -> (u64, u64) {
        let s = self.conn.statistics();
        (s.tx_bytes, s.tx_retransmit_data)
    }

    /// The next message received, in order (for live mode: one datagram's
    /// payload, usually 7 TS packets).
    pub fn poll_data(&mut self, now: Instant) -> Option<Bytes> {
        self.guard(|c| c.next_data(now)).flatten().map(|(_, b)| b)
    }

    /// Closes from our side; returns the shutdown datagram to send to the
    /// peer so it stops at once.
    pub fn close(&mut self, now: Instant) -> Bytes {
        let settings = self.conn.settings();
        let elapsed = now.saturating_duration_since(settings.socket_start_time);
        let packet = Packet::Control(ControlPacket {
            timestamp: TimeStamp::from_micros(
                u32::try_from(elapsed.as_micros() % (1u128 << 32)).unwrap_or(0),
            ),
            dest_sockid: settings.remote_sockid,
            control_type: ControlTypes::Shutdown,
        });
        self.closed = true;
        serialize(&packet)
    }

    /// Whether the connection is over (peer shutdown, idle timeout, error).
    pub fn is_closed(&self) -> bool {
        self.closed || !self.conn.is_open()
    }

    /// Current statistics.
    pub fn stats(&mut self, now: Instant) -> SrtConnectionStats {
        let s = self.conn.statistics();
        let rx_bytes = s.rx_bytes;
        let (at, bytes, mut rate) = self.bitrate;
        let dt = now.saturating_duration_since(at);
        if dt >= Duration::from_secs(1) {
            let micros = u64::try_from(dt.as_micros()).unwrap_or(u64::MAX).max(1);
            rate = rx_bytes.saturating_sub(bytes).saturating_mul(8_000_000) / micros;
            self.bitrate = (now, rx_bytes, rate);
        }
        SrtConnectionStats {
            rtt_us: u64::try_from(s.rx_average_rtt.as_micros())
                .unwrap_or(u64::MAX)
                .max(u64::try_from(s.tx_average_rtt.as_micros()).unwrap_or(0)),
            rx_packets: s.rx_data,
            rx_lost: s.rx_loss_data,
            rx_retransmitted: s.rx_retransmit_data,
            rx_dropped: s.rx_dropped_data,
            rx_decrypt_errors: s.rx_decrypt_errors,
            rx_bytes,
            rx_bitrate: rate,
            latency_ms: u64::try_from(self.conn.settings().recv_tsbpd_latency.as_millis())
                .unwrap_or(u64::MAX),
            naks_refused: self.naks_refused,
        }
    }
}

#[cfg(test)]
mod tests {
    use srt_protocol::packet::SeqNumber;

    use super::*;

    fn seqs(v: &[u32]) -> CompressedLossList {
        CompressedLossList::try_from_iter(v.iter().map(|&n| SeqNumber::new_truncate(n)))
            .expect("a loss list")
    }

    const RANGE: u32 = 1 << 31;

    /// A NAK's loss list as a peer sends it: parsed from a control packet.
    fn words(w: &[u32]) -> CompressedLossList {
        let mut d = Vec::new();
        for x in [0x8003_0000u32, 0, 0, 0].iter().chain(w) {
            d.extend_from_slice(&x.to_be_bytes());
        }
        match Packet::parse(&mut &d[..], false) {
            Ok(Packet::Control(ControlPacket {
                control_type: ControlTypes::Nak(list),
                ..
            })) => list,
            other => panic!("not a NAK: {other:?}"),
        }
    }

    #[test]
    fn a_naks_span_counts_singles_ranges_and_wraps() {
        assert_eq!(nak_span(&seqs(&[5])), 1);
        assert_eq!(nak_span(&seqs(&[5, 9, 10, 11, 12, 40])), 6);
        let range = |a: u32, b: u32| {
            CompressedLossList::try_from_range(
                SeqNumber::new_truncate(a)..SeqNumber::new_truncate(b),
            )
            .expect("a range")
        };
        assert_eq!(nak_span(&range(100, 200)), 100);
        assert!(nak_span(&range(0, 25_600)) <= MAX_NAK_SPAN);
        assert!(nak_span(&range(3, 1 << 30)) > MAX_NAK_SPAN);
        // Words as a peer may send them: srt-protocol walks from the start
        // up to the end word as sent, wrapping through 2^32.
        let list = words;
        assert_eq!(nak_span(&list(&[RANGE | 7, 9])), 3);
        // An end equal to the start walks all of u32.
        assert_eq!(nak_span(&list(&[RANGE | 7, 7])), 1 + (1 << 32));
        // An end below the start, or with its top bit set: ~2^31 or more.
        assert!(nak_span(&list(&[RANGE | 7, 6])) > 1 << 31);
        assert!(nak_span(&list(&[RANGE | 7, RANGE | 9])) > 1 << 31);
        // A range with no end.
        assert_eq!(nak_span(&list(&[3, RANGE | 7])), u64::MAX);
    }
}
