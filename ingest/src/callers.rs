//! Which service a key belongs to, remembered for a few seconds. Every submit needs it, and
//! asking the store twice per message (key, then service) costs more than the rest of
//! the request. Manage operations in this process clear it at once; other ingest processes
//! see a change within the time to live. Services are shared, not copied: a deep copy of
//! one per request showed in the profile.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use model::service::Service;

/// Most keys remembered; beyond it the cache starts over (there are few services).
const CAPACITY: usize = 10_000;

#[derive(Debug)]
pub struct CallerCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, Arc<Service>)>>,
}

impl CallerCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Arc<Service>)>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The service of `key_hash`, if remembered and fresh.
    pub fn get(&self, key_hash: &str) -> Option<Arc<Service>> {
        let entries = self.entries();
        let (at, service) = entries.get(key_hash)?;
        (at.elapsed() < self.ttl).then(|| Arc::clone(service))
    }

    pub fn put(&self, key_hash: String, service: Arc<Service>) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries();
        if entries.len() >= CAPACITY {
            entries.clear();
        }
        entries.insert(key_hash, (Instant::now(), service));
    }

    /// Forgets everything: a service or key changed.
    pub fn clear(&self) {
        self.entries().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(id: &str) -> Service {
        serde_json::from_value(serde_json::json!({
            "id": id,
            "name": "n", "description": "d",
            "organization": {"name": "o", "fiscal_code": "00493410583"},
            "metadata": {"scope": "NATIONAL"},
            "last_update": "2026-01-01T00:00:00.000Z",
            "primary_key_generation": 0,
            "secondary_key_generation": 0
        }))
        .expect("service")
    }

    #[test]
    fn remembers_until_cleared() {
        let cache = CallerCache::new(Duration::from_secs(60));
        assert!(cache.get("h").is_none());
        cache.put("h".into(), Arc::new(service("s1")));
        assert_eq!(cache.get("h").map(|s| s.id.clone()), Some("s1".to_string()));
        cache.clear();
        assert!(cache.get("h").is_none());
    }

    #[test]
    fn a_zero_time_to_live_remembers_nothing() {
        let cache = CallerCache::new(Duration::ZERO);
        cache.put("h".into(), Arc::new(service("s1")));
        assert!(cache.get("h").is_none());
    }
}
