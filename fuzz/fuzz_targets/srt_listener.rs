//! The SRT listener's datagram handling (issue #17): arbitrary datagrams
//! from a few peer addresses (IPv4 and IPv6), honest `srt-protocol` callers
//! whose handshakes are optionally corrupted, access decisions and an
//! advancing `now`, into [`SrtListener`] and the [`SrtConnection`]s it
//! hands out.
//!
//! Panics inside `srt-protocol` are contained by the listener's
//! `catch_unwind` (a caller loses only its own handshake or connection), so
//! this target replaces libFuzzer's abort-on-panic hook with one that prints
//! each such panic location once; a panic that escapes the listener still
//! aborts (libfuzzer-sys catches it around the target and aborts).
//!
//! Invariants after every step: handshakes in progress stay within
//! `max_pending`; every datagram the listener or a connection sends parses
//! as SRT and goes to a peer that spoke to us; a datagram in gives at most
//! two out of the listener; a connection delivers no more payload bytes than
//! it was sent (no amplification).
//!
//! Input: a sequence of ops, `[op][args...]`; `op & 3` picks the peer,
//! `op >> 2` the kind: raw datagram `[len][bytes]` (kind 0), raw datagram
//! with the cookie and destination socket id patched in from our last
//! answer to that peer (1), an honest caller step `[config][mutation][value]`
//! (2), time advance `[10 ms units]` (3), caller retransmission tick (4),
//! connection stats and close (5). Access requests are answered from the
//! next input byte.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use srt_protocol::options::{KeySize, Passphrase};
use srt_protocol::packet::{ControlTypes, Packet, SeqNumber, SocketId};
use srt_protocol::protocol::pending_connection::ConnectionResult;
use srt_protocol::protocol::pending_connection::connect::Connect;
use srt_protocol::settings::{ConnInitSettings, KeySettings};
use ugc_proto::srt::{ListenerConfig, ListenerEvent, RejectCode, SrtConnection, SrtListener};

#[path = "../common/contained_panics.rs"]
mod contained_panics;
#[path = "../common/input.rs"]
mod input;
use input::Input;

const PASS: &str = "correcthorsebattery";
const MAX_PENDING: usize = 2;

#[derive(Default)]
struct Peer {
    caller: Option<Connect>,
    answers: Vec<Packet>,
    cookie: Option<i32>,
    sockid: Option<u32>,
    conn: Option<Box<SrtConnection>>,
    sent_to_conn: usize,
    delivered: usize,
}

fn ser(p: &Packet) -> Vec<u8> {
    let mut v = Vec::new();
    p.serialize(&mut v);
    v
}

fn new_caller(server: SocketAddr, me: SocketAddr, config: u8) -> Connect {
    let stream_id = match config & 3 {
        0 => "#!::r=live/key1,m=publish",
        1 => "live/key1",
        2 => "#!::r=live/key1,m=request",
        _ => "#!::r=,m=publish\u{0}",
    };
    let key_settings = match (config >> 2) & 3 {
        0 => None,
        1 => Some(KeySize::AES128),
        2 => Some(KeySize::AES256),
        _ => Some(KeySize::Unspecified),
    }
    .map(|key_size| KeySettings {
        key_size,
        passphrase: Passphrase::from(PASS),
    });
    let settings = ConnInitSettings {
        local_sockid: SocketId(0x1000 + u32::from(config)),
        key_settings,
        ..ConnInitSettings::default()
    };
    Connect::new(
        server,
        me.ip(),
        settings,
        Some(stream_id.to_owned()),
        SeqNumber::new_truncate(1234),
    )
}

fn check_sent(data: &[u8], to: SocketAddr) -> Packet {
    match Packet::parse(&mut &data[..], to.is_ipv6()) {
        Ok(p) => p,
        Err(e) => panic!("we sent an unparsable datagram to {to}: {e:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    contained_panics::install();
    let server: SocketAddr = "10.0.0.9:9000".parse().expect("address");
    let addrs: [SocketAddr; 4] = [
        "10.0.0.1:5000".parse().expect("address"),
        "10.0.0.2:5000".parse().expect("address"),
        "10.0.0.1:5001".parse().expect("address"),
        "[2001:db8::1]:5000".parse().expect("address"),
    ];
    let mut listener = SrtListener::new(ListenerConfig {
        max_pending: MAX_PENDING,
        handshake_timeout: Duration::from_secs(2),
        ..ListenerConfig::default()
    });
    let mut peers: Vec<Peer> = (0..4).map(|_| Peer::default()).collect();
    let start = Instant::now();
    let mut now = start;
    let mut input = Input(data);
    let mut out = Vec::new();

    while let Some(op) = input.byte() {
        let i = usize::from(op & 3);
        let from = addrs[i];
        let mut datagrams: Vec<Vec<u8>> = Vec::new();
        match op >> 2 {
            2 => {
                let config = input.byte().unwrap_or(0);
                let mutation = input.byte().unwrap_or(0);
                let value = input.byte().unwrap_or(0);
                let p = &mut peers[i];
                let mut results = Vec::new();
                match &mut p.caller {
                    None => {
                        let mut c = new_caller(server, from, config);
                        results.push(c.handle_tick(now));
                        p.caller = Some(c);
                    }
                    Some(c) => {
                        for a in p.answers.drain(..) {
                            results.push(c.handle_packet(Ok((a, server)), now));
                        }
                    }
                }
                for r in results {
                    if let ConnectionResult::SendPacket((pkt, _)) = r {
                        let mut d = ser(&pkt);
                        if mutation & 0x80 != 0 && !d.is_empty() {
                            let at = usize::from(mutation & 0x7f) % d.len();
                            d[at] = value;
                        }
                        datagrams.push(d);
                    }
                }
            }
            3 => {
                let units = input.byte().unwrap_or(1);
                now += Duration::from_millis(10 * u64::from(units));
                listener.handle_timeout(now);
                for p in &mut peers {
                    if let Some(c) = &mut p.conn
                        && c.poll_timeout(now) <= now
                    {
                        c.handle_timeout(now);
                    }
                }
            }
            4 => {
                if let Some(c) = &mut peers[i].caller
                    && let ConnectionResult::SendPacket((pkt, _)) = c.handle_tick(now)
                {
                    datagrams.push(ser(&pkt));
                }
            }
            5 => {
                if let Some(c) = &mut peers[i].conn {
                    let _ = c.stats(now);
                    if input.byte().unwrap_or(0) & 1 == 1 {
                        let bye = c.close(now);
                        check_sent(&bye, from);
                        assert!(c.is_closed());
                    }
                }
            }
            kind => {
                let len = usize::from(input.byte().unwrap_or(0));
                let mut d = input.bytes(len);
                if kind == 1 {
                    let p = &peers[i];
                    if let (Some(sockid), true) = (p.sockid, d.len() >= 16) {
                        d[12..16].copy_from_slice(&sockid.to_be_bytes());
                    }
                    if let (Some(cookie), true) = (p.cookie, d.len() >= 48) {
                        d[44..48].copy_from_slice(&cookie.to_be_bytes());
                    }
                }
                datagrams.push(d);
            }
        }

        for d in datagrams {
            let p = &mut peers[i];
            match &mut p.conn {
                Some(c) if !c.is_closed() => {
                    p.sent_to_conn += d.len();
                    c.handle_datagram(now, &d);
                }
                _ => {
                    listener.handle_datagram(now, from, &d);
                    let mut answers = 0;
                    while let Some((bytes, to)) = listener.poll_transmit() {
                        answers += 1;
                        let pkt = check_sent(&bytes, to);
                        let j = addrs
                            .iter()
                            .position(|a| *a == to)
                            .unwrap_or_else(|| panic!("sent to {to}, a stranger"));
                        if let Packet::Control(c) = &pkt
                            && let ControlTypes::Handshake(h) = &c.control_type
                        {
                            peers[j].cookie = Some(h.syn_cookie);
                            peers[j].sockid = Some(h.socket_id.0);
                        }
                        peers[j].answers.push(pkt);
                    }
                    assert!(answers <= 2, "{answers} answers to one datagram");
                }
            }
        }

        while let Some(ev) = listener.poll_event() {
            match ev {
                ListenerEvent::AccessRequested { peer, .. } => match input.byte().unwrap_or(0) & 3 {
                    0 => listener.accept(now, peer, None),
                    1 => listener.accept(now, peer, Some(PASS)),
                    2 => listener.reject(now, peer, RejectCode::FORBIDDEN),
                    _ => {}
                },
                ListenerEvent::Connected { peer, connection } => {
                    let j = addrs
                        .iter()
                        .position(|a| *a == peer)
                        .expect("connected peer is one of ours");
                    assert_eq!(connection.peer(), peer);
                    let p = &mut peers[j];
                    p.conn = Some(connection);
                    p.sent_to_conn = 0;
                    p.delivered = 0;
                }
                ListenerEvent::Rejected { .. } => {}
                _ => {}
            }
        }
        // Accept/reject answers go out too.
        while let Some((bytes, to)) = listener.poll_transmit() {
            let pkt = check_sent(&bytes, to);
            let j = addrs
                .iter()
                .position(|a| *a == to)
                .unwrap_or_else(|| panic!("sent to {to}, a stranger"));
            peers[j].answers.push(pkt);
        }
        assert!(listener.pending() <= MAX_PENDING);

        for p in &mut peers {
            let Some(c) = &mut p.conn else { continue };
            let mut sent = 0;
            while c.poll_transmit(now, &mut out) {
                check_sent(&out, c.peer());
                sent += 1;
                assert!(sent < 10_000, "a connection that never stops sending");
            }
            while let Some(b) = c.poll_data(now) {
                p.delivered += b.len();
            }
            assert!(
                p.delivered <= p.sent_to_conn,
                "delivered {} of {} bytes received",
                p.delivered,
                p.sent_to_conn
            );
            if p.answers.len() > 64 {
                p.answers.drain(..32);
            }
        }
    }
});
