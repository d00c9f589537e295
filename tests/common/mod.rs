//! What the process-level tests share: running `postino serve` as a real process, seeding a
//! service and citizens, a steady stream of messages that can `kill -9` a process the
//! instant the N-th `201` arrives, and the exactly-once, in-order check of the inboxes.

#![allow(dead_code)] // each test binary uses its own part of this module

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

pub const MANAGE_KEY: &str = "process-test-manage-key-000";
pub const JWT_SECRET: &str = "process test secret for citizen tokens!";

/// A running `postino serve`; dropping it kills the process, so a failing assertion never
/// leaves a server behind.
pub struct Server {
    pub child: Arc<Mutex<Child>>,
    pub base: String,
    /// Its `/metrics` URL.
    pub metrics: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(mut child) = self.child.lock() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Server {
    /// What the process exposes on `/metrics` now, which must pass `promtool check metrics`.
    pub async fn metrics(&self) -> String {
        let text = reqwest::get(&self.metrics)
            .await
            .expect("scrape")
            .text()
            .await
            .expect("exposition");
        testkit::exposition::check_metrics(&text);
        text
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(&self) -> std::process::ExitStatus {
        let mut child = self.child.lock().expect("child");
        let pid = child.id().to_string();
        let signalled = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill -TERM");
        assert!(signalled.success());
        child.wait().expect("wait")
    }
}

/// A configuration for Postino on Kafka at `bootstrap` and the store at `store`, with
/// `settings` added; returns its path. Every process shares the deployment secret, as in
/// production (each data directory would otherwise generate its own). A consumer that dies
/// is dropped from its group after 6 s (the broker's least session timeout).
pub fn write_config(
    dir: &Path,
    bootstrap: &str,
    store: &store::scylla::ScyllaAddress,
    settings: &str,
) -> String {
    let path = dir.join("postino.toml");
    let text = format!(
        "bus = \"kafka://{bootstrap}\"\nstore = \"{store}\"\nsecret = \"{}\"\n{settings}\n\
         [kafka]\npartitions = 3\n[kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n",
        "5e".repeat(32)
    );
    std::fs::write(&path, text).expect("config");
    path.to_string_lossy().to_string()
}

/// Starts `postino serve` with `args` on 127.0.0.1:0 and waits until it listens.
pub fn start(data_dir: &Path, args: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_postino"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env("POSTINO_MANAGE_KEY", MANAGE_KEY)
        .env("POSTINO_JWT_SECRET", JWT_SECRET)
        .env("POSTINO_LOG", "info")
        // These tests push at whatever hour they run.
        .env("POSTINO_PUSH_QUIET_HOURS", "off")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start postino");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut metrics = None;
    let base = loop {
        let line = lines
            .next()
            .expect("postino exited before listening")
            .expect("read");
        if let Some(rest) = line.split("metrics on http://").nth(1) {
            let url = rest.split_whitespace().next().expect("address");
            metrics = Some(format!("http://{url}"));
        }
        if let Some(rest) = line.split("listening on http://").nth(1) {
            let addr = rest.split_whitespace().next().expect("address");
            break format!("http://{addr}");
        }
    };
    // Keep draining, so a full pipe never blocks the server; with POSTINO_TEST_LOGS set, keep
    // each process's log there for a post-mortem.
    let keep = std::env::var_os("POSTINO_TEST_LOGS").map(|dir| {
        let name = format!(
            "postino-{}-{}.log",
            child.id(),
            args.join("_").replace(['/', ' '], "-")
        );
        std::path::PathBuf::from(dir).join(name)
    });
    std::thread::spawn(move || {
        use std::io::Write;
        let mut file = keep.and_then(|path| std::fs::File::create(path).ok());
        for line in lines.map_while(Result::ok) {
            if let Some(f) = file.as_mut() {
                let _ = writeln!(f, "{line}");
            }
        }
    });
    Server {
        child: Arc::new(Mutex::new(child)),
        base,
        metrics: metrics.expect("postino said where its metrics are before it listened"),
    }
}

pub fn fiscal_codes(n: usize) -> Vec<String> {
    (0..n)
        .map(|_| store::conformance::fresh_fiscal_code().as_str().to_string())
        .collect()
}

pub fn token(fc: &str) -> String {
    let fc = model::FiscalCode::parse("fc", fc).expect("fc");
    citizen::auth::mint_hs256(JWT_SECRET, &fc, 3600).expect("token")
}

/// Creates a service and returns its primary key.
pub async fn create_service(client: &reqwest::Client, base: &str) -> String {
    create_service_with_id(client, base).await.1
}

/// Creates a service and returns its id and primary key. These tests send to anyone, as
/// fast as they go: test mode and the rate limit are not theirs to test.
pub async fn create_service_with_id(client: &reqwest::Client, base: &str) -> (String, String) {
    let payload = json!({"name": "Process test", "description": "d",
        "organization": {"name": "o", "fiscal_code": "00493410583"}, "metadata": {"scope": "LOCAL"}});
    let limits = json!({"mode": "production",
        "rate_limit": {"requests": 1_000_000, "period_seconds": 1}});
    let (id, primary, _) = create_service_with(client, base, &payload, &limits).await;
    (id, primary)
}

/// Creates a service from `payload` with the platform's key and sets its `limits`; its
/// id, primary key and secondary key.
pub async fn create_service_with(
    client: &reqwest::Client,
    base: &str,
    payload: &Value,
    limits: &Value,
) -> (String, String, String) {
    let manage = |method: reqwest::Method, path: &str| {
        client
            .request(method, format!("{base}/api/v1/manage/services{path}"))
            .header("Ocp-Apim-Subscription-Key", MANAGE_KEY)
    };
    let service: Value = manage(reqwest::Method::POST, "")
        .json(payload)
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    let id = service["id"].as_str().expect("id").to_string();
    let changed = manage(reqwest::Method::PATCH, &format!("/{id}/limits"))
        .json(limits)
        .send()
        .await
        .expect("limits");
    assert_eq!(changed.status(), reqwest::StatusCode::OK);
    let keys: Value = manage(reqwest::Method::GET, &format!("/{id}/keys"))
        .send()
        .await
        .expect("keys")
        .json()
        .await
        .expect("json");
    let key = |slot: &str| keys[slot].as_str().expect("key").to_string();
    (id, key("primary_key"), key("secondary_key"))
}

pub async fn create_profiles(client: &reqwest::Client, base: &str, citizens: &[String]) {
    for fc in citizens {
        let r = client
            .put(format!("{base}/citizen/v1/profile"))
            .bearer_auth(token(fc))
            .json(&json!({}))
            .send()
            .await
            .expect("profile");
        assert!(r.status().is_success(), "profile: {}", r.status());
    }
}

/// How a stream of messages ends, and whom it kills on the way.
pub struct Stream {
    pub senders: usize,
    /// Stop once this many messages were accepted (or at the first failed request).
    pub stop_after: usize,
    /// `kill -9` this process the instant the N-th `201` arrives.
    pub kill_at: Option<(usize, Arc<Mutex<Child>>)>,
}

/// Sends messages round-robin to `citizens` from several concurrent senders; each citizen's
/// messages come from one sender, one at a time, so their acceptance order is defined.
/// Returns the ids that got a `201`, per citizen, in acceptance order.
pub async fn send_stream(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    citizens: &[String],
    stream: Stream,
) -> HashMap<String, Vec<String>> {
    let count = Arc::new(AtomicUsize::new(0));
    let kill_at = Arc::new(stream.kill_at);
    let mut tasks = Vec::new();
    for chunk in citizens.chunks(citizens.len().div_ceil(stream.senders)) {
        let (chunk, client, base, key) = (
            chunk.to_vec(),
            client.clone(),
            base.to_string(),
            key.to_string(),
        );
        let (count, kill_at, stop_after) =
            (Arc::clone(&count), Arc::clone(&kill_at), stream.stop_after);
        tasks.push(tokio::spawn(async move {
            let mut accepted: HashMap<String, Vec<String>> = HashMap::new();
            'send: for round in 0..100_000 {
                for fc in &chunk {
                    if count.load(Ordering::SeqCst) >= stop_after {
                        break 'send;
                    }
                    let body = json!({"content": {"subject": format!("Avviso numero {round}"), "markdown": "m".repeat(80)}});
                    let sent = client
                        .post(format!("{base}/api/v1/messages/{fc}"))
                        .header("Ocp-Apim-Subscription-Key", &key)
                        .json(&body)
                        .timeout(Duration::from_secs(30))
                        .send()
                        .await;
                    let Ok(response) = sent else { break 'send };
                    if response.status() != reqwest::StatusCode::CREATED {
                        break 'send;
                    }
                    let Ok(created) = response.json::<Value>().await else { break 'send };
                    accepted.entry(fc.clone()).or_default().push(created["id"].as_str().expect("id").to_string());
                    let n = count.fetch_add(1, Ordering::SeqCst) + 1;
                    if let Some((at, child)) = kill_at.as_ref() {
                        if n == *at {
                            child.lock().expect("child").kill().expect("kill -9");
                        }
                    }
                }
            }
            accepted
        }));
    }
    let mut accepted: HashMap<String, Vec<String>> = HashMap::new();
    for task in tasks {
        for (fc, ids) in task.await.expect("sender") {
            accepted.entry(fc).or_default().extend(ids);
        }
    }
    accepted
}

/// All ids in a citizen's inbox, oldest first.
pub async fn inbox(client: &reqwest::Client, base: &str, fc: &str) -> Vec<String> {
    let pages = testkit::inbox::inbox_pages(client, base, &token(fc), 100).await;
    let mut ids: Vec<String> = pages.into_iter().flatten().collect();
    ids.reverse();
    ids
}

/// Waits (up to two minutes) for every accepted message to reach its inbox, then checks that
/// none is there twice and each citizen's accepted messages are in acceptance order.
/// Requests cut off by a kill may or may not have landed; they are allowed, but only once.
pub async fn assert_inboxes_hold_exactly(
    client: &reqwest::Client,
    base: &str,
    accepted: &HashMap<String, Vec<String>>,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    for (fc, ids) in accepted {
        let in_inbox = loop {
            let got = inbox(client, base, fc).await;
            let present: HashSet<&String> = got.iter().collect();
            if ids.iter().all(|id| present.contains(id)) || tokio::time::Instant::now() > deadline {
                break got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let unique: HashSet<&String> = in_inbox.iter().collect();
        assert_eq!(
            unique.len(),
            in_inbox.len(),
            "a message is in the inbox twice"
        );
        let accepted_set: HashSet<&String> = ids.iter().collect();
        let landed: Vec<&String> = in_inbox
            .iter()
            .filter(|id| accepted_set.contains(id))
            .collect();
        let expected: Vec<&String> = ids.iter().collect();
        assert_eq!(
            landed, expected,
            "accepted messages missing or out of order for a citizen"
        );
    }
}

/// The status of message `id` once the pipeline has decided it (not ACCEPTED), as the
/// sender reads it; waits up to a minute.
pub async fn final_status(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    fc: &str,
    id: &str,
) -> Value {
    for _ in 0..600 {
        let answer = client
            .get(format!("{base}/api/v1/messages/{fc}/{id}"))
            .header("Ocp-Apim-Subscription-Key", key)
            .send()
            .await
            .expect("getMessage");
        if answer.status() == reqwest::StatusCode::OK {
            let body: Value = answer.json().await.expect("json");
            if body["status"] != "ACCEPTED" {
                return body;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("message {id} was never routed");
}

/// Sends one message to `fc` and returns its id.
pub async fn send_one(client: &reqwest::Client, base: &str, key: &str, fc: &str) -> String {
    let answer = client
        .post(format!("{base}/api/v1/messages/{fc}"))
        .header("Ocp-Apim-Subscription-Key", key)
        .json(&json!({"content": {"subject": "Avviso di prova", "markdown": "m".repeat(80)}}))
        .send()
        .await
        .expect("submit");
    assert_eq!(answer.status(), reqwest::StatusCode::CREATED);
    let body: Value = answer.json().await.expect("json");
    body["id"].as_str().expect("id").to_string()
}
