//! What each scenario sends. `seed` creates the services and the citizens' profiles and
//! writes a state file; `mass-notice`, `mixed` and `ingest` read it and send messages.

use std::path::Path;
use std::sync::Arc;

use model::message::PaymentData;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::api::{Api, SenderService};
use crate::arrivals::Follower;
use crate::engine::{Done, Job, Workload};
use crate::population::{device_token, fiscal_code, spread, Kind, Mix, INSTALLATION_ID};
use crate::stats::Outcome;

/// What `seed` leaves for the scenarios.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Seeded {
    pub target: String,
    pub citizens: u64,
    pub mix: Mix,
    /// The first is the mass-notice service (the one some citizens block).
    pub services: Vec<SenderService>,
}

impl Seeded {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            anyhow::anyhow!(
                "cannot read the seed state {} ({e}); run `loadtest seed` first",
                path.display()
            )
        })?;
        serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("seed state {} is not valid: {e}", path.display()))
    }

    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        std::fs::write(path, serde_json::to_string_pretty(self)?)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
    }
}

/// Seeding citizen `i`: the profile its kind calls for (none for `NoProfile`), the
/// preference blocking the first service where the mix says so, and its phone.
pub fn seed_citizen(api: Arc<Api>, mix: Mix, first_service: String) -> Workload {
    Arc::new(move |i| -> Job {
        let (api, first_service) = (Arc::clone(&api), first_service.clone());
        Box::pin(async move { Done::single(seed_one(&api, i, mix, &first_service).await, None) })
    })
}

async fn seed_one(api: &Api, i: u64, mix: Mix, first_service: &str) -> Outcome {
    let fc = fiscal_code(i);
    let (inbox, blocks, email, push_full, phone) = match mix.kind(i) {
        Kind::NoProfile => return Outcome::Ok,
        Kind::InboxDisabled => (false, false, false, false, None),
        Kind::Active {
            blocks_first_service,
            email,
            push_full,
            phone,
        } => (true, blocks_first_service, email, push_full, phone),
    };
    let mut profile = json!({
        "is_inbox_enabled": inbox,
        "is_webhook_enabled": true,
        "preferred_languages": ["it_IT"],
        "push_notifications_content_type": if push_full { "FULL" } else { "ANONYMOUS" },
        "is_email_enabled": email,
    });
    if email {
        profile["email"] = json!(format!("{}@example.org", fc.to_lowercase()));
        profile["is_email_validated"] = json!(true);
    }
    let mut steps = vec![("/profile".to_string(), profile)];
    if blocks {
        steps.push((
            format!("/services/{first_service}/preferences"),
            json!({
                "is_inbox_enabled": false,
                "is_email_enabled": false,
                "is_webhook_enabled": false,
                "settings_version": 0,
            }),
        ));
    }
    if let Some(platform) = phone {
        steps.push((
            format!("/installations/{INSTALLATION_ID}"),
            json!({
                "platform": platform,
                "push_channel": device_token(i, platform),
                "app_version": "2.70.0",
            }),
        ));
    }
    for (path, body) in steps {
        let outcome = api.put_as_citizen(&fc, &path, &body).await;
        if outcome != Outcome::Ok {
            return outcome;
        }
    }
    Outcome::Ok
}

/// Which scenario, with its own settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scenario {
    /// One service, message `i` to citizen `i`: each citizen gets one.
    MassNotice,
    /// Messages from every seeded service to citizens drawn at random, a share of them
    /// payment notices.
    Mixed { payment_share: f64 },
    /// Like the mass notice, without following messages to the inbox: the senders' API
    /// alone.
    Ingest,
}

impl Scenario {
    pub fn name(&self) -> &'static str {
        match self {
            Self::MassNotice => "mass-notice",
            Self::Mixed { .. } => "mixed",
            Self::Ingest => "ingest",
        }
    }

    /// The citizen and service (index) of message `i`.
    pub fn address(&self, i: u64, seeded: &Seeded) -> (u64, usize) {
        let citizens = seeded.citizens.max(1);
        match self {
            Self::MassNotice | Self::Ingest => (i % citizens, 0),
            Self::Mixed { .. } => {
                let h = spread(i);
                let services = seeded.services.len().max(1) as u64;
                // services ≤ usize::MAX, so the remainder fits
                (h % citizens, ((h / citizens) % services) as usize)
            }
        }
    }

    /// The body of message `i`: what a real sender would send, with a payment notice for
    /// the configured share. Serialised from borrowed fields straight to bytes: a
    /// `serde_json::Value` per request cost the generator CPU that Postino then lacked.
    pub fn body(&self, i: u64) -> Vec<u8> {
        let subject = format!("Avviso di scadenza n. {i}");
        let markdown = format!(
            "Gentile contribuente, ti ricordiamo che il pagamento n. {i} scade il 31 gennaio. \
             Puoi pagare in app con pagoPA, senza costi aggiuntivi, oppure presso gli sportelli abilitati."
        );
        let payment_data = match self {
            Self::Mixed { payment_share } => {
                let draw = (spread(i ^ 0xA5A5) % 10_000) as f64 / 10_000.0;
                (draw < *payment_share).then(|| PaymentData {
                    amount: 1 + (i % 50_000) as i64,
                    notice_number: format!("3{:017}", i % 100_000_000_000_000_000),
                    invalid_after_due_date: false,
                    payee: None,
                })
            }
            Self::MassNotice | Self::Ingest => None,
        };
        let body = MessageBody {
            content: Content {
                subject: &subject,
                markdown: &markdown,
                payment_data,
            },
        };
        // Plain structs of strings and numbers always serialise.
        serde_json::to_vec(&body).unwrap_or_default()
    }
}

/// The senders' `NewMessage`, as much of it as the scenarios send.
#[derive(Serialize)]
struct MessageBody<'a> {
    content: Content<'a>,
}

#[derive(Serialize)]
struct Content<'a> {
    subject: &'a str,
    markdown: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    payment_data: Option<PaymentData>,
}

/// Where a run follows its messages' notifications to.
#[derive(Debug, Clone, Default)]
pub struct Followers {
    pub pushes: Option<Arc<Follower>>,
    pub emails: Option<Arc<Follower>>,
}

/// Sends message `i` of `scenario`, noting the messages that should reach a followed push
/// stand-in or mailbox. With `idempotency_keys` (the run's prefix), message `i` goes with
/// the key `<prefix>-<i>`.
pub fn messages(
    api: Arc<Api>,
    seeded: Arc<Seeded>,
    scenario: Scenario,
    followers: Followers,
    idempotency_keys: Option<Arc<str>>,
) -> Workload {
    Arc::new(move |i| -> Job {
        let (api, seeded, followers) = (Arc::clone(&api), Arc::clone(&seeded), followers.clone());
        let key = idempotency_keys
            .as_ref()
            .map(|prefix| format!("{prefix}-{i}"));
        Box::pin(async move {
            let (citizen, service) = scenario.address(i, &seeded);
            let fc = fiscal_code(citizen);
            let Some(sender) = seeded.services.get(service) else {
                return Done::single(Outcome::Transport("no seeded service".into()), None);
            };
            let sent_ms = crate::standins::unix_millis();
            let (outcome, id) = api
                .submit(sender, &fc, scenario.body(i), key.as_deref())
                .await;
            if let Some(id) = &id {
                if let (Some(pushes), Some(platform)) =
                    (&followers.pushes, seeded.mix.pushed_to(citizen, service))
                {
                    if pushes.watches(platform) {
                        pushes.expect(id.clone(), sent_ms);
                    }
                }
                if let Some(emails) = &followers.emails {
                    if seeded.mix.emailed(citizen, service) {
                        emails.expect(id.clone(), sent_ms);
                    }
                }
            }
            let follow = scenario != Scenario::Ingest && seeded.mix.readable(citizen, service);
            Done::single(outcome, id.filter(|_| follow).map(|id| (fc, id)))
        })
    })
}

/// Sends call `call` of a bulk run: messages `call * per_call` up to `total` (exclusive) of
/// `scenario`, one JSON call to campaign `campaign` of the first seeded service. The call
/// is followed by its last readable message. Pushes and emails are not followed.
pub fn bulk_messages(
    api: Arc<Api>,
    seeded: Arc<Seeded>,
    scenario: Scenario,
    campaign: Arc<str>,
    per_call: u64,
    total: u64,
) -> Workload {
    Arc::new(move |call| -> Job {
        let (api, seeded, campaign) =
            (Arc::clone(&api), Arc::clone(&seeded), Arc::clone(&campaign));
        Box::pin(async move {
            let Some(sender) = seeded.services.first() else {
                return Done::single(Outcome::Transport("no seeded service".into()), None);
            };
            let first = call.saturating_mul(per_call);
            let end = first.saturating_add(per_call).min(total);
            let mut items = Vec::with_capacity(((end - first) as usize) * 400);
            items.push(b'[');
            for i in first..end {
                if i > first {
                    items.push(b',');
                }
                let (citizen, _) = scenario.address(i, &seeded);
                // The scenario's body is an object: the fiscal code goes in first.
                let body = scenario.body(i);
                items.extend_from_slice(b"{\"fiscal_code\":\"");
                items.extend_from_slice(fiscal_code(citizen).as_bytes());
                items.extend_from_slice(b"\",");
                items.extend_from_slice(body.get(1..).unwrap_or_default());
            }
            items.push(b']');
            let (outcome, ids) = api.submit_bulk(sender, &campaign, items).await;
            let follow = scenario != Scenario::Ingest;
            let readable = |index: usize| {
                let (citizen, service) = scenario.address(first + index as u64, &seeded);
                (follow && seeded.mix.readable(citizen, service)).then_some(citizen)
            };
            let readable_messages = ids
                .iter()
                .filter(|(index, _)| readable(*index).is_some())
                .count();
            let last = ids.iter().rev().find_map(|(index, id)| {
                readable(*index).map(|citizen| (fiscal_code(citizen), id.clone()))
            });
            Done {
                outcome,
                readable: last,
                messages: ids.len() as u64,
                readable_messages: readable_messages as u64,
            }
        })
    })
}

/// `GET /health`, the no-op baseline.
pub fn health(api: Arc<Api>) -> Workload {
    Arc::new(move |_| -> Job {
        let api = Arc::clone(&api);
        Box::pin(async move { Done::single(api.health().await, None) })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seeded(services: usize) -> Seeded {
        Seeded {
            target: "http://x".into(),
            citizens: 1000,
            mix: Mix::default(),
            services: (0..services)
                .map(|i| SenderService {
                    id: format!("s{i}"),
                    key: "k".into(),
                })
                .collect(),
        }
    }

    #[test]
    fn a_mass_notice_reaches_each_citizen_once() {
        let s = seeded(3);
        let mut seen = std::collections::HashSet::new();
        for i in 0..1000 {
            let (c, svc) = Scenario::MassNotice.address(i, &s);
            assert_eq!(svc, 0);
            assert!(seen.insert(c));
        }
    }

    #[test]
    fn mixed_uses_every_service_and_the_payment_share() {
        let s = seeded(4);
        let scenario = Scenario::Mixed {
            payment_share: 0.25,
        };
        let mut services = std::collections::HashSet::new();
        let mut payments = 0;
        for i in 0..4000 {
            services.insert(scenario.address(i, &s).1);
            let body: serde_json::Value =
                serde_json::from_slice(&scenario.body(i)).expect("json body");
            if let Some(p) = body["content"].get("payment_data") {
                payments += 1;
                let notice = p["notice_number"].as_str().expect("notice number");
                assert_eq!(notice.len(), 18, "{notice}");
                assert!(p["amount"]
                    .as_u64()
                    .is_some_and(|a| (1..=1_000_000).contains(&a)));
            }
        }
        assert_eq!(services.len(), 4);
        assert!((800..1200).contains(&payments), "{payments}");
        let notice: serde_json::Value =
            serde_json::from_slice(&Scenario::MassNotice.body(1)).expect("json body");
        assert!(notice["content"].get("payment_data").is_none());
    }

    #[test]
    fn message_bodies_pass_postino_validation() {
        let bytes = Scenario::Mixed { payment_share: 1.0 }.body(42);
        model::message::NewMessage::parse(&bytes, Some(&fiscal_code(42)), 1_000_000)
            .unwrap_or_else(|e| panic!("{e:?}"));
    }

    #[test]
    fn a_missing_or_broken_state_file_says_what_to_do() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = Seeded::load(&dir.path().join("none.json")).expect_err("missing");
        assert!(err.to_string().contains("loadtest seed"), "{err}");
        let broken = dir.path().join("broken.json");
        std::fs::write(&broken, "{\"target\": 3").expect("write");
        let err = Seeded::load(&broken).expect_err("broken");
        assert!(err.to_string().contains("not valid"), "{err}");
        let ok = dir.path().join("ok.json");
        seeded(2).save(&ok).expect("save");
        assert_eq!(Seeded::load(&ok).expect("load"), seeded(2));
    }
}
