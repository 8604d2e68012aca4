//! The WHIP and WHEP sessions (issue #18): an arbitrary SDP offer into
//! [`WhipSession::new`] and [`WhepSession::new`], then arbitrary datagrams
//! and time into a session made from a publisher's real offer (str0m's,
//! H.264 + Opus send-only), or into a viewer's (receive-only) with the
//! stream's events too (an arbitrary `avcC`, frames of arbitrary bytes).
//!
//! str0m's panics are contained by the session's `catch_unwind` (the hook of
//! `common/contained_panics.rs` prints each location once); a panic that
//! escapes aborts. Invariants: a session that failed sends nothing more and
//! yields no media; every media event's frames belong to announced tracks.
//!
//! Input: `[mode]`: mode & 1 == 0: the rest is an offer (as UTF-8, lossy);
//! else ops on a real session, a viewer's if mode & 2: `[op][len][bytes]`,
//! op & 3: a datagram from the peer's address (0), from a stranger (1),
//! time `len` x 10 ms (2), close (3); a viewer's op & 7 also: tracks with
//! `bytes` as the H.264 `avcC` and Opus (4), a video frame of `bytes`
//! (a keyframe if `len` is odd) (5), an Opus frame (6), a skip or the end
//! (7).
#![no_main]

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use str0m::media::{Direction, MediaKind};
use str0m::{Candidate, RtcConfig};
use ugc_core::{Codec, Frame, MediaEvent, TrackId, Tracks};
use ugc_proto::whip::{SessionSetup, Transport, WhepSession, WhipSession};

#[path = "../common/contained_panics.rs"]
mod contained_panics;

fn setup() -> &'static SessionSetup {
    static SETUP: OnceLock<SessionSetup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let us: SocketAddr = "10.0.0.2:8189".parse().expect("address");
        let mut setup = SessionSetup::new(vec![us]);
        // The same address over ICE-TCP: packets come either way.
        setup.tcp_candidates = vec![us];
        setup
    })
}

fn real_offer() -> &'static str {
    static OFFER: OnceLock<String> = OnceLock::new();
    OFFER.get_or_init(|| offer(Direction::SendOnly))
}

fn viewer_offer() -> &'static str {
    static OFFER: OnceLock<String> = OnceLock::new();
    OFFER.get_or_init(|| offer(Direction::RecvOnly))
}

fn offer(direction: Direction) -> String {
    {
        let mut rtc = RtcConfig::new()
            .set_crypto_provider(std::sync::Arc::new(str0m::crypto::from_feature_flags()))
            .build(Instant::now());
        let c =
            Candidate::host("10.0.0.1:5000".parse().expect("address"), "udp").expect("candidate");
        rtc.add_local_candidate(c);
        let mut change = rtc.sdp_api();
        change.add_media(MediaKind::Video, direction, None, None, None);
        change.add_media(MediaKind::Audio, direction, None, None, None);
        let (offer, _) = change.apply().expect("an offer");
        offer.to_sdp_string()
    }
}

/// The Hub's tracks with `avcc` as the H.264 track's configuration.
fn tracks(avcc: &[u8]) -> Tracks {
    let mut t: Vec<_> = ugc_core::hub::tests_support::av_tracks()
        .iter()
        .cloned()
        .collect();
    t[0].config = Bytes::copy_from_slice(avcc);
    t[1].codec = Codec::Opus;
    Tracks::new(t)
}

/// Ops on a viewer's session; see the module documentation.
fn view(mut rest: &[u8], mut now: Instant) {
    let Ok((mut session, _answer)) = WhepSession::new(viewer_offer(), setup(), now) else {
        panic!("a real viewer's offer is taken");
    };
    let us: SocketAddr = "10.0.0.2:8189".parse().expect("address");
    let viewer: SocketAddr = "10.0.0.1:5000".parse().expect("address");
    let stranger: SocketAddr = "10.0.0.9:5000".parse().expect("address");
    let mut ms = 0i64;
    while let [op, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (bytes, next) = tail.split_at(n);
        rest = next;
        let frame = |track: u32, keyframe: bool| {
            MediaEvent::Frame(Frame {
                track: TrackId(track),
                dts: ms,
                pts: ms,
                keyframe,
                data: Bytes::copy_from_slice(bytes),
            })
        };
        let via = if op & 8 == 0 {
            Transport::Udp
        } else {
            Transport::Tcp
        };
        match op & 7 {
            0 => session.handle_datagram(now, via, viewer, us, bytes),
            1 => {
                let _ = session.accepts(now, via, stranger, us, bytes);
                session.handle_datagram(now, via, stranger, us, bytes);
            }
            2 => {
                now += Duration::from_millis(10 * u64::from(*len));
                session.handle_timeout(now);
            }
            3 => session.close_because("closed"),
            4 => session.push(now, &MediaEvent::Tracks(tracks(bytes))),
            5 => session.push(now, &frame(1, len & 1 == 1)),
            6 => session.push(now, &frame(2, true)),
            _ if len & 1 == 0 => session.push(
                now,
                &MediaEvent::Discontinuity(ugc_core::DiscontinuityReason::ReaderSkipped),
            ),
            _ => session.push(now, &MediaEvent::End),
        }
        ms += 33;
        let _ = session.wish_keyframe();
        let failed = session.closed().is_some();
        let mut sent = 0;
        while session.poll_transmit().is_some() {
            sent += 1;
            assert!(sent < 10_000, "a session that never stops sending");
        }
        if failed {
            session.handle_timeout(now + Duration::from_secs(1));
            assert!(session.poll_transmit().is_none(), "sent after it ended");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    contained_panics::install();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut now = Instant::now();
    if mode & 1 == 0 {
        let offer = String::from_utf8_lossy(rest);
        let _ = WhipSession::new(&offer, setup(), now);
        let _ = WhepSession::new(&offer, setup(), now);
        return;
    }
    if mode & 2 != 0 {
        return view(rest, now);
    }
    let Ok((mut session, _answer)) = WhipSession::new(real_offer(), setup(), now) else {
        panic!("a real offer is taken");
    };
    let us: SocketAddr = "10.0.0.2:8189".parse().expect("address");
    let publisher: SocketAddr = "10.0.0.1:5000".parse().expect("address");
    let stranger: SocketAddr = "10.0.0.9:5000".parse().expect("address");
    let mut rest = rest;
    let mut announced = false;
    while let [op, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (bytes, next) = tail.split_at(n);
        rest = next;
        let via = if op & 4 == 0 {
            Transport::Udp
        } else {
            Transport::Tcp
        };
        match op & 3 {
            0 => session.handle_datagram(now, via, publisher, us, bytes),
            1 => {
                let _ = session.accepts(now, via, stranger, us, bytes);
                session.handle_datagram(now, via, stranger, us, bytes);
            }
            2 => {
                now += Duration::from_millis(10 * u64::from(*len));
                session.handle_timeout(now);
            }
            _ => session.close(),
        }
        let failed = session.closed().is_some();
        let mut sent = 0;
        while session.poll_transmit().is_some() {
            sent += 1;
            assert!(sent < 10_000, "a session that never stops sending");
        }
        while let Some(e) = session.poll_event() {
            match e {
                MediaEvent::Tracks(_) => announced = true,
                MediaEvent::Frame(_) => assert!(announced, "a frame before its tracks"),
                _ => {}
            }
        }
        if failed {
            session.handle_timeout(now + Duration::from_secs(1));
            assert!(session.poll_transmit().is_none(), "sent after it ended");
        }
    }
});
