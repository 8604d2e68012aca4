//! The segmenter: a sans-IO state machine that turns a live stream's
//! [`MediaEvent`]s into numbered init segments, GOP-aligned fMP4 media
//! segments and (optionally) LL-HLS partial segments.
//!
//! Contract (like str0m's "drain after every input"): call
//! [`Segmenter::push`] with each event and the wall clock of its arrival, then
//! drain [`Segmenter::poll`] until it returns `None`. Call
//! [`Segmenter::flush`] when the source went idle so the open segment is
//! published.
//!
//! Rules:
//! * A segment starts with a video keyframe (streams without video: with any
//!   audio frame) and is cut at the first keyframe at or after
//!   [`SegmenterConfig::target_duration_ms`]; it never holds part of a frame.
//! * `#EXT-X-TARGETDURATION` is fixed for the segmenter's life
//!   ([`Segment::target_duration_s`]: [`SegmenterConfig::target_duration_s`],
//!   or the configured duration or the first segment when longer, as HLS
//!   rounds it). To stay within it, a keyframe before the configured
//!   duration also cuts when waiting for the next one (the longest of the
//!   last eight keyframe intervals away) would make the segment longer: a
//!   scene cut that resets the encoder's GOP. A GOP longer than the target
//!   still makes longer segments (they are counted:
//!   [`SegmenterStats::target_overruns`]).
//! * A sample lasts until the next sample of its track; the last sample of a
//!   segment whose successor has not arrived yet gets its track's previous
//!   delta (audio: one frame).
//! * Audio is re-timed onto a clean clock: every frame lasts exactly
//!   `samples_per_frame` ticks at the sample rate, and the clock re-syncs to
//!   the input only when the two drift apart by more than one frame.
//! * [`MediaEvent::Discontinuity`] and a changed [`MediaEvent::Tracks`] close
//!   the open segment; the next one is marked discontinuous (a changed track
//!   set also gets a new numbered init segment). [`MediaEvent::End`] closes
//!   and reports [`SegmenterOutput::Ended`].
//!
//! # Aligned segments
//!
//! With [`SegmenterConfig::aligned`] every decision is a function of the
//! media timeline (the input's decode times), never of where the segmenter
//! started or of the wall clock, so origins that joined a stream at
//! different times serve the same media under the same URIs. With `T` the
//! configured duration and `cell(t) = floor((t + 50 ms) / T)` (the 50 ms
//! take a keyframe a little early for its boundary, as above):
//! * Segment `n` starts at the first video keyframe presented in cell `n`
//!   (by its presentation time: with B-frames an IDR presented on a
//!   boundary is decoded a frame or two before it) and takes `n` as its
//!   media sequence number. A cell with no keyframe a quarter of
//!   `T` after where the last keyframe fell in its own cell (or by the
//!   cell's last tenth) starts at the frame there instead (a GOP longer
//!   than `T`: that segment is not independent).
//! * After a discontinuity or a new track set in the middle of a cell, the
//!   next segment takes the next number and runs to the boundary after
//!   (up to twice the duration: [`SegmenterStats::mid_cell_overruns`]). A
//!   Hub with `discontinuity_grid` lands new sources on boundaries. After a
//!   reader skipped ([`DiscontinuityReason::ReaderSkipped`]: a hole on
//!   the same timeline) the media waits for the first keyframe of a cell
//!   whose number is free, so the segments after the hole are the ones
//!   every other segmenter makes.
//!   When the timeline jumps over whole cells (a hole in the media), the
//!   numbers jump too (an [`crate::LiveStream`] restarts its window there).
//! * A segmenter holds back the segments before that of its second cut
//!   (and before it has seen three keyframes): its first segment starts
//!   wherever it joined, with its parts, and what a segment leaves to the
//!   next (sound past its last part, the keyframe interval its last part
//!   is cut by) depends on where that segment started. The segment of the
//!   second cut follows one that started where every segmenter starts it.
//!   So a stream's first segment or two are never published, and a
//!   segmenter that joins publishes two or three segment durations later.
//! * Parts are cut as above from their segment's start; the audio clock
//!   snaps to whole frames counted from time 0 (not from the first frame
//!   seen); `mfhd` sequence numbers come from the segment number;
//!   `#EXT-X-TARGETDURATION` is the configured one from the start.
//! * Program date-times come from the arrival clock (a few milliseconds
//!   apart between origins) unless [`SegmenterConfig::date_anchor_ms`]
//!   dates the timeline itself: then a segment's date is the anchor plus
//!   its start's decode time, the same at every segmenter.

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use ugc_codec::fmp4;
use ugc_codec::ts::{Continuity, TsMuxer};
use ugc_core::time::rescale;
use ugc_core::{DiscontinuityReason, Frame, MediaEvent, MediaKind, Timescale, TrackInfo, Tracks};

use crate::chunks::Chunks;
use crate::error::Error;
use crate::ts_counters::TsCounters;

/// How much earlier than the configured duration a keyframe still ends a
/// segment (see `Segmenter::cut_at`): timestamp jitter, not a scene cut.
const CUT_TOLERANCE_MS: u32 = 50;

/// How many keyframe intervals predict the next one when a keyframe before
/// the target may cut ([`SegmenterStats::early_cuts`]): the longest of them.
/// Enough that a few scene cuts in a row do not hide the encoder's GOP; few
/// enough that one stall long ago does not cut at every keyframe.
const KEYFRAME_HISTORY: usize = 8;

/// Configuration of a [`Segmenter`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmenterConfig {
    /// Target segment duration; a segment is cut at the first keyframe at or
    /// after it. Default 2000 ms.
    pub target_duration_ms: u32,
    /// Target partial-segment duration for LL-HLS; `None` (the default) makes
    /// one part per segment and emits no [`SegmenterOutput::Part`].
    ///
    /// With parts, a part is cut before the reference frame that would make
    /// it longer than the target (so part durations stay at or below
    /// `#EXT-X-PART-INF:PART-TARGET` unless a single frame is longer), and
    /// each part is written as CMAF chunks (one `moof` + `mdat` per
    /// reference frame) announced with [`SegmenterOutput::PartChunk`] as
    /// soon as the next reference frame fixes their durations, so an origin
    /// can serve a preload-hinted part while it is being produced.
    pub part_target_ms: Option<u32>,
    /// `#EXT-X-TARGETDURATION` in whole seconds, fixed for the stream's
    /// life (RFC 8216 4.3.3.1 allows no change). `None` (the default): the
    /// larger of [`Self::target_duration_ms`] and the first segment (which
    /// shows the encoder's keyframe interval), by
    /// [`crate::playlist::target_duration_secs`]. Set it higher for encoders
    /// whose GOP varies, at the price of latency (players stay about three
    /// target durations behind live).
    pub target_duration_s: Option<u32>,
    /// Cut and number segments by the media timeline alone, so that two
    /// segmenters fed the same stream, one of them started later (two
    /// origins), make the same segments under the same numbers, byte for
    /// byte, from the later one's first published segment on. Default
    /// `false` (numbers from 0, cuts by duration). See [the module
    /// docs](self#aligned-segments).
    pub aligned: bool,
    /// The unix milliseconds of media time 0: a segment's program
    /// date-time is this plus its start's decode time (ms), whatever the
    /// arrival clock says, so segmenters fed the same timeline date their
    /// segments alike (`ugc_core::HubConfig::timeline_on_clock`: the
    /// timeline id is that anchor). `None` (the default): dated by the
    /// arrival clock (see [`Segmenter::push`]).
    pub date_anchor_ms: Option<i64>,
}

impl Default for SegmenterConfig {
    fn default() -> Self {
        SegmenterConfig {
            target_duration_ms: 2000,
            part_target_ms: None,
            target_duration_s: None,
            aligned: false,
            date_anchor_ms: None,
        }
    }
}

/// An initialization segment (`ftyp` + `moov`) for one track set.
#[derive(Debug, Clone)]
pub struct InitSegment {
    /// Its number (`init-<number>.mp4`), increasing from 0 per stream.
    pub number: u32,
    /// The track set it describes.
    pub tracks: Tracks,
    /// The bytes.
    pub data: Bytes,
}

/// A partial segment: one `moof` + `mdat`.
#[derive(Debug, Clone)]
pub struct Part {
    /// Index within its segment, from 0.
    pub index: u32,
    /// Starts with a keyframe (HLS `INDEPENDENT=YES`).
    pub independent: bool,
    /// Duration in milliseconds.
    pub duration_ms: u64,
    /// Its CMAF chunks (`moof` + `mdat` each).
    pub data: Chunks,
}

/// A closed media segment.
#[derive(Debug)]
pub struct Segment {
    /// Media sequence number, strictly increasing per stream from 0.
    pub msn: u64,
    /// Number of the init segment it needs.
    pub init: u32,
    /// A discontinuity precedes this segment.
    pub discontinuity: bool,
    /// Decode time of its first frame, in milliseconds.
    pub start_dts_ms: i64,
    /// Presentation time of its first frame, in milliseconds.
    pub start_pts_ms: i64,
    /// Duration in milliseconds: from its first keyframe to the next
    /// segment's (or to the end of its last frame when nothing follows).
    pub duration_ms: u64,
    /// `#EXT-X-TARGETDURATION` of the stream, in seconds: the same for every
    /// segment of a segmenter (see [`SegmenterConfig::target_duration_s`]).
    pub target_duration_s: u64,
    /// Wall-clock time of its first frame (unix milliseconds).
    pub program_date_time_ms: i64,
    /// Its parts, in order; [`Self::data`] shares their chunks.
    pub parts: Vec<Part>,
    /// The frames, in arrival order, with their input timestamps (for the
    /// MPEG-TS rendition).
    pub frames: Vec<Frame>,
    /// The track set the frames refer to.
    pub tracks: Tracks,
    /// The fMP4 media segment: `styp` followed by every part's chunks.
    pub data: Chunks,
    /// The continuity counters its MPEG-TS rendition starts from: where the
    /// previous segment's ends, so segments play back to back without
    /// continuity errors.
    ts_continuity: Continuity,
    ts: OnceLock<Bytes>,
}

impl Segment {
    /// Size of the fMP4 segment in bytes.
    pub fn fmp4_size(&self) -> usize {
        self.data.len()
    }

    /// The MPEG-TS rendition, muxed on first request and then cached. Its
    /// continuity counters continue the previous segment's.
    pub fn ts(&self) -> Result<Bytes, Error> {
        if let Some(b) = self.ts.get() {
            return Ok(b.clone());
        }
        let bytes = TsMuxer::new(&self.tracks)
            .and_then(|mut mux| {
                mux.set_continuity(&self.ts_continuity);
                mux.write_segment(&self.frames)
            })
            .map_err(|source| Error::Mux {
                what: format!("segment {} as MPEG-TS", self.msn),
                source,
            })?;
        // A concurrent request may have won; either value is the same.
        Ok(self.ts.get_or_init(|| bytes).clone())
    }

    /// Size of the MPEG-TS rendition, if it was rendered.
    pub fn ts_size(&self) -> Option<usize> {
        self.ts.get().map(Bytes::len)
    }
}

/// The header of a segment that just opened (LL-HLS: its parts are listed
/// before it closes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentStart {
    /// Its media sequence number.
    pub msn: u64,
    /// Number of the init segment it needs.
    pub init: u32,
    /// A discontinuity precedes it.
    pub discontinuity: bool,
    /// Wall-clock time of its first frame (unix milliseconds).
    pub program_date_time_ms: i64,
}

/// What the segmenter produced; drain with [`Segmenter::poll`].
#[derive(Debug, Clone)]
pub enum SegmenterOutput {
    /// A new init segment; the following segments refer to it.
    Init(Arc<InitSegment>),
    /// A segment opened (only with [`SegmenterConfig::part_target_ms`]).
    Opened(SegmentStart),
    /// The next bytes of part `part` of the open segment `msn`, which is
    /// still being written: one or more complete CMAF chunks (`moof` +
    /// `mdat`). The part's [`SegmenterOutput::Part`] follows; its data is
    /// the concatenation of its chunks (only with
    /// [`SegmenterConfig::part_target_ms`]).
    PartChunk {
        /// The segment the part belongs to.
        msn: u64,
        /// The part's index within its segment.
        part: u32,
        /// The chunk's bytes.
        data: Bytes,
    },
    /// A new part of the open segment `msn` (only with
    /// [`SegmenterConfig::part_target_ms`]).
    Part {
        /// The segment the part belongs to.
        msn: u64,
        /// The part.
        part: Arc<Part>,
    },
    /// Where the next part most likely goes (LL-HLS `#EXT-X-PRELOAD-HINT`),
    /// after a part was cut before the frame that follows it arrived: part
    /// `part` of segment `msn`, which is `(open msn + 1, 0)` when the part
    /// just cut is expected to be its segment's last (the next reference
    /// frame is due to be the keyframe that ends the segment). Only with
    /// [`SegmenterConfig::part_target_ms`].
    PreloadHint {
        /// The segment of the next part.
        msn: u64,
        /// The index of the next part within it.
        part: u32,
    },
    /// A closed segment.
    Segment(Arc<Segment>),
    /// The stream ended; nothing follows.
    Ended,
}

/// Counters of a [`Segmenter`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SegmenterStats {
    /// Frames dropped because no segment could start yet (waiting for a
    /// keyframe).
    pub frames_dropped: u64,
    /// Times the clean audio clock was re-synced to the input.
    pub audio_resyncs: u64,
    /// Segments longer than the fixed target duration allows (a GOP longer
    /// than it: the encoder's keyframe interval changed).
    pub target_overruns: u64,
    /// Segments cut at a keyframe before the configured duration, so that
    /// the next keyframe would not make them longer than the target.
    pub early_cuts: u64,
    /// Of [`Self::target_overruns`], aligned segments that a discontinuity
    /// started in the middle of a cell whose number was taken (they run
    /// to the boundary after; see `ugc_core::HubConfig::discontinuity_grid`).
    pub mid_cell_overruns: u64,
}

#[derive(Debug)]
struct TrackState {
    info: TrackInfo,
    /// fMP4 timescale.
    out_ts: Timescale,
    /// Audio samples per frame at `out_ts` (audio tracks only).
    audio_frame: Option<i64>,
    /// Output dts of the last sample of this track.
    last_out_dts: Option<i64>,
    /// Duration of the previous sample (the fallback for the last one).
    last_duration: u32,
    /// Duration of the sample before that (0 until known).
    prev_duration: u32,
    /// Aligned segments: the audio clock snaps to whole frames of the
    /// track's own phase, estimated from its last frames alone.
    aligned: bool,
    /// Aligned, audio: where the last [`PHASE_FRAMES`] frames fell within
    /// a frame's length (ticks), newest last.
    phases: VecDeque<i64>,
    /// Where the last sample ends when it was written with an assumed
    /// (nominal) duration before the next frame arrived (LL-HLS early part
    /// close): the next sample may not start before it, or decode times
    /// would overlap across chunks.
    committed_end: Option<i64>,
    /// The track's parameter sets as length-prefixed NAL units, to put in
    /// front of its next keyframe (a track change: see
    /// [`inband_parameter_sets`]); taken when used.
    inband: Option<Bytes>,
}

impl TrackState {
    fn new(info: &TrackInfo, aligned: bool) -> Self {
        let out_ts = fmp4::track_timescale(info);
        let audio_frame = match (info.kind(), info.audio()) {
            (MediaKind::Audio, Some(a)) if a.samples_per_frame > 0 => {
                let native = Timescale::new(a.sample_rate).unwrap_or(out_ts);
                Some(rescale(i64::from(a.samples_per_frame), native, out_ts)).filter(|&n| n > 0)
            }
            _ => None,
        };
        let last_duration = match (audio_frame, info.video().and_then(|v| v.frame_rate)) {
            (Some(n), _) => u32::try_from(n).unwrap_or(0),
            (None, Some(r)) if r.num > 0 => {
                let ticks = u64::from(out_ts.get()) * u64::from(r.den) / u64::from(r.num);
                u32::try_from(ticks).unwrap_or(0)
            }
            // 30 fps when nothing is known.
            _ => out_ts.get() / 30,
        };
        TrackState {
            info: info.clone(),
            out_ts,
            audio_frame,
            last_out_dts: None,
            last_duration,
            prev_duration: 0,
            aligned,
            phases: VecDeque::with_capacity(PHASE_FRAMES),
            committed_end: None,
            inband: None,
        }
    }

    /// Maps an input dts to the output timeline and returns it with the
    /// delta to the previous sample (`None` for the first).
    fn map_dts(&mut self, in_dts: i64, resyncs: &mut u64) -> (i64, Option<u32>) {
        let expected = rescale(in_dts, self.info.timescale, self.out_ts);
        let out = match (self.last_out_dts, self.audio_frame) {
            // Aligned: the frame grid from time 0, the same wherever the
            // track was first seen.
            (last, Some(frame)) if self.aligned => {
                // The grid of whole frames at the phase the last frames
                // show (their input times jitter by a millisecond): the
                // same in every segmenter that saw those frames, wherever
                // it started, and never ambiguous the way a grid at an
                // arbitrary phase is for frames that fall half-way.
                if self.phases.len() == PHASE_FRAMES {
                    self.phases.pop_front();
                }
                self.phases.push_back(expected.rem_euclid(frame));
                let phase = circular_mean(&self.phases, frame);
                let snapped = snap(expected.saturating_sub(phase), frame).saturating_add(phase);
                match last {
                    None => snapped,
                    Some(last) => {
                        let clean = last.saturating_add(frame);
                        if snapped != clean {
                            *resyncs += 1;
                        }
                        if snapped <= last { clean } else { snapped }
                    }
                }
            }
            (None, _) => expected,
            (Some(last), Some(frame)) => {
                let clean = last.saturating_add(frame);
                if clean.abs_diff(expected) > frame.unsigned_abs() && expected > last {
                    *resyncs += 1;
                    expected
                } else {
                    clean
                }
            }
            // Video: keep the timeline strictly increasing, and never
            // start before the end already promised for the previous
            // sample (input jitter of a tick or a millisecond moves this
            // frame that much). A frame that comes where the one before
            // was pushed to (an early part cut promised two frames' length
            // after dropped pictures, and the next picture came one frame
            // on) goes a tick after it: the same decode time twice is a
            // sample of no length, and ffmpeg calls the pair "non
            // monotonically increasing dts".
            (Some(last), None) => expected
                .max(last.saturating_add(1))
                .max(self.committed_end.take().unwrap_or(i64::MIN)),
        };
        let delta = self
            .last_out_dts
            .map(|last| u32::try_from(out.saturating_sub(last)).unwrap_or(u32::MAX));
        if let Some(d) = delta {
            self.prev_duration = self.last_duration;
            self.last_duration = d;
        }
        self.last_out_dts = Some(out);
        (out, delta)
    }

    /// How long the last sample most likely lasts, before the next one
    /// says: video takes the shorter of the last two deltas, so that
    /// millisecond timestamps (30 fps as 33/34/33 ms) never make a frame look
    /// a tick longer than it is. That would cut a 200 ms part of six frames
    /// after five (84 % of the target, under the 85 % LL-HLS asks for) and
    /// leave a one-frame part at the segment's end. Audio frames have their
    /// exact length.
    fn estimate(&self) -> u32 {
        match (self.audio_frame, self.prev_duration) {
            (None, p) if p > 0 => self.last_duration.min(p),
            _ => self.last_duration,
        }
    }
}

#[derive(Debug)]
struct PendingSample {
    track: usize,
    out_dts: i64,
    sample: fmp4::Sample,
}

#[derive(Debug)]
struct OpenSegment {
    msn: u64,
    discontinuity: bool,
    start_out_dts: i64,
    start_dts_ms: i64,
    start_pts_ms: i64,
    program_date_time_ms: i64,
    /// Input dts (ms) of its first frame, dated with the clock offset.
    start_media_ms: i64,
    /// Re-date it when it closes (the first segment).
    redate: bool,
    /// Samples not yet in a part.
    samples: Vec<PendingSample>,
    /// Per track: index into `samples` of its last sample, if there.
    last_idx: Vec<Option<usize>>,
    parts: Vec<Part>,
    part_start_out_dts: i64,
    /// Chunks of the part being written (LL-HLS).
    part_chunks: Vec<Bytes>,
    /// Whether the part being written starts with a reference keyframe.
    part_independent: Option<bool>,
    frames: Vec<Frame>,
    /// The end of the segment's last part, which waits for other tracks'
    /// samples up to there before it is cut.
    last_part_end: Option<i64>,
    /// Fragments (`moof` + `mdat`) written so far.
    fragments: u32,
}

/// The segmenter state machine; see the [module docs](self).
#[derive(Debug)]
pub struct Segmenter {
    config: SegmenterConfig,
    tracks: Option<Tracks>,
    states: Vec<TrackState>,
    /// Index into `states` of the track that cuts segments (video if any).
    reference: Option<usize>,
    init_number: Option<u32>,
    next_msn: u64,
    next_fragment_seq: u32,
    open: Option<OpenSegment>,
    discontinuity_pending: bool,
    /// The media timeline's wall clock: the smallest `arrival - media time`
    /// (unix ms minus input dts in ms) of the frames seen since the last
    /// reset (discontinuity, new track set, flush). A frame delivered late
    /// (a burst of cached frames when a reader starts at the GOP start, a
    /// network hiccup) does not move it; a frame on time lowers it.
    clock_offset_ms: Option<i64>,
    /// Date of the last closed segment (dates never go backwards).
    last_pdt_ms: Option<i64>,
    /// The next segment is the first: it is re-dated when it closes (its
    /// first frames may be a burst of cached frames delivered late).
    redate_next: bool,
    out: VecDeque<SegmenterOutput>,
    ended: bool,
    stats: SegmenterStats,
    /// Samples of other tracks (audio) that arrived after the last part of
    /// the segment just closed had been published, with their frames: they
    /// start the next segment.
    carry: Option<(Vec<PendingSample>, Vec<Frame>)>,
    /// Output dts of the reference track's last keyframe, and the interval
    /// to the one before: where the next keyframe is expected.
    last_keyframe: Option<i64>,
    keyframe_interval: Option<i64>,
    /// The last [`KEYFRAME_HISTORY`] keyframe intervals (reference
    /// timeline), newest last.
    keyframe_intervals: VecDeque<i64>,
    /// `#EXT-X-TARGETDURATION` in seconds, fixed when the first segment
    /// closes.
    target_s: Option<u64>,
    /// Continuity counters of the segments' MPEG-TS renditions.
    ts_counters: TsCounters,
    /// Aligned: the number of the last segment opened.
    last_msn: Option<u64>,
    /// Aligned: the number of a segment opened in the middle of a cell
    /// whose number was taken (after a discontinuity).
    mid_cell_msn: Option<u64>,
    /// Aligned, after a reader skipped (a hole on the same timeline) or an
    /// idle flush closed a segment: the last number used; keyframes of
    /// cells up to it do not open a segment.
    skipped_through: Option<u64>,
    /// Aligned: reference frames seen (counted up to 4: three before a
    /// segment's first make its first parts' frame durations known).
    ref_frames_seen: u8,
    /// Aligned: reference keyframes seen (counted up to 3: with two before
    /// a segment's first, the keyframe interval was known when the segment
    /// before it cut its last part, which decides what that segment leaves
    /// to this one).
    keyframes_seen: u8,
    /// Aligned: where in its cell the last reference keyframe was decoded,
    /// which puts the cut of a cell with no keyframe (a decode time too)
    /// after where one was due.
    last_key_phase: Option<i64>,
    /// Aligned: how long before its presentation the last reference
    /// keyframe was decoded (ms; B-frames' reorder delay).
    last_key_lead_ms: i64,
    /// Aligned: segments opened by a cut of the timeline (counted up to 2:
    /// the second such segment follows one that started where every
    /// segmenter starts it, so its parts, and what it leaves to the next,
    /// are cut alike).
    aligned_cuts: u8,
    /// Aligned: the first segment opened with enough of the stream seen
    /// before it to be cut as any other segmenter cuts it.
    publish_from: Option<u64>,
    /// Aligned: that segment's first output went out; nothing is held back
    /// any more.
    warm: bool,
}

impl Segmenter {
    /// A segmenter with `config`.
    pub fn new(config: SegmenterConfig) -> Self {
        let aligned = config.aligned;
        Segmenter {
            config,
            tracks: None,
            states: Vec::new(),
            reference: None,
            init_number: None,
            next_msn: 0,
            next_fragment_seq: 1,
            open: None,
            discontinuity_pending: false,
            clock_offset_ms: None,
            last_pdt_ms: None,
            redate_next: true,
            out: VecDeque::new(),
            ended: false,
            stats: SegmenterStats::default(),
            carry: None,
            last_keyframe: None,
            keyframe_interval: None,
            keyframe_intervals: VecDeque::with_capacity(KEYFRAME_HISTORY),
            target_s: None,
            ts_counters: TsCounters::default(),
            last_msn: None,
            mid_cell_msn: None,
            skipped_through: None,
            ref_frames_seen: 0,
            keyframes_seen: 0,
            aligned_cuts: 0,
            last_key_phase: None,
            last_key_lead_ms: 0,
            publish_from: None,
            warm: !aligned,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SegmenterConfig {
        &self.config
    }

    /// Counters.
    pub fn stats(&self) -> &SegmenterStats {
        &self.stats
    }

    /// Whether [`MediaEvent::End`] was pushed.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// Feeds one event that arrived at `now_unix_ms`. Drain [`Self::poll`]
    /// afterwards (also after an error: outputs made before it stay valid).
    pub fn push(&mut self, event: MediaEvent, now_unix_ms: i64) -> Result<(), Error> {
        if self.ended {
            return Err(Error::AfterEnd);
        }
        match event {
            MediaEvent::Tracks(tracks) => self.on_tracks(tracks),
            MediaEvent::Frame(frame) => self.on_frame(frame, now_unix_ms),
            MediaEvent::Discontinuity(reason) => {
                let r = self.close(None);
                self.discontinuity_pending = true;
                self.reset_timelines();
                if self.config.aligned && reason == DiscontinuityReason::ReaderSkipped {
                    self.skipped_through = self.last_msn;
                }
                r
            }
            MediaEvent::End => {
                let r = self.close(None);
                self.ended = true;
                self.out.push_back(SegmenterOutput::Ended);
                r
            }
            // `MediaEvent` is non-exhaustive; future events do not cut.
            _ => Ok(()),
        }
    }

    /// Closes the open segment (the source went idle). The next segment
    /// starts at the next keyframe and takes its date from the clock.
    ///
    /// A segment whose media would not reach past its own start on every
    /// track that has been sending stays open: a source cut off right
    /// after a keyframe (a transcoder killed, its sound a third of a second
    /// behind its video, held back by the encoder's lookahead) left a
    /// segment of a frame or two of video whose sound ends before that
    /// video starts. hls.js buffers audio and video as their intersection,
    /// so such a segment does not grow its buffer; it then counts both it
    /// and the segment before as loaded and waits, 12 s in the e2e test,
    /// before it loads on. If the source comes back on the same timeline (a
    /// takeover), the segment goes on with it; if the stream ends, the end
    /// closes it.
    ///
    /// Aligned: a segment closed here took its cell's number, so media that
    /// goes on in that cell (a standby's takeover on the same timeline)
    /// waits for a later cell's keyframe, as after a reader skipped: it
    /// would otherwise open a segment running to the boundary after, up to
    /// twice the duration.
    pub fn flush(&mut self, now_unix_ms: i64) -> Result<(), Error> {
        let _ = now_unix_ms;
        match self.open_reaches_past_its_start() {
            Some(false) => return Ok(()),
            Some(true) if self.config.aligned => self.skipped_through = self.last_msn,
            _ => {}
        }
        let r = self.close(None);
        self.clock_offset_ms = None;
        r
    }

    /// Whether the open segment has media presented at or after its first
    /// keyframe on every track that has been sending (`None`: no open
    /// segment).
    fn open_reaches_past_its_start(&self) -> Option<bool> {
        let open = self.open.as_ref()?;
        let ms = |f: &Frame| {
            let scale = self
                .states
                .iter()
                .find(|st| st.info.id == f.track)
                .map_or(Timescale::MILLIS, |st| st.info.timescale);
            rescale(f.pts, scale, Timescale::MILLIS)
        };
        let reference = self
            .reference
            .and_then(|r| self.states.get(r))
            .map(|st| st.info.id);
        let start = open
            .frames
            .iter()
            .find(|f| Some(f.track) == reference)
            .map(ms)?;
        Some(self.states.iter().all(|st| {
            // A track never heard from (declared but silent) waits for nothing.
            st.last_out_dts.is_none()
                || open
                    .frames
                    .iter()
                    .any(|f| f.track == st.info.id && ms(f) >= start)
        }))
    }

    /// The next output, if any. Call until `None` after every
    /// [`Self::push`] / [`Self::flush`].
    pub fn poll(&mut self) -> Option<SegmenterOutput> {
        loop {
            if let (o, true) = self.poll_all()? {
                return Some(o);
            }
        }
    }

    /// [`Self::poll`] with the outputs it holds back too, each with whether
    /// it is for live playlists (`true`) or held back (`false`): aligned
    /// segments before the second cut (see [the module
    /// docs](self#aligned-segments)), which a recording may keep (its
    /// first seconds) but a live window must not list (another origin
    /// names other bytes so). Without [`SegmenterConfig::aligned`] every
    /// output is `true`.
    pub fn poll_all(&mut self) -> Option<(SegmenterOutput, bool)> {
        let o = self.out.pop_front()?;
        if self.warm {
            return Some((o, true));
        }
        let from = self.publish_from;
        let live = match &o {
            SegmenterOutput::Init(_) | SegmenterOutput::Ended => true,
            SegmenterOutput::Opened(s) => from.is_some_and(|f| s.msn >= f),
            SegmenterOutput::Segment(s) => from.is_some_and(|f| s.msn >= f),
            _ => false,
        };
        // From the first output of the first published segment on,
        // everything goes out.
        if live && !matches!(o, SegmenterOutput::Init(_) | SegmenterOutput::Ended) {
            self.warm = true;
        }
        Some((o, live))
    }

    fn reset_timelines(&mut self) {
        for s in &mut self.states {
            s.last_out_dts = None;
        }
        self.clock_offset_ms = None;
        self.last_keyframe = None;
        self.keyframe_interval = None;
        self.keyframe_intervals.clear();
    }

    fn on_tracks(&mut self, tracks: Tracks) -> Result<(), Error> {
        if self.tracks.as_ref() == Some(&tracks) {
            return Ok(());
        }
        let r = self.close(None);
        let before: Vec<(ugc_core::TrackId, Bytes)> = self
            .states
            .iter()
            .map(|st| (st.info.id, st.info.config.clone()))
            .collect();
        let aligned = self.config.aligned;
        self.states = tracks.iter().map(|t| TrackState::new(t, aligned)).collect();
        self.last_keyframe = None;
        self.keyframe_interval = None;
        self.keyframe_intervals.clear();
        self.reference = tracks
            .iter()
            .position(|t| t.kind() == MediaKind::Video)
            .or_else(|| (!tracks.is_empty()).then_some(0));
        let number = self.init_number.map_or(0, |n| n.wrapping_add(1));
        if self.init_number.is_some() {
            self.discontinuity_pending = true;
            // A new init mid-stream: the parameter sets of a track whose
            // configuration changed go in band too.
            for st in &mut self.states {
                let same = before
                    .iter()
                    .any(|(id, config)| *id == st.info.id && *config == st.info.config);
                if !same {
                    st.inband = inband_parameter_sets(&st.info);
                }
            }
        }
        self.init_number = Some(number);
        self.clock_offset_ms = None;
        let data = fmp4::init_segment(tracks.as_slice()).map_err(|source| Error::Mux {
            what: format!("init {number}"),
            source,
        });
        self.tracks = Some(tracks.clone());
        let data = data?;
        self.out
            .push_back(SegmenterOutput::Init(Arc::new(InitSegment {
                number,
                tracks,
                data,
            })));
        r
    }

    fn on_frame(&mut self, frame: Frame, now_unix_ms: i64) -> Result<(), Error> {
        if self.tracks.is_none() {
            return Err(Error::FrameBeforeTracks {
                track: frame.track,
                dts: frame.dts,
            });
        }
        let Some(ti) = self.states.iter().position(|s| s.info.id == frame.track) else {
            return Err(Error::UnknownTrack {
                track: frame.track,
                dts: frame.dts,
            });
        };
        if let Some(st) = self.states.get(ti) {
            let media_ms = rescale(frame.dts, st.info.timescale, Timescale::MILLIS);
            let offset = now_unix_ms.saturating_sub(media_ms);
            self.clock_offset_ms = Some(self.clock_offset_ms.map_or(offset, |o| o.min(offset)));
        }
        let is_ref = self.reference == Some(ti);
        let is_audio = self
            .states
            .get(ti)
            .is_some_and(|s| s.info.kind() == MediaKind::Audio);
        // Every audio frame is a random access point, whatever the source says.
        let keyframe = frame.keyframe || is_audio;
        let starts = is_ref && keyframe;
        // Aligned: the reference frame's decode time (ms), which every
        // decision is made from.
        let aligned_t = (self.config.aligned && is_ref).then(|| {
            let scale = self
                .states
                .get(ti)
                .map_or(Timescale::MILLIS, |s| s.info.timescale);
            rescale(frame.dts, scale, Timescale::MILLIS)
        });
        // Aligned: where a keyframe is presented (ms), which puts it in its
        // cell. An encoder with B-frames decodes an IDR presented on a
        // boundary a frame or two before it (the ladder's x264: 67 ms at
        // 30 fps), past the tolerance, so by its decode time it fell at the
        // end of the cell before: no cut there, the cell's late cut a frame
        // or two before it instead, and every segment started between
        // keyframes. Across a hole in the timeline (a new source landed on
        // the grid) x264 decodes the IDR after it at the time of a picture
        // before the hole: 593 ms before it is presented, in e2e_roles. A
        // composition offset past two cells (no encoder's) is not trusted:
        // the decode time decides.
        let key_t = aligned_t.filter(|_| starts).map(|t| {
            let scale = self
                .states
                .get(ti)
                .map_or(Timescale::MILLIS, |s| s.info.timescale);
            let lead = rescale(frame.pts, scale, Timescale::MILLIS).saturating_sub(t);
            let most = i64::from(self.config.target_duration_ms).saturating_mul(2);
            if (0..=most).contains(&lead) {
                t.saturating_add(lead)
            } else {
                t
            }
        });
        if self.open.is_none() && !starts {
            self.stats.frames_dropped += 1;
            return Ok(());
        }
        // Aligned, after a reader skipped: the media resumes on the same
        // timeline. A keyframe in a cell whose number is taken would open a
        // segment running to the boundary after (up to twice the duration)
        // under the number the other origins give the next cell's segment:
        // the media waits for the next cell's keyframe instead.
        if self.open.is_none()
            && let (Some(t), Some(last)) = (key_t, self.skipped_through)
        {
            if u64::try_from(self.cell_of(t)).is_ok_and(|cell| cell <= last) {
                self.stats.frames_dropped += 1;
                return Ok(());
            }
            self.skipped_through = None;
        }
        if self.config.aligned && is_ref {
            self.ref_frames_seen = self.ref_frames_seen.saturating_add(1).min(4);
            if starts {
                self.keyframes_seen = self.keyframes_seen.saturating_add(1).min(3);
            }
        }
        // Aligned: a frame that starts a segment keeps its own decode time,
        // not the end an early part cut promised for the frame before it
        // (which depends on where that segment's parts fell, so on where
        // the segmenter joined); the two overlap by that estimate's error,
        // under a millisecond, across the boundary.
        if let (Some(t), Some(open)) = (aligned_t, &self.open)
            && self.aligned_cut(open.msn, t, key_t).is_some()
            && let Some(st) = self.states.get_mut(ti)
        {
            st.committed_end = None;
        }
        let (out_dts, delta) = match self.states.get_mut(ti) {
            Some(st) => st.map_dts(frame.dts, &mut self.stats.audio_resyncs),
            None => return Ok(()),
        };
        // The previous sample of this track now knows its duration.
        if let (Some(open), Some(d)) = (self.open.as_mut(), delta)
            && let Some(Some(j)) = open.last_idx.get(ti).copied()
            && let Some(prev) = open.samples.get_mut(j)
        {
            prev.sample.duration = d;
        }
        if starts {
            if let Some(prev) = self.last_keyframe.filter(|p| out_dts > *p) {
                let interval = out_dts.saturating_sub(prev);
                self.keyframe_interval = Some(interval);
                if self.keyframe_intervals.len() == KEYFRAME_HISTORY {
                    self.keyframe_intervals.pop_front();
                }
                self.keyframe_intervals.push_back(interval);
            }
            self.last_keyframe = Some(out_dts);
        }
        let mut result = Ok(());
        if let Some(end) = self.open.as_ref().and_then(|o| o.last_part_end) {
            let ref_ts = self.ref_ts();
            let own_ts = self.states.get(ti).map_or(ref_ts, |s| s.out_ts);
            if is_ref {
                // The keyframe came (it closes the part with the segment)
                // or another frame did (the part goes on).
                if let Some(open) = self.open.as_mut() {
                    open.last_part_end = None;
                }
            } else if out_dts >= rescale(end, ref_ts, own_ts) {
                // Past the end: this sample starts the next part.
                result = self.cut_part_early(self.reference.unwrap_or(0), end, true);
            }
        }
        // Aligned: the number of the segment a cut here opens.
        let mut aligned_next = None;
        if is_ref && let Some(open) = &self.open {
            let span = out_dts.saturating_sub(open.start_out_dts);
            let target = self.cut_at(ti);
            let aligned_cut = aligned_t.and_then(|t| self.aligned_cut(open.msn, t, key_t));
            let hole = aligned_cut.is_some_and(|n| n > open.msn.saturating_add(1));
            if let Some(next) = aligned_cut {
                aligned_next = Some(next);
                if hole {
                    // Over a hole the segment ends with its media: its last
                    // frame lasts as long as the one before, not until this.
                    let before = self.states.get(ti).map_or(0, |s| s.prev_duration);
                    if let Some(open) = self.open.as_mut()
                        && let Some(Some(j)) = open.last_idx.get(ti).copied()
                        && let Some(last) = open.samples.get_mut(j)
                        && before > 0
                    {
                        last.sample.duration = before;
                    }
                }
                result = self.close((!hole).then_some(out_dts));
            } else if self.config.aligned {
                // Only the timeline cuts.
                if let Some(pt) = self.config.part_target_ms {
                    result = self.part_on_arrival(ti, out_dts, delta, pt);
                }
            } else if starts && span >= target {
                result = self.close(Some(out_dts));
            } else if starts && self.cut_before_target(span, ti) {
                self.stats.early_cuts += 1;
                result = self.close(Some(out_dts));
            } else if let Some(pt) = self.config.part_target_ms {
                result = self.part_on_arrival(ti, out_dts, delta, pt);
            }
        }
        if let (Some(k), Some(t)) = (key_t, aligned_t) {
            self.last_key_phase = Some(self.phase_of(t));
            self.last_key_lead_ms = k.saturating_sub(t);
        }
        if self.open.is_none() {
            if aligned_next.is_some() {
                self.aligned_cuts = self.aligned_cuts.saturating_add(1).min(2);
            }
            if let Some(t) = key_t.or(aligned_t) {
                let cell = u64::try_from(self.cell_of(t)).unwrap_or(0);
                self.next_msn = aligned_next.unwrap_or(match self.last_msn {
                    // After a discontinuity mid-cell: the next number, to
                    // the boundary after.
                    Some(last) => cell.max(last.saturating_add(1)),
                    None => cell,
                });
                if self.next_msn > cell {
                    self.mid_cell_msn = Some(self.next_msn);
                }
            }
            self.open_segment(&frame, ti, out_dts, now_unix_ms);
        }
        let Some(st) = self.states.get(ti) else {
            return result;
        };
        // Video keeps the input's composition offset, also when its decode
        // time was moved a tick forward (see `committed_end`). Audio has no
        // reordering: it is presented when it is decoded, on the clean clock.
        // (Taking its input pts instead would carry the publisher's
        // millisecond jitter into composition offsets, and MSE, which
        // buffers by presentation time, would see small holes.)
        let cts = match st.audio_frame {
            None => rescale(frame.pts, st.info.timescale, st.out_ts).saturating_sub(rescale(
                frame.dts,
                st.info.timescale,
                st.out_ts,
            )),
            Some(_) => 0,
        };
        let cts = i32::try_from(cts).unwrap_or(if cts < 0 { i32::MIN } else { i32::MAX });
        let data = match self.states.get_mut(ti) {
            Some(st) if keyframe && st.inband.is_some() => {
                with_parameter_sets(st.inband.take(), &frame.data, &st.info)
            }
            _ => frame.data.clone(),
        };
        let Some(st) = self.states.get(ti) else {
            return result;
        };
        let sample = fmp4::Sample {
            duration: st.last_duration,
            cts_offset: cts,
            keyframe,
            data,
        };
        if let Some(open) = self.open.as_mut() {
            if let Some(slot) = open.last_idx.get_mut(ti) {
                *slot = Some(open.samples.len());
            }
            open.samples.push(PendingSample {
                track: ti,
                out_dts,
                sample,
            });
            open.frames.push(frame);
        }
        // LL-HLS: close the part as soon as its last reference frame is in,
        // not when the next one arrives (a frame interval later): with the
        // frame given its track's estimated duration
        // (`TrackState::estimate`), the part ends where the next frame is
        // expected, and a part is cut when one more frame would not fit in
        // the target (the same rule as the check on arrival above, one frame
        // earlier). The part that reaches
        // the segment's target duration is cut too: the next frame is most
        // likely the keyframe that ends the segment, and waiting for it
        // would make the segment's last part a frame interval late (the
        // availability goal is part duration + 50 ms). "Most likely": the
        // keyframe interval seen so far puts the next keyframe there (within
        // half a frame), or no interval is known yet and the part is the
        // first to reach the target. That part also waits for the other
        // tracks' samples up to its end (`last_part_end`, usually a few ms),
        // so the next segment does not start with audio from before its
        // keyframe; the keyframe closes it if it comes first. Samples of
        // other tracks that still arrive late start the next segment (see
        // `carry`); if no keyframe comes, the segment goes on with parts.
        if is_ref && let (Some(pt), Some(open)) = (self.config.part_target_ms, &self.open) {
            let nominal = self.states.get(ti).map_or(0, |s| i64::from(s.estimate()));
            let end = out_dts.saturating_add(nominal);
            let span = end.saturating_sub(open.part_start_out_dts);
            let target = self.ticks_of_ms(self.config.target_duration_ms, ti);
            let keyframe_due = match (self.last_keyframe, self.keyframe_interval) {
                (Some(k), Some(i)) => {
                    k.saturating_add(i).abs_diff(end) <= nominal.unsigned_abs() / 2
                }
                _ => open.part_start_out_dts.saturating_sub(open.start_out_dts) < target,
            };
            let reaches_target = if self.config.aligned {
                // The segment's end is the next cell boundary.
                let boundary_ms = i64::try_from(open.msn)
                    .unwrap_or(i64::MAX)
                    .saturating_add(1)
                    .saturating_mul(i64::from(self.config.target_duration_ms))
                    .saturating_sub(i64::from(CUT_TOLERANCE_MS))
                    // Decoded that much before it is presented.
                    .saturating_sub(self.last_key_lead_ms);
                let boundary = rescale(boundary_ms, Timescale::MILLIS, self.ref_ts());
                end >= boundary && keyframe_due
            } else {
                end.saturating_sub(open.start_out_dts) >= target && keyframe_due
            };
            let full = span.saturating_add(nominal) > self.ticks_of_ms(pt, ti);
            if nominal > 0 && span > 0 && (reaches_target || full) {
                if !reaches_target || self.others_cover(end) {
                    let r = self.cut_part_early(ti, end, reaches_target);
                    if result.is_ok() {
                        result = r;
                    }
                } else if let Some(open) = self.open.as_mut() {
                    // The segment's last part waits for the audio up to its
                    // end (a few ms), so that the next segment does not
                    // start with audio from before its keyframe.
                    open.last_part_end = Some(end);
                }
            }
        } else if !is_ref
            && let Some(end) = self.open.as_ref().and_then(|o| o.last_part_end)
            && self.others_cover(end)
        {
            let r = self.cut_part_early(self.reference.unwrap_or(0), end, true);
            if result.is_ok() {
                result = r;
            }
        }
        result
    }

    /// A reference frame (track `ti`, at `out_dts`, `delta` after the
    /// previous one) arrived in the open segment and does not cut it: cut
    /// the part before it if it would make the part longer than `pt` ms,
    /// else write the pending samples as a chunk.
    fn part_on_arrival(
        &mut self,
        ti: usize,
        out_dts: i64,
        delta: Option<u32>,
        pt: u32,
    ) -> Result<(), Error> {
        let Some(open) = &self.open else {
            return Ok(());
        };
        let part_span = out_dts.saturating_sub(open.part_start_out_dts);
        // This frame most likely lasts its track's estimate (see
        // `TrackState::estimate`): cut now if including it would
        // make the part longer than the target.
        let next = delta.map_or(0, |_| {
            i64::from(self.states.get(ti).map_or(0, TrackState::estimate))
        });
        let has_pending = !open.samples.is_empty();
        if part_span > 0
            && part_span.saturating_add(next) > self.ticks_of_ms(pt, ti)
            && (has_pending || !open.part_chunks.is_empty())
        {
            self.cut_part(out_dts)
        } else if open.samples.iter().any(|s| Some(s.track) == self.reference) {
            // One chunk per reference frame: samples of other tracks
            // pending since a part was closed with its last
            // reference frame wait for this one.
            self.write_chunk().map(|_| ())
        } else {
            Ok(())
        }
    }

    /// Aligned: where in its cell decode time `t_ms` falls (0 at the
    /// cell's start, 50 ms before its boundary).
    fn phase_of(&self, t_ms: i64) -> i64 {
        let period = i64::from(self.config.target_duration_ms.max(1));
        t_ms.saturating_add(i64::from(CUT_TOLERANCE_MS))
            .rem_euclid(period)
    }

    /// Aligned: the cell of decode time `t_ms` (see [the module
    /// docs](self#aligned-segments)).
    fn cell_of(&self, t_ms: i64) -> i64 {
        let period = i64::from(self.config.target_duration_ms.max(1));
        t_ms.saturating_add(i64::from(CUT_TOLERANCE_MS))
            .div_euclid(period)
    }

    /// Aligned: the number of the segment that a reference frame decoded
    /// at `t_ms` (a keyframe presented at `key_ms`, or not a keyframe)
    /// starts, cutting the open segment `open_msn`; `None` when it does not
    /// cut.
    fn aligned_cut(&self, open_msn: u64, t_ms: i64, key_ms: Option<i64>) -> Option<u64> {
        let period = i64::from(self.config.target_duration_ms.max(1));
        let open = i64::try_from(open_msn).unwrap_or(i64::MAX);
        if let Some(k) = key_ms {
            let cell = self.cell_of(k);
            if cell > open {
                return u64::try_from(cell).ok();
            }
        }
        // No keyframe by a quarter of a period after where the last one
        // fell in its cell (GOPs repeat their phase), or by the last tenth
        // of the cell (at least 100 ms, so that a frame comes after it
        // before the cell ends: a cell is skipped only by a hole in the
        // media): this frame.
        let last_window = (period / 10).max(100).min(period / 2);
        let late = self
            .last_key_phase
            .map_or(period / 4, |p| p.saturating_add(period / 4))
            .min(period - last_window);
        let due = open
            .saturating_add(1)
            .saturating_mul(period)
            .saturating_sub(i64::from(CUT_TOLERANCE_MS))
            .saturating_add(late);
        if t_ms >= due {
            let m = self.cell_of(t_ms.saturating_sub(late));
            return u64::try_from(m.max(open.saturating_add(1))).ok();
        }
        None
    }

    /// The span (ticks of track `ti`) from a segment's start at which a
    /// keyframe cuts it: the configured duration less
    /// [`CUT_TOLERANCE_MS`]. Encoders put keyframes on a millisecond clock
    /// (RTMP) or round frame times, so the keyframe meant to end a 2 s
    /// segment of a 2 s GOP can come at 1999 ms; without the tolerance it
    /// would not cut, the segment would run to the next keyframe (4 s) and
    /// fix the stream's target duration at twice the intent.
    /// (Audio-only streams, where every frame may cut, need none.)
    fn cut_at(&self, ti: usize) -> i64 {
        let target = self.ticks_of_ms(self.config.target_duration_ms, ti);
        let audio = self.states.get(ti).is_some_and(|s| s.audio_frame.is_some());
        if audio {
            return target;
        }
        let tolerance = self.ticks_of_ms(CUT_TOLERANCE_MS, ti);
        target.saturating_sub(tolerance).max(1)
    }

    /// Whether a keyframe `span` ticks (track `ti`) into the open segment,
    /// before the configured duration, must cut it: once the target duration
    /// is fixed, when waiting for the next keyframe (the longest of the last
    /// [`KEYFRAME_HISTORY`] intervals away) would make the segment longer than the target
    /// allows, and the segment is at least a quarter of the configured
    /// duration long.
    fn cut_before_target(&self, span: i64, ti: usize) -> bool {
        let (Some(target_s), Some(&next)) = (self.target_s, self.keyframe_intervals.iter().max())
        else {
            return false;
        };
        let limit_ms = target_s
            .saturating_mul(1000)
            .saturating_add(crate::playlist::TARGET_DURATION_SLACK_MS);
        let limit = self.ticks_of_ms(u32::try_from(limit_ms).unwrap_or(u32::MAX), ti);
        let min = self.ticks_of_ms(self.config.target_duration_ms / 4, ti);
        span >= min && span.saturating_add(next) > limit
    }

    /// Whether every track but the reference has samples up to `end`
    /// (reference timeline), or none yet.
    fn others_cover(&self, end: i64) -> bool {
        let ref_ts = self.ref_ts();
        self.states.iter().enumerate().all(|(i, st)| {
            Some(i) == self.reference
                || st.last_out_dts.is_none_or(|last| {
                    last.saturating_add(i64::from(st.last_duration))
                        >= rescale(end, ref_ts, st.out_ts)
                })
        })
    }

    /// Cuts the part before the frame after the reference frame `ti` just
    /// pushed has arrived: that frame may not start before `end`. `last`:
    /// the part is expected to be its segment's last (the next reference
    /// frame is due to be the keyframe that ends the segment), which the
    /// preload hint then names: the first part of the next segment instead
    /// of a part of this one that would never come.
    fn cut_part_early(&mut self, ti: usize, end: i64, last: bool) -> Result<(), Error> {
        if let Some(st) = self.states.get_mut(ti) {
            st.committed_end = Some(end);
        }
        if let Some(open) = self.open.as_mut() {
            open.last_part_end = None;
            // The frame lasts until `end` (its estimated length).
            if let Some(Some(j)) = open.last_idx.get(ti).copied()
                && let Some(last) = open.samples.get_mut(j)
                && let Ok(d) = u32::try_from(end.saturating_sub(last.out_dts))
                && d > 0
            {
                last.sample.duration = d;
            }
        }
        self.cut_part(end)?;
        if let Some(open) = self.open.as_ref() {
            let (msn, part) = if last {
                (open.msn.saturating_add(1), 0)
            } else {
                (
                    open.msn,
                    u32::try_from(open.parts.len()).unwrap_or(u32::MAX),
                )
            };
            self.out
                .push_back(SegmenterOutput::PreloadHint { msn, part });
        }
        Ok(())
    }

    /// The date of media time `media_ms`: the anchor's
    /// ([`SegmenterConfig::date_anchor_ms`]), else clock offset + media
    /// time, never before the last closed segment's date.
    fn date_of(&self, media_ms: i64, fallback_unix_ms: i64) -> i64 {
        if let Some(anchor) = self.config.date_anchor_ms {
            return anchor.saturating_add(media_ms);
        }
        let date = self
            .clock_offset_ms
            .map_or(fallback_unix_ms, |o| o.saturating_add(media_ms));
        self.last_pdt_ms.map_or(date, |last| date.max(last))
    }

    fn ticks_of_ms(&self, ms: u32, track: usize) -> i64 {
        let ts = self
            .states
            .get(track)
            .map_or(Timescale::MILLIS, |s| s.out_ts);
        rescale(i64::from(ms), Timescale::MILLIS, ts)
    }

    fn ref_ts(&self) -> Timescale {
        self.reference
            .and_then(|r| self.states.get(r))
            .map_or(Timescale::MILLIS, |s| s.out_ts)
    }

    fn open_segment(&mut self, frame: &Frame, ti: usize, out_dts: i64, now_unix_ms: i64) {
        let ref_ts = self.ref_ts();
        let in_ts = self
            .states
            .get(ti)
            .map_or(Timescale::MILLIS, |s| s.info.timescale);
        let pts_out_ms = rescale(frame.pts, in_ts, Timescale::MILLIS);
        let dts_ms = rescale(out_dts, ref_ts, Timescale::MILLIS);
        let msn = self.next_msn;
        self.next_msn = self.next_msn.saturating_add(1);
        self.last_msn = Some(msn);
        // Aligned: the first segment cut where any segmenter cuts it, with
        // the frame durations and the keyframe interval known.
        if self.config.aligned
            && self.publish_from.is_none()
            && self.ref_frames_seen >= 4
            && self.keyframes_seen >= 3
            && self.aligned_cuts >= 2
        {
            self.publish_from = Some(msn);
        }
        let discontinuity = std::mem::take(&mut self.discontinuity_pending);
        let start_media_ms = rescale(frame.dts, in_ts, Timescale::MILLIS);
        let program_date_time_ms = self.date_of(start_media_ms, now_unix_ms);
        if self.config.part_target_ms.is_some() {
            self.out.push_back(SegmenterOutput::Opened(SegmentStart {
                msn,
                init: self.init_number.unwrap_or(0),
                discontinuity,
                program_date_time_ms,
            }));
        }
        self.open = Some(OpenSegment {
            msn,
            discontinuity,
            start_out_dts: out_dts,
            start_dts_ms: dts_ms,
            start_pts_ms: pts_out_ms.saturating_add(dts_ms.saturating_sub(rescale(
                frame.dts,
                in_ts,
                Timescale::MILLIS,
            ))),
            program_date_time_ms,
            start_media_ms,
            redate: std::mem::take(&mut self.redate_next),
            samples: Vec::new(),
            last_idx: vec![None; self.states.len()],
            parts: Vec::new(),
            part_start_out_dts: out_dts,
            part_chunks: Vec::new(),
            part_independent: None,
            frames: Vec::new(),
            last_part_end: None,
            fragments: 0,
        });
        if let (Some((samples, frames)), Some(open)) = (self.carry.take(), self.open.as_mut()) {
            for (i, s) in samples.iter().enumerate() {
                if let Some(slot) = open.last_idx.get_mut(s.track) {
                    *slot = Some(i);
                }
            }
            open.samples = samples;
            open.frames = frames;
        }
    }

    /// Muxes the pending samples of the open segment into one fragment
    /// (`moof` + `mdat`) of the part being written and returns it (`None`
    /// when nothing is pending). Remembers whether the part is independent.
    fn mux_pending(&mut self) -> Result<Option<Bytes>, Error> {
        let reference = self.reference;
        let Some(open) = self.open.as_mut() else {
            return Ok(None);
        };
        if open.samples.is_empty() {
            return Ok(None);
        }
        let samples = std::mem::take(&mut open.samples);
        for slot in &mut open.last_idx {
            *slot = None;
        }
        if open.part_independent.is_none() {
            open.part_independent = samples
                .iter()
                .find(|s| Some(s.track) == reference)
                .map(|s| s.sample.keyframe);
        }
        // Group per track, in track order.
        let mut per_track: Vec<(usize, u64, Vec<fmp4::Sample>)> = Vec::new();
        for s in samples {
            match per_track.iter_mut().find(|(t, _, _)| *t == s.track) {
                Some((_, _, v)) => v.push(s.sample),
                None => per_track.push((
                    s.track,
                    u64::try_from(s.out_dts).unwrap_or(0),
                    vec![s.sample],
                )),
            }
        }
        per_track.sort_by_key(|(t, _, _)| *t);
        let frags: Vec<fmp4::TrackFragment<'_>> = per_track
            .iter()
            .filter_map(|(t, base, samples)| {
                Some(fmp4::TrackFragment {
                    track: self.states.get(*t)?.info.id,
                    base_decode_time: *base,
                    samples,
                })
            })
            .collect();
        let seq = if self.config.aligned {
            // From the segment number: the same in every aligned segmenter.
            let n = u32::try_from(open.msn & 0x3f_ffff).unwrap_or(0);
            (n << 10) | (open.fragments.min(1022) + 1)
        } else {
            self.next_fragment_seq
        };
        self.next_fragment_seq = self.next_fragment_seq.wrapping_add(1).max(1);
        open.fragments = open.fragments.saturating_add(1);
        let index = u32::try_from(open.parts.len()).unwrap_or(u32::MAX);
        let data = fmp4::fragment(seq, &frags).map_err(|source| Error::Mux {
            what: format!("segment {} part {index}", open.msn),
            source,
        })?;
        Ok(Some(data))
    }

    /// Writes the pending samples as one CMAF chunk of the part being
    /// written and announces it (LL-HLS).
    fn write_chunk(&mut self) -> Result<bool, Error> {
        let Some(data) = self.mux_pending()? else {
            return Ok(false);
        };
        let Some(open) = self.open.as_mut() else {
            return Ok(false);
        };
        let part = u32::try_from(open.parts.len()).unwrap_or(u32::MAX);
        open.part_chunks.push(data.clone());
        self.out.push_back(SegmenterOutput::PartChunk {
            msn: open.msn,
            part,
            data,
        });
        Ok(true)
    }

    /// Completes the part being written with the pending samples; the part
    /// ends at `end_out_dts` (reference timeline).
    fn cut_part(&mut self, end_out_dts: i64) -> Result<(), Error> {
        let ref_ts = self.ref_ts();
        let emit = self.config.part_target_ms.is_some();
        let last = self.mux_pending();
        let Some(open) = self.open.as_mut() else {
            return last.map(|_| ());
        };
        let mut chunks = std::mem::take(&mut open.part_chunks);
        let independent = open.part_independent.take().unwrap_or(false);
        let last = last?;
        if let Some(data) = last.as_ref().filter(|_| emit) {
            self.out.push_back(SegmenterOutput::PartChunk {
                msn: open.msn,
                part: u32::try_from(open.parts.len()).unwrap_or(u32::MAX),
                data: data.clone(),
            });
        }
        chunks.extend(last);
        if chunks.is_empty() {
            return Ok(());
        }
        let data = Chunks::new(chunks);
        let index = u32::try_from(open.parts.len()).unwrap_or(u32::MAX);
        let start_ms = rescale(open.part_start_out_dts, ref_ts, Timescale::MILLIS);
        let end_ms = rescale(end_out_dts, ref_ts, Timescale::MILLIS);
        let part = Part {
            index,
            independent,
            duration_ms: u64::try_from(end_ms.saturating_sub(start_ms)).unwrap_or(0),
            data,
        };
        open.part_start_out_dts = end_out_dts;
        if emit {
            self.out.push_back(SegmenterOutput::Part {
                msn: open.msn,
                part: Arc::new(part.clone()),
            });
        }
        open.parts.push(part);
        Ok(())
    }

    /// Closes the open segment. `next_start` is the reference-timeline dts of
    /// the keyframe that starts the next segment, when a cut (not a flush)
    /// closes it.
    fn close(&mut self, next_start: Option<i64>) -> Result<(), Error> {
        let reference = self.reference;
        let Some(open) = self.open.as_mut() else {
            return Ok(());
        };
        // Only other tracks' samples (audio) since a part was closed with
        // its last reference frame: they would make a part of no duration.
        // A keyframe cutting the segment takes them into the next one; when
        // the stream ends or goes idle they are dropped (less than one video
        // frame of audio, within the last part's time).
        if !open.parts.is_empty()
            && open.part_chunks.is_empty()
            && !open.samples.is_empty()
            && open.samples.iter().all(|s| Some(s.track) != reference)
        {
            let n = open.samples.len();
            let samples = std::mem::take(&mut open.samples);
            let frames = open.frames.split_off(open.frames.len().saturating_sub(n));
            for slot in &mut open.last_idx {
                *slot = None;
            }
            if next_start.is_some() {
                self.carry = Some((samples, frames));
            }
        }
        let open = &*open;
        let end_out_dts = match next_start {
            Some(e) => e,
            None => {
                // The end of the last reference sample.
                open.samples
                    .iter()
                    .rev()
                    .find(|s| Some(s.track) == reference)
                    .map(|s| s.out_dts.saturating_add(i64::from(s.sample.duration)))
                    .or_else(|| {
                        let r = self.reference.and_then(|r| self.states.get(r))?;
                        Some(r.last_out_dts?.saturating_add(i64::from(r.last_duration)))
                    })
                    .unwrap_or(open.part_start_out_dts)
            }
        };
        let part_result = self.cut_part(end_out_dts);
        let ref_ts = self.ref_ts();
        let Some(open) = self.open.take() else {
            return part_result;
        };
        let data: Chunks = std::iter::once(fmp4::styp())
            .chain(
                open.parts
                    .iter()
                    .flat_map(|p| p.data.pieces().iter().cloned()),
            )
            .collect();
        let parts = open.parts;
        let end_ms = rescale(end_out_dts, ref_ts, Timescale::MILLIS);
        let duration_ms = u64::try_from(end_ms.saturating_sub(open.start_dts_ms)).unwrap_or(0);
        let target_duration_s = match self.target_s {
            Some(t) => {
                let limit = t
                    .saturating_mul(1000)
                    .saturating_add(crate::playlist::TARGET_DURATION_SLACK_MS);
                if duration_ms > limit {
                    self.stats.target_overruns += 1;
                    if self.mid_cell_msn == Some(open.msn) {
                        self.stats.mid_cell_overruns += 1;
                    }
                }
                t
            }
            None => {
                let t = match self.config.target_duration_s {
                    Some(s) => u64::from(s.max(1)),
                    None if self.config.aligned => crate::playlist::target_duration_secs(
                        u64::from(self.config.target_duration_ms),
                    ),
                    None => crate::playlist::target_duration_secs(
                        duration_ms.max(u64::from(self.config.target_duration_ms)),
                    ),
                };
                self.target_s = Some(t);
                t
            }
        };
        // The first segment is re-dated with the clock offset as it is now:
        // its first frames may be a burst of cached frames delivered late (a
        // new Hub reader starts at the GOP start), and the frames seen since
        // show by how much. (An origin serves no playlist before the first
        // segment closes, so the change is never seen; later segments keep
        // the date they opened with, dated from the frames seen until then.)
        let program_date_time_ms = if open.redate {
            self.date_of(open.start_media_ms, open.program_date_time_ms)
                .min(open.program_date_time_ms)
        } else {
            open.program_date_time_ms
        };
        self.last_pdt_ms = Some(program_date_time_ms);
        let tracks = self.tracks.clone().unwrap_or_default();
        let ts_continuity = self.ts_counters.start_of(&tracks, &open.frames);
        let segment = Segment {
            msn: open.msn,
            init: self.init_number.unwrap_or(0),
            discontinuity: open.discontinuity,
            start_dts_ms: open.start_dts_ms,
            start_pts_ms: open.start_pts_ms,
            duration_ms,
            target_duration_s,
            program_date_time_ms,
            parts,
            frames: open.frames,
            tracks,
            data,
            ts_continuity,
            ts: OnceLock::new(),
        };
        self.out
            .push_back(SegmenterOutput::Segment(Arc::new(segment)));
        part_result
    }
}

/// Audio frames whose phase sets an aligned segmenter's audio grid.
const PHASE_FRAMES: usize = 8;

/// The mean of `phases` (each in `0..period`) on the circle of `period`,
/// in `0..period`: the first is the reference, the others are taken within
/// half a period of it.
fn circular_mean(phases: &VecDeque<i64>, period: i64) -> i64 {
    let Some(&first) = phases.front() else {
        return 0;
    };
    let period = period.max(1);
    let n = i64::try_from(phases.len()).unwrap_or(1).max(1);
    let sum: i64 = phases
        .iter()
        .map(|p| {
            p.saturating_sub(first)
                .saturating_add(period / 2)
                .rem_euclid(period)
                .saturating_sub(period / 2)
        })
        .sum();
    first.saturating_add(sum.div_euclid(n)).rem_euclid(period)
}

/// `ticks` rounded to the nearest multiple of `step` (> 0).
fn snap(ticks: i64, step: i64) -> i64 {
    let step = step.max(1);
    ticks
        .saturating_add(step / 2)
        .div_euclid(step)
        .saturating_mul(step)
}

/// The parameter sets of an H.264 or H.265 track (from its `avcC` /
/// `hvcC`) as length-prefixed NAL units, for the first keyframe after a
/// track change. A player that follows the new init segment's sample entry
/// needs nothing more; those that do not are helped by having them in
/// band: FFmpeg's HLS demuxer reads one `moov` per playlist and skips the
/// next (the new `EXT-X-MAP` changes nothing for it), and its H.264 parser
/// keeps the first sample entry's sets across an MP4 export's second
/// `stsd` entry, parsing the new encoder's slices with the old ones. Both
/// then decode with the wrong sets where the encoders differ (a backup
/// encoder, the fallback slate). `None` for other codecs and for records
/// that do not parse.
fn inband_parameter_sets(info: &TrackInfo) -> Option<Bytes> {
    let (nal_length_size, sets): (u8, Vec<Bytes>) = match info.codec {
        ugc_core::Codec::H264 => {
            let c = ugc_codec::h264::AvcConfig::parse(&info.config).ok()?;
            (c.nal_length_size, c.sps.into_iter().chain(c.pps).collect())
        }
        ugc_core::Codec::H265 => {
            let c = ugc_codec::hevc::HevcConfig::parse(&info.config).ok()?;
            (c.nal_length_size, c.parameter_sets)
        }
        _ => return None,
    };
    let mut out = Vec::new();
    for nal in sets.iter().filter(|n| !n.is_empty()) {
        let len = u32::try_from(nal.len()).ok()?;
        let prefix = len.to_be_bytes();
        let at = prefix.len().checked_sub(usize::from(nal_length_size))?;
        if nal_length_size < 4 && len >> (8 * u32::from(nal_length_size)) != 0 {
            return None;
        }
        out.extend_from_slice(prefix.get(at..)?);
        out.extend_from_slice(nal);
    }
    (!out.is_empty()).then(|| Bytes::from(out))
}

/// `frame` with `sets` in front, unless it carries a parameter set of its
/// own already (an encoder that repeats them at keyframes).
fn with_parameter_sets(sets: Option<Bytes>, frame: &Bytes, info: &TrackInfo) -> Bytes {
    let Some(sets) = sets else {
        return frame.clone();
    };
    let (nal_length_size, is_set): (u8, fn(&[u8]) -> bool) = match info.codec {
        ugc_core::Codec::H264 => (
            ugc_codec::h264::AvcConfig::parse(&info.config).map_or(4, |c| c.nal_length_size),
            |n| matches!(ugc_codec::h264::nal_type(n), Some(7 | 8)),
        ),
        ugc_core::Codec::H265 => (
            ugc_codec::hevc::HevcConfig::parse(&info.config).map_or(4, |c| c.nal_length_size),
            |n| matches!(ugc_codec::hevc::nal_type(n), Some(32..=34)),
        ),
        _ => return frame.clone(),
    };
    let has_own = ugc_codec::h264::nal_units(frame, nal_length_size)
        .filter_map(Result::ok)
        .any(is_set);
    if has_own {
        return frame.clone();
    }
    let mut out = Vec::with_capacity(sets.len() + frame.len());
    out.extend_from_slice(&sets);
    out.extend_from_slice(frame);
    Bytes::from(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn aac_state() -> TrackState {
        let tracks = ugc_core::hub::tests_support::av_tracks();
        let audio = tracks.audio().cloned();
        TrackState::new(&audio.expect("audio track"), false)
    }

    #[test]
    fn audio_clock_is_clean_despite_millisecond_jitter() {
        let mut st = aac_state();
        assert_eq!(st.out_ts.get(), 44_100);
        let mut resyncs = 0;
        let mut outs = Vec::new();
        for i in 0..1000i64 {
            // RTMP: 23 or 24 ms steps, rounded down.
            let (out, delta) = st.map_dts(i * 1024 * 1000 / 44_100, &mut resyncs);
            if i > 0 {
                assert_eq!(delta, Some(1024));
            }
            outs.push(out);
        }
        assert_eq!(resyncs, 0);
        assert_eq!(outs[999], 999 * 1024);
    }

    #[test]
    fn audio_clock_resyncs_only_past_one_frame_of_drift() {
        let mut st = aac_state();
        let mut resyncs = 0;
        st.map_dts(0, &mut resyncs);
        // 30 ms late: within one frame (23.2 ms)? No: 30 ms is more, but the
        // clean clock is at 23.2 ms, so the drift is 6.8 ms: keep the clock.
        let (out, _) = st.map_dts(30, &mut resyncs);
        assert_eq!((out, resyncs), (1024, 0));
        // A 500 ms gap: re-sync to the input; the previous sample stretches.
        let (out, delta) = st.map_dts(530, &mut resyncs);
        assert_eq!(resyncs, 1);
        assert_eq!(out, 530 * 441 / 10);
        assert_eq!(delta, Some(u32::try_from(out - 1024).unwrap()));
        // Slightly early input never moves the clock backwards.
        let (out2, delta) = st.map_dts(540, &mut resyncs);
        assert_eq!((out2, delta, resyncs), (out + 1024, Some(1024), 1));
    }

    #[test]
    fn video_timeline_stays_monotonic() {
        let tracks = ugc_core::hub::tests_support::av_tracks();
        let mut st = TrackState::new(tracks.video().expect("video"), false);
        let mut r = 0;
        assert_eq!(st.map_dts(100, &mut r), (9000, None));
        assert_eq!(st.map_dts(90, &mut r), (9001, Some(1)));
        assert_eq!(st.map_dts(140, &mut r), (12600, Some(3599)));
    }

    /// Under load the ladder drops pictures (33 ms frames 67 ms apart), an
    /// early part cut promises the last frame the shorter of the last two
    /// deltas (67 ms), and the next pictures come 33 ms apart again: the
    /// first is pushed to the promised end, the second, due just there,
    /// goes a tick later instead of repeating its decode time (seen in a
    /// 720p rendition with three tests at once on 2 cores).
    #[test]
    fn a_frame_due_where_the_one_before_was_pushed_goes_a_tick_later() {
        let tracks = ugc_core::hub::tests_support::av_tracks();
        let mut st = TrackState::new(tracks.video().expect("video"), false);
        let mut r = 0;
        st.map_dts(0, &mut r);
        st.map_dts(67, &mut r);
        st.map_dts(134, &mut r);
        assert_eq!(st.estimate(), 6030);
        st.committed_end = Some(12060 + 6030);
        assert_eq!(st.map_dts(167, &mut r), (18090, Some(6030)));
        assert_eq!(st.map_dts(201, &mut r), (18091, Some(1)));
        assert_eq!(st.map_dts(234, &mut r), (21060, Some(2969)));
    }
}
