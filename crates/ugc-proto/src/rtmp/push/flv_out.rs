//! Media events to FLV tags on a [`ClientSession`]: sequence headers and
//! metadata for a track set, one tag per frame, timestamps from 0.

use ugc_codec::flv;
use ugc_core::{Codec, Frame, MediaKind, Timescale, Tracks, time::rescale};

use crate::error::{Error, Result};
use crate::rtmp::{Amf0Value, ClientSession};

/// One session's muxing state: the tracks, the timestamp base, whether it
/// waits for a keyframe.
#[derive(Debug, Default)]
pub(super) struct FlvOut {
    tracks: Option<Tracks>,
    /// The first frame's time (ms) of this session: RTMP timestamps start
    /// near 0.
    base_ms: Option<i64>,
    wait_keyframe: bool,
    started: bool,
    last_ts: u32,
}

impl FlvOut {
    /// Sends the sequence headers of `t` (and, before the first frame, the
    /// metadata) unless the tracks did not change; frames then wait for a
    /// keyframe. An error when the video codec has no FLV id; an audio
    /// codec FLV cannot carry is left out.
    pub(super) fn set_tracks(&mut self, t: &Tracks, client: &mut ClientSession) -> Result<()> {
        if self.tracks.as_ref() == Some(t) {
            return Ok(());
        }
        let ts = self.last_ts;
        let mut meta = Vec::new();
        if let Some(v) = t.video() {
            let body =
                flv::video_sequence_header(v).map_err(|e| Error::Unsupported(e.to_string()))?;
            client.send_video(ts, &body)?;
            if let Some(p) = v.video() {
                meta.push(("width".to_owned(), Amf0Value::Number(f64::from(p.width))));
                meta.push(("height".to_owned(), Amf0Value::Number(f64::from(p.height))));
            }
            let id = match v.codec {
                Codec::H264 => 7.0,
                Codec::H265 => 12.0,
                _ => 0.0,
            };
            meta.push(("videocodecid".to_owned(), Amf0Value::Number(id)));
        }
        if let Some(a) = t.audio() {
            match flv::audio_sequence_header(a) {
                Ok(body) => {
                    client.send_audio(ts, &body)?;
                    meta.push(("audiocodecid".to_owned(), Amf0Value::Number(10.0)));
                }
                // An audio codec FLV cannot carry: push video only.
                Err(e) => tracing::debug!(error = %e, "rtmp push without audio"),
            }
        }
        if !self.started {
            let _ = client.send_metadata(meta);
        }
        self.tracks = Some(t.clone());
        self.wait_keyframe = true;
        Ok(())
    }

    /// The next frame sent is a video keyframe (after a discontinuity).
    pub(super) fn restart_at_keyframe(&mut self) {
        self.wait_keyframe = true;
    }

    /// Sends one frame; false when it was skipped (waiting for a keyframe,
    /// no tracks yet, unknown track, unsupported codec).
    pub(super) fn send_frame(
        &mut self,
        f: &Frame,
        client: &mut ClientSession,
        tag: &mut Vec<u8>,
    ) -> Result<bool> {
        let Some(tracks) = &self.tracks else {
            return Ok(false);
        };
        let Some(track) = tracks.get(f.track) else {
            return Ok(false);
        };
        let has_video = tracks.video().is_some();
        if self.wait_keyframe {
            let video_key = track.kind() == MediaKind::Video && f.keyframe;
            if has_video && !video_key {
                return Ok(false);
            }
            self.wait_keyframe = false;
        }
        let ms = rescale(f.dts, track.timescale, Timescale::MILLIS);
        let base = *self.base_ms.get_or_insert(ms);
        // RTMP timestamps are 32-bit and wrap by definition.
        let ts = (ms.saturating_sub(base).max(0) & 0xffff_ffff) as u32;
        self.last_ts = ts;
        tag.clear();
        match track.kind() {
            MediaKind::Video => {
                if flv::write_video_tag(track, f, tag).is_err() {
                    return Ok(false);
                }
                client.send_video(ts, tag)?;
            }
            MediaKind::Audio => {
                if track.codec != Codec::Aac {
                    return Ok(false);
                }
                flv::write_audio_tag(f, tag);
                client.send_audio(ts, tag)?;
            }
        }
        self.started = true;
        Ok(true)
    }
}
