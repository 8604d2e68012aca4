//! One rung: scaler + x264 encoder + AAC encoder on its own thread.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;

use bytes::Bytes;
use rsmpeg::avcodec::{AVCodec, AVCodecContext};
use rsmpeg::avutil::{AVAudioFifo, AVDictionary, AVFrame, av_get_default_channel_layout};
use rsmpeg::error::RsmpegError;
use rsmpeg::ffi;
use rsmpeg::swresample::SwrContext;
use rsmpeg::swscale::SwsContext;
use ugc_core::{
    AudioParams, Codec, Frame, MediaEvent, Rational, Timescale, TrackInfo, TrackParams, VideoParams,
};

use super::{Output, ff_err, raw, rescale};
use crate::ladder::{RenditionConfig, audio_track, video_track};

type R<T> = std::result::Result<T, String>;

/// Work for a rung thread.
pub(crate) enum Job {
    /// A decoded source picture (shared buffers; the rung only reads it).
    Video { frame: AVFrame, force_key: bool },
    /// Decoded audio, `pts` in microseconds.
    Audio(AVFrame),
    /// Drain the encoders; nothing follows.
    Flush,
}

/// What a rung is opened with.
pub(crate) struct RungSpec {
    pub index: usize,
    pub width: u32,
    pub height: u32,
    pub rendition: RenditionConfig,
    pub preset: String,
    pub keyframe_interval_ms: u32,
    pub threads: u32,
    /// Frame rate and timescale of the source video, if any.
    pub video: Option<(Rational, u32)>,
    pub audio: Option<AudioParams>,
    /// [`Codec::H264`] (x264) or [`Codec::H265`] (x265, for a fallback
    /// clip in an HEVC stream's codec).
    pub video_codec: Codec,
    /// [`Codec::Aac`] or [`Codec::Opus`] (libopus, for a fallback clip in
    /// an Opus stream's codec).
    pub audio_codec: Codec,
}

struct VideoEnc {
    ctx: AVCodecContext,
    info: TrackInfo,
    sws: Option<(SwsContext, (i32, i32, i32))>,
    scaled: Option<AVFrame>,
}

struct AudioEnc {
    ctx: AVCodecContext,
    info: TrackInfo,
    rate: i32,
    layout: u64,
    frame_size: i32,
    swr: Option<(SwrContext, (i32, i32, u64))>,
    fifo: AVAudioFifo,
    /// Pts (in samples) of the first sample in the fifo.
    next_pts: Option<i64>,
    /// For an encoder of interleaved samples (libopus): planar to
    /// interleaved float, the rest of the rung being planar.
    interleave: Option<SwrContext>,
}

pub(crate) struct Rung {
    index: usize,
    video: Option<VideoEnc>,
    audio: Option<AudioEnc>,
    out: Output,
}

const AAC_RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

fn cstring(s: String) -> R<std::ffi::CString> {
    std::ffi::CString::new(s).map_err(|_| "NUL in an option".to_string())
}

fn open_video(spec: &RungSpec, fps: Rational, timescale: u32) -> R<VideoEnc> {
    let r = &spec.rendition;
    let (hevc, av1) = match spec.video_codec {
        Codec::H264 => (false, false),
        Codec::H265 => (true, false),
        Codec::Av1 => (false, true),
        other => return Err(format!("no {other:?} encoder for a rung")),
    };
    let encoder = if hevc {
        c"libx265"
    } else if av1 {
        c"libaom-av1"
    } else {
        c"libx264"
    };
    let name = encoder.to_string_lossy();
    let codec = AVCodec::find_encoder_by_name(encoder).ok_or(format!("FFmpeg lacks {name}"))?;
    let mut ctx = AVCodecContext::new(&codec);
    ctx.set_width(i32::try_from(spec.width).map_err(|_| "width")?);
    ctx.set_height(i32::try_from(spec.height).map_err(|_| "height")?);
    ctx.set_pix_fmt(ffi::AVPixelFormat_AV_PIX_FMT_YUV420P);
    ctx.set_time_base(ffi::AVRational {
        num: 1,
        den: i32::try_from(timescale).unwrap_or(1000),
    });
    let (fn_, fd) = (
        i32::try_from(fps.num).unwrap_or(30).max(1),
        i32::try_from(fps.den).unwrap_or(1).max(1),
    );
    ctx.set_framerate(ffi::AVRational { num: fn_, den: fd });
    ctx.set_flags(ffi::AV_CODEC_FLAG_GLOBAL_HEADER as i32);
    let maxrate = r.maxrate.unwrap_or(r.video_bitrate);
    let bufsize = r.bufsize.unwrap_or(maxrate.saturating_mul(2));
    // A safety net: IDRs are forced on schedule; x264 adds one only if the
    // schedule is missed for 5 intervals.
    let gop =
        (i64::from(fn_) * i64::from(spec.keyframe_interval_ms) * 5 / 1000 / i64::from(fd)).max(1);
    let mut dict = AVDictionary::new(c"b", &cstring(r.video_bitrate.to_string())?, 0)
        .set(c"maxrate", &cstring(maxrate.to_string())?, 0)
        .set(c"bufsize", &cstring(bufsize.to_string())?, 0)
        .set(c"g", &cstring(gop.to_string())?, 0);
    dict = if av1 {
        // libaom in real-time mode at its fastest (no frames held back, so
        // decode order is presentation order): 0.9 s for 2 s of a 1080p
        // still picture on one core, for a slate made once per shape.
        dict.set(c"usage", c"realtime", 0).set(c"cpu-used", c"8", 0)
    } else if hevc {
        // Main profile, 8 bit; no scene cuts (keyframes on schedule), no
        // B-frames (decode order is presentation order, as with x264's
        // ultrafast), quiet.
        dict.set(c"profile", c"main", 0).set(
            c"x265-params",
            &cstring(format!(
                "scenecut=0:bframes=0:keyint={gop}:min-keyint=1:log-level=error:pools={}",
                spec.threads.max(1)
            ))?,
            0,
        )
    } else {
        dict.set(c"profile", &cstring(r.profile.clone())?, 0)
            .set(c"x264-params", c"scenecut=0", 0)
    };
    if !av1 {
        dict = dict
            .set(c"preset", &cstring(spec.preset.clone())?, 0)
            .set(c"forced-idr", c"1", 0);
    }
    if spec.threads > 0 && !hevc {
        dict = dict.set(c"threads", &cstring(spec.threads.to_string())?, 0);
    }
    ctx.open(Some(dict))
        .map_err(|e| ff_err(&format!("opening {name}"), e))?;
    let extradata = raw::extradata(&ctx).to_vec();
    let (config, codec_string) = if hevc {
        hevc_config(&extradata)?
    } else if av1 {
        // FFmpeg 5.1's libaom wrapper leaves its global header empty: the
        // `av1C` is then made from the first keyframe's sequence header
        // (`Rung::drain_video`), before anyone reads the track.
        match extradata.is_empty() {
            true => (Bytes::new(), String::new()),
            false => av1_config(&extradata)?,
        }
    } else {
        avc_config(&extradata)?
    };
    let info = TrackInfo {
        id: video_track(spec.index),
        codec: spec.video_codec,
        timescale: Timescale::new(timescale).unwrap_or(Timescale::MILLIS),
        config,
        codec_string,
        params: TrackParams::Video(VideoParams {
            width: spec.width,
            height: spec.height,
            frame_rate: Some(fps),
        }),
        bitrate: Some(r.video_bitrate),
    };
    Ok(VideoEnc {
        ctx,
        info,
        sws: None,
        scaled: None,
    })
}

/// The `avcC` and codec string of x264's global headers (Annex B SPS,
/// PPS).
fn avc_config(extradata: &[u8]) -> R<(Bytes, String)> {
    let nals = crate::h264::annexb_nal_units(extradata);
    let of = |t: u8| -> Vec<&[u8]> {
        nals.iter()
            .copied()
            .filter(|n| crate::h264::nal_type(n) == Some(t))
            .collect()
    };
    let avcc = Bytes::from(
        crate::h264::build_avcc(&of(7), &of(8)).map_err(|e| format!("x264 headers: {e}"))?,
    );
    let parsed = crate::h264::AvcConfig::parse(&avcc).map_err(|e| format!("x264 headers: {e}"))?;
    Ok((avcc, parsed.codec_string()))
}

/// The `hvcC` and codec string of x265's global headers (Annex B VPS,
/// SPS, PPS).
fn hevc_config(extradata: &[u8]) -> R<(Bytes, String)> {
    let nals = crate::h264::annexb_nal_units(extradata);
    let of = |t: u8| -> Vec<&[u8]> {
        nals.iter()
            .copied()
            .filter(|n| crate::hevc::nal_type(n) == Some(t))
            .collect()
    };
    let hvcc = Bytes::from(
        crate::hevc::build_hvcc(&of(32), &of(33), &of(34))
            .map_err(|e| format!("x265 headers: {e}"))?,
    );
    let parsed = crate::hevc::HevcConfig::parse(&hvcc).map_err(|e| format!("x265 headers: {e}"))?;
    Ok((hvcc, parsed.codec_string()))
}

/// The `av1C` and codec string of libaom's sequence header in `obus`.
fn av1_config(obus: &[u8]) -> R<(Bytes, String)> {
    let av1c = Bytes::from(crate::av1::av1c(obus).map_err(|e| format!("libaom header: {e}"))?);
    let codec_string =
        crate::av1::codec_string(&av1c).map_err(|e| format!("libaom header: {e}"))?;
    Ok((av1c, codec_string))
}

/// An Opus encoder (libopus, 48 kHz, interleaved float in) for `a`'s
/// channels, its track's config the `dOps` of its `OpusHead`.
fn open_opus(spec: &RungSpec, a: &AudioParams) -> R<AudioEnc> {
    let codec = AVCodec::find_encoder_by_name(c"libopus").ok_or("FFmpeg lacks libopus")?;
    let mut ctx = AVCodecContext::new(&codec);
    let rate_i = 48_000;
    let channels = i32::from(a.channels.clamp(1, 2));
    let layout = av_get_default_channel_layout(channels) as u64;
    ctx.set_sample_rate(rate_i);
    ctx.set_channels(channels);
    ctx.set_channel_layout(layout);
    ctx.set_sample_fmt(ffi::AVSampleFormat_AV_SAMPLE_FMT_FLT);
    ctx.set_bit_rate(i64::from(spec.rendition.audio_bitrate));
    ctx.set_time_base(ffi::AVRational {
        num: 1,
        den: rate_i,
    });
    ctx.open(None)
        .map_err(|e| ff_err("opening the Opus encoder", e))?;
    let frame_size = if ctx.frame_size > 0 {
        ctx.frame_size
    } else {
        960
    };
    let head = Bytes::copy_from_slice(raw::extradata(&ctx));
    let dops = crate::flv::opus_head_to_dops(&head).map_err(|e| format!("libopus header: {e}"))?;
    let mut interleave = SwrContext::new(
        layout,
        ffi::AVSampleFormat_AV_SAMPLE_FMT_FLT,
        rate_i,
        layout,
        ffi::AVSampleFormat_AV_SAMPLE_FMT_FLTP,
        rate_i,
    )
    .ok_or("no planar-to-interleaved converter")?;
    interleave.init().map_err(|e| ff_err("converter", e))?;
    let info = TrackInfo {
        id: audio_track(spec.index),
        codec: Codec::Opus,
        timescale: Timescale::new(48_000).unwrap_or(Timescale::MILLIS),
        config: dops,
        codec_string: "opus".into(),
        params: TrackParams::Audio(AudioParams {
            sample_rate: 48_000,
            channels: channels as u8,
            samples_per_frame: frame_size as u32,
        }),
        bitrate: Some(spec.rendition.audio_bitrate),
    };
    let fifo = AVAudioFifo::new(
        ffi::AVSampleFormat_AV_SAMPLE_FMT_FLTP,
        channels,
        frame_size * 4,
    );
    Ok(AudioEnc {
        ctx,
        info,
        rate: rate_i,
        layout,
        frame_size,
        swr: None,
        fifo,
        next_pts: None,
        interleave: Some(interleave),
    })
}

fn open_audio(spec: &RungSpec, a: &AudioParams) -> R<AudioEnc> {
    match spec.audio_codec {
        Codec::Aac => {}
        Codec::Opus => return open_opus(spec, a),
        other => return Err(format!("no {other:?} encoder for a rung")),
    }
    let codec = AVCodec::find_encoder(ffi::AVCodecID_AV_CODEC_ID_AAC)
        .ok_or("FFmpeg lacks an AAC encoder")?;
    let mut ctx = AVCodecContext::new(&codec);
    let rate = if AAC_RATES.contains(&a.sample_rate) {
        a.sample_rate
    } else {
        48_000
    };
    let channels = i32::from(a.channels.clamp(1, 2));
    let layout = av_get_default_channel_layout(channels) as u64;
    let rate_i = i32::try_from(rate).unwrap_or(48_000);
    ctx.set_sample_rate(rate_i);
    ctx.set_channels(channels);
    ctx.set_channel_layout(layout);
    ctx.set_sample_fmt(ffi::AVSampleFormat_AV_SAMPLE_FMT_FLTP);
    ctx.set_bit_rate(i64::from(spec.rendition.audio_bitrate));
    ctx.set_time_base(ffi::AVRational {
        num: 1,
        den: rate_i,
    });
    ctx.set_flags(ffi::AV_CODEC_FLAG_GLOBAL_HEADER as i32);
    ctx.open(None)
        .map_err(|e| ff_err("opening the AAC encoder", e))?;
    let frame_size = if ctx.frame_size > 0 {
        ctx.frame_size
    } else {
        1024
    };
    // AAC-LC AudioSpecificConfig: object type 2, frequency index, channels.
    let fi = AAC_RATES.iter().position(|&r| r == rate).unwrap_or(3) as u16;
    let asc = (2u16 << 11) | (fi << 7) | ((channels as u16) << 3);
    let info = TrackInfo {
        id: audio_track(spec.index),
        codec: Codec::Aac,
        timescale: Timescale::new(rate).unwrap_or(Timescale::MILLIS),
        config: Bytes::copy_from_slice(&asc.to_be_bytes()),
        codec_string: "mp4a.40.2".into(),
        params: TrackParams::Audio(AudioParams {
            sample_rate: rate,
            channels: channels as u8,
            samples_per_frame: frame_size as u32,
        }),
        bitrate: Some(spec.rendition.audio_bitrate),
    };
    let fifo = AVAudioFifo::new(
        ffi::AVSampleFormat_AV_SAMPLE_FMT_FLTP,
        channels,
        frame_size * 4,
    );
    Ok(AudioEnc {
        ctx,
        info,
        rate: rate_i,
        layout,
        frame_size,
        swr: None,
        fifo,
        next_pts: None,
        interleave: None,
    })
}

impl Rung {
    pub(crate) fn open(spec: RungSpec, out: Output) -> R<Rung> {
        let video = match spec.video {
            Some((fps, ts)) => Some(open_video(&spec, fps, ts)?),
            None => None,
        };
        let audio = match &spec.audio {
            Some(a) => Some(open_audio(&spec, a)?),
            None => None,
        };
        Ok(Rung {
            index: spec.index,
            video,
            audio,
            out,
        })
    }

    pub(crate) fn index(&self) -> usize {
        self.index
    }

    pub(crate) fn track_infos(&self) -> Vec<TrackInfo> {
        let mut v = Vec::new();
        v.extend(self.video.as_ref().map(|e| e.info.clone()));
        v.extend(self.audio.as_ref().map(|e| e.info.clone()));
        v
    }

    pub(crate) fn run(
        mut self,
        jobs: Receiver<Job>,
        pending: Arc<AtomicUsize>,
        busy: &AtomicU64,
    ) -> R<()> {
        while let Ok(job) = jobs.recv() {
            let began = std::time::Instant::now();
            let _count = BusyTime(began, busy);
            match job {
                Job::Video { frame, force_key } => {
                    let r = self.encode_video(&frame, force_key);
                    drop(frame);
                    pending.fetch_sub(1, Ordering::AcqRel);
                    r?;
                }
                Job::Audio(frame) => self.encode_audio(&frame)?,
                Job::Flush => {
                    self.flush()?;
                    break;
                }
            }
        }
        Ok(())
    }

    pub(crate) fn encode_video(&mut self, src: &AVFrame, force_key: bool) -> R<()> {
        let Some(v) = self.video.as_mut() else {
            return Ok(());
        };
        let (w, h) = (v.ctx.width, v.ctx.height);
        let direct = src.width == w
            && src.height == h
            && (src.format == ffi::AVPixelFormat_AV_PIX_FMT_YUV420P
                || src.format == ffi::AVPixelFormat_AV_PIX_FMT_YUVJ420P);
        let mut frame = if direct {
            let mut f = src.clone();
            // A fresh reference: the shared picture is not modified, only
            // this reference's properties.
            f.set_pict_type(ffi::AVPictureType_AV_PICTURE_TYPE_NONE);
            f
        } else {
            let key = (src.width, src.height, src.format);
            if v.sws.as_ref().map(|(_, k)| *k) != Some(key) {
                let ctx = SwsContext::get_context(
                    src.width,
                    src.height,
                    src.format,
                    w,
                    h,
                    ffi::AVPixelFormat_AV_PIX_FMT_YUV420P,
                    ffi::SWS_BICUBIC,
                )
                .ok_or("no scaler for this picture format")?;
                v.sws = Some((ctx, key));
            }
            let mut dst = match v.scaled.take() {
                Some(mut f) => {
                    f.make_writable().map_err(|e| ff_err("frame buffer", e))?;
                    f
                }
                None => {
                    let mut f = AVFrame::new();
                    f.set_width(w);
                    f.set_height(h);
                    f.set_format(ffi::AVPixelFormat_AV_PIX_FMT_YUV420P);
                    f.alloc_buffer().map_err(|e| ff_err("frame buffer", e))?;
                    f
                }
            };
            if let Some((sws, _)) = v.sws.as_mut() {
                sws.scale_frame(src, 0, src.height, &mut dst)
                    .map_err(|e| ff_err("scaling", e))?;
            }
            dst
        };
        frame.set_pts(src.pts);
        frame.set_pict_type(if force_key {
            ffi::AVPictureType_AV_PICTURE_TYPE_I
        } else {
            ffi::AVPictureType_AV_PICTURE_TYPE_NONE
        });
        v.ctx
            .send_frame(Some(&frame))
            .map_err(|e| ff_err("x264", e))?;
        if !direct {
            v.scaled = Some(frame);
        }
        self.drain_video()
    }

    fn drain_video(&mut self) -> R<()> {
        let Some(v) = self.video.as_mut() else {
            return Ok(());
        };
        loop {
            match v.ctx.receive_packet() {
                Ok(pkt) => {
                    let data = raw::packet_data(&pkt);
                    if v.info.codec == Codec::Av1 && v.info.config.is_empty() {
                        (v.info.config, v.info.codec_string) = av1_config(data)?;
                    }
                    let sample = if v.info.codec == Codec::Av1 {
                        crate::av1::without_temporal_delimiters(data)
                    } else {
                        crate::h264::annexb_to_avcc(data, 4)
                    }
                    .map_err(|e| format!("video encoder output: {e}"))?;
                    self.out.send(MediaEvent::Frame(Frame {
                        track: v.info.id,
                        dts: if pkt.dts == i64::MIN {
                            pkt.pts
                        } else {
                            pkt.dts
                        },
                        pts: pkt.pts,
                        keyframe: pkt.flags & ffi::AV_PKT_FLAG_KEY as i32 != 0,
                        data: Bytes::from(sample),
                    }));
                }
                Err(RsmpegError::EncoderDrainError | RsmpegError::EncoderFlushedError) => {
                    return Ok(());
                }
                Err(e) => return Err(ff_err("video encoder", e)),
            }
        }
    }

    pub(crate) fn encode_audio(&mut self, src: &AVFrame) -> R<()> {
        let Some(a) = self.audio.as_mut() else {
            return Ok(());
        };
        let in_pts = rescale(src.pts, 1_000_000, a.rate as u32);
        let matches = src.format == ffi::AVSampleFormat_AV_SAMPLE_FMT_FLTP
            && src.sample_rate == a.rate
            && src.channel_layout == a.layout;
        let converted;
        let frame = if matches {
            src
        } else {
            let key = (src.format, src.sample_rate, src.channel_layout);
            if a.swr.as_ref().map(|(_, k)| *k) != Some(key) {
                let in_layout = if src.channel_layout != 0 {
                    src.channel_layout
                } else {
                    av_get_default_channel_layout(src.channels.max(1)) as u64
                };
                let mut swr = SwrContext::new(
                    a.layout,
                    ffi::AVSampleFormat_AV_SAMPLE_FMT_FLTP,
                    a.rate,
                    in_layout,
                    src.format,
                    src.sample_rate,
                )
                .ok_or("no resampler for this audio format")?;
                swr.init().map_err(|e| ff_err("resampler", e))?;
                a.swr = Some((swr, key));
            }
            let mut out = AVFrame::new();
            out.set_format(ffi::AVSampleFormat_AV_SAMPLE_FMT_FLTP);
            out.set_sample_rate(a.rate);
            out.set_channel_layout(a.layout);
            if let Some((swr, _)) = a.swr.as_ref() {
                swr.convert_frame(Some(src), &mut out)
                    .map_err(|e| ff_err("resampling", e))?;
            }
            converted = out;
            &converted
        };
        // Anchor the output clock; re-anchor after a jump of over 100 ms.
        let queued = i64::from(a.fifo.size());
        let expected = a.next_pts.map(|p| p + queued);
        if expected.is_none_or(|e| (e - in_pts).abs() > i64::from(a.rate) / 10) {
            a.next_pts = Some(in_pts - queued);
        }
        if !raw::fifo_write(&mut a.fifo, frame) {
            return Err("audio fifo".into());
        }
        while self
            .audio
            .as_ref()
            .is_some_and(|a| a.fifo.size() >= a.frame_size)
        {
            self.encode_audio_chunk(false)?;
        }
        Ok(())
    }

    fn encode_audio_chunk(&mut self, last: bool) -> R<()> {
        let Some(a) = self.audio.as_mut() else {
            return Ok(());
        };
        if last && a.fifo.size() == 0 {
            return Ok(());
        }
        let n = if last {
            a.fifo.size().min(a.frame_size)
        } else {
            a.frame_size
        };
        let mut f = AVFrame::new();
        f.set_nb_samples(n);
        f.set_format(ffi::AVSampleFormat_AV_SAMPLE_FMT_FLTP);
        f.set_channel_layout(a.layout);
        f.set_sample_rate(a.rate);
        f.alloc_buffer().map_err(|e| ff_err("audio buffer", e))?;
        if !raw::fifo_read(&mut a.fifo, &mut f, n) {
            return Err("audio fifo".into());
        }
        let pts = a.next_pts.unwrap_or(0);
        f.set_pts(pts);
        a.next_pts = Some(pts + i64::from(n));
        if let Some(swr) = a.interleave.as_ref() {
            let mut out = AVFrame::new();
            out.set_format(ffi::AVSampleFormat_AV_SAMPLE_FMT_FLT);
            out.set_sample_rate(a.rate);
            out.set_channel_layout(a.layout);
            swr.convert_frame(Some(&f), &mut out)
                .map_err(|e| ff_err("interleaving", e))?;
            out.set_pts(pts);
            f = out;
        }
        a.ctx
            .send_frame(Some(&f))
            .map_err(|e| ff_err("audio encoder", e))?;
        self.drain_audio()
    }

    fn drain_audio(&mut self) -> R<()> {
        let Some(a) = self.audio.as_mut() else {
            return Ok(());
        };
        loop {
            match a.ctx.receive_packet() {
                Ok(pkt) => {
                    self.out.send(MediaEvent::Frame(Frame {
                        track: a.info.id,
                        dts: pkt.pts,
                        pts: pkt.pts,
                        keyframe: true,
                        data: Bytes::copy_from_slice(raw::packet_data(&pkt)),
                    }));
                }
                Err(RsmpegError::EncoderDrainError | RsmpegError::EncoderFlushedError) => {
                    return Ok(());
                }
                Err(e) => return Err(ff_err("audio encoder", e)),
            }
        }
    }

    pub(crate) fn flush(&mut self) -> R<()> {
        if let Some(v) = self.video.as_mut() {
            let _ = v.ctx.send_frame(None);
            self.drain_video()?;
        }
        if self.audio.is_some() {
            self.encode_audio_chunk(true)?;
            if let Some(a) = self.audio.as_mut() {
                let _ = a.ctx.send_frame(None);
            }
            self.drain_audio()?;
        }
        Ok(())
    }
}

/// Adds the time since its start to a busy-time counter when dropped.
struct BusyTime<'a>(std::time::Instant, &'a AtomicU64);

impl Drop for BusyTime<'_> {
    fn drop(&mut self) {
        self.1
            .fetch_add(self.0.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }
}
