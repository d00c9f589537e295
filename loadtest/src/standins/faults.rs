//! Failures a stand-in answers with, as the real provider would: scripted by the device
//! token (so a test knows which device fails how) or drawn at random for a share of
//! requests (so a load test meets them), plus a fixed delay for slow responses.
//!
//! Scripted tokens, by prefix (APNs tokens are hex, so APNs has its own hex spellings):
//!
//! | what                          | FCM token      | APNs token |
//! |-------------------------------|----------------|------------|
//! | device gone                   | `unregistered` | `dead`     |
//! | token malformed               | `invalid`      | `bad0`     |
//! | `429` with `Retry-After`      | `status-429`   | `0429`     |
//! | `503`                         | `status-503`   | `0503`     |
//! | `500`                         | `status-500`   | `0500`     |
//! | N failures (`503`), then fine | `flaky-N`      | `f1a` + N  |

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use clap::Args;

/// What the stand-in does with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Gone,
    BadToken,
    Status(u16),
}

#[derive(Debug, Clone, Args)]
pub struct FaultArgs {
    /// Share of requests (0..1) answered `429` with `Retry-After`.
    #[arg(long, default_value_t = 0.0)]
    pub share_429: f64,
    /// Share of requests (0..1) answered `503`.
    #[arg(long, default_value_t = 0.0)]
    pub share_503: f64,
    /// Share of requests (0..1) answered "device gone".
    #[arg(long, default_value_t = 0.0)]
    pub share_unregistered: f64,
    /// Seconds sent in `Retry-After`.
    #[arg(long, default_value_t = 1)]
    pub retry_after: u64,
    /// Delay before every answer, in milliseconds (a slow provider).
    #[arg(long, default_value_t = 0)]
    pub delay_ms: u64,
    /// How many received notifications to keep for `GET /_standin/received`.
    #[arg(long, default_value_t = 2_000_000)]
    pub keep: usize,
}

impl Default for FaultArgs {
    fn default() -> Self {
        Self {
            share_429: 0.0,
            share_503: 0.0,
            share_unregistered: 0.0,
            retry_after: 1,
            delay_ms: 0,
            keep: 100_000,
        }
    }
}

/// The spellings of scripted tokens for one provider.
#[derive(Debug, Clone, Copy)]
pub struct Spellings {
    pub gone: &'static str,
    pub bad: &'static str,
    pub s429: &'static str,
    pub s503: &'static str,
    pub s500: &'static str,
    pub flaky: &'static str,
}

pub const FCM: Spellings = Spellings {
    gone: "unregistered",
    bad: "invalid",
    s429: "status-429",
    s503: "status-503",
    s500: "status-500",
    flaky: "flaky-",
};

pub const APNS: Spellings = Spellings {
    gone: "dead",
    bad: "bad0",
    s429: "0429",
    s503: "0503",
    s500: "0500",
    flaky: "f1a",
};

#[derive(Debug)]
pub struct Faults {
    args: FaultArgs,
    spellings: Spellings,
    /// Failures so far per flaky token.
    flaky_seen: Mutex<HashMap<String, u32>>,
}

impl Faults {
    pub fn new(args: FaultArgs, spellings: Spellings) -> Self {
        Self {
            args,
            spellings,
            flaky_seen: Mutex::new(HashMap::new()),
        }
    }

    pub fn retry_after(&self) -> u64 {
        self.args.retry_after
    }

    pub fn keep(&self) -> usize {
        self.args.keep
    }

    pub fn delay(&self) -> Duration {
        Duration::from_millis(self.args.delay_ms)
    }

    /// The fault for a request to `token`, if any.
    pub fn for_token(&self, token: &str) -> Option<Fault> {
        let s = self.spellings;
        let scripted = if token.starts_with(s.gone) {
            Some(Fault::Gone)
        } else if token.starts_with(s.bad) {
            Some(Fault::BadToken)
        } else if token.starts_with(s.s429) {
            Some(Fault::Status(429))
        } else if token.starts_with(s.s503) {
            Some(Fault::Status(503))
        } else if token.starts_with(s.s500) {
            Some(Fault::Status(500))
        } else if let Some(rest) = token.strip_prefix(s.flaky) {
            let failures = rest
                .chars()
                .next()
                .and_then(|c| c.to_digit(10))
                .unwrap_or(1);
            let mut seen = self.flaky_seen.lock().unwrap_or_else(|e| e.into_inner());
            let n = seen.entry(token.to_string()).or_default();
            (*n < failures).then(|| {
                *n += 1;
                Fault::Status(503)
            })
        } else {
            None
        };
        scripted.or_else(|| self.random())
    }

    fn random(&self) -> Option<Fault> {
        let a = &self.args;
        if a.share_429 + a.share_503 + a.share_unregistered <= 0.0 {
            return None;
        }
        let x: f64 = rand::random();
        if x < a.share_429 {
            Some(Fault::Status(429))
        } else if x < a.share_429 + a.share_503 {
            Some(Fault::Status(503))
        } else if x < a.share_429 + a.share_503 + a.share_unregistered {
            Some(Fault::Gone)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripted_tokens_fail_as_named_and_flaky_ones_recover() {
        let f = Faults::new(FaultArgs::default(), FCM);
        assert_eq!(f.for_token("unregistered-1"), Some(Fault::Gone));
        assert_eq!(f.for_token("invalid"), Some(Fault::BadToken));
        assert_eq!(f.for_token("status-429-x"), Some(Fault::Status(429)));
        assert_eq!(f.for_token("fine"), None);
        assert_eq!(f.for_token("flaky-2-a"), Some(Fault::Status(503)));
        assert_eq!(f.for_token("flaky-2-a"), Some(Fault::Status(503)));
        assert_eq!(f.for_token("flaky-2-a"), None);
        let a = Faults::new(FaultArgs::default(), APNS);
        assert_eq!(a.for_token("dead00"), Some(Fault::Gone));
        assert_eq!(a.for_token("f1a1"), Some(Fault::Status(503)));
        assert_eq!(a.for_token("f1a1"), None);
    }

    #[test]
    fn random_shares_are_drawn() {
        let all = Faults::new(
            FaultArgs {
                share_429: 1.0,
                ..FaultArgs::default()
            },
            FCM,
        );
        assert_eq!(all.for_token("fine"), Some(Fault::Status(429)));
        let none = Faults::new(FaultArgs::default(), FCM);
        assert!((0..100).all(|_| none.for_token("fine").is_none()));
    }
}
