//! File names of the archive. The names carry the whole time index, so the
//! index is rebuilt from a directory listing and a file is either complete
//! (renamed into place after `fsync`) or absent.
//!
//! * segment: `s<pdt_ms>_<duration_ms>_<dts_ms>_<session>_<msn>_<init>_<c|d>[p<digest>].m4s`
//!   (`d`: a discontinuity precedes it; `p`: provisional, with the first 8
//!   bytes of the file's SHA-256 in 16 lowercase hex digits, see
//!   [`SegmentName::provisional`])
//! * init segment: `i<session>_<n>.mp4`
//! * in progress: anything ending in `.tmp` (deleted on start)

/// The index fields of one archived segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SegmentName {
    /// Wall clock of its first frame, unix milliseconds.
    pub pdt_ms: i64,
    /// Duration in milliseconds.
    pub duration_ms: u32,
    /// Media (decode) time of its first frame, milliseconds.
    pub dts_ms: i64,
    /// The recording session (one per Hub stream life): its start, unix ms.
    pub session: i64,
    /// Media sequence number within the session.
    pub msn: u64,
    /// The init segment number within the session.
    pub init: u32,
    /// A discontinuity precedes it.
    pub discontinuity: bool,
    /// `Some(digest)`: cut before the segmenter had seen enough of the
    /// stream to cut it as every origin does (an aligned segmenter's
    /// held-back first segments: a stream's first seconds, an origin's
    /// first seconds after a restart mid-event), so another origin may
    /// hold other bytes for the same time. `digest` is the first 8 bytes
    /// of the file's SHA-256 (big-endian): [`Self::provisional_beats`]
    /// orders two provisional copies alike at every origin. Replication
    /// replaces a provisional segment by a peer's copy of the same time
    /// that is not provisional, or that beats it.
    pub provisional: Option<u64>,
}

impl SegmentName {
    /// The file name.
    pub fn file_name(&self) -> String {
        format!(
            "s{}_{}_{}_{}_{}_{}_{}{}.m4s",
            self.pdt_ms,
            self.duration_ms,
            self.dts_ms,
            self.session,
            self.msn,
            self.init,
            if self.discontinuity { 'd' } else { 'c' },
            match self.provisional {
                Some(d) => format!("p{d:016x}"),
                None => String::new(),
            }
        )
    }

    /// Parses a file name made by [`Self::file_name`]; anything else is `None`.
    pub fn parse(name: &str) -> Option<SegmentName> {
        let body = name.strip_prefix('s')?.strip_suffix(".m4s")?;
        if body.len() > 128 {
            return None;
        }
        let mut it = body.split('_');
        let pdt_ms = int(it.next()?)?;
        let duration_ms = uint(it.next()?)?;
        let dts_ms = int(it.next()?)?;
        let session = int(it.next()?)?;
        let msn = uint(it.next()?)?;
        let init = uint(it.next()?)?;
        let last = it.next()?;
        let (discontinuity, rest) = match last.split_at_checked(1)? {
            ("c", rest) => (false, rest),
            ("d", rest) => (true, rest),
            _ => return None,
        };
        let provisional = match rest {
            "" => None,
            r => {
                let hex = r.strip_prefix('p')?;
                if hex.len() != 16 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                    return None;
                }
                Some(u64::from_str_radix(hex, 16).ok()?)
            }
        };
        if it.next().is_some() {
            return None;
        }
        let n = SegmentName {
            pdt_ms,
            duration_ms,
            dts_ms,
            session,
            msn,
            init,
            discontinuity,
            provisional,
        };
        // Canonical spelling only (no leading zeros or '+'), so one segment
        // has exactly one name.
        (n.file_name() == name).then_some(n)
    }

    /// End of the segment on the wall clock.
    pub fn end_ms(&self) -> i64 {
        self.pdt_ms.saturating_add(i64::from(self.duration_ms))
    }

    /// The wall-clock middle of the segment (what decides which segment
    /// covers a time).
    pub fn mid_ms(&self) -> i64 {
        self.pdt_ms.saturating_add(i64::from(self.duration_ms / 2))
    }

    /// Whether it is provisional (see [`Self::provisional`]).
    pub fn is_provisional(&self) -> bool {
        self.provisional.is_some()
    }

    /// The same segment as the stream's own copy (not provisional).
    pub fn settled(&self) -> SegmentName {
        SegmentName {
            provisional: None,
            ..*self
        }
    }

    /// Whether this provisional copy of `size` bytes is preferred to
    /// `other` of `other_size` bytes (both provisional, of the same time):
    /// the larger (the segmenter that saw more of the stream), then the
    /// smaller digest. A strict order, the same at every origin, so that
    /// origins holding different provisional copies settle on one.
    pub fn provisional_beats(&self, size: u64, other: &SegmentName, other_size: u64) -> bool {
        match (self.provisional, other.provisional) {
            (Some(a), Some(b)) => (size, std::cmp::Reverse(a)) > (other_size, std::cmp::Reverse(b)),
            _ => false,
        }
    }
}

/// The digest of a provisional segment's bytes (`pieces` in order): the
/// first 8 bytes of their SHA-256, big-endian.
pub fn digest(pieces: &[&[u8]]) -> u64 {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    for p in pieces {
        h.update(p);
    }
    let sum = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&sum[..8]);
    u64::from_be_bytes(first)
}

/// The file name of init segment `n` of `session`.
pub fn init_file_name(session: i64, n: u32) -> String {
    format!("i{session}_{n}.mp4")
}

/// Parses an init segment file name: `(session, n)`.
pub fn parse_init_name(name: &str) -> Option<(i64, u32)> {
    let body = name.strip_prefix('i')?.strip_suffix(".mp4")?;
    let (s, n) = body.split_once('_')?;
    let r = (int(s)?, uint(n)?);
    (init_file_name(r.0, r.1) == name).then_some(r)
}

fn int<T: std::str::FromStr>(s: &str) -> Option<T> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || digits.len() > 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn uint<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_reject_non_canonical() {
        let n = SegmentName {
            pdt_ms: 1_795_681_772_123,
            duration_ms: 2002,
            dts_ms: -40,
            session: 1_795_681_700_000,
            msn: 17,
            init: 1,
            discontinuity: true,
            provisional: None,
        };
        let f = n.file_name();
        assert_eq!(f, "s1795681772123_2002_-40_1795681700000_17_1_d.m4s");
        assert_eq!(SegmentName::parse(&f), Some(n));
        let p = SegmentName {
            provisional: Some(0x00ab_cdef_0123_4567),
            ..n
        };
        assert_eq!(
            p.file_name(),
            "s1795681772123_2002_-40_1795681700000_17_1_dp00abcdef01234567.m4s"
        );
        assert_eq!(SegmentName::parse(&p.file_name()), Some(p));
        assert_eq!(p.settled(), n);
        // Larger first, then the smaller digest; never against a settled one.
        let q = SegmentName {
            provisional: Some(1),
            ..n
        };
        assert!(q.provisional_beats(10, &p, 10));
        assert!(!p.provisional_beats(10, &q, 10));
        assert!(p.provisional_beats(11, &q, 10));
        assert!(!p.provisional_beats(10, &p, 10));
        assert!(!p.provisional_beats(10, &n, 1));
        for bad in [
            "s01_2_3_4_5_6_c.m4s",
            "s1_2_3_4_5_6_x.m4s",
            "s1_2_3_4_5_6_pc.m4s",
            "s1_2_3_4_5_6_cp.m4s",
            "s1_2_3_4_5_6_cp0123.m4s",
            "s1_2_3_4_5_6_cp00ABCDEF01234567.m4s",
            "s1_2_3_4_5_6_cp00abcdef012345678.m4s",
            "s1_2_3_4_5_6_cq00abcdef01234567.m4s",
            "s1_2_3_4_5_6_p.m4s",
            "s1_2_3_4_5_6_c_7.m4s",
            "s1_2_3_4_5_c.m4s",
            "s1_-2_3_4_5_6_c.m4s",
            "s1_2_3_4_5_6_c.m4s.tmp",
            "../s1_2_3_4_5_6_c.m4s",
            "s+1_2_3_4_5_6_c.m4s",
            "s99999999999999999999_2_3_4_5_6_c.m4s",
        ] {
            assert_eq!(SegmentName::parse(bad), None, "{bad}");
        }
        assert_eq!(
            parse_init_name("i1795681700000_3.mp4"),
            Some((1_795_681_700_000, 3))
        );
        assert_eq!(parse_init_name("i1_03.mp4"), None);
        assert_eq!(parse_init_name("i1_3.mp4.tmp"), None);
    }
}
