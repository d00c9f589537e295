//! The record that asks the email dispatcher to send one notification email
//! (`deliveries.email`), written by the inbox dispatcher once the message is readable.

use serde::{Deserialize, Serialize};
use ulid::Ulid;

use crate::channels::ChannelChoice;
use crate::language::{language, Language};
use crate::pipeline::DeliveryPlan;
use crate::push::expires_at;

/// A citizen's validated address. Personal data: its `Debug` shows only the domain.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Recipient(String);

impl Recipient {
    /// The address itself, for the SMTP envelope and the `To` header only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Recipient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let domain = self.0.rsplit_once('@').map_or("?", |(_, d)| d);
        write!(f, "Recipient(<…>@{domain})")
    }
}

/// One email about one message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmailJob {
    pub message_id: Ulid,
    pub to: Recipient,
    pub language: Language,
    pub service_name: String,
    pub organization_name: String,
    pub subject: String,
    pub markdown: String,
    /// When the message's `time_to_live` runs out (Unix seconds): not sent after it.
    pub expires_at: i64,
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
            to: Recipient(plan.email.clone()?),
            language: language(&plan.preferred_languages),
            service_name: message.sender.service_name.clone(),
            organization_name: message.sender.organization_name.clone(),
            subject: message.content.subject.clone(),
            markdown: message.content.markdown.clone(),
            expires_at: expires_at(&message.created_at, message.time_to_live),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
