//! Sample values for tests, written once for every crate's tests: a well-formed message as
//! the senders' API accepts it. Built only for tests (`testsuite`), never into Postino.

use ulid::Ulid;

use crate::message::NewMessageContent;
use crate::pipeline::{AcceptedMessage, SenderMetadata};
use crate::timestamp::Timestamp;
use crate::FiscalCode;

/// When every sample message was created.
pub const CREATED_AT: &str = "2026-01-01T00:00:00.000Z";

/// A message to `fiscal_code` from ACI's car-tax service, valid for an hour, with the
/// smallest body IO accepts.
///
/// # Panics
/// Never: the values are constants that parse.
pub fn accepted_message(id: Ulid, fiscal_code: FiscalCode, subject: &str) -> AcceptedMessage {
    AcceptedMessage {
        id,
        fiscal_code,
        sender_service_id: "svc".into(),
        created_at: Timestamp::parse(CREATED_AT).expect("a timestamp"),
        time_to_live: 3600,
        content: NewMessageContent {
            subject: subject.into(),
            markdown: "m".repeat(80),
            payment_data: None,
            due_date: None,
            require_secure_channels: None,
            prescription_data: None,
            legal_data: None,
            eu_covid_cert: None,
            third_party_data: None,
        },
        default_email: None,
        sandbox_email: None,
        campaign_id: None,
        urgent: false,
        feature_level_type: "STANDARD".into(),
        sender: SenderMetadata {
            service_name: "Tassa automobilistica".into(),
            organization_name: "ACI".into(),
            organization_fiscal_code: "00493410583".into(),
            department_name: None,
            require_secure_channel: false,
        },
    }
}

/// A service in production, ACI's, with the smallest payload IO accepts and no limits of
/// its own.
///
/// # Panics
/// Never: the values are constants that parse.
pub fn service(id: &str) -> crate::service::Service {
    let mut service: crate::service::Service = serde_json::from_value(serde_json::json!({
        "id": id,
        "name": "Tassa automobilistica",
        "description": "Avvisi",
        "organization": {"name": "ACI", "fiscal_code": "00493410583"},
        "metadata": {"scope": "NATIONAL"},
        "last_update": CREATED_AT,
        "primary_key_generation": 0,
        "secondary_key_generation": 0
    }))
    .expect("a sample service");
    service.limits.mode = crate::service::ServiceMode::Production;
    service
}
