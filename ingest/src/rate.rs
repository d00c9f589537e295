//! Each service's request rate (DESIGN §5): the deployment's `ingest.rate_limit` (IO's
//! gateway default, 150 requests per 5 s) or the service's own `rate_limit`. Over it, a
//! `429` with `Retry-After`; every answer to a service's key carries `RateLimit-Limit`,
//! `RateLimit-Remaining` and `RateLimit-Reset` (seconds until the allowance is whole again).
//!
//! The allowance lives in each ingest process (`governor`'s GCRA): no store round trip per
//! request. With `ingest.replicas` = N, each process allows its share, the limit divided by
//! N rounded up, and the headers describe that share. Spread evenly over the replicas (as a
//! round-robin balancer spreads requests), a sender gets the whole limit, and never more
//! than N − 1 requests a period over it; a sender whose requests all reach one replica gets
//! only that replica's share.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderName, HeaderValue};
use axum::response::{IntoResponseParts, ResponseParts};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use model::service::{RateLimit, Service};
use problem::Problem;

/// Services whose allowance is remembered; an idle one forgotten is whole again anyway.
const SERVICES: u64 = 100_000;
/// How long an allowance is kept without a request: longer than any period.
const IDLE: Duration = Duration::from_secs(2 * 86_400);

type Limiter = RateLimiter<NotKeyed, InMemoryState, DefaultClock, StateInformationMiddleware>;

/// One service's allowance in this process.
struct Allowance {
    share: RateLimit,
    limiter: Limiter,
    /// Whether its last request was refused: a run of refusals is logged once, so an SRE
    /// learns which service to talk to without a line per refused request.
    refusing: AtomicBool,
}

impl Allowance {
    fn new(share: RateLimit) -> Self {
        Self {
            share,
            limiter: RateLimiter::direct(quota(share))
                .with_middleware::<StateInformationMiddleware>(),
            refusing: AtomicBool::new(false),
        }
    }
}

/// `share.requests` at once, refilled one at a time over `share.period_seconds`.
fn quota(share: RateLimit) -> Quota {
    let requests = std::num::NonZeroU32::new(share.requests).unwrap_or(std::num::NonZeroU32::MIN);
    let period = Duration::from_secs(u64::from(share.period_seconds.max(1)));
    Quota::with_period(period / requests.get())
        .unwrap_or_else(|| Quota::per_second(requests))
        .allow_burst(requests)
}

/// Every service's allowance in this process.
pub struct RateLimits {
    default: RateLimit,
    replicas: u32,
    services: moka::sync::Cache<String, Arc<Allowance>>,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("default", &self.default)
            .field("replicas", &self.replicas)
            .finish_non_exhaustive()
    }
}

impl RateLimits {
    pub fn new(default: RateLimit, replicas: u32) -> Self {
        Self {
            default,
            replicas: replicas.max(1),
            services: moka::sync::Cache::builder()
                .max_capacity(SERVICES)
                .time_to_idle(IDLE)
                .build(),
        }
    }

    /// What this process allows of `limit`.
    fn share(&self, limit: RateLimit) -> RateLimit {
        RateLimit {
            requests: limit.requests.div_ceil(self.replicas),
            period_seconds: limit.period_seconds,
        }
    }

    fn allowance(&self, service: &Service) -> Arc<Allowance> {
        let share = self.share(service.limits.rate_limit.unwrap_or(self.default));
        match self.services.get(service.id.as_str()) {
            Some(allowance) if allowance.share == share => allowance,
            // New, or its limit changed: it starts whole.
            _ => {
                let allowance = Arc::new(Allowance::new(share));
                self.services
                    .insert(service.id.clone(), Arc::clone(&allowance));
                allowance
            }
        }
    }

    /// Takes one request from `service`'s allowance: its headers, or a `429` once it is spent.
    pub fn admit(&self, service: &Service) -> Result<RateHeaders, Problem> {
        let allowance = self.allowance(service);
        let share = allowance.share;
        match allowance.limiter.check() {
            Ok(state) => {
                if allowance.refusing.load(Ordering::Relaxed) {
                    allowance.refusing.store(false, Ordering::Relaxed);
                }
                let remaining = state.remaining_burst_capacity();
                Ok(RateHeaders {
                    limit: share.requests,
                    remaining,
                    reset_secs: until_whole(share, remaining),
                })
            }
            Err(not_until) => {
                if !allowance.refusing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        service_id = %service.id,
                        requests = share.requests,
                        period_seconds = share.period_seconds,
                        "a service is over its rate limit: refusing its requests with 429"
                    );
                }
                let wait = not_until.wait_time_from(allowance.limiter.clock().now());
                let retry_after = whole_seconds(wait).max(1);
                let headers = RateHeaders {
                    limit: share.requests,
                    remaining: 0,
                    reset_secs: until_whole(share, 0),
                };
                let problem = Problem::too_many_requests(
                    format!(
                        "this service may make {} requests every {} s here; retry after {retry_after} s",
                        share.requests, share.period_seconds
                    ),
                    retry_after,
                );
                Err(headers.stamp_problem(problem))
            }
        }
    }
}

/// Seconds until `share`'s allowance, now at `remaining`, is whole again.
fn until_whole(share: RateLimit, remaining: u32) -> u64 {
    let spent = u64::from(share.requests.saturating_sub(remaining));
    (spent * u64::from(share.period_seconds)).div_ceil(u64::from(share.requests.max(1)))
}

fn whole_seconds(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

/// The `RateLimit-*` headers of one answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateHeaders {
    pub limit: u32,
    pub remaining: u32,
    pub reset_secs: u64,
}

impl RateHeaders {
    pub const LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
    pub const REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
    pub const RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

    fn values(self) -> [(HeaderName, HeaderValue); 3] {
        [
            (Self::LIMIT, HeaderValue::from(self.limit)),
            (Self::REMAINING, HeaderValue::from(self.remaining)),
            (Self::RESET, HeaderValue::from(self.reset_secs)),
        ]
    }

    fn stamp_problem(self, mut problem: Problem) -> Problem {
        self.add_to(&mut problem);
        problem
    }

    /// Puts these headers on `problem`'s answer too.
    pub fn add_to(self, problem: &mut Problem) {
        problem
            .headers
            .get_or_insert_default()
            .extend(self.values());
    }
}

impl IntoResponseParts for RateHeaders {
    type Error = std::convert::Infallible;

    fn into_response_parts(self, mut parts: ResponseParts) -> Result<ResponseParts, Self::Error> {
        parts.headers_mut().extend(self.values());
        Ok(parts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(id: &str, rate_limit: Option<RateLimit>) -> Service {
        let mut service = model::samples::service(id);
        service.limits.rate_limit = rate_limit;
        service
    }

    const THREE_AN_HOUR: RateLimit = RateLimit {
        requests: 3,
        period_seconds: 3600,
    };

    #[test]
    fn a_service_gets_its_limit_then_a_429_saying_when_to_come_back() {
        let limits = RateLimits::new(THREE_AN_HOUR, 1);
        let acme = service("acme", None);
        let remaining: Vec<_> = (0..3)
            .map(|_| limits.admit(&acme).expect("within the limit"))
            .map(|h| (h.limit, h.remaining, h.reset_secs))
            .collect();
        assert_eq!(remaining, [(3, 2, 1200), (3, 1, 2400), (3, 0, 3600)]);
        let refused = limits.admit(&acme).expect_err("over the limit");
        assert_eq!(refused.status, 429);
        // One request comes back every 20 minutes.
        assert!((1199..=1200).contains(&refused.retry_after.unwrap_or(0)));
        let headers = refused.headers.expect("rate-limit headers");
        assert_eq!(headers[RateHeaders::REMAINING], "0");
        assert_eq!(headers[RateHeaders::LIMIT], "3");
        // Another service has its own allowance.
        assert!(limits.admit(&service("other", None)).is_ok());
    }

    #[test]
    fn a_services_own_limit_wins_and_a_change_applies_at_once() {
        let limits = RateLimits::new(THREE_AN_HOUR, 1);
        let own = RateLimit {
            requests: 1,
            period_seconds: 60,
        };
        let mut acme = service("acme", Some(own));
        assert_eq!(limits.admit(&acme).ok().map(|h| h.limit), Some(1));
        assert!(limits.admit(&acme).is_err());
        acme.limits.rate_limit = Some(RateLimit {
            requests: 2,
            period_seconds: 60,
        });
        assert_eq!(limits.admit(&acme).ok().map(|h| h.remaining), Some(1));
    }

    #[test]
    fn each_replica_allows_its_share_rounded_up() {
        let limits = RateLimits::new(RateLimit::IO_DEFAULT, 4);
        let acme = service("acme", None);
        let admitted = (0..150).take_while(|_| limits.admit(&acme).is_ok()).count();
        assert_eq!(admitted, 38); // 150 / 4, rounded up
    }
}
