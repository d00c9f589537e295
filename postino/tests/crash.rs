//! Invariants 1, 2 and 5 against the real binary: a steady stream of messages, `kill -9`
//! in the middle of it, a restart on the same data directory, and then every message that
//! got a `201` is in its citizen's inbox exactly once, in the order it was accepted.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

const MANAGE_KEY: &str = "crash-test-manage-key-000";
const JWT_SECRET: &str = "crash test secret for citizen tokens!";
const CITIZENS: usize = 40;
const SENDERS: usize = 8;
const KILL_AFTER: usize = 150;
const KILL_CYCLES: usize = 3;

/// A running `postino serve`; dropping it kills the process, so a failing assertion never
/// leaves a server behind.
struct Server {
    child: Arc<std::sync::Mutex<Child>>,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(mut child) = self.child.lock() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn start(dir: &Path) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_postino"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .env("POSTINO_MANAGE_KEY", MANAGE_KEY)
        .env("POSTINO_JWT_SECRET", JWT_SECRET)
        .env("POSTINO_LOG", "info")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start postino");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let base = loop {
        let line = lines
            .next()
            .expect("postino exited before listening")
            .expect("read");
        if let Some(rest) = line.split("listening on http://").nth(1) {
            let addr = rest.split_whitespace().next().expect("address");
            break format!("http://{addr}");
        }
    };
    // Keep draining, so a full pipe never blocks the server.
    std::thread::spawn(move || for _ in lines {});
    Server {
        child: Arc::new(std::sync::Mutex::new(child)),
        base,
    }
}

fn fiscal_codes(n: usize) -> Vec<String> {
    (0..n)
        .map(|_| store::conformance::fresh_fiscal_code().as_str().to_string())
        .collect()
}

fn token(fc: &str) -> String {
    let fc = model::FiscalCode::parse("fc", fc).expect("fc");
    citizen::auth::mint_hs256(JWT_SECRET, &fc, 3600).expect("token")
}

/// All ids in a citizen's inbox, oldest first.
async fn inbox(client: &reqwest::Client, base: &str, fc: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{base}/citizen/v1/messages?page_size=100");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page: Value = client
            .get(url)
            .bearer_auth(token(fc))
            .send()
            .await
            .expect("list")
            .json()
            .await
            .expect("json");
        ids.extend(
            page["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|i| i["id"].as_str().expect("id").to_string()),
        );
        match page["next"].as_str() {
            Some(n) => cursor = Some(n.to_string()),
            None => break,
        }
    }
    ids.reverse();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_messages_survive_kill_9_exactly_once_and_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let client = reqwest::Client::new();
    let mut server = start(dir.path());

    let service: Value = client
        .post(format!("{}/api/v1/manage/services", server.base))
        .header("Ocp-Apim-Subscription-Key", MANAGE_KEY)
        .json(&json!({"name": "Crash test", "description": "d", "organization": {"name": "o", "fiscal_code": "00493410583"}, "metadata": {"scope": "LOCAL"}}))
        .send().await.expect("create").json().await.expect("json");
    let id = service["id"].as_str().expect("id");
    let keys: Value = client
        .get(format!("{}/api/v1/manage/services/{id}/keys", server.base))
        .header("Ocp-Apim-Subscription-Key", MANAGE_KEY)
        .send()
        .await
        .expect("keys")
        .json()
        .await
        .expect("json");
    let key = keys["primary_key"].as_str().expect("key").to_string();

    let citizens = fiscal_codes(CITIZENS);
    for fc in &citizens {
        let r = client
            .put(format!("{}/citizen/v1/profile", server.base))
            .bearer_auth(token(fc))
            .json(&json!({}))
            .send()
            .await
            .expect("profile");
        assert!(r.status().is_success());
    }

    // Several cycles of: stream messages, and the sender that gets the N-th `201` kills the
    // server at once (SIGKILL, no polling delay), so the kill lands right after an answer
    // while other requests are mid-flight; then restart on the same data.
    let mut accepted: HashMap<String, Vec<String>> = HashMap::new();
    for _cycle in 0..KILL_CYCLES {
        let base = server.base.clone();
        let child = Arc::clone(&server.child);
        let count = Arc::new(AtomicUsize::new(0));
        let mut senders = Vec::new();
        for chunk in citizens.chunks(CITIZENS / SENDERS) {
            let (chunk, client, base, key) =
                (chunk.to_vec(), client.clone(), base.clone(), key.clone());
            let (count, child) = (Arc::clone(&count), Arc::clone(&child));
            senders.push(tokio::spawn(async move {
                let mut accepted: HashMap<String, Vec<String>> = HashMap::new();
                'send: for round in 0..2_000 {
                    for fc in &chunk {
                        let body = json!({"content": {"subject": format!("Avviso numero {round}"), "markdown": "m".repeat(80)}});
                        let sent = client
                            .post(format!("{base}/api/v1/messages/{fc}"))
                            .header("Ocp-Apim-Subscription-Key", &key)
                            .json(&body)
                            .timeout(Duration::from_secs(10))
                            .send()
                            .await;
                        let Ok(response) = sent else { break 'send };
                        if response.status() != reqwest::StatusCode::CREATED {
                            break 'send;
                        }
                        let Ok(created) = response.json::<Value>().await else { break 'send };
                        accepted.entry(fc.clone()).or_default().push(created["id"].as_str().expect("id").to_string());
                        if count.fetch_add(1, Ordering::SeqCst) + 1 == KILL_AFTER {
                            child.lock().expect("child").kill().expect("kill -9");
                        }
                    }
                }
                accepted
            }));
        }
        for s in senders {
            for (fc, ids) in s.await.expect("sender") {
                accepted.entry(fc).or_default().extend(ids);
            }
        }
        assert!(
            count.load(Ordering::SeqCst) >= KILL_AFTER,
            "the server stopped before the kill"
        );
        drop(child);
        server = start(dir.path()); // the killed one is reaped as it drops
    }

    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    for (fc, ids) in &accepted {
        let in_inbox = loop {
            let got = inbox(&client, &server.base, fc).await;
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
        // Requests cut off by the kill may or may not have landed; what got a 201 must be
        // there, in the order it was accepted.
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

    // And a graceful stop: SIGTERM drains and exits with success.
    let mut child = server.child.lock().expect("child");
    let pid = child.id().to_string();
    let signalled = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill -TERM");
    assert!(signalled.success());
    let status = child.wait().expect("wait");
    assert!(
        status.success(),
        "postino did not exit cleanly on SIGTERM: {status}"
    );
}
