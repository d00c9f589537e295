//! When each request is due. In the open model request `i` is due at `i / rate` seconds after
//! the start whatever happened to the others, and its latency counts from that moment, so a
//! slow server shows up as latency instead of quietly lowering the offered rate (no
//! coordinated omission). The closed model sends as fast as answers come back.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pacing {
    /// Requests are offered at this many per second.
    Open { rate: f64 },
    /// Each connection sends its next request when the previous one is answered.
    Closed,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--rate must be a positive number of requests per second, got {0}")]
pub struct RateError(String);

impl Pacing {
    /// `--rate`: a number per second, or `max` for the closed model.
    pub fn parse(rate: &str) -> Result<Self, RateError> {
        if rate == "max" {
            return Ok(Self::Closed);
        }
        match rate.parse::<f64>() {
            Ok(r) if r.is_finite() && r > 0.0 && r <= 10_000_000.0 => Ok(Self::Open { rate: r }),
            _ => Err(RateError(rate.to_string())),
        }
    }

    /// How long after the start request `i` is due; `None` in the closed model.
    pub fn due(&self, i: u64) -> Option<Duration> {
        match self {
            Self::Open { rate } => Some(Duration::from_secs_f64(i as f64 / rate)),
            Self::Closed => None,
        }
    }

    /// The offered rate, for the report.
    pub fn offered(&self) -> Option<f64> {
        match self {
            Self::Open { rate } => Some(*rate),
            Self::Closed => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_requests_are_evenly_spaced_from_the_start() {
        let p = Pacing::parse("1000").expect("rate");
        assert_eq!(p.due(0), Some(Duration::ZERO));
        assert_eq!(p.due(1), Some(Duration::from_millis(1)));
        assert_eq!(p.due(2500), Some(Duration::from_millis(2500)));
        assert_eq!(p.offered(), Some(1000.0));
    }

    #[test]
    fn max_is_the_closed_model() {
        let p = Pacing::parse("max").expect("max");
        assert_eq!(p, Pacing::Closed);
        assert_eq!(p.due(10), None);
        assert_eq!(p.offered(), None);
    }

    #[test]
    fn bad_rates_are_refused() {
        for bad in ["0", "-5", "fast", "NaN", "inf", ""] {
            let err = Pacing::parse(bad).expect_err(bad);
            assert!(err.to_string().contains("--rate"), "{err}");
        }
    }
}
