//! HLS playlist rendering (RFC 8216), by our own code: pure functions of the
//! segments they describe.

use std::fmt::Write as _;
use std::sync::Arc;

use ugc_core::Rational;

use crate::segmenter::{Part, Segment, SegmentStart};

/// Which media playlist flavour to render.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Variant {
    /// fMP4 (CMAF) segments with `#EXT-X-MAP` init segments.
    Fmp4,
    /// MPEG-TS segments, muxed on first request.
    Ts,
}

impl Variant {
    /// The URI of segment `msn` of session `session` relative to the
    /// playlist: `seg-<session>-<msn>.m4s` (or `.ts`).
    pub fn segment_uri(self, session: u64, msn: u64) -> String {
        MediaFile::Segment(self, session, msn).to_string()
    }
}

/// The URI of part `index` of segment `msn` of session `session` relative
/// to the playlist: `part-<session>-<msn>.<index>.m4s`.
pub fn part_uri(session: u64, msn: u64, index: u32) -> String {
    MediaFile::Part(session, msn, index).to_string()
}

/// The URI of init segment `n` of session `session` relative to the
/// playlist: `init-<session>-<n>.mp4`.
pub fn init_uri(session: u64, n: u32) -> String {
    MediaFile::Init(session, n).to_string()
}

/// A media file of a live stream, named as its playlists list it. Every
/// name carries the session of the stream ([`crate::LiveStream::session`]):
/// a stream that ends and is published again restarts its segment numbers,
/// and a media URI must never be reused with other bytes (they are served
/// `immutable`, so browsers and CDN edges would keep the old broadcast's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaFile {
    /// `init-<session>-<n>.mp4`.
    Init(u64, u32),
    /// `seg-<session>-<msn>.m4s` or `seg-<session>-<msn>.ts`.
    Segment(Variant, u64, u64),
    /// `part-<session>-<msn>.<index>.m4s` (LL-HLS).
    Part(u64, u64, u32),
}

/// Why [`MediaFile::parse`] refused a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaFileError {
    /// Not a media file name (any pattern we do not serve).
    Unknown,
    /// A known pattern with a number that is not plain decimal digits (a
    /// bad request, unlike a number too large to exist, which is unknown).
    BadNumber,
}

impl MediaFile {
    /// The session the file belongs to.
    pub fn session(self) -> u64 {
        match self {
            MediaFile::Init(s, _) | MediaFile::Segment(_, s, _) | MediaFile::Part(s, _, _) => s,
        }
    }

    /// Parses a name made by its `Display`.
    pub fn parse(name: &str) -> Result<MediaFile, MediaFileError> {
        if let Some(rest) = name
            .strip_prefix("init-")
            .and_then(|r| r.strip_suffix(".mp4"))
        {
            let (session, n) = rest.split_once('-').ok_or(MediaFileError::BadNumber)?;
            return Ok(MediaFile::Init(number(session)?, number(n)?));
        }
        if let Some(rest) = name.strip_prefix("seg-") {
            let (rest, variant) = match (rest.strip_suffix(".m4s"), rest.strip_suffix(".ts")) {
                (Some(r), _) => (r, Variant::Fmp4),
                (None, Some(r)) => (r, Variant::Ts),
                (None, None) => return Err(MediaFileError::Unknown),
            };
            let (session, msn) = rest.split_once('-').ok_or(MediaFileError::BadNumber)?;
            return Ok(MediaFile::Segment(variant, number(session)?, number(msn)?));
        }
        if let Some(rest) = name
            .strip_prefix("part-")
            .and_then(|r| r.strip_suffix(".m4s"))
        {
            let (session, rest) = rest.split_once('-').ok_or(MediaFileError::BadNumber)?;
            let (msn, index) = rest.split_once('.').ok_or(MediaFileError::BadNumber)?;
            return Ok(MediaFile::Part(
                number(session)?,
                number(msn)?,
                number(index)?,
            ));
        }
        Err(MediaFileError::Unknown)
    }
}

/// A decimal number of at most 20 plain digits; one that does not fit `T`
/// cannot name an existing file ([`MediaFileError::Unknown`]).
fn number<T: std::str::FromStr>(digits: &str) -> Result<T, MediaFileError> {
    if digits.is_empty() || digits.len() > 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(MediaFileError::BadNumber);
    }
    digits.parse().map_err(|_| MediaFileError::Unknown)
}

impl std::fmt::Display for MediaFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            MediaFile::Init(s, n) => write!(f, "init-{s}-{n}.mp4"),
            MediaFile::Segment(Variant::Fmp4, s, msn) => write!(f, "seg-{s}-{msn}.m4s"),
            MediaFile::Segment(Variant::Ts, s, msn) => write!(f, "seg-{s}-{msn}.ts"),
            MediaFile::Part(s, msn, i) => write!(f, "part-{s}-{msn}.{i}.m4s"),
        }
    }
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

/// An `#EXT-X-RENDITION-REPORT` of another rendition of the same stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenditionReport {
    /// Its media playlist URI, relative to this playlist.
    pub uri: String,
    /// Its newest media sequence number (the open segment's when it has
    /// parts).
    pub last_msn: u64,
    /// Its newest part of `last_msn`.
    pub last_part: Option<u32>,
}

/// The LL-HLS inputs of a media playlist (RFC 8216bis section 4.4.3.7,
/// 4.4.3.8, 4.4.4.9, 4.4.5.2, 4.4.5.3).
#[derive(Debug, Clone, Default)]
pub struct LowLatency<'a> {
    /// Configured part target; `#EXT-X-PART-INF:PART-TARGET` is at least
    /// this and at least the longest listed part.
    pub part_target_ms: u32,
    /// The open segment, whose parts are listed after the closed segments.
    pub open: Option<SegmentStart>,
    /// The published parts of the open segment.
    pub open_parts: &'a [Arc<Part>],
    /// The part to announce with `#EXT-X-PRELOAD-HINT` (`None` once ended).
    pub preload: Option<(u64, u32)>,
    /// Render a delta update (`_HLS_skip=YES`): segments further than
    /// `CAN-SKIP-UNTIL` from the end become one `#EXT-X-SKIP`.
    pub skip: bool,
    /// Reports of the other renditions.
    pub rendition_reports: &'a [RenditionReport],
}

/// Timestamp jitter a segment may exceed a whole second by without raising
/// `#EXT-X-TARGETDURATION` (RTMP's millisecond rounding makes 2.002 s
/// segments of 2 s GOPs).
pub const TARGET_DURATION_SLACK_MS: u64 = 50;

/// `#EXT-X-TARGETDURATION` for segments of at most `max_ms`: whole seconds,
/// rounded up once past [`TARGET_DURATION_SLACK_MS`] (RFC 8216 only needs
/// every EXTINF rounded to the nearest integer to be at most it; rounding up
/// keeps it safe for players that treat it as a strict maximum).
pub fn target_duration_secs(max_ms: u64) -> u64 {
    max_ms
        .saturating_sub(TARGET_DURATION_SLACK_MS)
        .div_ceil(1000)
        .max(1)
}

/// The inputs of a live media playlist.
#[derive(Debug, Clone)]
pub struct MediaPlaylist<'a> {
    /// The stream's session, in every media URI ([`MediaFile`]).
    pub session: u64,
    /// The segments, oldest first, msn consecutive.
    pub segments: &'a [Arc<Segment>],
    /// The configured target duration: `#EXT-X-TARGETDURATION` is at least
    /// [`target_duration_secs`] of it when the segments do not carry their
    /// stream's fixed target ([`Segment::target_duration_s`]).
    pub target_duration_ms: u32,
    /// Discontinuities before the first segment.
    pub discontinuity_sequence: u64,
    /// Media sequence number when `segments` is empty (the next msn).
    pub next_msn: u64,
    /// The stream ended (`#EXT-X-ENDLIST`).
    pub ended: bool,
    /// LL-HLS: parts, server control, preload hint, delta updates.
    pub low_latency: Option<LowLatency<'a>>,
}

impl MediaPlaylist<'_> {
    /// Index of the first segment whose parts are listed: parts are kept
    /// for the segments less than three target durations from the end.
    fn first_with_parts(&self) -> usize {
        let horizon = self.target_duration_secs().saturating_mul(3000);
        let mut after = 0u64;
        let mut first = self.segments.len();
        for (i, seg) in self.segments.iter().enumerate().rev() {
            if after >= horizon {
                break;
            }
            first = i;
            after = after.saturating_add(seg.duration_ms);
        }
        first
    }

    /// `PART-TARGET` in milliseconds: the configured target, raised to the
    /// longest listed part so every part is within it.
    pub fn part_target_ms(&self) -> Option<u64> {
        let ll = self.low_latency.as_ref()?;
        let closed = self
            .segments
            .get(self.first_with_parts()..)
            .unwrap_or_default()
            .iter()
            .flat_map(|s| s.parts.iter().map(|p| p.duration_ms));
        let open = ll.open_parts.iter().map(|p| p.duration_ms);
        Some(
            closed
                .chain(open)
                .fold(u64::from(ll.part_target_ms), u64::max)
                .max(1),
        )
    }

    /// `CAN-SKIP-UNTIL` in milliseconds: six target durations.
    pub fn skip_until_ms(&self) -> u64 {
        self.target_duration_secs().saturating_mul(6000)
    }

    /// How many segments a delta update skips: the leading segments that
    /// end at least `CAN-SKIP-UNTIL` before the end of the playlist.
    pub fn skippable_segments(&self) -> usize {
        let boundary = self.skip_until_ms();
        let mut after = 0u64;
        let mut keep = 0usize;
        for seg in self.segments.iter().rev() {
            if after >= boundary {
                break;
            }
            keep += 1;
            after = after.saturating_add(seg.duration_ms);
        }
        self.segments.len().saturating_sub(keep)
    }

    /// `#EXT-X-TARGETDURATION`: the stream's fixed target, which every
    /// segment carries ([`Segment::target_duration_s`]; it never changes
    /// while the stream lives), at least of the configured target; without
    /// segments (or for segments that
    /// carry none) [`target_duration_secs`] of the longest segment and of
    /// the configured target.
    pub fn target_duration_secs(&self) -> u64 {
        if let Some(t) = self
            .segments
            .last()
            .map(|s| s.target_duration_s)
            .filter(|t| *t > 0)
        {
            return t.max(target_duration_secs(u64::from(self.target_duration_ms)));
        }
        let max_ms = self
            .segments
            .iter()
            .map(|s| s.duration_ms)
            .max()
            .unwrap_or(0)
            .max(u64::from(self.target_duration_ms));
        target_duration_secs(max_ms)
    }

    /// Renders the playlist for `variant`. LL-HLS tags are written for
    /// [`Variant::Fmp4`] when [`Self::low_latency`] is set.
    pub fn render(&self, variant: Variant) -> String {
        let mut out = String::with_capacity(256 + self.segments.len() * 96);
        let ll = self
            .low_latency
            .as_ref()
            .filter(|_| variant == Variant::Fmp4);
        let version = match (variant, ll) {
            (Variant::Fmp4, Some(_)) => 9,
            (Variant::Fmp4, None) => 7,
            (Variant::Ts, _) => 3,
        };
        let media_sequence = self.segments.first().map_or(self.next_msn, |s| s.msn);
        // Writing to a String cannot fail.
        let _ = write!(
            out,
            "#EXTM3U\n#EXT-X-VERSION:{version}\n#EXT-X-TARGETDURATION:{}\n",
            self.target_duration_secs(),
        );
        let part_target = self.part_target_ms().unwrap_or(0);
        if ll.is_some() {
            let _ = write!(
                out,
                "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL={},PART-HOLD-BACK={}\n\
                 #EXT-X-PART-INF:PART-TARGET={}\n",
                format_seconds_3(self.skip_until_ms()),
                format_seconds_3(part_target.saturating_mul(3)),
                format_seconds_3(part_target),
            );
        }
        let _ = write!(
            out,
            "#EXT-X-MEDIA-SEQUENCE:{media_sequence}\n#EXT-X-DISCONTINUITY-SEQUENCE:{}\n",
            self.discontinuity_sequence,
        );
        // Only while every listed segment starts with a keyframe (aligned
        // segments of a GOP longer than a segment do not).
        let independent = self
            .segments
            .iter()
            .all(|s| s.parts.first().is_none_or(|p| p.independent));
        if independent {
            out.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
        }
        let skipped = match ll {
            Some(l) if l.skip => self.skippable_segments(),
            _ => 0,
        };
        if skipped > 0 {
            let _ = writeln!(out, "#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}");
        }
        let parts_from = if ll.is_some() {
            self.first_with_parts()
        } else {
            usize::MAX
        };
        let mut current_init = None;
        for (i, seg) in self.segments.iter().enumerate().skip(skipped) {
            if seg.discontinuity {
                out.push_str("#EXT-X-DISCONTINUITY\n");
            }
            if variant == Variant::Fmp4 && current_init != Some(seg.init) {
                let _ = writeln!(
                    out,
                    "#EXT-X-MAP:URI=\"{}\"",
                    init_uri(self.session, seg.init)
                );
                current_init = Some(seg.init);
            }
            let _ = writeln!(
                out,
                "#EXT-X-PROGRAM-DATE-TIME:{}",
                format_program_date_time(seg.program_date_time_ms)
            );
            if i >= parts_from {
                for p in &seg.parts {
                    write_part(&mut out, self.session, seg.msn, p);
                }
            }
            let _ = write!(
                out,
                "#EXTINF:{},\n{}\n",
                format_seconds_3(seg.duration_ms),
                variant.segment_uri(self.session, seg.msn),
            );
        }
        if let Some(ll) = ll {
            if let Some(open) = ll.open.filter(|_| !ll.open_parts.is_empty()) {
                if open.discontinuity {
                    out.push_str("#EXT-X-DISCONTINUITY\n");
                }
                if current_init != Some(open.init) {
                    let _ = writeln!(
                        out,
                        "#EXT-X-MAP:URI=\"{}\"",
                        init_uri(self.session, open.init)
                    );
                }
                let _ = writeln!(
                    out,
                    "#EXT-X-PROGRAM-DATE-TIME:{}",
                    format_program_date_time(open.program_date_time_ms)
                );
                for p in ll.open_parts {
                    write_part(&mut out, self.session, open.msn, p);
                }
            }
            if let Some((msn, index)) = ll.preload.filter(|_| !self.ended) {
                let _ = writeln!(
                    out,
                    "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{}\"",
                    part_uri(self.session, msn, index)
                );
            }
            for r in ll.rendition_reports {
                let _ = write!(
                    out,
                    "#EXT-X-RENDITION-REPORT:URI=\"{}\",LAST-MSN={}",
                    r.uri, r.last_msn
                );
                if let Some(p) = r.last_part {
                    let _ = write!(out, ",LAST-PART={p}");
                }
                out.push('\n');
            }
        }
        if self.ended {
            out.push_str("#EXT-X-ENDLIST\n");
        }
        out
    }
}

fn write_part(out: &mut String, session: u64, msn: u64, part: &Part) {
    let _ = write!(
        out,
        "#EXT-X-PART:DURATION={},URI=\"{}\"",
        format_seconds_3(part.duration_ms),
        part_uri(session, msn, part.index)
    );
    if part.independent {
        out.push_str(",INDEPENDENT=YES");
    }
    out.push('\n');
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
