//! The router stage against the real embedded log and store: IO's rejection reasons, and
//! the plan it hands to the inbox dispatcher.

use std::sync::Arc;
use std::time::Duration;

use bus::embedded::EmbeddedBus;
use bus::stage::{self, StageConfig};
use bus::{Bus, Record};
use model::channels::{ChannelChoice, SkipReason};
use model::pipeline::{decode, encode, topics, DeliveryPlan};
use model::profile::{
    PreferencesMode, Profile, PushContent, ServicePreference, ServicePreferencesSettings,
};
use model::status::{MessageStatus, RejectionReason};
use router::{RouterStage, GROUP};
use store::conformance::{fresh_fiscal_code, sample_record};
use store::sqlite::SqliteStore;
use store::Store;
use tokio::sync::watch;

/// Runs the router on `bus` until `true` is sent on the returned sender.
fn spawn_router(
    store: &Arc<dyn Store>,
    bus: &Arc<dyn Bus>,
) -> (
    watch::Sender<bool>,
    tokio::task::JoinHandle<Result<(), bus::BusError>>,
) {
    let (stop, stopped) = watch::channel(false);
    let cfg = StageConfig {
        poll_wait: Duration::from_millis(50),
        backoff_initial: Duration::from_millis(1),
        ..Default::default()
    };
    let stage = Arc::new(RouterStage::new(Arc::clone(store), Arc::clone(bus)));
    let runner = tokio::spawn(stage::run(
        Arc::clone(bus),
        topics::MESSAGES,
        GROUP,
        stage,
        cfg,
        stopped,
    ));
    (stop, runner)
}

/// One message to each citizen, in order, published to `messages`.
async fn publish_messages(
    bus: &Arc<dyn Bus>,
    citizens: &[&model::FiscalCode],
) -> Vec<model::pipeline::AcceptedMessage> {
    let messages: Vec<_> = citizens
        .iter()
        .enumerate()
        .map(|(i, fc)| sample_record(fc, i as u64 + 1, MessageStatus::Accepted).message)
        .collect();
    let records = messages
        .iter()
        .map(|m| Record::new(b"k".to_vec(), encode(m)))
        .collect();
    bus.publish(topics::MESSAGES, records)
        .await
        .expect("publish");
    messages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_are_rejected_or_planned_as_io_decides() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).expect("store"));
    let bus: Arc<dyn Bus> = EmbeddedBus::open(dir.path()).expect("bus");

    let nobody = fresh_fiscal_code();
    let inbox_off = fresh_fiscal_code();
    let manual_no_pref = fresh_fiscal_code();
    let happy = fresh_fiscal_code();

    let mut p = Profile::new_default();
    p.is_inbox_enabled = false;
    store.put_profile(&inbox_off, &p).await.expect("put");
    let mut p = Profile::new_default();
    p.service_preferences_settings = ServicePreferencesSettings {
        mode: PreferencesMode::Manual,
        version: 1,
    };
    store.put_profile(&manual_no_pref, &p).await.expect("put");
    let mut p = Profile::new_default();
    p.email =
        Some(model::email::EmailAddress::parse("email", "citizen@example.org").expect("address"));
    p.is_email_validated = true;
    p.push_notifications_content_type = Some(PushContent::Full);
    store.put_profile(&happy, &p).await.expect("put");
    let no_push = ServicePreference {
        is_email_enabled: true,
        is_inbox_enabled: true,
        is_webhook_enabled: false,
        settings_version: 0,
        can_access_message_read_status: true,
    };
    store
        .put_preference(&happy, "svc", &no_push)
        .await
        .expect("pref");

    let messages = publish_messages(&bus, &[&nobody, &inbox_off, &manual_no_pref, &happy]).await;

    let (stop, runner) = spawn_router(&store, &bus);
    let mut out = bus
        .subscribe(topics::DELIVERIES_INBOX, "t")
        .await
        .expect("subscribe");
    let planned = bus::conformance::collect(&mut *out, 1).await;
    stop.send(true).expect("stop");
    runner.await.expect("join").expect("run");

    for (message, reason) in [
        (&messages[0], RejectionReason::UserNotFound),
        (&messages[1], RejectionReason::ServiceNotAllowed),
        (&messages[2], RejectionReason::ServiceNotAllowed),
    ] {
        let record = store
            .get_message(&message.id)
            .await
            .expect("get")
            .expect("status written");
        assert_eq!(record.status, MessageStatus::Rejected);
        assert_eq!(record.rejection_reason, Some(reason));
    }
    assert_eq!(planned.len(), 1, "only the allowed message goes on");
    let plan: DeliveryPlan = decode(&planned[0].record.payload).expect("plan");
    assert_eq!(plan.message.id, messages[3].id);
    assert_eq!(plan.channels.email, ChannelChoice::Send);
    assert_eq!(
        plan.email.as_ref().map(model::email::EmailAddress::expose),
        Some("citizen@example.org")
    );
    assert_eq!(
        plan.channels.push,
        ChannelChoice::Skip(SkipReason::BlockedForService)
    );
    assert_eq!(plan.push_content, PushContent::Full);
}

/// A log that refuses the plans for good (a record it can never take) is a permanent error:
/// the message goes to `messages.dlq` and is FAILED, and the router moves on, instead of
/// holding the partition forever as if the log were down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_the_log_refuses_for_good_is_dead_lettered_not_held() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).expect("store"));
    let log: Arc<dyn Bus> = EmbeddedBus::open(dir.path()).expect("bus");
    let bus: Arc<dyn Bus> = Arc::new(bus::conformance::Refuses::new(Arc::clone(&log), |t| {
        t == topics::DELIVERIES_INBOX
    }));

    let nobody = fresh_fiscal_code();
    let citizen = fresh_fiscal_code();
    store
        .put_profile(&citizen, &Profile::new_default())
        .await
        .expect("put");
    let messages = publish_messages(&log, &[&nobody, &citizen]).await;

    let (stop, runner) = spawn_router(&store, &bus);
    let mut dlq = log.subscribe("messages.dlq", "t").await.expect("subscribe");
    let dead = bus::conformance::collect(&mut *dlq, 1).await;
    stop.send(true).expect("stop");
    runner.await.expect("join").expect("run");

    assert_eq!(dead.len(), 1, "the refused plan is dead-lettered");
    let reason = dead[0].record.header(stage::headers::ERROR).unwrap_or("");
    assert!(reason.contains("too large for"), "{reason}");
    let failed = store
        .get_message(&messages[1].id)
        .await
        .expect("get")
        .expect("status written");
    assert_eq!(failed.status, MessageStatus::Failed);
    let rejected = store
        .get_message(&messages[0].id)
        .await
        .expect("get")
        .expect("status written");
    assert_eq!(
        rejected.rejection_reason,
        Some(RejectionReason::UserNotFound),
        "its batch-mate was routed as usual"
    );
}

/// A message of a campaign its sender cancelled is not delivered: REJECTED as cancelled,
/// reported to the campaign's tally, while another campaign's message goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_campaigns_messages_are_rejected_and_reported() {
    use bus::stage::Stage;
    use model::progress::{ItemStatus, ProgressRecord};

    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).expect("store"));
    let bus: Arc<dyn Bus> = EmbeddedBus::open(dir.path()).expect("bus");
    let campaign = |id: &str, cancelled: bool| model::campaign::Campaign {
        id: id.into(),
        service_id: "svc".into(),
        name: "Bollo".into(),
        created_at: model::timestamp::Timestamp::now(),
        cancelled_at: cancelled.then(model::timestamp::Timestamp::now),
        schedule: None,
    };
    store
        .put_campaign(&campaign("stopped", true))
        .await
        .expect("put");
    store
        .put_campaign(&campaign("going", false))
        .await
        .expect("put");
    let fc = fresh_fiscal_code();
    store
        .put_profile(&fc, &Profile::new_default())
        .await
        .expect("profile");
    let mut stopped = sample_record(&fc, 1, MessageStatus::Accepted).message;
    stopped.campaign_id = Some("stopped".into());
    let mut going = sample_record(&fc, 2, MessageStatus::Accepted).message;
    going.campaign_id = Some("going".into());

    let stage = RouterStage::new(Arc::clone(&store), Arc::clone(&bus));
    let items: Vec<_> = [&stopped, &going]
        .iter()
        .map(|m| {
            stage
                .decode(&Record::new(b"k".to_vec(), encode(*m)))
                .expect("decodes")
        })
        .collect();
    let refs: Vec<_> = items.iter().collect();
    assert!(stage.process(&refs).await.iter().all(Result::is_ok));

    let record = store
        .get_message(&stopped.id)
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(record.status, MessageStatus::Rejected);
    assert_eq!(
        record.rejection_reason,
        Some(RejectionReason::CancelledBySender)
    );
    let mut planned = bus
        .subscribe(topics::BULK_DELIVERIES_INBOX, "t")
        .await
        .expect("subscribe");
    let planned = bus::conformance::collect(&mut *planned, 1).await;
    let plan: DeliveryPlan = decode(&planned[0].record.payload).expect("plan");
    assert_eq!(plan.message.id, going.id);
    let mut reports = bus
        .subscribe(topics::CAMPAIGN_PROGRESS, "t")
        .await
        .expect("subscribe");
    let reports = bus::conformance::collect(&mut *reports, 1).await;
    let report: ProgressRecord = decode(&reports[0].record.payload).expect("report");
    assert_eq!(report.campaign_id, "stopped");
    assert_eq!(report.items.len(), 1);
    assert_eq!(report.items[0].id, stopped.id);
    assert_eq!(
        report.items[0].progress.status,
        Some(ItemStatus::Rejected(RejectionReason::CancelledBySender))
    );
}
