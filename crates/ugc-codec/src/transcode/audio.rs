//! Audio-only transcoding as a [`Transform`]: a stream's audio track of
//! one codec re-encoded into another, everything else passed through
//! untouched. Opus -> AAC makes a WHIP publish (browsers send Opus) play in
//! HLS players that have no Opus, without a ladder; AAC -> Opus is the
//! other way, for WebRTC viewers.
//!
//! It runs in the caller's task: a 20 ms audio frame decodes and encodes in
//! tens of microseconds. A hole in the source (a lost packet, a publisher
//! pausing its audio) is filled with silence, so the audio after it stays
//! where it was against the video (the encoder's clock would otherwise
//! close holes under 100 ms and shift what follows earlier). The new track keeps the source track's id, so
//! nothing downstream sees a different track set, only its codec. A codec
//! FFmpeg lacks, or a failure, leaves the audio as it came (with a warning):
//! the stream never stops for this.

use std::sync::mpsc::{self, Receiver};

use rsmpeg::avutil::{AVFrame, av_get_default_channel_layout};
use rsmpeg::error::RsmpegError;
use ugc_core::{
    Codec, Frame, MediaEvent, Result, TrackId, TrackInfo, TrackParams, Tracks, Transform,
};

use super::rung::{Rung, RungSpec};
use super::{Decoder, Output, ff_err, open_decoder, raw, rescale};
use crate::ladder::RenditionConfig;

/// The running transcode of one audio track.
struct Running {
    /// The source track's id (also the output's).
    id: TrackId,
    /// The source track's config, to see a change.
    config: bytes::Bytes,
    timescale: u32,
    decoder: Decoder,
    rung: Rung,
    rx: Receiver<MediaEvent>,
    /// The output track.
    info: TrackInfo,
    /// Where the next decoded audio should start, µs.
    next_us: Option<i64>,
}

/// Holes up to this long are filled with silence (longer ones are a new
/// start: the encoder re-anchors its clock).
const MAX_FILL_US: i64 = 2_000_000;
/// Holes shorter than this are jitter, left to the encoder's clock.
const MIN_FILL_US: i64 = 10_000;

/// Re-encodes an audio track of codec `from` into `to`; see the
/// [module documentation](self).
pub struct AudioTranscode {
    from: Codec,
    to: Codec,
    bitrate_kbps: u32,
    running: Option<Running>,
    /// The source's tracks, announced again if the transcode fails.
    source: Option<Tracks>,
    /// Source frames that did not decode.
    pub decode_errors: u64,
}

impl std::fmt::Debug for AudioTranscode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AudioTranscode")
            .field("from", &self.from)
            .field("to", &self.to)
            .field("running", &self.running.is_some())
            .finish_non_exhaustive()
    }
}

impl AudioTranscode {
    /// Re-encodes `from` audio (Opus or AAC) into `to` (AAC-LC or Opus) at
    /// `bitrate_kbps`.
    pub fn new(from: Codec, to: Codec, bitrate_kbps: u32) -> AudioTranscode {
        AudioTranscode {
            from,
            to,
            bitrate_kbps,
            running: None,
            source: None,
            decode_errors: 0,
        }
    }

    /// Opus -> AAC at 128 kbit/s: what HLS players without Opus need.
    pub fn opus_to_aac() -> AudioTranscode {
        AudioTranscode::new(Codec::Opus, Codec::Aac, 128)
    }

    /// The output tracks for `tracks`, (re)starting the transcode when the
    /// source audio track is new or changed.
    fn on_tracks(&mut self, tracks: &Tracks) -> Tracks {
        self.source = Some(tracks.clone());
        let source = tracks.iter().find(|t| t.codec == self.from);
        let Some(source) = source else {
            self.running = None;
            return tracks.clone();
        };
        let same = self
            .running
            .as_ref()
            .is_some_and(|r| r.id == source.id && r.config == source.config);
        if !same {
            self.running = match self.start(source) {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::warn!(error = %e, from = ?self.from, to = ?self.to,
                        "audio transcode off: the audio is left as it came");
                    None
                }
            };
        }
        match &self.running {
            Some(r) => Tracks::new(
                tracks
                    .iter()
                    .map(|t| {
                        if t.id == r.id {
                            r.info.clone()
                        } else {
                            t.clone()
                        }
                    })
                    .collect(),
            ),
            None => tracks.clone(),
        }
    }

    fn start(&self, source: &TrackInfo) -> std::result::Result<Running, String> {
        let TrackParams::Audio(params) = &source.params else {
            return Err("not an audio track".into());
        };
        let decoder = open_decoder(source)?;
        let (tx, rx) = mpsc::channel();
        let out = Output {
            tx,
            notify: None,
            stats: std::sync::Arc::default(),
        };
        let rung = Rung::open(
            RungSpec {
                index: 0,
                width: 0,
                height: 0,
                rendition: RenditionConfig::new("audio", 0, 0, self.bitrate_kbps),
                preset: String::new(),
                keyframe_interval_ms: 0,
                threads: 1,
                video: None,
                audio: Some(params.clone()),
                video_codec: Codec::H264,
                audio_codec: self.to,
            },
            out,
        )?;
        let mut info = rung
            .track_infos()
            .into_iter()
            .next()
            .ok_or("no audio encoder")?;
        info.id = source.id;
        Ok(Running {
            id: source.id,
            config: source.config.clone(),
            timescale: source.timescale.get(),
            decoder,
            rung,
            rx,
            info,
            next_us: None,
        })
    }

    /// Decodes `f` and encodes what it gives; the encoder's frames to
    /// `out`.
    fn transcode(
        &mut self,
        f: &Frame,
        out: &mut Vec<MediaEvent>,
    ) -> std::result::Result<(), String> {
        let Some(r) = self.running.as_mut() else {
            return Ok(());
        };
        let Some(mut pkt) = raw::packet_from(&f.data) else {
            return Err("allocating a packet".into());
        };
        pkt.set_pts(f.pts);
        pkt.set_dts(f.dts);
        if r.decoder.ctx.send_packet(Some(&pkt)).is_err() {
            self.decode_errors += 1;
            return Ok(());
        }
        loop {
            match r.decoder.ctx.receive_frame() {
                Ok(mut frame) => {
                    if frame.pts == i64::MIN {
                        frame.set_pts(frame.best_effort_timestamp);
                    }
                    let pts_us = rescale(frame.pts, r.timescale, 1_000_000);
                    if let Some(from) = r.next_us
                        && (MIN_FILL_US..=MAX_FILL_US).contains(&pts_us.saturating_sub(from))
                    {
                        silence(&mut r.rung, &frame, from, pts_us)?;
                    }
                    frame.set_pts(pts_us);
                    r.rung.encode_audio(&frame)?;
                    let rate = i64::from(frame.sample_rate.max(1));
                    r.next_us =
                        Some(pts_us.saturating_add(i64::from(frame.nb_samples) * 1_000_000 / rate));
                }
                Err(RsmpegError::DecoderDrainError | RsmpegError::DecoderFlushedError) => break,
                Err(e) => {
                    self.decode_errors += 1;
                    tracing::debug!(error = %ff_err("audio decoder", e), "undecodable audio frame");
                    break;
                }
            }
        }
        Self::drain(r, out);
        Ok(())
    }

    /// The encoder's frames so far, on the source track's id.
    fn drain(r: &Running, out: &mut Vec<MediaEvent>) {
        while let Ok(e) = r.rx.try_recv() {
            if let MediaEvent::Frame(mut f) = e {
                f.track = r.id;
                out.push(MediaEvent::Frame(f));
            }
        }
    }

    fn finish(&mut self, out: &mut Vec<MediaEvent>) {
        if let Some(mut r) = self.running.take() {
            if let Err(e) = r.rung.flush() {
                tracing::debug!(error = %e, "audio transcode flush");
            }
            Self::drain(&r, out);
        }
    }
}

/// Feeds `rung` silence in the format of `like` from `from_us` to `to_us`.
fn silence(
    rung: &mut Rung,
    like: &AVFrame,
    from_us: i64,
    to_us: i64,
) -> std::result::Result<(), String> {
    let rate = i64::from(like.sample_rate.max(1));
    let channels = like.channels.max(1);
    let mut left = (to_us - from_us) * rate / 1_000_000;
    let mut at = from_us;
    while left > 0 {
        let n = left.min(1024);
        let mut f = AVFrame::new();
        f.set_nb_samples(n as i32);
        f.set_format(like.format);
        f.set_sample_rate(like.sample_rate);
        f.set_channel_layout(if like.channel_layout != 0 {
            like.channel_layout
        } else {
            av_get_default_channel_layout(channels) as u64
        });
        f.alloc_buffer().map_err(|e| ff_err("silence", e))?;
        if !raw::set_silence(&mut f, channels) {
            return Err("silence".into());
        }
        f.set_pts(at);
        rung.encode_audio(&f)?;
        at += n * 1_000_000 / rate;
        left -= n;
    }
    Ok(())
}

impl Transform for AudioTranscode {
    fn push(&mut self, event: MediaEvent, out: &mut Vec<MediaEvent>) -> Result<()> {
        match event {
            MediaEvent::Tracks(tracks) => {
                let tracks = self.on_tracks(&tracks);
                out.push(MediaEvent::Tracks(tracks));
            }
            MediaEvent::Frame(f) if self.running.as_ref().is_some_and(|r| r.id == f.track) => {
                if let Err(e) = self.transcode(&f, out) {
                    tracing::warn!(error = %e, "audio transcode failed: the audio is left as it came");
                    self.running = None;
                    // The source track's codec again for what follows.
                    if let Some(t) = self.source.clone() {
                        out.push(MediaEvent::Tracks(t));
                    }
                }
            }
            MediaEvent::End => {
                self.finish(out);
                out.push(MediaEvent::End);
            }
            other => out.push(other),
        }
        Ok(())
    }

    fn flush(&mut self, out: &mut Vec<MediaEvent>) -> Result<()> {
        self.finish(out);
        Ok(())
    }
}
