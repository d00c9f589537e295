//! The `loadtest` binary against a real Postino started in this process on port 0: it seeds
//! a population, runs a mass notice, and writes a report whose numbers match what Postino
//! did. Nothing here asserts speed.

use std::path::Path;
use std::process::Command;

use loadtest::population::Mix;
use loadtest::report::Report;
use postino::app::App;
use postino::config::Config;
use push_standins::standins;

mod push_standins;

const JWT_SECRET: &str = "loadtest test secret for citizen tokens";
const MANAGE_KEY: &str = "loadtest-manage-key-0123456789";

async fn postino(dir: &Path) -> App {
    let mut config = Config {
        listen: "127.0.0.1:0".parse().expect("addr"),
        metrics_listen: postino::config::MetricsListen::On("127.0.0.1:0".parse().expect("addr")),
        data_dir: dir.to_path_buf(),
        manage_key: Some(MANAGE_KEY.into()),
        ..Config::default()
    };
    config.jwt.secret = Some(JWT_SECRET.into());
    App::start(&config).await.expect("start postino")
}

/// Runs the tool (off the runtime's threads, as it blocks until done).
async fn loadtest(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_loadtest"))
            .args(&args)
            .env("POSTINO_JWT_SECRET", JWT_SECRET)
            .env_remove("POSTINO_MANAGE_KEY")
            .output()
            .expect("run loadtest")
    })
    .await
    .expect("join")
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// A mass notice that succeeded: what it printed, where its report is, and the report.
fn finished(run: &std::process::Output, out: &Path) -> (String, std::path::PathBuf, Report) {
    let stdout = String::from_utf8_lossy(&run.stdout).to_string();
    assert!(
        run.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let dir = std::fs::read_dir(out)
        .expect("results directory")
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().starts_with("mass-notice-"))
        .expect("a mass-notice result")
        .path();
    let report = serde_json::from_str(
        &std::fs::read_to_string(dir.join("result.json")).expect("result.json"),
    )
    .expect("valid result.json");
    (stdout, dir, report)
}

/// A Postino of the test's own, seeded with `citizens` (default mix) and `services`: where
/// it listens, the state file, and where results go.
struct Seeded {
    app: App,
    url: String,
    state_arg: String,
    out: std::path::PathBuf,
    out_arg: String,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

async fn seeded(citizens: u64, services: u16) -> Seeded {
    let data = tempfile::tempdir().expect("tempdir");
    let work = tempfile::tempdir().expect("tempdir");
    let app = postino(data.path()).await;
    let url = format!("http://{}", app.addr);
    let state_arg = work.path().join("state.json").display().to_string();
    let out = work.path().join("results");
    let out_arg = out.display().to_string();
    seed(&url, &state_arg, citizens, services).await;
    Seeded {
        app,
        url,
        state_arg,
        out,
        out_arg,
        _dirs: (data, work),
    }
}

/// `loadtest seed` with the default mix; it must succeed.
async fn seed(url: &str, state: &str, citizens: u64, services: u16) {
    let seeded = loadtest(args(&[
        "seed",
        "--url",
        url,
        "--manage-key",
        MANAGE_KEY,
        "--citizens",
        &citizens.to_string(),
        "--services",
        &services.to_string(),
        "--state",
        state,
    ]))
    .await;
    assert!(
        seeded.status.success(),
        "{}",
        String::from_utf8_lossy(&seeded.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seeded_mass_notice_is_measured_and_reported() {
    let Seeded {
        app: _app,
        url,
        state_arg,
        out,
        out_arg,
        _dirs,
    } = seeded(400, 2).await;

    let run = loadtest(args(&[
        "mass-notice",
        "--url",
        &url,
        "--state",
        &state_arg,
        "--rate",
        "2000",
        "--connections",
        "16",
        "--sample-every",
        "10",
        "--baseline",
        "1s",
        // Each message with a key of its own: 400 keys, 400 messages.
        "--idempotency-keys",
        "--out",
        &out_arg,
    ]))
    .await;
    let (stdout, dir, report) = finished(&run, &out);
    assert!(stdout.contains("accepted"), "{stdout}");
    let mix = Mix::default();
    let readable = (0..400).filter(|&i| mix.readable(i, 0)).count() as u64;

    assert_eq!(report.sent, 400);
    assert_eq!(report.accepted, 400, "{:?}", report.errors);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.offered_rate, Some(2000.0));
    assert_eq!(report.expected_readable, readable);
    assert!(
        report.all_readable_after_secs.is_some(),
        "the last message reached its inbox"
    );
    assert!(
        report.end_to_end_ms.count > 0,
        "sampled messages were followed to the inbox"
    );
    assert!(report.latency_ms.count == 400 && report.latency_ms.p50 <= report.latency_ms.max);
    assert!(report.baseline_per_sec.is_some_and(|b| b > 0.0));
    assert_eq!(
        report.timeline.iter().map(|s| s.ok).sum::<u64>(),
        400,
        "the timeline adds up"
    );
    let html = std::fs::read_to_string(dir.join("report.html")).expect("report.html");
    assert_eq!(html.matches("<svg").count(), 2);

    // Postino agrees: a citizen without a profile got nothing, an active one got the notice.
    let no_profile = (0..400u64)
        .find(|&i| mix.kind(i) == loadtest::population::Kind::NoProfile)
        .expect("someone without a profile");
    let api = loadtest::api::Api::new(&url, 1, JWT_SECRET).expect("client");
    let inbox = |i: u64| {
        let (api, fc) = (api.clone(), loadtest::population::fiscal_code(i));
        async move {
            api.http
                .get(format!("{}/citizen/v1/messages", api.base))
                .bearer_auth(api.citizen_token(&fc))
                .send()
                .await
                .expect("inbox")
                .json::<serde_json::Value>()
                .await
                .expect("json")["items"]
                .as_array()
                .map_or(0, Vec::len)
        }
    };
    let active = (0..400u64)
        .find(|&i| mix.readable(i, 0))
        .expect("someone active");
    assert_eq!(inbox(active).await, 1);
    assert_eq!(inbox(no_profile).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mass_notice_goes_through_the_bulk_api_in_calls_of_many() {
    let Seeded {
        app: _app,
        url,
        state_arg,
        out,
        out_arg,
        _dirs,
    } = seeded(400, 1).await;

    let run = loadtest(args(&[
        "mass-notice",
        "--url",
        &url,
        "--state",
        &state_arg,
        "--bulk",
        "150",
        "--connections",
        "2",
        "--sample-every",
        "10",
        "--baseline",
        "0s",
        "--out",
        &out_arg,
    ]))
    .await;
    let (_, _, report) = finished(&run, &out);
    let mix = Mix::default();
    let readable = (0..400).filter(|&i| mix.readable(i, 0)).count() as u64;
    assert_eq!(report.scenario, "mass-notice --bulk 150");
    assert_eq!(report.sent, 3, "calls of 150, 150 and 100");
    assert_eq!(report.accepted, 400, "{:?}", report.errors);
    assert_eq!(report.latency_ms.count, 3, "latency is per call");
    assert_eq!(report.expected_readable, readable);
    assert!(
        report.all_readable_after_secs.is_some(),
        "the last message reached its inbox"
    );
    assert!(
        report.end_to_end_ms.count > 0,
        "calls were followed to the inbox"
    );

    let bad = loadtest(args(&[
        "mixed",
        "--url",
        &url,
        "--state",
        &state_arg,
        "--bulk",
        "10",
        "--baseline",
        "0s",
    ]))
    .await;
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--bulk"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lanes_scenario_reports_one_off_messages_idle_and_during_a_campaign() {
    let Seeded {
        app: _app,
        url,
        state_arg,
        out,
        out_arg,
        _dirs,
    } = seeded(600, 1).await;

    let run = loadtest(args(&[
        "lanes",
        "--url",
        &url,
        "--state",
        &state_arg,
        "--bulk",
        "100",
        "--bulk-connections",
        "2",
        "--single-rate",
        "20",
        "--idle",
        "1s",
        "--out",
        &out_arg,
    ]))
    .await;
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(stdout.contains("one-off, during campaign"), "{stdout}");
    let result = std::fs::read_dir(&out)
        .expect("results")
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().starts_with("lanes-"))
        .expect("a lanes result");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(result.path()).expect("read")).expect("json");
    assert_eq!(report["campaign_accepted"], 600);
    assert!(
        report["campaign_readable_after_secs"].is_number(),
        "{report}"
    );
    assert_eq!(report["single_errors"], 0);
    for phase in ["single_idle_ms", "single_during_campaign_ms", "campaign_ms"] {
        assert!(
            report[phase]["count"].as_u64().is_some_and(|n| n > 0),
            "{phase}: {report}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_arguments_and_a_wrong_key_fail_with_a_message() {
    let data = tempfile::tempdir().expect("tempdir");
    let work = tempfile::tempdir().expect("tempdir");
    let app = postino(data.path()).await;
    let url = format!("http://{}", app.addr);
    let state = work.path().join("state.json").display().to_string();

    let wrong_key = loadtest(args(&[
        "seed",
        "--url",
        &url,
        "--manage-key",
        "not-the-key-0123456789",
        "--citizens",
        "10",
        "--state",
        &state,
    ]))
    .await;
    assert!(!wrong_key.status.success());
    let err = String::from_utf8_lossy(&wrong_key.stderr);
    assert!(err.contains("--manage-key") && err.contains("401"), "{err}");

    let no_state = loadtest(args(&["mass-notice", "--url", &url, "--state", &state])).await;
    assert!(!no_state.status.success());
    assert!(String::from_utf8_lossy(&no_state.stderr).contains("loadtest seed"));

    let bad_rate = loadtest(args(&["ingest", "--rate", "lots"])).await;
    assert_eq!(bad_rate.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad_rate.stderr).contains("--rate"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mass_notice_reaches_every_seeded_phone_and_mailbox_once_and_reports_both() {
    use loadtest::population::{device_token, fiscal_code, Kind};
    use loadtest::standins::recorder::Page;
    use model::installation::Platform;

    let push = standins().await;
    let mailbox = tempfile::tempdir().expect("tempdir");
    let sink = testkit::smtp::SmtpSink::start(mailbox.path());
    let data = tempfile::tempdir().expect("tempdir");
    let work = tempfile::tempdir().expect("tempdir");
    let mut config = Config {
        listen: "127.0.0.1:0".parse().expect("addr"),
        metrics_listen: postino::config::MetricsListen::On("127.0.0.1:0".parse().expect("addr")),
        data_dir: data.path().to_path_buf(),
        manage_key: Some(MANAGE_KEY.into()),
        ..Config::default()
    };
    config.jwt.secret = Some(JWT_SECRET.into());
    push.configure(&mut config);
    config.smtp.host = Some("127.0.0.1".into());
    config.smtp.port = Some(sink.port);
    config.smtp.tls = dispatchers::email::SmtpTls::None;
    let app = App::start(&config).await.expect("start postino");
    let url = format!("http://{}", app.addr);
    let metrics = format!("http://{}/metrics", app.metrics_addr.expect("metrics"));
    let state = work.path().join("state.json").display().to_string();
    let out = work.path().join("results");
    let citizens = 300u64;

    seed(&url, &state, citizens, 1).await;
    let run = loadtest(args(&[
        "mass-notice",
        "--url",
        &url,
        "--state",
        &state,
        "--rate",
        "1000",
        "--connections",
        "16",
        "--baseline",
        "0s",
        "--fcm-standin",
        &push.fcm,
        "--apns-standin",
        &push.apns,
        "--smtp-sink-dir",
        &mailbox.path().display().to_string(),
        "--metrics",
        &metrics,
        "--scrape-every",
        "200ms",
        "--out",
        &out.display().to_string(),
    ]))
    .await;
    let (stdout, dir, report) = finished(&run, &out);
    assert!(stdout.contains("send → push"), "{stdout}");
    // Postino's own counts, scraped during the run (this process's other tests share the
    // recorder, so they are at least this run's).
    let scraped = report
        .metrics
        .clone()
        .expect("the run scraped Postino's metrics");
    assert!(scraped.points.len() >= 2, "{scraped:?}");
    assert!(scraped.totals["accepted"] >= report.accepted as f64);
    assert!(scraped
        .points
        .iter()
        .any(|p| p.rates.get("accepted").is_some_and(|r| *r > 0.0)));
    let html = std::fs::read_to_string(dir.join("report.html")).expect("report.html");
    assert!(html.contains("Consumer lag by topic"));
    assert!(stdout.contains("send → mailbox"), "{stdout}");
    let mix = Mix::default();
    let phones: Vec<(u64, Platform)> = (0..citizens)
        .filter_map(|i| mix.pushed_to(i, 0).map(|p| (i, p)))
        .collect();
    assert!(phones.iter().any(|(_, p)| *p == Platform::Apns));
    let push_report = report.push.expect("the run watched the stand-ins");
    assert_eq!(push_report.expected, phones.len() as u64);
    assert_eq!(
        push_report.received, push_report.expected,
        "{push_report:?}"
    );
    assert_eq!(push_report.duplicates, 0);
    assert_eq!(push_report.latency_ms.count, push_report.expected);
    assert!(push_report.per_sec.is_some_and(|r| r > 0.0));
    assert!(!push_report.records_dropped);
    let email_report = report.email.expect("the run watched the SMTP sink");
    let emailed = (0..citizens).filter(|&i| mix.emailed(i, 0)).count() as u64;
    assert!(emailed > 0);
    assert_eq!(email_report.expected, emailed);
    assert_eq!(email_report.received, emailed, "{email_report:?}");
    assert_eq!(email_report.duplicates, 0);
    assert_eq!(
        sink.received().len() as u64,
        emailed,
        "one email per address, no other"
    );

    // What the phones got: the right device, FULL or anonymous content per the profile.
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("client");
    let mut arrived = std::collections::HashMap::new();
    for standin in [&push.fcm, &push.apns] {
        let page: Page = client
            .get(format!("{standin}/_standin/received"))
            .send()
            .await
            .expect("stand-in")
            .json()
            .await
            .expect("page");
        for r in page.received {
            arrived.insert(r.token.clone(), r);
        }
    }
    assert_eq!(arrived.len(), phones.len(), "one push per phone, no other");
    for (i, platform) in &phones {
        let got = arrived
            .get(&device_token(*i, *platform))
            .unwrap_or_else(|| panic!("citizen {i}'s phone got nothing"));
        let Kind::Active { push_full, .. } = mix.kind(*i) else {
            panic!("{i} has a phone, so a profile")
        };
        if push_full {
            assert_eq!(got.title, "Loadtest", "the organisation, for {i}");
            assert!(got.body.starts_with("Avviso di scadenza"), "{}", got.body);
        } else {
            assert_eq!(got.title, "Hai un nuovo messaggio");
            assert!(!got.body.contains("Avviso"), "anonymous means no subject");
        }
    }

    // The sender sees the push on the message's status.
    let seeded: loadtest::scenarios::Seeded =
        serde_json::from_str(&std::fs::read_to_string(&state).expect("state")).expect("state");
    let (i, platform) = phones[0];
    let id = &arrived[&device_token(i, platform)].message_id;
    let status: serde_json::Value = reqwest::Client::new()
        .get(format!("{url}/api/v1/messages/{}/{id}", fiscal_code(i)))
        .header("Ocp-Apim-Subscription-Key", &seeded.services[0].key)
        .send()
        .await
        .expect("message status")
        .json()
        .await
        .expect("json");
    assert_eq!(status["notification"]["webhook"], "SENT", "{status}");
}

/// The load's own requests (the lean plain-http path) count each answer as a sender would
/// see it: the id of an accepted message, a refused key's 401, a malformed body's 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_submit_is_counted_by_what_postino_answered() {
    use loadtest::api::{Api, SenderService};
    use loadtest::population::fiscal_code;
    use loadtest::scenarios::Scenario;
    use loadtest::stats::Outcome;

    let data = tempfile::tempdir().expect("tempdir");
    let app = postino(data.path()).await;
    let api = Api::new(&format!("http://{}/", app.addr), 4, JWT_SECRET).expect("api");
    let service = api
        .create_service(MANAGE_KEY, "counted")
        .await
        .expect("service");
    let fiscal_code = &fiscal_code(7);
    let body = Scenario::MassNotice.body(7);

    let (accepted, id) = api.submit(&service, fiscal_code, body.clone(), None).await;
    assert_eq!(accepted, Outcome::Ok);
    let id = id.expect("the 201's id");
    assert_eq!(id.len(), 26, "a ULID: {id}");
    // With an Idempotency-Key, a retry is the same message.
    let keyed = api
        .submit(&service, fiscal_code, body.clone(), Some("k-7"))
        .await;
    let retried = api
        .submit(&service, fiscal_code, body.clone(), Some("k-7"))
        .await;
    assert_eq!(keyed.0, Outcome::Ok);
    assert_eq!(keyed, retried);
    assert_ne!(keyed.1.as_deref(), Some(id.as_str()));

    let impostor = SenderService {
        id: service.id.clone(),
        key: "not-a-key-of-this-service".into(),
    };
    let (refused, none) = api.submit(&impostor, fiscal_code, body, None).await;
    assert_eq!((refused, none), (Outcome::Status(401), None));

    let (malformed, none) = api.submit(&service, fiscal_code, b"{".to_vec(), None).await;
    assert_eq!((malformed, none), (Outcome::Status(400), None));

    assert_eq!(api.health().await, Outcome::Ok);
}

#[test]
fn the_series_the_tool_plots_are_series_postino_exports() {
    let exported: Vec<String> = postino::telemetry::catalogue()
        .iter()
        .flat_map(|m| [m.name.to_string(), format!("{}_count", m.name)])
        .collect();
    let plotted = loadtest::scrape::RATES
        .iter()
        .map(|rate| rate.series)
        .chain([loadtest::scrape::LAG]);
    for series in plotted {
        assert!(
            exported.iter().any(|e| e == series),
            "{series} is not exported"
        );
    }
}
