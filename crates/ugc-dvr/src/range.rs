//! Playlists over the archive (pure functions of index entries): a range
//! (`index-<from>-<seconds>.m3u8`, VOD with `#EXT-X-ENDLIST`) and "from a
//! time to the live edge" (`index-<from>-now.m3u8`, EVENT).
//!
//! Segment URIs are `dvr-<file name>` relative to the playlist (the archive
//! file names of [`crate::archive::names`]); init segments `dvr-i<session>_<n>.mp4`.
//! Every segment carries `#EXT-X-PROGRAM-DATE-TIME`. A discontinuity is
//! marked before a segment when the recording session or init segment
//! changes, when the segmenter marked one, and when the wall clock jumps by
//! more than the gap tolerance (a hole in the recording is never papered
//! over).

use std::fmt::Write as _;

use crate::archive::{ArchivedSegment, SegmentName, names};
use crate::playlist::target_duration_secs;

/// The prefix of archive URIs below `/live/<stream>/`.
pub const DVR_PREFIX: &str = "dvr-";

/// Which kind of archive playlist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeKind {
    /// A closed range: `#EXT-X-PLAYLIST-TYPE:VOD` + `#EXT-X-ENDLIST`.
    Vod,
    /// From a time to the live edge: `#EXT-X-PLAYLIST-TYPE:EVENT`; ended
    /// adds `#EXT-X-ENDLIST`.
    Event {
        /// The stream is no longer live.
        ended: bool,
    },
}

/// Renders an archive playlist over `segments` (oldest first, as
/// [`crate::archive::TrackIndex::range`] yields them). `token` is appended
/// to every URI as `?token=` when given (it must be URL-safe).
pub fn render_range<'a>(
    segments: impl IntoIterator<Item = &'a ArchivedSegment> + Clone,
    kind: RangeKind,
    target_duration_ms: u32,
    gap_tolerance_ms: u32,
    token: Option<&str>,
) -> String {
    let max_ms = segments
        .clone()
        .into_iter()
        .map(|s| s.name.duration_ms)
        .max()
        .unwrap_or(0)
        .max(target_duration_ms);
    let count = segments.clone().into_iter().count();
    let mut out = String::with_capacity(256 + count * 130);
    let playlist_type = match kind {
        RangeKind::Vod => "VOD",
        RangeKind::Event { .. } => "EVENT",
    };
    let _ = write!(
        out,
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:{}\n#EXT-X-MEDIA-SEQUENCE:0\n\
         #EXT-X-PLAYLIST-TYPE:{playlist_type}\n#EXT-X-INDEPENDENT-SEGMENTS\n",
        target_duration_secs(u64::from(max_ms))
    );
    let mut prev: Option<&SegmentName> = None;
    for seg in segments {
        let n = &seg.name;
        let new_map = prev.is_none_or(|p| p.session != n.session || p.init != n.init);
        if let Some(p) = prev {
            let gap = n.pdt_ms.saturating_sub(p.end_ms()) > i64::from(gap_tolerance_ms);
            if new_map || n.discontinuity || gap {
                out.push_str("#EXT-X-DISCONTINUITY\n");
            }
        }
        push_segment(&mut out, n, new_map, token);
        prev = Some(n);
    }
    if matches!(kind, RangeKind::Vod | RangeKind::Event { ended: true }) {
        out.push_str("#EXT-X-ENDLIST\n");
    }
    out
}

/// An archived segment's playlist lines (its `EXT-X-MAP` first when
/// `new_map`): date, duration and URI under [`DVR_PREFIX`].
fn push_segment(out: &mut String, n: &SegmentName, new_map: bool, token: Option<&str>) {
    if new_map {
        out.push_str("#EXT-X-MAP:URI=\"");
        out.push_str(DVR_PREFIX);
        out.push_str(&names::init_file_name(n.session, n.init));
        push_token(out, token);
        out.push_str("\"\n");
    }
    out.push_str("#EXT-X-PROGRAM-DATE-TIME:");
    write_pdt(out, n.pdt_ms);
    let _ = write!(
        out,
        "\n#EXTINF:{}.{:03},\n{DVR_PREFIX}{}",
        n.duration_ms / 1000,
        n.duration_ms % 1000,
        n.file_name()
    );
    push_token(out, token);
    out.push('\n');
}

fn push_token(out: &mut String, token: Option<&str>) {
    if let Some(t) = token {
        out.push_str("?token=");
        out.push_str(t);
    }
}

/// `#EXT-X-PROGRAM-DATE-TIME` value without an intermediate allocation.
fn write_pdt(out: &mut String, unix_ms: i64) {
    // The day part changes once a day: cache the formatted date.
    thread_local! {
        static DAY: std::cell::RefCell<(i64, String)> = const { std::cell::RefCell::new((i64::MIN, String::new())) };
    }
    let days = unix_ms.div_euclid(86_400_000);
    let ms = unix_ms.rem_euclid(86_400_000);
    DAY.with(|d| {
        let mut d = d.borrow_mut();
        if d.0 != days {
            let full = crate::playlist::format_program_date_time(days.saturating_mul(86_400_000));
            d.1 = full.get(..11).unwrap_or("").to_owned();
            d.0 = days;
        }
        out.push_str(&d.1);
    });
    let s = ms / 1000;
    let _ = write!(
        out,
        "{:02}:{:02}:{:02}.{:03}Z",
        s / 3600,
        s / 60 % 60,
        s % 60,
        ms % 1000
    );
}

/// Offers a rewind window in a live media playlist: puts `archived` (the
/// current session's archived segments just before the live window, oldest
/// first) in front of the live playlist's first segment, with the media and
/// discontinuity sequence numbers moved back accordingly. Only the run of
/// archived segments whose msn ends exactly at the live window's first msn
/// is used (msn must stay consecutive). `None` when there is nothing to add
/// or the playlist is not one we understand; then serve it unchanged.
pub fn splice_rewind(
    live: &str,
    archived: &[ArchivedSegment],
    token: Option<&str>,
) -> Option<String> {
    let mut msn: Option<u64> = None;
    let mut dseq: u64 = 0;
    let mut target: Option<u64> = None;
    let mut first_seg_line = None;
    for (i, line) in live.lines().enumerate() {
        if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            msn = v.trim().parse().ok();
        } else if let Some(v) = line.strip_prefix("#EXT-X-DISCONTINUITY-SEQUENCE:") {
            dseq = v.trim().parse().ok()?;
        } else if let Some(v) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
            target = v.trim().parse().ok();
        } else if first_seg_line.is_none()
            && (line == "#EXT-X-DISCONTINUITY"
                || line.starts_with("#EXT-X-MAP:")
                || line.starts_with("#EXT-X-PROGRAM-DATE-TIME:")
                || line.starts_with("#EXTINF:")
                || line.starts_with("#EXT-X-PART:")
                || line.starts_with("#EXT-X-GAP")
                || line.starts_with("#EXT-X-BITRATE:"))
        {
            first_seg_line = Some(i);
        }
    }
    let first_live = msn?;
    let first_seg_line = first_seg_line?;
    // The consecutive run ending at first_live - 1.
    let mut run: Vec<&ArchivedSegment> = Vec::new();
    let mut want = first_live.checked_sub(1)?;
    for s in archived.iter().rev() {
        if s.name.msn != want {
            if s.name.msn > want {
                continue;
            }
            break;
        }
        run.push(s);
        match want.checked_sub(1) {
            Some(w) => want = w,
            None => break,
        }
    }
    if run.is_empty() {
        return None;
    }
    run.reverse();
    let first_msn = run.first()?.name.msn;
    let dropped_disc = run.iter().filter(|s| s.name.discontinuity).count() as u64;
    let max_dur = run
        .iter()
        .map(|s| target_duration_secs(u64::from(s.name.duration_ms)))
        .max()
        .unwrap_or(0);
    let mut out = String::with_capacity(live.len() + run.len() * 140);
    for (i, line) in live.lines().enumerate() {
        if i == first_seg_line {
            let mut prev: Option<&SegmentName> = None;
            for seg in &run {
                let n = &seg.name;
                if prev.is_some() && n.discontinuity {
                    out.push_str("#EXT-X-DISCONTINUITY\n");
                }
                let new_map = prev.is_none_or(|p| p.init != n.init);
                push_segment(&mut out, n, new_map, token);
                prev = Some(n);
            }
            // The first live segment continues the run: no discontinuity
            // unless the live playlist already marks one.
        }
        if line.starts_with("#EXT-X-MEDIA-SEQUENCE:") {
            let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{first_msn}");
        } else if line.starts_with("#EXT-X-DISCONTINUITY-SEQUENCE:") {
            let _ = writeln!(
                out,
                "#EXT-X-DISCONTINUITY-SEQUENCE:{}",
                dseq.saturating_sub(dropped_disc)
            );
        } else if line.starts_with("#EXT-X-TARGETDURATION:") && target.is_some_and(|t| max_dur > t)
        {
            let _ = writeln!(out, "#EXT-X-TARGETDURATION:{max_dur}");
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    Some(out)
}

/// A parsed DVR file name below `/live/<stream>/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DvrFile {
    /// `index-<from>-<seconds>.m3u8`.
    Range {
        /// Unix seconds.
        from: i64,
        /// Length in seconds.
        seconds: u32,
    },
    /// `index-<from>-now.m3u8`.
    FromNow {
        /// Unix seconds.
        from: i64,
    },
    /// `archive-<from>-<seconds>.mp4`.
    Mp4 {
        /// Unix seconds.
        from: i64,
        /// Length in seconds.
        seconds: u32,
    },
    /// `dvr-s....m4s`.
    Segment(SegmentName),
    /// `dvr-i<session>_<n>.mp4`.
    Init {
        /// Recording session.
        session: i64,
        /// Init number.
        n: u32,
    },
}

/// Why a DVR file name is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DvrFileError {
    /// Not a DVR file name at all (someone else's route).
    NotDvr,
    /// A DVR pattern with malformed or out-of-range numbers.
    Bad(&'static str),
}

/// Longest range a playlist or an export may cover (24 h).
pub const MAX_RANGE_SECONDS: u32 = 86_400;

fn digits(s: &str) -> Result<u64, DvrFileError> {
    if s.is_empty() || s.len() > 12 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(DvrFileError::Bad(
            "not a decimal number (at most 12 digits)",
        ));
    }
    s.parse()
        .map_err(|_| DvrFileError::Bad("number out of range"))
}

fn from_and_len(rest: &str) -> Result<(i64, Option<u32>), DvrFileError> {
    let (from, len) = rest
        .split_once('-')
        .ok_or(DvrFileError::Bad("expected <from>-<seconds>"))?;
    let from = i64::try_from(digits(from)?).map_err(|_| DvrFileError::Bad("from out of range"))?;
    if len == "now" {
        return Ok((from, None));
    }
    let seconds = digits(len)?;
    if seconds == 0 || seconds > u64::from(MAX_RANGE_SECONDS) {
        return Err(DvrFileError::Bad("seconds must be within 1..=86400"));
    }
    Ok((from, Some(seconds as u32)))
}

/// Parses a file name below `/live/<stream>/`.
pub fn parse_dvr_file(file: &str) -> Result<DvrFile, DvrFileError> {
    if let Some(rest) = file
        .strip_prefix("index-")
        .and_then(|r| r.strip_suffix(".m3u8"))
    {
        return match from_and_len(rest)? {
            (from, Some(seconds)) => Ok(DvrFile::Range { from, seconds }),
            (from, None) => Ok(DvrFile::FromNow { from }),
        };
    }
    if let Some(rest) = file
        .strip_prefix("archive-")
        .and_then(|r| r.strip_suffix(".mp4"))
    {
        return match from_and_len(rest)? {
            (from, Some(seconds)) => Ok(DvrFile::Mp4 { from, seconds }),
            (_, None) => Err(DvrFileError::Bad("an export needs a length")),
        };
    }
    if let Some(rest) = file.strip_prefix(DVR_PREFIX) {
        if let Some(n) = SegmentName::parse(rest) {
            return Ok(DvrFile::Segment(n));
        }
        if let Some((session, n)) = names::parse_init_name(rest) {
            return Ok(DvrFile::Init { session, n });
        }
        return Err(DvrFileError::Bad("unknown archive file"));
    }
    Err(DvrFileError::NotDvr)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::archive::Location;

    fn seg(pdt: i64, dur: u32, session: i64, msn: u64) -> ArchivedSegment {
        ArchivedSegment {
            name: SegmentName {
                pdt_ms: pdt,
                duration_ms: dur,
                dts_ms: 0,
                session,
                msn,
                init: 0,
                discontinuity: false,
                provisional: None,
            },
            size: 1,
            location: Location::Local,
        }
    }

    #[test]
    fn gaps_and_sessions_are_marked() {
        let segs = [
            seg(1_000_000, 2000, 1, 0),
            seg(1_002_000, 2000, 1, 1),
            // 10 s hole
            seg(1_014_000, 2000, 1, 2),
            // new session
            seg(1_016_000, 2000, 2, 0),
        ];
        let p = render_range(&segs, RangeKind::Vod, 2000, 1000, Some("tok"));
        assert_eq!(p.matches("#EXT-X-DISCONTINUITY\n").count(), 2, "{p}");
        assert_eq!(p.matches("#EXT-X-MAP").count(), 2);
        assert_eq!(p.matches("#EXT-X-PROGRAM-DATE-TIME:").count(), 4);
        assert!(p.contains("#EXT-X-PROGRAM-DATE-TIME:1970-01-01T00:16:40.000Z\n"));
        assert!(p.contains("dvr-s1002000_2000_0_1_1_0_c.m4s?token=tok\n"));
        assert!(p.contains("#EXT-X-MAP:URI=\"dvr-i2_0.mp4?token=tok\"\n"));
        assert!(p.ends_with("#EXT-X-ENDLIST\n"));
        let e = render_range(&segs, RangeKind::Event { ended: false }, 2000, 1000, None);
        assert!(e.contains("#EXT-X-PLAYLIST-TYPE:EVENT"));
        assert!(!e.contains("ENDLIST"));
    }

    #[test]
    fn rewind_prepends_the_consecutive_archived_run() {
        let live = "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:10\n\
                    #EXT-X-DISCONTINUITY-SEQUENCE:1\n#EXT-X-INDEPENDENT-SEGMENTS\n\
                    #EXT-X-MAP:URI=\"init-0.mp4\"\n#EXT-X-PROGRAM-DATE-TIME:x\n#EXTINF:2.000,\nseg-10.m4s\n";
        let mut archived: Vec<ArchivedSegment> = (5..=11)
            .map(|m| seg(1_000_000 + m as i64 * 2000, 2000, 7, m))
            .collect();
        archived.remove(1); // msn 6 missing: the run is 7..=9
        archived[2].name.discontinuity = true; // msn 8
        let out = splice_rewind(live, &archived, Some("t")).unwrap();
        assert!(out.contains("#EXT-X-MEDIA-SEQUENCE:7\n"), "{out}");
        assert!(out.contains("#EXT-X-DISCONTINUITY-SEQUENCE:0\n"), "{out}");
        let segs: Vec<&str> = out.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(segs.len(), 4);
        assert!(segs[0].starts_with("dvr-s1014000_2000_0_7_7_0_c.m4s?token=t"));
        assert_eq!(segs[3], "seg-10.m4s");
        assert_eq!(out.matches("#EXT-X-DISCONTINUITY\n").count(), 1);
        assert!(splice_rewind(live, &archived[..1], None).is_none());
    }

    #[test]
    fn file_names_parse_strictly() {
        assert_eq!(
            parse_dvr_file("index-1700000000-60.m3u8"),
            Ok(DvrFile::Range {
                from: 1_700_000_000,
                seconds: 60
            })
        );
        assert_eq!(
            parse_dvr_file("index-1700000000-now.m3u8"),
            Ok(DvrFile::FromNow {
                from: 1_700_000_000
            })
        );
        assert_eq!(
            parse_dvr_file("archive-1700000000-30.mp4"),
            Ok(DvrFile::Mp4 {
                from: 1_700_000_000,
                seconds: 30
            })
        );
        assert_eq!(parse_dvr_file("index.m3u8"), Err(DvrFileError::NotDvr));
        assert_eq!(parse_dvr_file("seg-1.m4s"), Err(DvrFileError::NotDvr));
        for bad in [
            "index-x-60.m3u8",
            "index-1700000000--60.m3u8",
            "index-1700000000-0.m3u8",
            "index-1700000000-86401.m3u8",
            "index-1700000000-99999999999999999999.m3u8",
            "index--1-60.m3u8",
            "index-1700000000.m3u8",
            "archive-1700000000-now.mp4",
            "dvr-../../etc/passwd",
            "dvr-s1_2_3_4_5_6_c.m4s.tmp",
        ] {
            assert!(
                matches!(parse_dvr_file(bad), Err(DvrFileError::Bad(_))),
                "{bad}"
            );
        }
    }
}
