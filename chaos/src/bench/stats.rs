//! Latency and throughput summaries (pure).

use std::fmt;
use std::time::Duration;

use serde::Serialize;

/// What one benchmark measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub name: String,
    pub ops: u64,
    pub errors: u64,
    pub seconds: f64,
    pub throughput: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// The value below which `fraction` of the sorted samples fall (nearest rank).
fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (fraction * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

pub fn summarize(
    name: &str,
    mut latencies: Vec<Duration>,
    errors: u64,
    elapsed: Duration,
) -> Summary {
    latencies.sort_unstable();
    let ops = latencies.len() as u64;
    let seconds = elapsed.as_secs_f64();
    Summary {
        name: name.into(),
        ops,
        errors,
        seconds,
        throughput: if seconds > 0.0 {
            ops as f64 / seconds
        } else {
            0.0
        },
        p50_ms: ms(percentile(&latencies, 0.50)),
        p90_ms: ms(percentile(&latencies, 0.90)),
        p99_ms: ms(percentile(&latencies, 0.99)),
        max_ms: ms(latencies.last().copied().unwrap_or_default()),
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} ops in {:.2} s = {:.0} ops/s, latency p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {} errors",
            self.name, self.ops, self.seconds, self.throughput, self.p50_ms, self.p90_ms, self.p99_ms, self.max_ms, self.errors
        )
    }
}

/// The least, the median and the greatest of `values` (zeros when there are none).
pub fn min_median_max(values: &[f64]) -> (f64, f64, f64) {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    (
        sorted.first().copied().unwrap_or(0.0),
        sorted.get(sorted.len() / 2).copied().unwrap_or(0.0),
        sorted.last().copied().unwrap_or(0.0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        let summary = summarize("put", samples, 2, Duration::from_secs(2));
        assert_eq!(
            (
                summary.p50_ms,
                summary.p90_ms,
                summary.p99_ms,
                summary.max_ms
            ),
            (50.0, 90.0, 99.0, 100.0)
        );
        assert_eq!(
            (summary.ops, summary.errors, summary.throughput),
            (100, 2, 50.0)
        );
    }

    #[test]
    fn an_empty_run_reports_zeroes() {
        let summary = summarize("none", Vec::new(), 0, Duration::ZERO);
        assert_eq!(
            (summary.ops, summary.throughput, summary.max_ms),
            (0, 0.0, 0.0)
        );
    }
}
