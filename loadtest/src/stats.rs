//! What a run measured: outcomes by kind, ingest latency in an HDR histogram overall and per
//! second, and end-to-end latency of the sampled messages.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Latencies are recorded in microseconds, from 1 µs to 10 minutes, 3 significant digits.
pub(crate) fn histogram() -> Histogram<u64> {
    #[allow(clippy::expect_used)] // constant, valid bounds
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros())
        .unwrap_or(u64::MAX)
        .clamp(1, 600_000_000)
}

/// The last second a timeline holds.
const MAX_SECONDS: usize = 86_400;

/// How one request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The answer the scenario wanted (`201` for a message).
    Ok,
    /// Another HTTP status.
    Status(u16),
    /// No HTTP answer: connection refused, reset, timed out.
    Transport(String),
}

/// Percentiles of one histogram, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Percentiles {
    pub(crate) fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            count: h.len(),
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }
}

/// One second of the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Second {
    pub second: u64,
    pub ok: u64,
    pub errors: u64,
    pub latency: Percentiles,
}

struct Window {
    ok: u64,
    errors: u64,
    latency: Histogram<u64>,
}

/// Everything measured so far; cheap to update from many tasks behind one mutex.
pub struct Stats {
    ok: u64,
    errors: BTreeMap<String, u64>,
    latency: Histogram<u64>,
    end_to_end: Histogram<u64>,
    seconds: Vec<Window>,
}

impl std::fmt::Debug for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stats")
            .field("ok", &self.ok)
            .field("errors", &self.errors)
            .finish_non_exhaustive()
    }
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            ok: 0,
            errors: BTreeMap::new(),
            latency: histogram(),
            end_to_end: histogram(),
            seconds: Vec::new(),
        }
    }
}

impl Stats {
    /// Records a request that was due `at` after the start, took `latency` from then, and
    /// got `messages` accepted (a bulk call may get some accepted and some refused).
    pub fn record(&mut self, outcome: &Outcome, at: Duration, latency: Duration, messages: u64) {
        // A run longer than a day keeps counting in its last second.
        let second = usize::try_from(at.as_secs())
            .unwrap_or(usize::MAX)
            .min(MAX_SECONDS);
        while self.seconds.len() <= second {
            self.seconds.push(Window {
                ok: 0,
                errors: 0,
                latency: histogram(),
            });
        }
        let window = &mut self.seconds[second];
        self.ok += messages;
        window.ok += messages;
        let kind = match outcome {
            Outcome::Ok => {
                let us = micros(latency);
                self.latency.saturating_record(us);
                window.latency.saturating_record(us);
                return;
            }
            Outcome::Status(code) => code.to_string(),
            Outcome::Transport(kind) => kind.clone(),
        };
        window.errors += 1;
        *self.errors.entry(kind).or_insert(0) += 1;
    }

    /// Records the time from sending a sampled message to reading it in the inbox.
    pub fn record_end_to_end(&mut self, latency: Duration) {
        self.end_to_end.saturating_record(micros(latency));
    }

    /// Messages accepted.
    pub fn ok(&self) -> u64 {
        self.ok
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    pub fn errors(&self) -> &BTreeMap<String, u64> {
        &self.errors
    }

    pub fn latency(&self) -> Percentiles {
        Percentiles::of(&self.latency)
    }

    pub fn end_to_end(&self) -> Percentiles {
        Percentiles::of(&self.end_to_end)
    }

    /// The run second by second.
    pub fn timeline(&self) -> Vec<Second> {
        self.seconds
            .iter()
            .enumerate()
            .map(|(i, w)| Second {
                second: i as u64,
                ok: w.ok,
                errors: w.errors,
                latency: Percentiles::of(&w.latency),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_recorded_latencies() {
        let mut s = Stats::default();
        for ms in 1..=1000u64 {
            s.record(&Outcome::Ok, Duration::ZERO, Duration::from_millis(ms), 1);
        }
        let p = s.latency();
        assert_eq!(p.count, 1000);
        assert!((p.p50 - 500.0).abs() <= 1.0, "{p:?}");
        assert!((p.p99 - 990.0).abs() <= 1.0, "{p:?}");
        assert!((p.max - 1000.0).abs() <= 1.0, "{p:?}");
        assert!(p.p50 <= p.p90 && p.p90 <= p.p99 && p.p99 <= p.p999 && p.p999 <= p.max);
    }

    #[test]
    fn errors_are_counted_by_kind_and_second_but_not_as_latency() {
        let mut s = Stats::default();
        s.record(
            &Outcome::Ok,
            Duration::from_millis(100),
            Duration::from_millis(3),
            1,
        );
        s.record(
            &Outcome::Status(503),
            Duration::from_millis(1500),
            Duration::from_millis(1),
            0,
        );
        s.record(
            &Outcome::Status(503),
            Duration::from_millis(1600),
            Duration::from_millis(1),
            0,
        );
        s.record(
            &Outcome::Transport("connect".into()),
            Duration::from_millis(2100),
            Duration::from_millis(1),
            0,
        );
        assert_eq!(s.ok(), 1);
        assert_eq!(s.error_count(), 3);
        assert_eq!(s.errors().get("503"), Some(&2));
        assert_eq!(s.errors().get("connect"), Some(&1));
        assert_eq!(s.latency().count, 1);
        let t = s.timeline();
        assert_eq!(t.len(), 3);
        assert_eq!((t[0].ok, t[0].errors), (1, 0));
        assert_eq!((t[1].ok, t[1].errors), (0, 2));
        assert_eq!((t[2].ok, t[2].errors), (0, 1));
    }

    #[test]
    fn a_bulk_call_counts_its_accepted_messages_and_its_latency_once() {
        let mut s = Stats::default();
        s.record(
            &Outcome::Ok,
            Duration::ZERO,
            Duration::from_millis(40),
            1000,
        );
        s.record(
            &Outcome::Status(202),
            Duration::from_millis(500),
            Duration::from_millis(40),
            998,
        );
        assert_eq!(s.ok(), 1998);
        assert_eq!(s.latency().count, 1, "one call wholly accepted");
        assert_eq!(
            s.errors().get("202"),
            Some(&1),
            "one call with items refused"
        );
        assert_eq!(s.timeline()[0].ok, 1998);
    }

    #[test]
    fn latencies_beyond_the_bounds_are_clamped_not_lost() {
        let mut s = Stats::default();
        s.record(&Outcome::Ok, Duration::ZERO, Duration::from_secs(3600), 1);
        s.record(&Outcome::Ok, Duration::ZERO, Duration::ZERO, 1);
        assert_eq!(s.latency().count, 2);
        assert!((s.latency().max - 600_000.0).abs() < 1000.0);
    }

    #[test]
    fn an_empty_run_has_zero_percentiles() {
        let s = Stats::default();
        assert_eq!(s.latency(), Percentiles::default());
        assert!(s.timeline().is_empty());
    }
}
