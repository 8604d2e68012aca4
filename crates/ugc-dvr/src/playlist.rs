//! HLS playlist rendering (RFC 8216), by our own code: pure functions of the
//! segments they describe.

use std::fmt::Write as _;
use std::sync::Arc;

use ugc_core::Rational;

use crate::segmenter::Segment;

/// Which media playlist flavour to render.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Variant {
    /// fMP4 (CMAF) segments with `#EXT-X-MAP` init segments.
    Fmp4,
    /// MPEG-TS segments, muxed on first request.
    Ts,
}

impl Variant {
    /// The URI of segment `msn` relative to the playlist.
    pub fn segment_uri(self, msn: u64) -> String {
        match self {
            Variant::Fmp4 => format!("seg-{msn}.m4s"),
            Variant::Ts => format!("seg-{msn}.ts"),
        }
    }
}

/// The URI of init segment `n` relative to the playlist.
pub fn init_uri(n: u32) -> String {
    format!("init-{n}.mp4")
}

/// Formats unix milliseconds as ISO 8601 UTC with milliseconds, as
/// `#EXT-X-PROGRAM-DATE-TIME` wants it: `2026-11-26T08:29:32.123Z`.
pub fn format_program_date_time(unix_ms: i64) -> String {
    let days = unix_ms.div_euclid(86_400_000);
    let ms_of_day = unix_ms.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    let secs = ms_of_day / 1000;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        ms_of_day % 1000
    )
}

/// Proleptic Gregorian (year, month, day) of `days` since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Count from 0000-03-01 so the leap day is the last day of a year; a
    // 400-year cycle has 146 097 days.
    let z = days + 719_468;
    let cycle = z.div_euclid(146_097);
    let day_of_cycle = z.rem_euclid(146_097); // 0..=146096
    let year_of_cycle =
        (day_of_cycle - day_of_cycle / 1460 + day_of_cycle / 36_524 - day_of_cycle / 146_096) / 365;
    let day_of_year =
        day_of_cycle - (365 * year_of_cycle + year_of_cycle / 4 - year_of_cycle / 100);
    // Months from March, each 5-month group is 153 days.
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_cycle + cycle * 400 + i64::from(month <= 2);
    (
        year,
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
    )
}

/// Formats milliseconds as seconds with three decimals (`2.002`).
pub fn format_seconds_3(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// The inputs of a live media playlist.
#[derive(Debug, Clone)]
pub struct MediaPlaylist<'a> {
    /// The segments, oldest first, msn consecutive.
    pub segments: &'a [Arc<Segment>],
    /// Configured target duration; `#EXT-X-TARGETDURATION` is at least this.
    pub target_duration_ms: u32,
    /// Discontinuities before the first segment.
    pub discontinuity_sequence: u64,
    /// Media sequence number when `segments` is empty (the next msn).
    pub next_msn: u64,
    /// The stream ended (`#EXT-X-ENDLIST`).
    pub ended: bool,
}

impl MediaPlaylist<'_> {
    /// `#EXT-X-TARGETDURATION`: the ceiling of the longest segment, and at
    /// least the configured target, in whole seconds.
    pub fn target_duration_secs(&self) -> u64 {
        let max_ms = self
            .segments
            .iter()
            .map(|s| s.duration_ms)
            .max()
            .unwrap_or(0)
            .max(u64::from(self.target_duration_ms));
        max_ms.div_ceil(1000).max(1)
    }

    /// Renders the playlist for `variant`.
    pub fn render(&self, variant: Variant) -> String {
        let mut out = String::with_capacity(256 + self.segments.len() * 96);
        let version = match variant {
            Variant::Fmp4 => 7,
            Variant::Ts => 3,
        };
        let media_sequence = self.segments.first().map_or(self.next_msn, |s| s.msn);
        // Writing to a String cannot fail.
        let _ = write!(
            out,
            "#EXTM3U\n#EXT-X-VERSION:{version}\n#EXT-X-TARGETDURATION:{}\n\
             #EXT-X-MEDIA-SEQUENCE:{media_sequence}\n#EXT-X-DISCONTINUITY-SEQUENCE:{}\n\
             #EXT-X-INDEPENDENT-SEGMENTS\n",
            self.target_duration_secs(),
            self.discontinuity_sequence,
        );
        let mut current_init = None;
        for seg in self.segments {
            if seg.discontinuity {
                out.push_str("#EXT-X-DISCONTINUITY\n");
            }
            if variant == Variant::Fmp4 && current_init != Some(seg.init) {
                let _ = writeln!(out, "#EXT-X-MAP:URI=\"{}\"", init_uri(seg.init));
                current_init = Some(seg.init);
            }
            let _ = write!(
                out,
                "#EXT-X-PROGRAM-DATE-TIME:{}\n#EXTINF:{},\n{}\n",
                format_program_date_time(seg.program_date_time_ms),
                format_seconds_3(seg.duration_ms),
                variant.segment_uri(seg.msn),
            );
        }
        if self.ended {
            out.push_str("#EXT-X-ENDLIST\n");
        }
        out
    }
}

/// One `#EXT-X-STREAM-INF` entry of a multivariant playlist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariantStream {
    /// URI of its media playlist, relative to the multivariant playlist.
    pub uri: String,
    /// Peak bits per second.
    pub bandwidth: u64,
    /// Average bits per second, when measured.
    pub average_bandwidth: Option<u64>,
    /// RFC 6381 codec strings, comma-separated.
    pub codecs: String,
    /// Width and height of the video.
    pub resolution: Option<(u32, u32)>,
    /// Video frame rate.
    pub frame_rate: Option<Rational>,
}

/// Renders a multivariant playlist listing `variants`.
pub fn render_multivariant(variants: &[VariantStream]) -> String {
    let mut out = String::from("#EXTM3U\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    for v in variants {
        let _ = write!(out, "#EXT-X-STREAM-INF:BANDWIDTH={}", v.bandwidth.max(1));
        if let Some(avg) = v.average_bandwidth {
            let _ = write!(out, ",AVERAGE-BANDWIDTH={}", avg.max(1));
        }
        if !v.codecs.is_empty() {
            let _ = write!(out, ",CODECS=\"{}\"", v.codecs);
        }
        if let Some((w, h)) = v.resolution {
            let _ = write!(out, ",RESOLUTION={w}x{h}");
        }
        if let Some(fr) = v.frame_rate.and_then(Rational::to_decimal_3) {
            let _ = write!(out, ",FRAME-RATE={fr}");
        }
        let _ = write!(out, "\n{}\n", v.uri);
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn program_date_time_known_instants() {
        assert_eq!(format_program_date_time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_program_date_time(1_795_681_772_123),
            "2026-11-26T08:29:32.123Z"
        );
        // Leap day and the 2000 leap-century.
        assert_eq!(
            format_program_date_time(951_782_400_000),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(
            format_program_date_time(1_709_251_199_999),
            "2024-02-29T23:59:59.999Z"
        );
        // Before the epoch.
        assert_eq!(format_program_date_time(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(
            format_program_date_time(4_102_444_800_000),
            "2100-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn civil_from_days_is_consecutive() {
        // Walk 1600..2400 day by day and check the calendar advances by one.
        let mut prev = civil_from_days(-135_140);
        assert_eq!(prev, (1600, 1, 1));
        for d in -135_139..157_000 {
            let cur = civil_from_days(d);
            let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let mdays = [
                31,
                if leap(prev.0) { 29 } else { 28 },
                31,
                30,
                31,
                30,
                31,
                31,
                30,
                31,
                30,
                31,
            ];
            let expect = if prev.2 < mdays[(prev.1 - 1) as usize] {
                (prev.0, prev.1, prev.2 + 1)
            } else if prev.1 < 12 {
                (prev.0, prev.1 + 1, 1)
            } else {
                (prev.0 + 1, 1, 1)
            };
            assert_eq!(cur, expect, "day {d}");
            prev = cur;
        }
    }

    #[test]
    fn seconds_three_decimals() {
        assert_eq!(format_seconds_3(2002), "2.002");
        assert_eq!(format_seconds_3(40), "0.040");
        assert_eq!(format_seconds_3(10_000), "10.000");
    }

    #[test]
    fn multivariant_attributes() {
        let s = render_multivariant(&[VariantStream {
            uri: "mono.m3u8".into(),
            bandwidth: 2_500_000,
            average_bandwidth: Some(2_000_000),
            codecs: "avc1.64001f,mp4a.40.2".into(),
            resolution: Some((1280, 720)),
            frame_rate: Some(Rational::new(30000, 1001)),
        }]);
        assert_eq!(
            s,
            "#EXTM3U\n#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-STREAM-INF:BANDWIDTH=2500000,\
             AVERAGE-BANDWIDTH=2000000,CODECS=\"avc1.64001f,mp4a.40.2\",RESOLUTION=1280x720,\
             FRAME-RATE=29.970\nmono.m3u8\n"
        );
    }
}
