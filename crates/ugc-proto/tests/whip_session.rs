//! The sans-IO WHIP session against a str0m publisher (a WebRTC peer as a
//! browser is one: ICE, DTLS-SRTP, RTP), in memory on simulated time: the
//! offer/answer, ICE-lite with the publisher learned from its checks, the
//! first pictures refused until an IDR picture with a keyframe request
//! (PLI) sent meanwhile, then the stream's tracks (H.264 with the avcC from
//! the in-band SPS/PPS, Opus) and frames on one timeline.
#![cfg(feature = "whip")]
#![allow(missing_docs, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::change::SdpAnswer;
use str0m::format::Codec as RtcCodec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive, TcpType};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};
use ugc_core::{Codec, MediaEvent, TrackId};
use ugc_proto::whip::{SessionSetup, Transport, WhipSession};

fn publisher_addr() -> SocketAddr {
    "10.0.0.1:5000".parse().unwrap()
}

fn server_addr() -> SocketAddr {
    "10.0.0.2:8189".parse().unwrap()
}

/// The SPS and PPS of an x264 1280x720 High@3.1 stream (those of
/// `ugc_core::hub::tests_support::av_tracks`).
const SPS: &[u8] = &[
    0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00,
    0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x83, 0x19, 0x60,
];
const PPS: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];

/// An access unit in Annex B: SPS, PPS and an IDR slice, or a non-IDR
/// slice (the slice bytes are filler: nothing here decodes them).
fn access_unit(idr: bool, n: u8) -> Vec<u8> {
    let mut au = Vec::new();
    if idr {
        for ps in [SPS, PPS] {
            au.extend_from_slice(&[0, 0, 0, 1]);
            au.extend_from_slice(ps);
        }
        au.extend_from_slice(&[0, 0, 0, 1, 0x65, 0x88, 0x84, n]);
        au.extend(std::iter::repeat_n(0x5a, 3000));
    } else {
        au.extend_from_slice(&[0, 0, 0, 1, 0x41, 0x9a, 0x02, n]);
        au.extend(std::iter::repeat_n(0x5b, 400));
    }
    au
}

struct Call {
    now: Instant,
    start: Instant,
    publisher: Rtc,
    session: WhipSession,
    video: Mid,
    audio: Mid,
    connected: bool,
    plis_seen: usize,
    events: Vec<MediaEvent>,
    /// Drop every `lose_every`th video datagram of the publisher's once
    /// connected (0: none).
    lose_every: usize,
    sent: usize,
    h264_pt: u8,
    /// UDP, or ICE-TCP (the publisher connecting to our passive candidate;
    /// in memory, a connection is its two addresses).
    transport: Transport,
    /// The codec the publisher's video is written in.
    video_codec: RtcCodec,
}

impl Call {
    fn new() -> Call {
        Call::with(SessionSetup::new(vec![server_addr()]))
    }

    fn with(setup: SessionSetup) -> Call {
        Call::over(setup, Transport::Udp)
    }

    /// A publisher reaching the server over ICE-TCP only (no UDP on
    /// either side): its active candidate, our passive one.
    fn over_tcp() -> Call {
        let mut setup = SessionSetup::new(Vec::new());
        setup.tcp_candidates = vec![server_addr()];
        Call::over(setup, Transport::Tcp)
    }

    fn over(setup: SessionSetup, transport: Transport) -> Call {
        let now = Instant::now();
        let mut publisher = RtcConfig::new()
            .set_crypto_provider(std::sync::Arc::new(str0m::crypto::from_feature_flags()))
            .build(now);
        let candidate = match transport {
            Transport::Udp => Candidate::host(publisher_addr(), "udp").unwrap(),
            Transport::Tcp => Candidate::builder()
                .tcp()
                .host(publisher_addr())
                .tcptype(TcpType::Active)
                .build()
                .unwrap(),
        };
        publisher.add_local_candidate(candidate);
        let mut change = publisher.sdp_api();
        let video = change.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
        let audio = change.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        let (offer, pending) = change.apply().unwrap();
        let (session, answer) = WhipSession::new(&offer.to_sdp_string(), &setup, now).unwrap();
        assert!(answer.contains("a=ice-lite"), "{answer}");
        assert!(
            answer.contains("H264") && answer.contains("opus"),
            "{answer}"
        );
        assert!(!answer.contains("VP8"), "{answer}");
        if transport == Transport::Tcp {
            assert!(
                answer.contains(" tcp ") && answer.contains("tcptype passive"),
                "{answer}"
            );
            assert!(!answer.contains(" udp "), "{answer}");
        }
        publisher
            .sdp_api()
            .accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap())
            .unwrap();
        Call {
            now,
            start: now,
            publisher,
            session,
            video,
            audio,
            connected: false,
            plis_seen: 0,
            events: Vec::new(),
            lose_every: 0,
            sent: 0,
            h264_pt: 0,
            transport,
            video_codec: RtcCodec::H264,
        }
    }

    /// Moves datagrams both ways and runs timers at `self.now`.
    fn step(&mut self) {
        for _ in 0..100 {
            let mut moved = false;
            loop {
                match self.publisher.poll_output().unwrap() {
                    Output::Transmit(t) => {
                        assert_eq!(t.destination, server_addr());
                        // Losses hit the video's first sendings (RTP
                        // headers are in the clear under SRTP: the payload
                        // type says H.264, not its RTX resends nor Opus,
                        // which is not resent).
                        let video = t.contents.len() > 12
                            && t.contents[0] >> 6 == 2
                            && t.contents[1] & 0x7f == self.h264_pt;
                        self.sent += usize::from(video);
                        let lost = self.connected
                            && video
                            && self.lose_every > 0
                            && self.sent.is_multiple_of(self.lose_every);
                        if !lost {
                            self.session.handle_datagram(
                                self.now,
                                self.transport,
                                publisher_addr(),
                                server_addr(),
                                &t.contents,
                            );
                        }
                        moved = true;
                    }
                    Output::Event(Event::Connected) => self.connected = true,
                    Output::Event(Event::KeyframeRequest(_)) => self.plis_seen += 1,
                    Output::Event(_) => {}
                    Output::Timeout(t) => {
                        if t <= self.now {
                            self.publisher
                                .handle_input(Input::Timeout(self.now))
                                .unwrap();
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
                    (self.transport, server_addr(), publisher_addr())
                );
                let proto = match p.transport {
                    Transport::Udp => Protocol::Udp,
                    Transport::Tcp => Protocol::Tcp,
                };
                let r = Receive::new(proto, server_addr(), publisher_addr(), &p.data).unwrap();
                self.publisher
                    .handle_input(Input::Receive(self.now, r))
                    .unwrap();
                moved = true;
            }
            while let Some(e) = self.session.poll_event() {
                self.events.push(e);
            }
            if !moved {
                break;
            }
        }
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.step();
    }

    fn write(&mut self, video: bool, rtp: u64, data: Vec<u8>) {
        self.write_captured(video, self.now, rtp, data);
    }

    /// Sends a frame captured at `wallclock` (the time the publisher's
    /// sender reports tie its RTP clock to).
    fn write_captured(&mut self, video: bool, wallclock: Instant, rtp: u64, data: Vec<u8>) {
        let (mid, codec, freq) = if video {
            (self.video, self.video_codec, Frequency::NINETY_KHZ)
        } else {
            (self.audio, RtcCodec::Opus, Frequency::FORTY_EIGHT_KHZ)
        };
        let w = self.publisher.writer(mid).unwrap();
        let pt = w
            .payload_params()
            .find(|p| p.spec().codec == codec)
            .map(|p| p.pt())
            .unwrap();
        w.write(pt, wallclock, MediaTime::new(rtp, freq), data)
            .unwrap();
    }
}

#[test]
fn a_publisher_connects_and_its_media_starts_at_an_idr_picture() {
    publish(0);
}

/// The same publisher over ICE-TCP (RFC 6544): a network that lets no UDP
/// through. The answer offers our passive TCP candidate; ICE, DTLS and the
/// media go over the connection, NACK and PLI included.
#[test]
fn a_publisher_over_ice_tcp_connects_and_its_media_arrives() {
    let stats = publish_on(Call::over_tcp(), 10);
    assert_eq!(stats.discontinuities, 0, "{stats:?}");
}

/// One video datagram in 10 lost: NACKs bring the lost packets again, so
/// every picture arrives whole and no keyframe beyond the stream's own is
/// needed (with NACK off this sees a discontinuity and missing pictures).
#[test]
fn lost_packets_are_asked_for_again() {
    let stats = publish(10);
    assert_eq!(stats.discontinuities, 0, "{stats:?}");
}

/// Publishes 3 s (an IDR picture at 1 s and 3 s in) losing every
/// `lose_every`th video datagram, checks what came out, returns the
/// counters.
fn publish(lose_every: usize) -> ugc_proto::whip::WhipStats {
    publish_on(Call::new(), lose_every)
}

fn publish_on(mut call: Call, lose_every: usize) -> ugc_proto::whip::WhipStats {
    call.lose_every = lose_every;
    let video = call.video;
    call.h264_pt = *call
        .publisher
        .writer(video)
        .unwrap()
        .payload_params()
        .find(|p| p.spec().codec == RtcCodec::H264)
        .map(|p| p.pt())
        .unwrap();
    for _ in 0..200 {
        if call.connected && call.session.is_connected() {
            break;
        }
        call.advance(Duration::from_millis(10));
    }
    assert!(
        call.connected && call.session.is_connected(),
        "{:?}",
        call.session
    );
    let connected_at = call.now;

    // 3 s: 30 fps video (an IDR picture only after 1 s: the first pictures
    // are refused and a keyframe asked for), 50 fps Opus.
    let (mut v, mut a) = (0u32, 0u32);
    let mut video_rtp = 7_000_000u64;
    let mut audio_rtp = 1_000_000u64;
    let end = call.now + Duration::from_secs(3);
    while call.now < end {
        let t = call.now.duration_since(connected_at).as_millis() as u32;
        if t >= v * 33 {
            let idr = v == 30 || v == 90;
            call.write(true, video_rtp, access_unit(idr, v as u8));
            video_rtp += 3000;
            v += 1;
        }
        if t >= a * 20 {
            call.write(false, audio_rtp, vec![0xfc, 0xff, 0xfe, a as u8]);
            audio_rtp += 960;
            a += 1;
        }
        call.advance(Duration::from_millis(1));
    }
    call.advance(Duration::from_millis(200));

    let stats = call.session.stats().clone();
    assert!(stats.keyframe_requests >= 1, "{stats:?}");
    assert!(call.plis_seen >= 1, "the publisher got the PLI");
    // Tracks first: H.264 from the in-band SPS, Opus.
    let MediaEvent::Tracks(tracks) = &call.events[0] else {
        panic!("{:?}", call.events[0]);
    };
    let t: Vec<_> = tracks.iter().collect();
    assert_eq!(t.len(), 2);
    assert_eq!((t[0].codec, t[0].id), (Codec::H264, TrackId(1)));
    let vp = t[0].video().unwrap();
    assert_eq!((vp.width, vp.height), (1280, 720));
    assert_eq!(t[0].codec_string, "avc1.64001f");
    assert_eq!((t[1].codec, t[1].timescale.get()), (Codec::Opus, 48_000));
    // Then the first IDR picture: nothing before it.
    let frames: Vec<_> = call
        .events
        .iter()
        .filter_map(|e| match e {
            MediaEvent::Frame(f) => Some(f.clone()),
            _ => None,
        })
        .collect();
    assert!(
        frames[0].track == TrackId(1) && frames[0].keyframe,
        "{:?}",
        frames[0]
    );
    let video: Vec<_> = frames.iter().filter(|f| f.track == TrackId(1)).collect();
    let audio: Vec<_> = frames.iter().filter(|f| f.track == TrackId(2)).collect();
    // Pictures 30..90 and on: about 60 of them, one more IDR at 90.
    assert!(video.len() >= 55, "{} pictures", video.len());
    assert_eq!(video.iter().filter(|f| f.keyframe).count(), 2);
    assert!(stats.dropped_frames >= 29, "{stats:?}");
    // Video frames are length-prefixed, without parameter sets; 3000 ticks
    // apart at 90 kHz.
    // (The IDR NAL: 4 header bytes and 3000 of filler.)
    assert_eq!(&video[0].data[..5], &[0, 0, 0x0b, 0xbc, 0x65]);
    assert_eq!(video[0].data.len(), 4 + 3004);
    for w in video.windows(2) {
        assert_eq!(w[1].dts - w[0].dts, 3000);
    }
    for w in audio.windows(2) {
        assert_eq!(w[1].dts - w[0].dts, 960);
    }
    // One timeline: the first audio frame after the IDR picture is within
    // 40 ms of it (both were sent within a frame of each other).
    let v0 = video[0].dts as f64 / 90_000.0;
    let a0 = audio[0].dts as f64 / 48_000.0;
    assert!((a0 - v0).abs() < 0.04, "video at {v0} s, audio at {a0} s");
    assert!(
        v0 > 0.9 && v0 < 3.0,
        "on the session's clock: {v0} s after {:?}",
        call.start
    );
    stats
}

/// A browser sends a keyframe only when asked; HLS needs one per segment:
/// with `keyframe_interval` 1 s, a publisher that sends its IDR picture
/// only when asked (at once: the quickest encoder) is asked about once a
/// second, never so early that the keyframe comes before the packager cuts
/// (50 ms short of the target). An IDR picture of its own in between (a
/// loss's) does not move the schedule.
#[test]
fn keyframes_are_asked_for_every_interval() {
    let mut setup = SessionSetup::new(vec![server_addr()]);
    setup.keyframe_interval = Some(Duration::from_secs(1));
    let mut call = Call::with(setup);
    for _ in 0..200 {
        if call.connected && call.session.is_connected() {
            break;
        }
        call.advance(Duration::from_millis(10));
    }
    // 5 s at 30 fps: an IDR picture only in answer to a PLI.
    let (mut rtp, mut n, mut pli_seen) = (0u64, 0u32, 0usize);
    let (mut idrs, mut own, mut first_idr) = (0, None, None);
    let start = call.now;
    while call.now < start + Duration::from_secs(5) {
        let t = call.now.duration_since(start).as_millis() as u32;
        if t >= n * 33 {
            let mut idr = call.plis_seen > pli_seen;
            if n == 80 {
                own = Some(rtp as i64);
                idr = true;
            }
            pli_seen = call.plis_seen;
            idrs += u32::from(idr);
            if idr && first_idr.is_none() {
                first_idr = Some(rtp as i64);
            }
            call.write(true, rtp, access_unit(idr, n as u8));
            rtp += 3000;
            n += 1;
        }
        call.advance(Duration::from_millis(1));
    }
    let keys: Vec<i64> = call
        .events
        .iter()
        .filter_map(|e| match e {
            MediaEvent::Frame(f) if f.keyframe => Some(f.dts),
            _ => None,
        })
        .collect();
    // The session's timeline starts at the first IDR picture (frames
    // before it are dropped); the publisher's own is 80 frames in.
    let own = keys[0] + own.unwrap() - first_idr.unwrap();
    assert!(keys.contains(&own), "{own} in {keys:?}");
    let asked: Vec<i64> = keys.iter().copied().filter(|&k| k != own).collect();
    // The first at once (the start's PLI), then one about every second.
    assert!((5..=6).contains(&asked.len()), "{keys:?} ({idrs} IDR sent)");
    for w in asked.windows(2) {
        let gap = (w[1] - w[0]) as f64 / 90_000.0;
        assert!(
            (0.95..=1.1).contains(&gap),
            "{gap} s between keyframes: {keys:?}"
        );
    }
}

/// Lip sync: a publisher whose video (or audio) leaves 120 ms after its
/// capture, the other track at once. Laid by arrival, the tracks are
/// 120 ms apart; the publisher's sender reports tie both RTP clocks to its
/// wall clock, and the audio is moved onto the video (forward: a gap; back:
/// the overlapped audio dropped), never out of order.
#[test]
fn sender_reports_put_audio_in_sync_with_video() {
    for (video_delay, audio_delay) in [(120, 0), (0, 120)] {
        let (offset, stats) = publish_delayed(video_delay, audio_delay);
        assert!(
            offset.abs() < 0.003,
            "video {video_delay} ms, audio {audio_delay} ms late: audio {offset} s off; {stats:?}"
        );
        assert!((1..=2).contains(&stats.av_sync_steps), "{stats:?}");
    }
}

/// Publishes 6 s of 30 fps video (an IDR picture a second) and 50 fps
/// Opus, each track sent its delay (ms) after capture; returns how far the
/// audio ends up from the video on the session's timeline (s, positive:
/// later than its capture says) and the stats.
fn publish_delayed(video_delay: u64, audio_delay: u64) -> (f64, ugc_proto::whip::WhipStats) {
    let mut call = Call::new();
    for _ in 0..200 {
        if call.connected && call.session.is_connected() {
            break;
        }
        call.advance(Duration::from_millis(10));
    }
    let origin = call.now;
    let (video_rtp0, audio_rtp0) = (3_000_000u64, 500_000u64);
    // (sent at, video, captured at, rtp, bytes)
    let mut queue: Vec<(Instant, bool, Instant, u64, Vec<u8>)> = Vec::new();
    let (mut v, mut a) = (0u64, 0u64);
    let mut last_captured = [origin, origin];
    while call.now < origin + Duration::from_secs(6) {
        let t = call.now.duration_since(origin).as_millis() as u64;
        if t >= v * 33 {
            let at = origin + Duration::from_millis(v * 33);
            let au = access_unit(v.is_multiple_of(30), v as u8);
            let sent = at + Duration::from_millis(video_delay);
            queue.push((sent, true, at, video_rtp0 + v * 33 * 90, au));
            v += 1;
        }
        if t >= a * 20 {
            let at = origin + Duration::from_millis(a * 20);
            let sent = at + Duration::from_millis(audio_delay);
            let frame = vec![0xfc, 0xff, 0xfe, a as u8];
            queue.push((sent, false, at, audio_rtp0 + a * 960, frame));
            a += 1;
        }
        let now = call.now;
        for (_, video, at, rtp, data) in queue.extract_if(.., |q| q.0 <= now) {
            last_captured[usize::from(video)] = at;
            call.write_captured(video, at, rtp, data);
        }
        call.advance(Duration::from_millis(1));
    }
    call.advance(Duration::from_millis(200));
    let last = |track: u32| {
        call.events
            .iter()
            .rev()
            .find_map(|e| match e {
                MediaEvent::Frame(f) if f.track == TrackId(track) => Some(f.dts),
                _ => None,
            })
            .unwrap()
    };
    let audio: Vec<i64> = call
        .events
        .iter()
        .filter_map(|e| match e {
            MediaEvent::Frame(f) if f.track == TrackId(2) => Some(f.dts),
            _ => None,
        })
        .collect();
    assert!(audio.windows(2).all(|w| w[1] > w[0]), "{audio:?}");
    // Where each track puts its last capture, against the capture times.
    let since = |at: Instant| at.duration_since(origin).as_secs_f64();
    let video_at = last(1) as f64 / 90_000.0 - since(last_captured[1]);
    let audio_at = last(2) as f64 / 48_000.0 - since(last_captured[0]);
    (audio_at - video_at, call.session.stats().clone())
}

/// The sequence header OBU of a libaom 320x240 stream (Main, level 2.0,
/// 8 bit 4:2:0), with its size field.
const AV1_SEQUENCE: [u8; 13] = [
    0x0a, 0x0b, 0x00, 0x00, 0x00, 0x04, 0x3c, 0xff, 0xbc, 0xda, 0xf9, 0x00, 0x40,
];

/// An AV1 temporal unit as an encoder writes it: a temporal delimiter,
/// with a keyframe the sequence header, and one frame OBU (filler: nothing
/// here decodes it), long enough to take several packets.
fn temporal_unit(key: bool, n: u8) -> Vec<u8> {
    let mut tu = vec![0x12, 0x00];
    if key {
        tu.extend_from_slice(&AV1_SEQUENCE);
    }
    let len: usize = if key { 3000 } else { 400 };
    tu.push(0x32); // OBU_FRAME with a size field
    tu.extend_from_slice(&[0x80 | (len & 0x7f) as u8, (len >> 7) as u8]);
    tu.push(n);
    tu.extend(std::iter::repeat_n(0x5a, len - 1));
    tu
}

/// AV1 from a publisher when the setup takes it (#18: "HEVC/AV1 when
/// offered and configured"): the answer receives AV1; nothing goes out
/// before a keyframe (one is asked for); the track is AV1 with the `av1C`
/// of the in-band sequence header, its codec string and size; samples are
/// the temporal units less their delimiters, the sequence header kept in
/// the keyframe's. Without the setting the answer has no AV1.
#[test]
fn an_av1_publisher_is_taken_when_the_setup_says_so() {
    let now = Instant::now();
    let offer = {
        let mut p = RtcConfig::new()
            .set_crypto_provider(std::sync::Arc::new(str0m::crypto::from_feature_flags()))
            .build(now);
        let mut change = p.sdp_api();
        change.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
        change.apply().unwrap().0.to_sdp_string()
    };
    assert!(offer.contains("AV1/90000"), "{offer}");
    let (_, answer) =
        WhipSession::new(&offer, &SessionSetup::new(vec![server_addr()]), now).unwrap();
    assert!(!answer.contains("AV1"), "{answer}");

    let mut setup = SessionSetup::new(vec![server_addr()]);
    setup.av1 = true;
    let mut call = Call::with(setup);
    call.video_codec = RtcCodec::Av1;
    for _ in 0..200 {
        if call.connected && call.session.is_connected() {
            break;
        }
        call.advance(Duration::from_millis(10));
    }
    assert!(call.connected && call.session.is_connected());
    // 2 s at 30 fps, a keyframe at 0.5 s and 1.5 s in.
    let mut rtp = 1_000_000u64;
    for v in 0..60u32 {
        let key = v == 15 || v == 45;
        call.write(true, rtp, temporal_unit(key, v as u8));
        rtp += 3000;
        call.advance(Duration::from_millis(33));
    }
    call.advance(Duration::from_millis(200));
    let stats = call.session.stats().clone();
    assert!(stats.keyframe_requests >= 1, "{stats:?}");
    let MediaEvent::Tracks(tracks) = &call.events[0] else {
        panic!("{:?}", call.events[0]);
    };
    let t = tracks.iter().next().unwrap();
    assert_eq!((t.codec, t.id), (Codec::Av1, TrackId(1)));
    assert_eq!(t.codec_string, "av01.0.00M.08");
    assert_eq!(&t.config[..4], &[0x81, 0x00, 0x0c, 0x00]);
    assert_eq!(&t.config[4..], &AV1_SEQUENCE);
    let vp = t.video().unwrap();
    assert_eq!((vp.width, vp.height), (320, 240));
    let video: Vec<_> = call
        .events
        .iter()
        .filter_map(|e| match e {
            MediaEvent::Frame(f) if f.track == TrackId(1) => Some(f.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(video.len(), 45, "pictures 15..60");
    assert!(video[0].keyframe && video[30].keyframe);
    assert_eq!(video.iter().filter(|f| f.keyframe).count(), 2);
    // The keyframe's sample: the sequence header, then the frame; no
    // temporal delimiter anywhere.
    assert_eq!(&video[0].data[..AV1_SEQUENCE.len()], &AV1_SEQUENCE);
    assert_eq!(video[0].data.len(), AV1_SEQUENCE.len() + 3 + 3000);
    assert_eq!(video[1].data[0], 0x32);
    assert_eq!(video[1].data.len(), 3 + 400);
    for w in video.windows(2) {
        assert_eq!(w[1].dts - w[0].dts, 3000);
    }
    assert_eq!(stats.discontinuities, 0, "{stats:?}");
}

#[test]
fn offers_it_cannot_take_are_errors() {
    let setup = SessionSetup::new(vec![server_addr()]);
    let now = Instant::now();
    assert!(WhipSession::new("hello", &setup, now).is_err());
    assert!(WhipSession::new("", &setup, now).is_err());
    let huge = "a".repeat(100_000);
    assert!(WhipSession::new(&huge, &setup, now).is_err());
    // A receive-only offer (a player's) has nothing to publish.
    let mut player = RtcConfig::new()
        .set_crypto_provider(std::sync::Arc::new(str0m::crypto::from_feature_flags()))
        .build(now);
    let mut change = player.sdp_api();
    change.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    let (offer, _) = change.apply().unwrap();
    let e = WhipSession::new(&offer.to_sdp_string(), &setup, now).unwrap_err();
    assert!(e.to_string().contains("neither"), "{e}");
}
