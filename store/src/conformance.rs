//! The behaviour every store implementation must show, one function per check, and
//! [`store_conformance!`](crate::store_conformance) to instantiate them as tests.
//!
//! Checks use fresh identifiers, so one database can serve them all.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use model::installation::{DeviceToken, Installation, InstallationId, Platform};
use model::pipeline::AcceptedMessage;
use model::profile::{Profile, ServicePreference};
use model::service::{
    KeySlot, Organization, OrganizationAccount, Service, ServiceLimits, ServiceMetadata,
    ServiceMode, ServicePayload, ServiceScope,
};
use model::status::{Channel, ChannelStatus, MessageStatus, NotificationStatus, RejectionReason};
use model::FiscalCode;
use ulid::Ulid;

use crate::{IdempotentSubmit, KeyOwner, MessageRecord, NotificationKey, Routing, Store};

static COUNTER: AtomicU64 = AtomicU64::new(1);

fn unique() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos
        .wrapping_mul(31)
        .wrapping_add(COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// A valid fiscal code no other check uses (omocodia-free, check character computed).
pub fn fresh_fiscal_code() -> FiscalCode {
    let n = unique();
    let letters: String = (0..6)
        .map(|i| (b'A' + ((n >> (i * 4)) % 26) as u8) as char)
        .collect();
    let digits = format!("{:02}", (n >> 24) % 100);
    let body = format!("{letters}{digits}A01H501");
    let check = model::fiscal_code::check_character(body.as_bytes()) as char;
    FiscalCode::parse("fc", &format!("{body}{check}")).expect("generated code is valid")
}

pub fn sample_service() -> Service {
    Service {
        id: format!("svc-{}", unique()),
        payload: ServicePayload {
            name: "Tassa automobilistica".into(),
            description: "Avvisi di scadenza".into(),
            organization: Organization {
                name: "ACI".into(),
                fiscal_code: "00493410583".into(),
                department_name: None,
            },
            metadata: ServiceMetadata {
                scope: ServiceScope::National,
                topic_id: None,
                web_url: None,
                app_ios: None,
                app_android: None,
                tos_url: None,
                privacy_url: None,
                address: None,
                phone: None,
                email: None,
                pec: None,
                cta: None,
                support_url: None,
            },
            require_secure_channel: false,
            authorized_recipients: vec![],
            authorized_cidrs: vec![],
            max_allowed_payment_amount: 0,
        },
        // A service that sends for real: what most tests built on it need.
        limits: ServiceLimits {
            mode: ServiceMode::Production,
            ..ServiceLimits::NEW
        },
        last_update: "2026-01-01T00:00:00.000Z".parse().expect("a timestamp"),
        primary_key_generation: 0,
        secondary_key_generation: 0,
    }
}

/// A message to `fc` whose id sorts by `ms` (so tests control inbox order).
/// [`sample_record`] under a given message id: the message a notification job is about.
pub fn sample_record_with_id(id: Ulid, fc: &FiscalCode, status: MessageStatus) -> MessageRecord {
    let record = sample_record(fc, 1, status);
    MessageRecord {
        message: AcceptedMessage {
            id,
            ..record.message
        },
        ..record
    }
}

pub fn sample_record(fc: &FiscalCode, ms: u64, status: MessageStatus) -> MessageRecord {
    MessageRecord {
        message: model::samples::accepted_message(
            Ulid::from_parts(ms, u128::from(unique())),
            fc.clone(),
            &format!("message number {ms}"),
        ),
        status,
        rejection_reason: None,
        notification: NotificationStatus::default(),
        updated_at: model::samples::CREATED_AT.parse().expect("a timestamp"),
    }
}

/// `n` PROCESSED deliveries spread round-robin over `citizens` fresh citizens, ids in
/// time order: what the write-rate examples write.
pub fn sample_deliveries(n: usize, citizens: usize) -> Vec<MessageRecord> {
    let fcs: Vec<_> = (0..citizens.max(1)).map(|_| fresh_fiscal_code()).collect();
    (0..n)
        .map(|i| {
            sample_record(
                &fcs[i % fcs.len()],
                1_700_000_000_000 + i as u64,
                MessageStatus::Processed,
            )
        })
        .collect()
}

// ---- services and keys -------------------------------------------------------------

pub async fn services_round_trip_and_delete(store: Arc<dyn Store>) {
    let mut svc = sample_service();
    assert_eq!(store.get_service(&svc.id).await.expect("get"), None);
    store.put_service(&svc).await.expect("put");
    assert_eq!(
        store.get_service(&svc.id).await.expect("get").as_ref(),
        Some(&svc)
    );
    svc.payload.name = "Renamed service".into();
    svc.primary_key_generation = 3;
    store.put_service(&svc).await.expect("replace");
    assert_eq!(
        store.get_service(&svc.id).await.expect("get"),
        Some(svc.clone())
    );
    store.delete_service(&svc.id).await.expect("delete");
    assert_eq!(store.get_service(&svc.id).await.expect("get"), None);
    store
        .delete_service(&svc.id)
        .await
        .expect("deleting twice is fine");
}

pub async fn keys_map_hashes_to_owners(store: Arc<dyn Store>) {
    let hash = format!("hash-{}", unique());
    let owner = KeyOwner::Service {
        service_id: "svc-1".into(),
        slot: KeySlot::Secondary,
    };
    assert_eq!(store.get_key(&hash).await.expect("get"), None);
    store.put_key(&hash, &owner).await.expect("put");
    store
        .put_key(&format!("{hash}-m"), &KeyOwner::Manage)
        .await
        .expect("put manage");
    assert_eq!(store.get_key(&hash).await.expect("get"), Some(owner));
    assert_eq!(
        store.get_key(&format!("{hash}-m")).await.expect("get"),
        Some(KeyOwner::Manage)
    );
    store.delete_key(&hash).await.expect("delete");
    assert_eq!(store.get_key(&hash).await.expect("get"), None);
}

pub async fn services_are_listed_by_id(store: Arc<dyn Store>) {
    let mut mine: Vec<Service> = (0..3).map(|_| sample_service()).collect();
    for service in mine.iter().rev() {
        store.put_service(service).await.expect("put");
    }
    mine.sort_by(|a, b| a.id.cmp(&b.id));
    let ids: Vec<_> = mine.iter().map(|s| s.id.clone()).collect();
    // Other tests may share the store: look only at this test's services.
    let listed: Vec<Service> = store
        .list_services()
        .await
        .expect("list")
        .into_iter()
        .filter(|s| ids.contains(&s.id))
        .collect();
    assert_eq!(listed, mine);
    store.delete_service(&ids[1]).await.expect("delete");
    let left: Vec<String> = store
        .list_services()
        .await
        .expect("list")
        .into_iter()
        .map(|s| s.id)
        .filter(|id| ids.contains(id))
        .collect();
    assert_eq!(left, vec![ids[0].clone(), ids[2].clone()]);
}

pub async fn organizations_round_trip_and_own_keys(store: Arc<dyn Store>) {
    let unique = unique();
    let fiscal_code = format!("{:011}", unique % 100_000_000_000);
    assert_eq!(
        store.get_organization(&fiscal_code).await.expect("get"),
        None
    );
    let mut account = OrganizationAccount {
        fiscal_code: fiscal_code.clone(),
        name: "Comune di Roma".into(),
        last_update: model::timestamp::Timestamp::now(),
        primary_key_generation: 0,
        secondary_key_generation: 0,
    };
    store.put_organization(&account).await.expect("put");
    assert_eq!(
        store.get_organization(&fiscal_code).await.expect("get"),
        Some(account.clone())
    );
    account.secondary_key_generation = 2;
    store.put_organization(&account).await.expect("replace");
    assert_eq!(
        store.get_organization(&fiscal_code).await.expect("get"),
        Some(account)
    );
    let owner = KeyOwner::Organization {
        fiscal_code,
        slot: KeySlot::Primary,
    };
    let hash = format!("org-hash-{unique}");
    store.put_key(&hash, &owner).await.expect("put key");
    assert_eq!(store.get_key(&hash).await.expect("get key"), Some(owner));
}

pub async fn campaigns_round_trip(store: Arc<dyn Store>) {
    let id = Ulid::new().to_string();
    assert_eq!(store.get_campaign(&id).await.expect("get"), None);
    let mut campaign = model::campaign::Campaign {
        id: id.clone(),
        service_id: format!("svc-{}", unique()),
        name: "Bollo auto 2027".into(),
        created_at: model::timestamp::Timestamp::now(),
        cancelled_at: None,
        schedule: None,
    };
    store.put_campaign(&campaign).await.expect("put");
    assert_eq!(
        store.get_campaign(&id).await.expect("get"),
        Some(campaign.clone())
    );
    campaign.name = "Bollo auto 2027, secondo invio".into();
    campaign.cancelled_at = Some(model::timestamp::Timestamp::now());
    store.put_campaign(&campaign).await.expect("replace");
    assert_eq!(store.get_campaign(&id).await.expect("get"), Some(campaign));
}

fn update(id: Ulid, progress: model::progress::ItemProgress) -> model::progress::ItemUpdate {
    model::progress::ItemUpdate { id, progress }
}

fn part(
    campaign: &str,
    bucket: u16,
    items: &[model::progress::ItemUpdate],
) -> [model::progress::ProgressRecord; 1] {
    [model::progress::ProgressRecord {
        campaign_id: campaign.into(),
        bucket,
        items: items.to_vec(),
    }]
}

pub async fn campaign_progress_is_merged_once_and_counted_exactly(store: Arc<dyn Store>) {
    use model::progress::{ChannelProgress, ItemProgress, ItemStatus};
    let campaign = Ulid::new().to_string();
    assert_eq!(
        store.campaign_counts(&campaign).await.expect("counts"),
        Default::default()
    );
    let (a, b, c) = (Ulid::new(), Ulid::new(), Ulid::new());
    let accepted = ItemProgress::status(ItemStatus::Accepted);
    let processed = ItemProgress::status(ItemStatus::Processed);
    let rejected = ItemProgress::status(ItemStatus::Rejected(RejectionReason::UserNotFound));
    let planned = ItemProgress::channel(Channel::Push, ChannelProgress::Planned);
    let sent = ItemProgress::channel(Channel::Push, ChannelStatus::Sent);
    let first = [
        update(a, accepted),
        update(b, accepted),
        update(c, accepted),
    ];
    store
        .record_progress(&part(&campaign, 1, &first[..2]))
        .await
        .expect("part 1");
    store
        .record_progress(&part(&campaign, 2, &first[2..]))
        .await
        .expect("part 2");
    // Every change of `a` in one call, one of them twice; `c` rejected; `b` untouched.
    let later = [
        update(a, processed),
        update(a, planned),
        update(a, sent),
        update(a, planned),
    ];
    store
        .record_progress(&part(&campaign, 1, &later))
        .await
        .expect("a on");
    store
        .record_progress(&part(&campaign, 2, &[update(c, rejected)]))
        .await
        .expect("c on");
    // The same again, as a redelivered record would bring it: nothing moves.
    store
        .record_progress(&part(&campaign, 1, &later))
        .await
        .expect("again");
    store
        .record_progress(&part(&campaign, 1, &first[..2]))
        .await
        .expect("late accepted");
    let counts = store.campaign_counts(&campaign).await.expect("counts");
    assert_eq!(
        (
            counts.accepted,
            counts.pending,
            counts.processed,
            counts.rejected.user_not_found
        ),
        (3, 1, 1, 1)
    );
    assert_eq!((counts.push.sent, counts.push.pending), (1, 0));
    let other = Ulid::new().to_string();
    assert_eq!(
        store.campaign_counts(&other).await.expect("counts"),
        Default::default(),
        "another campaign's counts are its own"
    );

    let all = store
        .campaign_items(&campaign, None, 10)
        .await
        .expect("items");
    let mut part_1 = vec![a, b];
    part_1.sort();
    let expected: Vec<(u16, Ulid)> = part_1
        .into_iter()
        .map(|id| (1, id))
        .chain([(2, c)])
        .collect();
    assert_eq!(
        all.iter().map(|i| (i.bucket, i.id)).collect::<Vec<_>>(),
        expected,
        "by part, then id"
    );
    let state_of = |id| all.iter().find(|i| i.id == id).map(|i| i.progress);
    assert_eq!(
        state_of(a),
        Some(ItemProgress {
            status: Some(ItemStatus::Processed),
            push: Some(ChannelStatus::Sent.into()),
            email: None
        })
    );
    assert_eq!(state_of(b), Some(accepted));
    // Paged one at a time from each cursor, the same items come in the same order.
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .campaign_items(&campaign, after, 1)
            .await
            .expect("page");
        let Some(last) = page.last() else { break };
        after = Some(last.cursor());
        paged.extend(page);
    }
    assert_eq!(paged, all);
}

// ---- the schedule ------------------------------------------------------------------

fn scheduled(id: &str, due_ms: i64) -> crate::ScheduledRecord {
    crate::ScheduledRecord {
        id: id.into(),
        due_ms,
        topic: "bulk.messages".into(),
        key: vec![0, 159, 255],
        headers: vec![("postino-request-id".into(), "r-1".into())],
        payload: br#"{"id":"x"}"#.to_vec(),
    }
}

pub async fn scheduled_records_are_kept_by_minute_until_released(store: Arc<dyn Store>) {
    // A minute of its own, far from other checks' (they share one database).
    let minute = 20_000_000 + (unique() % 1_000_000) as i64;
    let at = minute * 60_000;
    let records: Vec<_> = (0..40)
        .map(|i| scheduled(&format!("item-{i:02}"), at + i * 1000))
        .collect();
    store.schedule(records.clone()).await.expect("schedule");
    // Again: the same ids, kept once.
    store.schedule(records.clone()).await.expect("again");
    let mut kept = Vec::new();
    for shard in 0..crate::SCHEDULE_SHARDS {
        kept.extend(store.scheduled_in(minute, shard).await.expect("read"));
        assert!(store
            .scheduled_in(minute + 1, shard)
            .await
            .expect("read")
            .is_empty());
    }
    kept.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(kept, records);
    let first = &records[0];
    store
        .unschedule(minute, first.shard(), std::slice::from_ref(&first.id))
        .await
        .expect("unschedule");
    let left = store
        .scheduled_in(minute, first.shard())
        .await
        .expect("read");
    assert!(left.iter().all(|r| r.id != first.id));
}

pub async fn a_lease_has_one_holder_until_it_runs_out(store: Arc<dyn Store>) {
    let name = format!("lease-{}", unique());
    let ttl = std::time::Duration::from_secs(1);
    assert!(store.hold_lease(&name, "a", ttl).await.expect("take"));
    assert!(!store.hold_lease(&name, "b", ttl).await.expect("refused"));
    assert!(store.hold_lease(&name, "a", ttl).await.expect("renew"));
    // Not renewed, it runs out, and another takes it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if store.hold_lease(&name, "b", ttl).await.expect("take") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the lease never ran out"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(!store.hold_lease(&name, "a", ttl).await.expect("refused"));
}

// ---- the subscriptions feed ----------------------------------------------------------

pub async fn subscription_changes_keep_each_citizens_last_of_the_day_per_scope(
    store: Arc<dyn Store>,
) {
    let today = model::timestamp::Timestamp::now().to_string();
    let day = &today[..10];
    let scope = format!("svc-{}", unique());
    let other_scope = format!("svc-{}", unique());
    assert_eq!(
        store.subscription_changes(day, &scope).await.expect("read"),
        vec![]
    );
    store
        .record_subscription_change(day, &scope, "bbbb", true)
        .await
        .expect("record");
    store
        .record_subscription_change(day, &scope, "aaaa", true)
        .await
        .expect("record");
    store
        .record_subscription_change(day, &scope, "bbbb", false)
        .await
        .expect("the same citizen again");
    store
        .record_subscription_change(day, &other_scope, "cccc", true)
        .await
        .expect("another scope");
    assert_eq!(
        store.subscription_changes(day, &scope).await.expect("read"),
        vec![("aaaa".to_string(), true), ("bbbb".to_string(), false)]
    );
    assert_eq!(
        store
            .subscription_changes("2020-01-01", &scope)
            .await
            .expect("another day"),
        vec![]
    );
}

// ---- profiles and preferences --------------------------------------------------------

/// A preference at settings version 0 that allows or refuses the inbox.
fn preference(inbox: bool) -> ServicePreference {
    ServicePreference {
        is_email_enabled: !inbox,
        is_inbox_enabled: inbox,
        is_webhook_enabled: inbox,
        settings_version: 0,
        can_access_message_read_status: true,
    }
}

pub async fn profiles_and_preferences_are_per_citizen(store: Arc<dyn Store>) {
    let (a, b) = (fresh_fiscal_code(), fresh_fiscal_code());
    assert_eq!(store.get_profile(&a).await.expect("get"), None);
    let mut profile = Profile::new_default();
    profile.email = Some(model::email::EmailAddress::parse("email", "a@b.it").expect("address"));
    store.put_profile(&a, &profile).await.expect("put");
    assert_eq!(
        store.get_profile(&a).await.expect("get"),
        Some(profile.clone())
    );
    assert_eq!(store.get_profile(&b).await.expect("get"), None);
    profile.version = 1;
    profile.is_inbox_enabled = false;
    store.put_profile(&a, &profile).await.expect("update");
    assert_eq!(store.get_profile(&a).await.expect("get"), Some(profile));

    let pref = preference(true);
    store
        .put_preference(&a, "s1", &pref)
        .await
        .expect("put pref");
    assert_eq!(
        store.get_preference(&a, "s1").await.expect("get"),
        Some(pref)
    );
    assert_eq!(store.get_preference(&a, "s2").await.expect("get"), None);
    assert_eq!(store.get_preference(&b, "s1").await.expect("get"), None);
}

pub async fn routing_reads_a_batch_in_order(store: Arc<dyn Store>) {
    let (a, b) = (fresh_fiscal_code(), fresh_fiscal_code());
    let profile = Profile::new_default();
    store.put_profile(&a, &profile).await.expect("put");
    let pref = preference(false);
    store
        .put_preference(&a, "s1", &pref)
        .await
        .expect("put pref");
    // A preference without a profile is never read: the citizen has no inbox.
    store
        .put_preference(&b, "s1", &pref)
        .await
        .expect("put pref");
    let pairs = vec![
        (a.clone(), "s1".to_string()),
        (b.clone(), "s1".to_string()),
        (a.clone(), "s2".to_string()),
    ];
    let got = store.get_routing(&pairs).await.expect("routing");
    assert_eq!(
        got,
        vec![
            Routing {
                profile: Some(profile.clone()),
                preference: Some(pref)
            },
            Routing {
                profile: None,
                preference: None
            },
            Routing {
                profile: Some(profile),
                preference: None
            },
        ]
    );
    assert!(store.get_routing(&[]).await.expect("empty").is_empty());
}

// ---- messages and inbox --------------------------------------------------------------

pub async fn message_status_never_goes_backwards(store: Arc<dyn Store>) {
    let fc = fresh_fiscal_code();
    let accepted = sample_record(&fc, 1_000, MessageStatus::Accepted);
    let id = accepted.message.id;
    store
        .put_messages(vec![accepted.clone()])
        .await
        .expect("accept");
    assert_eq!(
        store.get_message(&id).await.expect("get").map(|r| r.status),
        Some(MessageStatus::Accepted)
    );
    let mut processed = accepted.clone();
    processed.status = MessageStatus::Processed;
    store.deliver(vec![processed]).await.expect("deliver");
    store
        .put_messages(vec![accepted])
        .await
        .expect("late accept");
    assert_eq!(
        store.get_message(&id).await.expect("get").map(|r| r.status),
        Some(MessageStatus::Processed)
    );
}

pub async fn rejected_messages_stay_out_of_the_inbox(store: Arc<dyn Store>) {
    let fc = fresh_fiscal_code();
    let mut rejected = sample_record(&fc, 2_000, MessageStatus::Rejected);
    rejected.rejection_reason = Some(RejectionReason::UserNotFound);
    store
        .put_messages(vec![rejected.clone()])
        .await
        .expect("reject");
    let got = store
        .get_message(&rejected.message.id)
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(got.rejection_reason, Some(RejectionReason::UserNotFound));
    assert!(store
        .list_inbox(&fc, None, 10)
        .await
        .expect("list")
        .is_empty());
}

pub async fn delivering_twice_keeps_one_copy_and_its_read_state(store: Arc<dyn Store>) {
    let fc = fresh_fiscal_code();
    let record = sample_record(&fc, 3_000, MessageStatus::Processed);
    let id = record.message.id;
    store.deliver(vec![record.clone()]).await.expect("deliver");
    assert!(store.set_read(&fc, &id, true).await.expect("read"));
    store.deliver(vec![record]).await.expect("redeliver");
    let inbox = store.list_inbox(&fc, None, 10).await.expect("list");
    assert_eq!(inbox.len(), 1);
    assert!(
        inbox[0].is_read,
        "redelivery must not mark the message unread"
    );
}

pub async fn the_inbox_pages_newest_first_and_only_shows_its_citizen(store: Arc<dyn Store>) {
    let (fc, other) = (fresh_fiscal_code(), fresh_fiscal_code());
    let records: Vec<MessageRecord> = (1..=25u64)
        .map(|ms| sample_record(&fc, 10_000 + ms, MessageStatus::Processed))
        .collect();
    store.deliver(records.clone()).await.expect("deliver");
    store
        .deliver(vec![sample_record(
            &other,
            10_050,
            MessageStatus::Processed,
        )])
        .await
        .expect("deliver other");

    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.list_inbox(&fc, cursor, 10).await.expect("list");
        if page.is_empty() {
            break;
        }
        cursor = page.last().map(|i| i.id);
        seen.extend(page.into_iter().map(|i| i.id));
    }
    let expected: Vec<Ulid> = records.iter().rev().map(|r| r.message.id).collect();
    assert_eq!(
        seen, expected,
        "all 25, newest first, no repeats across pages"
    );

    let foreign = records[0].message.id;
    assert!(store
        .get_inbox_item(&other, &foreign)
        .await
        .expect("get")
        .is_none());
    assert!(
        !store
            .set_read(&other, &foreign, true)
            .await
            .expect("set_read"),
        "not the other citizen's message"
    );
    let item = store
        .get_inbox_item(&fc, &foreign)
        .await
        .expect("get")
        .expect("present");
    assert!(!item.is_read);
    assert_eq!(item.subject, records[0].message.content.subject);
}

/// An inbox spread over years, with months empty between (a store may partition it by
/// time): paging still goes newest first through all of it, and each item is found by id.
pub async fn the_inbox_pages_across_months_and_gaps(store: Arc<dyn Store>) {
    const DAY_MS: u64 = 24 * 3600 * 1000;
    let fc = fresh_fiscal_code();
    // Every 17 days for a year, then nothing for two years, then a few more.
    let times = (0..22u64)
        .map(|k| 1_700_000_000_000 + k * 17 * DAY_MS)
        .chain((0..4u64).map(|k| 1_700_000_000_000 + (1100 + k) * DAY_MS));
    let records: Vec<MessageRecord> = times
        .map(|ms| sample_record(&fc, ms, MessageStatus::Processed))
        .collect();
    store.deliver(records.clone()).await.expect("deliver");
    for limit in [1, 3, 7, 100] {
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let page = store.list_inbox(&fc, cursor, limit).await.expect("list");
            assert!(page.len() <= limit);
            let Some(last) = page.last() else { break };
            cursor = Some(last.id);
            seen.extend(page.into_iter().map(|i| i.id));
        }
        let expected: Vec<Ulid> = records.iter().rev().map(|r| r.message.id).collect();
        assert_eq!(seen, expected, "pages of {limit}");
    }
    let oldest = records[0].message.id;
    assert!(store.set_read(&fc, &oldest, true).await.expect("read"));
    assert!(
        store
            .get_inbox_item(&fc, &oldest)
            .await
            .expect("get")
            .expect("there")
            .is_read
    );
}

pub async fn read_state_can_be_set_and_cleared(store: Arc<dyn Store>) {
    let fc = fresh_fiscal_code();
    let record = sample_record(&fc, 4_000, MessageStatus::Processed);
    let id = record.message.id;
    store.deliver(vec![record]).await.expect("deliver");
    assert!(store.set_read(&fc, &id, true).await.expect("set"));
    assert!(
        store
            .get_inbox_item(&fc, &id)
            .await
            .expect("get")
            .expect("item")
            .is_read
    );
    assert!(store.set_read(&fc, &id, false).await.expect("clear"));
    assert!(
        !store
            .get_inbox_item(&fc, &id)
            .await
            .expect("get")
            .expect("item")
            .is_read
    );
    assert!(!store
        .set_read(&fc, &Ulid::new(), true)
        .await
        .expect("unknown"));
}

// ---- settings ------------------------------------------------------------------------

pub async fn a_quota_gives_exactly_its_limit_per_counter_and_period(store: Arc<dyn Store>) {
    let key = format!("key-{}", Ulid::new());
    for expected in 1..=3 {
        assert_eq!(
            store
                .take_quota(&key, "2026-W49", 1, 3)
                .await
                .expect("take"),
            Some(expected)
        );
    }
    assert_eq!(
        store
            .take_quota(&key, "2026-W49", 1, 3)
            .await
            .expect("take"),
        None,
        "spent"
    );
    assert_eq!(store.quota_used(&key, "2026-W49").await.expect("used"), 3);
    // Another period, another counter: each its own.
    assert_eq!(
        store
            .take_quota(&key, "2026-W50", 1, 3)
            .await
            .expect("take"),
        Some(1)
    );
    let other = format!("{key}-other");
    assert_eq!(
        store
            .take_quota(&other, "2026-W49", 1, 3)
            .await
            .expect("take"),
        Some(1)
    );
    assert_eq!(store.quota_used(&other, "2026-W48").await.expect("used"), 0);
    assert_eq!(
        store
            .take_quota(&other, "2026-W51", 1, 0)
            .await
            .expect("take"),
        None,
        "a limit of 0 gives nothing"
    );
    // A limit raised later gives the difference.
    assert_eq!(
        store
            .take_quota(&key, "2026-W49", 1, 4)
            .await
            .expect("take"),
        Some(4)
    );
}

/// Many at once are taken all or none: a take that would pass the limit takes nothing.
pub async fn a_quota_is_taken_many_at_once_all_or_none(store: Arc<dyn Store>) {
    let key = format!("key-{}", Ulid::new());
    let take = |amount| {
        let (store, key) = (Arc::clone(&store), key.clone());
        async move {
            store
                .take_quota(&key, "2026-W49", amount, 10)
                .await
                .expect("take")
        }
    };
    assert_eq!(take(11).await, None, "more than the whole limit");
    assert_eq!(store.quota_used(&key, "2026-W49").await.expect("used"), 0);
    assert_eq!(take(6).await, Some(6), "the first take may be many");
    assert_eq!(take(5).await, None, "one more than is left");
    assert_eq!(take(4).await, Some(10), "exactly what is left");
    assert_eq!(take(1).await, None);
    assert_eq!(store.quota_used(&key, "2026-W49").await.expect("used"), 10);
}

/// Takers racing for one quota get exactly its limit between them, each count once.
pub async fn racing_takers_share_a_quota_exactly(store: Arc<dyn Store>) {
    const LIMIT: u32 = 25;
    let key = format!("key-{}", Ulid::new());
    let takers: Vec<_> = (0..4)
        .map(|_| {
            let (store, key) = (Arc::clone(&store), key.clone());
            tokio::spawn(async move {
                let mut taken = Vec::new();
                for _ in 0..10 {
                    if let Some(n) = store
                        .take_quota(&key, "2026-W49", 1, LIMIT)
                        .await
                        .expect("take")
                    {
                        taken.push(n);
                    }
                }
                taken
            })
        })
        .collect();
    let mut taken = Vec::new();
    for taker in takers {
        taken.extend(taker.await.expect("taker"));
    }
    taken.sort_unstable();
    assert_eq!(taken, (1..=LIMIT).collect::<Vec<_>>());
    assert_eq!(
        store.quota_used(&key, "2026-W49").await.expect("used"),
        LIMIT
    );
}

fn idempotent_submit(request_hash: &str) -> IdempotentSubmit {
    IdempotentSubmit {
        request_hash: request_hash.into(),
        message_id: Ulid::new(),
        created_at: model::timestamp::Timestamp::parse("2026-11-30T10:00:00.123Z")
            .expect("timestamp"),
        accepted: false,
    }
}

pub async fn an_idempotency_key_is_claimed_once_per_service(store: Arc<dyn Store>) {
    let service = format!("svc-{}", Ulid::new());
    let first = idempotent_submit("first");
    let retry = idempotent_submit("retry");
    assert_eq!(
        store
            .claim_idempotency_key(&service, "key-1", &first)
            .await
            .expect("claim"),
        None
    );
    assert_eq!(
        store
            .claim_idempotency_key(&service, "key-1", &retry)
            .await
            .expect("claim"),
        Some(first.clone()),
        "the earlier claim, unchanged"
    );
    store
        .settle_idempotency_key(&service, "key-1")
        .await
        .expect("settle");
    assert_eq!(
        store
            .claim_idempotency_key(&service, "key-1", &retry)
            .await
            .expect("claim"),
        Some(IdempotentSubmit {
            accepted: true,
            ..first
        })
    );
    // Another key, or the same key of another service: their own.
    // (Ids of this run's own: a shared CQL server keeps claims for 48 h.)
    let another = format!("another-{service}");
    for (service, key) in [(service.as_str(), "key-2"), (another.as_str(), "key-1")] {
        assert_eq!(
            store
                .claim_idempotency_key(service, key, &retry)
                .await
                .expect("claim"),
            None,
            "{service} {key}"
        );
    }

    // Racing claims: one wins, and every other sees the winner.
    let key = format!("key-{}", Ulid::new());
    let racers: Vec<_> = (0..4)
        .map(|i| {
            let (store, service, key) = (Arc::clone(&store), service.clone(), key.clone());
            tokio::spawn(async move {
                let mine = idempotent_submit(&format!("racer-{i}"));
                let earlier = store
                    .claim_idempotency_key(&service, &key, &mine)
                    .await
                    .expect("claim");
                earlier.unwrap_or(mine).message_id
            })
        })
        .collect();
    let mut winners = Vec::new();
    for racer in racers {
        winners.push(racer.await.expect("racer"));
    }
    winners.dedup();
    assert_eq!(winners.len(), 1, "one message for one key: {winners:?}");
}

pub async fn settings_are_set_once(store: Arc<dyn Store>) {
    let name = format!("setting-{}", unique());
    assert_eq!(store.get_setting(&name).await.expect("get"), None);
    assert!(store
        .put_setting_if_absent(&name, "first")
        .await
        .expect("put"));
    assert!(!store
        .put_setting_if_absent(&name, "second")
        .await
        .expect("put again"));
    assert_eq!(
        store.get_setting(&name).await.expect("get").as_deref(),
        Some("first")
    );
    store.put_setting(&name, "third").await.expect("overwrite");
    assert_eq!(
        store.get_setting(&name).await.expect("get").as_deref(),
        Some("third")
    );
}

fn installation(id: &str, token: &str) -> Installation {
    Installation {
        id: InstallationId::parse("id", id).expect("valid id"),
        platform: Platform::Fcm,
        token: DeviceToken::parse("token", token).expect("valid token"),
        app_version: Some("1.0.0".into()),
        updated_at: model::samples::CREATED_AT.parse().expect("a timestamp"),
    }
}

pub async fn installations_are_per_citizen_and_replace_by_id(store: Arc<dyn Store>) {
    let (alice, bob, nobody) = (
        fresh_fiscal_code(),
        fresh_fiscal_code(),
        fresh_fiscal_code(),
    );
    let phone = installation("phone", "token-1");
    let tablet = installation("tablet", "token-2");
    store.put_installation(&alice, &tablet).await.expect("put");
    store.put_installation(&alice, &phone).await.expect("put");
    store
        .put_installation(&bob, &installation("phone", "token-bob"))
        .await
        .expect("put");
    assert_eq!(
        store.list_installations(&alice).await.expect("list"),
        vec![phone.clone(), tablet.clone()]
    );
    // The app registering again under the same id replaces the token.
    let renewed = installation("phone", "token-3");
    store.put_installation(&alice, &renewed).await.expect("put");
    let batch = store
        .installations_of(&[bob.clone(), nobody.clone(), alice.clone()])
        .await
        .expect("batch");
    assert_eq!(batch.len(), 3);
    assert_eq!(batch[0][0].token.expose(), "token-bob");
    assert!(batch[1].is_empty());
    assert_eq!(batch[2], vec![renewed.clone(), tablet.clone()]);
}

pub async fn installations_are_removed_one_stale_token_or_all(store: Arc<dyn Store>) {
    let (alice, bob) = (fresh_fiscal_code(), fresh_fiscal_code());
    for (id, token) in [("a", "t-a"), ("b", "t-b"), ("c", "t-c")] {
        store
            .put_installation(&alice, &installation(id, token))
            .await
            .expect("put");
    }
    store
        .put_installation(&bob, &installation("a", "t-bob"))
        .await
        .expect("put");
    let a = InstallationId::parse("id", "a").expect("id");
    assert!(store.delete_installation(&alice, &a).await.expect("delete"));
    assert!(!store.delete_installation(&alice, &a).await.expect("again"));
    // A provider's "token gone" must not remove a device that registered a new token since.
    let b = InstallationId::parse("id", "b").expect("id");
    let old = DeviceToken::parse("t", "t-old").expect("token");
    assert!(!store
        .delete_stale_installation(&alice, &b, &old)
        .await
        .expect("stale"));
    let current = DeviceToken::parse("t", "t-b").expect("token");
    assert!(store
        .delete_stale_installation(&alice, &b, &current)
        .await
        .expect("stale"));
    assert_eq!(
        store.list_installations(&alice).await.expect("list").len(),
        1
    );
    assert_eq!(store.delete_installations(&alice).await.expect("all"), 1);
    assert!(store
        .list_installations(&alice)
        .await
        .expect("list")
        .is_empty());
    assert_eq!(store.list_installations(&bob).await.expect("list").len(), 1);
}

pub async fn channel_outcomes_keep_the_best_per_channel(store: Arc<dyn Store>) {
    let fc = fresh_fiscal_code();
    let record = sample_record(&fc, 1, MessageStatus::Processed);
    let id = record.message.id;
    store.deliver(vec![record]).await.expect("deliver");
    store
        .record_channel_outcomes(vec![
            (id, Channel::Push, ChannelStatus::Failed.into()),
            (id, Channel::Push, ChannelStatus::Sent.into()),
            (id, Channel::Push, ChannelStatus::Expired.into()),
            (id, Channel::Email, ChannelStatus::Failed.into()),
            (Ulid::new(), Channel::Email, ChannelStatus::Sent.into()),
        ])
        .await
        .expect("record");
    let stored = store.get_message(&id).await.expect("get").expect("there");
    assert_eq!(
        stored.notification,
        NotificationStatus {
            email: Some(ChannelStatus::Failed.into()),
            webhook: Some(ChannelStatus::Sent.into()),
        }
    );
    assert_eq!(stored.status, MessageStatus::Processed);
}

pub async fn a_sent_notification_is_known_by_message_channel_and_target(store: Arc<dyn Store>) {
    let fc = fresh_fiscal_code();
    let id = sample_record(&fc, 1, MessageStatus::Processed).message.id;
    let key = |channel, target: &str| NotificationKey {
        message_id: id,
        channel,
        target: target.into(),
    };
    let phone = key(Channel::Push, "phone");
    let tablet = key(Channel::Push, "tablet");
    let email = key(Channel::Email, "");
    let elsewhere = NotificationKey {
        message_id: Ulid::new(),
        ..phone.clone()
    };
    let asked = [
        phone.clone(),
        tablet.clone(),
        email.clone(),
        elsewhere.clone(),
    ];
    assert_eq!(
        store.notifications_sent(&asked).await.expect("read"),
        [false; 4],
        "nothing recorded yet"
    );
    store
        .record_notifications_sent(vec![phone.clone(), email.clone()])
        .await
        .expect("record");
    // Recording again changes nothing.
    store
        .record_notifications_sent(vec![phone.clone()])
        .await
        .expect("record again");
    assert_eq!(
        store.notifications_sent(&asked).await.expect("read"),
        [true, false, true, false],
        "per message, channel and device"
    );
    assert!(store
        .notifications_sent(&[])
        .await
        .expect("nothing asked")
        .is_empty());

    // After a batch's sends, both records in one call.
    let record = sample_record(&fc, 2, MessageStatus::Processed);
    let batch = record.message.id;
    store.deliver(vec![record]).await.expect("deliver");
    let pushed = NotificationKey {
        message_id: batch,
        channel: Channel::Push,
        target: "phone".into(),
    };
    store
        .settle_notifications(
            vec![pushed.clone()],
            vec![
                (batch, Channel::Push, ChannelStatus::Sent.into()),
                (batch, Channel::Email, ChannelStatus::Throttled.into()),
            ],
        )
        .await
        .expect("settle");
    assert_eq!(
        store.notifications_sent(&[pushed]).await.expect("read"),
        [true]
    );
    let stored = store
        .get_message(&batch)
        .await
        .expect("get")
        .expect("there");
    assert_eq!(
        stored.notification,
        NotificationStatus {
            email: Some(ChannelStatus::Throttled.into()),
            webhook: Some(ChannelStatus::Sent.into()),
        }
    );
}

/// Instantiates every check as a `#[tokio::test]`. `$make` is an async expression giving
/// `(Arc<dyn Store>, guard)`; the guard lives as long as the test.
#[macro_export]
macro_rules! store_conformance {
    ($make:expr) => {
        $crate::store_conformance!(@each $make;
            services_round_trip_and_delete,
            services_are_listed_by_id,
            organizations_round_trip_and_own_keys,
            campaigns_round_trip,
            campaign_progress_is_merged_once_and_counted_exactly,
            scheduled_records_are_kept_by_minute_until_released,
            a_lease_has_one_holder_until_it_runs_out,
            subscription_changes_keep_each_citizens_last_of_the_day_per_scope,
            keys_map_hashes_to_owners,
            profiles_and_preferences_are_per_citizen,
            routing_reads_a_batch_in_order,
            message_status_never_goes_backwards,
            rejected_messages_stay_out_of_the_inbox,
            delivering_twice_keeps_one_copy_and_its_read_state,
            the_inbox_pages_newest_first_and_only_shows_its_citizen,
            the_inbox_pages_across_months_and_gaps,
            read_state_can_be_set_and_cleared,
            settings_are_set_once,
            a_quota_gives_exactly_its_limit_per_counter_and_period,
            a_quota_is_taken_many_at_once_all_or_none,
            racing_takers_share_a_quota_exactly,
            an_idempotency_key_is_claimed_once_per_service,
            installations_are_per_citizen_and_replace_by_id,
            installations_are_removed_one_stale_token_or_all,
            channel_outcomes_keep_the_best_per_channel,
            a_sent_notification_is_known_by_message_channel_and_target);
    };
    (@each $make:expr; $($name:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (store, _guard) = $make.await;
                $crate::conformance::$name(store).await;
            }
        )*
    };
}
