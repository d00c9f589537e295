//! Command-line arguments, and the small parsers behind them.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::pacing::Pacing;
use crate::population::Mix;

#[derive(Debug, Parser)]
#[command(
    name = "loadtest",
    version,
    about = "Rehearse a campaign against a running Postino"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the services and the citizens' profiles the scenarios send to.
    Seed(SeedArgs),
    /// One service, one message to each citizen (like ACI's car-tax notices).
    MassNotice(RunArgs),
    /// Many services, citizens drawn at random, a share of payment notices.
    Mixed(MixedArgs),
    /// The senders' API alone: like mass-notice, without following messages to the inbox.
    Ingest(RunArgs),
    /// Whether a campaign delays one-off messages: one-off messages at a steady rate on an
    /// idle Postino, then again while a campaign goes through the bulk API; both lanes'
    /// send → inbox latencies side by side.
    Lanes(LanesArgs),
    /// A stand-in for FCM HTTP v1 and its OAuth2 token endpoint (HTTP/2, cleartext).
    FakeFcm(FakeFcmArgs),
    /// A stand-in for APNs' provider API (HTTP/2, cleartext).
    FakeApns(FakeApnsArgs),
}

#[derive(Debug, Args)]
pub struct FakeFcmArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9011")]
    pub listen: std::net::SocketAddr,
    /// The service account's public key (PEM), to check the signed grants.
    #[arg(long)]
    pub public_key: PathBuf,
    /// Lifetime of the access tokens issued, in seconds.
    #[arg(long, default_value_t = 3600)]
    pub token_ttl: u64,
    #[command(flatten)]
    pub faults: crate::standins::faults::FaultArgs,
}

#[derive(Debug, Args)]
pub struct FakeApnsArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9012")]
    pub listen: std::net::SocketAddr,
    /// The public key of the `.p8` signing key (PEM), to check provider tokens.
    #[arg(long)]
    pub public_key: PathBuf,
    /// The key id provider tokens must name (`kid`).
    #[arg(long)]
    pub key_id: String,
    /// The team id provider tokens must be issued by (`iss`).
    #[arg(long)]
    pub team_id: String,
    /// The app's bundle id requests must name in `apns-topic`.
    #[arg(long)]
    pub topic: String,
    #[command(flatten)]
    pub faults: crate::standins::faults::FaultArgs,
}

#[derive(Debug, Args)]
pub struct Target {
    /// Postino's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Postino's HS256 citizen-token secret (its `jwt_secret`).
    #[arg(long, env = "POSTINO_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Postino's data directory, to read the generated development secret from instead.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

impl Target {
    pub fn jwt_secret(&self) -> anyhow::Result<String> {
        if let Some(s) = &self.jwt_secret {
            return Ok(s.clone());
        }
        let Some(dir) = &self.data_dir else {
            anyhow::bail!("give --jwt-secret (or POSTINO_JWT_SECRET), or --data-dir of a Postino that generated its development secret");
        };
        let path = dir.join("jwt-dev-secret");
        Ok(std::fs::read_to_string(&path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?
            .trim()
            .to_string())
    }
}

#[derive(Debug, Args)]
pub struct SeedArgs {
    #[command(flatten)]
    pub target: Target,
    /// Postino's manage key, to create the services.
    #[arg(long, env = "POSTINO_MANAGE_KEY", hide_env_values = true)]
    pub manage_key: String,
    /// How many citizens.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=crate::population::MAX_CITIZENS))]
    pub citizens: u64,
    /// How many services (the first is the mass-notice sender).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub services: u16,
    /// % of citizens without a profile.
    #[arg(long, default_value_t = Mix::default().no_profile)]
    pub no_profile: u8,
    /// % of citizens whose inbox is disabled.
    #[arg(long, default_value_t = Mix::default().inbox_disabled)]
    pub inbox_disabled: u8,
    /// % of citizens who blocked the first service.
    #[arg(long, default_value_t = Mix::default().service_blocked)]
    pub service_blocked: u8,
    /// % of profiles with a validated, enabled email.
    #[arg(long, default_value_t = Mix::default().email)]
    pub email: u8,
    /// % of profiles with FULL push content (the others ANONYMOUS).
    #[arg(long, default_value_t = Mix::default().push_full)]
    pub push_full: u8,
    /// % of profiles with a registered phone.
    #[arg(long, default_value_t = Mix::default().devices)]
    pub devices: u8,
    /// % of those phones on APNs (the others on FCM).
    #[arg(long, default_value_t = Mix::default().apns)]
    pub apns: u8,
    /// Concurrent requests while seeding.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub connections: u32,
    /// Where to write what was seeded, for the scenarios.
    #[arg(long, default_value = "loadtest-state.json")]
    pub state: PathBuf,
}

impl SeedArgs {
    pub fn mix(&self) -> Mix {
        Mix {
            no_profile: self.no_profile,
            inbox_disabled: self.inbox_disabled,
            service_blocked: self.service_blocked,
            email: self.email,
            push_full: self.push_full,
            devices: self.devices,
            apns: self.apns,
        }
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub target: Target,
    /// What `loadtest seed` wrote.
    #[arg(long, default_value = "loadtest-state.json")]
    pub state: PathBuf,
    /// Offered requests per second (open model), or `max` (closed model: as fast as it goes).
    #[arg(long, default_value = "max", value_parser = |s: &str| Pacing::parse(s))]
    pub rate: Pacing,
    /// Stop after this many messages (default: one per seeded citizen).
    #[arg(long)]
    pub messages: Option<u64>,
    /// Stop after this long (`30s`, `5m`); whichever of this and --messages comes first.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Closed model: concurrent senders. Open model: most requests in flight.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub connections: u32,
    /// Follow every n-th message to the inbox for send → inbox latency (0: none). Each
    /// followed message polls the citizen API until it is there, which is load too: keep
    /// samples to a few per second.
    #[arg(long, default_value_t = 1000)]
    pub sample_every: u64,
    /// First measure the no-op endpoint (`GET /health`) for this long with the same
    /// generator, and report accepted/s as a share of it (`0s`: skip).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub baseline: Duration,
    /// Do not wait for the last message to reach its inbox.
    #[arg(long)]
    pub no_wait: bool,
    /// Send through the bulk API instead (mass-notice and ingest): open a campaign for the
    /// first seeded service, then send the messages as JSON calls of this many (1 to
    /// 10,000). Latency is then per call; pushes and emails are not followed.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub bulk: Option<u64>,
    /// Send each message with an `Idempotency-Key` of its own (`loadtest-<run>-<n>`), as a
    /// careful sender would, to measure what keyed submits cost.
    #[arg(long)]
    pub idempotency_keys: bool,
    /// The FCM stand-in Postino pushes to (`loadtest fake-fcm`): the run then waits for the
    /// pushes to seeded FCM phones and reports send → push latency and pushes/s.
    #[arg(long)]
    pub fcm_standin: Option<String>,
    /// The APNs stand-in Postino pushes to (`loadtest fake-apns`), likewise.
    #[arg(long)]
    pub apns_standin: Option<String>,
    /// The directory the SMTP sink Postino sends to writes into (`scripts/smtp-sink.py
    /// DIR`): the run then waits for the emails to seeded addresses and reports send →
    /// mailbox latency and emails/s.
    #[arg(long)]
    pub smtp_sink_dir: Option<PathBuf>,
    /// Stop waiting for pushes or emails after this long without a new one (some may never
    /// come: a stand-in told to answer "unregistered", say).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub push_patience: Duration,
    /// A Postino process's metrics (`http://127.0.0.1:9464/metrics`); repeat it for each
    /// process when roles run apart. The run then scrapes them every --scrape-every and the
    /// report plots each stage's consumer lag and rate as Postino counted them.
    #[arg(long = "metrics", value_name = "URL")]
    pub metrics: Vec<String>,
    /// How often to scrape --metrics.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub scrape_every: Duration,
    /// Where to write result.json and report.html.
    #[arg(long, default_value = "loadtest-results")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct LanesArgs {
    #[command(flatten)]
    pub target: Target,
    /// What `loadtest seed` wrote.
    #[arg(long, default_value = "loadtest-state.json")]
    pub state: PathBuf,
    /// Messages in the campaign (default: one per seeded citizen).
    #[arg(long)]
    pub messages: Option<u64>,
    /// The campaign's messages per bulk call.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub bulk: u64,
    /// Bulk calls in flight.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub bulk_connections: u32,
    /// One-off messages per second, each followed to its inbox.
    #[arg(long, default_value_t = 20.0)]
    pub single_rate: f64,
    /// How long to measure the one-off messages on an idle Postino first.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub idle: Duration,
    /// Where to write lanes.json.
    #[arg(long, default_value = "loadtest-results")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct MixedArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Share of messages that are payment notices (0–1).
    #[arg(long, default_value_t = 0.2, value_parser = parse_share)]
    pub payment_share: f64,
}

/// `30s`, `5m`, `1h`, `250ms`, or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((text, "s"), |at| text.split_at(at));
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration; use e.g. 30s, 5m, 1h or 250ms"))?;
    let secs = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => {
            return Err(format!(
                "{text:?}: unknown unit {unit:?}; use ms, s, m or h"
            ))
        }
    };
    if !secs.is_finite() || secs > 7.0 * 86_400.0 {
        return Err(format!("{text:?} is out of range (at most a week)"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_share(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("{text:?} must be a number from 0 to 1")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn bad_durations_say_what_is_expected() {
        for bad in ["", "soon", "5 parsecs", "3d", "99999h", "-1s"] {
            let err = parse_duration(bad).expect_err(bad);
            assert!(
                err.contains("duration") || err.contains("unit") || err.contains("range"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn bad_arguments_are_refused_by_name() {
        let err =
            Cli::try_parse_from(["loadtest", "mass-notice", "--rate", "fast"]).expect_err("rate");
        assert!(err.to_string().contains("--rate"), "{err}");
        let err =
            Cli::try_parse_from(["loadtest", "mixed", "--payment-share", "2"]).expect_err("share");
        assert!(err.to_string().contains("0 to 1"), "{err}");
        let err = Cli::try_parse_from(["loadtest", "seed", "--manage-key", "k", "--citizens", "0"])
            .expect_err("none");
        assert!(err.to_string().contains("--citizens"), "{err}");
        let ok =
            Cli::try_parse_from(["loadtest", "ingest", "--rate", "10000", "--duration", "30s"])
                .expect("valid");
        let Command::Ingest(run) = ok.command else {
            panic!("ingest expected")
        };
        assert_eq!(run.rate, Pacing::Open { rate: 10_000.0 });
        assert_eq!(run.duration, Some(Duration::from_secs(30)));
    }
}
