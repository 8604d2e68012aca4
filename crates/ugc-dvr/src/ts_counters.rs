//! Continuity counters of the MPEG-TS renditions of consecutive segments.
//!
//! A segment's TS rendition is muxed lazily, on its first request, by a
//! muxer of its own. For segments played back to back to be one transport
//! stream, that muxer starts from the counters where the previous segment's
//! rendition ends. [`TsCounters`] computes them when a segment closes,
//! without muxing it (`TsMuxer::advance_segment` sizes each PES and counts
//! its packets with the muxer's own code), and the segment keeps them.

use ugc_codec::ts::{Continuity, TsMuxer};
use ugc_core::{Frame, Tracks};

/// Follows the continuity counters of one segmenter's segments.
#[derive(Debug, Default)]
pub(crate) struct TsCounters {
    /// A muxer for the current track set, used only to count.
    counter: Option<(Tracks, TsMuxer)>,
    /// Where the next segment starts.
    next: Continuity,
}

impl TsCounters {
    /// The counters the TS rendition of the segment of `frames` (on
    /// `tracks`) starts from; the next segment starts where it ends. The
    /// counters go on across a new track set too (see `ugc_codec::ts`).
    pub(crate) fn start_of(&mut self, tracks: &Tracks, frames: &[Frame]) -> Continuity {
        let start = self.next.clone();
        if self.counter.as_ref().is_none_or(|(t, _)| t != tracks) {
            // No muxer: MPEG-TS carries none of the tracks, and the segment
            // has no TS rendition to count.
            self.counter = TsMuxer::new(tracks).ok().map(|m| (tracks.clone(), m));
        }
        if let Some((_, mux)) = self.counter.as_mut() {
            mux.set_continuity(&start);
            mux.advance_segment(frames);
            self.next = mux.continuity();
        }
        start
    }
}
