//! Percentiles of latency samples and throughput figures.

use std::time::Duration;

/// Latency samples of one measurement, sorted.
#[derive(Debug, Clone, PartialEq)]
pub struct Samples(Vec<Duration>);

impl Samples {
    /// Sorts `v`; `None` when it is empty (nothing was measured).
    pub fn new(mut v: Vec<Duration>) -> Option<Self> {
        if v.is_empty() {
            return None;
        }
        v.sort();
        Some(Self(v))
    }

    /// From nanosecond counts, as the probe reports them.
    pub fn from_nanos(v: &[u64]) -> Option<Self> {
        Self::new(v.iter().copied().map(Duration::from_nanos).collect())
    }

    /// The `q` quantile (0.0..=1.0), nearest rank.
    pub fn quantile(&self, q: f64) -> Duration {
        let n = self.0.len();
        let rank = (q.clamp(0.0, 1.0) * (n - 1) as f64).round() as usize;
        self.0[rank.min(n - 1)]
    }

    /// The median.
    pub fn p50(&self) -> Duration {
        self.quantile(0.5)
    }

    /// The 90th percentile.
    pub fn p90(&self) -> Duration {
        self.quantile(0.9)
    }

    /// How many samples.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Never true: a `Samples` has at least one sample.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Adds the samples of `other`.
    pub fn merge(&mut self, other: Samples) {
        self.0.extend(other.0);
        self.0.sort();
    }
}

/// Bytes moved in a time, as MB/s (10^6 bytes per second).
pub fn mb_per_s(bytes: u64, secs: f64) -> f64 {
    if secs <= 0.0 {
        return f64::INFINITY;
    }
    bytes as f64 / secs / 1e6
}

/// The median of a few figures (throughput rounds); `None` when empty.
pub fn median(v: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

/// A duration for tables: `812 us`, `3.42 ms`, `1.20 s`.
pub fn fmt_duration(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1000.0 {
        format!("{us:.0} us")
    } else if us < 1e6 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let s = Samples::from_nanos(&[5, 1, 4, 2, 3]).unwrap();
        assert_eq!(s.p50(), Duration::from_nanos(3));
        assert_eq!(s.quantile(0.0), Duration::from_nanos(1));
        assert_eq!(s.quantile(1.0), Duration::from_nanos(5));
        assert!(Samples::from_nanos(&[]).is_none());
    }

    #[test]
    fn median_skips_non_finite_figures() {
        assert_eq!(median(&[3.0, f64::INFINITY, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn durations_print_in_a_readable_unit() {
        assert_eq!(fmt_duration(Duration::from_micros(812)), "812 us");
        assert_eq!(fmt_duration(Duration::from_micros(3420)), "3.42 ms");
        assert_eq!(fmt_duration(Duration::from_millis(1200)), "1.20 s");
    }
}
