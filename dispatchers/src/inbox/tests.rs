//! The inbox dispatcher against the real embedded log and store.

use std::sync::Arc;
use std::time::Duration;

use bus::embedded::EmbeddedBus;
use bus::stage::{self, StageConfig};
use bus::{Bus, Record};
use model::channels::{ChannelChoice, ChannelPlan, SkipReason};
use model::pipeline::{encode, topics, DeliveryPlan};
use model::profile::PushContent;
use model::status::{ChannelStatus, MessageStatus};
use store::conformance::{fresh_fiscal_code, sample_record};
use store::sqlite::SqliteStore;
use store::Store;
use tokio::sync::watch;

use super::{InboxConfig, InboxStage, GROUP};

fn plan(fc: &model::FiscalCode, ms: u64, email: ChannelChoice) -> DeliveryPlan {
    DeliveryPlan {
        message: sample_record(fc, ms, MessageStatus::Accepted).message,
        channels: ChannelPlan {
            email,
            push: ChannelChoice::Send,
        },
        push_content: PushContent::Anonymous,
        preferred_languages: vec![],
        email: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routed_messages_land_in_the_inbox_once_as_processed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).expect("store"));
    let bus: Arc<dyn Bus> = EmbeddedBus::open(dir.path()).expect("bus");
    let fc = fresh_fiscal_code();
    let plans = [
        plan(&fc, 1, ChannelChoice::Send),
        plan(&fc, 2, ChannelChoice::Skip(SkipReason::NoValidatedEmail)),
    ];
    let mut records: Vec<Record> = plans
        .iter()
        .map(|p| Record::new(b"k".to_vec(), encode(p)))
        .collect();
    records.push(records[0].clone()); // a redelivery of the first
    records.push(Record::new(b"k".to_vec(), b"{not a plan".to_vec()));
    bus.publish(topics::DELIVERIES_INBOX, records)
        .await
        .expect("publish");

    let (stop, stopped) = watch::channel(false);
    let cfg = InboxConfig {
        stage: StageConfig {
            poll_wait: Duration::from_millis(50),
            ..Default::default()
        },
    };
    let runner = tokio::spawn(stage::run(
        Arc::clone(&bus),
        topics::DELIVERIES_INBOX,
        GROUP,
        Arc::new(InboxStage::new(Arc::clone(&store))),
        cfg.stage,
        stopped,
    ));
    let mut dlq = bus
        .subscribe("deliveries.inbox.dlq", "t")
        .await
        .expect("dlq");
    let dead = bus::conformance::collect(&mut *dlq, 1).await;
    stop.send(true).expect("stop");
    runner.await.expect("join").expect("run");

    assert_eq!(dead.len(), 1, "the malformed record is dead-lettered");
    let inbox = store.list_inbox(&fc, None, 10).await.expect("list");
    let ids: Vec<_> = inbox.iter().map(|i| i.id).collect();
    assert_eq!(
        ids,
        vec![plans[1].message.id, plans[0].message.id],
        "each message once, newest first"
    );
    let first = store
        .get_message(&plans[0].message.id)
        .await
        .expect("get")
        .expect("record");
    assert_eq!(first.status, MessageStatus::Processed);
    assert_eq!(
        first.notification.email, None,
        "email to send: its dispatcher reports it"
    );
    let second = store
        .get_message(&plans[1].message.id)
        .await
        .expect("get")
        .expect("record");
    assert_eq!(second.notification.email, Some(ChannelStatus::Skipped));
}
