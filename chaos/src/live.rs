//! What a chaos run has done so far, counted as it goes (by the workloads and the fault
//! injector), for the live progress line a person at a terminal watches.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// The running counts.
#[derive(Debug, Default)]
pub struct Live {
    pub answered: AtomicU64,
    pub unanswered: AtomicU64,
    /// Faults carried out (one that struck two members counts once), of those planned.
    pub faults_done: AtomicUsize,
    pub faults_planned: AtomicUsize,
    /// Changes the pods workload asked of its objects.
    pub pod_changes: AtomicU64,
}

impl Live {
    /// One operation more, answered or not.
    pub fn count(&self, answered: bool) {
        let counter = match answered {
            true => &self.answered,
            false => &self.unanswered,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// One line of where the run is, e.g. `12.0s of 60s · 10,234 operations answered, 3
    /// not · faults 3 of 12 · 14 pod changes`.
    pub fn line(&self, elapsed: Duration, length: Duration) -> String {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let mut line = format!(
            "{:.1}s of {:.0}s · {} operations answered, {} not · faults {} of {}",
            elapsed.as_secs_f64(),
            length.as_secs_f64(),
            thousands(load(&self.answered)),
            thousands(load(&self.unanswered)),
            self.faults_done.load(Ordering::Relaxed),
            self.faults_planned.load(Ordering::Relaxed),
        );
        let changes = load(&self.pod_changes);
        if changes > 0 {
            line.push_str(&format!(" · {changes} pod changes"));
        }
        line
    }
}

/// A spinner on stderr saying [`Live::line`] four times a second while it lives (drawn only
/// on a terminal), with the run's other lines printed above it.
pub struct LiveLine {
    bar: ProgressBar,
    ticker: tokio::task::JoinHandle<()>,
}

impl LiveLine {
    /// Starts showing `live` for a run of `length`; needs a tokio runtime.
    pub fn start(live: Arc<Live>, length: Duration) -> Self {
        let bar = ProgressBar::new_spinner();
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg}") {
            bar.set_style(style);
        }
        let started = Instant::now();
        let ticker = tokio::spawn({
            let bar = bar.clone();
            async move {
                loop {
                    bar.set_message(live.line(started.elapsed(), length));
                    bar.tick();
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        });
        Self { bar, ticker }
    }

    /// Prints `line` (to stderr) above the spinner.
    pub fn println(&self, line: &str) {
        self.bar.suspend(|| eprintln!("{line}"));
    }
}

impl Drop for LiveLine {
    fn drop(&mut self) {
        self.ticker.abort();
        self.bar.finish_and_clear();
    }
}

/// `12345` as `12,345`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_says_time_operations_and_faults_and_pod_changes_once_there_are_any() {
        let live = Live::default();
        live.answered.store(10_234, Ordering::Relaxed);
        live.unanswered.store(3, Ordering::Relaxed);
        live.faults_done.store(3, Ordering::Relaxed);
        live.faults_planned.store(12, Ordering::Relaxed);
        let at = |live: &Live| live.line(Duration::from_millis(12_040), Duration::from_secs(60));
        assert_eq!(
            at(&live),
            "12.0s of 60s · 10,234 operations answered, 3 not · faults 3 of 12"
        );
        live.pod_changes.store(14, Ordering::Relaxed);
        assert!(at(&live).ends_with(" · 14 pod changes"), "{}", at(&live));
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000_000), "1,000,000");
    }
}
