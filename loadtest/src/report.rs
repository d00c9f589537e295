//! The result of a run: a summary table on the terminal, `result.json` for machines and
//! `report.html`, one self-contained page with the rate and latency over time drawn as SVG.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use model::html::escape;
use serde::{Deserialize, Serialize};

use crate::arrivals::ArrivalReport;
use crate::scrape::{MetricsTimeline, LAG_TOPICS, RATES};
use crate::stats::{Percentiles, Second};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub scenario: String,
    pub target: String,
    pub started_at: String,
    /// Requests per second offered; `None` in the closed model.
    pub offered_rate: Option<f64>,
    pub connections: usize,
    pub duration_secs: f64,
    pub sent: u64,
    pub accepted: u64,
    pub accepted_per_sec: f64,
    pub errors: BTreeMap<String, u64>,
    /// Ingest latency of accepted requests, from when each was due.
    pub latency_ms: Percentiles,
    /// Send → readable in the inbox, for the sampled messages.
    pub end_to_end_ms: Percentiles,
    /// Messages expected in an inbox (the mix says who refuses them).
    pub expected_readable: u64,
    /// Seconds from the first send until the last expected message was readable, when
    /// the run waited for it.
    pub all_readable_after_secs: Option<f64>,
    /// `expected_readable / all_readable_after_secs`.
    pub end_to_end_per_sec: Option<f64>,
    /// The no-op endpoint's rate under the same generator, measured before the run.
    pub baseline_per_sec: Option<f64>,
    /// Whether Ctrl-C cut the run short.
    pub interrupted: bool,
    pub timeline: Vec<Second>,
    /// Send → push, when the run watched the push stand-ins.
    #[serde(default)]
    pub push: Option<ArrivalReport>,
    /// Send → mailbox, when the run watched the SMTP sink.
    #[serde(default)]
    pub email: Option<ArrivalReport>,
    /// Postino's own metrics over the run, when it scraped them (`--metrics`).
    #[serde(default)]
    pub metrics: Option<MetricsTimeline>,
}

impl Report {
    /// Accepted/s as a share of the no-op baseline, when there is one.
    pub fn baseline_ratio(&self) -> Option<f64> {
        self.baseline_per_sec
            .filter(|b| *b > 0.0)
            .map(|b| self.accepted_per_sec / b)
    }

    /// The terminal summary.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let offered = self
            .offered_rate
            .map_or("closed model (as fast as it goes)".to_string(), |r| {
                format!("{r:.0}/s offered")
            });
        let _ = writeln!(
            out,
            "{} against {} — {offered}, {} connections, {:.1} s{}",
            self.scenario,
            self.target,
            self.connections,
            self.duration_secs,
            if self.interrupted {
                " (interrupted)"
            } else {
                ""
            }
        );
        let _ = writeln!(out, "  sent {:>12}", self.sent);
        let _ = writeln!(
            out,
            "  accepted {:>8}   {:.0}/s{}",
            self.accepted,
            self.accepted_per_sec,
            self.baseline_ratio().map_or(String::new(), |r| format!(
                "   ({:.1} % of the no-op endpoint's {:.0}/s)",
                r * 100.0,
                self.baseline_per_sec.unwrap_or_default()
            ))
        );
        if self.errors.is_empty() {
            let _ = writeln!(out, "  errors          none");
        } else {
            let _ = writeln!(out, "  errors          {}", counts(&self.errors));
        }
        let _ = writeln!(
            out,
            "  {:<22}{:>9}{:>9}{:>9}{:>9}{:>9}{:>10}",
            "latency (ms)", "p50", "p90", "p99", "p99.9", "max", "count"
        );
        let mut rows = vec![
            ("ingest", &self.latency_ms),
            ("send → inbox", &self.end_to_end_ms),
        ];
        if let Some(push) = &self.push {
            rows.push(("send → push", &push.latency_ms));
        }
        if let Some(email) = &self.email {
            rows.push(("send → mailbox", &email.latency_ms));
        }
        for (name, p) in rows {
            let _ = writeln!(
                out,
                "  {:<22}{:>9.2}{:>9.2}{:>9.2}{:>9.2}{:>9.2}{:>10}",
                name, p.p50, p.p90, p.p99, p.p999, p.max, p.count
            );
        }
        if let (Some(after), Some(rate)) = (self.all_readable_after_secs, self.end_to_end_per_sec) {
            let _ = writeln!(
                out,
                "  all {} expected messages readable after {after:.1} s: {rate:.0}/s end to end",
                self.expected_readable
            );
        }
        if let Some(push) = &self.push {
            arrival_summary(&mut out, "pushes", push);
        }
        if let Some(email) = &self.email {
            arrival_summary(&mut out, "emails", email);
        }
        out
    }

    /// Writes `result.json` and `report.html` into `dir` (created if missing).
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let json = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(dir.join("result.json"), json)?;
        std::fs::write(dir.join("report.html"), self.html())
    }

    /// One page, no scripts, no outside resources.
    pub fn html(&self) -> String {
        let seconds: Vec<f64> = self.timeline.iter().map(|s| s.second as f64).collect();
        let rate = chart(
            "Accepted and failed requests per second",
            "requests/s",
            &seconds,
            &[
                (
                    "accepted/s",
                    "#2b7a0b",
                    self.timeline.iter().map(|s| s.ok as f64).collect(),
                ),
                (
                    "errors/s",
                    "#c0392b",
                    self.timeline.iter().map(|s| s.errors as f64).collect(),
                ),
            ],
        );
        let latency = chart(
            "Ingest latency per second",
            "ms",
            &seconds,
            &[
                (
                    "p50",
                    "#1f77b4",
                    self.timeline.iter().map(|s| s.latency.p50).collect(),
                ),
                (
                    "p99",
                    "#ff7f0e",
                    self.timeline.iter().map(|s| s.latency.p99).collect(),
                ),
                (
                    "max",
                    "#7f7f7f",
                    self.timeline.iter().map(|s| s.latency.max).collect(),
                ),
            ],
        );
        let arrivals = |report: Option<&ArrivalReport>, title: &str, unit: &str| {
            report.map_or(String::new(), |r| {
                let seconds: Vec<f64> = (0..r.timeline.len()).map(|s| s as f64).collect();
                chart(
                    title,
                    unit,
                    &seconds,
                    &[(
                        unit,
                        "#8e44ad",
                        r.timeline.iter().map(|&n| n as f64).collect(),
                    )],
                )
            })
        };
        let pushes = arrivals(
            self.push.as_ref(),
            "Pushes arriving at the stand-ins per second",
            "pushes/s",
        );
        let emails = arrivals(
            self.email.as_ref(),
            "Emails arriving at the SMTP sink per second",
            "emails/s",
        );
        let (lag, stage_rates) = self.metrics.as_ref().map_or_else(
            || (String::new(), String::new()),
            |m| (lag_chart(m), rates_chart(m)),
        );
        let summary = escape(&self.summary());
        format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <title>loadtest: {scenario}</title>\
             <style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:960px}}\
             pre{{background:#f4f4f4;padding:1em;overflow-x:auto}}svg{{background:#fff;border:1px solid #ddd}}\
             </style></head><body>\n<h1>loadtest: {scenario}</h1>\n<p>Started {started} against {target}.</p>\n\
             <pre>{summary}</pre>\n{rate}\n{latency}\n{pushes}\n{emails}\n{lag}\n{stage_rates}\n</body></html>\n",
            scenario = escape(&self.scenario),
            started = escape(&self.started_at),
            target = escape(&self.target),
        )
    }
}

/// Colours of the lines of one chart, in order.
const PALETTE: &[&str] = &["#1f77b4", "#ff7f0e", "#2b7a0b", "#8e44ad", "#c0392b"];

fn lag_chart(m: &MetricsTimeline) -> String {
    let seconds: Vec<f64> = m.points.iter().map(|p| p.second).collect();
    let series: Vec<(&str, &str, Vec<f64>)> = LAG_TOPICS
        .iter()
        .zip(PALETTE)
        .map(|(topic, colour)| {
            let values = m
                .points
                .iter()
                .map(|p| p.lag.get(*topic).copied().unwrap_or(0.0))
                .collect();
            (*topic, *colour, values)
        })
        .collect();
    chart(
        "Consumer lag by topic (Postino's metrics)",
        "records",
        &seconds,
        &series,
    )
}

fn rates_chart(m: &MetricsTimeline) -> String {
    // The first round has no rate yet.
    let points: Vec<_> = m.points.iter().filter(|p| !p.rates.is_empty()).collect();
    let seconds: Vec<f64> = points.iter().map(|p| p.second).collect();
    let series: Vec<(&str, &str, Vec<f64>)> = RATES
        .iter()
        .zip(PALETTE)
        .map(|(rate, colour)| {
            let values = points
                .iter()
                .map(|p| p.rates.get(rate.name).copied().unwrap_or(0.0))
                .collect();
            (rate.name, *colour, values)
        })
        .collect();
    chart(
        "Each stage's rate (Postino's metrics)",
        "per second",
        &seconds,
        &series,
    )
}

fn arrival_summary(out: &mut String, what: &str, push: &ArrivalReport) {
    let _ = write!(
        out,
        "  {what}: {} of {} expected arrived",
        push.received, push.expected
    );
    if let (Some(after), Some(rate)) = (push.last_after_secs, push.per_sec) {
        let _ = write!(
            out,
            ", the last after {after:.1} s: {rate:.0}/s (peak {}/s)",
            push.peak_per_sec
        );
    }
    let _ = writeln!(out);
    if push.duplicates > 0 {
        let _ = writeln!(out, "  {what} sent twice  {}", push.duplicates);
    }
    if !push.refused.is_empty() {
        let _ = writeln!(out, "  stand-ins also answered {}", counts(&push.refused));
    }
    if push.records_dropped {
        let _ = writeln!(
            out,
            "  a stand-in kept fewer records than it received: raise its --keep"
        );
    }
}

/// `what: n, …`
fn counts<K: std::fmt::Display>(by: &BTreeMap<K, u64>) -> String {
    let list: Vec<String> = by.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    list.join(", ")
}

/// A line chart of `series` over `xs`, as an inline SVG with axes, ticks and a legend.
fn chart(title: &str, unit: &str, xs: &[f64], series: &[(&str, &str, Vec<f64>)]) -> String {
    const W: f64 = 900.0;
    const H: f64 = 300.0;
    const LEFT: f64 = 70.0;
    const BOTTOM: f64 = 40.0;
    const TOP: f64 = 30.0;
    let x_max = xs.iter().copied().fold(1.0, f64::max);
    let y_max = series
        .iter()
        .flat_map(|(_, _, ys)| ys.iter().copied())
        .filter(|y| y.is_finite())
        .fold(0.0, f64::max)
        .max(1.0)
        * 1.1;
    let px = |x: f64| LEFT + x / x_max * (W - LEFT - 20.0);
    let py = |y: f64| H - BOTTOM - y / y_max * (H - BOTTOM - TOP);
    let mut svg = format!(
        "<h2>{}</h2>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{}\">\n",
        escape(title),
        escape(title)
    );
    let _ = writeln!(
        svg,
        "<line x1=\"{LEFT}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"#333\"/><line x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{b}\" stroke=\"#333\"/>",
        b = H - BOTTOM,
        r = W - 20.0
    );
    for i in 0..=4 {
        let y = y_max * f64::from(i) / 4.0;
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\">{}</text><line x1=\"{LEFT}\" y1=\"{:.1}\" x2=\"{}\" y2=\"{:.1}\" stroke=\"#eee\"/>",
            LEFT - 6.0,
            py(y) + 4.0,
            tick(y),
            py(y),
            W - 20.0,
            py(y)
        );
        let x = x_max * f64::from(i) / 4.0;
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\">{}s</text>",
            px(x),
            H - BOTTOM + 16.0,
            tick(x)
        );
    }
    let _ = writeln!(
        svg,
        "<text x=\"12\" y=\"{TOP}\" font-size=\"11\" transform=\"rotate(-90 12 {TOP})\" text-anchor=\"end\">{}</text>",
        escape(unit)
    );
    for (n, (name, colour, ys)) in series.iter().enumerate() {
        let points: Vec<String> = xs
            .iter()
            .zip(ys)
            .filter(|(_, y)| y.is_finite())
            .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
            .collect();
        let _ = writeln!(
            svg,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\" points=\"{}\"/>",
            points.join(" ")
        );
        let lx = LEFT + 10.0 + 110.0 * n as f64;
        let _ = writeln!(
            svg,
            "<rect x=\"{lx}\" y=\"8\" width=\"12\" height=\"12\" fill=\"{colour}\"/><text x=\"{}\" y=\"18\" font-size=\"12\">{}</text>",
            lx + 16.0,
            escape(name)
        );
    }
    svg.push_str("</svg>");
    svg
}

fn tick(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v >= 10.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        let second = |s: u64, ok: u64| Second {
            second: s,
            ok,
            errors: s,
            latency: Percentiles {
                count: ok,
                p50: 1.0,
                p90: 2.0,
                p99: 5.0 + s as f64,
                p999: 9.0,
                max: 12.0,
            },
        };
        Report {
            scenario: "mass-notice".into(),
            target: "http://127.0.0.1:8080".into(),
            started_at: "2026-11-23T10:00:00Z".into(),
            offered_rate: Some(1000.0),
            connections: 64,
            duration_secs: 3.0,
            sent: 3000,
            accepted: 2997,
            accepted_per_sec: 999.0,
            errors: [("503".to_string(), 3)].into(),
            latency_ms: Percentiles::default(),
            end_to_end_ms: Percentiles::default(),
            expected_readable: 2800,
            all_readable_after_secs: Some(3.5),
            end_to_end_per_sec: Some(800.0),
            baseline_per_sec: Some(9990.0),
            interrupted: false,
            timeline: vec![second(0, 1000), second(1, 999), second(2, 998)],
            push: None,
            email: None,
            metrics: None,
        }
    }

    #[test]
    fn the_summary_names_rate_ratio_errors_and_end_to_end() {
        let s = report().summary();
        assert!(s.contains("1000/s offered"), "{s}");
        assert!(s.contains("999/s"), "{s}");
        assert!(s.contains("10.0 % of the no-op endpoint"), "{s}");
        assert!(s.contains("503: 3"), "{s}");
        assert!(
            s.contains("all 2800 expected messages readable after 3.5 s: 800/s"),
            "{s}"
        );
    }

    #[test]
    fn the_html_report_is_self_contained_with_both_charts() {
        let html = report().html();
        assert_eq!(html.matches("<svg").count(), 2);
        assert_eq!(html.matches("<polyline").count(), 5);
        assert!(!html.contains("<script"));
        assert!(!html.contains("src=\"http"));
        assert!(html.contains("mass-notice"));
    }

    #[test]
    fn a_run_that_watched_the_stand_ins_reports_send_to_push() {
        let mut r = report();
        r.push = Some(ArrivalReport {
            expected: 2000,
            received: 1990,
            duplicates: 1,
            latency_ms: Percentiles {
                count: 1990,
                p50: 40.0,
                p90: 80.0,
                p99: 120.0,
                p999: 150.0,
                max: 160.0,
            },
            last_after_secs: Some(4.0),
            per_sec: Some(497.5),
            peak_per_sec: 700,
            timeline: vec![300, 700, 600, 390],
            refused: [(429, 12)].into(),
            records_dropped: false,
        });
        let s = r.summary();
        assert!(s.contains("send → push"), "{s}");
        assert!(s.contains("120.00"), "{s}");
        assert!(
            s.contains("1990 of 2000 expected arrived, the last after 4.0 s: 498/s (peak 700/s)"),
            "{s}"
        );
        assert!(s.contains("pushes sent twice  1"), "{s}");
        assert!(s.contains("429: 12"), "{s}");
        let html = r.html();
        assert_eq!(html.matches("<svg").count(), 3);
        assert!(html.contains("Pushes arriving"));
        assert!(!report().summary().contains("push"));
        r.email = r.push.clone();
        let s = r.summary();
        assert!(
            s.contains("send → mailbox") && s.contains("emails: 1990 of 2000"),
            "{s}"
        );
        assert_eq!(r.html().matches("<svg").count(), 4);
    }

    #[test]
    fn a_run_that_scraped_postino_plots_its_lag_and_stage_rates() {
        let mut r = report();
        let mut metrics = MetricsTimeline::default();
        for (second, accepted, lag) in [(0.0, 0.0, 0.0), (1.0, 900.0, 120.0), (2.0, 1900.0, 40.0)] {
            let text = format!(
                "postino_ingest_messages_accepted_total {accepted}\n\
                 postino_log_consumer_lag_records{{topic=\"deliveries.inbox\",partition=\"0\",group=\"inbox\"}} {lag}\n"
            );
            let samples = telemetry::exposition::parse(&text).expect("exposition");
            metrics.add(second, &samples);
        }
        r.metrics = Some(metrics);
        let html = r.html();
        assert_eq!(html.matches("<svg").count(), 4, "lag and stage rates added");
        assert!(html.contains("Consumer lag by topic") && html.contains("deliveries.inbox"));
        assert!(html.contains("Each stage&#39;s rate") || html.contains("Each stage's rate"));
        let dir = tempfile::tempdir().expect("tempdir");
        r.write(dir.path()).expect("write");
        let back: Report = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("result.json")).expect("read"),
        )
        .expect("parse");
        assert_eq!(back.metrics.map(|m| m.totals["accepted"]), Some(1900.0));
    }

    #[test]
    fn text_from_outside_is_escaped() {
        let mut r = report();
        r.target = "http://x/<script>alert(1)</script>".into();
        assert!(!r.html().contains("<script>"));
    }

    #[test]
    fn an_empty_run_still_renders_and_round_trips() {
        let mut r = report();
        r.timeline.clear();
        r.baseline_per_sec = None;
        assert!(r.html().contains("<svg"));
        assert!(!r.summary().contains("no-op"));
        let dir = tempfile::tempdir().expect("tempdir");
        r.write(dir.path()).expect("write");
        let back: Report = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("result.json")).expect("read"),
        )
        .expect("parse");
        assert_eq!(back, r);
        assert!(dir.path().join("report.html").exists());
    }
}
