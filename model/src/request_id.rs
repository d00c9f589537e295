//! The id that follows one request through every role: taken from the caller's
//! `X-Request-Id` when it is a sensible one, else made up; returned on the answer, carried in
//! the log records the request leads to, and on every log line about it. It names a request,
//! never a person.

use std::fmt;
use std::sync::Arc;

/// A request id: 1 to 128 characters of letters, digits and `-_.:@/+=`. Shared rather than
/// owned, since a request hands it to its span, its handler and its answer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestId(Arc<str>);

impl RequestId {
    /// The HTTP header it comes in and goes back on.
    pub const HTTP_HEADER: &'static str = "x-request-id";
    const MAX_LEN: usize = 128;

    /// The caller's id, if it is one Postino may repeat in its logs and answers; `None` for
    /// anything else (empty, too long, other characters), which gets a made-up one instead.
    pub fn parse(text: &str) -> Option<Self> {
        let fits = !text.is_empty()
            && text.len() <= Self::MAX_LEN
            && text
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"-_.:@/+=".contains(&c));
        fits.then(|| Self(Arc::from(text)))
    }

    /// A fresh id (a ULID: unique, and sorted by time).
    pub fn generate() -> Self {
        let mut text = [0; ulid::ULID_LEN];
        Self(Arc::from(&*ulid::Ulid::new().array_to_str(&mut text)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sensible_id_is_kept_and_anything_else_refused() {
        for good in [
            "abc",
            "7f1c2a9e-4b1d-4c7e-9a3b-2f6d8e0c1b5a",
            "req:42/a+b=c@x_y.z",
        ] {
            assert_eq!(
                RequestId::parse(good).map(|r| r.to_string()),
                Some(good.to_string())
            );
        }
        let long = "a".repeat(129);
        for bad in ["", "has space", "new\nline", "quote\"", "ü", long.as_str()] {
            assert_eq!(RequestId::parse(bad), None, "{bad:?}");
        }
        assert_ne!(RequestId::generate(), RequestId::generate());
        assert!(RequestId::parse(RequestId::generate().as_str()).is_some());
    }
}
