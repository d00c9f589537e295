//! Invariants 1, 2 and 5 against the real binary: a steady stream of messages, `kill -9`
//! the instant a sender receives a `201` (three times), a restart on the same data
//! directory each time, and then every message that got a `201` is in its citizen's inbox
//! exactly once, in the order it was accepted. Finally SIGTERM exits cleanly.

mod common;

use std::collections::HashMap;

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
