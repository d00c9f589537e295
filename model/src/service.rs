//! A sender's service (IO's "scheda servizio"): who the public body is, what it may send.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::message::{parse_organization_fiscal_code, MAX_AMOUNT};
use crate::timestamp::Timestamp;
use crate::validation::from_json;
use crate::{FiscalCode, ValidationError};

/// IO `CmsOrganization`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Organization {
    pub name: String,
    /// 11 digits.
    pub fiscal_code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department_name: Option<String>,
}

/// IO `CmsServiceBaseMetadata` plus `topic_id`. Only `scope` is required.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ServiceMetadata {
    pub scope: ServiceScope,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_id: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_ios: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_android: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tos_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privacy_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pec: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cta: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub support_url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum ServiceScope {
    Local,
    National,
}

/// What an operator sends to create or replace a service (IO `CmsServicePayload`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ServicePayload {
    pub name: String,
    pub description: String,
    pub organization: Organization,
    pub metadata: ServiceMetadata,
    #[serde(default)]
    pub require_secure_channel: bool,
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub authorized_recipients: Vec<FiscalCode>,
    #[serde(default)]
    pub authorized_cidrs: Vec<String>,
    /// Euro cents; 0 (the default) allows no payment notices.
    #[serde(default)]
    pub max_allowed_payment_amount: u64,
    /// Postino's extension: this service's own request rate, instead of the deployment's
    /// (`ingest.rate_limit`, IO's 150 requests per 5 s unless changed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
}

/// How many requests a service may make per period (DESIGN §5). The allowance refills
/// steadily, so `150` per `5` s lets a burst of 150 through, then one every 33 ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// 1 to 1,000,000.
    pub requests: u32,
    /// 1 to 86,400.
    pub period_seconds: u32,
}

impl RateLimit {
    /// IO's gateway default.
    pub const IO_DEFAULT: Self = Self {
        requests: 150,
        period_seconds: 5,
    };
    const MAX_REQUESTS: u32 = 1_000_000;
    const MAX_PERIOD_SECONDS: u32 = 86_400;

    /// Why this limit cannot be used, naming `field`.
    pub fn check(&self, field: &str) -> Result<(), ValidationError> {
        if !(1..=Self::MAX_REQUESTS).contains(&self.requests) {
            return Err(ValidationError::new(
                format!("{field}.requests"),
                format!("must be 1 to {}", Self::MAX_REQUESTS),
            ));
        }
        if !(1..=Self::MAX_PERIOD_SECONDS).contains(&self.period_seconds) {
            return Err(ValidationError::new(
                format!("{field}.period_seconds"),
                format!("must be 1 to {}", Self::MAX_PERIOD_SECONDS),
            ));
        }
        Ok(())
    }
}

impl ServicePayload {
    pub fn parse(body: &[u8]) -> Result<Self, ValidationError> {
        let p: Self = from_json(body)?;
        non_empty("name", &p.name)?;
        non_empty("description", &p.description)?;
        non_empty("organization.name", &p.organization.name)?;
        parse_organization_fiscal_code("organization.fiscal_code", &p.organization.fiscal_code)?;
        if let Some(d) = &p.organization.department_name {
            non_empty("organization.department_name", d)?;
        }
        if p.max_allowed_payment_amount > MAX_AMOUNT {
            return Err(ValidationError::new(
                "max_allowed_payment_amount",
                format!("must be 0 to {MAX_AMOUNT} euro cents"),
            ));
        }
        for (i, cidr) in p.authorized_cidrs.iter().enumerate() {
            parse_cidr(&format!("authorized_cidrs[{i}]"), cidr)?;
        }
        if let Some(limit) = &p.rate_limit {
            limit.check("rate_limit")?;
        }
        Ok(p)
    }
}

fn non_empty(field: &str, value: &str) -> Result<(), ValidationError> {
    if value.trim().is_empty() {
        Err(ValidationError::new(field, "must not be empty"))
    } else {
        Ok(())
    }
}

/// `address` or `address/prefix`, IPv4 or IPv6.
fn parse_cidr(field: &str, value: &str) -> Result<(), ValidationError> {
    crate::net::Cidr::parse(value).map(|_| ()).ok_or_else(|| {
        ValidationError::new(field, "must be an IP address or CIDR such as 192.0.2.0/24")
    })
}

impl ServicePayload {
    /// Whether a request from `client` may use this service's keys: any address when
    /// `authorized_cidrs` is empty (as in IO), else only those within one of them.
    pub fn admits(&self, client: std::net::IpAddr) -> bool {
        self.authorized_cidrs.is_empty()
            || self
                .authorized_cidrs
                .iter()
                .filter_map(|cidr| crate::net::Cidr::parse(cidr))
                .any(|net| net.contains(client))
    }
}

/// Which of a service's two keys (IO `SubscriptionKeyType`, `primary`/`secondary` in paths).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum KeySlot {
    Primary,
    Secondary,
}

/// A stored service. Its keys are not here: only their generation counters, from which the
/// keys are derived, and their hashes in the key table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Service {
    pub id: String,
    #[serde(flatten)]
    pub payload: ServicePayload,
    pub last_update: Timestamp,
    pub primary_key_generation: u32,
    pub secondary_key_generation: u32,
}

impl Service {
    pub fn key_generation(&self, slot: KeySlot) -> u32 {
        match slot {
            KeySlot::Primary => self.primary_key_generation,
            KeySlot::Secondary => self.secondary_key_generation,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn valid() -> serde_json::Value {
        json!({
            "name": "Tassa automobilistica",
            "description": "Avvisi di scadenza del bollo auto",
            "organization": {"name": "ACI", "fiscal_code": "00493410583", "department_name": "Tributi"},
            "metadata": {"scope": "NATIONAL", "privacy_url": "https://example.org/privacy", "topic_id": 3},
            "max_allowed_payment_amount": 100000,
            "authorized_cidrs": [],
            "authorized_recipients": [],
            "rate_limit": {"requests": 10, "period_seconds": 1}
        })
    }

    #[test]
    fn a_valid_payload_parses() {
        let p = ServicePayload::parse(&serde_json::to_vec(&valid()).unwrap()).unwrap();
        assert_eq!(p.metadata.scope, ServiceScope::National);
        assert!(!p.require_secure_channel);
    }

    #[test]
    fn malformed_payloads_name_the_field() {
        let cases = [
            ("/name", json!(""), "name"),
            (
                "/organization/fiscal_code",
                json!("123"),
                "organization.fiscal_code",
            ),
            ("/metadata/scope", json!("GLOBAL"), "metadata.scope"),
            (
                "/max_allowed_payment_amount",
                json!(99_999_999_999u64),
                "max_allowed_payment_amount",
            ),
            (
                "/authorized_cidrs",
                json!(["10.0.0.0/33"]),
                "authorized_cidrs[0]",
            ),
            (
                "/authorized_recipients",
                json!(["RSSMRA85T10A562T"]),
                "authorized_recipients[0]",
            ),
            ("/rate_limit/requests", json!(0), "rate_limit.requests"),
            (
                "/rate_limit/period_seconds",
                json!(86_401),
                "rate_limit.period_seconds",
            ),
            ("/rate_limit", json!("fast"), "rate_limit"),
            (
                "/rate_limit",
                json!({"requests": 1, "period_seconds": 1, "burst": 9}),
                "rate_limit.burst",
            ),
        ];
        for (pointer, value, field) in cases {
            let mut v = valid();
            *v.pointer_mut(pointer)
                .unwrap_or_else(|| panic!("{pointer}")) = value;
            let err = ServicePayload::parse(&serde_json::to_vec(&v).unwrap()).unwrap_err();
            assert_eq!(err.field, field, "{err}");
        }
    }
}
