//! One WHEP viewer: a sans-IO WebRTC send session (str0m's `Rtc`, as an
//! ICE-lite server) that plays a Hub stream's H.264 or AV1, and Opus.
//!
//! * [`WhepSession::new`] takes the viewer's SDP offer (receive-only video
//!   and audio, as a browser's `recvonly` transceivers make it) and returns
//!   the answer, sending H.264 (or AV1 when the viewer offers it) and
//!   Opus.
//! * Datagrams and timers as for a publisher ([`WhepSession::accepts`],
//!   [`WhepSession::handle_datagram`], [`WhepSession::handle_timeout`] at
//!   [`WhepSession::poll_timeout`], then [`WhepSession::poll_transmit`]).
//! * The stream's events go to [`WhepSession::push`], read from the Hub.
//!
//! Media:
//! * Nothing is sent before the viewer is connected, and then video starts
//!   at the next keyframe (and again after the reader skipped): a viewer
//!   waits up to a GOP for its first picture rather than start behind.
//!   Audio starts with it.
//! * H.264 frames are length-prefixed in the Hub: they go out in Annex B,
//!   with the track's SPS and PPS before every keyframe (a viewer joining
//!   needs them, and the `avcC` is the only place an RTMP source has them).
//! * AV1 frames (OBUs with their sizes) go out as they are, with the
//!   `av1C`'s sequence header before a keyframe's OBUs when the sample has
//!   none (an RTMP source's may not). A viewer whose offer has no AV1 gets
//!   no video of an AV1 stream.
//!   Other video codecs are not sent (the count says so).
//! * Opus frames go out as they are; AAC is not sent (WebRTC has no AAC):
//!   a stream from RTMP plays without sound unless the source is Opus.
//! * RTP times are the presentation times at 90 kHz and 48 kHz; sender
//!   reports tie both to one wall clock (the first frame sent, at the time
//!   it was sent), so the browser keeps them in sync as the Hub has them.
//! * A keyframe request from the viewer (PLI, FIR) is counted: a stream is
//!   shared by every viewer, and keyframes come at the source's interval.
//!   NACKs are answered from str0m's send buffer (RTX when negotiated).

use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use str0m::format::{Codec as RtcCodec, PayloadParams};
use str0m::media::{Frequency, MediaKind as RtcKind, MediaTime, Mid, Pt};
use str0m::{Event, IceConnectionState};
use ugc_codec::{av1, h264};
use ugc_core::{Codec, Frame, MediaEvent, Timescale, TrackId, Tracks};

use super::peer::{Peer, peer_methods};
use super::session::{OfferError, SessionSetup, answer_media};

/// Counters of one viewer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WhepStats {
    /// Pictures sent.
    pub video_frames: u64,
    /// Audio frames sent.
    pub audio_frames: u64,
    /// Frames not sent: before the viewer connected, while video waits
    /// for a keyframe, of a codec WebRTC does not carry here, or that
    /// str0m refused.
    pub dropped_frames: u64,
    /// Keyframe requests (PLI, FIR) from the viewer.
    pub keyframe_requests: u64,
    /// Datagrams str0m refused or panicked on.
    pub bad_datagrams: u64,
}

/// The video track being sent: its id, clock, and what goes before
/// keyframes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct VideoOut {
    id: TrackId,
    timescale: Timescale,
    codec: VideoCodec,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum VideoCodec {
    /// The Annex B SPS and PPS, the length prefix's size, the profile.
    H264 {
        nal_length_size: u8,
        parameter_sets: Vec<u8>,
        profile_idc: u8,
    },
    /// The `av1C`'s sequence header OBU.
    Av1 { sequence_header: Vec<u8> },
}

#[derive(Debug, Clone, Copy)]
struct AudioOut {
    id: TrackId,
    timescale: Timescale,
}

/// One WHEP viewer's WebRTC session; see the [module documentation](self).
pub struct WhepSession {
    peer: Peer,
    video_mid: Option<Mid>,
    audio_mid: Option<Mid>,
    video: Option<VideoOut>,
    audio: Option<AudioOut>,
    /// Video waits for a keyframe (at the start, after a skip or a change
    /// of tracks).
    want_keyframe: bool,
    /// The wall clock of media time 0 (µs of the Hub's timeline), set by
    /// the first frame sent.
    epoch: Option<(Instant, i64)>,
    annexb: Vec<u8>,
    /// A keyframe was wished for since video began to wait for one.
    wished: bool,
    /// The viewer asked for a keyframe (PLI, FIR: its decoder lost a
    /// picture) and it was not passed on yet.
    asked: bool,
    stats: WhepStats,
}

impl std::fmt::Debug for WhepSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhepSession")
            .field("connected", &self.peer.connected)
            .field("closed", &self.peer.closed())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl WhepSession {
    /// A session for the viewer's SDP `offer`, and its answer.
    pub fn new(
        offer: &str,
        setup: &SessionSetup,
        now: Instant,
    ) -> Result<(WhepSession, String), OfferError> {
        // AV1 too: the viewer decodes what it offered, and an AV1 stream
        // (a WHIP publisher's, Enhanced RTMP's) is sent as it is.
        let (peer, answer) = Peer::answer(offer, setup, true, now)?;
        let (video, audio) = answer_media(&answer, &["a=sendonly", "a=sendrecv"]);
        if !video && !audio {
            return Err(OfferError::NothingToPlay);
        }
        let mut session = WhepSession {
            peer,
            video_mid: None,
            audio_mid: None,
            video: None,
            audio: None,
            want_keyframe: true,
            epoch: None,
            annexb: Vec::new(),
            wished: false,
            asked: false,
            stats: WhepStats::default(),
        };
        session.drive(now);
        Ok((session, answer))
    }

    /// Counters.
    pub fn stats(&self) -> &WhepStats {
        &self.stats
    }

    peer_methods!();

    /// Whether the viewer is connected and needs a keyframe: its video
    /// waits for one not wished for yet (`true` once per wait), or the
    /// viewer asked for one (PLI or FIR: a lost picture broke its decoding;
    /// `true` once per request). The server asks the stream's publisher
    /// for one when it can (a WHIP publisher on this node; the publisher's
    /// session sends at most one PLI a second for all its viewers), so the
    /// picture comes without waiting for the source's next keyframe.
    pub fn wish_keyframe(&mut self) -> bool {
        let ready = self.peer.connected && self.video.is_some();
        let wish = ready && ((self.want_keyframe && !self.wished) || self.asked);
        self.wished |= wish && self.want_keyframe;
        self.asked = false;
        wish
    }

    /// One event of the stream being played.
    pub fn push(&mut self, now: Instant, event: &MediaEvent) {
        if self.peer.closed().is_some() {
            return;
        }
        match event {
            MediaEvent::Tracks(tracks) => self.set_tracks(tracks),
            MediaEvent::Frame(f) if self.send(now, f) => self.drive(now),
            MediaEvent::Frame(_) => {}
            MediaEvent::Discontinuity(_) => {
                // What follows may lack the pictures a P picture refers to.
                self.want_keyframe = true;
            }
            MediaEvent::End => self.peer.close_because("the stream ended"),
            _ => {}
        }
    }

    fn set_tracks(&mut self, tracks: &Tracks) {
        let video = tracks.iter().find_map(|t| {
            let codec = match t.codec {
                Codec::H264 => {
                    let cfg = h264::AvcConfig::parse(&t.config).ok()?;
                    let mut parameter_sets = Vec::new();
                    for ps in cfg.sps.iter().chain(&cfg.pps) {
                        parameter_sets.extend_from_slice(&[0, 0, 0, 1]);
                        parameter_sets.extend_from_slice(ps);
                    }
                    VideoCodec::H264 {
                        nal_length_size: cfg.nal_length_size,
                        parameter_sets,
                        profile_idc: cfg.profile_idc,
                    }
                }
                Codec::Av1 => VideoCodec::Av1 {
                    sequence_header: t.config.get(4..)?.to_vec(),
                },
                _ => return None,
            };
            Some(VideoOut {
                id: t.id,
                timescale: t.timescale,
                codec,
            })
        });
        let changed = self.video != video;
        if changed {
            self.want_keyframe = true;
        }
        self.video = video;
        self.audio = tracks
            .iter()
            .find(|t| t.codec == Codec::Opus)
            .map(|t| AudioOut {
                id: t.id,
                timescale: t.timescale,
            });
    }

    /// Writes one frame into str0m; whether it was.
    fn send(&mut self, now: Instant, f: &Frame) -> bool {
        if !self.peer.connected {
            self.stats.dropped_frames += 1;
            return false;
        }
        let written = if let Some(v) = self.video.as_ref().filter(|v| v.id == f.track) {
            if self.want_keyframe && !f.keyframe {
                self.stats.dropped_frames += 1;
                return false;
            }
            let v = v.clone();
            self.annexb.clear();
            let (codec, profile_idc) = match &v.codec {
                VideoCodec::H264 {
                    nal_length_size,
                    parameter_sets,
                    profile_idc,
                } => {
                    if f.keyframe {
                        self.annexb.extend_from_slice(parameter_sets);
                    }
                    if h264::avcc_to_annexb_into(&f.data, *nal_length_size, &mut self.annexb)
                        .is_err()
                    {
                        self.stats.dropped_frames += 1;
                        return false;
                    }
                    (RtcCodec::H264, Some(*profile_idc))
                }
                VideoCodec::Av1 { sequence_header } => {
                    let has_header = || {
                        av1::obus(&f.data).is_ok_and(|o| {
                            o.iter().any(|o| o.kind == av1::obu_type::SEQUENCE_HEADER)
                        })
                    };
                    if f.keyframe && !has_header() {
                        self.annexb.extend_from_slice(sequence_header);
                    }
                    self.annexb.extend_from_slice(&f.data);
                    (RtcCodec::Av1, None)
                }
            };
            let data = std::mem::take(&mut self.annexb);
            let ok = self.write(now, Some(codec), v.timescale, f.pts, &data, profile_idc);
            self.annexb = data;
            if ok {
                self.want_keyframe = false;
                self.wished = false;
                self.stats.video_frames += 1;
            }
            ok
        } else if let Some(a) = self.audio.filter(|a| a.id == f.track) {
            let ok = self.write(now, None, a.timescale, f.pts, &f.data, None);
            if ok {
                self.stats.audio_frames += 1;
            }
            ok
        } else {
            false
        };
        if !written {
            self.stats.dropped_frames += 1;
        }
        written
    }

    /// Writes `data` at `pts` (in `timescale`) on the video m-line in
    /// `video`'s codec, or with `None` on the audio one.
    fn write(
        &mut self,
        now: Instant,
        video: Option<RtcCodec>,
        timescale: Timescale,
        pts: i64,
        data: &[u8],
        profile_idc: Option<u8>,
    ) -> bool {
        let Some(mid) = (if video.is_some() {
            self.video_mid
        } else {
            self.audio_mid
        }) else {
            return false;
        };
        let micros = ticks(pts, i64::from(timescale.get()), 1_000_000);
        let (epoch, base) = *self.epoch.get_or_insert((now, micros));
        // Checked both ways: a publisher's timestamps are its own, and an
        // Instant out of range would panic the server's media loop.
        let wallclock = match u64::try_from(micros.saturating_sub(base)) {
            Ok(ahead) => epoch
                .checked_add(Duration::from_micros(ahead))
                .unwrap_or(epoch),
            Err(_) => epoch
                .checked_sub(Duration::from_micros(
                    base.saturating_sub(micros).unsigned_abs(),
                ))
                .unwrap_or(epoch),
        };
        let (freq, rate) = if video.is_some() {
            (Frequency::NINETY_KHZ, 90_000)
        } else {
            (Frequency::FORTY_EIGHT_KHZ, 48_000)
        };
        // RTP carries 32 bits of it; str0m takes the low ones.
        let rtp = ticks(pts, i64::from(timescale.get()), rate) as u64;
        let written = catch_unwind(AssertUnwindSafe(|| {
            let Some(w) = self.peer.rtc.writer(mid) else {
                return false;
            };
            let Some(pt) = pick_pt(w.payload_params(), video, profile_idc) else {
                return false;
            };
            w.write(pt, wallclock, MediaTime::new(rtp, freq), data.to_vec())
                .is_ok()
        }));
        match written {
            Ok(ok) => ok,
            Err(_) => {
                self.peer.fail("str0m failed on a frame");
                false
            }
        }
    }

    fn drive(&mut self, now: Instant) {
        for _ in 0..100 {
            let events = self.peer.poll_events(now);
            if events.is_empty() {
                return;
            }
            for e in events {
                self.on_event(e);
            }
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                self.peer.fail("the viewer went away (ICE disconnected)");
            }
            Event::MediaAdded(m) if m.direction.is_sending() => match m.kind {
                RtcKind::Video if self.video_mid.is_none() => self.video_mid = Some(m.mid),
                RtcKind::Audio if self.audio_mid.is_none() => self.audio_mid = Some(m.mid),
                _ => {}
            },
            Event::KeyframeRequest(_) => {
                self.stats.keyframe_requests += 1;
                self.asked = true;
            }
            _ => {}
        }
    }
}

/// `t` at `from` Hz in `to` Hz, saturating.
fn ticks(t: i64, from: i64, to: i64) -> i64 {
    let v = i128::from(t) * i128::from(to) / i128::from(from.max(1));
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}

/// The payload type to send with: Opus (`video` `None`), AV1, or H.264
/// in packetization mode 1 (mode 0 takes one NAL unit per packet, which a
/// picture is not), of the stream's profile when the viewer offered it (a
/// decoder takes any profile in practice; the offer's order decides
/// otherwise).
fn pick_pt<'a>(
    params: impl Iterator<Item = &'a PayloadParams>,
    video: Option<RtcCodec>,
    profile_idc: Option<u8>,
) -> Option<Pt> {
    let mut first = None;
    for p in params {
        let spec = p.spec();
        let Some(codec) = video else {
            if spec.codec == RtcCodec::Opus {
                return Some(p.pt());
            }
            continue;
        };
        if spec.codec != codec {
            continue;
        }
        if codec == RtcCodec::Av1 {
            return Some(p.pt());
        }
        if spec.format.packetization_mode != Some(1) {
            continue;
        }
        let profile = spec.format.profile_level_id.map(|id| (id >> 16) as u8);
        if profile.is_some() && profile == profile_idc {
            return Some(p.pt());
        }
        first.get_or_insert(p.pt());
    }
    first
}
