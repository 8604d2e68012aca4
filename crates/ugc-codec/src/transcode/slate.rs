//! Fallback clips, encoded once in the shape of a stream's tracks (its
//! picture size, frame rate, sample rate and channels), so a player
//! switching to one keeps its resolution and audio layout: the default
//! slate ("STREAM WILL BE BACK SHORTLY" on black, silent audio, [`slate`])
//! or the operator's own file ([`fallback_file`]) or URL ([`fallback_url`]).

use std::ffi::CString;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use rsmpeg::avcodec::AVCodecContext;
use rsmpeg::avformat::AVFormatContextInput;
use rsmpeg::avutil::{AVFrame, av_get_default_channel_layout};
use rsmpeg::error::RsmpegError;
use rsmpeg::ffi;
use ugc_core::fallback::Clip;
use ugc_core::{
    AudioParams, Codec, Frame, MediaEvent, MediaKind, Rational, TrackId, TrackInfo, TrackParams,
    Tracks,
};

use super::rung::{Rung, RungSpec};
use super::{Output, ff_err, raw};
use crate::ladder::{RenditionConfig, audio_track, video_track};

/// Seconds of one loop: one GOP.
const LOOP_S: u32 = 2;
/// The video timescale of the slate.
const VIDEO_TIMESCALE: u32 = 90_000;
/// The largest slate picture: 4096x2304 (4K DCI width, 16:9) in pixels.
/// A stream's size is what its publisher's parameter sets say: without a
/// bound one publisher could make the server encode (and hold, looped) a
/// picture of any size.
pub const MAX_SLATE_PIXELS: u32 = 4096 * 2304;

/// 5x7 glyphs of the slate's words, a row per byte (bit 4 = left column).
fn glyph(c: char) -> [u8; 7] {
    match c {
        'A' => [0x0e, 0x11, 0x11, 0x1f, 0x11, 0x11, 0x11],
        'B' => [0x1e, 0x11, 0x11, 0x1e, 0x11, 0x11, 0x1e],
        'C' => [0x0e, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0e],
        'E' => [0x1f, 0x10, 0x10, 0x1e, 0x10, 0x10, 0x1f],
        'H' => [0x11, 0x11, 0x11, 0x1f, 0x11, 0x11, 0x11],
        'I' => [0x0e, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0e],
        'K' => [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11],
        'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1f],
        'M' => [0x11, 0x1b, 0x15, 0x15, 0x11, 0x11, 0x11],
        'O' => [0x0e, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0e],
        'R' => [0x1e, 0x11, 0x11, 0x1e, 0x14, 0x12, 0x11],
        'S' => [0x0f, 0x10, 0x10, 0x0e, 0x01, 0x01, 0x1e],
        'T' => [0x1f, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        'W' => [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0a],
        'Y' => [0x11, 0x11, 0x0a, 0x04, 0x04, 0x04, 0x04],
        _ => [0; 7],
    }
}

const LINES: [&str; 2] = ["STREAM WILL BE", "BACK SHORTLY"];

/// Draws the slate into a luma plane of `width` x `height` (stride
/// `stride`): black, the words in white, centred.
fn draw_luma(luma: &mut [u8], stride: usize, width: usize, height: usize) {
    for row in luma.chunks_mut(stride).take(height) {
        let n = width.min(row.len());
        row[..n].fill(16);
    }
    let longest = LINES.iter().map(|l| l.len()).max().unwrap_or(1);
    // Glyph cells are 6x9 units (5x7 and spacing); the text spans ~60 %.
    let scale = (width * 6 / 10 / (longest * 6)).min(height / 3 / 18).max(1);
    let (cell_w, cell_h) = (6 * scale, 9 * scale);
    let top = height.saturating_sub(cell_h * LINES.len()) / 2;
    for (li, line) in LINES.iter().enumerate() {
        let left = width.saturating_sub(cell_w * line.len()) / 2;
        for (ci, c) in line.chars().enumerate() {
            for (gy, bits) in glyph(c).iter().enumerate() {
                for gx in 0..5 {
                    if bits & (0x10 >> gx) == 0 {
                        continue;
                    }
                    let x0 = left + ci * cell_w + gx * scale;
                    let y0 = top + li * cell_h + gy * scale;
                    for y in y0..(y0 + scale).min(height) {
                        let row = &mut luma[y * stride..];
                        let end = (x0 + scale).min(width);
                        if x0 < end {
                            row[x0..end].fill(235);
                        }
                    }
                }
            }
        }
    }
}

/// The slate picture, YUV 4:2:0.
fn picture(width: u32, height: u32) -> Result<AVFrame, String> {
    let (w, h) = (
        i32::try_from(width).map_err(|_| "width")?,
        i32::try_from(height).map_err(|_| "height")?,
    );
    let mut f = AVFrame::new();
    f.set_width(w);
    f.set_height(h);
    f.set_format(ffi::AVPixelFormat_AV_PIX_FMT_YUV420P);
    f.alloc_buffer().map_err(|e| ff_err("slate picture", e))?;
    let (wu, hu) = (width as usize, height as usize);
    let (luma, stride) = raw::plane_mut(&mut f, 0, hu).ok_or("slate luma plane")?;
    draw_luma(luma, stride, wu, hu);
    for plane in [1, 2] {
        let (chroma, _) = raw::plane_mut(&mut f, plane, hu.div_ceil(2)).ok_or("slate chroma")?;
        chroma.fill(128);
    }
    Ok(f)
}

/// The shape of a stream's tracks a clip is encoded in.
struct Shape<'a> {
    video: Option<&'a TrackInfo>,
    audio: Option<&'a TrackInfo>,
    /// Picture size (even, at least 16x16), when there is video.
    size: Option<(u32, u32)>,
    fps: Rational,
    audio_params: Option<AudioParams>,
    /// H.265 for an HEVC stream (players keep their decoder), else H.264.
    video_codec: Codec,
    /// Opus for an Opus stream, else AAC.
    audio_codec: Codec,
    /// The keyframe interval in µs ([`LOOP_S`] unless aligned segments
    /// ask for less, see [`slate_for_segments`]).
    gop_us: i64,
}

impl<'a> Shape<'a> {
    fn of(tracks: &'a Tracks) -> Result<Shape<'a>, String> {
        let video = tracks.iter().find(|t| t.kind() == MediaKind::Video);
        let audio = tracks.iter().find(|t| t.kind() == MediaKind::Audio);
        if video.is_none() && audio.is_none() {
            return Err("a fallback clip needs a video or an audio track".into());
        }
        let size = video.and_then(|t| match &t.params {
            TrackParams::Video(v) => Some((v.width.max(16) & !1, v.height.max(16) & !1)),
            _ => None,
        });
        if let Some((width, height)) = size
            && u64::from(width) * u64::from(height) > u64::from(MAX_SLATE_PIXELS)
        {
            return Err(format!(
                "a slate of {width}x{height} is larger than {MAX_SLATE_PIXELS} pixels (4096x2304)"
            ));
        }
        let fps = video
            .and_then(|t| match &t.params {
                TrackParams::Video(v) => v.frame_rate,
                _ => None,
            })
            .filter(|r| r.num > 0 && r.den > 0 && r.num / r.den <= 120)
            .unwrap_or(Rational::new(30, 1));
        let audio_params = audio.and_then(|t| match &t.params {
            TrackParams::Audio(a) => Some(a.clone()),
            _ => None,
        });
        let video_codec = match video.map(|t| t.codec) {
            Some(Codec::H265) => Codec::H265,
            Some(Codec::Av1) => Codec::Av1,
            _ => Codec::H264,
        };
        let audio_codec = match audio.map(|t| t.codec) {
            Some(Codec::Opus) => Codec::Opus,
            _ => Codec::Aac,
        };
        Ok(Shape {
            video,
            audio,
            size,
            fps,
            audio_params,
            video_codec,
            audio_codec,
            gop_us: i64::from(LOOP_S) * 1_000_000,
        })
    }

    /// Video pts (in [`VIDEO_TIMESCALE`]) of output frame `i`.
    fn frame_pts(&self, i: i64) -> i64 {
        i * i64::from(VIDEO_TIMESCALE) * i64::from(self.fps.den) / i64::from(self.fps.num)
    }

    /// Whether output frame `i` starts a GOP: the first frame at or after
    /// each multiple of the keyframe interval (the encoder makes only the
    /// keyframes it is told to, as the ladder aligns its renditions'
    /// keyframes).
    fn gop_starts_at(&self, i: i64) -> bool {
        let gop = self.gop_us.max(1);
        let us = |i: i64| i * 1_000_000 * i64::from(self.fps.den) / i64::from(self.fps.num);
        i == 0 || us(i) / gop != us(i - 1) / gop
    }

    /// Encodes what `feed` gives a rung of this shape (H.264 at
    /// `video_kbps`, a keyframe every `gop_ms`; AAC in the audio track's
    /// rate and channels) into a clip with the stream's track ids. With
    /// `fit_sound` the sound frames that would end after the pictures'
    /// loop are dropped (the last frames of the silence that fills to the
    /// pictures' end, and the encoder's flush): the sound then ends within
    /// a frame before the pictures, and a clip looped on their period
    /// ([`Clip::in_sync`]) keeps its keyframes exactly on it; with whole
    /// frames past the end the loop grew by up to two frames (46 ms at
    /// 44.1 kHz) and the keyframes drifted off the segment grid, loop
    /// after loop.
    fn encode(
        &self,
        video_kbps: u32,
        gop_ms: u32,
        fit_sound: bool,
        feed: impl FnOnce(&mut Rung) -> Result<(), String>,
    ) -> Result<Clip, String> {
        let (width, height) = self.size.unwrap_or((16, 16));
        let (tx, rx) = mpsc::channel();
        let out = Output {
            tx,
            notify: None,
            stats: Arc::default(),
        };
        let mut rung = Rung::open(
            RungSpec {
                index: 0,
                width,
                height,
                rendition: RenditionConfig::new("fallback", height, video_kbps, 64),
                preset: "ultrafast".into(),
                keyframe_interval_ms: gop_ms,
                threads: 1,
                video: self.size.map(|_| (self.fps, VIDEO_TIMESCALE)),
                audio: self.audio_params.clone(),
                video_codec: self.video_codec,
                audio_codec: self.audio_codec,
            },
            out,
        )?;
        feed(&mut rung)?;
        rung.flush()?;
        let infos = rung.track_infos();
        drop(rung);
        // The stream's own track ids, so the switch changes configs, not ids.
        let id_of = |rung_id| {
            if rung_id == video_track(0) {
                self.video.map(|t| t.id)
            } else if rung_id == audio_track(0) {
                self.audio.map(|t| t.id)
            } else {
                None
            }
        };
        let mut out_tracks = Vec::new();
        for mut info in infos {
            if let Some(id) = id_of(info.id) {
                info.id = id;
                info.bitrate = None;
                out_tracks.push(info);
            }
        }
        let mut frames = Vec::new();
        while let Ok(e) = rx.try_recv() {
            if let MediaEvent::Frame(mut f) = e
                && let Some(id) = id_of(f.track)
            {
                f.track = id;
                frames.push(f);
            }
        }
        if fit_sound && let (Some(video), Some(audio)) = (self.video, self.audio) {
            fit_sound_to_pictures(&mut frames, &out_tracks, video.id, audio.id);
        }
        Clip::new(Tracks::new(out_tracks), frames).map_err(|e| format!("fallback clip: {e}"))
    }

    /// Feeds `rung` `frames` video frames of the slate picture from frame
    /// `from` on (nothing without video).
    fn slate_video(&self, rung: &mut Rung, from: i64, frames: i64) -> Result<(), String> {
        let Some((width, height)) = self.size else {
            return Ok(());
        };
        let pic = picture(width, height)?;
        for i in from..from + frames {
            let mut f = pic.clone();
            f.set_pts(self.frame_pts(i));
            rung.encode_video(&f, self.gop_starts_at(i))?;
        }
        Ok(())
    }

    /// Feeds `rung` silence from `from_us` to `to_us` (nothing without
    /// audio).
    fn silence(&self, rung: &mut Rung, from_us: i64, to_us: i64) -> Result<(), String> {
        let Some(a) = &self.audio_params else {
            return Ok(());
        };
        let rate = i32::try_from(a.sample_rate).map_err(|_| "sample rate")?;
        let channels = i32::from(a.channels.clamp(1, 2));
        let per = 1024i64;
        let mut at = from_us;
        while at < to_us {
            let mut f = AVFrame::new();
            f.set_nb_samples(per as i32);
            f.set_format(ffi::AVSampleFormat_AV_SAMPLE_FMT_FLTP);
            f.set_sample_rate(rate);
            f.set_channel_layout(av_get_default_channel_layout(channels) as u64);
            f.alloc_buffer().map_err(|e| ff_err("silence", e))?;
            if !raw::set_silence(&mut f, channels) {
                return Err("silence".into());
            }
            f.set_pts(at);
            rung.encode_audio(&f)?;
            at += per * 1_000_000 / i64::from(rate);
        }
        Ok(())
    }

    /// The encoder's audio frame (AAC 1024 samples, Opus 20 ms) in µs,
    /// rounded up.
    fn audio_frame_us(&self) -> i64 {
        let rate = self.audio_params.as_ref().map_or(48_000, |a| a.sample_rate);
        match self.audio_codec {
            Codec::Opus => 20_000,
            _ => {
                let rate = i64::from(rate.max(1));
                (1024 * 1_000_000 + rate - 1) / rate
            }
        }
    }
}

/// Drops the `audio` frames of `frames` that end after the `video`
/// frames' loop (the last picture's dts plus its step), each track counted
/// from its first frame as [`Clip::new`] does (the AAC encoder's first
/// frame is stamped a frame early, its priming).
fn fit_sound_to_pictures(
    frames: &mut Vec<Frame>,
    tracks: &[TrackInfo],
    video: TrackId,
    audio: TrackId,
) {
    let scale = |id| {
        tracks
            .iter()
            .find(|t| t.id == id)
            .map(|t| i128::from(t.timescale.get()))
    };
    let (Some(video_scale), Some(audio_scale)) = (scale(video), scale(audio)) else {
        return;
    };
    // (first dts, last dts, the last frame's step)
    let span = |id| {
        let first = frames.iter().find(|f| f.track == id)?.dts;
        let mut d = frames.iter().filter(|f| f.track == id).map(|f| f.dts).rev();
        let (last, before) = (d.next()?, d.next()?);
        Some((first, last, (last - before).max(1)))
    };
    let (Some((first_picture, last_picture, picture)), Some((first_sound, _, sound))) =
        (span(video), span(audio))
    else {
        return;
    };
    // Compared in a common unit: ticks of both timescales.
    let pictures_end = i128::from(last_picture - first_picture + picture) * audio_scale;
    frames.retain(|f| {
        f.track != audio || i128::from(f.dts - first_sound + sound) * video_scale <= pictures_end
    });
}

/// Encodes the slate for `tracks` (a stream's track set): one 2 s GOP of
/// H.264 at the video track's size and frame rate (30 fps when unknown)
/// and AAC silence at the audio track's rate and channels, with the
/// stream's track ids. Either track may be missing; a stream with neither
/// gets an error. Takes well under a second at 1080p (x264 `ultrafast` on
/// a still picture): call it off the async runtime.
pub fn slate(tracks: &Tracks) -> Result<Clip, String> {
    slate_for_segments(tracks, None)
}

/// [`slate`] for aligned segments of `segment` (an origin's
/// `--segment-ms`; `None`: the 2 s GOP): a keyframe at the start of every
/// segment. With 1 s segments the 2 s GOP started every other segment
/// between keyframes (not independent; 1.267 s and 0.4 s segments in
/// e2e_roles, by the late cut). The GOP is the segment duration divided
/// into pieces of at most 2 s (1 s: 1 s; 3 s: 1.5 s; 6 s: 2 s), and the
/// loop the shortest whole number of GOPs of at least 2 s, so a loop
/// that starts on a boundary keeps its keyframes on them.
pub fn slate_for_segments(tracks: &Tracks, segment: Option<Duration>) -> Result<Clip, String> {
    raw::quiet_ffmpeg_logs();
    let mut shape = Shape::of(tracks)?;
    let most = LOOP_S * 1000;
    let (gop_ms, loop_ms) = slate_timing(segment).unwrap_or((most, most));
    shape.gop_us = i64::from(gop_ms) * 1000;
    shape.encode(300, gop_ms, false, |rung| {
        let frames =
            i64::from(loop_ms) * i64::from(shape.fps.num) / (i64::from(shape.fps.den) * 1000);
        shape.slate_video(rung, 0, frames.max(1))?;
        shape.silence(rung, 0, i64::from(loop_ms) * 1000)
    })
}

/// The GOP and the shortest loop in ms for aligned segments of `segment`
/// (`None`: not aligned, or not a segment duration of 1 ms to 60 s).
fn slate_timing(segment: Option<Duration>) -> Option<(u32, u32)> {
    let most = LOOP_S * 1000;
    let segment = segment
        .and_then(|d| u32::try_from(d.as_millis()).ok())
        .filter(|ms| (1..=60_000).contains(ms))?;
    let gop = (segment / segment.div_ceil(most)).max(1);
    Some((gop, gop * most.div_ceil(gop)))
}

/// The longest fallback file taken, in seconds: a clip is held in memory
/// per track shape (about 5 MB for 30 s at 720p30, 12 MB at 1080p30).
pub const MAX_FILE_S: u32 = 30;

/// Encodes the operator's fallback file (any container and codecs FFmpeg
/// reads; its first [`MAX_FILE_S`] seconds) in the shape of `tracks`, as
/// [`slate`] does its picture: scaled to the stream's picture size (not
/// letterboxed), at the stream's frame rate (frames repeated or dropped),
/// audio resampled to the stream's rate and channels, the stream's track
/// ids; looped in sync ([`Clip::in_sync`]). A file without video gets the
/// slate picture, one without sound gets silence, so the clip always has the
/// stream's tracks. Takes about a fifth of the file's length at 720p30 on
/// one core of this VM (11.5 s for 60 s): call it off the async runtime,
/// once per track shape.
///
/// For aligned segments of `segment` (as [`slate_for_segments`]) a
/// keyframe starts every segment, and the last picture is held up to the
/// next GOP's start (less than a GOP), so every loop of a clip started on
/// a boundary keeps its keyframes on boundaries; `None`: a keyframe
/// every 2 s and the file's own length.
pub fn fallback_file(
    path: &Path,
    tracks: &Tracks,
    segment: Option<Duration>,
) -> Result<Clip, String> {
    let c = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| format!("{}: a path with a NUL byte", path.display()))?;
    // A local file only: not a playlist or concat list that names others.
    fallback_input(&c, &path.display().to_string(), "file", tracks, segment)
}

/// How long reading a fallback URL may wait for the server, in µs.
const URL_WAIT_US: &std::ffi::CStr = c"10000000";

/// [`fallback_file`] of an `http://` or `https://` URL (a creator's
/// "be right back" video on their CDN). FFmpeg fetches it over HTTP(S)
/// only (no `file:`, no other protocol, also for playlists it names),
/// giving up after 10 s without data; only the first [`MAX_FILE_S`]
/// seconds are read. The answer is only ever decoded as media: what is
/// not media is an error, never passed on.
pub fn fallback_url(url: &str, tracks: &Tracks, segment: Option<Duration>) -> Result<Clip, String> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(format!("{url}: not an http:// or https:// URL"));
    }
    let c = CString::new(url).map_err(|_| format!("{url}: a URL with a NUL byte"))?;
    fallback_input(&c, url, "http,https,tls,tcp", tracks, segment)
}

fn fallback_input(
    input: &std::ffi::CStr,
    name: &str,
    protocols: &str,
    tracks: &Tracks,
    segment: Option<Duration>,
) -> Result<Clip, String> {
    raw::quiet_ffmpeg_logs();
    let mut shape = Shape::of(tracks)?;
    let aligned = slate_timing(segment);
    if let Some((gop_ms, _)) = aligned {
        shape.gop_us = i64::from(gop_ms) * 1000;
    }
    let gop_ms = u32::try_from(shape.gop_us / 1000).unwrap_or(LOOP_S * 1000);
    let mut file = FileDecoder::open(input, name, protocols)?;
    // 0.05 bit per pixel and frame: 1.4 Mbit/s at 720p30, 3.1 at 1080p30
    // (a holding clip, not the show).
    let kbps = shape.size.map_or(300, |(w, h)| {
        let bits = u64::from(w) * u64::from(h) * u64::from(shape.fps.num)
            / u64::from(shape.fps.den.max(1))
            / 20;
        u32::try_from((bits / 1000).clamp(300, 8000)).unwrap_or(8000)
    });
    let clip = shape.encode(kbps, gop_ms, aligned.is_some(), |rung| {
        let limit_us = i64::from(MAX_FILE_S) * 1_000_000;
        // Output video frame i shows the newest decoded picture at or
        // before its time.
        let mut next_out = 0i64;
        let mut held: Option<AVFrame> = None;
        let mut audio_end_us = 0i64;
        let mut video_end_us = 0i64;
        // The last decoded picture lasts as long as the one before it.
        let mut last_video: Option<i64> = None;
        let mut origin: Option<i64> = None;
        let out_us = |i: i64| i * 1_000_000 * i64::from(shape.fps.den) / i64::from(shape.fps.num);
        while let Some((kind, mut f, t_us)) = file.next()? {
            let origin = *origin.get_or_insert(t_us);
            let t = t_us - origin;
            if t < 0 {
                continue;
            }
            if t >= limit_us {
                break;
            }
            match kind {
                MediaKind::Video if shape.size.is_some() => {
                    while out_us(next_out) < t
                        && let Some(p) = held.as_ref()
                    {
                        let mut p = p.clone();
                        p.set_pts(shape.frame_pts(next_out));
                        rung.encode_video(&p, shape.gop_starts_at(next_out))?;
                        next_out += 1;
                    }
                    let step = last_video.map_or(0, |l| t - l).max(0);
                    last_video = Some(t);
                    video_end_us = video_end_us.max(t + step);
                    held = Some(f);
                }
                MediaKind::Audio if shape.audio_params.is_some() => {
                    if f.channel_layout == 0 {
                        f.set_channel_layout(av_get_default_channel_layout(f.channels) as u64);
                    }
                    let rate = i64::from(f.sample_rate.max(1));
                    f.set_pts(t);
                    audio_end_us = t + i64::from(f.nb_samples) * 1_000_000 / rate;
                    rung.encode_audio(&f)?;
                }
                _ => {}
            }
        }
        if file.has_video && shape.size.is_some() {
            let Some(p) = held else {
                return Err("the fallback file has no picture".into());
            };
            // The last picture lasts until its end (and, for aligned
            // segments, past the sound's and to the next GOP's start).
            let sound_end_us = if aligned.is_some() && file.has_audio {
                audio_end_us + shape.audio_frame_us()
            } else {
                0
            };
            while next_out == 0
                || out_us(next_out) < video_end_us.max(sound_end_us)
                || (aligned.is_some() && !shape.gop_starts_at(next_out))
            {
                let mut f = p.clone();
                f.set_pts(shape.frame_pts(next_out));
                rung.encode_video(&f, shape.gop_starts_at(next_out))?;
                next_out += 1;
            }
        }
        let length_us = if file.has_video {
            out_us(next_out)
        } else {
            audio_end_us
        };
        if length_us <= 0 {
            return Err("the fallback file has no media".into());
        }
        // A file without pictures: the slate's, to the next GOP's start
        // for aligned segments.
        let length_us = match aligned {
            Some(_) if !file.has_video && shape.size.is_some() => {
                (length_us + shape.gop_us - 1) / shape.gop_us * shape.gop_us
            }
            _ => length_us,
        };
        if !file.has_video {
            let per = 1_000_000 * i64::from(shape.fps.den);
            let frames = (length_us * i64::from(shape.fps.num) + per - 1) / per;
            shape.slate_video(rung, 0, frames.max(1))?;
        }
        // Sound to the picture's end: the file's, then silence (for
        // aligned segments cut to within a frame before it, by `encode`).
        let from = if file.has_audio { audio_end_us } else { 0 };
        shape.silence(rung, from, length_us)
    })?;
    Ok(clip.in_sync())
}

/// The decoded frames of a file: its best video and audio streams.
struct FileDecoder {
    input: AVFormatContextInput,
    /// Stream index, decoder, time base, kind.
    decoders: Vec<(usize, AVCodecContext, ffi::AVRational, MediaKind)>,
    has_video: bool,
    has_audio: bool,
    pending: std::collections::VecDeque<(MediaKind, AVFrame, i64)>,
    eof: bool,
}

impl FileDecoder {
    fn open(input: &std::ffi::CStr, name: &str, protocols: &str) -> Result<FileDecoder, String> {
        let whitelist = CString::new(protocols).map_err(|_| format!("{name}: bad protocols"))?;
        let mut options = Some(
            rsmpeg::avutil::AVDictionary::new(c"protocol_whitelist", &whitelist, 0).set(
                c"rw_timeout",
                URL_WAIT_US,
                0,
            ),
        );
        let input = AVFormatContextInput::open(input, None, &mut options)
            .map_err(|e| format!("{name}: {e}"))?;
        let mut decoders = Vec::new();
        for (ty, kind) in [
            (ffi::AVMediaType_AVMEDIA_TYPE_VIDEO, MediaKind::Video),
            (ffi::AVMediaType_AVMEDIA_TYPE_AUDIO, MediaKind::Audio),
        ] {
            let Some((index, codec)) = input
                .find_best_stream(ty)
                .map_err(|e| format!("{name}: {e}"))?
            else {
                continue;
            };
            let stream = input.streams().get(index).ok_or("no such stream")?;
            let mut ctx = AVCodecContext::new(&codec);
            ctx.apply_codecpar(&stream.codecpar())
                .map_err(|e| format!("{name}: {e}"))?;
            ctx.open(None).map_err(|e| format!("{name}: {e}"))?;
            decoders.push((index, ctx, stream.time_base, kind));
        }
        if decoders.is_empty() {
            return Err(format!("{name}: neither video nor audio"));
        }
        let has = |k| decoders.iter().any(|d| d.3 == k);
        Ok(FileDecoder {
            has_video: has(MediaKind::Video),
            has_audio: has(MediaKind::Audio),
            input,
            decoders,
            pending: Default::default(),
            eof: false,
        })
    }

    /// The next decoded frame in file order: its kind, the frame and its
    /// time in microseconds; `None` at the end.
    fn next(&mut self) -> Result<Option<(MediaKind, AVFrame, i64)>, String> {
        loop {
            if let Some(f) = self.pending.pop_front() {
                return Ok(Some(f));
            }
            if self.eof {
                return Ok(None);
            }
            match self
                .input
                .read_packet()
                .map_err(|e| format!("reading: {e}"))?
            {
                Some(pkt) => {
                    let index = usize::try_from(pkt.stream_index).unwrap_or(usize::MAX);
                    if let Some(d) = self.decoders.iter_mut().find(|d| d.0 == index) {
                        // A damaged packet is skipped, as players do.
                        if d.1.send_packet(Some(&pkt)).is_ok() {
                            drain(d, &mut self.pending)?;
                        }
                    }
                }
                None => {
                    self.eof = true;
                    for d in &mut self.decoders {
                        let _ = d.1.send_packet(None);
                        drain(d, &mut self.pending)?;
                    }
                }
            }
        }
    }
}

/// Moves a decoder's ready frames to `out`, each with its time in
/// microseconds (frames without a timestamp are dropped).
fn drain(
    d: &mut (usize, AVCodecContext, ffi::AVRational, MediaKind),
    out: &mut std::collections::VecDeque<(MediaKind, AVFrame, i64)>,
) -> Result<(), String> {
    loop {
        match d.1.receive_frame() {
            Ok(f) => {
                let ts = if f.best_effort_timestamp != ffi::AV_NOPTS_VALUE {
                    f.best_effort_timestamp
                } else {
                    f.pts
                };
                if ts == ffi::AV_NOPTS_VALUE {
                    continue;
                }
                let tb = d.2;
                let us =
                    i128::from(ts) * 1_000_000 * i128::from(tb.num) / i128::from(tb.den.max(1));
                out.push_back((d.3, f, i64::try_from(us).unwrap_or(i64::MAX)));
            }
            Err(RsmpegError::DecoderDrainError | RsmpegError::DecoderFlushedError) => {
                return Ok(());
            }
            Err(e) => return Err(ff_err("decoding the fallback file", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ugc_core::hub::tests_support::av_tracks;

    #[test]
    fn a_slate_takes_the_streams_shape_and_loops_on_its_keyframe() {
        let tracks = av_tracks();
        let clip = slate(&tracks).unwrap();
        let ids: Vec<u32> = clip.tracks().iter().map(|t| t.id.0).collect();
        assert_eq!(ids, vec![1, 2], "the stream's track ids");
        let v = clip.tracks().get(ugc_core::TrackId(1)).unwrap();
        let avc = crate::h264::AvcConfig::parse(&v.config).unwrap();
        assert!(avc.codec_string().starts_with("avc1."));
        match &v.params {
            TrackParams::Video(p) => assert_eq!((p.width, p.height), (1280, 720)),
            other => panic!("{other:?}"),
        }
        match &clip.tracks().get(ugc_core::TrackId(2)).unwrap().params {
            TrackParams::Audio(a) => assert_eq!((a.sample_rate, a.channels), (44_100, 2)),
            other => panic!("{other:?}"),
        }
        // One 2 s loop (the audio a frame or two longer, its own period).
        let p = clip.period().as_millis();
        assert!((2_000..2_100).contains(&p), "{p} ms");
        let mut looper = ugc_core::fallback::Looper::new(Arc::new(clip));
        let frames = looper.due(std::time::Duration::from_secs(4));
        let keys: Vec<i64> = frames
            .iter()
            .filter(|f| f.track.0 == 1 && f.keyframe)
            .map(|f| f.dts)
            .collect();
        assert_eq!(keys, vec![0, 180_000, 360_000], "a keyframe per loop");
        let video = frames.iter().filter(|f| f.track.0 == 1).count();
        assert_eq!(video, 121);
    }

    /// For aligned segments a keyframe starts every segment: 1 s
    /// segments get two 1 s GOPs in the 2 s loop, 3 s ones two of 1.5 s in
    /// a 3 s loop; 2 s, 6 s and none keep the 2 s GOP and loop.
    #[test]
    fn a_slate_for_aligned_segments_has_a_keyframe_per_segment() {
        let ms = |ms: u64| Some(Duration::from_millis(ms));
        assert_eq!(slate_timing(None), None);
        assert_eq!(slate_timing(ms(1000)), Some((1000, 2000)));
        assert_eq!(slate_timing(ms(1500)), Some((1500, 3000)));
        assert_eq!(slate_timing(ms(2000)), Some((2000, 2000)));
        assert_eq!(slate_timing(ms(3000)), Some((1500, 3000)));
        assert_eq!(slate_timing(ms(6000)), Some((2000, 2000)));
        assert_eq!(slate_timing(ms(200)), Some((200, 2000)));
        assert_eq!(slate_timing(ms(0)), None);
        let clip = slate_for_segments(&av_tracks(), ms(1000)).unwrap();
        let p = clip.period().as_millis();
        assert!((2_000..2_100).contains(&p), "{p} ms");
        let mut looper = ugc_core::fallback::Looper::new(Arc::new(clip));
        let frames = looper.due(Duration::from_secs(4));
        let keys: Vec<i64> = frames
            .iter()
            .filter(|f| f.track.0 == 1 && f.keyframe)
            .map(|f| f.dts)
            .collect();
        assert_eq!(keys, vec![0, 90_000, 180_000, 270_000, 360_000]);
    }

    /// An HEVC stream's slate is H.265 (Main, `hvc1`), so a player keeps
    /// its decoder: a keyframe per loop, and FFmpeg decodes two loops of
    /// it (as Annex B, parameter sets first) without an error.
    #[test]
    fn an_hevc_streams_slate_is_hevc() {
        let tracks = Tracks::new(
            av_tracks()
                .iter()
                .cloned()
                .map(|mut t| {
                    if t.kind() == MediaKind::Video {
                        t.codec = Codec::H265;
                    }
                    t
                })
                .collect(),
        );
        let clip = slate(&tracks).unwrap();
        let v = clip.tracks().get(ugc_core::TrackId(1)).unwrap().clone();
        assert_eq!(v.codec, Codec::H265);
        let hvcc = crate::hevc::HevcConfig::parse(&v.config).unwrap();
        assert!(v.codec_string.starts_with("hvc1.1."), "{}", v.codec_string);
        assert_eq!((hvcc.width, hvcc.height), (1280, 720));
        let mut looper = ugc_core::fallback::Looper::new(Arc::new(clip));
        let frames: Vec<ugc_core::Frame> = looper
            .due(std::time::Duration::from_secs(4))
            .into_iter()
            .filter(|f| f.track.0 == 1)
            .collect();
        let keys: Vec<i64> = frames
            .iter()
            .filter(|f| f.keyframe)
            .map(|f| f.dts)
            .collect();
        assert_eq!(keys, vec![0, 180_000, 360_000], "a keyframe per loop");
        assert!(frames.iter().all(|f| f.pts == f.dts), "no B-frames");
        let mut annexb = Vec::new();
        for ps in &hvcc.parameter_sets {
            annexb.extend_from_slice(&[0, 0, 0, 1]);
            annexb.extend_from_slice(ps);
        }
        for f in &frames[..120] {
            let mut rest = &f.data[..];
            while rest.len() >= 4 {
                let n = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                annexb.extend_from_slice(&[0, 0, 0, 1]);
                annexb.extend_from_slice(&rest[4..4 + n]);
                rest = &rest[4 + n..];
            }
        }
        let dir = std::env::temp_dir().join(format!("ugc-hevc-slate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("slate.h265");
        std::fs::write(&path, &annexb).unwrap();
        let out = std::process::Command::new("ffmpeg")
            .args(["-v", "error", "-f", "hevc", "-i"])
            .arg(&path)
            .args(["-f", "framecrc", "-"])
            .output()
            .expect("ffmpeg");
        let decoded = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.starts_with('#'))
            .count();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(decoded, 120, "two loops of 60 pictures");
    }

    /// FFmpeg reading `samples` of `track` from our fMP4 (init segment and
    /// one fragment) into `format` on its stdout.
    fn ffmpeg_reads_fmp4(
        track: &TrackInfo,
        samples: &[crate::fmp4::Sample],
        format: &str,
    ) -> std::process::Output {
        let mut mp4 = crate::fmp4::init_segment(std::slice::from_ref(track))
            .unwrap()
            .to_vec();
        mp4.extend_from_slice(&crate::fmp4::styp());
        let fragment = crate::fmp4::TrackFragment {
            track: track.id,
            base_decode_time: 0,
            samples,
        };
        mp4.extend_from_slice(&crate::fmp4::fragment(1, &[fragment]).unwrap());
        let dir = std::env::temp_dir().join(format!(
            "ugc-slate-{:?}-{}",
            track.codec,
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("slate.mp4");
        std::fs::write(&path, &mp4).unwrap();
        let out = std::process::Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(&path)
            .args(["-f", format, "-"])
            .output()
            .expect("ffmpeg");
        let _ = std::fs::remove_dir_all(&dir);
        out
    }

    /// An AV1 stream's slate is AV1 (libaom, Main 8 bit 4:2:0, `av01`
    /// with its `av1C`), so a player keeps its decoder at the switch: a
    /// keyframe per loop, no temporal delimiters in samples, and FFmpeg
    /// decodes two loops of it from our fMP4 without an error.
    #[test]
    fn an_av1_streams_slate_is_av1() {
        let tracks = Tracks::new(
            av_tracks()
                .iter()
                .cloned()
                .map(|mut t| {
                    if t.kind() == MediaKind::Video {
                        t.codec = Codec::Av1;
                    }
                    t
                })
                .collect(),
        );
        let clip = slate(&tracks).unwrap();
        let v = clip.tracks().get(ugc_core::TrackId(1)).unwrap().clone();
        assert_eq!(v.codec, Codec::Av1);
        assert!(v.codec_string.starts_with("av01.0."), "{}", v.codec_string);
        assert!(v.codec_string.ends_with("M.08"), "{}", v.codec_string);
        let mut looper = ugc_core::fallback::Looper::new(Arc::new(clip));
        let frames: Vec<ugc_core::Frame> = looper
            .due(std::time::Duration::from_secs(4))
            .into_iter()
            .filter(|f| f.track.0 == 1)
            .collect();
        let keys: Vec<i64> = frames
            .iter()
            .filter(|f| f.keyframe)
            .map(|f| f.dts)
            .collect();
        assert_eq!(keys, vec![0, 180_000, 360_000], "a keyframe per loop");
        assert!(frames.iter().all(|f| f.pts == f.dts), "no reordering");
        for f in &frames {
            let obus = crate::av1::obus(&f.data).unwrap();
            assert!(
                obus.iter()
                    .all(|o| o.kind != crate::av1::obu_type::TEMPORAL_DELIMITER)
            );
        }
        let samples: Vec<crate::fmp4::Sample> = frames[..120]
            .iter()
            .map(|f| crate::fmp4::Sample {
                duration: 3000,
                cts_offset: 0,
                keyframe: f.keyframe,
                data: f.data.clone(),
            })
            .collect();
        let out = ffmpeg_reads_fmp4(&v, &samples, "framecrc");
        let decoded = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.starts_with('#'))
            .count();
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(decoded, 120, "two loops of 60 pictures");
    }

    /// An Opus stream's slate has Opus silence (libopus, 48 kHz, the
    /// stream's channels, `dOps`), so a player keeps its audio decoder:
    /// 20 ms packets over the loop, and FFmpeg decodes them from fMP4
    /// without an error.
    #[test]
    fn an_opus_streams_slate_has_opus_sound() {
        let tracks = Tracks::new(
            av_tracks()
                .iter()
                .cloned()
                .map(|mut t| {
                    if t.kind() == MediaKind::Audio {
                        t.codec = Codec::Opus;
                        t.params = TrackParams::Audio(AudioParams {
                            sample_rate: 48_000,
                            channels: 2,
                            samples_per_frame: 960,
                        });
                    }
                    t
                })
                .collect(),
        );
        let clip = slate(&tracks).unwrap();
        let a = clip.tracks().get(ugc_core::TrackId(2)).unwrap().clone();
        assert_eq!((a.codec, a.codec_string.as_str()), (Codec::Opus, "opus"));
        assert_eq!(a.config.len(), 11, "a dOps body of family 0");
        assert_eq!((a.config[0], a.config[1]), (0, 2), "version 0, stereo");
        let mut looper = ugc_core::fallback::Looper::new(Arc::new(clip));
        let audio: Vec<ugc_core::Frame> = looper
            .due(std::time::Duration::from_secs(4))
            .into_iter()
            .filter(|f| f.track.0 == 2)
            .collect();
        assert!(
            (198..=204).contains(&audio.len()),
            "{} packets in 4 s",
            audio.len()
        );
        assert!(
            audio.windows(2).all(|w| w[1].dts - w[0].dts == 960),
            "20 ms packets"
        );
        let samples: Vec<crate::fmp4::Sample> = audio
            .iter()
            .map(|f| crate::fmp4::Sample {
                duration: 960,
                cts_offset: 0,
                keyframe: true,
                data: f.data.clone(),
            })
            .collect();
        let out = ffmpeg_reads_fmp4(&a, &samples, "null");
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn a_picture_larger_than_4k_gets_no_slate() {
        let with_size = |width, height| {
            let v = av_tracks().iter().next().unwrap().clone();
            let a = av_tracks().iter().nth(1).unwrap().clone();
            let mut v = v;
            v.params = TrackParams::Video(ugc_core::VideoParams {
                width,
                height,
                frame_rate: Some(Rational::new(30, 1)),
            });
            Tracks::new(vec![v, a])
        };
        let e = slate(&with_size(16_384, 16_384)).err().unwrap();
        assert!(e.contains("larger than"), "{e}");
        assert!(slate(&with_size(4098, 2304)).is_err());
        // The bound itself is a slate (and a fast one: a still picture).
        assert!(slate(&with_size(4096, 2304)).is_ok());
    }

    /// A file made by the ffmpeg CLI in a directory of its own.
    fn made_file(name: &str, args: &[&str]) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("ugc-fallback-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        let out = std::process::Command::new("ffmpeg")
            .args(["-v", "error", "-y"])
            .args(args)
            .arg(&path)
            .output()
            .expect("ffmpeg (scripts/install-deps.sh installs it)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        path
    }

    fn frames_of(clip: Clip, seconds: u64) -> Vec<ugc_core::Frame> {
        let mut looper = ugc_core::fallback::Looper::new(Arc::new(clip));
        looper.due(std::time::Duration::from_secs(seconds))
    }

    /// 3 s of 25 fps 320x240 with a tone: the clip is 3 s of the stream's
    /// 1280x720 at 30 fps and 44.1 kHz stereo, keyframes every 2 s, and its
    /// tracks loop together.
    #[test]
    fn a_fallback_file_takes_the_streams_shape_and_loops_in_sync() {
        let path = made_file(
            "tone.mp4",
            &[
                "-f",
                "lavfi",
                "-i",
                "testsrc=size=320x240:rate=25:duration=3",
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=440:sample_rate=48000:duration=3",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-c:a",
                "aac",
                "-ac",
                "1",
            ],
        );
        let clip = fallback_file(&path, &av_tracks(), None).unwrap();
        match &clip.tracks().get(ugc_core::TrackId(1)).unwrap().params {
            TrackParams::Video(p) => assert_eq!((p.width, p.height), (1280, 720)),
            other => panic!("{other:?}"),
        }
        match &clip.tracks().get(ugc_core::TrackId(2)).unwrap().params {
            TrackParams::Audio(a) => assert_eq!((a.sample_rate, a.channels), (44_100, 2)),
            other => panic!("{other:?}"),
        }
        let p = clip.period().as_millis();
        assert!((3_000..3_050).contains(&p), "{p} ms");
        let frames = frames_of(clip, 6);
        let video: Vec<&ugc_core::Frame> = frames.iter().filter(|f| f.track.0 == 1).collect();
        // 90 frames a loop at 30 fps (3 s), the second loop too.
        // (AAC's whole frames make the audio, so the loop, a frame or two
        // longer: the last picture holds that much longer.)
        assert!((178..=182).contains(&video.len()), "{}", video.len());
        let keys: Vec<i64> = video.iter().filter(|f| f.keyframe).map(|f| f.dts).collect();
        assert_eq!(&keys[..2], &[0, 180_000], "a keyframe every 2 s");
        let second_loop = p as i64 * 90;
        assert!(
            keys.iter().any(|k| (k - second_loop).abs() <= 90),
            "the second loop starts on a keyframe: {keys:?}"
        );
        // Audio for the whole loop: 3 s of 1024-sample frames.
        let audio = frames.iter().filter(|f| f.track.0 == 2).count();
        assert!((255..=262).contains(&audio), "{audio}");

        // For aligned 2 s segments: the last picture held to 4 s (the
        // next GOP's start), the sound within it, so the loop is exactly
        // 4 s and its keyframes stay on the grid loop after loop (with
        // the sound's whole frames past the end they drifted up to 46 ms
        // a loop).
        let clip = fallback_file(&path, &av_tracks(), Some(Duration::from_secs(2))).unwrap();
        assert_eq!(clip.period(), Duration::from_secs(4));
        let frames = frames_of(clip, 40);
        let keys: Vec<i64> = frames
            .iter()
            .filter(|f| f.track.0 == 1 && f.keyframe)
            .map(|f| f.dts)
            .collect();
        let grid: Vec<i64> = (0..=20).map(|i| i * 180_000).collect();
        assert_eq!(keys, grid, "a keyframe on every 2 s boundary");
        let audio: Vec<i64> = frames
            .iter()
            .filter(|f| f.track.0 == 2)
            .map(|f| f.dts)
            .collect();
        assert!(audio.windows(2).all(|w| w[0] < w[1]), "{audio:?}");
        // The sound's tenth loop starts with the pictures' (40 s).
        assert_eq!(audio.last(), Some(&(40 * 44_100)));
    }

    /// A sound-only file for aligned 1 s segments: the slate's picture to
    /// the next whole second, a keyframe each.
    #[test]
    fn a_sound_only_fallback_file_for_aligned_segments_keeps_the_grid() {
        let path = made_file(
            "sound.m4a",
            &[
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=440:sample_rate=48000:duration=2.5",
                "-c:a",
                "aac",
            ],
        );
        let clip = fallback_file(&path, &av_tracks(), Some(Duration::from_secs(1))).unwrap();
        assert_eq!(clip.period(), Duration::from_secs(3));
        let keys: Vec<i64> = frames_of(clip, 9)
            .iter()
            .filter(|f| f.track.0 == 1 && f.keyframe)
            .map(|f| f.dts)
            .collect();
        assert_eq!(keys, (0..=9).map(|i| i * 90_000).collect::<Vec<_>>());
    }

    /// Serves `body` (as `content_type`) to every HTTP request on a
    /// loopback port, in a thread: the URL.
    fn serve(body: Vec<u8>, content_type: &'static str) -> String {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/loop", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap_or(0) == 1 {
                    head.push(byte[0]);
                }
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(&body);
            }
        });
        url
    }

    /// A creator's fallback URL: fetched over HTTP and shaped like a file;
    /// no protocol but HTTP(S), also not through a playlist the server
    /// answers (which could name local files); a dead URL is a clear error.
    #[test]
    fn a_fallback_url_is_fetched_over_http_only() {
        let path = made_file(
            "web.mp4",
            &[
                "-f",
                "lavfi",
                "-i",
                "testsrc=size=160x120:rate=25:duration=2",
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=440:sample_rate=48000:duration=2",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-c:a",
                "aac",
                "-movflags",
                "+faststart",
            ],
        );
        let url = serve(std::fs::read(&path).unwrap(), "video/mp4");
        let clip = fallback_url(&url, &av_tracks(), None).unwrap();
        let p = clip.period().as_millis();
        assert!((2_000..2_050).contains(&p), "{p} ms");
        match &clip.tracks().get(ugc_core::TrackId(1)).unwrap().params {
            TrackParams::Video(v) => assert_eq!((v.width, v.height), (1280, 720)),
            other => panic!("{other:?}"),
        }

        let local = format!(
            "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\nfile://{}\n#EXT-X-ENDLIST\n",
            path.display()
        );
        let playlist = serve(local.into_bytes(), "application/vnd.apple.mpegurl");
        let e = fallback_url(&playlist, &av_tracks(), None).err().unwrap();
        assert!(e.contains("/loop"), "{e}");

        for bad in [
            format!("file://{}", path.display()),
            path.display().to_string(),
        ] {
            let e = fallback_url(&bad, &av_tracks(), None).err().unwrap();
            assert!(e.contains("not an http"), "{e}");
        }
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}/gone.mp4", l.local_addr().unwrap())
        };
        let e = fallback_url(&dead, &av_tracks(), None).err().unwrap();
        assert!(e.contains("gone.mp4"), "{e}");
    }

    /// A file with sound only gets the slate picture; one that is no media
    /// is a clear error.
    #[test]
    fn a_fallback_file_without_video_gets_the_slate_picture() {
        let path = made_file(
            "tone.m4a",
            &[
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=440:duration=1",
                "-c:a",
                "aac",
            ],
        );
        let clip = fallback_file(&path, &av_tracks(), None).unwrap();
        let frames = frames_of(clip, 1);
        assert!(frames.iter().filter(|f| f.track.0 == 1).count() >= 30);
        let junk = path.with_extension("txt");
        std::fs::write(&junk, b"not a video").unwrap();
        let e = fallback_file(&junk, &av_tracks(), None).err().unwrap();
        assert!(e.contains("tone.txt"), "{e}");
    }

    #[test]
    fn the_words_are_drawn_centred_in_white_on_black() {
        let (w, h) = (320, 180);
        let mut luma = vec![0u8; w * h];
        draw_luma(&mut luma, w, w, h);
        let white = luma.iter().filter(|&&v| v == 235).count();
        let black = luma.iter().filter(|&&v| v == 16).count();
        assert_eq!(white + black, w * h);
        assert!(white > 500 && white < w * h / 5, "{white}");
        // Centred: as much white left of the middle as right of it, about.
        let left: usize = (0..h)
            .map(|y| {
                luma[y * w..y * w + w / 2]
                    .iter()
                    .filter(|&&v| v == 235)
                    .count()
            })
            .sum();
        let ratio = left as f64 / white as f64;
        assert!((0.35..0.65).contains(&ratio), "{ratio}");
    }
}
