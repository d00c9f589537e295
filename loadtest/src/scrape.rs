//! Postino's own view of a run: `--metrics URL` (once per process) makes the tool scrape each
//! process's `/metrics` every second while it runs, and the report plots the consumer lag of
//! each stage's topic and each stage's rate over time, as Postino counted them.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use telemetry::exposition::{self, Sample};
use tokio::sync::watch;

/// One stage's rate the report plots: the rate of a counter (series and labels).
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub name: &'static str,
    pub series: &'static str,
    pub labels: &'static [(&'static str, &'static str)],
}

/// The stages' rates the report plots.
pub const RATES: &[Rate] = &[
    Rate {
        name: "accepted",
        series: "postino_ingest_messages_accepted_total",
        labels: &[],
    },
    Rate {
        name: "routed",
        series: "postino_log_records_consumed_total",
        labels: &[("topic", "messages"), ("group", "router")],
    },
    Rate {
        name: "readable",
        series: "postino_e2e_inbox_readable_seconds_count",
        labels: &[],
    },
    Rate {
        name: "pushed",
        series: "postino_e2e_push_sent_seconds_count",
        labels: &[],
    },
    Rate {
        name: "emailed",
        series: "postino_e2e_email_sent_seconds_count",
        labels: &[],
    },
];

/// The series of the consumer lag the report plots, by topic.
pub const LAG: &str = "postino_log_consumer_lag_records";
/// The stages' topics whose lag is plotted (each summed over its partitions and groups).
pub const LAG_TOPICS: &[&str] = &[
    "messages",
    "deliveries.inbox",
    "deliveries.push",
    "deliveries.email",
];

/// What the scrapes saw, second by second.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricsTimeline {
    pub targets: Vec<String>,
    pub points: Vec<MetricsPoint>,
    /// Scrapes that got no usable answer (a process restarting, say): skipped, not fatal.
    pub failed_scrapes: u64,
    /// Each rate's counter at the last scrape, summed over the targets.
    pub totals: BTreeMap<String, f64>,
}

/// One round of scrapes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricsPoint {
    /// Seconds since the scraping began.
    pub second: f64,
    /// Records behind, by topic.
    pub lag: BTreeMap<String, f64>,
    /// Per second since the previous round, by stage.
    pub rates: BTreeMap<String, f64>,
}

impl MetricsTimeline {
    /// Adds a round of `samples` (every target's together) taken `second`s in.
    pub fn add(&mut self, second: f64, samples: &[Sample]) {
        let totals: BTreeMap<String, f64> = RATES
            .iter()
            .map(|rate| {
                let total = exposition::sum(samples, rate.series, rate.labels);
                (rate.name.to_string(), total)
            })
            .collect();
        let rates = match self.points.last() {
            Some(previous) if second > previous.second => {
                let dt = second - previous.second;
                totals
                    .iter()
                    .map(|(name, now)| {
                        let before = self.totals.get(name).copied().unwrap_or(0.0);
                        // A counter that went down was reset by a restart: count from zero.
                        let delta = if *now >= before { now - before } else { *now };
                        (name.clone(), delta / dt)
                    })
                    .collect()
            }
            _ => BTreeMap::new(),
        };
        let lag = LAG_TOPICS
            .iter()
            .map(|topic| {
                let behind = exposition::sum(samples, LAG, &[("topic", topic)]);
                (topic.to_string(), behind)
            })
            .collect();
        self.points.push(MetricsPoint { second, lag, rates });
        self.totals = totals;
    }
}

/// Scrapes `urls` every `every` until `stop` turns true; returns what it saw.
pub async fn watch(
    urls: Vec<String>,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) -> MetricsTimeline {
    let client = reqwest::Client::builder()
        .timeout(every.max(Duration::from_millis(500)))
        .build()
        .unwrap_or_default();
    let mut timeline = MetricsTimeline {
        targets: urls.clone(),
        ..MetricsTimeline::default()
    };
    let started = Instant::now();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        let second = started.elapsed().as_secs_f64();
        let mut round = Vec::new();
        let mut complete = true;
        for url in &urls {
            match scrape(&client, url).await {
                Some(samples) => round.extend(samples),
                None => complete = false,
            }
        }
        // A round missing a target would show its counters as a drop: skip it whole.
        if complete {
            timeline.add(second, &round);
        } else {
            timeline.failed_scrapes += 1;
        }
    }
    timeline
}

async fn scrape(client: &reqwest::Client, url: &str) -> Option<Vec<Sample>> {
    let answer = client.get(url).send().await.ok()?;
    if !answer.status().is_success() {
        return None;
    }
    exposition::parse(&answer.text().await.ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(text: &str) -> Vec<Sample> {
        exposition::parse(text).expect("exposition")
    }

    #[test]
    fn rates_come_from_counter_differences_and_lag_is_summed_by_topic() {
        let mut timeline = MetricsTimeline::default();
        timeline.add(
            0.0,
            &samples("postino_ingest_messages_accepted_total 100\npostino_log_consumer_lag_records{topic=\"messages\",partition=\"0\",group=\"router\"} 7\npostino_log_consumer_lag_records{topic=\"messages\",partition=\"1\",group=\"router\"} 3\n"),
        );
        timeline.add(
            2.0,
            &samples("postino_ingest_messages_accepted_total 300\npostino_e2e_inbox_readable_seconds_count 50\n"),
        );
        assert!(
            timeline.points[0].rates.is_empty(),
            "no rate before a second scrape"
        );
        assert_eq!(timeline.points[0].lag["messages"], 10.0);
        assert_eq!(timeline.points[1].rates["accepted"], 100.0);
        assert_eq!(timeline.points[1].rates["readable"], 25.0);
        assert_eq!(timeline.points[1].lag["messages"], 0.0);
        assert_eq!(timeline.totals["accepted"], 300.0);
        // A restarted process starts its counters again.
        timeline.add(3.0, &samples("postino_ingest_messages_accepted_total 40\n"));
        assert_eq!(timeline.points[2].rates["accepted"], 40.0);
    }

    #[tokio::test]
    async fn a_target_that_does_not_answer_gives_no_round_and_a_stop_ends_the_watch() {
        let client = reqwest::Client::new();
        assert_eq!(scrape(&client, "http://127.0.0.1:9/metrics").await, None);
        let (stop, stopped) = watch::channel(false);
        stop.send(true).expect("stop");
        let timeline = watch(
            vec!["http://127.0.0.1:9/metrics".into()],
            Duration::from_secs(3600),
            stopped,
        )
        .await;
        assert_eq!(timeline.targets, ["http://127.0.0.1:9/metrics"]);
    }
}
