//! The FFmpeg ABR ladder (feature `ffmpeg`): decode once, scale once per
//! rung, encode every rung on its own thread.
//!
//! [`Ladder`] is a [`Transform`]: `push` hands input to the ladder's decode
//! thread without waiting and returns whatever the rung threads finished
//! since; [`Ladder::poll_output`] drains without input (call it when the
//! notify callback of [`Ladder::with_notify`] fires). Output is the combined
//! stream described in [`crate::ladder`]; split it with
//! [`crate::ladder::LadderDemux`].
//!
//! ```text
//!  push ──bounded──> decode thread ──┬─ passthrough frames ─────────────────> output
//!                    (H.264/H.265/    ├─> rung 0 thread: scale, x264, AAC ──> output
//!                     AAC/Opus decode,├─> rung 1 thread: scale, x264, AAC ──> output
//!                     logo, IDR plan) └─> rung 2 thread: ...            ──> output
//! ```
//!
//! * IDRs are forced on the same source pictures in every rung (every
//!   [`LadderConfig::keyframe_interval_ms`], x264 scene cuts off), so
//!   segments of all renditions line up one to one.
//! * Overload: when the slowest rung has
//!   [`LadderConfig::max_pending_frames`] pictures queued, the decode thread
//!   waits for it until the input has waited
//!   [`LadderConfig::max_delay_ms`], then drops the picture for every rung
//!   (alignment holds; counted in
//!   [`LadderStats::pictures_dropped`]); when the decode thread itself falls
//!   behind, `push` drops input up to the next keyframe
//!   ([`LadderStats::input_dropped`]). Memory stays bounded, the live edge
//!   does not drift.
//! * Corrupt input (truncated NAL units, missing SPS) is counted in
//!   [`LadderStats::decode_errors`] and skipped to the next keyframe; a
//!   resolution change re-plans the rungs and announces new tracks.
//! * A failed thread makes `push` return an error; the caller drops the
//!   ladder and builds a new one (other ladders are unaffected).

mod audio;
pub mod fallback;
mod logo;
mod raw;
mod run;
mod rung;
mod slate;
mod supervise;

pub use crate::ladder::stats::{
    LadderReport, LadderRunStats, LadderStats, LadderStatsSnapshot, RenditionReport,
};
pub use audio::AudioTranscode;
pub use run::{run_ladder, run_ladder_with_stats};
pub use slate::{MAX_FILE_S, fallback_file, fallback_url, slate, slate_for_segments};
pub use supervise::{ProfileOf, RECONCILE_INTERVAL, supervise};

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rsmpeg::avcodec::{AVCodec, AVCodecContext};
use rsmpeg::avutil::AVFrame;
use rsmpeg::error::RsmpegError;
use rsmpeg::ffi;
use ugc_core::{
    Codec, DiscontinuityReason, Frame, MediaEvent, MediaKind, Rational, Result, TrackInfo, Tracks,
    Transform,
};

use crate::ladder::{LadderConfig, audio_track, video_track};

use self::rung::{Job, Rung, RungSpec};

/// Events waiting for the decode thread before `push` starts dropping: a
/// GOP burst and [`LadderConfig::max_delay_ms`] of input at 60 fps (sizes
/// of compressed frames: a few MB at most).
const INPUT_QUEUE: usize = 512;

/// Called (from a ladder thread) whenever output is ready.
pub type Notify = Arc<dyn Fn() + Send + Sync>;

/// Where the ladder's threads put output.
#[derive(Clone)]
pub(crate) struct Output {
    tx: Sender<MediaEvent>,
    notify: Option<Notify>,
    stats: Arc<LadderStats>,
}

impl Output {
    pub(crate) fn send(&self, e: MediaEvent) -> bool {
        if matches!(e, MediaEvent::Frame(_)) {
            self.stats.frames_out.fetch_add(1, Ordering::Relaxed);
        }
        let ok = self.tx.send(e).is_ok();
        if let Some(n) = &self.notify {
            n();
        }
        ok
    }
}

enum Input {
    /// An event and when it was handed to the ladder.
    Event(MediaEvent, Instant),
}

/// The ABR ladder; see the [module docs](self).
pub struct Ladder {
    input: Option<SyncSender<Input>>,
    output: Receiver<MediaEvent>,
    /// The task waiting in [`Transform::poll_output`], woken by the threads.
    waker: Arc<Mutex<Option<std::task::Waker>>>,
    stats: Arc<LadderStats>,
    failure: Arc<Mutex<Option<String>>>,
    worker: Option<JoinHandle<()>>,
    video_dropping: bool,
    video_track: Option<ugc_core::TrackId>,
    drop_when_behind: bool,
}

impl std::fmt::Debug for Ladder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ladder")
            .field("stats", &self.stats.snapshot())
            .finish()
    }
}

fn stage_error(msg: impl Into<String>) -> ugc_core::Error {
    ugc_core::Error::Stage {
        stage: "transcode ladder".into(),
        source: msg.into().into(),
    }
}

impl Ladder {
    /// A ladder with `config`; its threads start now.
    pub fn new(config: LadderConfig) -> crate::Result<Ladder> {
        Ladder::with_notify(config, None)
    }

    /// A ladder whose threads call `notify` whenever output is ready (wake
    /// the task that calls [`Ladder::poll_output`]).
    pub fn with_notify(config: LadderConfig, notify: Option<Notify>) -> crate::Result<Ladder> {
        Ladder::with_stats(config, notify, Arc::default())
    }

    /// A ladder that counts into `stats` (a replacement ladder continues
    /// the counters of the one it replaces).
    pub fn with_stats(
        config: LadderConfig,
        notify: Option<Notify>,
        stats: Arc<LadderStats>,
    ) -> crate::Result<Ladder> {
        config.validate()?;
        raw::quiet_ffmpeg_logs();
        let drop_when_behind = config.drop_when_behind;
        let logo = match &config.logo {
            Some(l) => Some(logo::Logo::decode(l)?),
            None => None,
        };
        let (in_tx, in_rx) = mpsc::sync_channel(INPUT_QUEUE);
        let (out_tx, out_rx) = mpsc::channel();
        let failure = Arc::new(Mutex::new(None));
        // Output wakes a pipeline that polls the ladder as a transform, and
        // calls the caller's notify.
        let waker: Arc<Mutex<Option<std::task::Waker>>> = Arc::default();
        let wake = waker.clone();
        let notify: Notify = Arc::new(move || {
            if let Some(w) = wake.lock().unwrap_or_else(|p| p.into_inner()).take() {
                w.wake();
            }
            if let Some(n) = &notify {
                n();
            }
        });
        let output = Output {
            tx: out_tx,
            notify: Some(notify),
            stats: stats.clone(),
        };
        let worker = {
            let failure = failure.clone();
            let stats = stats.clone();
            std::thread::Builder::new()
                .name("ugc-ladder-dec".into())
                .spawn(move || {
                    let mut w = Worker::new(config, logo, output.clone(), stats);
                    let r = w.run(in_rx);
                    let r = r.and_then(|()| w.finish());
                    if let Err(e) = r {
                        tracing::warn!(error = %e, "transcode ladder failed");
                        *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                        w.abort();
                    }
                    // Wake the reader so it sees the end or the failure.
                    if let Some(n) = &output.notify {
                        n();
                    }
                })
                .map_err(|e| crate::Error::InvalidArgument(format!("spawning a thread: {e}")))?
        };
        Ok(Ladder {
            input: Some(in_tx),
            output: out_rx,
            waker,
            stats,
            failure,
            worker: Some(worker),
            video_dropping: false,
            video_track: None,
            drop_when_behind,
        })
    }

    /// The counters.
    pub fn stats(&self) -> LadderStatsSnapshot {
        self.stats.snapshot()
    }

    /// Shared counters (for a metrics exporter).
    pub fn stats_handle(&self) -> Arc<LadderStats> {
        self.stats.clone()
    }

    fn failed(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Moves finished output to `out` without waiting. Errors when a ladder
    /// thread failed (after the output it produced before).
    pub fn poll_output(&mut self, out: &mut Vec<MediaEvent>) -> Result<()> {
        out.extend(self.output.try_iter());
        if let Some(f) = self.failed() {
            return Err(stage_error(f));
        }
        Ok(())
    }

    fn send(&mut self, event: MediaEvent) -> Result<()> {
        let Some(tx) = &self.input else {
            return Err(ugc_core::Error::Closed);
        };
        let must_deliver = !matches!(event, MediaEvent::Frame(_)) || !self.drop_when_behind;
        if let MediaEvent::Frame(f) = &event {
            self.stats.frames_in.fetch_add(1, Ordering::Relaxed);
            if Some(f.track) == self.video_track {
                if self.video_dropping && !f.keyframe {
                    self.stats.input_dropped.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                self.video_dropping = false;
            }
        }
        let video = match &event {
            MediaEvent::Frame(f) => Some(f.track) == self.video_track,
            _ => false,
        };
        let r = if must_deliver {
            tx.send(Input::Event(event, Instant::now())).map_err(|_| ())
        } else {
            match tx.try_send(Input::Event(event, Instant::now())) {
                Ok(()) => Ok(()),
                Err(TrySendError::Full(_)) => {
                    let n = self.stats.input_dropped.fetch_add(1, Ordering::Relaxed);
                    if n.is_power_of_two() {
                        tracing::warn!(dropped = n + 1, "transcode ladder behind: dropping input");
                    }
                    if video {
                        self.video_dropping = true;
                    }
                    Ok(())
                }
                Err(TrySendError::Disconnected(_)) => Err(()),
            }
        };
        r.map_err(|()| {
            stage_error(
                self.failed()
                    .unwrap_or_else(|| "the decode thread stopped".into()),
            )
        })
    }
}

impl Transform for Ladder {
    fn push(&mut self, event: MediaEvent, out: &mut Vec<MediaEvent>) -> Result<()> {
        if let MediaEvent::Tracks(t) = &event {
            self.video_track = t.video().map(|v| v.id);
        }
        self.send(event)?;
        Ladder::poll_output(self, out)
    }

    /// Ends the input, waits for every rung to finish encoding and returns
    /// the rest of the output. Blocks for the encoders' tails: in a
    /// pipeline on a tokio runtime, pump the ladder where blocking is fine
    /// (a multi-threaded runtime, or `spawn_blocking` around the flush).
    fn flush(&mut self, out: &mut Vec<MediaEvent>) -> Result<()> {
        if let Some(tx) = self.input.take() {
            let _ = tx.send(Input::Event(MediaEvent::End, Instant::now()));
        }
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
        Ladder::poll_output(self, out)
    }

    /// Encoded output the ladder's threads made since: `Ready` with it (or
    /// with a thread's failure), else `Pending` until a thread has more.
    /// This is what lets [`ugc_core::pump`] run a ladder like any transform.
    fn poll_output(
        &mut self,
        cx: &mut std::task::Context<'_>,
        out: &mut Vec<MediaEvent>,
    ) -> std::task::Poll<Result<()>> {
        // Register first: output that arrives after the check below wakes us.
        *self.waker.lock().unwrap_or_else(|p| p.into_inner()) = Some(cx.waker().clone());
        let before = out.len();
        match Ladder::poll_output(self, out) {
            Err(e) => std::task::Poll::Ready(Err(e)),
            Ok(()) if out.len() > before => std::task::Poll::Ready(Ok(())),
            Ok(()) => std::task::Poll::Pending,
        }
    }
}

impl Drop for Ladder {
    fn drop(&mut self) {
        // Closing the input stops the decode thread, which stops its rungs.
        self.input.take();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

/// Nanosecond-free integer rescale `ticks * to / from` (saturating).
pub(crate) fn rescale(ticks: i64, from: u32, to: u32) -> i64 {
    if from == to || from == 0 {
        return ticks;
    }
    let v = i128::from(ticks) * i128::from(to) / i128::from(from);
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}

pub(crate) fn ff_err(what: &str, e: RsmpegError) -> String {
    format!("{what}: {e}")
}

struct Decoder {
    ctx: AVCodecContext,
    info: TrackInfo,
    skip_to_key: bool,
}

fn open_decoder(info: &TrackInfo) -> std::result::Result<Decoder, String> {
    let id = match info.codec {
        Codec::H264 => ffi::AVCodecID_AV_CODEC_ID_H264,
        Codec::H265 => ffi::AVCodecID_AV_CODEC_ID_HEVC,
        Codec::Aac => ffi::AVCodecID_AV_CODEC_ID_AAC,
        Codec::Opus => ffi::AVCodecID_AV_CODEC_ID_OPUS,
        other => return Err(format!("no decoder for {other:?}")),
    };
    let codec = AVCodec::find_decoder(id)
        .ok_or_else(|| format!("FFmpeg lacks a {:?} decoder", info.codec))?;
    let mut ctx = AVCodecContext::new(&codec);
    // FFmpeg's Opus decoder wants an `OpusHead` (or nothing: channels from
    // the context), not the `dOps` body our tracks carry.
    let extradata = match info.codec {
        Codec::Opus if !info.config.starts_with(b"OpusHead") => &[][..],
        _ => &info.config[..],
    };
    if !extradata.is_empty() && !raw::set_extradata(&mut ctx, extradata) {
        return Err("allocating decoder extradata".into());
    }
    if let Some(a) = info.audio() {
        ctx.set_sample_rate(i32::try_from(a.sample_rate).unwrap_or(48_000));
        ctx.set_channels(i32::from(a.channels.max(1)));
        ctx.set_channel_layout(rsmpeg::avutil::av_get_default_channel_layout(i32::from(
            a.channels.max(1),
        )) as u64);
    }
    ctx.set_time_base(ffi::AVRational {
        num: 1,
        den: i32::try_from(info.timescale.get()).unwrap_or(1000),
    });
    let opts = if info.kind() == MediaKind::Video {
        Some(rsmpeg::avutil::AVDictionary::new(c"threads", c"2", 0))
    } else {
        None
    };
    ctx.open(opts).map_err(|e| ff_err("opening a decoder", e))?;
    Ok(Decoder {
        ctx,
        info: info.clone(),
        skip_to_key: false,
    })
}

struct RungHandle {
    index: usize,
    tx: Sender<Job>,
    pending: Arc<AtomicUsize>,
    thread: Option<JoinHandle<std::result::Result<(), String>>>,
}

/// The decode thread's state.
struct Worker {
    config: LadderConfig,
    logo: Option<logo::Logo>,
    out: Output,
    stats: Arc<LadderStats>,
    input_tracks: Option<Tracks>,
    video: Option<Decoder>,
    audio: Option<Decoder>,
    rungs: Vec<RungHandle>,
    /// Source picture size and format the rungs were planned for.
    planned: Option<(i32, i32)>,
    /// What the rungs were last started with (`start`'s argument).
    started_with: Option<StartVideo>,
    started: bool,
    next_key: Option<i64>,
    force_pending: bool,
    ended: bool,
    /// When the event being handled was handed to the ladder.
    arrived: Instant,
    /// Time spent waiting for a rung while handling the current event (not
    /// work: subtracted from the busy time).
    waited: Duration,
    /// The previous decoded picture's pts, at the rungs' timescale (the
    /// media-time counter's reference).
    last_pts: Option<i64>,
    /// The last picture handed to the rungs (a reference, as drawn).
    last_sent: Option<AVFrame>,
    /// After a new source: the old source's last picture, repeated over a
    /// hole before the new source's first (see `fill_hole`).
    hold: Option<AVFrame>,
}

/// The source video a ladder starts for: picture size, frame rate,
/// timescale (`None`: audio only).
type StartVideo = Option<((i32, i32), Rational, u32)>;

impl Worker {
    fn new(
        config: LadderConfig,
        logo: Option<logo::Logo>,
        out: Output,
        stats: Arc<LadderStats>,
    ) -> Self {
        Worker {
            config,
            logo,
            out,
            stats,
            input_tracks: None,
            video: None,
            audio: None,
            rungs: Vec::new(),
            planned: None,
            started_with: None,
            started: false,
            next_key: None,
            force_pending: false,
            ended: false,
            arrived: Instant::now(),
            waited: Duration::ZERO,
            last_pts: None,
            last_sent: None,
            hold: None,
        }
    }

    fn run(&mut self, input: Receiver<Input>) -> std::result::Result<(), String> {
        while let Ok(Input::Event(e, arrived)) = input.recv() {
            self.arrived = arrived;
            let began = Instant::now();
            self.waited = Duration::ZERO;
            let r = self.handle(e);
            let busy = began.elapsed().saturating_sub(self.waited);
            self.stats
                .decode_busy_ns
                .fetch_add(busy.as_nanos() as u64, Ordering::Relaxed);
            if !r? {
                break;
            }
        }
        Ok(())
    }

    /// Handles one input event; `false` at the end of the input.
    fn handle(&mut self, e: MediaEvent) -> std::result::Result<bool, String> {
        match e {
            MediaEvent::Tracks(t) => self.on_tracks(t)?,
            MediaEvent::Frame(f) => self.on_frame(f)?,
            MediaEvent::Discontinuity(r) => {
                // What the decoders still hold belongs before it.
                self.drain_decoders()?;
                self.next_key = None;
                self.last_pts = None;
                self.hold = self
                    .last_sent
                    .take()
                    .filter(|_| matches!(r, DiscontinuityReason::SourceChanged));
                // A new source (a backup, the slate): the Hub keeps the
                // timestamps continuous and the rungs' output keeps its
                // codec parameters, so the renditions go on with no
                // discontinuity (an IDR at the first new picture). A
                // restart of the rungs there lost the encoders' delayed
                // pictures or, restarted, the sound before the first
                // encoded picture: holes of 70-170 ms that hls.js in LL
                // mode stalls on. A jump in time (a reader that skipped,
                // a publisher's own jump) is passed on, after everything
                // before it.
                if self.started && !matches!(r, DiscontinuityReason::SourceChanged) {
                    self.stop_rungs()?;
                    self.out.send(MediaEvent::Discontinuity(r));
                    if let Some(video) = self.started_with {
                        self.start(video)?;
                        self.next_key = None;
                    }
                }
            }
            MediaEvent::End => {
                self.ended = true;
                return Ok(false);
            }
            _ => {}
        }
        Ok(true)
    }

    /// Flushes decoders and rungs and announces the end.
    fn finish(&mut self) -> std::result::Result<(), String> {
        if let Some(mut d) = self.video.take() {
            let _ = d.ctx.send_packet(None);
            self.drain_video(&mut d)?;
        }
        self.stop_rungs()?;
        if self.ended {
            self.out.send(MediaEvent::End);
        }
        Ok(())
    }

    fn abort(&mut self) {
        for r in self.rungs.drain(..) {
            drop(r.tx);
            if let Some(t) = r.thread {
                let _ = t.join();
            }
        }
    }

    fn stop_rungs(&mut self) -> std::result::Result<(), String> {
        let mut first_err = None;
        for mut r in self.rungs.drain(..) {
            let _ = r.tx.send(Job::Flush);
            drop(r.tx);
            if let Some(t) = r.thread.take() {
                match t.join() {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        first_err.get_or_insert(e);
                    }
                    Err(_) => {
                        first_err.get_or_insert_with(|| format!("rung {} panicked", r.index));
                    }
                }
            }
        }
        self.started = false;
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Hands the decoders' last pictures and samples (a frame-threaded
    /// decoder holds one or two pictures) to the rungs, and starts the
    /// decoders again for what follows. At a source switch (a backup, the
    /// slate) they were dropped: a hole of a frame or two (or, with the
    /// encoders' own delay, pictures after the discontinuity: a segment
    /// of one frame), both of which hls.js in LL mode can stall on for
    /// over a second.
    fn drain_decoders(&mut self) -> std::result::Result<(), String> {
        let tracks = self.input_tracks.clone();
        if let Some(mut d) = self.video.take() {
            let _ = d.ctx.send_packet(None);
            self.drain_video(&mut d)?;
            self.video = tracks
                .as_ref()
                .and_then(|t| t.video())
                .and_then(|v| open_decoder(v).ok());
        }
        if let Some(mut d) = self.audio.take() {
            let _ = d.ctx.send_packet(None);
            self.drain_audio(&mut d)?;
            self.audio = tracks
                .as_ref()
                .and_then(|t| t.audio())
                .and_then(|a| open_decoder(a).ok());
        }
        Ok(())
    }

    fn on_tracks(&mut self, tracks: Tracks) -> std::result::Result<(), String> {
        let old = self.input_tracks.replace(tracks.clone());
        let same = |a: Option<&TrackInfo>, b: Option<&TrackInfo>| match (a, b) {
            (Some(a), Some(b)) => {
                a.codec == b.codec && a.config == b.config && a.timescale == b.timescale
            }
            (None, None) => true,
            _ => false,
        };
        let old_v = old.as_ref().and_then(|t| t.video().cloned());
        let old_a = old.as_ref().and_then(|t| t.audio().cloned());
        if !same(old_v.as_ref(), tracks.video()) || self.video.is_none() {
            // The old decoder's last pictures go to the rungs first (see
            // `drain_decoders`; a switch announces a discontinuity first,
            // which drains them already).
            if let Some(mut d) = self.video.take() {
                let _ = d.ctx.send_packet(None);
                self.drain_video(&mut d)?;
            }
            if let Some(v) = tracks.video() {
                match open_decoder(v) {
                    Ok(d) => self.video = Some(d),
                    Err(e) => tracing::warn!(error = %e, "video track not transcodable"),
                }
            }
        }
        let audio_changed = !same(old_a.as_ref(), tracks.audio());
        // The rungs resample any sound to their own format: only a track
        // that comes or goes needs them started again.
        let audio_came_or_went = old_a.is_some() != tracks.audio().is_some();
        if audio_changed || self.audio.is_none() {
            if let Some(mut d) = self.audio.take() {
                let _ = d.ctx.send_packet(None);
                self.drain_audio(&mut d)?;
            }
            if let Some(a) = tracks.audio() {
                match open_decoder(a) {
                    Ok(d) => self.audio = Some(d),
                    Err(e) => tracing::warn!(error = %e, "audio track not transcodable"),
                }
            }
        }
        // Audio format changes and passthrough track changes need new rungs
        // (a repeated, identical track set, e.g. after a takeover, does not).
        let changed = old.as_ref() != Some(&tracks);
        if self.started && changed && (audio_came_or_went || self.config.passthrough.is_some()) {
            self.stop_rungs()?;
            // Started again at once, not at the next picture: the sound
            // before it (a new source's first 100-200 ms, while its first
            // picture decodes) would be a hole in every rendition.
            // (A new picture size re-plans at its first picture instead.)
            let size = tracks
                .video()
                .and_then(|v| v.video())
                .and_then(|p| Some((i32::try_from(p.width).ok()?, i32::try_from(p.height).ok()?)));
            match self.started_with {
                Some(video) if size == self.planned => {
                    self.start(video)?;
                    self.next_key = None;
                }
                _ => self.planned = None,
            }
        }
        Ok(())
    }

    fn on_frame(&mut self, frame: Frame) -> std::result::Result<(), String> {
        let Some(tracks) = self.input_tracks.clone() else {
            return Ok(());
        };
        let is_video = tracks.video().is_some_and(|v| v.id == frame.track);
        let is_audio = tracks.audio().is_some_and(|a| a.id == frame.track);
        // Audio-only sources start at their first frame.
        if !self.started && is_audio && tracks.video().is_none() {
            self.start(None)?;
        }
        if self.started
            && let Some(p) = self
                .config
                .passthrough
                .as_ref()
                .map(|_| self.config.renditions.len())
            && (is_video || is_audio)
        {
            let mut f = frame.clone();
            f.track = if is_video {
                video_track(p)
            } else {
                audio_track(p)
            };
            self.out.send(MediaEvent::Frame(f));
        }
        if is_video {
            let Some(mut d) = self.video.take() else {
                return Ok(());
            };
            let r = self
                .decode(&mut d, &frame)
                .and_then(|()| self.drain_video(&mut d));
            self.video = Some(d);
            r?;
        } else if is_audio {
            let Some(mut d) = self.audio.take() else {
                return Ok(());
            };
            let r = self
                .decode(&mut d, &frame)
                .and_then(|()| self.drain_audio(&mut d));
            self.audio = Some(d);
            r?;
        }
        Ok(())
    }

    fn decode(&mut self, d: &mut Decoder, frame: &Frame) -> std::result::Result<(), String> {
        if d.skip_to_key {
            if !frame.keyframe {
                return Ok(());
            }
            d.skip_to_key = false;
        }
        let Some(mut pkt) = raw::packet_from(&frame.data) else {
            return Err("allocating a packet".into());
        };
        pkt.set_pts(frame.pts);
        pkt.set_dts(frame.dts);
        if frame.keyframe {
            pkt.set_flags(ffi::AV_PKT_FLAG_KEY as i32);
        }
        match d.ctx.send_packet(Some(&pkt)) {
            Ok(()) => {}
            Err(e) => {
                let n = self.stats.decode_errors.fetch_add(1, Ordering::Relaxed);
                if n.is_power_of_two() || n == 0 {
                    tracing::warn!(error = %e, dts = frame.dts, len = frame.data.len(), "undecodable input; resync at the next keyframe");
                }
                d.skip_to_key = d.info.kind() == MediaKind::Video;
            }
        }
        Ok(())
    }

    fn drain_audio(&mut self, d: &mut Decoder) -> std::result::Result<(), String> {
        loop {
            match d.ctx.receive_frame() {
                Ok(f) => {
                    if !self.started {
                        continue;
                    }
                    let mut f = f;
                    if f.pts == i64::MIN {
                        f.set_pts(f.best_effort_timestamp);
                    }
                    let scale = d.info.timescale.get();
                    for r in &self.rungs {
                        let mut c = f.clone();
                        c.set_pts(rescale(f.pts, scale, 1_000_000));
                        if r.tx.send(Job::Audio(c)).is_err() {
                            return Err(format!("rung {} stopped", r.index));
                        }
                    }
                }
                Err(RsmpegError::DecoderDrainError | RsmpegError::DecoderFlushedError) => {
                    return Ok(());
                }
                Err(_) => {
                    self.stats.decode_errors.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
            }
        }
    }

    fn drain_video(&mut self, d: &mut Decoder) -> std::result::Result<(), String> {
        loop {
            match d.ctx.receive_frame() {
                Ok(mut f) => {
                    if f.pts == i64::MIN {
                        f.set_pts(f.best_effort_timestamp);
                    }
                    if f.pts == i64::MIN {
                        continue;
                    }
                    self.on_picture(f, d)?;
                }
                Err(RsmpegError::DecoderDrainError | RsmpegError::DecoderFlushedError) => {
                    return Ok(());
                }
                Err(e) => {
                    let n = self.stats.decode_errors.fetch_add(1, Ordering::Relaxed);
                    if n.is_power_of_two() || n == 0 {
                        tracing::warn!(error = %e, "corrupt picture; resync at the next keyframe");
                    }
                    d.skip_to_key = true;
                    return Ok(());
                }
            }
        }
    }

    fn on_picture(&mut self, mut f: AVFrame, d: &Decoder) -> std::result::Result<(), String> {
        let size = (f.width, f.height);
        if size.0 <= 0 || size.1 <= 0 {
            return Ok(());
        }
        if self.planned != Some(size) {
            if self.started {
                tracing::info!(
                    width = size.0,
                    height = size.1,
                    "source resolution changed: re-planning the ladder"
                );
                self.stop_rungs()?;
            }
            let fps = d
                .info
                .video()
                .and_then(|v| v.frame_rate)
                .or_else(|| {
                    let r = d.ctx.framerate;
                    (r.num > 0 && r.den > 0).then(|| Rational::new(r.num as u32, r.den as u32))
                })
                .unwrap_or(Rational::new(30, 1));
            self.start(Some((size, fps, d.info.timescale.get())))?;
            self.next_key = None;
            // New rungs for another picture size: nothing to repeat.
            self.hold = None;
        }
        // The rungs' clock is the timescale they started with; a new
        // source (a backup, the slate) may count in another.
        let scale = match self.started_with {
            Some(Some((_, _, ts))) => ts,
            _ => d.info.timescale.get(),
        };
        if scale != d.info.timescale.get() && f.pts != ffi::AV_NOPTS_VALUE {
            f.set_pts(rescale(f.pts, d.info.timescale.get(), scale));
        }
        if let Some(held) = self.hold.take() {
            self.fill_hole(held, f.pts, scale)?;
        }
        if let Some(logo) = &mut self.logo {
            logo.draw(&mut f);
        }
        self.encode_picture(f, scale)
    }

    /// A new source that took over with a hole before its first picture
    /// (a Hub with `discontinuity_grid` lands it on a segment boundary, up
    /// to a segment after the old media's end): the old source's last
    /// picture is repeated at the frame rate up to it, as a player would
    /// hold it. Left as a hole, the renditions' video stopped there (their
    /// sound, the old source's silence, went on), and x264, which decodes
    /// a picture at the time of one presented `delay` pictures before,
    /// decoded the IDR after the hole at the time of a picture before it:
    /// 0.6-1.6 s before it is presented in e2e_roles, so the origins'
    /// segment of that IDR ran from that decode time, 2.567 s of 1 s. A
    /// hole longer than two keyframe intervals (not a landing) stays.
    fn fill_hole(
        &mut self,
        held: AVFrame,
        next_pts: i64,
        scale: u32,
    ) -> std::result::Result<(), String> {
        let Some(Some((_, fps, _))) = self.started_with else {
            return Ok(());
        };
        if fps.num == 0 || fps.den == 0 || held.pts == ffi::AV_NOPTS_VALUE {
            return Ok(());
        }
        let step = (i64::from(scale) * i64::from(fps.den) / i64::from(fps.num)).max(1);
        let most = rescale(2 * i64::from(self.config.keyframe_interval_ms), 1000, scale);
        let gap = next_pts.saturating_sub(held.pts);
        // (A picture or two missing is no hole: x264 decodes the next one
        // that much earlier, as at any switch.)
        if gap <= step.saturating_mul(3) || gap > most {
            return Ok(());
        }
        // The repeats go on the old source's GOPs (IDRs on the grid only);
        // the new source's first picture is an IDR as before.
        let interval = rescale(i64::from(self.config.keyframe_interval_ms), 1000, scale).max(1);
        self.next_key = Some(
            held.pts
                .div_euclid(interval)
                .saturating_add(1)
                .saturating_mul(interval),
        );
        let mut pts = held.pts.saturating_add(step);
        while next_pts.saturating_sub(pts) >= step / 2 {
            let mut repeat = held.clone();
            repeat.set_pts(pts);
            self.stats.pictures_repeated.fetch_add(1, Ordering::Relaxed);
            self.encode_picture(repeat, scale)?;
            pts = pts.saturating_add(step);
        }
        self.next_key = None;
        Ok(())
    }

    /// Plans a picture's IDR and hands it to every rung (`f` at the rungs'
    /// timescale `scale`, drawn).
    fn encode_picture(&mut self, f: AVFrame, scale: u32) -> std::result::Result<(), String> {
        // Media time: the pts's advance, up to a plausible step (a jump or
        // a step back counts nothing).
        if let Some(prev) = self.last_pts.replace(f.pts) {
            let step = f.pts.saturating_sub(prev);
            if step > 0 && step <= rescale(10, 1, scale) {
                let us = rescale(step, scale, 1_000_000);
                self.stats
                    .media_us
                    .fetch_add(u64::try_from(us).unwrap_or(0), Ordering::Relaxed);
            }
        }
        // Plan IDRs on source pictures so every rung has them at the same
        // pts: the first picture, then the first at or after each multiple
        // of the interval on the stream's timeline (not counted from where
        // this transcoder started), so a standby that takes over puts them
        // where the main did, and origins cutting aligned segments of the
        // same length find one at each boundary.
        let interval = rescale(i64::from(self.config.keyframe_interval_ms), 1000, scale).max(1);
        let mut force = std::mem::take(&mut self.force_pending);
        let next_grid = |pts: i64| {
            pts.div_euclid(interval)
                .saturating_add(1)
                .saturating_mul(interval)
        };
        match self.next_key {
            None => {
                force = true;
                self.next_key = Some(next_grid(f.pts));
            }
            Some(k) if f.pts >= k => {
                force = true;
                self.next_key = Some(next_grid(f.pts));
            }
            Some(_) => {}
        }
        let max = self.config.max_pending_frames.max(1);
        // Wait for the rungs: offline for as long as they take, live until
        // the input has waited `max_delay_ms` since it arrived.
        let deadline = self
            .config
            .drop_when_behind
            .then(|| self.arrived + Duration::from_millis(u64::from(self.config.max_delay_ms)));
        let waiting = Instant::now();
        while self
            .rungs
            .iter()
            .any(|r| r.pending.load(Ordering::Acquire) >= max)
            && self
                .rungs
                .iter()
                .all(|r| r.thread.as_ref().is_some_and(|t| !t.is_finished()))
            && deadline.is_none_or(|d| Instant::now() < d)
        {
            std::thread::sleep(Duration::from_micros(300));
        }
        self.waited += waiting.elapsed();
        if self
            .rungs
            .iter()
            .any(|r| r.pending.load(Ordering::Acquire) >= max)
        {
            let n = self.stats.pictures_dropped.fetch_add(1, Ordering::Relaxed);
            if n.is_power_of_two() || n == 0 {
                tracing::warn!(
                    dropped = n + 1,
                    "transcode ladder cannot keep real time: dropping pictures"
                );
            }
            self.force_pending = force;
            return Ok(());
        }
        self.stats.pictures_encoded.fetch_add(1, Ordering::Relaxed);
        for r in &self.rungs {
            if r.tx
                .send(Job::Video {
                    frame: f.clone(),
                    force_key: force,
                })
                .is_err()
            {
                return Err(format!("rung {} stopped", r.index));
            }
            r.pending.fetch_add(1, Ordering::AcqRel);
        }
        self.last_sent = Some(f);
        Ok(())
    }

    /// Opens every rung's encoders, announces the combined track set and
    /// starts the rung threads.
    fn start(&mut self, video: StartVideo) -> std::result::Result<(), String> {
        self.started_with = Some(video);
        let tracks = self.input_tracks.clone().unwrap_or_default();
        let audio = tracks.audio().and_then(|a| a.audio().cloned());
        let plan = match video {
            Some(((w, h), _, _)) => self
                .config
                .plan(u32::try_from(w).unwrap_or(2), u32::try_from(h).unwrap_or(2)),
            None => (0..self.config.renditions.len())
                .map(|index| crate::ladder::PlannedRung {
                    index,
                    width: 0,
                    height: 0,
                })
                .collect(),
        };
        let mut infos = Vec::new();
        let mut rungs = Vec::new();
        for p in plan {
            let Some(cfg) = self.config.renditions.get(p.index) else {
                continue;
            };
            let spec = RungSpec {
                index: p.index,
                width: p.width,
                height: p.height,
                rendition: cfg.clone(),
                preset: self.config.preset.clone(),
                keyframe_interval_ms: self.config.keyframe_interval_ms,
                threads: self.config.encoder_threads,
                video: video.map(|(_, fps, ts)| (fps, ts)),
                audio: audio.clone(),
                video_codec: ugc_core::Codec::H264,
                audio_codec: ugc_core::Codec::Aac,
            };
            let rung = Rung::open(spec, self.out.clone())?;
            infos.extend(rung.track_infos());
            rungs.push(rung);
        }
        if let Some(p) = self
            .config
            .passthrough
            .as_ref()
            .map(|_| self.config.renditions.len())
        {
            for t in tracks.iter() {
                let mut t = t.clone();
                t.id = match t.kind() {
                    MediaKind::Video if Some(t.id) == tracks.video().map(|v| v.id) => {
                        video_track(p)
                    }
                    MediaKind::Audio if Some(t.id) == tracks.audio().map(|a| a.id) => {
                        audio_track(p)
                    }
                    _ => continue,
                };
                infos.push(t);
            }
        }
        infos.sort_by_key(|t| t.id);
        self.out.send(MediaEvent::Tracks(Tracks::new(infos)));
        for rung in rungs {
            let (tx, rx) = mpsc::channel();
            let pending = Arc::new(AtomicUsize::new(0));
            let index = rung.index();
            let p = pending.clone();
            let busy = self.stats.rung_busy(index);
            let thread = std::thread::Builder::new()
                .name(format!("ugc-ladder-{index}"))
                .spawn(move || rung.run(rx, p, &busy))
                .map_err(|e| format!("spawning a rung thread: {e}"))?;
            self.rungs.push(RungHandle {
                index,
                tx,
                pending,
                thread: Some(thread),
            });
        }
        self.planned = video.map(|(s, _, _)| s);
        self.started = true;
        Ok(())
    }
}
