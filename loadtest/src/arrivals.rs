//! Following a run's messages to where their notifications arrive: the push stand-ins
//! (`GET /_standin/received`) and the SMTP sink's mail directory (`scripts/smtp-sink.py`
//! writes `<n>.eml` in order, stamped with `X-Received-At-Ms`). The seeded mix says which
//! messages should arrive; the run notes when each of those was sent; afterwards the
//! arrivals say when each came. From the two come send → arrival latency, the rate,
//! duplicates and what never arrived.
//!
//! Both clocks are the wall clock of their machine: run the stand-ins and the sink on the
//! generator's machine (or keep the clocks synchronised) for the latency to mean anything.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use model::installation::Platform;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::standins::recorder::Page;
use crate::stats::{histogram, Percentiles};

/// What one kind of notification (pushes, emails) of a run measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ArrivalReport {
    /// Accepted messages that should have arrived where the run watched.
    pub expected: u64,
    /// Of those, how many did (each counted once).
    pub received: u64,
    /// Arrivals for a message that had already arrived: a citizen notified twice.
    pub duplicates: u64,
    /// Send → arrival.
    #[serde(alias = "send_to_push_ms")]
    pub latency_ms: Percentiles,
    /// Seconds from the first send until the last arrival.
    #[serde(alias = "last_push_after_secs")]
    pub last_after_secs: Option<f64>,
    /// `received / last_after_secs`: arrivals per second over the whole campaign.
    #[serde(alias = "pushes_per_sec")]
    pub per_sec: Option<f64>,
    /// The busiest second.
    pub peak_per_sec: u64,
    /// Arrivals in each second since the first send.
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

    /// Message `message_id` arrived at `at_ms`; arrivals of other messages are not this
    /// run's.
    pub fn arrive(&mut self, message_id: &str, at_ms: u64) {
        let Some(entry) = self.expected.get_mut(message_id) else {
            return;
        };
        let Expected::Pending { sent_ms } = *entry else {
            self.duplicates += 1;
            return;
        };
        *entry = Expected::Arrived;
        self.received += 1;
        let millis = at_ms.saturating_sub(sent_ms);
        self.latency
            .saturating_record(millis.saturating_mul(1000).clamp(1, 600_000_000));
        self.last_ms = self.last_ms.max(Some(at_ms));
        let second = usize::try_from(at_ms.saturating_sub(self.start_ms) / 1000)
            .unwrap_or(usize::MAX)
            .min(MAX_SECONDS);
        if self.timeline.len() <= second {
            self.timeline.resize(second + 1, 0);
        }
        self.timeline[second] += 1;
    }

    pub fn report(&self) -> ArrivalReport {
        let after = self
            .last_ms
            .map(|last| last.saturating_sub(self.start_ms) as f64 / 1000.0);
        ArrivalReport {
            expected: self.expected.len() as u64,
            received: self.received,
            duplicates: self.duplicates,
            latency_ms: Percentiles::of(&self.latency),
            last_after_secs: after,
            per_sec: after.map(|secs| self.received as f64 / secs.max(1e-3)),
            peak_per_sec: self.timeline.iter().copied().max().unwrap_or(0),
            timeline: self.timeline.clone(),
            refused: BTreeMap::new(),
            records_dropped: false,
        }
    }
}

/// Where arrivals are read from, and how far.
#[derive(Debug)]
enum Source {
    /// A push stand-in's records.
    Standin {
        platform: Platform,
        url: String,
        next: usize,
        /// Its answers when the run started, so only the run's are reported.
        answers_before: BTreeMap<u16, u64>,
        answers_now: BTreeMap<u16, u64>,
        dropped: bool,
    },
    /// The SMTP sink's directory: `<n>.eml` for n = 1, 2, … in order of receipt.
    MailDir { dir: PathBuf, next: u64 },
}

/// The messages a run follows to one kind of destination, and what arrived there.
pub struct Follower {
    http: reqwest::Client,
    sources: Vec<Source>,
    tally: Mutex<Tally>,
}

impl std::fmt::Debug for Follower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follower")
            .field("sources", &self.sources)
            .finish_non_exhaustive()
    }
}

/// Why arrivals cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read arrivals from {place}: {reason}")]
pub struct ArrivalError {
    place: String,
    reason: String,
}

fn platform_name(platform: Platform) -> &'static str {
    match platform {
        Platform::Fcm => "fcm",
        Platform::Apns => "apns",
    }
}

async fn page(
    http: &reqwest::Client,
    platform: Platform,
    url: &str,
    from: usize,
) -> Result<Page, ArrivalError> {
    let error = |reason: String| ArrivalError {
        place: format!(
            "the {0} stand-in at {url} (is `loadtest fake-{0}` running there?)",
            platform_name(platform)
        ),
        reason,
    };
    let response = http
        .get(format!("{url}/_standin/received?from={from}"))
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

/// The message id and arrival time a sink's mail carries in its headers.
pub fn mail_arrival(mail: &[u8]) -> Option<(String, u64)> {
    let head = mail
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(mail, |end| &mail[..end]);
    let head = String::from_utf8_lossy(head);
    let value = |name: &str| {
        head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name)
                .then(|| value.trim().to_string())
        })
    };
    Some((
        value("X-Postino-Message-Id")?,
        value("X-Received-At-Ms")?.parse().ok()?,
    ))
}

impl Source {
    /// What arrived since the last read.
    async fn read(&mut self, http: &reqwest::Client) -> Result<Vec<(String, u64)>, ArrivalError> {
        match self {
            Self::Standin {
                platform,
                url,
                next,
                answers_now,
                dropped,
                ..
            } => {
                let page = page(http, *platform, url, *next).await?;
                *answers_now = page.answers;
                *dropped |= page.accepted > page.stored as u64;
                *next += page.received.len();
                Ok(page
                    .received
                    .into_iter()
                    .map(|r| (r.message_id, r.at_ms))
                    .collect())
            }
            Self::MailDir { dir, next } => {
                let mut arrived = Vec::new();
                loop {
                    let path = dir.join(format!("{next}.eml"));
                    let mail = match std::fs::read(&path) {
                        Ok(mail) => mail,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                        Err(e) => {
                            return Err(ArrivalError {
                                place: path.display().to_string(),
                                reason: e.to_string(),
                            })
                        }
                    };
                    *next += 1;
                    // A mail that is not Postino's (or lacks the sink's stamp) is not this run's.
                    arrived.extend(mail_arrival(&mail));
                    if arrived.len() >= 10_000 {
                        break;
                    }
                }
                Ok(arrived)
            }
        }
    }
}

impl Follower {
    fn new(sources: Vec<Source>, start_ms: u64) -> Result<Self, ArrivalError> {
        let http = reqwest::Client::builder()
            .http2_prior_knowledge()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| ArrivalError {
                place: "an HTTP client".into(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            http,
            sources,
            tally: Mutex::new(Tally::new(start_ms)),
        })
    }

    /// Follows pushes to the given stand-ins from what they hold now on; `None` without any.
    pub async fn standins(
        standins: &[(Platform, Option<String>)],
        start_ms: u64,
    ) -> Result<Option<Self>, ArrivalError> {
        let mut follower = Self::new(Vec::new(), start_ms)?;
        for (platform, url) in standins {
            let Some(url) = url else { continue };
            let url = url.trim_end_matches('/').to_string();
            // Ask past any end: the page then says how much is stored already.
            let first = page(&follower.http, *platform, &url, usize::MAX).await?;
            follower.sources.push(Source::Standin {
                platform: *platform,
                url,
                next: first.stored,
                answers_before: first.answers.clone(),
                answers_now: first.answers,
                dropped: false,
            });
        }
        Ok((!follower.sources.is_empty()).then_some(follower))
    }

    /// Follows emails to the SMTP sink writing into `dir`, from what it holds now on.
    pub fn mail_dir(dir: &Path, start_ms: u64) -> Result<Self, ArrivalError> {
        let held = std::fs::read_dir(dir)
            .map_err(|e| ArrivalError {
                place: format!("{} (is scripts/smtp-sink.py writing there?)", dir.display()),
                reason: e.to_string(),
            })?
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".eml"))
            .count() as u64;
        Self::new(
            vec![Source::MailDir {
                dir: dir.to_path_buf(),
                next: held + 1,
            }],
            start_ms,
        )
    }

    fn tally(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a push to `platform` is one this follower watches for.
    pub fn watches(&self, platform: Platform) -> bool {
        self.sources
            .iter()
            .any(|s| matches!(s, Source::Standin { platform: p, .. } if *p == platform))
    }

    /// Message `id`, sent at `sent_ms`, should arrive.
    pub fn expect(&self, id: String, sent_ms: u64) {
        self.tally().expect(id, sent_ms);
    }

    /// Reads arrivals until every expected one came, or none came for `patience`, or
    /// `stop`; then reports.
    pub async fn collect(
        mut self,
        patience: Duration,
        mut stop: watch::Receiver<bool>,
        progress: impl Fn(u64, u64),
    ) -> Result<ArrivalReport, ArrivalError> {
        let mut last_news = Instant::now();
        loop {
            let mut news = false;
            for source in &mut self.sources {
                loop {
                    let arrived = source.read(&self.http).await?;
                    if arrived.is_empty() {
                        break;
                    }
                    news = true;
                    let mut tally = self.tally.lock().unwrap_or_else(|p| p.into_inner());
                    for (id, at_ms) in &arrived {
                        tally.arrive(id, *at_ms);
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
        for source in &self.sources {
            if let Source::Standin {
                answers_before,
                answers_now,
                dropped,
                ..
            } = source
            {
                report.records_dropped |= *dropped;
                for (status, now) in answers_now {
                    let before = answers_before.get(status).copied().unwrap_or(0);
                    if *status != 200 && *now > before {
                        *report.refused.entry(*status).or_default() += now - before;
                    }
                }
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_rate_and_timeline_come_from_the_arrivals() {
        let mut t = Tally::new(10_000);
        for n in 0..100u64 {
            t.expect(format!("m{n}"), 10_000 + n * 10);
        }
        assert_eq!(t.pending(), 100);
        // Each arrives 50 ms after it was sent; the last at 10_000 + 990 + 50.
        for n in 0..100u64 {
            t.arrive(&format!("m{n}"), 10_000 + n * 10 + 50);
        }
        let r = t.report();
        assert_eq!((r.expected, r.received, r.duplicates), (100, 100, 0));
        assert_eq!(t.pending(), 0);
        assert!((r.latency_ms.p50 - 50.0).abs() < 0.5, "{r:?}");
        assert!((r.latency_ms.max - 50.0).abs() < 0.5, "{r:?}");
        assert_eq!(r.last_after_secs, Some(1.04));
        assert!((r.per_sec.unwrap_or_default() - 100.0 / 1.04).abs() < 0.01);
        assert_eq!(r.timeline, vec![95, 5]);
        assert_eq!(r.peak_per_sec, 95);
    }

    #[test]
    fn duplicates_and_strangers_are_told_apart() {
        let mut t = Tally::new(0);
        t.expect("mine".into(), 0);
        t.expect("lost".into(), 0);
        t.arrive("mine", 20);
        t.arrive("mine", 30);
        t.arrive("not-this-run", 40);
        let r = t.report();
        assert_eq!((r.expected, r.received, r.duplicates), (2, 1, 1));
        assert_eq!(t.pending(), 1, "the lost push is still pending");
        assert_eq!(r.latency_ms.count, 1);
    }

    #[test]
    fn a_run_without_arrivals_reports_no_rate() {
        let mut t = Tally::new(5);
        t.expect("m".into(), 5);
        let r = t.report();
        assert_eq!(r.received, 0);
        assert_eq!(r.per_sec, None);
        assert_eq!(r.latency_ms, Percentiles::default());
    }

    #[test]
    fn a_sink_mail_names_its_message_and_arrival() {
        let mail = b"X-Received-At-Ms: 1764000000123\r\nX-Envelope-To: a@b.it\r\nSubject: x\r\nx-postino-message-id: 01ARZ3NDEKTSV4RRFFQ69G5FAV\r\n\r\nX-Received-At-Ms: 5\r\n";
        assert_eq!(
            mail_arrival(mail),
            Some(("01ARZ3NDEKTSV4RRFFQ69G5FAV".to_string(), 1_764_000_000_123))
        );
        assert_eq!(mail_arrival(b"Subject: not ours\r\n\r\nbody"), None);
        assert_eq!(
            mail_arrival(b"X-Postino-Message-Id: m\r\nX-Received-At-Ms: soon\r\n\r\n"),
            None,
            "a stamp that is not a number"
        );
    }

    #[tokio::test]
    async fn a_mail_dir_is_read_in_order_from_what_it_held() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mail = |id: &str, at: u64| {
            format!("X-Received-At-Ms: {at}\r\nX-Postino-Message-Id: {id}\r\n\r\nbody")
        };
        std::fs::write(dir.path().join("1.eml"), mail("old", 1)).expect("write");
        let follower = Follower::mail_dir(dir.path(), 1000).expect("follower");
        follower.expect("a".into(), 1000);
        follower.expect("b".into(), 1000);
        std::fs::write(dir.path().join("2.eml"), mail("a", 1100)).expect("write");
        std::fs::write(dir.path().join("3.eml"), mail("b", 1300)).expect("write");
        let (_, stopped) = watch::channel(false);
        let r = follower
            .collect(Duration::from_secs(5), stopped, |_, _| {})
            .await
            .expect("collect");
        assert_eq!((r.expected, r.received), (2, 2));
        assert!((r.latency_ms.max - 300.0).abs() < 1.0, "{r:?}");
    }

    #[tokio::test]
    async fn a_missing_stand_in_or_mail_dir_is_named_in_the_error() {
        // Port 1 on loopback: nothing listens there.
        let err = Follower::standins(&[(Platform::Fcm, Some("http://127.0.0.1:1".into()))], 0)
            .await
            .expect_err("no stand-in");
        let text = err.to_string();
        assert!(
            text.contains("fake-fcm") && text.contains("127.0.0.1:1"),
            "{text}"
        );
        let none = Follower::standins(&[(Platform::Apns, None)], 0)
            .await
            .expect("nothing to watch");
        assert!(none.is_none());
        let err = Follower::mail_dir(Path::new("/nonexistent/mail"), 0).expect_err("no dir");
        assert!(err.to_string().contains("smtp-sink.py"), "{err}");
    }

    #[test]
    fn a_push_stamped_before_its_send_counts_as_instant_not_negative() {
        let mut t = Tally::new(1000);
        t.expect("m".into(), 1000);
        t.arrive("m", 990);
        let r = t.report();
        assert_eq!(r.received, 1);
        assert!(r.latency_ms.max <= 0.01, "{r:?}");
    }
}
