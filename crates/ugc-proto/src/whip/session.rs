//! One WHIP publisher: a sans-IO WebRTC receive session (str0m's `Rtc`, as
//! an ICE-lite server) whose depacketized media becomes the Hub's media
//! events.
//!
//! * [`WhipSession::new`] takes the publisher's SDP offer (H.264 video,
//!   AV1 too when [`SessionSetup::av1`] says so, and Opus audio are
//!   accepted; other codecs are declined in the answer) and returns the
//!   answer with our host candidates.
//! * Datagrams for it go to [`WhipSession::handle_datagram`] (the server
//!   finds the session with [`WhipSession::accepts`]); timers to
//!   [`WhipSession::handle_timeout`] at [`WhipSession::poll_timeout`].
//! * After either, send [`WhipSession::poll_transmit`] and take
//!   [`WhipSession::poll_event`]: the stream's `Tracks` (again when the
//!   publisher changes resolution: its SPS changes) and frames.
//!
//! Media:
//! * H.264 arrives in Annex B (str0m's depacketizer); parameter sets are
//!   taken out into the `avcC` and the rest of the access unit becomes one
//!   length-prefixed frame. Nothing goes out before the first IDR picture
//!   with its SPS and PPS: until then a keyframe is asked for (PLI, at most
//!   once a second), as it is after a hole in the RTP sequence.
//! * AV1 arrives as OBUs with their sizes (str0m's depacketizer); the
//!   sequence header makes the `av1C` (a new one, a new track set) and stays
//!   in its keyframe's sample, temporal delimiters are left out (AV1-ISOBMFF
//!   2.4). A keyframe is a packet that starts a coded video sequence (the
//!   RTP aggregation header's N bit) once a sequence header is known.
//! * Opus frames go out as they are (48 kHz clock, `dOps` for stereo).
//! * Timestamps: each track's RTP clock from its first packet, laid on the
//!   session's clock (arrival of that first packet), so audio and video
//!   share one timeline; video at 90 kHz, audio at 48 kHz. Arrival carries
//!   each track's own encoder and pacing delay, so once the publisher's
//!   RTCP sender reports have tied both RTP clocks to its wall clock, the
//!   audio is moved to where that clock puts it against the video (lip
//!   sync; video, which segments are cut on, never moves). A publisher that
//!   sends no reports keeps the arrival timeline.
//!
//! Every call into str0m runs under `catch_unwind`: a publisher whose
//! packets trip it loses its own session, nothing else.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use str0m::crypto::CryptoProvider;
use str0m::crypto::dtls::DtlsCert;
use str0m::format::Codec as RtcCodec;
use str0m::media::{KeyframeRequestKind, MediaData, MediaKind as RtcKind, Mid};
use str0m::rtp::rtcp::SenderInfo;
use str0m::{Event, IceConnectionState};
use ugc_codec::{av1, h264, opus};
use ugc_core::{
    Codec, Frame, MediaEvent, Timescale, TrackId, TrackInfo, TrackParams, Tracks, VideoParams,
};

use super::peer::{Peer, peer_methods};

/// The video track's id in the Hub stream.
pub const VIDEO_TRACK: TrackId = TrackId(1);
/// The audio track's id in the Hub stream.
pub const AUDIO_TRACK: TrackId = TrackId(2);

/// Longest SDP offer taken (a browser's is 3-6 KiB).
pub const MAX_OFFER: usize = 64 * 1024;

/// Shortest time between two keyframe requests.
const PLI_INTERVAL: Duration = Duration::from_secs(1);

/// How much before [`SessionSetup::keyframe_interval`] is up (on the
/// media's clock) a keyframe is asked for: the packager's cut tolerance
/// (`ugc_dvr::segmenter`: a keyframe from 50 ms short of the target on cuts
/// a segment). The keyframe the request brings is a picture taken after
/// the newest one seen, so it comes on or after that point and always cuts;
/// asked any earlier, a quick encoder answers before it, the keyframe cuts
/// nothing and the segment runs to the next one (twice the target).
const KEYFRAME_LEAD_TICKS: i64 = 90_000 * 50 / 1000;

/// Why an offer was not taken.
#[derive(Debug, thiserror::Error)]
pub enum OfferError {
    /// Not an SDP offer str0m can read.
    #[error("bad SDP offer: {0}")]
    Malformed(String),
    /// Neither H.264 video nor Opus audio is offered as sent to us.
    #[error("the offer sends neither H.264 video nor Opus audio")]
    NoMedia,
    /// A viewer's offer receives neither H.264 video nor Opus audio.
    #[error("the offer receives neither H.264 video nor Opus audio")]
    NothingToPlay,
    /// No usable host candidate was configured.
    #[error("no usable ICE candidate: {0}")]
    Candidate(String),
}

/// Counters of one session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WhipStats {
    /// Video frames out.
    pub video_frames: u64,
    /// Audio frames out.
    pub audio_frames: u64,
    /// Frames dropped: before the first keyframe, of a codec we do not
    /// take, or audio a sync step back overlapped.
    pub dropped_frames: u64,
    /// Keyframe requests (PLI) sent.
    pub keyframe_requests: u64,
    /// Holes in the RTP sequence the depacketizer reported.
    pub discontinuities: u64,
    /// Datagrams str0m refused or panicked on.
    pub bad_datagrams: u64,
    /// Times the audio was moved onto the video by the sender reports
    /// (once at the start, when the first reports of both are in; again
    /// only if they drift apart).
    pub av_sync_steps: u64,
}

/// Lip sync finer than this is left alone (a step moves or drops audio).
const AV_SYNC_DEADBAND_MS: i128 = 10;

/// Sender reports putting audio further than this from the video are not
/// believed (a broken or lying publisher).
const AV_SYNC_MAX_MS: i128 = 2_000;

/// A sender report's tie of one track's RTP clock to the publisher's wall
/// clock.
#[derive(Debug, Clone, Copy)]
struct SenderClock {
    /// The report's wall time, ns since the Unix epoch.
    nanos: i128,
    /// The report's RTP time, unrolled next to the packets' (which str0m
    /// extends to 64 bits on its own count).
    rtp: i128,
    rate: i128,
}

impl SenderClock {
    /// The report `info` as of a packet at (extended) RTP time `packet_rtp`
    /// on a `rate` Hz clock; `None` for a wall time before 1970.
    fn new(info: &SenderInfo, packet_rtp: u64, rate: i128) -> Option<SenderClock> {
        let nanos = info
            .ntp_time
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_nanos();
        // The report's 32 bits nearest the packet's time.
        let near = (info.rtp_time.numer() as u32).wrapping_sub(packet_rtp as u32) as i32;
        Some(SenderClock {
            nanos: i128::try_from(nanos).ok()?,
            rtp: i128::from(packet_rtp) + i128::from(near),
            rate,
        })
    }

    /// The publisher's wall time (ns) of RTP time `rtp`.
    fn nanos_of(&self, rtp: i128) -> i128 {
        self.nanos + (rtp - self.rtp) * 1_000_000_000 / self.rate
    }

    /// The RTP time at the publisher's wall time `nanos`.
    fn rtp_at(&self, nanos: i128) -> i128 {
        self.rtp + (nanos - self.nanos) * self.rate / 1_000_000_000
    }
}

/// One track's clock: its first RTP time and where that lands on the
/// session's timeline (track ticks).
#[derive(Debug, Clone, Copy)]
struct TrackClock {
    first_rtp: u64,
    base: i64,
}

impl TrackClock {
    /// `rtp` on the session's timeline. A time before the first packet's
    /// (the publisher's clock stepped back) lands before `base`, as far as
    /// it says, rather than wrapping to the end of time.
    fn ticks(&self, rtp: u64) -> i64 {
        self.ticks_wide(i128::from(rtp))
    }

    fn ticks_wide(&self, rtp: i128) -> i64 {
        let delta = rtp - i128::from(self.first_rtp);
        let delta = i64::try_from(delta).unwrap_or(if delta < 0 { i64::MIN } else { i64::MAX });
        self.base.saturating_add(delta)
    }
}

/// The depacketized media into the Hub's model.
#[derive(Debug)]
struct Assembler {
    start: Instant,
    expect_video: bool,
    expect_audio: bool,
    sps: Option<Bytes>,
    pps: Option<Bytes>,
    /// The AV1 sequence header OBU.
    av1_sequence: Option<Bytes>,
    video: Option<TrackInfo>,
    audio: Option<TrackInfo>,
    announced: Option<Tracks>,
    video_clock: Option<TrackClock>,
    audio_clock: Option<TrackClock>,
    /// The latest sender reports of each track.
    video_sender: Option<SenderClock>,
    audio_sender: Option<SenderClock>,
    /// The last audio frame's time out (frames a sync step moved before it
    /// are dropped).
    last_audio: Option<i64>,
    /// Waiting for an IDR picture (start, or after a hole).
    want_keyframe: bool,
}

impl Assembler {
    fn new(start: Instant) -> Self {
        Assembler {
            start,
            expect_video: false,
            expect_audio: false,
            sps: None,
            pps: None,
            av1_sequence: None,
            video: None,
            audio: None,
            announced: None,
            video_clock: None,
            audio_clock: None,
            video_sender: None,
            audio_sender: None,
            last_audio: None,
            want_keyframe: true,
        }
    }

    fn clock(&self, slot: Option<TrackClock>, rtp: u64, at: Instant, rate: i64) -> TrackClock {
        slot.unwrap_or_else(|| {
            let since = at.saturating_duration_since(self.start);
            let micros = i64::try_from(since.as_micros()).unwrap_or(i64::MAX);
            let base = micros.saturating_mul(rate) / 1_000_000;
            TrackClock {
                first_rtp: rtp,
                base,
            }
        })
    }

    /// The track set when every expected track is known and nothing is
    /// waiting for a keyframe; a new set when it changed.
    fn announce(&mut self, out: &mut Vec<MediaEvent>) -> bool {
        if (self.expect_video && self.video.is_none())
            || (self.expect_audio && self.audio.is_none())
        {
            return false;
        }
        let tracks: Vec<TrackInfo> = self
            .video
            .iter()
            .chain(self.audio.iter())
            .cloned()
            .collect();
        let tracks = Tracks::new(tracks);
        if self.announced.as_ref() != Some(&tracks) {
            out.push(MediaEvent::Tracks(tracks.clone()));
            self.announced = Some(tracks);
        }
        true
    }

    /// One picture: an H.264 access unit (Annex B) or an AV1 temporal
    /// unit. Returns the events and whether a keyframe should be asked for.
    fn video(&mut self, md: &MediaData, stats: &mut WhipStats) -> (Vec<MediaEvent>, bool) {
        let mut out = Vec::new();
        if let Some(info) = &md.last_sender_info {
            self.video_sender =
                SenderClock::new(info, md.time.numer(), 90_000).or(self.video_sender);
        }
        if !md.contiguous {
            stats.discontinuities += 1;
            self.want_keyframe = true;
        }
        let (sample, idr) = match md.params.spec().codec {
            RtcCodec::Av1 => self.av1_sample(md, stats),
            _ => self.h264_sample(md, stats),
        };
        if sample.is_empty() {
            return (out, false);
        }
        if self.want_keyframe && !(idr && self.video.is_some()) {
            stats.dropped_frames += 1;
            return (out, true);
        }
        if !self.announce(&mut out) {
            stats.dropped_frames += 1;
            return (out, false);
        }
        self.want_keyframe = false;
        let clock = self.clock(self.video_clock, md.time.numer(), md.network_time, 90_000);
        self.video_clock = Some(clock);
        let dts = clock.ticks(md.time.numer());
        stats.video_frames += 1;
        out.push(MediaEvent::Frame(Frame {
            track: VIDEO_TRACK,
            dts,
            pts: dts,
            keyframe: idr,
            data: Bytes::from(sample),
        }));
        (out, false)
    }

    /// An AV1 temporal unit's sample (its OBUs less temporal delimiters,
    /// tile lists and padding) and whether it is a keyframe; a new
    /// sequence header makes the track.
    fn av1_sample(&mut self, md: &MediaData, stats: &mut WhipStats) -> (Vec<u8>, bool) {
        let Ok(obus) = av1::obus(&md.data) else {
            stats.bad_datagrams += 1;
            return (Vec::new(), false);
        };
        let mut sample = Vec::with_capacity(md.data.len());
        for o in obus {
            match o.kind {
                av1::obu_type::TEMPORAL_DELIMITER | AV1_TILE_LIST | AV1_PADDING => continue,
                av1::obu_type::SEQUENCE_HEADER if self.av1_sequence.as_deref() != Some(o.bytes) => {
                    match av1_track(o.bytes) {
                        Ok(info) => {
                            self.video = Some(info);
                            self.av1_sequence = Some(Bytes::copy_from_slice(o.bytes));
                        }
                        Err(_) => stats.bad_datagrams += 1,
                    }
                }
                _ => {}
            }
            sample.extend_from_slice(o.bytes);
        }
        (sample, md.is_keyframe() && self.av1_sequence.is_some())
    }

    /// An H.264 access unit's sample (length-prefixed NAL units, without
    /// parameter sets) and whether it is an IDR picture; new parameter sets
    /// make the track.
    fn h264_sample(&mut self, md: &MediaData, stats: &mut WhipStats) -> (Vec<u8>, bool) {
        let mut avcc = Vec::with_capacity(md.data.len() + 16);
        let mut idr = false;
        let mut config_changed = false;
        for nal in h264::annexb_nal_units(&md.data) {
            match h264::nal_type(nal) {
                Some(h264::NAL_SPS) => config_changed |= set_ps(&mut self.sps, nal),
                Some(h264::NAL_PPS) => config_changed |= set_ps(&mut self.pps, nal),
                Some(h264::NAL_AUD) | Some(12) | None => {}
                Some(t) => {
                    idr |= t == h264::NAL_IDR;
                    let len = u32::try_from(nal.len()).unwrap_or(u32::MAX);
                    avcc.extend_from_slice(&len.to_be_bytes());
                    avcc.extend_from_slice(nal);
                }
            }
        }
        if config_changed && let (Some(sps), Some(pps)) = (&self.sps, &self.pps) {
            match h264::track_from_parameter_sets(VIDEO_TRACK, sps, pps) {
                Ok(info) => self.video = Some(info),
                Err(_) => stats.bad_datagrams += 1,
            }
        }
        (avcc, idr)
    }

    /// One Opus frame.
    fn audio(&mut self, md: &MediaData, stats: &mut WhipStats) -> Vec<MediaEvent> {
        let mut out = Vec::new();
        if md.data.is_empty() {
            return out;
        }
        // Audio waits for the picture: the stream starts at a keyframe.
        if (self.expect_video && self.want_keyframe) || !self.announce(&mut out) {
            stats.dropped_frames += 1;
            return out;
        }
        if let Some(info) = &md.last_sender_info {
            self.audio_sender =
                SenderClock::new(info, md.time.numer(), 48_000).or(self.audio_sender);
        }
        let mut clock = self.clock(self.audio_clock, md.time.numer(), md.network_time, 48_000);
        if let Some(step) = self.av_sync_step(&clock, md.time.numer()) {
            clock.base = clock.base.saturating_add(step);
            stats.av_sync_steps += 1;
        }
        self.audio_clock = Some(clock);
        let dts = clock.ticks(md.time.numer());
        // A step back overlaps what went out: that much audio is dropped.
        if self.last_audio.is_some_and(|last| dts <= last) {
            stats.dropped_frames += 1;
            return out;
        }
        self.last_audio = Some(dts);
        stats.audio_frames += 1;
        out.push(MediaEvent::Frame(Frame {
            track: AUDIO_TRACK,
            dts,
            pts: dts,
            keyframe: true,
            data: Bytes::copy_from_slice(&md.data),
        }));
        out
    }
}

impl Assembler {
    /// How far (48 kHz ticks) the audio at RTP time `rtp` on `clock` is to
    /// move to sit where the sender reports put it against the video;
    /// `None` while either report is missing, within the dead band, or
    /// beyond belief.
    fn av_sync_step(&self, clock: &TrackClock, rtp: u64) -> Option<i64> {
        let (video, vs, aus) = (self.video_clock?, self.video_sender?, self.audio_sender?);
        let rtp = i128::from(rtp);
        let video_rtp = vs.rtp_at(aus.nanos_of(rtp));
        let target = i128::from(video.ticks_wide(video_rtp)) * 48_000 / 90_000;
        let step = target - i128::from(clock.ticks_wide(rtp));
        let ms = step.abs() * 1000 / 48_000;
        if ms <= AV_SYNC_DEADBAND_MS || ms > AV_SYNC_MAX_MS {
            return None;
        }
        i64::try_from(step).ok()
    }
}

/// AV1 OBU types left out of samples beside temporal delimiters: tile
/// lists (large-scale tile decoding only) and padding.
const AV1_TILE_LIST: u8 = 8;
const AV1_PADDING: u8 = 15;

/// The video track of an AV1 sequence header OBU: its `av1C`, codec string
/// and largest picture, on the 90 kHz RTP clock.
fn av1_track(sequence_header: &[u8]) -> Result<TrackInfo, ugc_codec::Error> {
    let config = av1::av1c(sequence_header)?;
    let codec_string = av1::codec_string(&config)?;
    let (mut width, mut height) = (0, 0);
    if let Some(o) = av1::obus(sequence_header)?.first() {
        let h = av1::SequenceHeader::parse(o.payload)?;
        (width, height) = (h.max_width, h.max_height);
    }
    Ok(TrackInfo {
        id: VIDEO_TRACK,
        codec: Codec::Av1,
        timescale: Timescale::MPEG,
        config: Bytes::from(config),
        codec_string,
        params: TrackParams::Video(VideoParams {
            width,
            height,
            frame_rate: None,
        }),
        bitrate: None,
    })
}

fn set_ps(slot: &mut Option<Bytes>, nal: &[u8]) -> bool {
    if slot.as_deref() == Some(nal) {
        return false;
    }
    *slot = Some(Bytes::copy_from_slice(nal));
    true
}

/// Whether our `answer` receives H.264 video and Opus audio: an m-section
/// of that kind that is receiving (`recvonly`/`sendrecv`, a port other than
/// 0) with the codec in its `rtpmap`s. str0m announces the media only once
/// the session runs, and an offer with nothing for us must be refused at
/// once.
fn answer_receives(answer: &str) -> (bool, bool) {
    answer_media(answer, &["a=recvonly", "a=sendrecv"])
}

/// Whether the answer has H.264 video and Opus audio m-lines in one of
/// `directions` (ours: `a=recvonly` is what we receive).
pub(crate) fn answer_media(answer: &str, directions: &[&str]) -> (bool, bool) {
    let (mut video, mut audio) = (false, false);
    for section in answer.split("\nm=").skip(1) {
        let first = section.lines().next().unwrap_or("");
        let port_zero = first.split_whitespace().nth(1) == Some("0");
        let receiving = section.lines().any(|l| directions.contains(&l.trim_end()));
        if port_zero || !receiving {
            continue;
        }
        let has = |codec: &str| {
            section.lines().any(|l| {
                l.starts_with("a=rtpmap:")
                    && l.split_whitespace()
                        .nth(1)
                        .is_some_and(|c| c.to_ascii_lowercase().starts_with(codec))
            })
        };
        if first.starts_with("video") && (has("h264/") || has("av1/")) {
            video = true;
        } else if first.starts_with("audio") && has("opus/") {
            audio = true;
        }
    }
    (video, audio)
}

fn audio_track(channels: u8) -> TrackInfo {
    let timescale = Timescale::new(48_000).unwrap_or(Timescale::MPEG);
    opus::track(AUDIO_TRACK, timescale, opus::dops(channels), None)
}

/// One WHIP publisher's WebRTC session; see the [module documentation](self).
pub struct WhipSession {
    peer: Peer,
    media: Assembler,
    video_mid: Option<Mid>,
    audio_mid: Option<Mid>,
    events: VecDeque<MediaEvent>,
    last_pli: Option<Instant>,
    /// When a viewer last had a keyframe asked for.
    last_viewer_pli: Option<Instant>,
    /// The media time (90 kHz) of the last keyframe that cut a segment
    /// (one at least the interval less [`KEYFRAME_LEAD_TICKS`] after the
    /// one before), and how old it may get.
    last_cut: Option<i64>,
    keyframe_interval: Option<Duration>,
    /// NACK is on for the video's receive stream.
    nack_on: bool,
    stats: WhipStats,
}

impl std::fmt::Debug for WhipSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhipSession")
            .field("connected", &self.peer.connected)
            .field("closed", &self.peer.closed())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// What a session is built with, shared by all sessions of a server.
#[derive(Clone)]
pub struct SessionSetup {
    /// Our host candidates (the server's UDP socket as publishers reach it).
    pub candidates: Vec<SocketAddr>,
    /// Our passive ICE-TCP candidates (RFC 6544; the server's TCP
    /// listeners as publishers reach them): the way in for a publisher
    /// whose network lets no UDP through. Empty: UDP only.
    pub tcp_candidates: Vec<SocketAddr>,
    /// The crypto provider (str0m's aws-lc-rs one).
    pub crypto: Arc<CryptoProvider>,
    /// The DTLS certificate (one per server: making one per session costs
    /// a key generation).
    pub cert: Option<DtlsCert>,
    /// Ask for a keyframe when the last one is this old (`None`: never
    /// beyond the start and losses). WebRTC encoders send keyframes only
    /// when asked (Chromium: at the start and on PLI), while HLS cuts
    /// segments at keyframes: without this a browser's stream has one
    /// segment that never ends. Default 2 s, the segment target; a shorter
    /// interval costs bitrate (a keyframe is several times a P picture),
    /// a longer one makes longer segments and later starts.
    pub keyframe_interval: Option<Duration>,
    /// Video packets the depacketizer holds while a hole waits for its
    /// retransmission (NACK); past them a frame is released with the hole
    /// (a discontinuity, then a keyframe is asked for). str0m's default,
    /// 30, is under one keyframe of a 1080p stream and, at a few hundred
    /// packets a second, under one round trip of a 100 ms path: measured
    /// with Chromium over 3 % loss and 50 ms each way, 76 of ~110 holes
    /// went unrepaired. Its time limit still applies (the NACK attempts
    /// plus three round trips), so a large cap costs memory (about 1.2 KB
    /// a packet), not latency. Default [`REORDERING_PACKETS`].
    pub reordering_packets: usize,
    /// Whether publishers may send AV1 (offered beside H.264, AV1 is what
    /// a browser then sends: it comes first in their offers). Off by
    /// default: an AV1 stream plays only where AV1 decodes (browsers, not
    /// older phones' HLS players; over WHEP, browsers that decode AV1).
    pub av1: bool,
}

/// The default of [`SessionSetup::reordering_packets`]: 0.8 s of a
/// 6 Mbit/s stream, a 1080p keyframe several times over.
pub const REORDERING_PACKETS: usize = 500;

impl std::fmt::Debug for SessionSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionSetup")
            .field("candidates", &self.candidates)
            .field("tcp_candidates", &self.tcp_candidates)
            .finish_non_exhaustive()
    }
}

impl SessionSetup {
    /// A setup with `candidates`, str0m's default crypto and a fresh
    /// certificate.
    pub fn new(candidates: Vec<SocketAddr>) -> Self {
        let crypto = Arc::new(str0m::crypto::from_feature_flags());
        let cert = catch_unwind(AssertUnwindSafe(|| {
            crypto.dtls_provider.generate_certificate()
        }))
        .ok()
        .flatten();
        SessionSetup {
            candidates,
            tcp_candidates: Vec::new(),
            crypto,
            cert,
            keyframe_interval: Some(Duration::from_secs(2)),
            reordering_packets: REORDERING_PACKETS,
            av1: false,
        }
    }
}

impl WhipSession {
    /// A session for the SDP `offer`, and its answer.
    pub fn new(
        offer: &str,
        setup: &SessionSetup,
        now: Instant,
    ) -> Result<(WhipSession, String), OfferError> {
        let (peer, answer) = Peer::answer(offer, setup, setup.av1, now)?;
        let mut session = WhipSession {
            peer,
            media: Assembler::new(now),
            video_mid: None,
            audio_mid: None,
            events: VecDeque::new(),
            last_pli: None,
            last_viewer_pli: None,
            last_cut: None,
            keyframe_interval: setup.keyframe_interval,
            nack_on: false,
            stats: WhipStats::default(),
        };
        let (video, audio) = answer_receives(&answer);
        if !video && !audio {
            return Err(OfferError::NoMedia);
        }
        session.media.expect_video = video;
        session.media.expect_audio = audio;
        if audio {
            session.media.audio = Some(audio_track(2));
        }
        session.drive(now);
        Ok((session, answer))
    }

    /// Counters.
    pub fn stats(&self) -> &WhipStats {
        &self.stats
    }

    peer_methods!();

    /// The next media event for the Hub.
    pub fn poll_event(&mut self) -> Option<MediaEvent> {
        self.events.pop_front()
    }

    /// Ends the session (a `DELETE`, a takeover, the server stopping).
    pub fn close(&mut self) {
        self.close_because("closed");
    }

    /// Takes str0m's output until it waits for time or input, acting on
    /// its events (which may send more: a keyframe request).
    fn drive(&mut self, now: Instant) {
        for _ in 0..100 {
            let events = self.peer.poll_events(now);
            if events.is_empty() {
                return;
            }
            for e in events {
                self.on_event(now, e);
            }
        }
    }

    fn on_event(&mut self, now: Instant, event: Event) {
        match event {
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                self.peer.fail("the publisher went away (ICE disconnected)");
            }
            // Only what the publisher sends us (a receive-only m-line of a
            // player's offer is answered send-only, and carries nothing in).
            Event::MediaAdded(m) if !m.direction.is_receiving() => {}
            Event::MediaAdded(m) => match m.kind {
                RtcKind::Video if self.video_mid.is_none() && self.media.expect_video => {
                    self.video_mid = Some(m.mid);
                    self.enable_nack();
                }
                RtcKind::Audio if self.audio_mid.is_none() && self.media.expect_audio => {
                    self.audio_mid = Some(m.mid);
                }
                _ => {}
            },
            Event::MediaData(md) => self.on_media(now, &md),
            _ => {}
        }
    }

    /// Turns NACK on for the video's receive stream. str0m leaves it off
    /// when the offer has no RTX stream, but OBS (libdatachannel) offers
    /// NACK without RTX and resends lost packets on the main stream: with
    /// NACK off every loss would cost a keyframe. Done when the video is
    /// added and again at its first packets (a stream without `a=ssrc` is
    /// only known then).
    fn enable_nack(&mut self) {
        let Some(mid) = self.video_mid else {
            return;
        };
        let done = catch_unwind(AssertUnwindSafe(|| {
            let mut api = self.peer.rtc.direct_api();
            match api.stream_rx_by_mid(mid, None) {
                Some(rx) => {
                    rx.suppress_nack(false);
                    true
                }
                None => false,
            }
        }));
        self.nack_on = matches!(done, Ok(true));
    }

    fn on_media(&mut self, now: Instant, md: &MediaData) {
        if !self.nack_on && Some(md.mid) == self.video_mid {
            self.enable_nack();
        }
        let codec = md.params.spec().codec;
        if Some(md.mid) == self.video_mid && matches!(codec, RtcCodec::H264 | RtcCodec::Av1) {
            let (events, want_key) = self.media.video(md, &mut self.stats);
            let interval = self
                .keyframe_interval
                .map(|i| i64::try_from(i.as_micros() * 9 / 100).unwrap_or(i64::MAX));
            // Judged on the media's clock, as the packager cuts: arrival
            // times carry the encoder's and the network's delays.
            let mut due = false;
            for e in &events {
                let MediaEvent::Frame(f) = e else { continue };
                let since = self.last_cut.map(|c| f.dts.saturating_sub(c));
                let reaches = |i: i64| since.is_none_or(|s| s >= i - KEYFRAME_LEAD_TICKS);
                if f.keyframe && interval.is_none_or(reaches) {
                    // A keyframe sooner (a loss's) cuts nothing: the next
                    // one is still due an interval after this cut.
                    self.last_cut = Some(f.dts);
                } else if interval.is_some_and(reaches) {
                    due = true;
                }
            }
            self.events.extend(events);
            if want_key || due {
                self.request_keyframe(now);
            }
        } else if Some(md.mid) == self.audio_mid && codec == RtcCodec::Opus {
            let events = self.media.audio(md, &mut self.stats);
            self.events.extend(events);
        } else {
            self.stats.dropped_frames += 1;
        }
    }

    /// Asks the publisher for a keyframe (PLI) for a viewer that waits for
    /// one (WHEP starts at a keyframe), at most once a second whoever asks.
    /// Kept apart from the segment schedule's requests: this one neither
    /// delays them (a request suppressed by it would make a long segment)
    /// nor moves them (the keyframe it brings cuts no segment early).
    pub fn request_keyframe_for_viewer(&mut self, now: Instant) {
        if self
            .last_viewer_pli
            .is_some_and(|t| now.saturating_duration_since(t) < PLI_INTERVAL)
        {
            return;
        }
        self.last_viewer_pli = Some(now);
        self.send_pli();
        self.drive(now);
    }

    fn request_keyframe(&mut self, now: Instant) {
        if self
            .last_pli
            .is_some_and(|t| now.saturating_duration_since(t) < PLI_INTERVAL)
        {
            return;
        }
        if self.video_mid.is_some() {
            self.last_pli = Some(now);
            self.send_pli();
        }
    }

    fn send_pli(&mut self) {
        let Some(mid) = self.video_mid else {
            return;
        };
        let asked = catch_unwind(AssertUnwindSafe(|| {
            self.peer
                .rtc
                .writer(mid)
                .map(|mut w| w.request_keyframe(None, KeyframeRequestKind::Pli).is_ok())
        }));
        if let Ok(Some(true)) = asked {
            self.stats.keyframe_requests += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A publisher's RTP clock is its own: a packet stamped before the
    /// first one (it stepped back, or reordering across the start) lands
    /// that much before the first on the timeline; it used to wrap to
    /// `i64::MAX`.
    #[test]
    fn rtp_times_before_the_first_land_before_it() {
        let c = TrackClock {
            first_rtp: 10_000,
            base: 90_000,
        };
        assert_eq!(c.ticks(13_000), 93_000);
        assert_eq!(c.ticks(7_000), 87_000);
        assert_eq!(c.ticks(0), 80_000);
        let far = TrackClock {
            first_rtp: u64::MAX,
            base: 0,
        };
        assert_eq!(far.ticks(0), i64::MIN);
    }
}
