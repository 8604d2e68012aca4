//! The sender's window: recent events of one stream under sequence numbers,
//! bounded by bytes and by media time, so a puller that reconnects can
//! resume without a gap or a duplicate.

use std::collections::VecDeque;
use std::time::Duration;

use ugc_core::{MediaEvent, MediaKind, MediaTime, Timescale, Tracks};

/// Bounds of a [`RelayWindow`].
#[derive(Debug, Clone)]
pub struct WindowConfig {
    /// Frame payload bytes kept. Default 64 MiB.
    pub max_bytes: usize,
    /// Media time kept (newest frame's DTS minus the oldest's). Default 10 s.
    pub max_duration: Duration,
}

impl Default for WindowConfig {
    fn default() -> Self {
        WindowConfig {
            max_bytes: 64 << 20,
            max_duration: Duration::from_secs(10),
        }
    }
}

struct Entry {
    seq: u64,
    event: MediaEvent,
    /// The track set in effect before this event.
    tracks: Option<Tracks>,
    size: usize,
    /// DTS of this frame, or of the newest frame before a non-frame.
    time: Option<MediaTime>,
}

/// Where a connection starts in a window ([`RelayWindow::start`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// Continue at `from` (the next event to send); `context` is the track
    /// set in effect there.
    Resume {
        /// Sequence of the next event to send.
        from: u64,
        /// The track set in effect at `from`.
        context: Option<Tracks>,
    },
    /// Start at the newest keyframe `at`, with its track set.
    Fresh {
        /// Sequence of the keyframe.
        at: u64,
        /// The track set in effect there.
        tracks: Tracks,
    },
    /// The stream ended with no keyframe left in the window: go to its end
    /// (event `at`).
    End {
        /// Sequence of the end.
        at: u64,
    },
    /// The window has no keyframe yet: wait for one.
    Wait,
}

/// What is at a connection's position ([`RelayWindow::get`]).
#[derive(Debug)]
pub enum Next<'a> {
    /// The event at the position.
    Event(u64, &'a MediaEvent),
    /// Nothing yet: wait for [`RelayWindow::push`].
    Pending,
    /// The position left the window (the connection is too slow): start
    /// again at the newest keyframe.
    Behind,
}

/// A stream's recent events under sequence numbers. Sans-IO: the caller
/// pushes events (from a Hub reader) and positions connections in it.
pub struct RelayWindow {
    id: u64,
    config: WindowConfig,
    entries: VecDeque<Entry>,
    next_seq: u64,
    bytes: usize,
    /// Sequences of the keyframes (audio frames of a stream without video)
    /// in the window.
    starts: VecDeque<u64>,
    tracks: Option<Tracks>,
    newest: Option<MediaTime>,
    /// Sequence of [`MediaEvent::End`], once pushed.
    end: Option<u64>,
}

impl std::fmt::Debug for RelayWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayWindow")
            .field("id", &self.id)
            .field("front", &self.front_seq())
            .field("next", &self.next_seq)
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl RelayWindow {
    /// An empty window named `id` (unique per sender: pullers resume by it).
    pub fn new(id: u64, config: WindowConfig) -> Self {
        RelayWindow {
            id,
            config,
            entries: VecDeque::new(),
            next_seq: 0,
            bytes: 0,
            starts: VecDeque::new(),
            tracks: None,
            newest: None,
            end: None,
        }
    }

    /// The window's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Sequence the next pushed event gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Sequence of the oldest event kept.
    pub fn front_seq(&self) -> u64 {
        self.entries.front().map_or(self.next_seq, |e| e.seq)
    }

    /// Frame payload bytes kept.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Appends an event; returns its sequence number.
    pub fn push(&mut self, event: MediaEvent) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        let before = self.tracks.clone();
        let mut size = 0;
        match &event {
            MediaEvent::End => self.end = Some(seq),
            MediaEvent::Tracks(t) => self.tracks = Some(t.clone()),
            MediaEvent::Frame(f) => {
                size = f.data.len();
                if let Some(info) = self.tracks.as_ref().and_then(|t| t.get(f.track)) {
                    let t = MediaTime::new(f.dts, info.timescale);
                    if self.newest.is_none_or(|n| t > n) {
                        self.newest = Some(t);
                    }
                    let has_video = self.tracks.as_ref().is_some_and(|t| t.video().is_some());
                    let start = if has_video {
                        f.keyframe && info.kind() == MediaKind::Video
                    } else {
                        f.keyframe
                    };
                    if start {
                        self.starts.push_back(seq);
                    }
                }
            }
            _ => {}
        }
        let time = match &event {
            MediaEvent::Frame(f) => before
                .as_ref()
                .and_then(|t| t.get(f.track))
                .map(|i| MediaTime::new(f.dts, i.timescale)),
            _ => self.newest,
        };
        self.bytes += size;
        self.entries.push_back(Entry {
            seq,
            event,
            tracks: before,
            size,
            time,
        });
        self.trim();
        seq
    }

    fn trim(&mut self) {
        let span = MediaTime::new(
            i64::try_from(self.config.max_duration.as_micros()).unwrap_or(i64::MAX),
            Timescale::MICROS,
        );
        while self.entries.len() > 1 {
            let Some(front) = self.entries.front() else {
                break;
            };
            // A track set or signal before any frame is as old as the first frame.
            let front_time = front
                .time
                .or_else(|| self.entries.iter().find_map(|e| e.time));
            let too_old = match (front_time, self.newest) {
                (Some(t), Some(n)) => n.saturating_sub(t) > span,
                _ => false,
            };
            if !(too_old || self.bytes > self.config.max_bytes) {
                break;
            }
            if let Some(e) = self.entries.pop_front() {
                self.bytes -= e.size;
                while self.starts.front().is_some_and(|s| *s <= e.seq) {
                    self.starts.pop_front();
                }
            }
        }
    }

    /// Where a connection starts: at `resume = (window id, sequence)` if this
    /// window still holds that sequence (or it is the next one), else at
    /// the newest keyframe.
    pub fn start(&self, resume: Option<(u64, u64)>) -> Start {
        if let Some((id, from)) = resume
            && id == self.id
            && (self.front_seq()..=self.next_seq).contains(&from)
        {
            return Start::Resume {
                from,
                context: self.tracks_at(from),
            };
        }
        for &at in self.starts.iter().rev() {
            if let Some(tracks) = self.tracks_at(at) {
                return Start::Fresh { at, tracks };
            }
        }
        match self.end {
            // The end is never trimmed: it is the newest event.
            Some(at) => Start::End { at },
            None => Start::Wait,
        }
    }

    /// The track set in effect before event `seq`.
    fn tracks_at(&self, seq: u64) -> Option<Tracks> {
        if seq >= self.next_seq {
            return self.tracks.clone();
        }
        let i = usize::try_from(seq.checked_sub(self.front_seq())?).ok()?;
        self.entries.get(i).and_then(|e| e.tracks.clone())
    }

    /// How far event `seq` is behind the newest frame pushed, in media
    /// time (a connection about to send it lags that much); `None` outside
    /// the window or before any frame.
    pub fn behind(&self, seq: u64) -> Option<Duration> {
        let i = usize::try_from(seq.checked_sub(self.front_seq())?).ok()?;
        let at = self.entries.get(i)?.time?;
        let lag = self.newest?.saturating_sub(at).as_micros();
        Some(Duration::from_micros(u64::try_from(lag).unwrap_or(0)))
    }

    /// The event at position `seq`.
    pub fn get(&self, seq: u64) -> Next<'_> {
        if seq < self.front_seq() {
            return Next::Behind;
        }
        let Ok(i) = usize::try_from(seq - self.front_seq()) else {
            return Next::Pending;
        };
        match self.entries.get(i) {
            Some(e) => Next::Event(e.seq, &e.event),
            None => Next::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use ugc_core::hub::tests_support::av_tracks;
    use ugc_core::{Frame, TrackId};

    fn video(dts: i64, key: bool) -> MediaEvent {
        MediaEvent::Frame(Frame {
            track: TrackId(1),
            dts,
            pts: dts,
            keyframe: key,
            data: Bytes::from(vec![0u8; 100]),
        })
    }

    fn window(max_ms: u64) -> RelayWindow {
        RelayWindow::new(
            9,
            WindowConfig {
                max_bytes: 1 << 20,
                max_duration: Duration::from_millis(max_ms),
            },
        )
    }

    #[test]
    fn resume_inside_the_window_and_fresh_outside() {
        let mut w = window(1000);
        assert_eq!(w.start(None), Start::Wait);
        w.push(MediaEvent::Tracks(av_tracks()));
        for i in 0..10 {
            w.push(video(i * 100, i % 5 == 0));
        }
        // seq 0 tracks, 1..=10 frames; keyframes at 1 and 6.
        // The first frame is 900 ms behind the newest, the newest 0.
        assert_eq!(w.behind(1), Some(Duration::from_millis(900)));
        assert_eq!(w.behind(6), Some(Duration::from_millis(400)));
        assert_eq!(w.behind(10), Some(Duration::ZERO));
        assert_eq!((w.behind(0), w.behind(11)), (None, None));
        assert_eq!(
            w.start(Some((9, 4))),
            Start::Resume {
                from: 4,
                context: Some(av_tracks())
            }
        );
        assert!(matches!(
            w.start(Some((9, 11))),
            Start::Resume { from: 11, .. }
        ));
        assert!(matches!(w.start(Some((8, 4))), Start::Fresh { at: 6, .. }));
        assert!(matches!(w.start(Some((9, 12))), Start::Fresh { at: 6, .. }));
        // 1.1 s of media later the first GOP is gone.
        for i in 10..22 {
            w.push(video(i * 100, i % 5 == 0));
        }
        assert!(w.front_seq() > 1);
        assert!(matches!(w.start(Some((9, 1))), Start::Fresh { at: 21, .. }));
        assert!(matches!(w.get(1), Next::Behind));
        assert!(matches!(w.get(w.next_seq()), Next::Pending));
        assert!(matches!(w.get(w.front_seq()), Next::Event(..)));
    }

    #[test]
    fn an_ended_window_without_keyframes_starts_at_its_end() {
        let mut w = window(100);
        w.push(MediaEvent::Tracks(av_tracks()));
        for i in 0..10 {
            w.push(video(i * 100, i == 0));
        }
        assert_eq!(w.start(None), Start::Wait);
        let end = w.push(MediaEvent::End);
        assert_eq!(w.start(None), Start::End { at: end });
    }

    #[test]
    fn bytes_bound_the_window() {
        let mut w = RelayWindow::new(
            1,
            WindowConfig {
                max_bytes: 1000,
                max_duration: Duration::from_secs(3600),
            },
        );
        w.push(MediaEvent::Tracks(av_tracks()));
        for i in 0..100 {
            w.push(video(i, i % 10 == 0));
        }
        assert!(w.bytes() <= 1000);
        assert_eq!(w.next_seq(), 101);
    }
}
