//! The `loadtest` binary: see the crate documentation and the README.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use loadtest::api::Api;
use loadtest::arrivals::{ArrivalReport, Follower};
use loadtest::cli::{Cli, Command, FakeApnsArgs, FakeFcmArgs, LanesArgs, RunArgs, SeedArgs};
use loadtest::engine::{drive, Plan};
use loadtest::pacing::Pacing;
use loadtest::report::Report;
use loadtest::scenarios::{self, Followers, Scenario, Seeded};
use loadtest::scrape;
use loadtest::standins::{
    self,
    apns::FakeApns,
    faults::{self, Faults},
    fcm::FakeFcm,
};
use model::installation::Platform;
use tokio::sync::watch;

// The generator shares the machine with Postino: every cycle it saves is Postino's.
// glibc's allocator showed as ~13 % of CPU under load (perf, BENCHMARKS.md);
// mimalloc's thread-local free lists make the generator's many short-lived request buffers cheap.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("loadtest: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    // Ctrl-C stops the load; what was measured is still reported.
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\nstopping: finishing requests in flight, then writing the report");
            let _ = stop.send(true);
        }
    });
    match cli.command {
        Command::Seed(args) => seed(args, stopped).await,
        Command::MassNotice(args) => load(args, Scenario::MassNotice, stopped).await,
        Command::Mixed(args) => {
            let scenario = Scenario::Mixed {
                payment_share: args.payment_share,
            };
            load(args.run, scenario, stopped).await
        }
        Command::Ingest(args) => load(args, Scenario::Ingest, stopped).await,
        Command::Lanes(args) => lanes(args, stopped).await,
        Command::FakeFcm(args) => fake_fcm(args).await,
        Command::FakeApns(args) => fake_apns(args).await,
    }
}

fn read_key(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read the public key {}", path.display()))
}

async fn serve_until_ctrl_c(
    app: axum::Router,
    listen: std::net::SocketAddr,
    what: &str,
) -> anyhow::Result<()> {
    let (addr, task) = standins::spawn(app, listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    eprintln!("{what} listening on http://{addr} (HTTP/2 cleartext); received notifications at /_standin/received");
    tokio::signal::ctrl_c()
        .await
        .context("cannot wait for Ctrl-C")?;
    task.abort();
    Ok(())
}

async fn fake_fcm(args: FakeFcmArgs) -> anyhow::Result<()> {
    let faults = Faults::new(args.faults, faults::FCM);
    let fcm = FakeFcm::new(
        &read_key(&args.public_key)?,
        Duration::from_secs(args.token_ttl),
        faults,
    )
    .context("--public-key must be an RSA public key in PEM")?;
    serve_until_ctrl_c(Arc::new(fcm).router(), args.listen, "fake FCM").await
}

async fn fake_apns(args: FakeApnsArgs) -> anyhow::Result<()> {
    let faults = Faults::new(args.faults, faults::APNS);
    let apns = FakeApns::new(
        &read_key(&args.public_key)?,
        args.key_id,
        args.team_id,
        args.topic,
        faults,
    )
    .context("--public-key must be a P-256 public key in PEM")?;
    serve_until_ctrl_c(Arc::new(apns).router(), args.listen, "fake APNs").await
}

async fn seed(args: SeedArgs, stopped: watch::Receiver<bool>) -> anyhow::Result<()> {
    let mix = args.mix();
    mix.check()?;
    let connections = args.connections as usize;
    let api = Api::new(&args.target.url, connections, &args.target.jwt_secret()?)?;
    let mut services = Vec::with_capacity(usize::from(args.services));
    for n in 0..args.services {
        services.push(
            api.create_service(&args.manage_key, &format!("Loadtest service {n}"))
                .await?,
        );
    }
    let first = services
        .first()
        .map(|s| s.id.clone())
        .context("no service created")?;
    let plan = Plan {
        pacing: Pacing::Closed,
        connections,
        requests: Some(args.citizens),
        duration: None,
        sample_every: 0,
        wait_for_inbox: false,
        label: "seed".into(),
    };
    let started = Instant::now();
    let workload = scenarios::seed_citizen(Arc::new(api.clone()), mix, first);
    let (stats, driven) = drive(api, &plan, workload, stopped).await;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "seeded {} citizens ({} profiles written or skipped per the mix) and {} services in {secs:.1} s ({:.0} citizens/s)",
        driven.sent,
        stats.ok(),
        services.len(),
        driven.sent as f64 / secs.max(1e-3)
    );
    if stats.error_count() > 0 {
        anyhow::bail!(
            "{} citizens could not be seeded: {:?}",
            stats.error_count(),
            stats.errors()
        );
    }
    let seeded = Seeded {
        target: args.target.url.clone(),
        citizens: args.citizens,
        mix,
        services,
    };
    seeded.save(&args.state)?;
    println!("wrote {}", args.state.display());
    Ok(())
}

/// Waits for what `follower` expects to arrive, with a progress bar.
async fn follow_up(
    follower: Option<Arc<Follower>>,
    what: &str,
    args: &RunArgs,
    stopped: &watch::Receiver<bool>,
) -> anyhow::Result<Option<ArrivalReport>> {
    let Some(follower) = follower else {
        return Ok(None);
    };
    let follower = Arc::try_unwrap(follower)
        .map_err(|_| anyhow::anyhow!("a request was still running after the load"))?;
    let bar = indicatif::ProgressBar::new(0);
    bar.set_message(format!("waiting for the {what}"));
    let report = follower
        .collect(args.push_patience, stopped.clone(), |done, of| {
            bar.set_length(of);
            bar.set_position(done);
        })
        .await?;
    bar.finish_and_clear();
    Ok(Some(report))
}

async fn lanes(args: LanesArgs, stopped: watch::Receiver<bool>) -> anyhow::Result<()> {
    if !(args.single_rate.is_finite() && args.single_rate > 0.0) {
        anyhow::bail!("--single-rate must be a positive number of messages per second");
    }
    let seeded = Arc::new(Seeded::load(&args.state)?);
    let plan = loadtest::lanes::LanesPlan {
        campaign_messages: args.messages.unwrap_or(seeded.citizens),
        per_call: args.bulk,
        bulk_connections: args.bulk_connections as usize,
        single_rate: args.single_rate,
        idle: args.idle,
    };
    let api = Api::new(&args.target.url, 64, &args.target.jwt_secret()?)?;
    let report = loadtest::lanes::run(api, seeded, &plan, &args.target.url, stopped).await?;
    print!("{}", report.summary());
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let path = args
        .out
        .join(format!("lanes-{}.json", standins::unix_millis()));
    std::fs::write(&path, serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    println!("  result: {}", path.display());
    Ok(())
}

async fn load(
    args: RunArgs,
    scenario: Scenario,
    stopped: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let seeded = Arc::new(Seeded::load(&args.state)?);
    let connections = args.connections as usize;
    let api = Api::new(&args.target.url, connections, &args.target.jwt_secret()?)?;
    let started_at = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();

    let baseline_per_sec = if args.baseline.is_zero() {
        None
    } else {
        let plan = Plan {
            pacing: Pacing::Closed,
            connections,
            requests: None,
            duration: Some(args.baseline),
            sample_every: 0,
            wait_for_inbox: false,
            label: "baseline GET /health".into(),
        };
        let (stats, driven) = drive(
            api.clone(),
            &plan,
            scenarios::health(Arc::new(api.clone())),
            stopped.clone(),
        )
        .await;
        Some(stats.ok() as f64 / driven.elapsed.as_secs_f64().max(1e-3))
    };

    let total = args.messages.unwrap_or(seeded.citizens);
    let per_call = args.bulk.unwrap_or(1);
    if args.bulk.is_some() && !matches!(scenario, Scenario::MassNotice | Scenario::Ingest) {
        anyhow::bail!("--bulk is for mass-notice and ingest: one service's campaign");
    }
    let plan = Plan {
        pacing: args.rate,
        connections,
        requests: Some(total.div_ceil(per_call)),
        duration: args.duration,
        sample_every: if scenario == Scenario::Ingest {
            0
        } else {
            // Every n-th message: for bulk calls, every call holding one.
            args.sample_every.div_ceil(per_call)
        },
        wait_for_inbox: scenario != Scenario::Ingest && !args.no_wait,
        label: match args.bulk {
            Some(n) => format!("{} --bulk {n}", scenario.name()),
            None => scenario.name().into(),
        },
    };
    let followers = if scenario == Scenario::Ingest || args.bulk.is_some() {
        Followers::default()
    } else {
        let start_ms = standins::unix_millis();
        Followers {
            pushes: Follower::standins(
                &[
                    (Platform::Fcm, args.fcm_standin.clone()),
                    (Platform::Apns, args.apns_standin.clone()),
                ],
                start_ms,
            )
            .await?
            .map(Arc::new),
            emails: args
                .smtp_sink_dir
                .as_deref()
                .map(|dir| Follower::mail_dir(dir, start_ms))
                .transpose()?
                .map(Arc::new),
        }
    };
    let (scraping, scraped) = watch::channel(false);
    let watcher = (!args.metrics.is_empty()).then(|| {
        tokio::spawn(scrape::watch(
            args.metrics.clone(),
            args.scrape_every,
            scraped,
        ))
    });
    // Keys unique to this run, so a second run against the same Postino is not a replay.
    let idempotency_keys = args
        .idempotency_keys
        .then(|| Arc::from(format!("loadtest-{}", standins::unix_millis())));
    let workload = match args.bulk {
        Some(per_call) => {
            let sender = seeded
                .services
                .first()
                .context("the state file has no service: run loadtest seed")?;
            let name = format!("loadtest {}", standins::unix_millis());
            let campaign = api.open_campaign(sender, &name).await?;
            scenarios::bulk_messages(
                Arc::new(api.clone()),
                Arc::clone(&seeded),
                scenario,
                Arc::from(campaign),
                per_call,
                total,
            )
        }
        None => scenarios::messages(
            Arc::new(api.clone()),
            Arc::clone(&seeded),
            scenario,
            followers.clone(),
            idempotency_keys,
        ),
    };
    let (stats, driven) = drive(api, &plan, workload, stopped.clone()).await;
    let Followers { pushes, emails } = followers;
    let (push, email) = if driven.interrupted {
        (None, None)
    } else {
        (
            follow_up(pushes, "pushes to reach the stand-ins", &args, &stopped).await?,
            follow_up(emails, "emails to reach the SMTP sink", &args, &stopped).await?,
        )
    };

    let _ = scraping.send(true);
    let metrics = match watcher {
        Some(task) => Some(task.await.context("the metrics scraper failed")?),
        None => None,
    };

    let secs = driven.elapsed.as_secs_f64().max(1e-3);
    let all_readable_after_secs = driven.all_readable_after.map(|d| d.as_secs_f64());
    let report = Report {
        scenario: plan.label.clone(),
        target: args.target.url.clone(),
        started_at,
        offered_rate: args.rate.offered(),
        connections,
        duration_secs: secs,
        sent: driven.sent,
        accepted: stats.ok(),
        accepted_per_sec: stats.ok() as f64 / secs,
        errors: stats.errors().clone(),
        latency_ms: stats.latency(),
        end_to_end_ms: stats.end_to_end(),
        expected_readable: driven.expected_readable,
        all_readable_after_secs,
        end_to_end_per_sec: all_readable_after_secs
            .map(|after| driven.expected_readable as f64 / after.max(1e-3)),
        baseline_per_sec,
        interrupted: driven.interrupted,
        timeline: stats.timeline(),
        push,
        email,
        metrics,
    };
    print!("{}", report.summary());
    let dir = args.out.join(format!(
        "{}-{}",
        scenario.name(),
        report.started_at.replace(':', "-")
    ));
    report
        .write(&dir)
        .with_context(|| format!("cannot write the report to {}", dir.display()))?;
    println!("  report: {}/report.html (and result.json)", dir.display());
    Ok(())
}
