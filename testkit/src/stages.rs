//! Running a stage in a test and reading back what it did.

use std::sync::Arc;

use bus::stage::{self, Stage, StageConfig};
use bus::{Bus, BusError, Delivered};
use model::status::{Channel, ChannelStatus};
use serde::de::DeserializeOwned;
use store::Store;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use ulid::Ulid;

/// Runs `stage` on `topic` until `true` is sent on the returned sender.
pub fn spawn_stage<S: Stage + 'static>(
    bus: &Arc<dyn Bus>,
    topic: &'static str,
    group: &'static str,
    stage: S,
    cfg: StageConfig,
) -> (watch::Sender<bool>, JoinHandle<Result<(), BusError>>) {
    let (stop, stopped) = watch::channel(false);
    let runner = tokio::spawn(stage::run(
        Arc::clone(bus),
        topic,
        group,
        Arc::new(stage),
        cfg,
        stopped,
    ));
    (stop, runner)
}

/// What `channel`'s dispatcher recorded for message `id` (IO's status: none while the
/// channel has no outcome or was not used).
///
/// # Panics
/// When the store fails or does not hold the message.
pub async fn channel_status(
    store: &Arc<dyn Store>,
    id: Ulid,
    channel: Channel,
) -> Option<ChannelStatus> {
    let notification = store
        .get_message(&id)
        .await
        .expect("get")
        .expect("there")
        .notification;
    match channel {
        Channel::Email => notification.email,
        Channel::Push => notification.webhook,
    }
    .and_then(model::status::ChannelOutcome::status)
}

/// The messages of the jobs (of type `J`) in `dead`, sorted.
///
/// # Panics
/// When a dead-lettered record is not such a job.
pub fn dead_lettered<J: DeserializeOwned>(
    dead: &[Delivered],
    message_id: impl Fn(&J) -> Ulid,
) -> Vec<Ulid> {
    let mut ids: Vec<Ulid> = dead
        .iter()
        .map(|d| message_id(&model::pipeline::decode::<J>(&d.record.payload).expect("job")))
        .collect();
    ids.sort();
    ids
}

/// Message ids as text, sorted: what a stand-in or a mailbox should have received.
pub fn sorted_ids(ids: impl IntoIterator<Item = impl ToString>) -> Vec<String> {
    let mut ids: Vec<String> = ids.into_iter().map(|id| id.to_string()).collect();
    ids.sort();
    ids
}
