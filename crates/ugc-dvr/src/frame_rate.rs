//! The video frame rate of a stream measured on its closed segments, for
//! the `FRAME-RATE` of a multivariant playlist when neither the bitstream
//! (H.264 SPS / H.265 VPS or SPS timing info) nor the publisher's metadata
//! declares one.
//!
//! Frames of the video track over the segments' summed durations (the
//! segments tile the timeline, so rounding to the millisecond costs at most
//! one millisecond over the whole window), snapped to the nearest common
//! rate within 0.5 %: 23.976 fps measured as 23.98 is 24000/1001, not
//! 23.980. Other rates (12.5, 15, a webcam's 28.6) are given as measured.

use ugc_core::{MediaKind, Rational};

use crate::segmenter::Segment;

/// Rates streams commonly have.
const COMMON: [(u32, u32); 8] = [
    (24_000, 1001),
    (24, 1),
    (25, 1),
    (30_000, 1001),
    (30, 1),
    (50, 1),
    (60_000, 1001),
    (60, 1),
];

/// Shortest span measured: a shorter one (the first short segment after a
/// flush) says too little.
const MIN_SPAN_MS: u64 = 1000;

/// `frames` pictures in `duration_ms`: the nearest common rate within
/// 0.5 %, else the measured rate (`frames * 1000 / duration_ms`, reduced).
/// `None` for no frames, less than a second of them, or a rate that does not
/// fit a `u32` fraction.
pub fn measured(frames: u64, duration_ms: u64) -> Option<Rational> {
    if frames == 0 || duration_ms < MIN_SPAN_MS {
        return None;
    }
    // |frames/ms*1000 - num/den| relative to num/den, as integers:
    // |frames*1000*den - num*ms| / (num*ms).
    let measured = u128::from(frames) * 1000;
    let ms = u128::from(duration_ms);
    let nearest = COMMON
        .iter()
        .map(|&(num, den)| {
            let want = u128::from(num) * ms;
            (measured * u128::from(den)).abs_diff(want) * 1_000_000 / want
        })
        .zip(COMMON)
        .min_by_key(|&(ppm, _)| ppm);
    match nearest {
        Some((ppm, (num, den))) if ppm <= 5_000 => Some(Rational::new(num, den)),
        _ => reduce(measured, ms),
    }
}

/// The video frame rate over `segments`: their video frames over their
/// durations, as [`measured`]. Segments without a video track are left out.
pub fn of_segments<'a>(segments: impl IntoIterator<Item = &'a Segment>) -> Option<Rational> {
    let mut frames = 0u64;
    let mut ms = 0u64;
    for s in segments {
        let Some(video) = s.tracks.video().filter(|t| t.kind() == MediaKind::Video) else {
            continue;
        };
        let n = s.frames.iter().filter(|f| f.track == video.id).count();
        frames = frames.saturating_add(n as u64);
        ms = ms.saturating_add(s.duration_ms);
    }
    measured(frames, ms)
}

fn reduce(num: u128, den: u128) -> Option<Rational> {
    let (mut a, mut b) = (num, den);
    while b != 0 {
        (a, b) = (b, a % b);
    }
    if a == 0 {
        return None;
    }
    Some(Rational::new(
        u32::try_from(num / a).ok()?,
        u32::try_from(den / a).ok()?,
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn fps(r: Option<Rational>) -> Option<String> {
        r.and_then(Rational::to_decimal_3)
    }

    #[test]
    fn common_rates_snap_within_half_a_percent() {
        // Six 2 s segments of each rate, timestamps in milliseconds.
        assert_eq!(measured(360, 12_000), Some(Rational::new(30, 1)));
        assert_eq!(measured(360, 12_012), Some(Rational::new(30_000, 1001)));
        assert_eq!(measured(288, 12_012), Some(Rational::new(24_000, 1001)));
        assert_eq!(measured(288, 12_000), Some(Rational::new(24, 1)));
        assert_eq!(measured(300, 12_000), Some(Rational::new(25, 1)));
        assert_eq!(measured(600, 12_000), Some(Rational::new(50, 1)));
        assert_eq!(measured(720, 12_012), Some(Rational::new(60_000, 1001)));
        assert_eq!(measured(720, 12_000), Some(Rational::new(60, 1)));
        // 0.4 % above 30: still 30; 0.6 % above: as measured.
        assert_eq!(fps(measured(1000, 33_201)), Some("30.000".into()));
        assert_eq!(fps(measured(1000, 33_135)), Some("30.180".into()));
        // 29.88 is nearer 29.970 than 30.
        assert_eq!(measured(1000, 33_467), Some(Rational::new(30_000, 1001)));
        // A window of 30 fps a millisecond long or short. (One 2 s segment
        // a millisecond long, 29.985 fps, is as near 29.970 as 30: the
        // measure sharpens as the window fills.)
        assert_eq!(measured(360, 12_001), Some(Rational::new(30, 1)));
        assert_eq!(measured(360, 11_999), Some(Rational::new(30, 1)));
        assert_eq!(measured(360, 12_011), Some(Rational::new(30_000, 1001)));
    }

    #[test]
    fn other_rates_are_given_as_measured() {
        assert_eq!(measured(25, 2000), Some(Rational::new(25, 2)));
        assert_eq!(fps(measured(150, 10_000)), Some("15.000".into()));
        assert_eq!(fps(measured(100, 1000)), Some("100.000".into()));
        assert_eq!(fps(measured(1, 3000)), Some("0.333".into()));
    }

    #[test]
    fn too_little_to_measure() {
        assert_eq!(measured(0, 12_000), None);
        assert_eq!(measured(20, 999), None);
        // Does not fit a u32 fraction.
        assert_eq!(measured(u64::MAX, 1000), None);
    }
}
