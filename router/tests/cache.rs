//! The router's profile cache on the real embedded log and SQLite store: it answers from
//! memory while its change follower hears from the log, forgets a citizen whose change it
//! reads, skips records that are not changes, reads the store whenever the follower is not
//! heard from, and keeps to its memory bound.

use std::sync::Arc;
use std::time::Duration;

use bus::embedded::EmbeddedBus;
use bus::{Bus, Record};
use model::pipeline::{topics, ProfileChange};
use model::profile::{Profile, ServicePreference};
use model::FiscalCode;
use router::cache::{ProfileCache, RouterSettings};
use router::changes::ChangeFollower;
use store::conformance::fresh_fiscal_code;
use store::sqlite::SqliteStore;
use store::{Routing, Store};
use tokio::sync::watch;

fn preference(inbox: bool) -> ServicePreference {
    ServicePreference {
        is_email_enabled: true,
        is_inbox_enabled: inbox,
        is_webhook_enabled: true,
        settings_version: 0,
        can_access_message_read_status: true,
    }
}

struct Setup {
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
    cache: Arc<ProfileCache>,
    stop: watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

/// A cache whose follower runs on the embedded log.
async fn setup(max_mb: u64) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).expect("store"));
    let bus: Arc<dyn Bus> = EmbeddedBus::open(dir.path()).expect("log");
    let ttl = RouterSettings::default().cache_ttl();
    let cache = Arc::new(ProfileCache::new(Arc::clone(&store), max_mb, ttl));
    let follower = ChangeFollower::join(&*bus, "router-cache", Arc::clone(&cache))
        .await
        .expect("join");
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(follower.run(stopped));
    Setup {
        store,
        bus,
        cache,
        stop,
        _dir: dir,
    }
}

async fn routing(cache: &ProfileCache, fc: &FiscalCode, service: &str) -> Routing {
    cache
        .get_routing(&[(fc.clone(), service.to_string())])
        .await
        .expect("routing")
        .remove(0)
}

/// Waits until the follower has read the log once (its first poll), which is when the
/// cache starts being used.
async fn until_cached(cache: &ProfileCache, fc: &FiscalCode, service: &str) {
    for _ in 0..200 {
        routing(cache, fc, service).await;
        if cache.usage().0 > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the cache never took the citizen in");
}

async fn announce(bus: &dyn Bus, payloads: Vec<Vec<u8>>) {
    let records = payloads.into_iter().map(|p| Record::new(b"k".to_vec(), p));
    bus.publish(topics::PROFILE_CHANGES, records.collect())
        .await
        .expect("publish");
}

fn change(fc: &FiscalCode) -> Vec<u8> {
    serde_json::to_vec(&ProfileChange {
        fiscal_code: fc.clone(),
    })
    .expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_citizen_is_answered_from_memory_until_their_change_is_read() {
    let s = setup(256).await;
    let fc = fresh_fiscal_code();
    s.store
        .put_profile(&fc, &Profile::new_default())
        .await
        .expect("profile");
    s.store
        .put_preference(&fc, "svc", &preference(true))
        .await
        .expect("pref");
    until_cached(&s.cache, &fc, "svc").await;

    // The store changes behind the cache's back: the cache still answers what it read.
    s.store
        .put_preference(&fc, "svc", &preference(false))
        .await
        .expect("pref");
    let cached = routing(&s.cache, &fc, "svc").await;
    assert_eq!(
        cached.preference,
        Some(preference(true)),
        "served from memory"
    );

    // A record that is not a change is skipped; the change after it is honoured.
    announce(&*s.bus, vec![b"not json".to_vec(), change(&fc)]).await;
    let mut seen = cached;
    for _ in 0..200 {
        seen = routing(&s.cache, &fc, "svc").await;
        if seen.preference == Some(preference(false)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        seen.preference,
        Some(preference(false)),
        "the change is read"
    );
    let _ = s.stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_follower_heard_from_every_read_goes_to_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).expect("store"));
    let cache = ProfileCache::new(
        Arc::clone(&store),
        256,
        RouterSettings::default().cache_ttl(),
    );
    let fc = fresh_fiscal_code();
    assert_eq!(routing(&cache, &fc, "svc").await.profile, None);
    store
        .put_profile(&fc, &Profile::new_default())
        .await
        .expect("profile");
    assert!(
        routing(&cache, &fc, "svc").await.profile.is_some(),
        "no follower: nothing may be served from memory"
    );
    assert_eq!(cache.usage(), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_keeps_to_its_memory_bound() {
    let s = setup(1).await;
    let first = fresh_fiscal_code();
    s.store
        .put_profile(&first, &Profile::new_default())
        .await
        .expect("profile");
    until_cached(&s.cache, &first, "svc").await;
    // Far more citizens than 1 MiB holds (each weighs about 850 bytes).
    let citizens: Vec<FiscalCode> = (0..4000).map(|_| fresh_fiscal_code()).collect();
    for chunk in citizens.chunks(500) {
        for fc in chunk {
            s.store
                .put_profile(fc, &Profile::new_default())
                .await
                .expect("profile");
        }
        let pairs: Vec<_> = chunk
            .iter()
            .map(|fc| (fc.clone(), "svc".to_string()))
            .collect();
        let got = s.cache.get_routing(&pairs).await.expect("routing");
        assert!(got.iter().all(|r| r.profile.is_some()));
    }
    let (entries, bytes) = s.cache.usage();
    assert!(bytes <= 1024 * 1024, "{bytes} bytes held");
    assert!(
        entries > 100 && entries < 4001,
        "{entries} citizens held: some, not all"
    );
    let _ = s.stop.send(true);
}
