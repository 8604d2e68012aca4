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
    let server: SocketAddr = SERVER.parse().unwrap();
    let me: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
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
