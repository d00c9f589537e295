//! A sender's message: IO's `NewMessage` as it arrives, and the validated form the pipeline
//! carries. Every rule of ARCHITECTURE.md §4 is checked in [`NewMessage::parse`].

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::validation::{check_len, from_json};
use crate::{FiscalCode, ValidationError};

pub const SUBJECT_LEN: (usize, usize) = (10, 120);
pub const MARKDOWN_LEN: (usize, usize) = (80, 10_000);
pub const TTL_RANGE: (u32, u32) = (3_600, 604_800);
pub const DEFAULT_TTL: u32 = 3_600;
pub const MAX_AMOUNT: u64 = 9_999_999_999;

/// A message as a sender writes it (IO `NewMessage`). Unknown fields are ignored, as IO does.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct NewMessageBody {
    /// Seconds the notifications may still be attempted (3600–604800, default 3600).
    pub time_to_live: Option<i64>,
    pub content: NewMessageContent,
    pub default_addresses: Option<DefaultAddresses>,
    /// The recipient; only with `POST /messages`, never together with the path parameter.
    pub fiscal_code: Option<String>,
    /// `STANDARD` (default) or `ADVANCED`.
    pub feature_level_type: Option<String>,
    /// Postino's extension: push it even in quiet hours. Only a service the platform
    /// allowed urgent messages may say so.
    pub urgent: Option<bool>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct DefaultAddresses {
    pub email: Option<String>,
}

/// IO `MessageContent`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct NewMessageContent {
    /// 10–120 characters.
    pub subject: String,
    /// 80–10000 characters of Markdown.
    pub markdown: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_data: Option<PaymentData>,
    /// ISO-8601 date-time in UTC, e.g. `2018-10-13T00:00:00.000Z`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_secure_channels: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub prescription_data: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub legal_data: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub eu_covid_cert: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub third_party_data: Option<serde_json::Value>,
}

/// IO `PaymentData`: a pagoPA notice.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct PaymentData {
    /// Euro cents, 1–9999999999 and at most the service's `max_allowed_payment_amount`.
    pub amount: i64,
    /// `^[0123][0-9]{17}$`
    pub notice_number: String,
    #[serde(default)]
    pub invalid_after_due_date: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payee: Option<Payee>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct Payee {
    /// The organization's fiscal code: 11 digits.
    pub fiscal_code: String,
}

/// A message that passed every rule, ready to be accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage {
    pub fiscal_code: FiscalCode,
    pub time_to_live: u32,
    pub content: NewMessageContent,
    pub default_email: Option<crate::email::EmailAddress>,
    pub feature_level_type: String,
    /// Pushed even in quiet hours.
    pub urgent: bool,
}

impl NewMessage {
    /// Parses a request body. `path_fiscal_code` is the `{fiscal_code}` of
    /// `POST /messages/{fiscal_code}`; exactly one of it and the body's field must be given.
    /// `max_amount` is the sending service's `max_allowed_payment_amount`.
    pub fn parse(
        body: &[u8],
        path_fiscal_code: Option<&str>,
        max_amount: u64,
    ) -> Result<Self, ValidationError> {
        let raw: NewMessageBody = from_json(body)?;
        let fiscal_code = match (path_fiscal_code, raw.fiscal_code.as_deref()) {
            (Some(path), None) => FiscalCode::parse("fiscal_code", path)?,
            (None, Some(body)) => FiscalCode::parse("fiscal_code", body)?,
            (Some(_), Some(_)) => {
                return Err(ValidationError::new(
                    "fiscal_code",
                    "must be given either in the path or in the body, not both",
                ))
            }
            (None, None) => {
                return Err(ValidationError::new(
                    "fiscal_code",
                    "is required, in the path (POST /messages/{fiscal_code}) or in the body (POST /messages)",
                ))
            }
        };
        let time_to_live = match raw.time_to_live {
            None => DEFAULT_TTL,
            Some(t) if (TTL_RANGE.0 as i64..=TTL_RANGE.1 as i64).contains(&t) => t as u32,
            Some(t) => {
                return Err(ValidationError::new(
                    "time_to_live",
                    format!(
                        "must be {} to {} seconds, got {t}",
                        TTL_RANGE.0, TTL_RANGE.1
                    ),
                ))
            }
        };
        let content = validate_content(raw.content, max_amount).map_err(|e| e.within("content"))?;
        let default_email = match raw.default_addresses.and_then(|a| a.email) {
            Some(email) => Some(crate::email::EmailAddress::parse(
                "default_addresses.email",
                &email,
            )?),
            None => None,
        };
        let feature_level_type = raw.feature_level_type.unwrap_or_else(|| "STANDARD".into());
        if !["STANDARD", "ADVANCED"].contains(&feature_level_type.as_str()) {
            return Err(ValidationError::new(
                "feature_level_type",
                "must be STANDARD or ADVANCED",
            ));
        }
        Ok(Self {
            fiscal_code,
            time_to_live,
            content,
            default_email,
            feature_level_type,
            urgent: raw.urgent.unwrap_or(false),
        })
    }
}

fn validate_content(
    mut content: NewMessageContent,
    max_amount: u64,
) -> Result<NewMessageContent, ValidationError> {
    check_len("subject", &content.subject, SUBJECT_LEN.0, SUBJECT_LEN.1)?;
    check_len(
        "markdown",
        &content.markdown,
        MARKDOWN_LEN.0,
        MARKDOWN_LEN.1,
    )?;
    if let Some(due) = &content.due_date {
        content.due_date = Some(parse_utc_timestamp("due_date", due)?);
    }
    if let Some(payment) = &content.payment_data {
        validate_payment(payment, max_amount).map_err(|e| e.within("payment_data"))?;
    }
    Ok(content)
}

fn validate_payment(payment: &PaymentData, max_amount: u64) -> Result<(), ValidationError> {
    if payment.amount < 1 || payment.amount as u64 > MAX_AMOUNT {
        return Err(ValidationError::new(
            "amount",
            format!(
                "must be 1 to {MAX_AMOUNT} euro cents, got {}",
                payment.amount
            ),
        ));
    }
    if payment.amount as u64 > max_amount {
        return Err(ValidationError::new(
            "amount",
            format!(
                "must not exceed the service's max_allowed_payment_amount ({max_amount} euro cents), got {}",
                payment.amount
            ),
        ));
    }
    let n = payment.notice_number.as_bytes();
    if n.len() != 18 || !matches!(n[0], b'0'..=b'3') || !n.iter().all(u8::is_ascii_digit) {
        return Err(ValidationError::new(
            "notice_number",
            "must match ^[0123][0-9]{17}$",
        ));
    }
    if let Some(payee) = &payment.payee {
        parse_organization_fiscal_code("payee.fiscal_code", &payee.fiscal_code)?;
    }
    Ok(())
}

/// An organization's fiscal code (partita IVA form): exactly 11 digits.
pub fn parse_organization_fiscal_code(field: &str, value: &str) -> Result<String, ValidationError> {
    if value.len() == 11 && value.bytes().all(|c| c.is_ascii_digit()) {
        Ok(value.to_string())
    } else {
        Err(ValidationError::new(field, "must be 11 digits"))
    }
}

/// An ISO-8601 date-time that is in UTC (`Z` or `+00:00`), returned in RFC 3339 form.
pub fn parse_utc_timestamp(field: &str, value: &str) -> Result<String, ValidationError> {
    let parsed = OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339)
        .map_err(|_| {
            ValidationError::new(
                field,
                "must be an ISO-8601 date-time in UTC, e.g. 2018-10-13T00:00:00.000Z",
            )
        })?;
    if !parsed.offset().is_utc() {
        return Err(ValidationError::new(
            field,
            "must be in UTC (end with Z or +00:00)",
        ));
    }
    Ok(crate::timestamp::Timestamp::from(parsed).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const FC: &str = "RSSMRA85T10A562S";

    fn body(v: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&v).unwrap()
    }

    fn valid() -> serde_json::Value {
        json!({
            "fiscal_code": FC,
            "content": {
                "subject": "Bollo auto in scadenza",
                "markdown": "a".repeat(80),
            }
        })
    }

    fn field_error(v: serde_json::Value, path: Option<&str>, max: u64) -> ValidationError {
        NewMessage::parse(&body(v), path, max).unwrap_err()
    }

    #[test]
    fn a_minimal_message_parses_with_defaults() {
        let m = NewMessage::parse(&body(valid()), None, 0).unwrap();
        assert_eq!(m.time_to_live, DEFAULT_TTL);
        assert_eq!(m.feature_level_type, "STANDARD");
        assert_eq!(m.fiscal_code.as_str(), FC);
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let mut v = valid();
        v["whatever"] = json!(1);
        v["content"]["extra"] = json!("x");
        assert!(NewMessage::parse(&body(v), None, 0).is_ok());
    }

    #[test]
    fn fiscal_code_in_both_or_neither_place_is_refused() {
        let err = field_error(valid(), Some(FC), 0);
        assert!(err.rule.contains("not both"));
        let mut v = valid();
        v.as_object_mut().unwrap().remove("fiscal_code");
        assert!(field_error(v.clone(), None, 0).rule.contains("is required"));
        assert!(NewMessage::parse(&body(v), Some(FC), 0).is_ok());
    }

    #[test]
    fn subject_and_markdown_lengths() {
        let mut v = valid();
        v["content"]["subject"] = json!("too short");
        assert_eq!(field_error(v, None, 0).field, "content.subject");
        let mut v = valid();
        v["content"]["subject"] = json!("s".repeat(121));
        assert_eq!(field_error(v, None, 0).field, "content.subject");
        let mut v = valid();
        v["content"]["markdown"] = json!("m".repeat(79));
        assert_eq!(field_error(v, None, 0).field, "content.markdown");
        let mut v = valid();
        v["content"]["markdown"] = json!("m".repeat(10_001));
        assert_eq!(field_error(v, None, 0).field, "content.markdown");
    }

    #[test]
    fn time_to_live_bounds() {
        for bad in [3599, 604_801, -1] {
            let mut v = valid();
            v["time_to_live"] = json!(bad);
            assert_eq!(field_error(v, None, 0).field, "time_to_live");
        }
        let mut v = valid();
        v["time_to_live"] = json!(604_800);
        assert_eq!(
            NewMessage::parse(&body(v), None, 0).unwrap().time_to_live,
            604_800
        );
    }

    #[test]
    fn due_date_must_be_utc_iso8601() {
        let mut v = valid();
        v["content"]["due_date"] = json!("2030-01-31T10:00:00Z");
        let m = NewMessage::parse(&body(v), None, 0).unwrap();
        assert_eq!(
            m.content.due_date.as_deref(),
            Some("2030-01-31T10:00:00.000Z")
        );
        for bad in ["2030-01-31", "tomorrow", "2030-01-31T10:00:00+02:00"] {
            let mut v = valid();
            v["content"]["due_date"] = json!(bad);
            assert_eq!(field_error(v, None, 0).field, "content.due_date", "{bad}");
        }
    }

    fn with_payment(amount: i64, notice: &str, payee: Option<&str>) -> serde_json::Value {
        let mut v = valid();
        v["content"]["payment_data"] = json!({"amount": amount, "notice_number": notice});
        if let Some(p) = payee {
            v["content"]["payment_data"]["payee"] = json!({"fiscal_code": p});
        }
        v
    }

    #[test]
    fn payment_rules() {
        let ok = with_payment(1500, "012345678901234567", Some("01234567890"));
        assert!(NewMessage::parse(&body(ok), None, 10_000).is_ok());
        let err = field_error(with_payment(0, "012345678901234567", None), None, 10_000);
        assert_eq!(err.field, "content.payment_data.amount");
        let err = field_error(
            with_payment(10_001, "012345678901234567", None),
            None,
            10_000,
        );
        assert!(err.rule.contains("max_allowed_payment_amount"), "{err}");
        for notice in [
            "412345678901234567",
            "01234567890123456",
            "0123456789012345678",
            "01234567890123456a",
        ] {
            let err = field_error(with_payment(10, notice, None), None, 10_000);
            assert_eq!(err.field, "content.payment_data.notice_number", "{notice}");
        }
        let err = field_error(
            with_payment(10, "012345678901234567", Some("1234")),
            None,
            10_000,
        );
        assert_eq!(err.field, "content.payment_data.payee.fiscal_code");
    }

    #[test]
    fn wrong_types_and_bad_fiscal_codes_name_the_field() {
        let mut v = valid();
        v["content"]["subject"] = json!(42);
        assert_eq!(field_error(v, None, 0).field, "content.subject");
        let mut v = valid();
        v["fiscal_code"] = json!("RSSMRA85T10A562T");
        let err = field_error(v, None, 0);
        assert_eq!(err.field, "fiscal_code");
        assert!(err.rule.contains("check character"));
        assert!(NewMessage::parse(b"not json", None, 0)
            .unwrap_err()
            .rule
            .starts_with("invalid JSON"));
        assert!(NewMessage::parse(b"[]", None, 0).is_err());
    }

    #[test]
    fn default_email_and_feature_level_are_checked() {
        let mut v = valid();
        v["default_addresses"] = json!({"email": "not-an-address"});
        assert_eq!(field_error(v, None, 0).field, "default_addresses.email");
        let mut v = valid();
        v["feature_level_type"] = json!("PREMIUM");
        assert_eq!(field_error(v, None, 0).field, "feature_level_type");
    }
}
