//! `loadtest lanes`: whether a campaign delays one-off messages. One-off messages are sent
//! at a low steady rate on an idle Postino first, then again while a campaign goes through
//! the bulk API; every one-off message is followed to its inbox, and the two lanes'
//! send → inbox latencies are reported side by side.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;

use crate::api::Api;
use crate::engine::{drive, Plan};
use crate::pacing::Pacing;
use crate::scenarios::{self, Followers, Scenario, Seeded};
use crate::stats::Percentiles;

/// What the run measured.
#[derive(Debug, Clone, Serialize)]
pub struct LanesReport {
    pub target: String,
    pub campaign_messages: u64,
    pub per_call: u64,
    pub single_rate: f64,
    /// One-off messages' send → inbox, Postino otherwise idle.
    pub single_idle_ms: Percentiles,
    /// One-off messages' send → inbox while the campaign ran.
    pub single_during_campaign_ms: Percentiles,
    /// One-off messages refused, idle and during the campaign.
    pub single_errors: u64,
    /// The campaign's sampled messages' send → inbox.
    pub campaign_ms: Percentiles,
    pub campaign_accepted: u64,
    pub campaign_readable_after_secs: Option<f64>,
}

impl LanesReport {
    pub fn summary(&self) -> String {
        let row = |name: &str, p: &Percentiles| {
            format!(
                "  {name:<26} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>7}\n",
                p.p50, p.p90, p.p99, p.max, p.count
            )
        };
        let mut out = format!(
            "lanes against {} — a campaign of {} through the bulk API ({} a call), one-off messages at {}/s\n\
             \x20 send → inbox (ms)               p50       p90       p99       max   count\n",
            self.target, self.campaign_messages, self.per_call, self.single_rate
        );
        out.push_str(&row("one-off, Postino idle", &self.single_idle_ms));
        out.push_str(&row(
            "one-off, during campaign",
            &self.single_during_campaign_ms,
        ));
        out.push_str(&row("campaign (bulk lane)", &self.campaign_ms));
        if let Some(after) = self.campaign_readable_after_secs {
            out.push_str(&format!(
                "  campaign: {} accepted, all readable after {after:.1} s: {:.0}/s end to end\n",
                self.campaign_accepted,
                self.campaign_accepted as f64 / after.max(1e-3)
            ));
        }
        if self.single_errors > 0 {
            out.push_str(&format!(
                "  one-off messages refused: {}\n",
                self.single_errors
            ));
        }
        out
    }
}

/// How the lanes run is set up.
#[derive(Debug, Clone)]
pub struct LanesPlan {
    pub campaign_messages: u64,
    pub per_call: u64,
    pub bulk_connections: usize,
    pub single_rate: f64,
    pub idle: Duration,
}

/// Runs the two phases against `api`.
pub async fn run(
    api: Api,
    seeded: Arc<Seeded>,
    plan: &LanesPlan,
    target: &str,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<LanesReport> {
    let single = |duration: Option<Duration>, label: &str| Plan {
        pacing: Pacing::Open {
            rate: plan.single_rate,
        },
        connections: 64,
        requests: None,
        duration,
        sample_every: 1,
        wait_for_inbox: true,
        label: label.into(),
    };
    let singles = || {
        scenarios::messages(
            Arc::new(api.clone()),
            Arc::clone(&seeded),
            Scenario::MassNotice,
            Followers::default(),
            None,
        )
    };
    let (idle, _) = drive(
        api.clone(),
        &single(Some(plan.idle), "one-off, idle"),
        singles(),
        stop.clone(),
    )
    .await;

    let sender = seeded
        .services
        .first()
        .ok_or_else(|| anyhow::anyhow!("the state file has no service: run loadtest seed"))?;
    let name = format!("loadtest lanes {}", crate::standins::unix_millis());
    let campaign = api.open_campaign(sender, &name).await?;
    let bulk_plan = Plan {
        pacing: Pacing::Closed,
        connections: plan.bulk_connections,
        requests: Some(plan.campaign_messages.div_ceil(plan.per_call)),
        duration: None,
        sample_every: 1,
        wait_for_inbox: true,
        label: format!("campaign, {} a call", plan.per_call),
    };
    let bulk = scenarios::bulk_messages(
        Arc::new(api.clone()),
        Arc::clone(&seeded),
        Scenario::MassNotice,
        Arc::from(campaign),
        plan.per_call,
        plan.campaign_messages,
    );
    // The one-off stream runs until the campaign is all readable (or the run is stopped).
    let (campaign_done, mut done) = watch::channel(false);
    let mut stop_singles = stop.clone();
    let (singles_stop, singles_stopped) = watch::channel(false);
    tokio::spawn(async move {
        tokio::select! {
            _ = done.changed() => {}
            _ = stop_singles.changed() => {}
        }
        let _ = singles_stop.send(true);
    });
    let during = tokio::spawn({
        let (api, plan) = (api.clone(), single(None, "one-off, during the campaign"));
        let workload = singles();
        async move { drive(api, &plan, workload, singles_stopped).await }
    });
    let (bulk_stats, bulk_driven) = drive(api.clone(), &bulk_plan, bulk, stop.clone()).await;
    let _ = campaign_done.send(true);
    let (during, _) = during.await?;

    Ok(LanesReport {
        target: target.to_string(),
        campaign_messages: plan.campaign_messages,
        per_call: plan.per_call,
        single_rate: plan.single_rate,
        single_errors: idle.error_count() + during.error_count(),
        single_idle_ms: idle.end_to_end(),
        single_during_campaign_ms: during.end_to_end(),
        campaign_ms: bulk_stats.end_to_end(),
        campaign_accepted: bulk_stats.ok(),
        campaign_readable_after_secs: bulk_driven.all_readable_after.map(|d| d.as_secs_f64()),
    })
}
