//! A latency histogram that many tasks record into at once without a lock: log-linear buckets
//! (16 per power of two, so any percentile read from it is within 1/16 of the true value), in
//! microseconds, with the exact maximum kept beside them.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use serde::Serialize;

/// Values below this are their own bucket.
const LINEAR: u64 = 32;
const SUB_BITS: u32 = 4;
/// Exponents 5 to 63, 16 buckets each, after the linear ones.
const BUCKETS: usize = LINEAR as usize + 59 * (1 << SUB_BITS);

pub struct Histogram {
    counts: Vec<AtomicU64>,
    max: AtomicU64,
    sum: AtomicU64,
}

/// One bucket as reported: `[from_us, to_us)` and how many values fell in it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Bucket {
    pub from_us: u64,
    pub to_us: u64,
    pub count: u64,
}

/// The summary a report shows, in milliseconds.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

fn index(us: u64) -> usize {
    if us < LINEAR {
        return us as usize;
    }
    let exp = 63 - us.leading_zeros();
    let sub = (us >> (exp - SUB_BITS)) & ((1 << SUB_BITS) - 1);
    (LINEAR + u64::from(exp - 5) * (1 << SUB_BITS) + sub) as usize
}

/// `[from, to)` of bucket `i`.
fn bounds(i: usize) -> (u64, u64) {
    let i = i as u64;
    if i < LINEAR {
        return (i, i + 1);
    }
    let exp = (i - LINEAR) / (1 << SUB_BITS) + 5;
    let sub = (i - LINEAR) % (1 << SUB_BITS);
    let step = 1u64 << (exp - u64::from(SUB_BITS));
    let from = (1u64 << exp) + sub * step;
    (from, from.saturating_add(step))
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            max: AtomicU64::new(0),
            sum: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    pub fn record(&self, d: Duration) {
        self.record_us(d.as_micros().min(u128::from(u64::MAX)) as u64);
    }

    pub fn record_us(&self, us: u64) {
        self.counts[index(us)].fetch_add(1, Relaxed);
        self.max.fetch_max(us, Relaxed);
        self.sum.fetch_add(us, Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Relaxed)).sum()
    }

    /// The non-empty buckets, lowest first.
    pub fn buckets(&self) -> Vec<Bucket> {
        self.counts
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let count = c.load(Relaxed);
                let (from_us, to_us) = bounds(i);
                (count > 0).then_some(Bucket {
                    from_us,
                    to_us,
                    count,
                })
            })
            .collect()
    }

    /// The value at quantile `q` (0–1): the upper bound of its bucket, never above the maximum.
    fn quantile_us(&self, q: f64) -> u64 {
        let total = self.count();
        if total == 0 {
            return 0;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c.load(Relaxed);
            if seen >= rank {
                return (bounds(i).1 - 1).min(self.max.load(Relaxed));
            }
        }
        self.max.load(Relaxed)
    }

    pub fn percentiles(&self) -> Percentiles {
        let count = self.count();
        let ms = |us: u64| us as f64 / 1000.0;
        Percentiles {
            count,
            mean_ms: if count == 0 {
                0.0
            } else {
                self.sum.load(Relaxed) as f64 / count as f64 / 1000.0
            },
            p50_ms: ms(self.quantile_us(0.50)),
            p90_ms: ms(self.quantile_us(0.90)),
            p99_ms: ms(self.quantile_us(0.99)),
            max_ms: ms(self.max.load(Relaxed)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_falls_in_the_bucket_that_bounds_it() {
        for us in (0..5_000u64).chain([31, 32, 33, 1 << 20, (1 << 20) + 1, u64::MAX / 3, u64::MAX])
        {
            let i = index(us);
            assert!(i < BUCKETS, "{us}");
            let (from, to) = bounds(i);
            assert!(
                from <= us && (us < to || to == u64::MAX),
                "{us} in [{from}, {to})"
            );
        }
    }

    #[test]
    fn buckets_are_within_a_sixteenth_of_their_values() {
        for i in LINEAR as usize..BUCKETS - 16 {
            let (from, to) = bounds(i);
            if from == 0 {
                continue;
            }
            assert!((to - from) * 16 <= from, "bucket {i}: [{from}, {to})");
        }
    }

    #[test]
    fn percentiles_of_a_known_spread() {
        let h = Histogram::default();
        for ms in 1..=1000u64 {
            h.record(Duration::from_millis(ms));
        }
        let p = h.percentiles();
        assert_eq!(p.count, 1000);
        let near = |got: f64, want: f64| (got - want).abs() <= want / 16.0;
        assert!(near(p.p50_ms, 500.0), "{p:?}");
        assert!(near(p.p90_ms, 900.0), "{p:?}");
        assert!(near(p.p99_ms, 990.0), "{p:?}");
        assert_eq!(p.max_ms, 1000.0);
        assert!((p.mean_ms - 500.5).abs() < 0.01, "{p:?}");
        assert_eq!(h.buckets().iter().map(|b| b.count).sum::<u64>(), 1000);
    }

    #[test]
    fn an_empty_histogram_reports_zeros() {
        assert_eq!(Histogram::default().percentiles(), Percentiles::default());
        assert!(Histogram::default().buckets().is_empty());
    }
}
