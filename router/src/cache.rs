//! What the router knows of citizens, kept in memory so that routing a message does not wait
//! on the store: each citizen's profile and the preferences read so far, bounded by memory
//! (`moka`, weighed in bytes), read through to the store on a miss, and dropped when the
//! citizen changes (the `profile-changes` topic, see [`crate::changes`]) or after a time to
//! live, the safety net should a change record be lost.
//!
//! A load that raced a change must not put the old values back: a change bumps an epoch
//! under the same lock as the invalidation, and a load stores what it read only if no
//! change came while it read.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use model::profile::{Profile, ServicePreference};
use model::FiscalCode;
use serde::{Deserialize, Serialize};
use store::{Routing, Store, StoreError};

use crate::metrics;

/// How recently the change follower must have heard from the log for the cache to be
/// used: the bound on how long a change may go unhonoured (invariant 4).
pub const FRESHNESS: Duration = Duration::from_secs(5);

/// The cache's bound when none is set and the store is shared (ScyllaDB), in MiB.
pub const DEFAULT_CACHE_MB: u64 = 256;

/// The `[router]` settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouterSettings {
    /// Most memory the profile cache takes, in MiB; 0 turns it off (every message reads the
    /// store). Unset: [`DEFAULT_CACHE_MB`] with a shared store, off with the embedded one,
    /// whose reads come from memory already (its page cache) and whose mass notices, one
    /// message per citizen, would only pay for filling a cache no one reads again.
    pub cache_max_mb: Option<u64>,
    /// How long a citizen stays cached without a change record, in seconds.
    pub cache_ttl_secs: u64,
}

impl Default for RouterSettings {
    fn default() -> Self {
        Self {
            cache_max_mb: None,
            cache_ttl_secs: 600,
        }
    }
}

impl RouterSettings {
    /// Why these settings cannot run, naming the key.
    pub fn check(&self) -> Result<(), String> {
        if self.cache_ttl_secs == 0 {
            return Err("router.cache_ttl_secs must be at least 1".into());
        }
        Ok(())
    }

    /// The cache's bound in MiB, for a store that is `embedded` in the process or not.
    pub fn cache_mb(&self, embedded: bool) -> u64 {
        self.cache_max_mb
            .unwrap_or(if embedded { 0 } else { DEFAULT_CACHE_MB })
    }

    pub fn cache_ttl(&self) -> Duration {
        Duration::from_secs(self.cache_ttl_secs)
    }
}

/// One citizen as cached: the profile (none: no such citizen) and each service's
/// preference read so far (none: not set).
#[derive(Debug, Clone, Default)]
struct Citizen {
    profile: Option<Profile>,
    preferences: HashMap<String, Option<ServicePreference>>,
}

impl Citizen {
    /// What routing a message of `service_id` needs, if this entry holds it.
    fn routing(&self, service_id: &str) -> Option<Routing> {
        match &self.profile {
            // No profile: the preference is never read.
            None => Some(Routing {
                profile: None,
                preference: None,
            }),
            Some(profile) => self.preferences.get(service_id).map(|preference| Routing {
                profile: Some(profile.clone()),
                preference: *preference,
            }),
        }
    }

    /// About how many bytes it holds: what the cache's bound counts. Serialised lengths
    /// stand in for the values' sizes, plus the entry's, the structs' and the allocations'
    /// overhead, calibrated on a million cached citizens (BENCHMARKS.md): resident memory
    /// grew about 860 bytes a citizen where their serialised profiles held about 400.
    fn weight(&self, fc: &str) -> u32 {
        let size = 450
            + fc.len()
            + self.profile.as_ref().map_or(0, json_len)
            + self
                .preferences
                .iter()
                .map(|(service, pref)| 96 + service.len() + pref.as_ref().map_or(0, json_len))
                .sum::<usize>();
        u32::try_from(size).unwrap_or(u32::MAX)
    }
}

fn json_len<T: Serialize>(value: &T) -> usize {
    serde_json::to_vec(value).map_or(0, |v| v.len())
}

/// The router's read-through cache of citizens.
#[derive(Debug)]
pub struct ProfileCache {
    store: Arc<dyn Store>,
    /// None when turned off.
    citizens: Option<moka::sync::Cache<String, Arc<Citizen>>>,
    /// Bumped by every change; held while storing loads and while invalidating.
    epoch: Mutex<u64>,
    /// When the change follower last read the log.
    heard: Mutex<Option<Instant>>,
}

impl ProfileCache {
    /// A cache of at most `max_mb` MiB (0: none, every read goes to the store), each
    /// citizen kept at most `ttl`.
    pub fn new(store: Arc<dyn Store>, max_mb: u64, ttl: Duration) -> Self {
        let citizens = (max_mb > 0).then(|| {
            metrics::cache_built();
            moka::sync::Cache::builder()
                .max_capacity(max_mb.saturating_mul(1024 * 1024))
                .weigher(|fc: &String, citizen: &Arc<Citizen>| citizen.weight(fc))
                .time_to_live(ttl)
                .eviction_listener(|_, _, cause| {
                    if cause.was_evicted() {
                        metrics::cache_evicted();
                    }
                })
                .build()
        });
        Self {
            store,
            citizens,
            epoch: Mutex::new(0),
            heard: Mutex::new(None),
        }
    }

    /// The change follower read the log (changes or none): what is cached is current.
    pub fn heard_from_the_log(&self) {
        *self.heard.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    }

    /// The cache, while the change follower has heard from the log within [`FRESHNESS`]:
    /// otherwise a change might be missed, so every read goes to the store, and what was
    /// cached is dropped.
    fn live(&self) -> Option<&moka::sync::Cache<String, Arc<Citizen>>> {
        let citizens = self.citizens.as_ref()?;
        let heard = *self.heard.lock().unwrap_or_else(|p| p.into_inner());
        if heard.is_some_and(|at| at.elapsed() < FRESHNESS) {
            Some(citizens)
        } else {
            if citizens.entry_count() > 0 {
                let mut epoch = self.epoch();
                *epoch += 1;
                citizens.invalidate_all();
            }
            None
        }
    }

    fn epoch(&self) -> std::sync::MutexGuard<'_, u64> {
        self.epoch.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// For each (citizen, service) pair, in order: what routing needs, from memory where
    /// it can, else from the store in one read for all the misses.
    pub async fn get_routing(
        &self,
        pairs: &[(FiscalCode, String)],
    ) -> Result<Vec<Routing>, StoreError> {
        let Some(citizens) = self.live() else {
            metrics::cache_reads(0, pairs.len());
            return self.store.get_routing(pairs).await;
        };
        let started = *self.epoch();
        let mut answers: Vec<Option<Routing>> = pairs
            .iter()
            .map(|(fc, service)| citizens.get(fc.as_str())?.routing(service))
            .collect();
        let mut misses: Vec<(FiscalCode, String)> = Vec::new();
        for ((fc, service), answer) in pairs.iter().zip(&answers) {
            let pair = (fc.clone(), service.clone());
            if answer.is_none() && !misses.contains(&pair) {
                misses.push(pair);
            }
        }
        metrics::cache_reads(pairs.len() - misses.len(), misses.len());
        metrics::cache_usage(citizens.entry_count(), citizens.weighted_size());
        if misses.is_empty() {
            return Ok(answers.into_iter().flatten().collect());
        }
        let loaded = self.store.get_routing(&misses).await?;
        // What each citizen's entry becomes: what was cached, with what was read.
        let mut updated: HashMap<&str, Citizen> = HashMap::new();
        for ((fc, service), routing) in misses.iter().zip(&loaded) {
            let entry = updated.entry(fc.as_str()).or_insert_with(|| {
                citizens
                    .get(fc.as_str())
                    .map(|c| Citizen::clone(&c))
                    .unwrap_or_default()
            });
            entry.profile.clone_from(&routing.profile);
            if routing.profile.is_some() {
                entry
                    .preferences
                    .insert(service.clone(), routing.preference);
            } else {
                entry.preferences.clear();
            }
        }
        for (answer, (fc, service)) in answers.iter_mut().zip(pairs) {
            if answer.is_none() {
                *answer = updated.get(fc.as_str()).and_then(|c| c.routing(service));
            }
        }
        {
            let epoch = self.epoch();
            if *epoch == started {
                for (fc, citizen) in updated {
                    citizens.insert(fc.to_string(), Arc::new(citizen));
                }
            }
        }
        answers
            .into_iter()
            .map(|a| a.ok_or_else(|| StoreError::Corrupt("a routing read went missing".into())))
            .collect()
    }

    /// Forgets the `changed` citizens.
    pub fn invalidate<'a>(&self, changed: impl IntoIterator<Item = &'a FiscalCode>) {
        let Some(citizens) = &self.citizens else {
            return;
        };
        let mut epoch = self.epoch();
        *epoch += 1;
        for fc in changed {
            citizens.invalidate(fc.as_str());
        }
    }

    /// How many citizens and about how many bytes it holds (after its pending upkeep).
    pub fn usage(&self) -> (u64, u64) {
        self.citizens.as_ref().map_or((0, 0), |c| {
            c.run_pending_tasks();
            (c.entry_count(), c.weighted_size())
        })
    }
}
