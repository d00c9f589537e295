//! Invariants 1, 2 and 5 against the real binary: a steady stream of messages, `kill -9`
//! the instant a sender receives a `201` (three times), a restart on the same data
//! directory each time, and then every message that got a `201` is in its citizen's inbox
//! exactly once, in the order it was accepted. Finally SIGTERM exits cleanly.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;

const CITIZENS: usize = 40;
const SENDERS: usize = 8;
const KILL_AFTER: usize = 150;
const KILL_CYCLES: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_messages_survive_kill_9_exactly_once_and_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let client = reqwest::Client::new();
    let mut server = start(dir.path(), &[]);
    let key = create_service(&client, &server.base).await;
    let citizens = fiscal_codes(CITIZENS);
    create_profiles(&client, &server.base, &citizens).await;

    let mut accepted: HashMap<String, Vec<String>> = HashMap::new();
    for _ in 0..KILL_CYCLES {
        let stream = Stream {
            senders: SENDERS,
            stop_after: usize::MAX, // until the kill cuts the senders off
            kill_at: Some((KILL_AFTER, server.child.clone())),
        };
        let got = send_stream(&client, &server.base, &key, &citizens, stream).await;
        let total: usize = got.values().map(Vec::len).sum();
        assert!(
            total >= KILL_AFTER,
            "the server stopped before the kill: {total} accepted"
        );
        for (fc, ids) in got {
            accepted.entry(fc).or_default().extend(ids);
        }
        server = start(dir.path(), &[]); // the killed one is reaped as it drops
    }

    assert_inboxes_hold_exactly(&client, &server.base, &accepted).await;
    let status = server.terminate();
    assert!(
        status.success(),
        "postino did not exit cleanly on SIGTERM: {status}"
    );
}

/// A campaign's counts after `kill -9`: killed the instant its first call is answered, and
/// again while the pipeline and the tally are half way through, then restarted each time on
/// the same data. Every item ends counted exactly once (a report the tally takes twice
/// after a redelivery changes nothing), and the listing holds each item once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaigns_counts_survive_kill_9_exactly() {
    const ITEMS_PER_CALL: usize = 2000;
    let dir = tempfile::tempdir().expect("tempdir");
    let client = reqwest::Client::new();
    let mut server = start(dir.path(), &[]);
    let key = create_service(&client, &server.base).await;
    let citizens = fiscal_codes(CITIZENS);
    create_profiles(&client, &server.base, &citizens).await;
    let items = |round: usize| -> Vec<serde_json::Value> {
        (0..ITEMS_PER_CALL)
            .map(|i| {
                serde_json::json!({"fiscal_code": citizens[i % CITIZENS],
                    "content": {"subject": format!("Bollo auto, avviso {round}"), "markdown": "m".repeat(80)}})
            })
            .collect()
    };
    let opened = client
        .post(format!("{}/api/v1/campaigns", server.base))
        .header("Ocp-Apim-Subscription-Key", &key)
        .json(&serde_json::json!({"name": "Bollo", "items": items(0)}))
        .send()
        .await
        .expect("open");
    assert_eq!(opened.status(), reqwest::StatusCode::ACCEPTED);
    let opened: serde_json::Value = opened.json().await.expect("answer");
    // The instant it is answered, before the pipeline had time to take the items.
    server.child.lock().expect("child").kill().expect("kill -9");
    let id = opened["id"].as_str().expect("id").to_string();
    assert_eq!(opened["accepted"], ITEMS_PER_CALL);

    server = start(dir.path(), &[]);
    let added = client
        .post(format!("{}/api/v1/campaigns/{id}/items", server.base))
        .header("Ocp-Apim-Subscription-Key", &key)
        .json(&items(1))
        .send()
        .await
        .expect("add");
    assert_eq!(added.status(), reqwest::StatusCode::ACCEPTED);
    // Killed again once the tally has counted some items of the second call (or, on a
    // fast machine, all of them).
    loop {
        let counts = campaign_counts(&client, &server.base, &key, &id).await;
        let processed = counts["processed"].as_u64().unwrap_or(0);
        if processed > ITEMS_PER_CALL as u64 || counts["pending"] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.child.lock().expect("child").kill().expect("kill -9");

    server = start(dir.path(), &[]);
    let total = 2 * ITEMS_PER_CALL as u64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let counts = loop {
        let counts = campaign_counts(&client, &server.base, &key, &id).await;
        let settled = counts["processed"] == total && counts["email"]["pending"] == 0;
        if settled || tokio::time::Instant::now() > deadline {
            break counts;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(counts["accepted"], total, "{counts}");
    assert_eq!(counts["processed"], total, "{counts}");
    assert_eq!(counts["pending"], 0, "{counts}");
    for channel in ["push", "email"] {
        let states: u64 = counts[channel]
            .as_object()
            .expect("channel counts")
            .values()
            .map(|n| n.as_u64().expect("count"))
            .sum();
        assert_eq!(
            states, total,
            "each item's {channel} counted once: {counts}"
        );
    }
    let mut listed = std::collections::HashSet::new();
    let mut cursor = String::new();
    loop {
        let page: serde_json::Value = client
            .get(format!(
                "{}/api/v1/campaigns/{id}/items?limit=1000{cursor}",
                server.base
            ))
            .header("Ocp-Apim-Subscription-Key", &key)
            .send()
            .await
            .expect("items")
            .json()
            .await
            .expect("page");
        for item in page["items"].as_array().expect("items") {
            assert_eq!(item["status"], "PROCESSED", "{item}");
            assert!(listed.insert(item["id"].as_str().expect("id").to_string()));
        }
        match page["next"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(listed.len() as u64, total);
}

async fn campaign_counts(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    id: &str,
) -> serde_json::Value {
    let campaign: serde_json::Value = client
        .get(format!("{base}/api/v1/campaigns/{id}"))
        .header("Ocp-Apim-Subscription-Key", key)
        .send()
        .await
        .expect("campaign")
        .json()
        .await
        .expect("campaign");
    campaign["counts"].clone()
}

/// A scheduled campaign's item survives `kill -9` while it waits: killed the instant the
/// call is answered (the item on `scheduled`), and again once the scheduler holds it in the
/// store, then restarted; it reaches the inbox once, no earlier than its time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_item_survives_kill_9_while_it_waits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let client = reqwest::Client::new();
    let mut server = start(dir.path(), &[]);
    let key = create_service(&client, &server.base).await;
    let citizens = fiscal_codes(1);
    create_profiles(&client, &server.base, &citizens).await;
    let not_before = time::OffsetDateTime::now_utc() + time::Duration::seconds(6);
    let not_before_text = not_before
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format");
    let opened = client
        .post(format!("{}/api/v1/campaigns", server.base))
        .header("Ocp-Apim-Subscription-Key", &key)
        .json(
            &serde_json::json!({"name": "Bollo", "schedule": {"not_before": not_before_text},
            "items": [{"fiscal_code": citizens[0],
                "content": {"subject": "Bollo auto in scadenza", "markdown": "m".repeat(80)}}]}),
        )
        .send()
        .await
        .expect("open");
    assert_eq!(opened.status(), reqwest::StatusCode::ACCEPTED);
    let opened: serde_json::Value = opened.json().await.expect("answer");
    server.child.lock().expect("child").kill().expect("kill -9");
    let id = opened["items"][0]["id"].as_str().expect("id").to_string();

    server = start(dir.path(), &[]);
    // Long enough for the scheduler to take the item from the log, not for it to be due.
    tokio::time::sleep(Duration::from_secs(1)).await;
    server.child.lock().expect("child").kill().expect("kill -9");

    server = start(dir.path(), &[]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let ids = loop {
        let ids = inbox(&client, &server.base, &citizens[0]).await;
        if !ids.is_empty() || tokio::time::Instant::now() > deadline {
            break ids;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        time::OffsetDateTime::now_utc() >= not_before,
        "delivered before its time"
    );
    assert_eq!(ids, [id]);
}
