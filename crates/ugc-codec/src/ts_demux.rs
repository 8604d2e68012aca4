//! MPEG-TS demultiplexing (ISO/IEC 13818-1) into ugc [`MediaEvent`]s: the
//! reader side of SRT ingest (and of any TS source).
//!
//! [`TsDemuxer`] is a sans-IO state machine: push bytes in any split
//! ([`TsDemuxer::push`]), drain [`TsDemuxer::poll_event`]. It
//!
//! * finds packets by their `0x47` sync byte and resynchronises after garbage
//!   (two sync bytes one packet apart), counting the skipped bytes;
//! * reads the PAT and the PMT of the first program (sections may span
//!   packets; CRC-32 checked), and follows PMT updates;
//! * reassembles PES packets across TS packets per PID, checking continuity
//!   counters (a gap drops the PES in progress, counted);
//! * turns H.264 (`stream_type` 0x1B) and H.265 (0x24) Annex B access units
//!   into length-prefixed frames (4-byte lengths) with the `avcC` / `hvcC`
//!   built from the in-band parameter sets (which are taken out of the
//!   frames), and AAC in ADTS (0x0F) into raw frames with the
//!   AudioSpecificConfig derived from the ADTS header;
//! * widens 33-bit PTS/DTS across wraps.
//!
//! Output follows the same contract as [`crate::flv::FlvIngest`]: video is
//! track 1 at 90 kHz, audio track 2 at its sample rate; `MediaEvent::Tracks`
//! comes once every elementary stream of the program has its configuration
//! (or after [`STARTUP_BUFFER_TICKS`] of media show one never will), and
//! again when a configuration changes. Frames come out interleaved by decode
//! time across the tracks (as an FLV publisher sends them), which costs up
//! to one audio PES of latency (ffmpeg packs ~100 ms of AAC per PES).
//!
//! ```
//! use ugc_codec::ts_demux::TsDemuxer;
//!
//! let mut demux = TsDemuxer::new();
//! demux.push(&[0x47, 0x1f, 0xff, 0x10]); // a piece of a null packet
//! while let Some(event) = demux.poll_event() {
//!     let _ = event; // hand it to the Hub publisher
//! }
//! demux.finish();
//! assert!(demux.poll_event().is_none());
//! ```

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use ugc_core::{
    AudioParams, Codec, Frame, MediaEvent, MediaKind, Timescale, TrackId, TrackInfo, TrackParams,
    Tracks, VideoParams, time::rescale,
};

use crate::aac::{Asc, parse_adts};
use crate::h264::{self, AvcConfig};
use crate::hevc::{self, HevcConfig};
use crate::ts::{PACKET_SIZE, crc32_mpeg2};

/// Track id of the video track.
pub const VIDEO_TRACK: TrackId = TrackId(1);
/// Track id of the audio track.
pub const AUDIO_TRACK: TrackId = TrackId(2);
/// `stream_type` of H.264 video.
pub const STREAM_TYPE_H264: u8 = 0x1b;
/// `stream_type` of H.265 video.
pub const STREAM_TYPE_H265: u8 = 0x24;
/// `stream_type` of AAC audio in ADTS.
pub const STREAM_TYPE_AAC_ADTS: u8 = 0x0f;
/// How much media (90 kHz ticks, 2 s) is buffered while waiting for the
/// configuration of a stream the PMT announced.
pub const STARTUP_BUFFER_TICKS: i64 = 180_000;
/// Frames buffered at most while starting up.
pub const STARTUP_BUFFER_FRAMES: usize = 300;
/// How far (90 kHz ticks, 1 s) one track's frames wait for the other's to
/// interleave them by decode time.
pub const MAX_INTERLEAVE_TICKS: i64 = 90_000;
/// Largest PES accepted (bytes); a longer one is dropped and counted.
pub const MAX_PES_SIZE: usize = 16 << 20;

const SYNC: u8 = 0x47;
const PAT_PID: u16 = 0;
const NULL_PID: u16 = 0x1fff;
const MAX_SECTION: usize = 1024;
const WRAP_33: i64 = 1 << 33;

/// Counters of a [`TsDemuxer`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TsDemuxStats {
    /// TS packets read.
    pub packets: u64,
    /// Bytes skipped while looking for sync.
    pub resync_bytes: u64,
    /// Times sync was lost and found again.
    pub resyncs: u64,
    /// Continuity counter gaps on PIDs we read.
    pub cc_errors: u64,
    /// Packets with `transport_error_indicator` set (dropped).
    pub transport_errors: u64,
    /// PSI sections with a bad CRC or layout.
    pub bad_sections: u64,
    /// PES packets dropped (after a gap, bad header, too large).
    pub dropped_pes: u64,
    /// Access units / audio frames dropped (before their configuration, bad
    /// framing, start-up buffer full).
    pub dropped_frames: u64,
    /// Video access units emitted.
    pub video_frames: u64,
    /// Audio frames emitted.
    pub audio_frames: u64,
    /// `MediaEvent::Tracks` emitted.
    pub tracks_emitted: u64,
    /// Elementary streams of the PMT with a `stream_type` we do not read.
    pub unsupported_streams: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EsKind {
    H264,
    H265,
    Aac,
}

impl EsKind {
    fn from_stream_type(t: u8) -> Option<EsKind> {
        match t {
            STREAM_TYPE_H264 => Some(EsKind::H264),
            STREAM_TYPE_H265 => Some(EsKind::H265),
            STREAM_TYPE_AAC_ADTS => Some(EsKind::Aac),
            _ => None,
        }
    }

    fn media(self) -> MediaKind {
        match self {
            EsKind::H264 | EsKind::H265 => MediaKind::Video,
            EsKind::Aac => MediaKind::Audio,
        }
    }
}

/// A PSI section being collected.
#[derive(Debug, Default)]
struct Section {
    buf: Vec<u8>,
    active: bool,
}

/// A PES being collected on one PID.
#[derive(Debug)]
struct Pes {
    pid: u16,
    kind: EsKind,
    buf: BytesMut,
    /// `PES_packet_length` + 6 when bounded.
    expected: Option<usize>,
    collecting: bool,
    last_cc: Option<u8>,
}

/// Video elementary stream state.
#[derive(Debug, Default)]
struct VideoState {
    vps: Option<Bytes>,
    sps: Option<Bytes>,
    pps: Option<Bytes>,
    /// The access unit in progress (`pts`, `dts`, length-prefixed data).
    au: Option<(i64, i64, Vec<u8>, bool)>,
}

/// Audio elementary stream state.
#[derive(Debug, Default)]
struct AudioState {
    /// ADTS bytes of a frame cut by the end of a PES.
    carry: Vec<u8>,
    /// Where the next frame's PTS would be (audio timescale).
    next_pts: Option<i64>,
    asc_key: Option<(u8, u8, u8)>,
}

/// The MPEG-TS demuxer; see the [module documentation](self).
#[derive(Debug)]
pub struct TsDemuxer {
    carry: Vec<u8>,
    pat: Section,
    pmt: Section,
    pmt_pid: Option<u16>,
    pat_cc: Option<u8>,
    pmt_cc: Option<u8>,
    pmt_version: Option<u8>,
    video_pes: Option<Pes>,
    audio_pes: Option<Pes>,
    /// The PMT lists a video / an audio stream we read.
    expect_video: bool,
    expect_audio: bool,
    video: VideoState,
    audio: AudioState,
    video_track: Option<TrackInfo>,
    audio_track: Option<TrackInfo>,
    /// Last widened timestamp (90 kHz) and its 33-bit raw value.
    clock: Option<(i64, i64)>,
    emitted: Option<Tracks>,
    pending: VecDeque<Frame>,
    /// Frames waiting to be interleaved by decode time (video, audio).
    queued_video: VecDeque<Frame>,
    queued_audio: VecDeque<Frame>,
    out: VecDeque<MediaEvent>,
    stats: TsDemuxStats,
    finished: bool,
}

impl Default for TsDemuxer {
    fn default() -> Self {
        Self::new()
    }
}

impl TsDemuxer {
    /// A demuxer waiting for a PAT.
    pub fn new() -> Self {
        TsDemuxer {
            carry: Vec::with_capacity(PACKET_SIZE),
            pat: Section::default(),
            pmt: Section::default(),
            pmt_pid: None,
            pat_cc: None,
            pmt_cc: None,
            pmt_version: None,
            video_pes: None,
            audio_pes: None,
            expect_video: false,
            expect_audio: false,
            video: VideoState::default(),
            audio: AudioState::default(),
            video_track: None,
            audio_track: None,
            clock: None,
            emitted: None,
            pending: VecDeque::new(),
            queued_video: VecDeque::new(),
            queued_audio: VecDeque::new(),
            out: VecDeque::new(),
            stats: TsDemuxStats::default(),
            finished: false,
        }
    }

    /// Counters.
    pub fn stats(&self) -> &TsDemuxStats {
        &self.stats
    }

    /// The next event ready; drain after every [`push`](Self::push).
    pub fn poll_event(&mut self) -> Option<MediaEvent> {
        self.out.pop_front()
    }

    /// Feeds bytes of the transport stream, split anywhere.
    pub fn push(&mut self, mut data: &[u8]) {
        if self.finished {
            return;
        }
        // Complete a packet cut by the previous push (the carry always
        // starts with a sync byte).
        if !self.carry.is_empty() {
            let need = PACKET_SIZE - self.carry.len();
            let take = need.min(data.len());
            self.carry.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.carry.len() < PACKET_SIZE {
                return;
            }
            let carry = std::mem::take(&mut self.carry);
            if let Ok(pkt) = <&[u8; PACKET_SIZE]>::try_from(&carry[..]) {
                self.packet(pkt);
            }
            self.carry = carry;
            self.carry.clear();
        }
        self.scan(data);
    }

    fn scan(&mut self, data: &[u8]) {
        let mut pos = 0usize;
        let len = data.len();
        while pos < len {
            let rest = &data[pos..];
            if rest[0] != SYNC {
                // Resync: the next 0x47 that is followed by another one a
                // packet later (or by the end of the input).
                self.stats.resyncs += 1;
                let mut skip = 1usize;
                loop {
                    match rest
                        .get(skip..)
                        .and_then(|r| r.iter().position(|b| *b == SYNC))
                    {
                        Some(off) => {
                            let cand = skip + off;
                            match rest.get(cand + PACKET_SIZE) {
                                Some(&SYNC) | None => {
                                    skip = cand;
                                    break;
                                }
                                Some(_) => skip = cand + 1,
                            }
                        }
                        None => {
                            skip = rest.len();
                            break;
                        }
                    }
                }
                self.stats.resync_bytes += skip as u64;
                pos += skip;
                continue;
            }
            match rest.get(..PACKET_SIZE) {
                Some(p) => {
                    if let Ok(pkt) = <&[u8; PACKET_SIZE]>::try_from(p) {
                        self.packet(pkt);
                    }
                    pos += PACKET_SIZE;
                }
                None => {
                    self.carry.extend_from_slice(rest);
                    return;
                }
            }
        }
    }

    /// The source ended: emit the access unit in progress and anything still
    /// buffered for start-up. Does not emit `MediaEvent::End`.
    pub fn finish(&mut self) {
        if self.finished {
            return;
        }
        if let Some(mut pes) = self.video_pes.take() {
            self.complete_pes(&mut pes);
        }
        if let Some(mut pes) = self.audio_pes.take() {
            self.complete_pes(&mut pes);
        }
        self.flush_au();
        if self.emitted.is_none() && (self.video_track.is_some() || self.audio_track.is_some()) {
            self.release();
        }
        self.pending.clear();
        self.interleave(true);
        self.finished = true;
    }

    fn packet(&mut self, pkt: &[u8; PACKET_SIZE]) {
        self.stats.packets += 1;
        let tei = pkt[1] & 0x80 != 0;
        let pusi = pkt[1] & 0x40 != 0;
        let pid = (u16::from(pkt[1] & 0x1f) << 8) | u16::from(pkt[2]);
        let afc = (pkt[3] >> 4) & 0x03;
        let cc = pkt[3] & 0x0f;
        if pid == NULL_PID {
            return;
        }
        if tei {
            self.stats.transport_errors += 1;
            return;
        }
        let mut start = 4usize;
        if afc & 0x02 != 0 {
            start += 1 + usize::from(pkt[4]);
        }
        let has_payload = afc & 0x01 != 0;
        let payload: &[u8] = if has_payload {
            match pkt.get(start..) {
                Some(p) => p,
                None => {
                    // Adaptation field longer than the packet.
                    self.stats.transport_errors += 1;
                    return;
                }
            }
        } else {
            &[]
        };
        if pid == PAT_PID {
            if !has_payload || duplicate(&mut self.pat_cc, cc) {
                return;
            }
            self.section(false, pusi, payload);
        } else if Some(pid) == self.pmt_pid {
            if !has_payload || duplicate(&mut self.pmt_cc, cc) {
                return;
            }
            self.section(true, pusi, payload);
        } else if self.video_pes.as_ref().is_some_and(|p| p.pid == pid) {
            if let Some(mut pes) = self.video_pes.take() {
                self.pes_packet(&mut pes, pusi, cc, has_payload, payload);
                self.video_pes = Some(pes);
            }
        } else if self.audio_pes.as_ref().is_some_and(|p| p.pid == pid)
            && let Some(mut pes) = self.audio_pes.take()
        {
            self.pes_packet(&mut pes, pusi, cc, has_payload, payload);
            self.audio_pes = Some(pes);
        }
    }

    // ---- PSI ------------------------------------------------------------

    fn section(&mut self, pmt: bool, pusi: bool, payload: &[u8]) {
        let mut data = payload;
        if pusi {
            let Some((&pointer, rest)) = data.split_first() else {
                self.stats.bad_sections += 1;
                return;
            };
            let p = usize::from(pointer);
            // The bytes before the pointer end the previous section.
            if let Some(tail) = rest.get(..p) {
                self.section_bytes(pmt, tail);
            }
            let sec = if pmt { &mut self.pmt } else { &mut self.pat };
            sec.buf.clear();
            sec.active = true;
            data = match rest.get(p..) {
                Some(d) => d,
                None => {
                    self.stats.bad_sections += 1;
                    sec.active = false;
                    return;
                }
            };
        }
        self.section_bytes(pmt, data);
    }

    fn section_bytes(&mut self, pmt: bool, data: &[u8]) {
        let sec = if pmt { &mut self.pmt } else { &mut self.pat };
        if !sec.active {
            return;
        }
        sec.buf.extend_from_slice(data);
        if sec.buf.len() < 3 {
            return;
        }
        if sec.buf[0] == 0xff {
            // Stuffing.
            sec.active = false;
            return;
        }
        let section_length = (usize::from(sec.buf[1] & 0x0f) << 8) | usize::from(sec.buf[2]);
        let total = 3 + section_length;
        if total > MAX_SECTION {
            sec.active = false;
            self.stats.bad_sections += 1;
            return;
        }
        if sec.buf.len() < total {
            return;
        }
        sec.active = false;
        let section = std::mem::take(&mut sec.buf);
        let body = &section[..total];
        if total < 12 || crc32_mpeg2(body) != 0 {
            self.stats.bad_sections += 1;
        } else if pmt {
            self.parse_pmt(body);
        } else {
            self.parse_pat(body);
        }
        let sec = if pmt { &mut self.pmt } else { &mut self.pat };
        sec.buf = section;
        sec.buf.clear();
    }

    fn parse_pat(&mut self, s: &[u8]) {
        if s[0] != 0x00 {
            self.stats.bad_sections += 1;
            return;
        }
        // Header 8 bytes, CRC 4 bytes, 4 bytes per program.
        let programs = &s[8..s.len() - 4];
        for p in programs.chunks_exact(4) {
            let number = u16::from_be_bytes([p[0], p[1]]);
            let pid = (u16::from(p[2] & 0x1f) << 8) | u16::from(p[3]);
            if number != 0 {
                if self.pmt_pid != Some(pid) {
                    self.pmt_pid = Some(pid);
                    self.pmt_cc = None;
                    self.pmt_version = None;
                    self.pmt = Section::default();
                }
                return;
            }
        }
    }

    fn parse_pmt(&mut self, s: &[u8]) {
        if s[0] != 0x02 {
            self.stats.bad_sections += 1;
            return;
        }
        let version = (s[5] >> 1) & 0x1f;
        if self.pmt_version == Some(version) {
            return;
        }
        let info_len = (usize::from(s[10] & 0x0f) << 8) | usize::from(s[11]);
        let end = s.len() - 4;
        let mut pos = 12usize.saturating_add(info_len);
        let mut video: Option<(u16, EsKind)> = None;
        let mut audio: Option<(u16, EsKind)> = None;
        while let Some(es) = s.get(pos..pos + 5).filter(|_| pos + 5 <= end) {
            let stream_type = es[0];
            let pid = (u16::from(es[1] & 0x1f) << 8) | u16::from(es[2]);
            let es_info = (usize::from(es[3] & 0x0f) << 8) | usize::from(es[4]);
            pos = pos + 5 + es_info;
            match EsKind::from_stream_type(stream_type) {
                Some(k) if k.media() == MediaKind::Video && video.is_none() => {
                    video = Some((pid, k));
                }
                Some(k) if k.media() == MediaKind::Audio && audio.is_none() => {
                    audio = Some((pid, k));
                }
                Some(_) => {}
                None => self.stats.unsupported_streams += 1,
            }
        }
        self.pmt_version = Some(version);
        self.set_es(MediaKind::Video, video);
        self.set_es(MediaKind::Audio, audio);
    }

    fn set_es(&mut self, kind: MediaKind, es: Option<(u16, EsKind)>) {
        let slot = match kind {
            MediaKind::Video => &mut self.video_pes,
            MediaKind::Audio => &mut self.audio_pes,
        };
        let same = match (&*slot, es) {
            (Some(p), Some((pid, k))) => p.pid == pid && p.kind == k,
            (None, None) => true,
            _ => false,
        };
        if same {
            return;
        }
        match kind {
            MediaKind::Video => self.expect_video = es.is_some(),
            MediaKind::Audio => self.expect_audio = es.is_some(),
        }
        let slot = match kind {
            MediaKind::Video => &mut self.video_pes,
            MediaKind::Audio => &mut self.audio_pes,
        };
        let old = slot.take();
        *slot = es.map(|(pid, kind)| Pes {
            pid,
            kind,
            buf: BytesMut::new(),
            expected: None,
            collecting: false,
            last_cc: None,
        });
        if let Some(mut p) = old {
            self.complete_pes(&mut p);
        }
        match kind {
            MediaKind::Video => {
                self.flush_au();
                self.video = VideoState::default();
                if es.is_none() && self.video_track.take().is_some() {
                    self.announce();
                }
            }
            MediaKind::Audio => {
                self.audio = AudioState::default();
                if es.is_none() && self.audio_track.take().is_some() {
                    self.announce();
                }
            }
        }
    }

    // ---- PES ------------------------------------------------------------

    fn pes_packet(&mut self, pes: &mut Pes, pusi: bool, cc: u8, has_payload: bool, payload: &[u8]) {
        if !has_payload {
            return;
        }
        match pes.last_cc {
            Some(last) if last == cc => return, // duplicate packet
            Some(last) if (last + 1) & 0x0f != cc => {
                self.stats.cc_errors += 1;
                if pes.collecting && !pusi {
                    pes.collecting = false;
                    pes.buf.clear();
                    self.stats.dropped_pes += 1;
                }
            }
            _ => {}
        }
        pes.last_cc = Some(cc);
        if pusi {
            if pes.collecting {
                self.complete_pes(pes);
            }
            pes.buf.clear();
            pes.collecting = true;
            pes.expected = None;
        }
        if !pes.collecting {
            return;
        }
        if pes.buf.len() + payload.len() > MAX_PES_SIZE {
            pes.collecting = false;
            pes.buf.clear();
            self.stats.dropped_pes += 1;
            return;
        }
        pes.buf.extend_from_slice(payload);
        if pes.expected.is_none() && pes.buf.len() >= 6 {
            let len = usize::from(u16::from_be_bytes([pes.buf[4], pes.buf[5]]));
            pes.expected = Some(if len == 0 { usize::MAX } else { len + 6 });
        }
        if pes.expected.is_some_and(|e| pes.buf.len() >= e) {
            self.complete_pes(pes);
        }
    }

    /// A whole PES is in `pes.buf`: parse its header and hand the payload on.
    fn complete_pes(&mut self, pes: &mut Pes) {
        if !pes.collecting {
            return;
        }
        pes.collecting = false;
        let mut buf = std::mem::take(&mut pes.buf);
        if let Some(e) = pes.expected.filter(|e| *e != usize::MAX) {
            buf.truncate(e);
        }
        let Some(h) = parse_pes_header(&buf) else {
            self.stats.dropped_pes += 1;
            buf.clear();
            pes.buf = buf;
            return;
        };
        let pts = h.pts.map(|p| self.widen(p));
        let dts = h.dts.map(|d| self.widen(d));
        match pes.kind {
            EsKind::H264 | EsKind::H265 => {
                // Copied into the access unit: the buffer is reused.
                self.video_pes_data(pes.kind, pts, dts, &buf[h.payload_start..]);
                buf.clear();
                pes.buf = buf;
            }
            EsKind::Aac => {
                // Raw frames are zero-copy slices of the PES.
                let data = buf.split_off(h.payload_start).freeze();
                self.audio_pes_data(pts, &data);
            }
        }
    }

    /// Widens a 33-bit timestamp next to the last one seen (any PID).
    fn widen(&mut self, raw: u64) -> i64 {
        let raw = (raw & ((1 << 33) - 1)) as i64;
        let v = match self.clock {
            None => raw,
            Some((last, last_raw)) => {
                let mut d = raw - last_raw;
                if d > WRAP_33 / 2 {
                    d -= WRAP_33;
                } else if d < -WRAP_33 / 2 {
                    d += WRAP_33;
                }
                last.saturating_add(d)
            }
        };
        self.clock = Some((v, raw));
        v
    }

    // ---- video ----------------------------------------------------------

    fn video_pes_data(&mut self, kind: EsKind, pts: Option<i64>, dts: Option<i64>, data: &[u8]) {
        if let Some(pts) = pts {
            // A PES with a PTS starts a new access unit.
            self.flush_au();
            self.video.au = Some((
                pts,
                dts.unwrap_or(pts),
                Vec::with_capacity(data.len() + 16),
                false,
            ));
        } else if self.video.au.is_none() {
            self.stats.dropped_frames += 1;
            return;
        }
        let mut config_changed = false;
        let mut key = false;
        let mut nals: Vec<&[u8]> = Vec::new();
        for_each_nal(data, |nal| nals.push(nal));
        for nal in nals {
            match kind {
                EsKind::H264 => match h264::nal_type(nal) {
                    Some(h264::NAL_SPS) => config_changed |= set_ps(&mut self.video.sps, nal),
                    Some(h264::NAL_PPS) => config_changed |= set_ps(&mut self.video.pps, nal),
                    Some(h264::NAL_AUD) | Some(12) => {}
                    Some(t) => {
                        key |= t == h264::NAL_IDR;
                        self.append_nal(nal);
                    }
                    None => {}
                },
                _ => match hevc::nal_type(nal) {
                    Some(hevc::NAL_VPS) => config_changed |= set_ps(&mut self.video.vps, nal),
                    Some(hevc::NAL_SPS) => config_changed |= set_ps(&mut self.video.sps, nal),
                    Some(hevc::NAL_PPS) => config_changed |= set_ps(&mut self.video.pps, nal),
                    Some(hevc::NAL_AUD) | Some(38) => {}
                    Some(t) => {
                        key |= hevc::is_irap_type(t);
                        self.append_nal(nal);
                    }
                    None => {}
                },
            }
        }
        if let Some(au) = self.video.au.as_mut() {
            au.3 |= key;
        }
        if config_changed {
            self.video_config(kind);
        }
    }

    fn append_nal(&mut self, nal: &[u8]) {
        if let Some((_, _, buf, _)) = self.video.au.as_mut() {
            // NAL units come out of PES payloads, far below 4 GiB.
            let len = u32::try_from(nal.len()).unwrap_or(u32::MAX);
            buf.extend_from_slice(&len.to_be_bytes());
            buf.extend_from_slice(nal);
        }
    }

    fn video_config(&mut self, kind: EsKind) {
        let (Some(sps), Some(pps)) = (self.video.sps.clone(), self.video.pps.clone()) else {
            return;
        };
        let info = match kind {
            EsKind::H264 => {
                let Ok(rec) = h264::build_avcc(&[&sps], &[&pps]) else {
                    return;
                };
                let config = Bytes::from(rec);
                let Ok(c) = AvcConfig::parse(&config) else {
                    return;
                };
                TrackInfo {
                    id: VIDEO_TRACK,
                    codec: Codec::H264,
                    timescale: Timescale::MPEG,
                    codec_string: c.codec_string(),
                    params: TrackParams::Video(VideoParams {
                        width: c.width,
                        height: c.height,
                        frame_rate: c.frame_rate,
                    }),
                    config,
                    bitrate: None,
                }
            }
            _ => {
                let Some(vps) = self.video.vps.clone() else {
                    return;
                };
                let Ok(rec) = hevc::build_hvcc(&[&vps], &[&sps], &[&pps]) else {
                    return;
                };
                let config = Bytes::from(rec);
                let Ok(c) = HevcConfig::parse(&config) else {
                    return;
                };
                TrackInfo {
                    id: VIDEO_TRACK,
                    codec: Codec::H265,
                    timescale: Timescale::MPEG,
                    codec_string: c.codec_string(),
                    params: TrackParams::Video(VideoParams {
                        width: c.width,
                        height: c.height,
                        frame_rate: c.frame_rate,
                    }),
                    config,
                    bitrate: None,
                }
            }
        };
        if self.video_track.as_ref() != Some(&info) {
            self.video_track = Some(info);
            self.announce();
        }
    }

    fn flush_au(&mut self) {
        let Some((pts, dts, data, key)) = self.video.au.take() else {
            return;
        };
        if data.is_empty() {
            return;
        }
        self.stats.video_frames += 1;
        self.push_frame(
            MediaKind::Video,
            Frame {
                track: VIDEO_TRACK,
                dts,
                pts,
                keyframe: key,
                data: Bytes::from(data),
            },
        );
    }

    // ---- audio ----------------------------------------------------------

    fn audio_pes_data(&mut self, pts90: Option<i64>, data: &Bytes) {
        let mut carry = std::mem::take(&mut self.audio.carry);
        let carried = carry.len();
        // Frames cut by a PES boundary are joined (rare; ffmpeg never does it).
        let joined: Bytes = if carried == 0 {
            data.clone()
        } else {
            carry.extend_from_slice(data);
            Bytes::from(std::mem::take(&mut carry))
        };
        let mut pos = 0usize;
        let mut pes_pts_used = false;
        while pos < joined.len() {
            let rest = &joined[pos..];
            let h = match parse_adts(rest) {
                Ok(Some(h)) => h,
                Ok(None) => {
                    self.audio.carry = rest.to_vec();
                    break;
                }
                Err(_) => {
                    // Lost ADTS sync: look for the next syncword.
                    self.stats.dropped_frames += 1;
                    match rest.get(1..).and_then(|r| {
                        r.windows(2)
                            .position(|w| w[0] == 0xff && w[1] & 0xf0 == 0xf0)
                    }) {
                        Some(off) => {
                            pos += 1 + off;
                            continue;
                        }
                        None => break,
                    }
                }
            };
            let header_len = if rest[1] & 0x01 == 0 { 9 } else { 7 };
            let frame_len = header_len + h.payload_len;
            if rest.len() < frame_len {
                if rest.len() > 8191 {
                    break;
                }
                self.audio.carry = rest.to_vec();
                break;
            }
            let key = (
                h.audio_object_type,
                h.sampling_frequency_index,
                h.channel_configuration,
            );
            if self.audio.asc_key != Some(key) && !self.audio_config(key) {
                self.stats.dropped_frames += 1;
                pos += frame_len;
                continue;
            }
            let Some(track) = self.audio_track.as_ref() else {
                pos += frame_len;
                continue;
            };
            let rate = track.timescale;
            let spf = i64::from(track.audio().map_or(1024, |a| a.samples_per_frame));
            // The PES timestamp belongs to the first frame that starts in it.
            let pts = match (pts90, pes_pts_used || pos < carried) {
                (Some(p), false) => {
                    pes_pts_used = true;
                    rescale(p, Timescale::MPEG, rate)
                }
                _ => match self.audio.next_pts {
                    Some(n) => n,
                    None => {
                        self.stats.dropped_frames += 1;
                        pos += frame_len;
                        continue;
                    }
                },
            };
            self.audio.next_pts = Some(pts.saturating_add(spf));
            let raw = joined.slice(pos + header_len..pos + frame_len);
            pos += frame_len;
            if raw.is_empty() {
                continue;
            }
            self.stats.audio_frames += 1;
            self.push_frame(
                MediaKind::Audio,
                Frame {
                    track: AUDIO_TRACK,
                    dts: pts,
                    pts,
                    keyframe: true,
                    data: raw,
                },
            );
        }
    }

    /// Derives the AudioSpecificConfig of an ADTS header; false if unusable.
    fn audio_config(&mut self, (aot, sfi, ch): (u8, u8, u8)) -> bool {
        let v: u16 = (u16::from(aot & 0x1f) << 11)
            | (u16::from(sfi & 0x0f) << 7)
            | (u16::from(ch & 0x0f) << 3);
        let config = Bytes::copy_from_slice(&v.to_be_bytes());
        let Ok(asc) = Asc::parse(&config) else {
            return false;
        };
        let Some(rate) = Timescale::new(asc.sample_rate()) else {
            return false;
        };
        self.audio.asc_key = Some((aot, sfi, ch));
        self.audio.next_pts = None;
        let info = TrackInfo {
            id: AUDIO_TRACK,
            codec: Codec::Aac,
            timescale: rate,
            codec_string: asc.codec_string(),
            params: TrackParams::Audio(AudioParams {
                sample_rate: asc.sample_rate(),
                channels: asc.channels(),
                samples_per_frame: asc.samples_per_frame(),
            }),
            config,
            bitrate: None,
        };
        if self.audio_track.as_ref() != Some(&info) {
            self.audio_track = Some(info);
            self.announce();
        }
        true
    }

    // ---- output -----------------------------------------------------------

    fn current_tracks(&self) -> Tracks {
        let mut v = Vec::with_capacity(2);
        v.extend(self.video_track.clone());
        v.extend(self.audio_track.clone());
        Tracks::new(v)
    }

    /// A configuration changed: re-announce if streaming, else see whether
    /// start-up is complete.
    fn announce(&mut self) {
        if self.emitted.is_some() {
            let t = self.current_tracks();
            if self.emitted.as_ref() != Some(&t) {
                self.interleave(true);
                self.stats.tracks_emitted += 1;
                self.emitted = Some(t.clone());
                self.out.push_back(MediaEvent::Tracks(t));
            }
        } else if (!self.expect_video || self.video_track.is_some())
            && (!self.expect_audio || self.audio_track.is_some())
        {
            self.release();
        }
    }

    /// Emits the track set and the frames buffered during start-up.
    fn release(&mut self) {
        let t = self.current_tracks();
        if t.is_empty() {
            return;
        }
        self.stats.tracks_emitted += 1;
        self.emitted = Some(t.clone());
        self.out.push_back(MediaEvent::Tracks(t));
        while let Some(f) = self.pending.pop_front() {
            if self.track_known(f.track) {
                self.queue(f);
            } else {
                self.stats.dropped_frames += 1;
            }
        }
        self.interleave(false);
    }

    fn queue(&mut self, f: Frame) {
        if f.track == VIDEO_TRACK {
            self.queued_video.push_back(f);
        } else {
            self.queued_audio.push_back(f);
        }
    }

    /// Moves queued frames to the output in decode-time order across the
    /// tracks (a TS muxer packs several audio frames per PES, so audio
    /// arrives late next to video). A track waits for the other at most
    /// [`MAX_INTERLEAVE_TICKS`] of its own media; `force` empties both.
    fn interleave(&mut self, force: bool) {
        let both = self
            .emitted
            .as_ref()
            .is_some_and(|t| t.get(VIDEO_TRACK).is_some() && t.get(AUDIO_TRACK).is_some());
        loop {
            let take_video = match (self.queued_video.front(), self.queued_audio.front()) {
                (Some(v), Some(a)) => {
                    v.dts_time(self.timescale_of(VIDEO_TRACK))
                        <= a.dts_time(self.timescale_of(AUDIO_TRACK))
                }
                (Some(_), None) => {
                    if !(force || !both || self.span_exceeded(true)) {
                        break;
                    }
                    true
                }
                (None, Some(_)) => {
                    if !(force || !both || self.span_exceeded(false)) {
                        break;
                    }
                    false
                }
                (None, None) => break,
            };
            let f = if take_video {
                self.queued_video.pop_front()
            } else {
                self.queued_audio.pop_front()
            };
            if let Some(f) = f {
                self.out.push_back(MediaEvent::Frame(f));
            }
        }
    }

    fn span_exceeded(&self, video: bool) -> bool {
        let (q, id) = if video {
            (&self.queued_video, VIDEO_TRACK)
        } else {
            (&self.queued_audio, AUDIO_TRACK)
        };
        match (q.front(), q.back()) {
            (Some(a), Some(b)) => {
                let ts = self.timescale_of(id);
                b.dts_time(ts)
                    .saturating_sub(a.dts_time(ts))
                    .ticks_at(Timescale::MPEG)
                    > MAX_INTERLEAVE_TICKS
            }
            _ => false,
        }
    }

    fn track_known(&self, id: TrackId) -> bool {
        self.emitted.as_ref().is_some_and(|t| t.get(id).is_some())
    }

    fn push_frame(&mut self, kind: MediaKind, frame: Frame) {
        let configured = match kind {
            MediaKind::Video => self.video_track.is_some(),
            MediaKind::Audio => self.audio_track.is_some(),
        };
        if !configured {
            self.stats.dropped_frames += 1;
            return;
        }
        if self.emitted.is_some() {
            if self.track_known(frame.track) {
                self.queue(frame);
                self.interleave(false);
            } else {
                self.stats.dropped_frames += 1;
            }
            return;
        }
        // Starting up: a stream of the PMT still lacks its configuration.
        let span_exceeded = self.pending.front().is_some_and(|first| {
            let a = first.dts_time(self.timescale_of(first.track));
            let b = frame.dts_time(self.timescale_of(frame.track));
            b.saturating_sub(a).ticks_at(Timescale::MPEG) > STARTUP_BUFFER_TICKS
        });
        self.pending.push_back(frame);
        if span_exceeded || self.pending.len() >= STARTUP_BUFFER_FRAMES {
            self.release();
        }
    }

    fn timescale_of(&self, id: TrackId) -> Timescale {
        let t = if id == VIDEO_TRACK {
            &self.video_track
        } else {
            &self.audio_track
        };
        t.as_ref().map_or(Timescale::MPEG, |t| t.timescale)
    }
}

/// Whether a packet repeats the previous continuity counter (a permitted
/// duplicate); updates the counter.
fn duplicate(last: &mut Option<u8>, cc: u8) -> bool {
    let dup = *last == Some(cc);
    *last = Some(cc);
    dup
}

fn set_ps(slot: &mut Option<Bytes>, nal: &[u8]) -> bool {
    if slot.as_deref() == Some(nal) {
        return false;
    }
    *slot = Some(Bytes::copy_from_slice(nal));
    true
}

struct PesHeader {
    pts: Option<u64>,
    dts: Option<u64>,
    payload_start: usize,
}

fn parse_pes_header(b: &[u8]) -> Option<PesHeader> {
    if b.get(..3)? != [0, 0, 1] {
        return None;
    }
    let stream_id = *b.get(3)?;
    // Streams without the optional header (padding, private_2, ...).
    if matches!(
        stream_id,
        0xbc | 0xbe | 0xbf | 0xf0 | 0xf1 | 0xff | 0xf2 | 0xf8
    ) {
        return Some(PesHeader {
            pts: None,
            dts: None,
            payload_start: 6.min(b.len()),
        });
    }
    let flags = *b.get(7)?;
    let hdr_len = usize::from(*b.get(8)?);
    let payload_start = 9 + hdr_len;
    if payload_start > b.len() {
        return None;
    }
    let pts_dts = flags >> 6;
    let pts = if pts_dts & 0x02 != 0 {
        Some(read_ts(b.get(9..14)?)?)
    } else {
        None
    };
    let dts = if pts_dts == 0x03 {
        Some(read_ts(b.get(14..19)?)?)
    } else {
        None
    };
    Some(PesHeader {
        pts,
        dts,
        payload_start,
    })
}

fn read_ts(b: &[u8]) -> Option<u64> {
    let b: &[u8; 5] = b.try_into().ok()?;
    Some(
        (u64::from(b[0] >> 1) & 0x07) << 30
            | u64::from(b[1]) << 22
            | (u64::from(b[2]) >> 1) << 15
            | u64::from(b[3]) << 7
            | u64::from(b[4]) >> 1,
    )
}

/// Calls `f` with every NAL unit of an Annex B byte stream (without start
/// codes and trailing zero bytes).
fn for_each_nal<'a>(data: &'a [u8], mut f: impl FnMut(&'a [u8])) {
    let mut start: Option<usize> = None;
    let mut i = 0usize;
    let n = data.len();
    while i + 2 < n {
        // Find the next 0x01 quickly, then look back for 00 00.
        let Some(off) = memchr::memchr(1, &data[i + 2..]) else {
            break;
        };
        let one = i + 2 + off;
        if data[one - 1] == 0 && data[one - 2] == 0 {
            if let Some(s) = start {
                emit_nal(&data[s..one - 2], &mut f);
            }
            start = Some(one + 1);
            i = one + 1;
        } else {
            i = one + 1;
        }
    }
    if let Some(s) = start
        && let Some(tail) = data.get(s..)
    {
        emit_nal(tail, &mut f);
    }
}

fn emit_nal<'a>(mut nal: &'a [u8], f: &mut impl FnMut(&'a [u8])) {
    while let [rest @ .., 0] = nal {
        nal = rest;
    }
    if !nal.is_empty() {
        f(nal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pes_timestamps_read_all_33_bits() {
        // PTS 0x1_2345_6789 with markers.
        let v: u64 = 0x1_2345_6789;
        let b = [
            0x21 | (((v >> 30) as u8 & 0x07) << 1),
            (v >> 22) as u8,
            (((v >> 15) as u8) << 1) | 1,
            (v >> 7) as u8,
            ((v as u8) << 1) | 1,
        ];
        assert_eq!(read_ts(&b), Some(v));
    }

    #[test]
    fn timestamps_widen_across_the_33_bit_wrap() {
        let mut d = TsDemuxer::new();
        let near = (1i64 << 33) - 3000;
        assert_eq!(d.widen(near as u64), near);
        assert_eq!(d.widen(3000), (1 << 33) + 3000);
        // A slightly older timestamp (audio before video) across the wrap.
        assert_eq!(d.widen((1u64 << 33) - 1000), (1 << 33) - 1000);
        assert_eq!(d.widen(6000), (1 << 33) + 6000);
    }

    #[test]
    fn nal_scan_handles_three_and_four_byte_start_codes() {
        let data = [
            0, 0, 0, 1, 9, 0xf0, 0, 0, 1, 0x67, 1, 2, 0, 0, 0, 1, 0x68, 3,
        ];
        let mut v = Vec::new();
        for_each_nal(&data, |n| v.push(n.to_vec()));
        assert_eq!(v, vec![vec![9, 0xf0], vec![0x67, 1, 2], vec![0x68, 3]]);
    }
}
