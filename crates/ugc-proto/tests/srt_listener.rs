//! The sans-IO SRT listener against `srt-protocol`'s own sans-IO caller, on
//! simulated time: the key-settings mismatches that panic `srt-protocol`
//! 0.4.4's listener (caller AES-256 vs an AES-128 answer, a passphrase
//! without a key length, a passphrase sent to an unencrypted stream) are
//! answered cleanly, and the same listener serves the next caller.
#![allow(missing_docs, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use srt_protocol::options::{KeySize, Passphrase};
use srt_protocol::packet::{Packet, SeqNumber};
use srt_protocol::protocol::pending_connection::ConnectionResult;
use srt_protocol::protocol::pending_connection::connect::Connect;
use srt_protocol::settings::{ConnInitSettings, KeySettings};
use ugc_proto::limits::ExemptIps;
use ugc_proto::srt::{CallerEncryption, ListenerConfig, ListenerEvent, RejectCode, SrtListener};

const SERVER: &str = "127.0.0.1:9000";
const PASS: &str = "correcthorsebattery";

#[derive(Debug, PartialEq)]
enum Outcome {
    Connected,
    Rejected(RejectCode),
    Nothing,
}

fn ser(p: &Packet) -> Vec<u8> {
    let mut v = Vec::new();
    p.serialize(&mut v);
    v
}

/// Runs one caller through `listener`, answering its access request with
/// `passphrase`.
fn call(
    listener: &mut SrtListener,
    port: u16,
    caller_keys: Option<(KeySize, &str)>,
    stream_id: &str,
    passphrase: Option<&str>,
) -> (Outcome, Option<CallerEncryption>) {
    let me: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    call_from(listener, me, caller_keys, stream_id, passphrase)
}

/// [`call`] from any address.
fn call_from(
    listener: &mut SrtListener,
    me: SocketAddr,
    caller_keys: Option<(KeySize, &str)>,
    stream_id: &str,
    passphrase: Option<&str>,
) -> (Outcome, Option<CallerEncryption>) {
    let server: SocketAddr = SERVER.parse().unwrap();
    let settings = ConnInitSettings {
        key_settings: caller_keys.map(|(key_size, p)| KeySettings {
            key_size,
            passphrase: Passphrase::from(p),
        }),
        ..ConnInitSettings::default()
    };
    let mut caller = Connect::new(
        server,
        me.ip(),
        settings,
        Some(stream_id.to_owned()),
        SeqNumber::new_truncate(1234),
    );
    let mut now = Instant::now();
    let mut to_server: Vec<Vec<u8>> = Vec::new();
    if let ConnectionResult::SendPacket((p, _)) = caller.handle_tick(now) {
        to_server.push(ser(&p));
    }
    let mut seen_encryption = None;
    let mut outcome = Outcome::Nothing;
    for _ in 0..10 {
        now += Duration::from_millis(10);
        for d in to_server.drain(..) {
            listener.handle_datagram(now, me, &d);
        }
        while let Some(ev) = listener.poll_event() {
            match ev {
                ListenerEvent::AccessRequested {
                    peer,
                    stream_id,
                    encryption,
                } => {
                    seen_encryption = Some(encryption);
                    if stream_id.is_ok() {
                        listener.accept(now, peer, passphrase);
                    }
                }
                ListenerEvent::Connected { .. } => outcome = Outcome::Connected,
                ListenerEvent::Rejected { code, .. } => outcome = Outcome::Rejected(code),
                _ => {}
            }
        }
        while let Some(ev) = listener.poll_event() {
            match ev {
                ListenerEvent::Connected { .. } => outcome = Outcome::Connected,
                ListenerEvent::Rejected { code, .. } => outcome = Outcome::Rejected(code),
                _ => {}
            }
        }
        let mut back = Vec::new();
        while let Some((d, to)) = listener.poll_transmit() {
            assert_eq!(to, me);
            back.push(d);
        }
        if back.is_empty() {
            break;
        }
        for d in back {
            let p = Packet::parse(&mut &d[..], false).expect("listener sends valid SRT");
            match caller.handle_packet(Ok((p, server)), now) {
                ConnectionResult::SendPacket((p, _)) => to_server.push(ser(&p)),
                ConnectionResult::Connected(..) => {
                    assert_eq!(outcome, Outcome::Connected, "both sides agree");
                }
                ConnectionResult::Reject(_, r) => {
                    let Outcome::Rejected(code) = outcome else {
                        panic!("caller sees {r} but the listener reported {outcome:?}");
                    };
                    assert!(r.to_string().len() > 3, "{code:?}");
                }
                _ => {}
            }
        }
    }
    (outcome, seen_encryption)
}

#[test]
fn key_setting_traps_are_answered_and_the_listener_keeps_serving() {
    let mut l = SrtListener::new(ListenerConfig::default());
    let sid = "#!::r=live/key1,m=publish";
    // Trap 1: caller AES-256 against an encrypted stream: answered AES-256.
    let (o, enc) = call(&mut l, 5001, Some((KeySize::AES256, PASS)), sid, Some(PASS));
    assert_eq!(o, Outcome::Connected);
    assert_eq!(enc, Some(CallerEncryption::Aes { key_len: 32 }));
    // Trap 2: a passphrase without a key length (16-byte keys).
    let (o, _) = call(
        &mut l,
        5002,
        Some((KeySize::Unspecified, PASS)),
        sid,
        Some(PASS),
    );
    assert_eq!(o, Outcome::Connected);
    // Trap 3: a passphrase sent to an unencrypted stream.
    let (o, _) = call(&mut l, 5003, Some((KeySize::AES128, PASS)), sid, None);
    assert_eq!(o, Outcome::Rejected(RejectCode::UNSECURE));
    // Wrong passphrase, missing passphrase.
    let (o, _) = call(
        &mut l,
        5004,
        Some((KeySize::AES128, "not the right one")),
        sid,
        Some(PASS),
    );
    assert_eq!(o, Outcome::Rejected(RejectCode::BAD_SECRET));
    let (o, _) = call(&mut l, 5005, None, sid, Some(PASS));
    assert_eq!(o, Outcome::Rejected(RejectCode::UNSECURE));
    // Malformed stream id and play mode are refused before any decision.
    let (o, _) = call(&mut l, 5006, None, "#!::m=publish", None);
    assert_eq!(o, Outcome::Rejected(RejectCode::BAD_REQUEST));
    let (o, _) = call(&mut l, 5007, None, "#!::r=live/k,m=request", None);
    assert_eq!(o, Outcome::Rejected(RejectCode::BAD_MODE));
    // The same listener still serves a plain caller.
    let (o, _) = call(&mut l, 5008, None, sid, None);
    assert_eq!(o, Outcome::Connected);
    assert_eq!(l.stats().panics, 0);
}

#[test]
fn garbage_datagrams_never_panic_the_listener() {
    let mut l = SrtListener::new(ListenerConfig::default());
    let now = Instant::now();
    let peer: SocketAddr = "127.0.0.1:6000".parse().unwrap();
    let mut rng = 0x1234_5678u64;
    for len in 0..600usize {
        let mut d = vec![0u8; len % 200];
        for b in d.iter_mut() {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            *b = rng as u8;
        }
        // Control-packet flag set on half of them.
        if let Some(b) = d.first_mut()
            && len % 2 == 0
        {
            *b |= 0x80;
        }
        l.handle_datagram(now, peer, &d);
        while l.poll_event().is_some() {}
        while l.poll_transmit().is_some() {}
    }
    let (o, _) = call(&mut l, 6001, None, "k1", None);
    assert_eq!(o, Outcome::Connected);
}

/// The induction a caller at `me` opens its handshake with.
fn induction(me: SocketAddr, now: Instant) -> Vec<u8> {
    let mut caller = Connect::new(
        SERVER.parse().unwrap(),
        me.ip(),
        ConnInitSettings::default(),
        Some("k1".to_owned()),
        SeqNumber::new_truncate(1),
    );
    match caller.handle_tick(now) {
        ConnectionResult::SendPacket((p, _)) => ser(&p),
        other => panic!("no induction: {other:?}"),
    }
}

/// Inductions from `ports` source ports of `ip` at `now`.
fn flood(l: &mut SrtListener, ip: &str, ports: std::ops::Range<u16>, now: Instant) {
    for port in ports {
        let me: SocketAddr = format!("{ip}:{port}").parse().unwrap();
        l.handle_datagram(now, me, &induction(me, now));
        while l.poll_transmit().is_some() {}
        while l.poll_event().is_some() {}
    }
}

/// A handshake flood from one host over a thousand source ports: without
/// a per-address cap it fills the listener's table and the next caller is
/// ignored until the flood's handshakes time out; with it, the flood holds
/// `max_pending_per_ip` places, the rest are dropped and counted, and
/// another caller connects at once. The flood's places free up after
/// `handshake_timeout`, and the host may start handshakes again.
#[test]
fn a_handshake_flood_from_one_address_leaves_room_for_others() {
    let config = ListenerConfig {
        max_pending: 100,
        max_pending_per_ip: 8,
        handshake_timeout: Duration::from_secs(10),
        ..ListenerConfig::default()
    };
    let attacker: std::net::IpAddr = "10.6.6.6".parse().unwrap();

    // Before: no cap per address.
    let mut open = SrtListener::new(ListenerConfig {
        max_pending_per_ip: 0,
        ..config.clone()
    });
    let t0 = Instant::now();
    flood(&mut open, "10.6.6.6", 20_000..21_000, t0);
    assert_eq!(open.pending(), 100);
    assert_eq!(open.stats().overload_drops, 900);
    let (o, _) = call(&mut open, 7001, None, "k1", None);
    assert_eq!(o, Outcome::Nothing, "locked out by the flood");

    // Now: the flood holds 8 places.
    let mut l = SrtListener::new(config);
    let t0 = Instant::now();
    flood(&mut l, "10.6.6.6", 20_000..21_000, t0);
    assert_eq!(l.pending(), 8);
    assert_eq!(l.of_ip(attacker), (8, 0));
    assert_eq!(l.stats().ip_cap_drops, 992);
    assert_eq!(l.stats().overload_drops, 0);
    // Thousands more from the same few ports change nothing.
    for _ in 0..500 {
        flood(&mut l, "10.6.6.6", 20_000..20_004, t0);
    }
    assert_eq!(l.of_ip(attacker), (8, 0));
    let (o, _) = call(&mut l, 7001, None, "k1", None);
    assert_eq!(o, Outcome::Connected);

    // Just before the timeout the flood's places are held; after it, free.
    l.handle_timeout(t0 + Duration::from_millis(9_900));
    assert_eq!(l.of_ip(attacker), (8, 0));
    l.handle_timeout(t0 + Duration::from_secs(10));
    assert_eq!(l.of_ip(attacker), (0, 0));
    assert_eq!(l.pending(), 0);
    assert_eq!(l.stats().timed_out, 8);
    flood(
        &mut l,
        "10.6.6.6",
        30_000..30_001,
        t0 + Duration::from_secs(11),
    );
    assert_eq!(l.of_ip(attacker), (1, 0));
}

/// One address may hold `max_connections_per_ip` connections: the next
/// caller from it is refused with 2402 before its access is asked for
/// (no `AccessRequested`), other addresses are not affected, and a place
/// freed by `connection_closed` (once, however often it is called) is
/// given again.
#[test]
fn connections_per_address_are_capped_until_one_closes() {
    let mut l = SrtListener::new(ListenerConfig {
        max_connections_per_ip: 2,
        ..ListenerConfig::default()
    });
    let host = |port: u16| -> SocketAddr { format!("10.0.0.1:{port}").parse().unwrap() };
    let ip = host(0).ip();
    for port in [8001, 8002] {
        let (o, _) = call_from(&mut l, host(port), None, "k1", None);
        assert_eq!(o, Outcome::Connected);
    }
    assert_eq!(l.of_ip(ip), (0, 2));
    let (o, asked) = call_from(&mut l, host(8003), None, "k1", None);
    assert_eq!(o, Outcome::Rejected(RejectCode::OVERLOAD));
    assert_eq!(asked, None, "refused before its access was asked for");
    assert_eq!(l.stats().ip_cap_rejects, 1);
    // Another address is served.
    let other: SocketAddr = "10.0.0.2:8001".parse().unwrap();
    let (o, _) = call_from(&mut l, other, None, "k1", None);
    assert_eq!(o, Outcome::Connected);
    // A connection ends: its place is free, counted once.
    l.connection_closed(&host(8001));
    l.connection_closed(&host(8001));
    l.connection_closed(&host(9999));
    assert_eq!(l.of_ip(ip), (0, 1));
    let (o, _) = call_from(&mut l, host(8004), None, "k1", None);
    assert_eq!(o, Outcome::Connected);
    let (o, _) = call_from(&mut l, host(8005), None, "k1", None);
    assert_eq!(o, Outcome::Rejected(RejectCode::OVERLOAD));
    assert_eq!(l.of_ip(ip), (0, 2));
    assert_eq!(l.stats().ip_cap_rejects, 2);
}

/// An exempt address (an encoder farm behind one NAT address) is held to
/// neither per-address cap, while others still are; `max_pending` still
/// bounds everyone.
#[test]
fn an_exempt_address_is_not_capped_per_address() {
    let farm: std::net::IpAddr = "10.0.0.1".parse().unwrap();
    let mut l = SrtListener::new(ListenerConfig {
        max_pending: 50,
        max_pending_per_ip: 2,
        max_connections_per_ip: 2,
        per_ip_exempt: Some(ExemptIps::new(move |ip| ip == farm)),
        ..ListenerConfig::default()
    });
    let host = |ip: &str, port: u16| -> SocketAddr { format!("{ip}:{port}").parse().unwrap() };
    for port in 8001..8006 {
        let (o, _) = call_from(&mut l, host("10.0.0.1", port), None, "k1", None);
        assert_eq!(o, Outcome::Connected);
    }
    assert_eq!(l.of_ip(farm), (0, 5));
    for port in 8001..8003 {
        let (o, _) = call_from(&mut l, host("10.0.0.2", port), None, "k1", None);
        assert_eq!(o, Outcome::Connected);
    }
    let (o, _) = call_from(&mut l, host("10.0.0.2", 8003), None, "k1", None);
    assert_eq!(o, Outcome::Rejected(RejectCode::OVERLOAD));
    assert_eq!(l.stats().ip_cap_rejects, 1);
    // Handshakes in progress: the farm's are not capped per address, only
    // by max_pending; another host's are.
    let t0 = Instant::now();
    flood(&mut l, "10.0.0.1", 20_000..20_100, t0);
    assert_eq!(l.pending(), 50);
    assert_eq!(l.stats().ip_cap_drops, 0);
    assert_eq!(l.stats().overload_drops, 50);
}

/// Two callers of one address decided at once when it has one place
/// left: the first accepted connects, the second is refused at `accept`.
#[test]
fn concurrent_decisions_do_not_overrun_the_per_address_cap() {
    let mut l = SrtListener::new(ListenerConfig {
        max_connections_per_ip: 1,
        ..ListenerConfig::default()
    });
    let server: SocketAddr = SERVER.parse().unwrap();
    let mut now = Instant::now();
    let peers: Vec<SocketAddr> = (0..2)
        .map(|i| format!("10.0.0.7:{}", 9000 + i).parse().unwrap())
        .collect();
    let mut callers: Vec<Connect> = peers
        .iter()
        .map(|me| {
            Connect::new(
                server,
                me.ip(),
                ConnInitSettings::default(),
                Some("k1".to_owned()),
                SeqNumber::new_truncate(1),
            )
        })
        .collect();
    let mut inbox: Vec<(usize, Vec<u8>)> = Vec::new();
    for (i, c) in callers.iter_mut().enumerate() {
        if let ConnectionResult::SendPacket((p, _)) = c.handle_tick(now) {
            inbox.push((i, ser(&p)));
        }
    }
    let mut asked = Vec::new();
    let mut outcomes = vec![Outcome::Nothing, Outcome::Nothing];
    for _ in 0..6 {
        now += Duration::from_millis(10);
        for (i, d) in inbox.drain(..) {
            l.handle_datagram(now, peers[i], &d);
        }
        while let Some(ev) = l.poll_event() {
            match ev {
                ListenerEvent::AccessRequested { peer, .. } => asked.push(peer),
                ListenerEvent::Connected { peer, .. } => {
                    outcomes[peers.iter().position(|p| *p == peer).unwrap()] = Outcome::Connected
                }
                ListenerEvent::Rejected { peer, code } => {
                    outcomes[peers.iter().position(|p| *p == peer).unwrap()] =
                        Outcome::Rejected(code)
                }
                _ => {}
            }
        }
        // Both are being decided: answer them together.
        if asked.len() == 2 {
            for peer in asked.drain(..) {
                l.accept(now, peer, None);
            }
            while let Some(ev) = l.poll_event() {
                match ev {
                    ListenerEvent::Connected { peer, .. } => {
                        outcomes[peers.iter().position(|p| *p == peer).unwrap()] =
                            Outcome::Connected
                    }
                    ListenerEvent::Rejected { peer, code } => {
                        outcomes[peers.iter().position(|p| *p == peer).unwrap()] =
                            Outcome::Rejected(code)
                    }
                    _ => {}
                }
            }
        }
        while let Some((d, to)) = l.poll_transmit() {
            let i = peers.iter().position(|p| *p == to).unwrap();
            let p = Packet::parse(&mut &d[..], false).unwrap();
            if let ConnectionResult::SendPacket((p, _)) =
                callers[i].handle_packet(Ok((p, server)), now)
            {
                inbox.push((i, ser(&p)));
            }
        }
    }
    assert_eq!(
        outcomes,
        [Outcome::Connected, Outcome::Rejected(RejectCode::OVERLOAD)]
    );
    assert_eq!(l.of_ip(peers[0].ip()), (0, 1));
}

/// An accepted caller's connection, driven through `listener`.
fn connected(listener: &mut SrtListener, me: SocketAddr) -> Box<ugc_proto::srt::SrtConnection> {
    connect_with(listener, me, ConnInitSettings::default()).expect("never connected")
}

/// A call from `me` with `settings`, accepted: the listener's connection,
/// or `None` if it gave none within 100 ms.
fn connect_with(
    listener: &mut SrtListener,
    me: SocketAddr,
    settings: ConnInitSettings,
) -> Option<Box<ugc_proto::srt::SrtConnection>> {
    call_with(listener, me, settings).0
}

/// [`connect_with`], with what the caller made of the listener's answer:
/// `Connected`, or the rejection's reason.
fn call_with(
    listener: &mut SrtListener,
    me: SocketAddr,
    settings: ConnInitSettings,
) -> (Option<Box<ugc_proto::srt::SrtConnection>>, Option<String>) {
    let server: SocketAddr = SERVER.parse().unwrap();
    let mut caller = Connect::new(
        server,
        me.ip(),
        settings,
        Some("k1".to_owned()),
        SeqNumber::new_truncate(1234),
    );
    let mut now = Instant::now();
    let mut inbox = Vec::new();
    let (mut ours, mut theirs) = (None, None);
    if let ConnectionResult::SendPacket((p, _)) = caller.handle_tick(now) {
        inbox.push(ser(&p));
    }
    for _ in 0..10 {
        now += Duration::from_millis(10);
        for d in inbox.drain(..) {
            listener.handle_datagram(now, me, &d);
        }
        while let Some(ev) = listener.poll_event() {
            match ev {
                ListenerEvent::AccessRequested { peer, .. } => listener.accept(now, peer, None),
                ListenerEvent::Connected { connection, .. } => ours = Some(connection),
                _ => {}
            }
        }
        while let Some((d, _)) = listener.poll_transmit() {
            let p = Packet::parse(&mut &d[..], false).unwrap();
            match caller.handle_packet(Ok((p, server)), now) {
                ConnectionResult::SendPacket((p, _)) => inbox.push(ser(&p)),
                ConnectionResult::Connected(..) => theirs = Some("Connected".to_owned()),
                ConnectionResult::Reject(_, reason) => theirs = Some(format!("{reason}")),
                _ => {}
            }
        }
        if ours.is_some() && theirs.is_some() {
            break;
        }
    }
    (ours, theirs)
}

/// A caller whose handshake asks for packets under SRT's minimum (MSS 0
/// made `srt-protocol` loop for ever on the first send to it) gets no
/// connection: counted refused, not connected, nothing panics, and the
/// caller is answered with the rejection (SRT_REJ_ROGUE), not left
/// believing it connected.
#[test]
fn a_caller_asking_for_tiny_packets_gets_no_connection() {
    let mut l = SrtListener::new(ListenerConfig::default());
    let me: SocketAddr = "10.0.0.8:9000".parse().unwrap();
    let settings = ConnInitSettings {
        max_packet_size: srt_protocol::options::PacketSize(0),
        ..ConnInitSettings::default()
    };
    let (ours, theirs) = call_with(&mut l, me, settings);
    assert!(ours.is_none());
    assert_eq!(
        theirs.as_deref(),
        Some("Remote rejected connection: incorrect data in handshake messages"),
        "the caller's view"
    );
    assert_eq!((l.stats().connected, l.stats().rejected), (0, 1));
    assert_eq!(l.stats().panics, 0);
    // An ordinary caller still connects.
    let other: SocketAddr = "10.0.0.7:9000".parse().unwrap();
    connected(&mut l, other);
    assert_eq!(l.stats().connected, 1);
}

/// The slow fuzz inputs of `srt_listener` (35 s to minutes each, found by
/// the campaign): one NAK from an accepted caller whose loss range
/// `srt-protocol` 0.4.4 walks one number at a time, up to 2^32 (a range
/// whose end word equals its start, lies below it or has the top bit
/// set). Such a NAK is refused and counted; an honest one is taken; the
/// connection goes on.
#[test]
fn a_nak_naming_billions_of_losses_is_refused_in_no_time() {
    let mut l = SrtListener::new(ListenerConfig::default());
    let me: SocketAddr = "10.0.0.9:9000".parse().unwrap();
    let mut conn = connected(&mut l, me);
    let nak = |words: &[u32]| {
        let mut d = Vec::new();
        for w in [0x8003_0000u32, 0, 0, 0].iter().chain(words) {
            d.extend_from_slice(&w.to_be_bytes());
        }
        d
    };
    const RANGE: u32 = 1 << 31;
    let now = Instant::now() + Duration::from_secs(1);
    let started = Instant::now();
    for words in [
        [RANGE | 7, 7],
        [RANGE | 7, 6],
        [RANGE | 7, RANGE | 9],
        [RANGE | 3, 1 << 30],
    ] {
        conn.handle_datagram(now, &nak(&words));
    }
    assert_eq!(conn.naks_refused(), 4);
    conn.handle_datagram(now, &nak(&[RANGE | 7, 9]));
    assert_eq!(conn.naks_refused(), 4, "an honest NAK is taken");
    assert!(!conn.is_closed() && !conn.panicked());
    conn.handle_timeout(now + Duration::from_millis(20));
    let mut out = Vec::new();
    let mut sent = 0;
    while conn.poll_transmit(now + Duration::from_millis(20), &mut out) {
        sent += 1;
    }
    assert!(sent < 100, "no deluge of answers: {sent}");
    // (Without the check the first NAK alone walks 2^32 numbers: minutes.)
    assert!(started.elapsed() < Duration::from_secs(5));
}
