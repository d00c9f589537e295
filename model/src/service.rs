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
}

/// The fields of a service only the platform's operators change (Postino's extension):
/// an organisation's key must not lift its own service's limits.
pub const PLATFORM_FIELDS: [&str; 4] = ["mode", "rate_limit", "weekly_quota", "allow_urgent"];

/// Whether a service sends for real or is being tried out (IO's sandbox).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ServiceMode {
    /// Only to its `authorized_recipients` and IO's test fiscal code, 1000 requests per key
    /// per ISO week, and `getProfile` tells nothing about anyone else.
    Test,
    /// To any citizen, within its rate limit (and its weekly quota, if it has one).
    Production,
}

impl ServiceMode {
    /// What a service stored before test mode existed is: it was sending already.
    fn stored_before_test_mode() -> Self {
        Self::Production
    }
}

/// Requests a key of a service in test mode may make per ISO week (IO's sandbox rule).
pub const TEST_MODE_WEEKLY_QUOTA: u32 = 1000;

/// What the platform's operators decide about a service: its mode and its limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ServiceLimits {
    /// A new service starts in `test`.
    #[serde(default = "ServiceMode::stored_before_test_mode")]
    pub mode: ServiceMode,
    /// Its own request rate, instead of the deployment's (`ingest.rate_limit`, IO's 150
    /// requests per 5 s unless changed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Requests per ISO week (UTC) for the whole service, both keys together; none unless
    /// set. In test mode each key has [`TEST_MODE_WEEKLY_QUOTA`] besides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weekly_quota: Option<u32>,
    /// Whether its messages may say they are `urgent` (pushed even in quiet hours).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_urgent: bool,
}

impl ServiceLimits {
    /// A service's limits when it is created.
    pub const NEW: Self = Self {
        mode: ServiceMode::Test,
        rate_limit: None,
        weekly_quota: None,
        allow_urgent: false,
    };
    /// The largest weekly quota that can be set.
    pub const MAX_WEEKLY_QUOTA: u32 = 1_000_000_000;
}

/// A change to a service's limits, as JSON merge patch (RFC 7396): a field left out stays
/// as it is, `null` removes it (back to the deployment's default).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsChange {
    #[serde(default)]
    pub mode: Option<ServiceMode>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<RateLimit>)]
    pub rate_limit: Option<Option<RateLimit>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u32>)]
    pub weekly_quota: Option<Option<u32>>,
    #[serde(default)]
    pub allow_urgent: Option<bool>,
}

/// A field that is present, `null` or not: told apart from one left out (`None`).
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

impl LimitsChange {
    pub fn parse(body: &[u8]) -> Result<Self, ValidationError> {
        let change: Self = from_json(body)?;
        if let Some(Some(limit)) = &change.rate_limit {
            limit.check("rate_limit")?;
        }
        if let Some(Some(quota)) = change.weekly_quota {
            if !(1..=ServiceLimits::MAX_WEEKLY_QUOTA).contains(&quota) {
                return Err(ValidationError::new(
                    "weekly_quota",
                    format!("must be 1 to {}", ServiceLimits::MAX_WEEKLY_QUOTA),
                ));
            }
        }
        Ok(change)
    }

    /// The [`PLATFORM_FIELDS`] a service payload (`cmsCreateService`, `cmsUpdateService`)
    /// carries, as a change: a service read, edited and written back carries them
    /// unchanged, and an operator may set them there as with `PATCH …/limits`.
    pub fn within_service_payload(body: &[u8]) -> Result<Self, ValidationError> {
        let Ok(serde_json::Value::Object(mut fields)) = serde_json::from_slice(body) else {
            // Not an object: the payload's own parse says what is wrong.
            return Ok(Self::default());
        };
        let own: serde_json::Map<_, _> = PLATFORM_FIELDS
            .iter()
            .filter_map(|field| Some((field.to_string(), fields.remove(*field)?)))
            .collect();
        let own = serde_json::to_vec(&own)
            .map_err(|err| ValidationError::new("", format!("invalid JSON: {err}")))?;
        Self::parse(&own)
    }

    /// `limits` with this change made.
    pub fn apply(&self, mut limits: ServiceLimits) -> ServiceLimits {
        if let Some(mode) = self.mode {
            limits.mode = mode;
        }
        if let Some(rate_limit) = self.rate_limit {
            limits.rate_limit = rate_limit;
        }
        if let Some(weekly_quota) = self.weekly_quota {
            limits.weekly_quota = weekly_quota;
        }
        if let Some(allow_urgent) = self.allow_urgent {
            limits.allow_urgent = allow_urgent;
        }
        limits
    }
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

/// An organisation that runs its own services through the manage API with keys of its own
/// (Postino's extension): they see and touch only services whose `organization.fiscal_code`
/// is this one. Its keys, like a service's, are derived from generation counters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrganizationAccount {
    /// 11 digits: the organisation's fiscal code, as in its services' `organization`.
    pub fiscal_code: String,
    pub name: String,
    pub last_update: Timestamp,
    pub primary_key_generation: u32,
    pub secondary_key_generation: u32,
}

impl OrganizationAccount {
    pub fn key_generation(&self, slot: KeySlot) -> u32 {
        match slot {
            KeySlot::Primary => self.primary_key_generation,
            KeySlot::Secondary => self.secondary_key_generation,
        }
    }
}

/// What the platform's operators send to register an organisation.
#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrganizationPayload {
    pub fiscal_code: String,
    pub name: String,
}

impl OrganizationPayload {
    pub fn parse(body: &[u8]) -> Result<Self, ValidationError> {
        let p: Self = from_json(body)?;
        parse_organization_fiscal_code("fiscal_code", &p.fiscal_code)?;
        non_empty("name", &p.name)?;
        Ok(p)
    }
}

/// A stored service. Its keys are not here: only their generation counters, from which the
/// keys are derived, and their hashes in the key table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Service {
    pub id: String,
    #[serde(flatten)]
    pub payload: ServicePayload,
    #[serde(flatten)]
    pub limits: ServiceLimits,
    pub last_update: Timestamp,
    pub primary_key_generation: u32,
    pub secondary_key_generation: u32,
}

impl Service {
    /// Whether this service may send to `fc` at all: in production to anyone; in test mode
    /// only to its `authorized_recipients` and IO's test fiscal code.
    pub fn may_address(&self, fc: &FiscalCode) -> bool {
        self.limits.mode == ServiceMode::Production
            || fc.is_io_test_code()
            || self.payload.authorized_recipients.contains(fc)
    }

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
            "authorized_recipients": []
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
        ];
        for (pointer, value, field) in cases {
            let mut v = valid();
            *v.pointer_mut(pointer)
                .unwrap_or_else(|| panic!("{pointer}")) = value;
            let err = ServicePayload::parse(&serde_json::to_vec(&v).unwrap()).unwrap_err();
            assert_eq!(err.field, field, "{err}");
        }
    }

    #[test]
    fn a_payload_carries_the_platforms_fields_as_a_change() {
        let mut v = valid();
        v["mode"] = json!("production");
        v["weekly_quota"] = json!(7);
        let body = serde_json::to_vec(&v).unwrap();
        assert!(ServicePayload::parse(&body).is_ok());
        let change = LimitsChange::within_service_payload(&body).unwrap();
        assert_eq!(change.mode, Some(ServiceMode::Production));
        assert_eq!(change.weekly_quota, Some(Some(7)));
        assert_eq!(change.rate_limit, None);
        let none = LimitsChange::within_service_payload(&serde_json::to_vec(&valid()).unwrap());
        assert_eq!(none.unwrap(), LimitsChange::default());
        v["rate_limit"] = json!({"requests": 0, "period_seconds": 1});
        let err = LimitsChange::within_service_payload(&serde_json::to_vec(&v).unwrap());
        assert_eq!(err.unwrap_err().field, "rate_limit.requests");
    }

    #[test]
    fn a_limits_change_leaves_out_keeps_and_null_removes() {
        let set = LimitsChange::parse(
            br#"{"mode":"production","rate_limit":{"requests":10,"period_seconds":1},"weekly_quota":5}"#,
        )
        .unwrap();
        let limits = set.apply(ServiceLimits::NEW);
        assert_eq!(limits.mode, ServiceMode::Production);
        assert_eq!(limits.rate_limit.map(|r| r.requests), Some(10));
        assert_eq!(limits.weekly_quota, Some(5));
        let kept = LimitsChange::parse(br#"{}"#).unwrap().apply(limits);
        assert_eq!(kept, limits);
        let cleared = LimitsChange::parse(br#"{"rate_limit":null,"weekly_quota":null}"#)
            .unwrap()
            .apply(limits);
        assert_eq!(cleared.mode, ServiceMode::Production);
        assert_eq!((cleared.rate_limit, cleared.weekly_quota), (None, None));
    }

    #[test]
    fn malformed_limits_changes_name_the_field() {
        let cases: [(&[u8], &str); 7] = [
            (br#"{"mode":"sandbox"}"#, "mode"),
            (
                br#"{"rate_limit":{"requests":0,"period_seconds":1}}"#,
                "rate_limit.requests",
            ),
            (
                br#"{"rate_limit":{"requests":1,"period_seconds":86401}}"#,
                "rate_limit.period_seconds",
            ),
            (
                br#"{"rate_limit":{"requests":1,"period_seconds":1,"burst":9}}"#,
                "rate_limit.burst",
            ),
            (br#"{"weekly_quota":0}"#, "weekly_quota"),
            (br#"{"weekly_quota":-1}"#, "weekly_quota"),
            (br#"{"quota":1}"#, "quota"),
        ];
        for (body, field) in cases {
            let err = LimitsChange::parse(body).unwrap_err();
            assert_eq!(err.field, field, "{err}");
        }
    }

    #[test]
    fn a_service_stored_before_test_mode_is_in_production_and_a_new_one_in_test() {
        let mut stored = valid();
        stored["id"] = json!("s1");
        stored["last_update"] = json!("2026-01-01T00:00:00.000Z");
        stored["primary_key_generation"] = json!(0);
        stored["secondary_key_generation"] = json!(0);
        stored["rate_limit"] = json!({"requests": 10, "period_seconds": 1});
        let old: Service = serde_json::from_value(stored).unwrap();
        assert_eq!(old.limits.mode, ServiceMode::Production);
        assert_eq!(old.limits.rate_limit.map(|r| r.requests), Some(10));
        let new = Service {
            limits: ServiceLimits::NEW,
            ..old
        };
        let again: Service = serde_json::to_value(&new)
            .and_then(serde_json::from_value)
            .unwrap();
        assert_eq!(again.limits.mode, ServiceMode::Test);
    }

    #[test]
    fn test_mode_addresses_only_authorized_recipients_and_the_test_code() {
        let mut payload = valid();
        payload["authorized_recipients"] = json!(["RSSMRA85T10A562S"]);
        let service = Service {
            id: "s1".into(),
            payload: ServicePayload::parse(&serde_json::to_vec(&payload).unwrap()).unwrap(),
            limits: ServiceLimits::NEW,
            last_update: Timestamp::now(),
            primary_key_generation: 0,
            secondary_key_generation: 0,
        };
        let fc = |s: &str| FiscalCode::parse("fc", s).unwrap();
        assert!(service.may_address(&fc("RSSMRA85T10A562S")));
        assert!(service.may_address(&fc(crate::fiscal_code::IO_TEST_FISCAL_CODE)));
        assert!(!service.may_address(&fc("VRDGPP80A01H501U")));
        let production = Service {
            limits: ServiceLimits {
                mode: ServiceMode::Production,
                ..ServiceLimits::NEW
            },
            ..service
        };
        assert!(production.may_address(&fc("VRDGPP80A01H501U")));
    }
}
