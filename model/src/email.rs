//! The record that asks the email dispatcher to send one notification email
//! (`deliveries.email`), written by the inbox dispatcher once the message is readable.

use serde::{Deserialize, Serialize};
use ulid::Ulid;

use crate::channels::ChannelChoice;
use crate::language::{language, Language};
use crate::pipeline::DeliveryPlan;
use crate::push::expires_at;
use crate::ValidationError;

/// An email address: personal data, so its `Debug` shows only the domain, and it reaches
/// text only through [`EmailAddress::expose`]. Made by [`EmailAddress::parse`] from
/// outside input; read back as stored (it was checked when it came in).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EmailAddress(String);

impl EmailAddress {
    /// Checks the shape every mail system needs (one `@`, a dotted domain, no spaces, at
    /// most 254 characters); whether it exists is the validation flow's job. `field` names
    /// it in the error.
    pub fn parse(field: &str, value: &str) -> Result<Self, ValidationError> {
        let bad =
            || ValidationError::new(field, "must be an email address such as name@example.com");
        if value.len() > 254 || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad());
        }
        let (local, domain) = value.split_once('@').ok_or_else(bad)?;
        let domain_ok = domain.contains('.')
            && !domain.contains('@')
            && domain.split('.').all(|label| !label.is_empty());
        if local.is_empty() || !domain_ok {
            return Err(bad());
        }
        Ok(Self(value.to_string()))
    }

    /// The address itself: for the SMTP envelope and the `To` header, the API answers
    /// that show a citizen their own profile, and the store.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for EmailAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let domain = self.0.rsplit_once('@').map_or("?", |(_, d)| d);
        write!(f, "EmailAddress(<…>@{domain})")
    }
}

/// One email about one message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmailJob {
    pub message_id: Ulid,
    pub to: EmailAddress,
    pub language: Language,
    pub service_name: String,
    pub organization_name: String,
    pub subject: String,
    pub markdown: String,
    /// When the message's `time_to_live` runs out (Unix seconds): not sent after it.
    pub expires_at: i64,
    /// The campaign its message belongs to: not sent once the campaign is cancelled, and
    /// its outcome is reported to the campaign's tally.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign_id: Option<String>,
    /// The request the message came from, as its record's header carries it (not part of
    /// the job's payload): on every log line about the job.
    #[serde(skip)]
    pub request_id: Option<String>,
}

impl EmailJob {
    /// The email the plan asks for: only when the router chose to send one (validated,
    /// enabled address, allowed for the service, no secure channel required) and an
    /// address came with the plan.
    pub fn for_plan(plan: &DeliveryPlan) -> Option<Self> {
        if plan.channels.email != ChannelChoice::Send {
            return None;
        }
        let message = &plan.message;
        Some(Self {
            message_id: message.id,
            to: plan.email.clone()?,
            language: language(&plan.preferred_languages),
            service_name: message.sender.service_name.clone(),
            organization_name: message.sender.organization_name.clone(),
            subject: message.content.subject.clone(),
            markdown: message.content.markdown.clone(),
            expires_at: expires_at(message.created_at, message.time_to_live),
            campaign_id: message.campaign_id.clone(),
            request_id: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_checked_and_never_debug_printed() {
        let address = EmailAddress::parse("e", "mario.rossi@comune.roma.it").expect("valid");
        assert_eq!(address.expose(), "mario.rossi@comune.roma.it");
        assert_eq!(format!("{address:?}"), "EmailAddress(<…>@comune.roma.it)");
        for bad in ["", "a", "a@b", "@b.it", "a@b..it", "a b@c.it", "a@b@c.it"] {
            let err = EmailAddress::parse("e", bad).expect_err(bad);
            assert_eq!(err.field, "e");
        }
    }
    use crate::channels::SkipReason;
    use crate::pipeline::tests::sample_plan;

    #[test]
    fn an_email_only_when_the_plan_sends_one_to_an_address() {
        let mut plan = sample_plan();
        plan.preferred_languages = vec!["de_DE".into()];
        let job = EmailJob::for_plan(&plan).expect("the sample plan sends email");
        assert_eq!(job.to.expose(), "a@b.it");
        assert_eq!(job.language, Language::German);
        assert_eq!(job.subject, plan.message.content.subject);
        plan.channels.email = ChannelChoice::Skip(SkipReason::SecureChannelRequired);
        assert!(EmailJob::for_plan(&plan).is_none());
        plan.channels.email = ChannelChoice::Send;
        plan.email = None;
        assert!(EmailJob::for_plan(&plan).is_none());
    }

    #[test]
    fn the_address_never_prints() {
        let job = EmailJob::for_plan(&sample_plan()).expect("job");
        let shown = format!("{job:?}");
        assert!(!shown.contains("a@b.it"), "{shown}");
        assert!(shown.contains("@b.it"));
    }

    #[test]
    fn malformed_records_are_refused_by_field() {
        let job = EmailJob::for_plan(&sample_plan()).expect("job");
        let mut value = serde_json::to_value(&job).expect("json");
        value["language"] = serde_json::json!("klingon");
        let err = crate::pipeline::decode::<EmailJob>(&serde_json::to_vec(&value).expect("bytes"))
            .expect_err("unknown language");
        assert!(err.to_string().contains("language"), "{err}");
        assert!(crate::pipeline::decode::<EmailJob>(b"{\"message_id\": 3}").is_err());
    }
}
