//! The router stage (ARCHITECTURE.md §2): reads `messages`, joins each with the citizen's profile and
//! the preference for the sending service, and applies IO's rules
//! ([`model::channels::decide`]). A rejected message gets its REJECTED status here (as
//! does a message of a campaign its sender cancelled); every other one goes on to
//! `deliveries.inbox` with its channel plan.
//!
//! It reads citizens through its [`cache::ProfileCache`], which the citizens' changes
//! ([`changes::ChangeFollower`]) keep current, so a profile or preference change is honoured
//! within seconds on every router process (invariant 4).

pub mod cache;
pub mod changes;
pub mod metrics;

use std::sync::Arc;

use async_trait::async_trait;
use bus::stage::{self, PipelineStage, Stage, StageError};
use bus::{Bus, Lineage, Record};
use campaigns::cancel::Cancellations;
use campaigns::progress::{report_failed, Progress};
use model::channels::{decide, ChannelChoice, Verdict};
use model::pipeline::{decode, topics, AcceptedMessage, Lane, RoutingDecision};
use model::profile::PushContent;
use model::progress::{ItemProgress, ItemStatus};
use model::status::{MessageStatus, RejectionReason};
use store::{MessageRecord, Routing, Store};

use crate::cache::{ProfileCache, RouterSettings};

/// Consumer group of the router.
pub const GROUP: &str = "router";

#[derive(Debug)]
pub struct RouterStage {
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
    citizens: Arc<ProfileCache>,
    cancellations: Cancellations,
}

/// An accepted message as the router reads it from `messages`.
#[derive(Debug)]
pub struct Arrived {
    /// The record's key (the citizen's partition) and request id, kept for
    /// `deliveries.inbox`.
    lineage: Lineage,
    message: AcceptedMessage,
    /// The record's bytes, which the plan carries on as they came.
    bytes: Vec<u8>,
}

impl RouterStage {
    /// A router that reads every citizen from the store.
    pub fn new(store: Arc<dyn Store>, bus: Arc<dyn Bus>) -> Self {
        let ttl = RouterSettings::default().cache_ttl();
        let citizens = Arc::new(ProfileCache::new(Arc::clone(&store), 0, ttl));
        Self::with_cache(store, bus, citizens)
    }

    /// A router that reads citizens through `citizens` (whose follower must run beside it).
    pub fn with_cache(
        store: Arc<dyn Store>,
        bus: Arc<dyn Bus>,
        citizens: Arc<ProfileCache>,
    ) -> Self {
        Self {
            cancellations: Cancellations::new(Arc::clone(&store)),
            store,
            bus,
            citizens,
        }
    }

    /// Routes a batch: one store read for every citizen, the rejected written, the plans
    /// published; it succeeds or fails as a whole.
    async fn route_batch(&self, items: &[&Arrived]) -> Result<(), StageError> {
        let pairs: Vec<_> = items
            .iter()
            .map(|a| {
                (
                    a.message.fiscal_code.clone(),
                    a.message.sender_service_id.clone(),
                )
            })
            .collect();
        let routings = self
            .citizens
            .get_routing(&pairs)
            .await
            .map_err(|err| StageError::from_dependency(err.is_retryable(), err))?;
        let campaigns: Vec<Option<&str>> = items
            .iter()
            .map(|a| a.message.campaign_id.as_deref())
            .collect();
        let cancelled = self
            .cancellations
            .cancelled_among(campaigns)
            .await
            .map_err(|err| StageError::from_dependency(err.is_retryable(), err))?;
        let mut progress = Progress::default();
        let mut rejected = Vec::new();
        let mut deliveries: [Vec<Record>; 2] = Default::default();
        let mut decisions = metrics::Decisions::default();
        for (
            Arrived {
                lineage,
                message,
                bytes,
            },
            routing,
        ) in items.iter().copied().zip(routings)
        {
            let campaign = message.campaign_id.as_deref();
            let routed = match campaign {
                Some(id) if cancelled.contains(id) => Err(RejectionReason::CancelledBySender),
                _ => route(message, routing),
            };
            match routed {
                Err(reason) => {
                    decisions.rejected(reason);
                    let status = ItemProgress::status(ItemStatus::Rejected(reason));
                    progress.note(campaign, message.id, status);
                    rejected.push(MessageRecord::rejected(message.clone(), reason))
                }
                Ok(decision) => {
                    decisions.planned(&decision.channels);
                    deliveries[message.lane().index()]
                        .push(lineage.record(decision.plan_record(bytes)))
                }
            }
        }
        // A store or log that is down holds the stage; one that refuses this data for good
        // dead-letters the culprit (the runner tries the batch's items one by one).
        self.store
            .put_messages(rejected)
            .await
            .map_err(|err| StageError::from_dependency(err.is_retryable(), err))?;
        for (lane, deliveries) in Lane::ALL.into_iter().zip(deliveries) {
            if !deliveries.is_empty() {
                self.bus
                    .publish(lane.topic(topics::DELIVERIES_INBOX), deliveries)
                    .await?;
            }
        }
        progress.publish(&*self.bus).await?;
        // Counted once the batch is done, so a batch held and retried counts once.
        decisions.emit();
        Ok(())
    }
}

/// Applies IO's rules to one message and what the store holds about its citizen.
fn route(message: &AcceptedMessage, routing: Routing) -> Routed {
    if let Some(email) = &message.sandbox_email {
        return Ok(sandbox_decision(email));
    }
    let Routing {
        profile,
        preference,
    } = routing;
    // `decide` owns IO's rules, the LEGACY mode's included (it reads no preference then).
    let verdict = decide(
        profile.as_ref(),
        preference.as_ref(),
        &message.sender_service_id,
        message.requires_secure_channel(),
    );
    match (verdict, profile) {
        (Verdict::Deliver(channels), Some(profile)) => {
            let email = match channels.email {
                ChannelChoice::Send => profile.email.clone(),
                ChannelChoice::Skip(_) => None,
            };
            Ok(RoutingDecision {
                channels,
                push_content: profile
                    .push_notifications_content_type
                    .unwrap_or(PushContent::Anonymous),
                preferred_languages: profile.preferred_languages,
                email,
            })
        }
        (Verdict::Rejected(reason), _) => Err(reason),
        // `decide` only delivers when there is a profile.
        (Verdict::Deliver(_), None) => Err(RejectionReason::UserNotFound),
    }
}

/// A test-mode message to IO's test fiscal code: by email to the sending service's contact
/// address, whatever the store holds about that code (no one's profile, no devices).
fn sandbox_decision(email: &model::email::EmailAddress) -> RoutingDecision {
    RoutingDecision {
        channels: model::channels::ChannelPlan {
            email: ChannelChoice::Send,
            push: ChannelChoice::Skip(model::channels::SkipReason::NoDevice),
        },
        push_content: PushContent::Anonymous,
        preferred_languages: vec!["it_IT".into()],
        email: Some(email.clone()),
    }
}

/// Where one message goes: on to the inbox with its plan, or rejected for a reason.
type Routed = Result<RoutingDecision, RejectionReason>;

impl PipelineStage for RouterStage {
    const TOPIC: &'static str = topics::MESSAGES;
    const GROUP: &'static str = GROUP;
}

#[async_trait]
impl Stage for RouterStage {
    type Item = Arrived;

    fn decode(&self, record: &Record) -> Result<Arrived, String> {
        let message = decode::<AcceptedMessage>(&record.payload).map_err(|e| e.to_string())?;
        Ok(Arrived {
            lineage: Lineage::of(record),
            message,
            bytes: record.payload.clone(),
        })
    }

    async fn process(&self, items: &[&Self::Item]) -> Vec<Result<(), StageError>> {
        stage::by_batch(items, |batch| async move { self.route_batch(&batch).await }).await
    }

    async fn dead_lettered(&self, Arrived { message, .. }: &Arrived, reason: &str) {
        tracing::error!(message_id = %message.id, reason, "message could not be routed");
        let failed = MessageRecord::new(message.clone(), MessageStatus::Failed);
        if let Err(err) = self.store.put_messages(vec![failed]).await {
            tracing::error!(message_id = %message.id, error = %err, "cannot record FAILED status");
        }
        report_failed(&*self.bus, message).await;
    }
}
