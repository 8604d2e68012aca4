//! Exact-integer media time.
//!
//! Every timestamp in the media path is an integer count of ticks of a
//! [`Timescale`] (ticks per second). Converting between timescales is exact
//! integer arithmetic in `i128` with round-half-away-from-zero; there are no
//! floats anywhere in the media path.

use std::cmp::Ordering;
use std::fmt;
use std::num::NonZeroU32;

/// Ticks per second of a clock (1 000 for RTMP, 90 000 for MPEG-TS video, the
/// sample rate for audio).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timescale(NonZeroU32);

impl Timescale {
    /// Milliseconds: the RTMP/FLV clock.
    pub const MILLIS: Timescale = Timescale(NonZeroU32::new(1_000).expect("non-zero"));
    /// Microseconds.
    pub const MICROS: Timescale = Timescale(NonZeroU32::new(1_000_000).expect("non-zero"));
    /// The MPEG-TS / RTP video clock.
    pub const MPEG: Timescale = Timescale(NonZeroU32::new(90_000).expect("non-zero"));

    /// A timescale of `ticks_per_second`; `None` for zero.
    pub const fn new(ticks_per_second: u32) -> Option<Self> {
        match NonZeroU32::new(ticks_per_second) {
            Some(n) => Some(Timescale(n)),
            None => None,
        }
    }

    /// Ticks per second.
    pub const fn get(self) -> u32 {
        self.0.get()
    }
}

impl fmt::Debug for Timescale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/s", self.0)
    }
}

/// Rescales `ticks` from timescale `from` to timescale `to`, rounding to the
/// nearest tick (halves away from zero). Saturates at the `i64` range, which
/// at 90 kHz is about 3 million years.
pub fn rescale(ticks: i64, from: Timescale, to: Timescale) -> i64 {
    if from == to {
        return ticks;
    }
    let num = i128::from(ticks) * i128::from(to.get());
    let den = i128::from(from.get());
    let half = den / 2;
    let q = if num >= 0 {
        (num + half) / den
    } else {
        (num - half) / den
    };
    i64::try_from(q).unwrap_or(if q < 0 { i64::MIN } else { i64::MAX })
}

/// A point (or span) on a media clock: `ticks / timescale` seconds.
#[derive(Clone, Copy)]
pub struct MediaTime {
    /// Tick count.
    pub ticks: i64,
    /// Ticks per second.
    pub timescale: Timescale,
}

impl MediaTime {
    /// `ticks` at `timescale`.
    pub const fn new(ticks: i64, timescale: Timescale) -> Self {
        MediaTime { ticks, timescale }
    }

    /// Zero at `timescale`.
    pub const fn zero(timescale: Timescale) -> Self {
        MediaTime::new(0, timescale)
    }

    /// Whole milliseconds.
    pub const fn from_millis(ms: i64) -> Self {
        MediaTime::new(ms, Timescale::MILLIS)
    }

    /// This time expressed at another timescale (rounded to the nearest tick).
    pub fn rescale(self, to: Timescale) -> MediaTime {
        MediaTime::new(rescale(self.ticks, self.timescale, to), to)
    }

    /// Ticks of this time at `to`.
    pub fn ticks_at(self, to: Timescale) -> i64 {
        rescale(self.ticks, self.timescale, to)
    }

    /// Whole milliseconds (rounded).
    pub fn as_millis(self) -> i64 {
        self.ticks_at(Timescale::MILLIS)
    }

    /// Whole microseconds (rounded).
    pub fn as_micros(self) -> i64 {
        self.ticks_at(Timescale::MICROS)
    }

    /// Sum, in the timescale of `self` (`other` is rescaled).
    pub fn saturating_add(self, other: MediaTime) -> MediaTime {
        MediaTime::new(
            self.ticks.saturating_add(other.ticks_at(self.timescale)),
            self.timescale,
        )
    }

    /// Difference, in the timescale of `self` (`other` is rescaled).
    pub fn saturating_sub(self, other: MediaTime) -> MediaTime {
        MediaTime::new(
            self.ticks.saturating_sub(other.ticks_at(self.timescale)),
            self.timescale,
        )
    }
}

impl PartialEq for MediaTime {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for MediaTime {}
impl PartialOrd for MediaTime {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for MediaTime {
    /// Exact comparison across timescales (cross-multiplied in `i128`).
    fn cmp(&self, other: &Self) -> Ordering {
        let a = i128::from(self.ticks) * i128::from(other.timescale.get());
        let b = i128::from(other.ticks) * i128::from(self.timescale.get());
        a.cmp(&b)
    }
}

impl fmt::Debug for MediaTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.ticks, self.timescale.get())
    }
}

/// Widens a wrapping 32-bit wire clock (RTMP timestamps, MPEG-TS 33-bit PTS
/// reduced to 32 bits) into a monotonic-ish `i64` by tracking wraps: each new
/// value is taken as the candidate closest to the previous one, so one step
/// moves by at most 2^31 either way.
///
/// The wire values come from the peer, so the arithmetic saturates at the
/// `i64` range instead of overflowing: a peer would need about 2^32
/// maximal steps in one direction to get there, and from then on the output
/// stays pinned at the bound (it no longer matches the wire modulo 2^32).
#[derive(Debug, Clone, Default)]
pub struct Unwrapper32 {
    last: Option<i64>,
}

impl Unwrapper32 {
    /// A fresh unwrapper; the first value is taken as is.
    pub fn new() -> Self {
        Self::default()
    }

    /// An unwrapper that continues from `last`, as if its previous
    /// [`unwrap`](Self::unwrap) had returned it (to resume a clock, or to
    /// test behaviour near the `i64` bounds).
    pub fn continuing_from(last: i64) -> Self {
        Unwrapper32 { last: Some(last) }
    }

    /// The widened value of `wire`.
    pub fn unwrap(&mut self, wire: u32) -> i64 {
        let v = match self.last {
            None => i64::from(wire),
            Some(last) => {
                // The low 32 bits of `last` (two's complement, so this is
                // `last mod 2^32` for negative values too).
                let low = last as u32;
                // The shorter way round the 2^32 circle from `low` to
                // `wire`, in -2^31..2^31 (an exact half turn goes back).
                let step = i64::from(wire.wrapping_sub(low) as i32);
                last.saturating_add(step)
            }
        };
        self.last = Some(v);
        v
    }
}

/// A rational number (frame rates such as 30000/1001).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rational {
    /// Numerator.
    pub num: u32,
    /// Denominator (never zero for a valid rate).
    pub den: u32,
}

impl Rational {
    /// `num/den`.
    pub const fn new(num: u32, den: u32) -> Self {
        Rational { num, den }
    }

    /// The value with three decimals, as HLS `FRAME-RATE` wants it, computed in
    /// integers: `"29.970"`. `None` when `den` is zero.
    pub fn to_decimal_3(self) -> Option<String> {
        if self.den == 0 {
            return None;
        }
        let milli = (u64::from(self.num) * 1000 + u64::from(self.den) / 2) / u64::from(self.den);
        Some(format!("{}.{:03}", milli / 1000, milli % 1000))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rescale_rounds_to_nearest() {
        let ms = Timescale::MILLIS;
        let mpeg = Timescale::MPEG;
        assert_eq!(rescale(1, ms, mpeg), 90);
        assert_eq!(rescale(45, mpeg, ms), 1); // 0.5 ms rounds away from zero
        assert_eq!(rescale(-45, mpeg, ms), -1);
        assert_eq!(rescale(44, mpeg, ms), 0);
        let a48 = Timescale::new(48_000).unwrap();
        assert_eq!(rescale(1024, a48, mpeg), 1920);
    }

    #[test]
    fn rescale_saturates() {
        let one = Timescale::new(1).unwrap();
        assert_eq!(rescale(i64::MAX, one, Timescale::MPEG), i64::MAX);
        assert_eq!(rescale(i64::MIN, one, Timescale::MPEG), i64::MIN);
    }

    #[test]
    fn compare_across_timescales() {
        assert_eq!(
            MediaTime::from_millis(1000),
            MediaTime::new(90_000, Timescale::MPEG)
        );
        assert!(MediaTime::from_millis(999) < MediaTime::new(90_000, Timescale::MPEG));
    }

    #[test]
    fn unwrap_handles_wrap_forward_and_back() {
        let mut u = Unwrapper32::new();
        assert_eq!(u.unwrap(u32::MAX - 10), i64::from(u32::MAX - 10));
        assert_eq!(u.unwrap(5), (1i64 << 32) + 5);
        // A small step back across the wrap goes back below 2^32.
        assert_eq!(u.unwrap(u32::MAX), i64::from(u32::MAX));
        assert_eq!(u.unwrap(20), (1i64 << 32) + 20);
    }

    #[test]
    fn frame_rate_decimal() {
        assert_eq!(Rational::new(30000, 1001).to_decimal_3().unwrap(), "29.970");
        assert_eq!(Rational::new(30, 1).to_decimal_3().unwrap(), "30.000");
        assert_eq!(Rational::new(30, 0).to_decimal_3(), None);
    }

    #[test]
    fn unwrap_saturates_at_the_i64_bounds() {
        // Near i64::MIN the old window arithmetic (`base - 2^32`) overflowed.
        let mut u = Unwrapper32::continuing_from(i64::MIN + 5);
        assert_eq!(u.unwrap(5u32.wrapping_add(1 << 31)), i64::MIN);
        assert_eq!(u.unwrap(0), i64::MIN);
        let mut u = Unwrapper32::continuing_from(i64::MAX - 5);
        assert_eq!(
            u.unwrap(((i64::MAX - 5) as u32).wrapping_add(0x7fff_ffff)),
            i64::MAX
        );
        assert_eq!(u.unwrap(u32::MAX), i64::MAX);
    }

    #[test]
    fn unwrap_half_turn_goes_back() {
        let mut u = Unwrapper32::continuing_from(1 << 40);
        assert_eq!(u.unwrap(1 << 31), (1i64 << 40) - (1 << 31));
    }

    proptest! {
        /// Arbitrary wire values from an arbitrary starting point (the peer
        /// controls both): never panics (overflow checks are on in tests),
        /// every step is the shortest way round the 32-bit circle, and until
        /// it saturates the output matches the wire modulo 2^32.
        #[test]
        fn unwrap_arbitrary_sequences_are_sane(
            start in prop_oneof![any::<i64>(), Just(i64::MIN), Just(i64::MAX), Just(0i64)],
            wires in proptest::collection::vec(any::<u32>(), 0..64),
        ) {
            let mut u = Unwrapper32::continuing_from(start);
            let mut prev = start;
            for w in wires {
                let v = u.unwrap(w);
                let step = i128::from(v) - i128::from(prev);
                prop_assert!((-(1i128 << 31)..(1i128 << 31)).contains(&step), "{prev} -> {v}");
                if v != i64::MIN && v != i64::MAX {
                    prop_assert_eq!(v as u32, w);
                }
                prev = v;
            }
        }

        /// From a fresh start, steps forward only (as a well-behaved peer
        /// sends): the output is monotonic.
        #[test]
        fn unwrap_forward_steps_are_monotonic(
            first in any::<u32>(),
            steps in proptest::collection::vec(0u32..(1 << 31), 0..64),
        ) {
            let mut u = Unwrapper32::new();
            let mut wire = first;
            let mut prev = u.unwrap(wire);
            for s in steps {
                wire = wire.wrapping_add(s);
                let v = u.unwrap(wire);
                prop_assert!(v >= prev);
                prev = v;
            }
        }

        #[test]
        fn rescale_round_trip_is_exact_when_target_is_finer(t in -1_000_000_000i64..1_000_000_000) {
            let ms = Timescale::MILLIS;
            let mpeg = Timescale::MPEG;
            prop_assert_eq!(rescale(rescale(t, ms, mpeg), mpeg, ms), t);
        }

        #[test]
        fn unwrap_is_continuous_for_small_steps(start in any::<u32>(), steps in proptest::collection::vec(0u32..1_000_000, 1..50)) {
            let mut u = Unwrapper32::new();
            let mut wire = start;
            let mut prev = u.unwrap(wire);
            for s in steps {
                wire = wire.wrapping_add(s);
                let v = u.unwrap(wire);
                prop_assert_eq!(v - prev, i64::from(s));
                prev = v;
            }
        }
    }
}
