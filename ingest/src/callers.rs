//! Which service a key belongs to, remembered for a few seconds. Every submit needs it, and
//! asking the store twice per message (key, then service) costs more than the rest of
//! the request. Manage operations in this process clear it at once; other ingest processes
//! see a change within the time to live. Services are shared, not copied: a deep copy of
//! one per request showed in the profile.
//!
//! While the store cannot answer, a key seen within [`STALE_IF_UNAVAILABLE`] keeps
//! working: with Kafka as the log, a store outage must not stop ingest accepting messages.
//! A key revoked during the outage is thus honoured until the store is back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use model::service::{KeySlot, Service};

/// Most keys remembered; beyond it the cache starts over (there are few services).
const CAPACITY: usize = 10_000;

/// How old a remembered key may be and still serve while the store is unavailable.
pub const STALE_IF_UNAVAILABLE: Duration = Duration::from_secs(15 * 60);

/// A service key's owner: the service, and which of its keys it is.
#[derive(Debug, Clone)]
pub struct Caller {
    pub service: Arc<Service>,
    pub slot: KeySlot,
}

#[derive(Debug)]
pub struct CallerCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, Caller)>>,
}

impl CallerCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Caller)>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The service of `key_hash`, if remembered and fresh.
    pub fn get(&self, key_hash: &str) -> Option<Caller> {
        self.remembered_within(key_hash, self.ttl)
    }

    /// The service of `key_hash` if remembered within [`STALE_IF_UNAVAILABLE`], fresh or
    /// not: for when the store cannot be asked.
    pub fn get_stale(&self, key_hash: &str) -> Option<Caller> {
        self.remembered_within(key_hash, STALE_IF_UNAVAILABLE)
    }

    fn remembered_within(&self, key_hash: &str, age: Duration) -> Option<Caller> {
        let entries = self.entries();
        let (at, caller) = entries.get(key_hash)?;
        (at.elapsed() < age).then(|| caller.clone())
    }

    pub fn put(&self, key_hash: String, caller: Caller) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries();
        if entries.len() >= CAPACITY {
            entries.clear();
        }
        entries.insert(key_hash, (Instant::now(), caller));
    }

    /// Forgets everything: a service or key changed.
    pub fn clear(&self) {
        self.entries().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(id: &str) -> Caller {
        Caller {
            service: Arc::new(model::samples::service(id)),
            slot: KeySlot::Primary,
        }
    }

    #[test]
    fn remembers_until_cleared() {
        let cache = CallerCache::new(Duration::from_secs(60));
        assert!(cache.get("h").is_none());
        cache.put("h".into(), service("s1"));
        assert_eq!(
            cache.get("h").map(|c| c.service.id.clone()),
            Some("s1".to_string())
        );
        cache.clear();
        assert!(cache.get("h").is_none());
    }

    #[test]
    fn a_zero_time_to_live_remembers_nothing() {
        let cache = CallerCache::new(Duration::ZERO);
        cache.put("h".into(), service("s1"));
        assert!(cache.get("h").is_none());
    }

    #[test]
    fn a_key_past_its_time_to_live_still_serves_while_the_store_is_away() {
        let cache = CallerCache::new(Duration::from_millis(1));
        cache.put("h".into(), service("s1"));
        std::thread::sleep(Duration::from_millis(5));
        assert!(cache.get("h").is_none(), "stale for normal use");
        assert_eq!(
            cache.get_stale("h").map(|c| c.service.id.clone()),
            Some("s1".to_string())
        );
        assert!(cache.get_stale("unknown").is_none());
    }
}
