//! What the demuxer emits: track sets once every elementary stream has
//! its configuration (buffering frames meanwhile), and frames interleaved
//! by decode time across the tracks.

use ugc_core::{Frame, MediaEvent, MediaKind, Timescale, TrackId, Tracks};

use super::{
    AUDIO_TRACK, MAX_INTERLEAVE_TICKS, STARTUP_BUFFER_FRAMES, STARTUP_BUFFER_TICKS, TsDemuxer,
    VIDEO_TRACK,
};

impl TsDemuxer {
    fn current_tracks(&self) -> Tracks {
        let mut v = Vec::with_capacity(2);
        v.extend(self.video_track.clone());
        v.extend(self.audio_track.clone());
        Tracks::new(v)
    }

    /// A configuration changed: re-announce if streaming, else see whether
    /// start-up is complete.
    pub(super) fn announce(&mut self) {
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
    pub(super) fn release(&mut self) {
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
    pub(super) fn interleave(&mut self, force: bool) {
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

    pub(super) fn push_frame(&mut self, kind: MediaKind, frame: Frame) {
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
