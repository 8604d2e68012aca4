//! The sans-IO WHEP session against a str0m viewer (receive-only video and
//! audio, as a browser's offer has them), in memory on simulated time:
//! nothing before the viewer connects, video from the next keyframe with
//! the SPS and PPS before it, Annex B as a decoder takes it, RTP times from
//! the presentation times, Opus as it is, the stream's end closing the
//! session, and a viewer's keyframe request passed on once.
#![cfg(feature = "whip")]
#![allow(missing_docs, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use str0m::change::SdpAnswer;
use str0m::format::Codec as RtcCodec;
use str0m::media::{Direction, KeyframeRequestKind, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};
use ugc_codec::opus;
use ugc_core::{Frame, MediaEvent, Timescale, TrackId, Tracks};
use ugc_proto::whip::{SessionSetup, Transport, WhepSession};

fn viewer_addr() -> SocketAddr {
    "10.0.0.1:5000".parse().unwrap()
}

fn server_addr() -> SocketAddr {
    "10.0.0.2:8189".parse().unwrap()
}

/// The Hub's H.264 track (1280x720 High, ms clock: its `avcC` has the SPS
/// and PPS below) and an Opus one (48 kHz).
fn tracks() -> Tracks {
    let video = ugc_core::hub::tests_support::av_tracks()
        .iter()
        .find(|t| t.id == TrackId(1))
        .cloned()
        .unwrap();
    let audio = opus::track(
        TrackId(2),
        Timescale::new(48_000).unwrap(),
        opus::dops(2),
        None,
    );
    Tracks::new(vec![video, audio])
}

/// A length-prefixed picture (what the Hub carries), filler after the NAL
/// header.
fn picture(idr: bool, n: u8) -> Bytes {
    let nal: Vec<u8> = if idr {
        [0x65, 0x88, 0x84, n]
            .into_iter()
            .chain(std::iter::repeat_n(0x5a, 3000))
            .collect()
    } else {
        [0x41, 0x9a, 0x02, n]
            .into_iter()
            .chain(std::iter::repeat_n(0x5b, 400))
            .collect()
    };
    let mut f = (nal.len() as u32).to_be_bytes().to_vec();
    f.extend(nal);
    Bytes::from(f)
}

struct View {
    now: Instant,
    viewer: Rtc,
    session: WhepSession,
    connected: bool,
    /// What the viewer got: video or not, RTP time, payload.
    got: Vec<(bool, u64, Vec<u8>)>,
    /// The viewer's video media, once a picture came.
    video_mid: Option<Mid>,
    /// The codec the pictures came in.
    video_codec: Option<RtcCodec>,
}

impl View {
    fn new() -> View {
        let now = Instant::now();
        let mut viewer = RtcConfig::new()
            .set_crypto_provider(std::sync::Arc::new(str0m::crypto::from_feature_flags()))
            .build(now);
        viewer.add_local_candidate(Candidate::host(viewer_addr(), "udp").unwrap());
        let mut change = viewer.sdp_api();
        change.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
        change.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
        let (offer, pending) = change.apply().unwrap();
        let setup = SessionSetup::new(vec![server_addr()]);
        let (session, answer) = WhepSession::new(&offer.to_sdp_string(), &setup, now).unwrap();
        assert!(answer.contains("a=ice-lite"), "{answer}");
        assert!(answer.contains("a=sendonly"), "{answer}");
        viewer
            .sdp_api()
            .accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap())
            .unwrap();
        View {
            now,
            viewer,
            session,
            connected: false,
            got: Vec::new(),
            video_mid: None,
            video_codec: None,
        }
    }

    /// Steps 10 ms at a time until both ends say connected (2 s at most).
    fn connect(&mut self) {
        for _ in 0..200 {
            if self.connected && self.session.is_connected() {
                return;
            }
            self.now += Duration::from_millis(10);
            self.step();
        }
        panic!("not connected: {:?}", self.session);
    }

    /// Moves datagrams both ways and runs timers at `self.now`.
    fn step(&mut self) {
        for _ in 0..100 {
            let mut moved = false;
            loop {
                match self.viewer.poll_output().unwrap() {
                    Output::Transmit(t) => {
                        self.session.handle_datagram(
                            self.now,
                            Transport::Udp,
                            viewer_addr(),
                            server_addr(),
                            &t.contents,
                        );
                        moved = true;
                    }
                    Output::Event(Event::Connected) => self.connected = true,
                    Output::Event(Event::MediaData(md)) => {
                        let codec = md.params.spec().codec;
                        let video = codec != RtcCodec::Opus;
                        if video {
                            self.video_mid = Some(md.mid);
                            self.video_codec = Some(codec);
                        }
                        self.got.push((video, md.time.numer(), md.data.to_vec()));
                    }
                    Output::Event(_) => {}
                    Output::Timeout(t) => {
                        if t <= self.now {
                            self.viewer.handle_input(Input::Timeout(self.now)).unwrap();
                            continue;
                        }
                        break;
                    }
                }
            }
            if self.session.poll_timeout() <= self.now {
                self.session.handle_timeout(self.now);
            }
            while let Some(p) = self.session.poll_transmit() {
                assert_eq!(
                    (p.transport, p.source, p.destination),
                    (Transport::Udp, server_addr(), viewer_addr())
                );
                let r = Receive::new(Protocol::Udp, p.source, p.destination, &p.data).unwrap();
                self.viewer
                    .handle_input(Input::Receive(self.now, r))
                    .unwrap();
                moved = true;
            }
            if !moved {
                break;
            }
        }
    }

    fn push(&mut self, e: MediaEvent) {
        self.session.push(self.now, &e);
        self.step();
    }
}

fn video(ms: i64, idr: bool) -> MediaEvent {
    MediaEvent::Frame(Frame {
        track: TrackId(1),
        dts: ms,
        pts: ms + 66,
        keyframe: idr,
        data: picture(idr, ms as u8),
    })
}

fn audio(ms: i64) -> MediaEvent {
    MediaEvent::Frame(Frame {
        track: TrackId(2),
        dts: ms * 48,
        pts: ms * 48,
        keyframe: true,
        data: Bytes::from(vec![0xfc, 0xff, 0xfe, ms as u8]),
    })
}

#[test]
fn a_viewer_gets_video_from_a_keyframe_with_its_parameter_sets_and_opus() {
    let mut view = View::new();
    // Before the viewer connects (no datagram has moved yet): nothing
    // goes out.
    let now = view.now;
    view.session.push(now, &MediaEvent::Tracks(tracks()));
    view.session.push(now, &video(0, true));
    assert_eq!(view.session.stats().dropped_frames, 1);
    view.connect();
    // Connected in the middle of a GOP: its pictures wait for the next
    // keyframe; audio goes at once.
    let mut ms = 1000;
    while ms < 3000 {
        if ms % 20 == 0 {
            view.push(audio(ms));
        }
        if ms % 40 == 0 {
            view.push(video(ms, ms == 2000));
        }
        ms += 10;
        view.now += Duration::from_millis(10);
        view.step();
    }
    view.push(MediaEvent::End);
    assert_eq!(view.session.closed(), Some("the stream ended"));

    let stats = view.session.stats().clone();
    let pictures: Vec<_> = view.got.iter().filter(|g| g.0).collect();
    let sounds: Vec<_> = view.got.iter().filter(|g| !g.0).collect();
    // Pictures 2000..2960 every 40 ms: 25, the first a keyframe.
    assert_eq!(pictures.len(), 25, "{stats:?}");
    assert_eq!(stats.video_frames, 25);
    // The one before the connection and those 1000..1960 were not sent.
    assert_eq!(stats.dropped_frames, 1 + 25, "{stats:?}");
    let avcc = ugc_codec::h264::AvcConfig::parse(&tracks().iter().next().unwrap().config).unwrap();
    let mut parameter_sets = Vec::new();
    for ps in [&avcc.sps[0], &avcc.pps[0]] {
        parameter_sets.extend_from_slice(&[0, 0, 0, 1]);
        parameter_sets.extend_from_slice(ps);
    }
    // Annex B: the avcC's SPS and PPS, then the IDR slice.
    let first = &pictures[0].2;
    assert!(first.starts_with(&parameter_sets), "{:x?}", &first[..8]);
    assert_eq!(&first[parameter_sets.len()..][..5], &[0, 0, 0, 1, 0x65]);
    assert_eq!(first.len(), parameter_sets.len() + 4 + 3004);
    // A P picture: its slice alone.
    assert_eq!(&pictures[1].2[..5], &[0, 0, 0, 1, 0x41]);
    // RTP times: presentation times at 90 kHz, 40 ms apart.
    for w in pictures.windows(2) {
        assert_eq!(w[1].1 - w[0].1, 3600);
    }
    assert_eq!(pictures[0].1, (2000 + 66) * 90);
    // Opus from 1000 ms on, every 20 ms, as it was.
    assert_eq!(sounds.len(), 100, "{stats:?}");
    assert_eq!(sounds[0].1, 1000 * 48);
    assert_eq!(sounds[3].2, vec![0xfc, 0xff, 0xfe, 1060u32 as u8]);
    for w in sounds.windows(2) {
        assert_eq!(w[1].1 - w[0].1, 960);
    }
}

/// The sequence header OBU of a libaom 320x240 stream, with its size.
const AV1_SEQUENCE: [u8; 13] = [
    0x0a, 0x0b, 0x00, 0x00, 0x00, 0x04, 0x3c, 0xff, 0xbc, 0xda, 0xf9, 0x00, 0x40,
];

/// An AV1 stream (#18) goes out as AV1 to a viewer that offered it, its
/// OBUs as they are, with the `av1C`'s sequence header before a keyframe
/// whose sample has none (an RTMP source's) and not twice before one that
/// has it (a WHIP publisher's).
#[test]
fn an_av1_stream_goes_out_as_av1_with_its_sequence_header_before_keyframes() {
    let mut view = View::new();
    let mut av1c = vec![0x81, 0x00, 0x0c, 0x00];
    av1c.extend_from_slice(&AV1_SEQUENCE);
    let video = ugc_core::TrackInfo {
        id: TrackId(1),
        codec: ugc_core::Codec::Av1,
        timescale: Timescale::MILLIS,
        config: Bytes::from(av1c),
        codec_string: "av01.0.00M.08".into(),
        params: ugc_core::TrackParams::Video(ugc_core::VideoParams {
            width: 320,
            height: 240,
            frame_rate: None,
        }),
        bitrate: None,
    };
    view.push(MediaEvent::Tracks(Tracks::new(vec![video])));
    view.connect();
    let frame_obu = |n: u8, len: usize| {
        let mut o = vec![0x32, 0x80 | (len & 0x7f) as u8, (len >> 7) as u8, n];
        o.extend(std::iter::repeat_n(0x5a, len - 1));
        o
    };
    let mut with_header = AV1_SEQUENCE.to_vec();
    with_header.extend(frame_obu(3, 2000));
    let samples = [
        (false, frame_obu(0, 300)),
        (true, frame_obu(1, 2000)),
        (false, frame_obu(2, 300)),
        (true, with_header),
    ];
    for (i, (key, data)) in samples.iter().enumerate() {
        let ms = 40 * i as i64;
        view.push(MediaEvent::Frame(Frame {
            track: TrackId(1),
            dts: ms,
            pts: ms,
            keyframe: *key,
            data: Bytes::from(data.clone()),
        }));
        view.now += Duration::from_millis(40);
        view.step();
    }
    view.now += Duration::from_millis(100);
    view.step();
    assert_eq!(view.video_codec, Some(RtcCodec::Av1));
    let pictures: Vec<_> = view.got.iter().filter(|g| g.0).collect();
    // The first waits for a keyframe; then three.
    assert_eq!(pictures.len(), 3, "{:?}", view.session.stats());
    let mut first = AV1_SEQUENCE.to_vec();
    first.extend(frame_obu(1, 2000));
    assert_eq!(pictures[0].2, first);
    assert_eq!(pictures[1].2, frame_obu(2, 300));
    assert_eq!(pictures[2].2, samples[3].1, "the header once");
    assert_eq!(pictures[1].1 - pictures[0].1, 3600);
}

/// A viewer that lost a picture asks for a keyframe (PLI): the session
/// wishes for one once per request (the server passes it to a WHIP
/// publisher of the stream, whose session sends at most one PLI a
/// second), and not otherwise once video flows.
#[test]
fn a_viewers_keyframe_request_is_wished_for_once() {
    let mut view = View::new();
    view.push(MediaEvent::Tracks(tracks()));
    view.connect();
    // Waiting for the first keyframe: one wish for the whole wait.
    assert!(view.session.wish_keyframe());
    assert!(!view.session.wish_keyframe());
    let mut ms = 0;
    while ms < 400 {
        view.push(video(ms, ms == 0));
        ms += 40;
        view.now += Duration::from_millis(40);
        view.step();
    }
    assert!(!view.session.wish_keyframe(), "video flows, nobody asked");
    let mid = view.video_mid.expect("pictures came");
    view.viewer
        .writer(mid)
        .unwrap()
        .request_keyframe(None, KeyframeRequestKind::Pli)
        .unwrap();
    for _ in 0..100 {
        if view.session.stats().keyframe_requests > 0 {
            break;
        }
        view.now += Duration::from_millis(10);
        view.step();
    }
    assert_eq!(view.session.stats().keyframe_requests, 1);
    assert!(view.session.wish_keyframe(), "the request is passed on");
    assert!(!view.session.wish_keyframe(), "once per request");
}

/// An offer that receives nothing we send is refused.
#[test]
fn an_offer_that_receives_nothing_is_refused() {
    let now = Instant::now();
    let mut viewer = RtcConfig::new().build(now);
    let mut change = viewer.sdp_api();
    change.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
    let (offer, _) = change.apply().unwrap();
    let setup = SessionSetup::new(vec![server_addr()]);
    let e = WhepSession::new(&offer.to_sdp_string(), &setup, now).unwrap_err();
    assert!(e.to_string().contains("receives neither"), "{e}");
}

/// Timestamps are the publisher's: pictures a few hundred thousand years
/// after the last one, or before it, are sent (str0m takes the RTP times
/// and the sender-report clock) and the session goes on. (The wall clock
/// is added with `checked_add`: where an `Instant` spans less than that,
/// as on macOS, it would otherwise panic the server's media loop.)
#[test]
fn wild_timestamps_do_not_panic() {
    let mut view = View::new();
    view.push(MediaEvent::Tracks(tracks()));
    for _ in 0..200 {
        if view.connected && view.session.is_connected() {
            break;
        }
        view.now += Duration::from_millis(10);
        view.step();
    }
    assert!(view.session.is_connected());
    for ms in [0, i64::MAX / 4, i64::MIN / 4, 40] {
        view.push(video(ms, true));
        view.push(audio(ms.clamp(-1_000_000_000, 1_000_000_000)));
        view.now += Duration::from_millis(40);
        view.step();
    }
    assert!(view.session.closed().is_none(), "{:?}", view.session);
    assert!(
        view.session.stats().video_frames >= 3,
        "{:?}",
        view.session.stats()
    );
}
