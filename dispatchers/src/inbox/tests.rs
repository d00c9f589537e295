//! The inbox dispatcher against the real embedded log and store.

use std::sync::Arc;
use std::time::Duration;

use bus::embedded::EmbeddedBus;
use bus::stage::{self, StageConfig};
use bus::{Bus, Record};
use model::channels::{ChannelChoice, ChannelPlan, SkipReason};
use model::email::EmailJob;
use model::installation::{DeviceToken, Installation, InstallationId, Platform};
use model::pipeline::{encode, topics, DeliveryPlan};
use model::profile::PushContent;
use model::push::PushJob;
use model::status::{ChannelOutcome, MessageStatus};
use store::conformance::{fresh_fiscal_code, sample_record};
use store::sqlite::SqliteStore;
use store::Store;
use tokio::sync::watch;

use super::{InboxStage, GROUP};
use crate::push::PushPlatforms;

/// The embedded store and log in a fresh directory, which lives as long as the guard.
fn embedded() -> (Arc<dyn Store>, Arc<dyn Bus>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).expect("store"));
    let bus: Arc<dyn Bus> = EmbeddedBus::open(dir.path()).expect("bus");
    (store, bus, dir)
}

fn plan(fc: &model::FiscalCode, ms: u64, email: ChannelChoice) -> DeliveryPlan {
    let address = (email == ChannelChoice::Send).then(|| {
        model::email::EmailAddress::parse("email", "citizen@example.org").expect("address")
    });
    DeliveryPlan {
        message: sample_record(fc, ms, MessageStatus::Accepted).message,
        channels: ChannelPlan {
            email,
            push: ChannelChoice::Send,
        },
        push_content: PushContent::Anonymous,
        preferred_languages: vec!["it_IT".into()],
        email: address,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routed_messages_land_in_the_inbox_once_as_processed() {
    let (store, bus, _dir) = embedded();
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
    let cfg = StageConfig {
        poll_wait: Duration::from_millis(50),
        ..Default::default()
    };
    let runner = tokio::spawn(stage::run(
        Arc::clone(&bus),
        topics::DELIVERIES_INBOX,
        GROUP,
        Arc::new(InboxStage::new(
            Arc::clone(&store),
            Arc::clone(&bus),
            PushPlatforms::ALL,
        )),
        cfg,
        stopped,
    ));
    let mut dlq = bus
        .subscribe("deliveries.inbox.dlq", "t")
        .await
        .expect("dlq");
    let mut emails = bus
        .subscribe(topics::DELIVERIES_EMAIL, "t")
        .await
        .expect("emails");
    let dead = bus::conformance::collect(&mut *dlq, 1).await;
    let published = bus::conformance::collect(&mut *emails, 1).await;
    stop.send(true).expect("stop");
    runner.await.expect("join").expect("run");

    // One email, for the message whose plan sends one, and only once it is readable.
    let email: EmailJob = model::pipeline::decode(&published[0].record.payload).expect("job");
    assert_eq!(email.message_id, plans[0].message.id);
    assert_eq!(email.to.expose(), "citizen@example.org");
    assert_eq!(email.language, model::language::Language::Italian);
    assert!(
        store
            .get_inbox_item(&fc, &email.message_id)
            .await
            .expect("read")
            .is_some(),
        "an email job was published before its inbox write"
    );

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
    assert_eq!(
        second.notification.email,
        Some(ChannelOutcome::Skipped(SkipReason::NoValidatedEmail)),
        "the plan's reason is recorded"
    );
    assert_eq!(
        second.notification.webhook,
        Some(ChannelOutcome::Skipped(SkipReason::NoDevice)),
        "push allowed but no device: nothing to send"
    );
}

fn device(id: &str, platform: Platform, token: &str) -> Installation {
    Installation {
        id: InstallationId::parse("id", id).expect("id"),
        platform,
        token: DeviceToken::parse("t", token).expect("token"),
        app_version: None,
        updated_at: "2026-01-01T00:00:00.000Z".parse().expect("a timestamp"),
    }
}

/// Runs the inbox stage (pushing to `platforms`) until `n` push jobs are published and
/// every plan is in the inbox; returns the jobs.
async fn push_jobs_for(
    store: &Arc<dyn Store>,
    bus: &Arc<dyn Bus>,
    plans: &[DeliveryPlan],
    n: usize,
    platforms: PushPlatforms,
) -> Vec<PushJob> {
    let records = plans
        .iter()
        .map(|p| {
            Record::new(
                p.message.fiscal_code.as_str().as_bytes().to_vec(),
                encode(p),
            )
        })
        .collect();
    bus.publish(topics::DELIVERIES_INBOX, records)
        .await
        .expect("publish");
    let mut pushes = bus
        .subscribe(topics::DELIVERIES_PUSH, "t")
        .await
        .expect("subscribe");
    let (stop, stopped) = watch::channel(false);
    let runner = tokio::spawn(stage::run(
        Arc::clone(bus),
        topics::DELIVERIES_INBOX,
        GROUP,
        Arc::new(InboxStage::new(
            Arc::clone(store),
            Arc::clone(bus),
            platforms,
        )),
        StageConfig {
            poll_wait: Duration::from_millis(50),
            ..Default::default()
        },
        stopped,
    ));
    let published = bus::conformance::collect(&mut *pushes, n).await;
    let last = plans.last().map(|p| p.message.clone());
    if let Some(last) = last {
        // Plans are processed in order: once the last is readable, every one is.
        while store
            .get_inbox_item(&last.fiscal_code, &last.id)
            .await
            .expect("read")
            .is_none()
        {
            tokio::task::yield_now().await;
        }
    }
    stop.send(true).expect("stop");
    runner.await.expect("join").expect("run");
    let mut jobs = Vec::new();
    for d in published {
        let job: PushJob = model::pipeline::decode(&d.record.payload).expect("a push job");
        // Invariant 3: by the time a push can be sent, the message is readable.
        assert!(
            store
                .get_inbox_item(&job.fiscal_code, &job.message_id)
                .await
                .expect("read")
                .is_some(),
            "a push job was published before its inbox write"
        );
        assert_eq!(
            d.record.key,
            job.fiscal_code.as_str().as_bytes(),
            "keyed by citizen"
        );
        jobs.push(job);
    }
    jobs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_device_of_a_citizen_gets_one_push_job_after_the_inbox_write() {
    let (store, bus, _dir) = embedded();
    let (two_devices, blocked) = (fresh_fiscal_code(), fresh_fiscal_code());
    let apns = "a3f1c2d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";
    store
        .put_installation(&two_devices, &device("phone", Platform::Fcm, "fcm-1"))
        .await
        .expect("put");
    store
        .put_installation(&two_devices, &device("ipad", Platform::Apns, apns))
        .await
        .expect("put");
    store
        .put_installation(&blocked, &device("phone", Platform::Fcm, "fcm-2"))
        .await
        .expect("put");
    let mut full = plan(&two_devices, 1, ChannelChoice::Send);
    full.push_content = PushContent::Full;
    let mut no_push = plan(&blocked, 2, ChannelChoice::Send);
    no_push.channels.push = ChannelChoice::Skip(SkipReason::BlockedForService);
    let anonymous = plan(&two_devices, 3, ChannelChoice::Send);

    let jobs = push_jobs_for(
        &store,
        &bus,
        &[full.clone(), no_push, anonymous.clone()],
        4,
        PushPlatforms::ALL,
    )
    .await;
    let summary: Vec<_> = jobs
        .iter()
        .map(|j| {
            (
                j.message_id,
                j.installation_id.to_string(),
                j.title.as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (full.message.id, "ipad".to_string(), "ACI"),
            (full.message.id, "phone".to_string(), "ACI"),
            (
                anonymous.message.id,
                "ipad".to_string(),
                "Hai un nuovo messaggio"
            ),
            (
                anonymous.message.id,
                "phone".to_string(),
                "Hai un nuovo messaggio"
            ),
        ],
        "one job per device, in order, none for the citizen who blocked push"
    );
    assert_eq!(jobs[0].platform, Platform::Apns);
    assert_eq!(jobs[1].token.expose(), "fcm-1");
    assert_eq!(jobs[0].body, full.message.content.subject);
}

/// The webhook outcome the inbox dispatcher recorded for `plan`'s message.
async fn push_outcome(store: &Arc<dyn Store>, plan: &DeliveryPlan) -> Option<ChannelOutcome> {
    store
        .get_message(&plan.message.id)
        .await
        .expect("get")
        .expect("record")
        .notification
        .webhook
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_job_is_made_for_a_device_no_provider_can_reach_and_the_message_says_why() {
    let (store, bus, _dir) = embedded();
    let (both, iphone_only, none) = (
        fresh_fiscal_code(),
        fresh_fiscal_code(),
        fresh_fiscal_code(),
    );
    let apns = "a3f1c2d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";
    for (fc, d) in [
        (&both, device("phone", Platform::Fcm, "fcm-1")),
        (&both, device("ipad", Platform::Apns, apns)),
        (&iphone_only, device("iphone", Platform::Apns, apns)),
    ] {
        store.put_installation(fc, &d).await.expect("put");
    }
    let plans = [
        plan(&both, 1, ChannelChoice::Send),
        plan(&iphone_only, 2, ChannelChoice::Send),
        plan(&none, 3, ChannelChoice::Send),
    ];

    // Only FCM is configured: the iPad and the iPhone get no job.
    let fcm_only = PushPlatforms {
        fcm: true,
        apns: false,
    };
    let jobs = push_jobs_for(&store, &bus, &plans, 1, fcm_only).await;
    let devices: Vec<_> = jobs
        .iter()
        .map(|j| (j.message_id, j.installation_id.to_string()))
        .collect();
    assert_eq!(devices, vec![(plans[0].message.id, "phone".to_string())]);
    assert_eq!(
        push_outcome(&store, &plans[0]).await,
        None,
        "its dispatcher reports it"
    );
    assert_eq!(
        push_outcome(&store, &plans[1]).await,
        Some(ChannelOutcome::Skipped(SkipReason::NoPushProvider))
    );
    assert_eq!(
        push_outcome(&store, &plans[2]).await,
        Some(ChannelOutcome::Skipped(SkipReason::NoDevice))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_any_push_provider_no_push_job_is_published() {
    let (store, bus, _dir) = embedded();
    let fc = fresh_fiscal_code();
    store
        .put_installation(&fc, &device("phone", Platform::Fcm, "fcm-1"))
        .await
        .expect("put");
    let plans = [plan(&fc, 1, ChannelChoice::Send)];
    let jobs = push_jobs_for(&store, &bus, &plans, 0, PushPlatforms::default()).await;
    assert!(jobs.is_empty());
    let mut pushes = bus
        .subscribe(topics::DELIVERIES_PUSH, "check")
        .await
        .expect("subscribe");
    let none = pushes
        .poll(10, Duration::from_millis(100))
        .await
        .expect("poll");
    assert!(
        none.is_empty(),
        "nothing was published to {}",
        topics::DELIVERIES_PUSH
    );
    assert_eq!(
        push_outcome(&store, &plans[0]).await,
        Some(ChannelOutcome::Skipped(SkipReason::NoPushProvider))
    );
}

/// A log that refuses the email jobs for good is a permanent error: the plan is
/// dead-lettered instead of holding the partition forever as if the log were down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_the_log_refuses_for_good_dead_letter_their_plan_instead_of_holding() {
    let (store, log, _dir) = embedded();
    let bus: Arc<dyn Bus> = Arc::new(bus::conformance::Refuses::new(Arc::clone(&log), |t| {
        t == topics::DELIVERIES_EMAIL
    }));
    let fc = fresh_fiscal_code();
    let emailed = plan(&fc, 1, ChannelChoice::Send);
    log.publish(
        topics::DELIVERIES_INBOX,
        vec![Record::new(b"k".to_vec(), encode(&emailed))],
    )
    .await
    .expect("publish");
    let (stop, stopped) = watch::channel(false);
    let runner = tokio::spawn(stage::run(
        Arc::clone(&bus),
        topics::DELIVERIES_INBOX,
        GROUP,
        Arc::new(InboxStage::new(
            Arc::clone(&store),
            Arc::clone(&bus),
            PushPlatforms::default(),
        )),
        StageConfig {
            poll_wait: Duration::from_millis(50),
            backoff_initial: Duration::from_millis(1),
            ..Default::default()
        },
        stopped,
    ));
    let mut dlq = log
        .subscribe("deliveries.inbox.dlq", "t")
        .await
        .expect("dlq");
    let dead = bus::conformance::collect(&mut *dlq, 1).await;
    stop.send(true).expect("stop");
    runner.await.expect("join").expect("run");
    assert_eq!(dead.len(), 1, "the plan is dead-lettered, not held");
    let reason = dead[0].record.header(stage::headers::ERROR).unwrap_or("");
    assert!(reason.contains("too large for"), "{reason}");
    // The inbox write had happened: the message stays readable and PROCESSED, and the
    // email it could not queue is what failed.
    let record = store
        .get_message(&emailed.message.id)
        .await
        .expect("get")
        .expect("record");
    assert_eq!(record.status, MessageStatus::Processed);
    assert_eq!(
        record.notification.email,
        Some(model::status::ChannelStatus::Failed.into())
    );
    assert_eq!(
        record.notification.webhook,
        Some(ChannelOutcome::Skipped(SkipReason::NoPushProvider)),
        "a channel skipped keeps its reason"
    );
    assert!(store
        .get_inbox_item(&fc, &emailed.message.id)
        .await
        .expect("read")
        .is_some());
}
