//! What a WHIP publisher's and a WHEP viewer's sessions share: str0m's
//! `Rtc` as an ICE-lite server answering one offer, fed datagrams and
//! timers, with its datagrams out queued and its events handed to the
//! session that owns it.
//!
//! Every call into str0m runs under `catch_unwind`: a peer whose packets
//! trip it loses its own session, nothing else.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

use str0m::change::SdpOffer;
use str0m::net::{Protocol, Receive, TcpType};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};

use super::session::{MAX_OFFER, OfferError, SessionSetup};

/// Outputs taken from str0m per call: a session never holds the server's
/// loop for long.
const MAX_OUTPUTS: usize = 10_000;

/// How a packet travels: a UDP datagram, or one RFC 4571 frame on an
/// ICE-TCP connection (RFC 6544; the adapter does the framing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// A UDP datagram.
    Udp,
    /// A packet on a TCP connection the peer opened to our passive
    /// candidate.
    Tcp,
}

impl Transport {
    fn protocol(self) -> Protocol {
        match self {
            Transport::Udp => Protocol::Udp,
            Transport::Tcp => Protocol::Tcp,
        }
    }
}

/// A packet for the network: our address to send it from (one of the
/// candidates), its destination, and its bytes, over `transport` (for TCP:
/// on the connection between `source` and `destination`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// UDP, or the peer's ICE-TCP connection.
    pub transport: Transport,
    /// Our candidate's address.
    pub source: SocketAddr,
    /// The peer's address.
    pub destination: SocketAddr,
    /// The packet.
    pub data: Vec<u8>,
}

/// One answered offer's WebRTC peer; see the [module documentation](self).
pub(crate) struct Peer {
    pub(crate) rtc: Rtc,
    transmit: VecDeque<Packet>,
    next_timeout: Instant,
    pub(crate) connected: bool,
    closed: Option<String>,
    last_error: Option<String>,
    /// Datagrams str0m refused or panicked on.
    pub(crate) bad_datagrams: u64,
}

impl Peer {
    /// A peer for the SDP `offer` with H.264 (and AV1 with `av1`) and
    /// Opus, and its answer.
    pub(crate) fn answer(
        offer: &str,
        setup: &SessionSetup,
        av1: bool,
        now: Instant,
    ) -> Result<(Peer, String), OfferError> {
        if offer.len() > MAX_OFFER {
            return Err(OfferError::Malformed(format!(
                "longer than {MAX_OFFER} bytes"
            )));
        }
        let offer =
            SdpOffer::from_sdp_string(offer).map_err(|e| OfferError::Malformed(e.to_string()))?;
        let built = catch_unwind(AssertUnwindSafe(|| {
            let mut config = RtcConfig::new()
                .set_ice_lite(true)
                .clear_codecs()
                .enable_h264(true)
                .enable_av1(av1)
                .enable_opus(true, false)
                .set_reordering_size_video(setup.reordering_packets.max(30))
                .set_crypto_provider(setup.crypto.clone());
            if let Some(cert) = &setup.cert {
                config = config.set_dtls_cert(cert.clone());
            }
            let mut rtc = config.build(now);
            for &addr in &setup.candidates {
                let c = Candidate::host(addr, "udp")
                    .map_err(|e| OfferError::Candidate(e.to_string()))?;
                rtc.add_local_candidate(c);
            }
            // Passive: the peer connects (RFC 6544); a lower priority than
            // UDP's, so a peer that reaches both uses UDP.
            for &addr in &setup.tcp_candidates {
                let c = Candidate::builder()
                    .tcp()
                    .host(addr)
                    .tcptype(TcpType::Passive)
                    .build()
                    .map_err(|e| OfferError::Candidate(e.to_string()))?;
                rtc.add_local_candidate(c);
            }
            let answer = rtc
                .sdp_api()
                .accept_offer(offer)
                .map_err(|e| OfferError::Malformed(e.to_string()))?;
            Ok::<_, OfferError>((rtc, answer.to_sdp_string()))
        }));
        let (rtc, answer) =
            built.map_err(|_| OfferError::Malformed("str0m failed on it".into()))??;
        let peer = Peer {
            rtc,
            transmit: VecDeque::new(),
            next_timeout: now,
            connected: false,
            closed: None,
            last_error: None,
            bad_datagrams: 0,
        };
        Ok((peer, answer))
    }

    pub(crate) fn closed(&self) -> Option<&str> {
        self.closed.as_deref()
    }

    pub(crate) fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    pub(crate) fn poll_timeout(&self) -> Instant {
        self.next_timeout
    }

    pub(crate) fn poll_transmit(&mut self) -> Option<Packet> {
        self.transmit.pop_front()
    }

    /// Whether this packet from `source` to our `destination` is this
    /// peer's (its ICE credentials or its address).
    pub(crate) fn accepts(
        &self,
        now: Instant,
        via: Transport,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) -> bool {
        if self.closed.is_some() {
            return false;
        }
        let Ok(r) = Receive::new(via.protocol(), source, destination, data) else {
            return false;
        };
        catch_unwind(AssertUnwindSafe(|| {
            self.rtc.accepts(&Input::Receive(now, r))
        }))
        .unwrap_or(false)
    }

    /// Gives str0m a datagram; `false` if there is nothing to drive (the
    /// peer is closed, or the datagram was refused).
    pub(crate) fn receive(
        &mut self,
        now: Instant,
        via: Transport,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) -> bool {
        if self.closed.is_some() {
            return false;
        }
        let Ok(r) = Receive::new(via.protocol(), source, destination, data) else {
            self.bad_datagrams += 1;
            return false;
        };
        match catch_unwind(AssertUnwindSafe(|| {
            self.rtc.handle_input(Input::Receive(now, r))
        })) {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                self.bad_datagrams += 1;
                self.last_error = Some(e.to_string());
                true
            }
            Err(_) => {
                self.fail("str0m failed on a datagram");
                false
            }
        }
    }

    /// Runs str0m's timers; `false` if the peer is closed (now or before).
    pub(crate) fn timeout(&mut self, now: Instant) -> bool {
        if self.closed.is_some() {
            return false;
        }
        match catch_unwind(AssertUnwindSafe(|| {
            self.rtc.handle_input(Input::Timeout(now))
        })) {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                self.fail(&format!("webrtc: {e}"));
                false
            }
            Err(_) => {
                self.fail("str0m failed on a timeout");
                false
            }
        }
    }

    /// Takes str0m's output until it waits for time or input: datagrams
    /// are queued, events returned (what they cause is sent on the next
    /// call).
    pub(crate) fn poll_events(&mut self, now: Instant) -> Vec<Event> {
        let mut events = Vec::new();
        if self.closed.is_some() {
            return events;
        }
        for _ in 0..MAX_OUTPUTS {
            let output = match catch_unwind(AssertUnwindSafe(|| self.rtc.poll_output())) {
                Ok(Ok(o)) => o,
                Ok(Err(e)) => {
                    self.fail(&format!("webrtc: {e}"));
                    return events;
                }
                Err(_) => {
                    self.fail("str0m failed");
                    return events;
                }
            };
            match output {
                Output::Timeout(t) => {
                    self.next_timeout = t.max(now);
                    return events;
                }
                Output::Transmit(t) => {
                    // Only what we offered: UDP, and TCP to a passive
                    // candidate.
                    let transport = match t.proto {
                        Protocol::Udp => Transport::Udp,
                        _ => Transport::Tcp,
                    };
                    self.transmit.push_back(Packet {
                        transport,
                        source: t.source,
                        destination: t.destination,
                        data: t.contents.to_vec(),
                    });
                }
                Output::Event(Event::Connected) => {
                    self.connected = true;
                    events.push(Event::Connected);
                }
                Output::Event(e) => events.push(e),
            }
        }
        self.next_timeout = now;
        events
    }

    /// Ends the session for `why` (what [`Self::closed`] says after).
    pub(crate) fn close_because(&mut self, why: &str) {
        if self.closed.is_none() {
            let _ = catch_unwind(AssertUnwindSafe(|| self.rtc.disconnect()));
            self.closed = Some(why.to_owned());
        }
    }

    /// Marks the session failed (str0m is not touched again).
    pub(crate) fn fail(&mut self, why: &str) {
        if self.closed.is_none() {
            self.closed = Some(why.to_owned());
        }
    }
}

/// The methods of a session built on a [`Peer`]: its field `peer`, a
/// `stats` with `bad_datagrams`, and a `drive(now)` acting on the peer's
/// events. Both sessions' public API, written once.
macro_rules! peer_methods {
    () => {
        /// Whether ICE and DTLS are up.
        pub fn is_connected(&self) -> bool {
            self.peer.connected
        }

        /// Why the session ended, once it has (ICE gone, str0m failed,
        /// closed).
        pub fn closed(&self) -> Option<&str> {
            self.peer.closed()
        }

        /// Whether this packet from `source` to our `destination` (a UDP
        /// datagram, or a frame of an ICE-TCP connection) belongs to this
        /// session (its ICE credentials or its peer's address).
        pub fn accepts(
            &self,
            now: Instant,
            via: $crate::whip::Transport,
            source: SocketAddr,
            destination: SocketAddr,
            data: &[u8],
        ) -> bool {
            self.peer.accepts(now, via, source, destination, data)
        }

        /// A packet for this session: a UDP datagram, or a frame of an
        /// ICE-TCP connection (its RFC 4571 length taken off).
        pub fn handle_datagram(
            &mut self,
            now: Instant,
            via: $crate::whip::Transport,
            source: SocketAddr,
            destination: SocketAddr,
            data: &[u8],
        ) {
            let go = self.peer.receive(now, via, source, destination, data);
            self.stats.bad_datagrams = self.peer.bad_datagrams;
            if go {
                self.drive(now);
            }
        }

        /// When [`Self::handle_timeout`] is due.
        pub fn poll_timeout(&self) -> Instant {
            self.peer.poll_timeout()
        }

        /// Runs str0m's timers (ICE, DTLS, RTCP, NACK).
        pub fn handle_timeout(&mut self, now: Instant) {
            if self.peer.timeout(now) {
                self.drive(now);
            }
        }

        /// The next packet to send.
        pub fn poll_transmit(&mut self) -> Option<$crate::whip::Packet> {
            self.peer.poll_transmit()
        }

        /// Ends the session for `why` (what [`Self::closed`] says after).
        pub fn close_because(&mut self, why: &str) {
            self.peer.close_because(why);
        }

        /// What str0m last refused of the peer's datagrams (a DTLS
        /// handshake it cannot do says so here), if anything.
        pub fn last_error(&self) -> Option<&str> {
            self.peer.last_error()
        }
    };
}
pub(crate) use peer_methods;
