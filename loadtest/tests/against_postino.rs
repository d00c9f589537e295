//! The `loadtest` binary against a real Postino started in this process on port 0: it seeds
//! a population, runs a mass notice, and writes a report whose numbers match what Postino
//! did. Nothing here asserts speed.

use std::path::Path;
use std::process::Command;

use loadtest::population::Mix;
use loadtest::report::Report;
use postino::app::App;
use postino::config::Config;

const JWT_SECRET: &str = "loadtest test secret for citizen tokens";
const MANAGE_KEY: &str = "loadtest-manage-key-0123456789";

async fn postino(dir: &Path) -> App {
    let config = Config {
        listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.to_path_buf(),
        manage_key: Some(MANAGE_KEY.into()),
        jwt_secret: Some(JWT_SECRET.into()),
        ..Config::default()
    };
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seeded_mass_notice_is_measured_and_reported() {
    let data = tempfile::tempdir().expect("tempdir");
    let work = tempfile::tempdir().expect("tempdir");
    let app = postino(data.path()).await;
    let url = format!("http://{}", app.addr);
    let state = work.path().join("state.json");
    let out = work.path().join("results");
    let (state_arg, out_arg) = (state.display().to_string(), out.display().to_string());

    let seeded = loadtest(args(&[
        "seed",
        "--url",
        &url,
        "--manage-key",
        MANAGE_KEY,
        "--citizens",
        "400",
        "--services",
        "2",
        "--state",
        &state_arg,
    ]))
    .await;
    assert!(
        seeded.status.success(),
        "{}",
        String::from_utf8_lossy(&seeded.stderr)
    );

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
        "--out",
        &out_arg,
    ]))
    .await;
    let stdout = String::from_utf8_lossy(&run.stdout).to_string();
    assert!(
        run.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(stdout.contains("accepted"), "{stdout}");

    let dir = std::fs::read_dir(&out)
        .expect("results directory")
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().starts_with("mass-notice-"))
        .expect("a mass-notice result")
        .path();
    let report: Report = serde_json::from_str(
        &std::fs::read_to_string(dir.join("result.json")).expect("result.json"),
    )
    .expect("valid result.json");
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
