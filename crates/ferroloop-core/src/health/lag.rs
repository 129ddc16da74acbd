//! A fixed-memory log-linear histogram of durations in microseconds.
//!
//! The bucket layout is HdrHistogram's (Gil Tene, "HdrHistogram: a High
//! Dynamic Range Histogram", hdrhistogram.org) with 16 linear sub-buckets per
//! power of two: values below 16 µs have one bucket each; a value `v >= 16`
//! with top bit `e` falls in sub-bucket `(v >> (e - 4)) - 16` of range `e`.
//! A bucket's width is at most 1/16 of its lower bound, so a reported
//! percentile is within 6.25 % above the true one. Ranges go up to 2^26 µs
//! (about 67 s); longer values land in the last bucket, and `max` stays exact.
//!
//! Invariants: `total` is the sum of `counts`; `max` is the largest value
//! recorded (0 when empty).

const SUB_BITS: u32 = 4;
const SUB: usize = 1 << SUB_BITS;
/// Ranges `[2^e, 2^(e+1))` for `e` in 4..=25, after the 16 linear buckets.
const BUCKETS: usize = (26 - SUB_BITS as usize + 1) * SUB;

/// Log-linear histogram of microsecond values; see the module docs.
#[derive(Clone)]
pub struct LagHistogram {
    counts: [u64; BUCKETS],
    total: u64,
    max: u64,
}

impl Default for LagHistogram {
    fn default() -> Self {
        Self { counts: [0; BUCKETS], total: 0, max: 0 }
    }
}

fn index(us: u64) -> usize {
    if us < SUB as u64 {
        // Below 16: the value is its own index.
        return usize::try_from(us).unwrap_or(0);
    }
    let e = us.ilog2();
    let shift = e - SUB_BITS;
    let sub = usize::try_from(us >> shift).unwrap_or(SUB) - SUB;
    ((shift as usize + 1) * SUB + sub).min(BUCKETS - 1)
}

/// The largest value that lands in bucket `idx`.
fn upper(idx: usize) -> u64 {
    if idx < SUB {
        return idx as u64;
    }
    let shift = idx / SUB - 1;
    let m = (idx % SUB + SUB) as u64;
    ((m + 1) << shift) - 1
}

impl LagHistogram {
    /// Records `n` occurrences of `us` microseconds.
    #[inline]
    pub fn record_n(&mut self, us: u64, n: u64) {
        self.counts[index(us)] += n;
        self.total += n;
        self.max = self.max.max(us);
    }

    /// Records one duration given in seconds; negative and NaN count as 0.
    #[inline]
    pub fn record_secs(&mut self, seconds: f64, n: u64) {
        self.record_n(secs_to_us(seconds), n);
    }

    /// How many values were recorded.
    #[must_use]
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The largest value recorded, in microseconds (0 when empty).
    #[must_use]
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The value at quantile `q` (0.0..=1.0) in microseconds: the upper bound
    /// of the bucket holding that rank, capped at `max`; 0 when empty.
    #[must_use]
    pub fn percentile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let q = if q.is_nan() { 1.0 } else { q.clamp(0.0, 1.0) };
        // Rank of the value at q, 1-based: at least 1, at most total.
        #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (idx, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return upper(idx).min(self.max);
            }
        }
        self.max
    }

    /// How many values lie in buckets wholly at or below `us` microseconds:
    /// a Prometheus `le` bucket's count, exact at bucket boundaries and
    /// otherwise short of the bucket `us` falls in.
    #[must_use]
    pub fn count_at_most(&self, us: u64) -> u64 {
        if us >= self.max {
            return self.total;
        }
        self.counts.iter().enumerate().take_while(|&(i, _)| upper(i) <= us).map(|(_, &c)| c).sum()
    }

    /// An estimate of the sum of the values, in microseconds: each bucket's
    /// count times its middle (capped at `max`), within 3.2 % of the truth.
    #[must_use]
    pub fn sum_estimate(&self) -> u64 {
        let mut sum = 0u64;
        for (i, &c) in self.counts.iter().enumerate().filter(|&(_, &c)| c > 0) {
            let lower = if i == 0 { 0 } else { upper(i - 1) + 1 };
            let mid = u64::midpoint(lower, upper(i).min(self.max));
            sum = sum.saturating_add(mid.saturating_mul(c));
        }
        sum
    }

    /// What was recorded since `earlier` (a copy of this histogram taken
    /// before). `max` of the difference is the upper bound of its highest
    /// non-empty bucket (capped at this histogram's `max`): exact maxima of
    /// a window are not kept.
    #[must_use]
    pub fn since(&self, earlier: &Self) -> Self {
        let mut out = Self::default();
        for (i, (now, then)) in self.counts.iter().zip(earlier.counts.iter()).enumerate() {
            let c = now.saturating_sub(*then);
            out.counts[i] = c;
            out.total += c;
            if c > 0 {
                out.max = upper(i).min(self.max);
            }
        }
        out
    }
}

/// Seconds to whole microseconds, saturating; negative and NaN give 0.
#[must_use]
fn secs_to_us(seconds: f64) -> u64 {
    if seconds > 0.0 {
        // `as` saturates for floats: +inf gives u64::MAX.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let us = (seconds * 1e6) as u64;
        us
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_counts_and_sum() {
        let mut h = LagHistogram::default();
        for v in [3, 10, 100, 1000, 1000] {
            h.record_n(v, 1);
        }
        assert_eq!(h.count_at_most(2), 0);
        assert_eq!(h.count_at_most(3), 1);
        assert_eq!(h.count_at_most(15), 2);
        assert_eq!(h.count_at_most(1000), 5);
        assert_eq!(h.count_at_most(u64::MAX), 5);
        let sum = h.sum_estimate();
        assert!((2000..=2200).contains(&sum), "{sum}");
        assert_eq!(LagHistogram::default().sum_estimate(), 0);
    }

    #[test]
    fn small_values_are_exact() {
        let mut h = LagHistogram::default();
        for v in 0..16 {
            h.record_n(v, 1);
        }
        assert_eq!(h.count(), 16);
        assert_eq!(h.percentile(0.5), 7);
        assert_eq!(h.percentile(1.0), 15);
        assert_eq!(h.max(), 15);
    }

    #[test]
    fn buckets_are_contiguous_and_within_one_sixteenth() {
        let mut prev = 0;
        for v in 1..200_000u64 {
            let i = index(v);
            assert!(i == prev || i == prev + 1, "gap at {v}");
            prev = i;
            let up = upper(i);
            assert!(up >= v);
            assert!(up - v <= v / 16, "{v} -> {up}");
        }
    }

    #[test]
    fn percentiles_of_a_uniform_range() {
        let mut h = LagHistogram::default();
        for v in 1..=10_000 {
            h.record_n(v, 1);
        }
        for (q, want) in [(0.5, 5_000u64), (0.9, 9_000), (0.99, 9_900)] {
            let got = h.percentile(q);
            assert!(got >= want && got <= want + want / 16, "p{q}: {got}");
        }
        assert_eq!(h.percentile(1.0), 10_000);
        assert_eq!(h.max(), 10_000);
    }

    #[test]
    fn huge_values_clamp_to_the_last_bucket() {
        let mut h = LagHistogram::default();
        h.record_n(u64::MAX, 1);
        h.record_secs(f64::INFINITY, 1);
        assert_eq!(h.count(), 2);
        assert_eq!(h.max(), u64::MAX);
        assert_eq!(h.percentile(0.5), upper(BUCKETS - 1));
    }

    #[test]
    fn seconds_convert_and_bad_values_are_zero() {
        assert_eq!(secs_to_us(0.25), 250_000);
        assert_eq!(secs_to_us(-1.0), 0);
        assert_eq!(secs_to_us(f64::NAN), 0);
    }

    #[test]
    fn since_keeps_only_new_values() {
        let mut h = LagHistogram::default();
        h.record_n(10, 5);
        let before = h.clone();
        h.record_n(1_000, 3);
        let d = h.since(&before);
        assert_eq!(d.count(), 3);
        assert!(d.percentile(0.0) >= 1_000);
        assert!(d.max() >= 1_000 && d.max() <= 1_000 + 1_000 / 16);
        assert_eq!(h.since(&h.clone()).count(), 0);
    }

    #[test]
    fn empty_histogram_reports_zero() {
        let h = LagHistogram::default();
        assert_eq!(h.percentile(0.99), 0);
        assert_eq!(h.max(), 0);
    }
}
