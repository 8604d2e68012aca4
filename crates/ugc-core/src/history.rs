//! The recent past of each stream, for charts (the creator panel's last
//! 15 minutes), sans IO: a sampler calls [`StreamHistory::record`] every
//! [`HistoryConfig::every`] with each stream's counters as they are; the
//! history keeps, per stream, one [`Sample`] per interval (rates from the
//! counters' differences) for [`HistoryConfig::keep`], in a ring.
//!
//! Memory is bounded: a sample is 32 bytes, a stream keeps at most
//! `keep / every` of them (180 by default: 5.8 KB), and at most
//! [`HistoryConfig::max_streams`] streams are kept; a stream that stops
//! being reported keeps its samples until they are older than `keep`.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

/// How a [`StreamHistory`] samples.
#[derive(Debug, Clone)]
pub struct HistoryConfig {
    /// Time between samples.
    pub every: Duration,
    /// How far back samples are kept.
    pub keep: Duration,
    /// Streams kept at most; past it, new streams are not recorded until
    /// old ones age out.
    pub max_streams: usize,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            every: Duration::from_secs(5),
            keep: Duration::from_secs(15 * 60),
            max_streams: 10_000,
        }
    }
}

/// A stream's counters and state at one moment, as the sampler reads them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reading {
    /// Stream name (`live/news`).
    pub name: String,
    /// Payload bytes accepted from publishers so far (a counter).
    pub bytes_in: u64,
    /// Frames accepted from publishers so far (a counter).
    pub frames_in: u64,
    /// Times a slow reader skipped to the newest keyframe so far (a
    /// counter: frames some reader dropped).
    pub skips: u64,
    /// The source viewers get: 0 main, 1 backup, 2 fallback; `None`: no
    /// publisher and no fallback (offline).
    pub source: Option<u8>,
    /// Viewers now, where they are counted.
    pub viewers: Option<u32>,
}

/// One interval of one stream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// End of the interval, unix milliseconds.
    pub at_ms: u64,
    /// Ingest bitrate over the interval, bits per second.
    pub bitrate_bps: u64,
    /// Frames per second in over the interval (audio and video).
    pub frames_per_s: f32,
    /// Reader skips in the interval.
    pub skips: u32,
    /// The source at the end of the interval (as [`Reading::source`]).
    pub source: Option<u8>,
    /// Viewers at the end of the interval.
    pub viewers: Option<u32>,
}

#[derive(Debug, Default)]
struct Ring {
    samples: VecDeque<Sample>,
    /// The counters of the previous reading and when it was taken.
    last: Option<(u64, u64, u64, u64)>,
}

/// The recent samples of every stream; see the [module](self) doc.
#[derive(Debug, Default)]
pub struct StreamHistory {
    config: HistoryConfig,
    streams: HashMap<String, Ring>,
}

impl StreamHistory {
    /// An empty history.
    pub fn new(config: HistoryConfig) -> StreamHistory {
        StreamHistory {
            config,
            streams: HashMap::new(),
        }
    }

    /// Its settings.
    pub fn config(&self) -> &HistoryConfig {
        &self.config
    }

    /// Samples at unix time `now_ms` from `readings` (one per stream;
    /// streams not among them are offline now). A stream's first reading
    /// only sets its counters' base; a counter that went down (the
    /// stream was published anew) counts from zero.
    pub fn record(&mut self, now_ms: u64, readings: &[Reading]) {
        let keep_ms = self.config.keep.as_millis() as u64;
        let max = self.max_samples();
        for r in readings {
            if !self.streams.contains_key(&r.name) && self.streams.len() >= self.config.max_streams
            {
                continue;
            }
            let ring = self.streams.entry(r.name.clone()).or_default();
            let now = (now_ms, r.bytes_in, r.frames_in, r.skips);
            if let Some((at, bytes, frames, skips)) = ring.last.replace(now)
                && now_ms > at
            {
                let dt = (now_ms - at) as f64 / 1000.0;
                let delta = |new: u64, old: u64| if new >= old { new - old } else { new };
                ring.samples.push_back(Sample {
                    at_ms: now_ms,
                    bitrate_bps: (delta(r.bytes_in, bytes) as f64 * 8.0 / dt) as u64,
                    frames_per_s: (delta(r.frames_in, frames) as f64 / dt) as f32,
                    skips: delta(r.skips, skips).min(u64::from(u32::MAX)) as u32,
                    source: r.source,
                    viewers: r.viewers,
                });
                while ring.samples.len() > max {
                    ring.samples.pop_front();
                }
            }
        }
        // Streams not reported: offline samples (their chart drops to
        // zero), and forgotten once all their samples are too old.
        let reported: std::collections::HashSet<&str> =
            readings.iter().map(|r| r.name.as_str()).collect();
        self.streams.retain(|name, ring| {
            if reported.contains(name.as_str()) {
                return true;
            }
            ring.last = None;
            if ring
                .samples
                .back()
                .is_some_and(|s| s.source.is_some() || s.bitrate_bps > 0)
            {
                ring.samples.push_back(Sample {
                    at_ms: now_ms,
                    bitrate_bps: 0,
                    frames_per_s: 0.0,
                    skips: 0,
                    source: None,
                    viewers: None,
                });
            }
            while ring
                .samples
                .front()
                .is_some_and(|s| now_ms.saturating_sub(s.at_ms) > keep_ms)
            {
                ring.samples.pop_front();
            }
            while ring.samples.len() > max {
                ring.samples.pop_front();
            }
            !ring.samples.is_empty()
        });
    }

    /// `name`'s samples, oldest first, those of the last
    /// [`HistoryConfig::keep`] before `now_ms`.
    pub fn samples(&self, name: &str, now_ms: u64) -> Vec<Sample> {
        let keep_ms = self.config.keep.as_millis() as u64;
        self.streams.get(name).map_or_else(Vec::new, |ring| {
            ring.samples
                .iter()
                .filter(|s| now_ms.saturating_sub(s.at_ms) <= keep_ms)
                .copied()
                .collect()
        })
    }

    /// Streams kept.
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    /// Whether no stream is kept.
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    fn max_samples(&self) -> usize {
        let every = self.config.every.as_millis().max(1);
        (self.config.keep.as_millis() / every).max(1) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reading(name: &str, bytes: u64, frames: u64, source: Option<u8>) -> Reading {
        Reading {
            name: name.into(),
            bytes_in: bytes,
            frames_in: frames,
            skips: 0,
            source,
            viewers: Some(3),
        }
    }

    #[test]
    fn rates_come_from_the_counters_differences() {
        let mut h = StreamHistory::default();
        let t0 = 1_700_000_000_000;
        h.record(t0, &[reading("live/a", 1_000, 10, Some(0))]);
        assert!(
            h.samples("live/a", t0).is_empty(),
            "the first reading is the base"
        );
        h.record(t0 + 5_000, &[reading("live/a", 626_000, 260, Some(0))]);
        h.record(t0 + 10_000, &[reading("live/a", 1_251_000, 510, Some(2))]);
        let s = h.samples("live/a", t0 + 10_000);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].bitrate_bps, 1_000_000);
        assert_eq!(s[0].frames_per_s, 50.0);
        assert_eq!((s[0].source, s[1].source), (Some(0), Some(2)));
        assert_eq!(s[1].viewers, Some(3));
        // Published anew: the counters start over, and so does the rate.
        h.record(t0 + 15_000, &[reading("live/a", 50_000, 20, Some(0))]);
        assert_eq!(h.samples("live/a", t0 + 15_000)[2].bitrate_bps, 80_000);
    }

    #[test]
    fn a_stream_that_goes_offline_drops_to_zero_then_ages_out() {
        let mut h = StreamHistory::new(HistoryConfig {
            every: Duration::from_secs(5),
            keep: Duration::from_secs(60),
            max_streams: 10,
        });
        let t0 = 1_000_000;
        h.record(t0, &[reading("live/a", 0, 0, Some(0))]);
        h.record(t0 + 5_000, &[reading("live/a", 100_000, 100, Some(0))]);
        h.record(t0 + 10_000, &[]);
        h.record(t0 + 15_000, &[]);
        let s = h.samples("live/a", t0 + 15_000);
        assert_eq!(
            s.len(),
            2,
            "one offline sample, not one per interval: {s:?}"
        );
        assert_eq!((s[1].bitrate_bps, s[1].source), (0, None));
        h.record(t0 + 71_000, &[]);
        assert!(h.is_empty());
    }

    #[test]
    fn the_ring_keeps_its_window_and_streams_are_capped() {
        let mut h = StreamHistory::new(HistoryConfig {
            every: Duration::from_secs(5),
            keep: Duration::from_secs(60),
            max_streams: 2,
        });
        for i in 0..100u64 {
            let r: Vec<Reading> = ["live/a", "live/b", "live/c"]
                .iter()
                .map(|n| reading(n, i * 1000, i, Some(0)))
                .collect();
            h.record(i * 5_000, &r);
        }
        assert_eq!(h.len(), 2);
        assert_eq!(h.samples("live/a", 99 * 5_000).len(), 12);
        assert!(h.samples("live/c", 99 * 5_000).is_empty());
    }

    proptest! {
        /// Whatever the readings, at most keep/every samples per stream,
        /// in time order, and never more streams than the cap.
        #[test]
        fn bounded_and_ordered(steps in proptest::collection::vec(
            (0u64..20_000, proptest::collection::vec((0u8..5, any::<u32>(), any::<u16>(), any::<bool>()), 0..6)),
            1..60,
        )) {
            let mut h = StreamHistory::new(HistoryConfig {
                every: Duration::from_secs(5),
                keep: Duration::from_secs(60),
                max_streams: 3,
            });
            let mut t = 1_000_000u64;
            for (dt, rs) in steps {
                t += dt;
                let mut readings: Vec<Reading> = rs
                    .into_iter()
                    .map(|(n, b, f, live)| Reading {
                        name: format!("live/s{n}"),
                        bytes_in: u64::from(b),
                        frames_in: u64::from(f),
                        skips: 0,
                        source: live.then_some(0),
                        viewers: None,
                    })
                    .collect();
                readings.sort_by(|a, b| a.name.cmp(&b.name));
                readings.dedup_by(|a, b| a.name == b.name);
                h.record(t, &readings);
                prop_assert!(h.len() <= 3);
                for n in 0..5 {
                    let s = h.samples(&format!("live/s{n}"), t);
                    prop_assert!(s.len() <= 12);
                    prop_assert!(s.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
                }
            }
        }
    }
}
