//! Roles apart over Kafka: ingest (with the citizen API), router and inbox run as three
//! `postino` processes on one host, with Kafka (a real tansu broker) between them and the
//! SQLite store shared by path. The router is `kill -9`'d mid-stream and restarted; every
//! message that got a `201` still reaches its inbox exactly once, in order.

mod common;

use bus::tansu::start_broker;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_over_kafka_survive_a_router_kill_9() {
    let broker = start_broker();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("postino.toml");
    // One record per batch works around a tansu 0.6 fetch limit (see bus::tansu). Static
    // group membership lets the restarted router take its predecessor's place at once, as
    // a restarted pod does; tansu 0.6 never evicts a member that died while leading a group,
    // so without it the restarted router would wait forever for partitions.
    std::fs::write(
        &config,
        format!(
            "bus = \"kafka://{}\"\nkafka_partitions = 3\nkafka_group_instance_id = \"host-1\"\n[kafka_properties]\n\"batch.num.messages\" = \"1\"\n",
            broker.bootstrap
        ),
    )
    .expect("config");
    let config = config.to_string_lossy().to_string();
    let data = dir.path().join("data");
    let role = |roles: &str| start(&data, &["--config", &config, "--roles", roles]);

    let ingest = role("ingest,citizen");
    let router = role("router");
    let inbox_dispatcher = role("inbox");
    let client = reqwest::Client::new();
    let key = create_service(&client, &ingest.base).await;
    let citizens = fiscal_codes(40);
    create_profiles(&client, &ingest.base, &citizens).await;

    // A first wave proves the router is consuming (its group joined, partitions assigned),
    // so the kill in the second wave lands while it is processing.
    let warm_up = Stream {
        senders: 8,
        stop_after: 80,
        kill_at: None,
    };
    let mut accepted = send_stream(&client, &ingest.base, &key, &citizens, warm_up).await;
    assert_inboxes_hold_exactly(&client, &ingest.base, &accepted).await;

    let stream = Stream {
        senders: 8,
        stop_after: 600,
        kill_at: Some((150, router.child.clone())),
    };
    let second = send_stream(&client, &ingest.base, &key, &citizens, stream).await;
    let total: usize = second.values().map(Vec::len).sum();
    assert!(
        total >= 600,
        "ingest kept accepting while the router was down, got {total}"
    );
    for (fc, ids) in second {
        accepted.entry(fc).or_default().extend(ids);
    }

    drop(router); // reaps the killed process
    let router = role("router");
    assert_inboxes_hold_exactly(&client, &ingest.base, &accepted).await;

    for process in [ingest, router, inbox_dispatcher] {
        let status = process.terminate();
        assert!(
            status.success(),
            "a role did not exit cleanly on SIGTERM: {status}"
        );
    }
}
