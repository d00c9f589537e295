//! Following a run's messages to the push stand-ins. The seeded mix says which messages
//! should reach a phone; the run notes when each of those was sent; afterwards the stand-ins'
//! records (`GET /_standin/received`) say when each push arrived. From the two come send →
//! push latency, pushes per second, duplicates and what never arrived.
//!
//! Both clocks are the wall clock of their machine: run the stand-ins on the generator's
//! machine (or keep the clocks synchronised) for the latency to mean anything.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use model::installation::Platform;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::standins::recorder::{Page, Received};
use crate::stats::{histogram, Percentiles};

/// What the push side of a run measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PushReport {
    /// Accepted messages that should have reached a watched stand-in.
    pub expected: u64,
    /// Of those, how many did (each counted once).
    pub received: u64,
    /// Pushes of a message that had already arrived: a device notified twice.
    pub duplicates: u64,
    /// Send → arrival at the stand-in.
    pub send_to_push_ms: Percentiles,
    /// Seconds from the first send until the last push arrived.
    pub last_push_after_secs: Option<f64>,
    /// `received / last_push_after_secs`: pushes per second over the whole campaign.
    pub pushes_per_sec: Option<f64>,
    /// The busiest second.
    pub peak_per_sec: u64,
    /// Pushes that arrived in each second since the first send.
    pub timeline: Vec<u64>,
    /// The stand-ins' other answers during the run (the faults they injected), by status.
    pub refused: BTreeMap<u16, u64>,
    /// A stand-in kept fewer records than it accepted (raise its `--keep`): some arrivals
    /// could not be matched.
    pub records_dropped: bool,
}

enum Expected {
    Pending { sent_ms: u64 },
    Arrived,
}

/// Which pushes are still expected, and what arrived; one per run.
pub struct Tally {
    start_ms: u64,
    expected: HashMap<String, Expected>,
    latency: hdrhistogram::Histogram<u64>,
    received: u64,
    duplicates: u64,
    last_ms: Option<u64>,
    timeline: Vec<u64>,
}

impl std::fmt::Debug for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tally")
            .field("expected", &self.expected.len())
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}

/// The last second a push timeline holds.
const MAX_SECONDS: usize = 86_400;

impl Tally {
    /// A tally for a run whose first send was at `start_ms` (Unix milliseconds).
    pub fn new(start_ms: u64) -> Self {
        Self {
            start_ms,
            expected: HashMap::new(),
            latency: histogram(),
            received: 0,
            duplicates: 0,
            last_ms: None,
            timeline: Vec::new(),
        }
    }

    /// Message `id`, sent at `sent_ms`, should reach a watched stand-in.
    pub fn expect(&mut self, id: String, sent_ms: u64) {
        self.expected.insert(id, Expected::Pending { sent_ms });
    }

    /// How many expected pushes have not arrived.
    pub fn pending(&self) -> u64 {
        self.expected.len() as u64 - self.received
    }

    /// A push the stand-in recorded; pushes of other messages are not this run's.
    pub fn arrive(&mut self, push: &Received) {
        let Some(entry) = self.expected.get_mut(&push.message_id) else {
            return;
        };
        let Expected::Pending { sent_ms } = *entry else {
            self.duplicates += 1;
            return;
        };
        *entry = Expected::Arrived;
        self.received += 1;
        let millis = push.at_ms.saturating_sub(sent_ms);
        self.latency
            .saturating_record(millis.saturating_mul(1000).clamp(1, 600_000_000));
        self.last_ms = self.last_ms.max(Some(push.at_ms));
        let second = usize::try_from(push.at_ms.saturating_sub(self.start_ms) / 1000)
            .unwrap_or(usize::MAX)
            .min(MAX_SECONDS);
        if self.timeline.len() <= second {
            self.timeline.resize(second + 1, 0);
        }
        self.timeline[second] += 1;
    }

    pub fn report(&self) -> PushReport {
        let after = self
            .last_ms
            .map(|last| last.saturating_sub(self.start_ms) as f64 / 1000.0);
        PushReport {
            expected: self.expected.len() as u64,
            received: self.received,
            duplicates: self.duplicates,
            send_to_push_ms: Percentiles::of(&self.latency),
            last_push_after_secs: after,
            pushes_per_sec: after.map(|secs| self.received as f64 / secs.max(1e-3)),
            peak_per_sec: self.timeline.iter().copied().max().unwrap_or(0),
            timeline: self.timeline.clone(),
            refused: BTreeMap::new(),
            records_dropped: false,
        }
    }
}

/// One watched stand-in and how far its records have been read.
#[derive(Debug)]
struct Watched {
    platform: Platform,
    url: String,
    next: usize,
    /// Its answers when the run started, so only the run's are reported.
    answers_before: BTreeMap<u16, u64>,
    answers_now: BTreeMap<u16, u64>,
    dropped: bool,
}

/// The stand-ins a run watches, and the tally of the pushes it expects.
pub struct Pushes {
    http: reqwest::Client,
    watched: Vec<Watched>,
    tally: Mutex<Tally>,
}

impl std::fmt::Debug for Pushes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pushes")
            .field("watched", &self.watched)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot read the {platform} stand-in at {url} (is `loadtest fake-{platform}` running there?): {reason}")]
pub struct StandinError {
    platform: &'static str,
    url: String,
    reason: String,
}

fn platform_name(platform: Platform) -> &'static str {
    match platform {
        Platform::Fcm => "fcm",
        Platform::Apns => "apns",
    }
}

async fn page(http: &reqwest::Client, w: &Watched, from: usize) -> Result<Page, StandinError> {
    let error = |reason: String| StandinError {
        platform: platform_name(w.platform),
        url: w.url.clone(),
        reason,
    };
    let response = http
        .get(format!("{}/_standin/received?from={from}", w.url))
        .send()
        .await
        .map_err(|e| error(crate::api::transport_kind(&e)))?;
    if !response.status().is_success() {
        return Err(error(format!("HTTP {}", response.status().as_u16())));
    }
    response
        .json::<Page>()
        .await
        .map_err(|e| error(format!("unreadable page: {e}")))
}

impl Pushes {
    /// Watches the given stand-ins from what they hold now on; `None` when there is none.
    pub async fn watch(
        standins: &[(Platform, Option<String>)],
        start_ms: u64,
    ) -> Result<Option<Self>, StandinError> {
        let http = reqwest::Client::builder()
            .http2_prior_knowledge()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| StandinError {
                platform: "push",
                url: String::new(),
                reason: e.to_string(),
            })?;
        let mut watched = Vec::new();
        for (platform, url) in standins {
            let Some(url) = url else { continue };
            let mut w = Watched {
                platform: *platform,
                url: url.trim_end_matches('/').to_string(),
                next: 0,
                answers_before: BTreeMap::new(),
                answers_now: BTreeMap::new(),
                dropped: false,
            };
            // Ask past any end: the page then says how much is stored already.
            let first = page(&http, &w, usize::MAX).await?;
            w.next = first.stored;
            w.answers_before = first.answers.clone();
            w.answers_now = first.answers;
            watched.push(w);
        }
        if watched.is_empty() {
            return Ok(None);
        }
        Ok(Some(Self {
            http,
            watched,
            tally: Mutex::new(Tally::new(start_ms)),
        }))
    }

    fn tally(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a push to `platform` is one this run watches for.
    pub fn watches(&self, platform: Platform) -> bool {
        self.watched.iter().any(|w| w.platform == platform)
    }

    /// Message `id`, sent at `sent_ms`, should reach a phone on `platform`.
    pub fn expect(&self, platform: Platform, id: String, sent_ms: u64) {
        if self.watches(platform) {
            self.tally().expect(id, sent_ms);
        }
    }

    /// Reads the stand-ins' records until every expected push arrived, or none arrived for
    /// `patience`, or `stop`; then reports.
    pub async fn collect(
        mut self,
        patience: Duration,
        mut stop: watch::Receiver<bool>,
        progress: impl Fn(u64, u64),
    ) -> Result<PushReport, StandinError> {
        let mut last_news = Instant::now();
        loop {
            let mut news = false;
            for w in &mut self.watched {
                loop {
                    let page = page(&self.http, w, w.next).await?;
                    w.answers_now = page.answers;
                    w.dropped |= page.accepted > page.stored as u64;
                    if page.received.is_empty() {
                        break;
                    }
                    news = true;
                    w.next += page.received.len();
                    let mut tally = self.tally.lock().unwrap_or_else(|p| p.into_inner());
                    for push in &page.received {
                        tally.arrive(push);
                    }
                }
            }
            let (received, pending) = {
                let t = self.tally();
                (t.received, t.pending())
            };
            progress(received, received + pending);
            if news {
                last_news = Instant::now();
            }
            if pending == 0 || last_news.elapsed() >= patience || *stop.borrow() {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                _ = stop.changed() => {}
            }
        }
        let mut report = self.tally().report();
        for w in &self.watched {
            report.records_dropped |= w.dropped;
            for (status, now) in &w.answers_now {
                let before = w.answers_before.get(status).copied().unwrap_or(0);
                if *status != 200 && *now > before {
                    *report.refused.entry(*status).or_default() += now - before;
                }
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(id: &str, at_ms: u64) -> Received {
        Received {
            message_id: id.into(),
            token: "t".into(),
            title: "Hai un nuovo messaggio".into(),
            body: "Entra nell'app per leggerlo".into(),
            at_ms,
        }
    }

    #[test]
    fn latency_rate_and_timeline_come_from_the_arrivals() {
        let mut t = Tally::new(10_000);
        for n in 0..100u64 {
            t.expect(format!("m{n}"), 10_000 + n * 10);
        }
        assert_eq!(t.pending(), 100);
        // Each arrives 50 ms after it was sent; the last at 10_000 + 990 + 50.
        for n in 0..100u64 {
            t.arrive(&push(&format!("m{n}"), 10_000 + n * 10 + 50));
        }
        let r = t.report();
        assert_eq!((r.expected, r.received, r.duplicates), (100, 100, 0));
        assert_eq!(t.pending(), 0);
        assert!((r.send_to_push_ms.p50 - 50.0).abs() < 0.5, "{r:?}");
        assert!((r.send_to_push_ms.max - 50.0).abs() < 0.5, "{r:?}");
        assert_eq!(r.last_push_after_secs, Some(1.04));
        assert!((r.pushes_per_sec.unwrap_or_default() - 100.0 / 1.04).abs() < 0.01);
        assert_eq!(r.timeline, vec![95, 5]);
        assert_eq!(r.peak_per_sec, 95);
    }

    #[test]
    fn duplicates_and_strangers_are_told_apart() {
        let mut t = Tally::new(0);
        t.expect("mine".into(), 0);
        t.expect("lost".into(), 0);
        t.arrive(&push("mine", 20));
        t.arrive(&push("mine", 30));
        t.arrive(&push("not-this-run", 40));
        let r = t.report();
        assert_eq!((r.expected, r.received, r.duplicates), (2, 1, 1));
        assert_eq!(t.pending(), 1, "the lost push is still pending");
        assert_eq!(r.send_to_push_ms.count, 1);
    }

    #[test]
    fn a_run_without_arrivals_reports_no_rate() {
        let mut t = Tally::new(5);
        t.expect("m".into(), 5);
        let r = t.report();
        assert_eq!(r.received, 0);
        assert_eq!(r.pushes_per_sec, None);
        assert_eq!(r.send_to_push_ms, Percentiles::default());
    }

    #[test]
    fn a_push_stamped_before_its_send_counts_as_instant_not_negative() {
        let mut t = Tally::new(1000);
        t.expect("m".into(), 1000);
        t.arrive(&push("m", 990));
        let r = t.report();
        assert_eq!(r.received, 1);
        assert!(r.send_to_push_ms.max <= 0.01, "{r:?}");
    }
}
