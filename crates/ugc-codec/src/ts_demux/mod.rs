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
//! One module per layer: `packet` (sync, packet header, adaptation field),
//! `psi` (PAT, PMT), `pes` (PES reassembly, PTS/DTS), `annexb` (H.264 /
//! H.265 access units), `adts` (AAC frames); `interleave` emits the track
//! sets and the frames in decode order.
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

mod adts;
mod annexb;
mod interleave;
mod packet;
mod pes;
mod psi;

use std::collections::VecDeque;

use ugc_core::{Frame, MediaEvent, TrackId, TrackInfo, Tracks};

use crate::ts::PACKET_SIZE;
use adts::AudioState;
use annexb::VideoState;
use pes::Pes;
use psi::Section;

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

pub(super) const SYNC: u8 = 0x47;
pub(super) const PAT_PID: u16 = 0;
pub(super) const NULL_PID: u16 = 0x1fff;
pub(super) const MAX_SECTION: usize = 1024;
pub(super) const WRAP_33: i64 = 1 << 33;

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
}
