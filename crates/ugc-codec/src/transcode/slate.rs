//! The default fallback clip: a slate ("STREAM WILL BE BACK SHORTLY" on
//! black) with silent audio, encoded once in the shape of a stream's tracks
//! (its picture size, frame rate, sample rate and channels), so a player
//! switching to it keeps its resolution and audio layout.

use std::sync::Arc;
use std::sync::mpsc;

use rsmpeg::avutil::{AVFrame, av_get_default_channel_layout};
use rsmpeg::ffi;
use ugc_core::fallback::Clip;
use ugc_core::{AudioParams, MediaEvent, MediaKind, Rational, TrackParams, Tracks};

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

/// Encodes the slate for `tracks` (a stream's track set): one 2 s GOP of
/// H.264 at the video track's size and frame rate (30 fps when unknown)
/// and AAC silence at the audio track's rate and channels, with the
/// stream's track ids. Either track may be missing; a stream with neither
/// gets an error. Takes well under a second at 1080p (x264 `ultrafast` on
/// a still picture): call it off the async runtime.
pub fn slate(tracks: &Tracks) -> Result<Clip, String> {
    raw::quiet_ffmpeg_logs();
    let video = tracks.iter().find(|t| t.kind() == MediaKind::Video);
    let audio = tracks.iter().find(|t| t.kind() == MediaKind::Audio);
    if video.is_none() && audio.is_none() {
        return Err("a slate needs a video or an audio track".into());
    }
    let size = video.and_then(|t| match &t.params {
        TrackParams::Video(v) => Some((v.width.max(16) & !1, v.height.max(16) & !1)),
        _ => None,
    });
    let fps = video
        .and_then(|t| match &t.params {
            TrackParams::Video(v) => v.frame_rate,
            _ => None,
        })
        .filter(|r| r.num > 0 && r.den > 0 && r.num / r.den <= 120)
        .unwrap_or(Rational::new(30, 1));
    let audio_params: Option<AudioParams> = audio.and_then(|t| match &t.params {
        TrackParams::Audio(a) => Some(a.clone()),
        _ => None,
    });
    let (width, height) = size.unwrap_or((16, 16));
    if u64::from(width) * u64::from(height) > u64::from(MAX_SLATE_PIXELS) {
        return Err(format!(
            "a slate of {width}x{height} is larger than {MAX_SLATE_PIXELS} pixels (4096x2304)"
        ));
    }
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
            rendition: RenditionConfig::new("slate", height, 300, 64),
            preset: "ultrafast".into(),
            keyframe_interval_ms: LOOP_S * 1000,
            threads: 1,
            video: size.map(|_| (fps, VIDEO_TIMESCALE)),
            audio: audio_params.clone(),
        },
        out,
    )?;
    if size.is_some() {
        let pic = picture(width, height)?;
        let frames = i64::from(LOOP_S) * i64::from(fps.num) / i64::from(fps.den).max(1);
        for i in 0..frames.max(1) {
            let mut f = pic.clone();
            f.set_pts(i * i64::from(VIDEO_TIMESCALE) * i64::from(fps.den) / i64::from(fps.num));
            rung.encode_video(&f, i == 0)?;
        }
    }
    if let Some(a) = &audio_params {
        let rate = i32::try_from(a.sample_rate).map_err(|_| "sample rate")?;
        let channels = i32::from(a.channels.clamp(1, 2));
        let per = 1024i64;
        let chunks = (i64::from(LOOP_S) * i64::from(rate) + per - 1) / per;
        for i in 0..chunks {
            let mut f = AVFrame::new();
            f.set_nb_samples(per as i32);
            f.set_format(ffi::AVSampleFormat_AV_SAMPLE_FMT_FLTP);
            f.set_sample_rate(rate);
            f.set_channel_layout(av_get_default_channel_layout(channels) as u64);
            f.alloc_buffer().map_err(|e| ff_err("slate audio", e))?;
            if !raw::set_silence(&mut f, channels) {
                return Err("slate audio: silence".into());
            }
            f.set_pts(i * per * 1_000_000 / i64::from(rate));
            rung.encode_audio(&f)?;
        }
    }
    rung.flush()?;
    let infos = rung.track_infos();
    drop(rung);
    // The stream's own track ids, so the switch changes configs, not ids.
    let id_of = |rung_id| {
        if rung_id == video_track(0) {
            video.map(|t| t.id)
        } else if rung_id == audio_track(0) {
            audio.map(|t| t.id)
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
    Clip::new(Tracks::new(out_tracks), frames).map_err(|e| format!("slate: {e}"))
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
