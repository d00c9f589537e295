//! Postino's metrics: how a subsystem declares the series it exports, the one Prometheus
//! recorder a process installs, and the exposition every role serves on its metrics listener.
//!
//! Each subsystem keeps its series in one `metrics` module: a [`Metric`] constant per series
//! (name, kind, help, label names) listed in an `ALL` slice, and typed events that record
//! them. Nothing else in the code names a series, so the catalogue the README, the dashboards
//! and the alerts are checked against is the code itself.
//!
//! Label values must stay few: topics, operations, channels, outcomes, reasons. Never a fiscal
//! code, an address, a token, a message id or a service id.

pub mod exposition;

use std::sync::OnceLock;
use std::time::Duration;

pub use metrics;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// What a series is, in Prometheus's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    /// The name Prometheus's exposition gives it (`# TYPE`).
    pub fn exposition_name(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
        }
    }
}

/// One series a subsystem exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    /// `postino_<subsystem>_<name>_<unit>`, `_total` for counters, seconds for time.
    pub name: &'static str,
    pub kind: Kind,
    /// What it means, as `# HELP` shows it and the README lists it.
    pub help: &'static str,
    /// Its label names; their values are bounded.
    pub labels: &'static [&'static str],
}

impl Metric {
    const fn of(
        kind: Kind,
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> Self {
        Self {
            name,
            kind,
            help,
            labels,
        }
    }

    pub const fn counter(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> Self {
        Self::of(Kind::Counter, name, help, labels)
    }

    pub const fn gauge(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> Self {
        Self::of(Kind::Gauge, name, help, labels)
    }

    pub const fn histogram(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> Self {
        Self::of(Kind::Histogram, name, help, labels)
    }

    /// Gives the recorder its help text, so the exposition carries `# HELP`.
    pub fn describe(&self) {
        match self.kind {
            Kind::Counter => metrics::describe_counter!(self.name, self.help),
            Kind::Gauge => metrics::describe_gauge!(self.name, self.help),
            Kind::Histogram => metrics::describe_histogram!(self.name, self.help),
        }
    }

    /// Why this declaration breaks the naming rules, if it does.
    pub fn naming_problem(&self) -> Option<String> {
        let name = self.name;
        let well_formed = name
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_');
        if !well_formed || !(name.starts_with("postino_") || name.starts_with("process_")) {
            return Some(format!(
                "{name}: names are postino_<subsystem>_<name>_<unit>, in lowercase"
            ));
        }
        let is_counter = self.kind == Kind::Counter;
        if is_counter != name.ends_with("_total") {
            return Some(format!(
                "{name}: counters, and only counters, end in _total"
            ));
        }
        if name.contains("_millis") || name.contains("_ms") {
            return Some(format!("{name}: time is in seconds"));
        }
        if self.kind == Kind::Histogram
            && !(name.ends_with("_seconds")
                || name.ends_with("_bytes")
                || name.ends_with("_records"))
        {
            return Some(format!("{name}: a histogram names its unit"));
        }
        None
    }
}

/// Buckets of request, store and provider latencies, in seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Buckets of the end-to-end times (accepted → readable, pushed, emailed), which include
/// retries and send windows, in seconds.
const END_TO_END_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];
/// Buckets of sizes counted in records (a stage's batches, up to its 512).
const COUNT_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 512.0];
/// The prefix of the end-to-end series.
pub const END_TO_END_PREFIX: &str = "postino_e2e_";

static RECORDER: OnceLock<PrometheusHandle> = OnceLock::new();

/// Whether this process records series at all (its recorder is installed): a hot path may
/// skip its clock reads and handles when not.
pub fn recording() -> bool {
    RECORDER.get().is_some()
}

/// The process's Prometheus recorder, installed on first use. Every `App` in one process (as
/// in the in-process tests) shares it, so their figures add up.
pub fn recorder() -> &'static PrometheusHandle {
    RECORDER.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Prefix(END_TO_END_PREFIX.into()),
                END_TO_END_BUCKETS,
            )
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            })
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Suffix("_records".into()), COUNT_BUCKETS)
            });
        let builder = match builder {
            Ok(builder) => builder,
            // Only an empty bucket list is refused, and the lists above are constants.
            Err(_) => PrometheusBuilder::new(),
        };
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            // This crate stays free of a logging dependency, hence stderr.
            eprintln!("postino: a metrics recorder was already installed; /metrics shows only what Postino recorded through its own");
        }
        handle
    })
}

/// The figures every process exports whatever its roles: the process's CPU, memory,
/// descriptors and threads, the async runtime's workers, tasks and queue, and the build.
#[derive(Debug)]
pub struct ProcessFigures {
    collector: metrics_process::Collector,
}

pub mod process {
    //! Series of the process and its runtime.
    use super::Metric;

    pub const BUILD_INFO: Metric = Metric::gauge(
        "postino_build_info",
        "Always 1; its labels name the running build's version and the roles this process runs.",
        &["version", "roles"],
    );
    pub const RUNTIME_WORKERS: Metric = Metric::gauge(
        "postino_runtime_workers",
        "Worker threads of the async runtime.",
        &[],
    );
    pub const RUNTIME_ALIVE_TASKS: Metric = Metric::gauge(
        "postino_runtime_alive_tasks",
        "Tasks alive in the async runtime (requests in flight, stages, background work).",
        &[],
    );
    pub const RUNTIME_QUEUE_DEPTH: Metric = Metric::gauge(
        "postino_runtime_global_queue_depth",
        "Tasks waiting in the runtime's global queue: a lasting non-zero value means the process is short of CPU.",
        &[],
    );
    pub const CPU: Metric = Metric::counter(
        "process_cpu_seconds_total",
        "CPU time the process used, user and system.",
        &[],
    );
    pub const RESIDENT_MEMORY: Metric = Metric::gauge(
        "process_resident_memory_bytes",
        "Resident memory of the process.",
        &[],
    );
    pub const OPEN_FDS: Metric = Metric::gauge(
        "process_open_fds",
        "Open file descriptors (files, sockets).",
        &[],
    );
    pub const THREADS: Metric = Metric::gauge("process_threads", "OS threads of the process.", &[]);

    pub const ALL: &[Metric] = &[
        BUILD_INFO,
        RUNTIME_WORKERS,
        RUNTIME_ALIVE_TASKS,
        RUNTIME_QUEUE_DEPTH,
        CPU,
        RESIDENT_MEMORY,
        OPEN_FDS,
        THREADS,
    ];
}

impl ProcessFigures {
    /// Describes the process series and sets the build's info series.
    pub fn new(version: &'static str, roles: String) -> Self {
        for metric in process::ALL {
            metric.describe();
        }
        let collector = metrics_process::Collector::default();
        collector.describe();
        metrics::gauge!(process::BUILD_INFO.name, "version" => version, "roles" => roles).set(1.0);
        Self { collector }
    }

    /// Reads the figures now (called on every scrape).
    pub fn collect(&self) {
        self.collector.collect();
        if let Ok(runtime) = tokio_runtime_metrics() {
            metrics::gauge!(process::RUNTIME_WORKERS.name).set(runtime.0 as f64);
            metrics::gauge!(process::RUNTIME_ALIVE_TASKS.name).set(runtime.1 as f64);
            metrics::gauge!(process::RUNTIME_QUEUE_DEPTH.name).set(runtime.2 as f64);
        }
    }
}

/// Workers, alive tasks and global queue depth of the runtime this is called on.
fn tokio_runtime_metrics() -> Result<(usize, usize, usize), ()> {
    let handle = tokio::runtime::Handle::try_current().map_err(|_| ())?;
    let m = handle.metrics();
    Ok((m.num_workers(), m.num_alive_tasks(), m.global_queue_depth()))
}

/// The exposition, in Prometheus's text format, after reading the process figures.
pub fn render(figures: &ProcessFigures) -> String {
    figures.collect();
    recorder().render()
}

/// How often the recorder's histograms are folded: render does it too, so this only bounds
/// the memory of a process nobody scrapes.
pub const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Folds recorded samples until the process ends; run as a task.
pub async fn upkeep() {
    let mut tick = tokio::time::interval(UPKEEP_EVERY);
    loop {
        tick.tick().await;
        recorder().run_upkeep();
    }
}

/// Seconds as Prometheus records them.
pub fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_process_series_follow_the_naming_rules() {
        for metric in process::ALL {
            assert_eq!(metric.naming_problem(), None);
        }
    }

    #[test]
    fn a_badly_named_series_is_caught() {
        let bad = [
            Metric::counter("postino_ingest_requests", "no _total", &[]),
            Metric::gauge("postino_lag_total", "a gauge as a counter", &[]),
            Metric::histogram("postino_store_latency_ms", "milliseconds", &[]),
            Metric::histogram("postino_store_latency", "no unit", &[]),
            Metric::counter("Postino_Requests_total", "case", &[]),
            Metric::counter("ingest_requests_total", "no prefix", &[]),
        ];
        for metric in bad {
            assert!(metric.naming_problem().is_some(), "{}", metric.name);
        }
    }
}
