//! Prometheus metrics: one [`Metrics`] registry per process, which every component of that
//! process registers its own metrics in (the store, the API, the controllers and the
//! scheduler on a master; the kubelet and the proxy on a node) and which the process serves
//! as `GET /metrics` in Prometheus' text format.
//!
//! Component metrics are named `rudder_<component>_<what>` with Prometheus' unit suffixes
//! (`_seconds`, `_bytes`, `_total`). The process' own figures keep the names every
//! Prometheus client library gives them (`process_resident_memory_bytes`, ...), so that
//! dashboards built for any process read them unchanged; [`ProcessCollector`] reads them
//! from `/proc/self` at each scrape.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeGaugeValue, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Metric, Registry, Unit};

/// The `Content-Type` of what [`Metrics::encode`] writes (Prometheus text, version 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// A process' metrics registry; clones share it. Components register while they start;
/// a scrape encodes whatever is registered by then.
#[derive(Clone, Default, Debug)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
}

impl Metrics {
    /// A registry with the process' own figures ([`ProcessCollector`]) in it: the one a
    /// `rudder` process serves.
    pub fn for_process() -> Self {
        let metrics = Self::default();
        metrics.register_collector(ProcessCollector);
        metrics
    }

    /// Registers `metric` as `name` (a counter's `_total` is added by the encoding).
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        self.lock().register(name, help, metric);
    }

    /// Registers `metric` as `name` with a unit suffix (`_seconds`, `_bytes`).
    pub fn register_with_unit(&self, name: &str, help: &str, unit: Unit, metric: impl Metric) {
        self.lock().register_with_unit(name, help, unit, metric);
    }

    /// Registers figures read at each scrape.
    pub fn register_collector(&self, collector: impl Collector) {
        self.lock().register_collector(Box::new(collector));
    }

    /// Everything registered, in Prometheus' text format ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.lock())
            .expect("writing to a String cannot fail");
        text
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        // A panic while registering leaves nothing half-done worth refusing to serve.
        self.registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A histogram of durations in seconds, from 0.5 ms to about 16 s in doublings: wide enough
/// for an fsync and for a pod start alike.
pub fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Records `elapsed` in `histogram`, in seconds.
pub fn observe(histogram: &Histogram, elapsed: Duration) {
    histogram.observe(elapsed.as_secs_f64());
}

/// The value of sample `name` with exactly `labels` (in any order) in Prometheus text
/// (what [`Metrics::encode`] writes); `None` when there is no such sample.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (sample_name, sample_labels) = match series.split_once('{') {
                Some((sample_name, rest)) => (sample_name, rest.strip_suffix('}')?),
                None => (series, ""),
            };
            if sample_name != name || !same_labels(sample_labels, labels) {
                return None;
            }
            value.parse().ok()
        })
}

/// The `q` quantile (0 to 1) of histogram `name` (without labels) in Prometheus text: the
/// upper bound of the first bucket holding that share of the observations, as a dashboard
/// reads a histogram (`None` without observations, or past the last finite bucket).
pub fn quantile(text: &str, name: &str, q: f64) -> Option<f64> {
    let bucket = format!("{name}_bucket{{le=\"");
    let buckets: Vec<(f64, f64)> = text
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(&bucket)?;
            let (bound, count) = rest.split_once("\"} ")?;
            Some((bound.parse().ok()?, count.parse().ok()?))
        })
        .collect();
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    buckets
        .iter()
        .find(|(_, count)| *count >= total * q)
        .map(|(bound, _)| *bound)
        .filter(|bound| bound.is_finite())
}

/// Whether `text` (`a="x",b="y"`, values without escapes) holds exactly `labels`.
fn same_labels(text: &str, labels: &[(&str, &str)]) -> bool {
    let mut found: Vec<(&str, &str)> = Vec::new();
    for pair in text.split(',').filter(|pair| !pair.is_empty()) {
        let Some((key, value)) = pair.split_once('=') else {
            return false;
        };
        found.push((key, value.trim_matches('"')));
    }
    found.len() == labels.len() && labels.iter().all(|label| found.contains(label))
}

/// The process' CPU time, memory, open files and start time, as Prometheus' client libraries
/// name them, read from `/proc/self` at each scrape. Off Linux (no `/proc`), it reports
/// nothing.
#[derive(Debug, Clone, Copy)]
pub struct ProcessCollector;

/// What `/proc/self/stat` says about the process, in its own units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// CPU time in user and kernel mode, clock ticks.
    pub cpu_ticks: u64,
    /// Start time after boot, clock ticks.
    pub start_ticks: u64,
    pub virtual_bytes: u64,
    pub resident_pages: u64,
}

/// Parses `/proc/<pid>/stat`. The command name (field 2) may hold spaces and parentheses, so
/// the fields are counted from its last `)`.
pub fn parse_proc_stat(text: &str) -> Option<ProcStat> {
    let after_name = &text[text.rfind(')')? + 1..];
    // Field 3 (state) is the first after the name; utime is field 14.
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |number: usize| fields.get(number - 3)?.parse::<u64>().ok();
    Some(ProcStat {
        cpu_ticks: field(14)? + field(15)?,
        start_ticks: field(22)?,
        virtual_bytes: field(23)?,
        resident_pages: field(24)?,
    })
}

/// The soft limit on open files from `/proc/<pid>/limits` (`None` when unlimited).
pub fn parse_max_open_files(limits: &str) -> Option<u64> {
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The boot time in seconds since the epoch, from `/proc/stat`'s `btime` line.
pub fn parse_boot_time(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

fn sysconf(name: libc::c_int) -> Option<u64> {
    // SAFETY: sysconf only reads a configuration value.
    let value = unsafe { libc::sysconf(name) };
    u64::try_from(value).ok().filter(|value| *value > 0)
}

/// Writes one gauge read at scrape time, for a [`Collector`].
pub fn encode_gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: impl EncodeGaugeValue,
) -> Result<(), std::fmt::Error> {
    let gauge = ConstGauge::new(value);
    gauge.encode(encoder.encode_descriptor(name, help, unit, MetricType::Gauge)?)
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(stat) = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|text| parse_proc_stat(&text))
        else {
            return Ok(());
        };
        let ticks = sysconf(libc::_SC_CLK_TCK).unwrap_or(100) as f64;
        let page = sysconf(libc::_SC_PAGESIZE).unwrap_or(4096);
        let cpu = ConstCounter::new(stat.cpu_ticks as f64 / ticks);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu",
            "Total user and system CPU time spent",
            Some(&Unit::Seconds),
            MetricType::Counter,
        )?)?;
        let resident = (stat.resident_pages * page) as f64;
        encode_gauge(
            &mut encoder,
            "process_resident_memory",
            "Resident memory size",
            Some(&Unit::Bytes),
            resident,
        )?;
        encode_gauge(
            &mut encoder,
            "process_virtual_memory",
            "Virtual memory size",
            Some(&Unit::Bytes),
            stat.virtual_bytes as f64,
        )?;
        if let Ok(open) = std::fs::read_dir("/proc/self/fd") {
            encode_gauge(
                &mut encoder,
                "process_open_fds",
                "Number of open file descriptors",
                None,
                open.count() as f64,
            )?;
        }
        if let Some(max) = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|limits| parse_max_open_files(&limits))
        {
            encode_gauge(
                &mut encoder,
                "process_max_fds",
                "Maximum number of open file descriptors",
                None,
                max as f64,
            )?;
        }
        if let Some(boot) = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|stat| parse_boot_time(&stat))
        {
            encode_gauge(
                &mut encoder,
                "process_start_time",
                "Start time of the process since the Unix epoch",
                Some(&Unit::Seconds),
                boot as f64 + stat.start_ticks as f64 / ticks,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::counter::Counter;

    use super::*;

    #[test]
    fn proc_stat_fields_are_counted_from_the_last_parenthesis() {
        let line = "4242 (rudder (x) y) S 1 4242 4242 0 -1 4194560 2000 0 0 0 \
                    150 50 0 0 20 0 12 0 9000 123456789 3000 18446744073709551615";
        assert_eq!(
            parse_proc_stat(line),
            Some(ProcStat {
                cpu_ticks: 200,
                start_ticks: 9000,
                virtual_bytes: 123_456_789,
                resident_pages: 3000,
            })
        );
        assert_eq!(parse_proc_stat("4242 (cut short) S 1"), None);
    }

    #[test]
    fn limits_and_boot_time_are_read_from_their_lines() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(parse_max_open_files(limits), Some(1024));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_max_open_files(unlimited), None);
        assert_eq!(
            parse_boot_time("cpu  1 2 3\nbtime 1700000000\nprocesses 9\n"),
            Some(1_700_000_000)
        );
    }

    #[test]
    fn a_sample_is_found_by_its_name_and_exact_labels() {
        let text = "# HELP x_total X.\n# TYPE x_total counter\nx_total 3\n\
                    y{verb=\"get\",code=\"200\"} 1.5\ny{verb=\"get\",code=\"404\"} 2\n";
        assert_eq!(sample(text, "x_total", &[]), Some(3.0));
        assert_eq!(
            sample(text, "y", &[("code", "404"), ("verb", "get")]),
            Some(2.0)
        );
        assert_eq!(
            sample(text, "y", &[("verb", "get")]),
            None,
            "labels are exact"
        );
        assert_eq!(sample(text, "x", &[]), None);
    }

    #[test]
    fn a_quantile_is_the_bound_of_the_first_bucket_holding_its_share() {
        let metrics = Metrics::default();
        let fsync = duration_histogram();
        metrics.register("fsync", "Fsyncs", fsync.clone());
        assert_eq!(
            quantile(&metrics.encode(), "fsync", 0.99),
            None,
            "nothing yet"
        );
        for _ in 0..98 {
            observe(&fsync, Duration::from_micros(300));
        }
        observe(&fsync, Duration::from_millis(3));
        observe(&fsync, Duration::from_millis(30));
        let text = metrics.encode();
        assert_eq!(quantile(&text, "fsync", 0.5), Some(0.0005));
        assert_eq!(quantile(&text, "fsync", 0.99), Some(0.004));
        assert_eq!(quantile(&text, "fsync", 1.0), Some(0.032));
    }

    #[test]
    fn a_scrape_has_the_process_figures_and_every_registered_metric() {
        let metrics = Metrics::for_process();
        let writes = Counter::<u64>::default();
        metrics.register("rudder_test_writes", "Writes seen", writes.clone());
        writes.inc_by(3);
        let text = metrics.encode();
        assert!(text.contains("rudder_test_writes_total 3\n"), "{text}");
        for name in [
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_open_fds ",
            "process_start_time_seconds ",
        ] {
            assert!(text.contains(name), "no {name:?} in\n{text}");
        }
    }
}
