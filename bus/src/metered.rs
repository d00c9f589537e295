//! The log with its series recorded: publishes timed and counted, consumed records counted,
//! whichever log is underneath. The process wraps its log in [`Metered`] once; the stages and
//! APIs see an ordinary [`Bus`].

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::metrics::{Consumed, TopicPublishes};
use crate::{Bus, BusError, Delivered, PartitionLag, Record, Subscription};

/// A [`Bus`] that records `postino_log_*` series around another.
#[derive(Debug)]
pub struct Metered {
    inner: Arc<dyn Bus>,
    /// Each topic's series, so a publish looks them up once, not in the recorder.
    topics: RwLock<HashMap<String, TopicPublishes>>,
}

impl Metered {
    pub fn wrap(inner: Arc<dyn Bus>) -> Arc<dyn Bus> {
        Arc::new(Self {
            inner,
            topics: RwLock::default(),
        })
    }

    /// Records a publish to `topic` in its series, registering them on its first publish.
    fn emit(&self, topic: &str, records: usize, elapsed: Duration, ok: bool) {
        if let Some(series) = self
            .topics
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(topic)
        {
            return series.emit(records, elapsed, ok);
        }
        let mut topics = self.topics.write().unwrap_or_else(|p| p.into_inner());
        topics
            .entry(topic.to_string())
            .or_insert_with(|| TopicPublishes::new(topic))
            .emit(records, elapsed, ok);
    }
}

#[async_trait]
impl Bus for Metered {
    async fn publish(&self, topic: &str, records: Vec<Record>) -> Result<(), BusError> {
        let count = records.len();
        let started = Instant::now();
        let outcome = self.inner.publish(topic, records).await;
        self.emit(topic, count, started.elapsed(), outcome.is_ok());
        outcome
    }

    async fn subscribe(&self, topic: &str, group: &str) -> Result<Box<dyn Subscription>, BusError> {
        let inner = self.inner.subscribe(topic, group).await?;
        Ok(Box::new(MeteredSubscription {
            inner,
            consumed: Consumed::new(topic, group),
        }))
    }

    async fn check(&self) -> Result<(), BusError> {
        self.inner.check().await
    }

    async fn lag(&self, topic: &str, group: &str) -> Result<Vec<PartitionLag>, BusError> {
        self.inner.lag(topic, group).await
    }
}

#[derive(Debug)]
struct MeteredSubscription {
    inner: Box<dyn Subscription>,
    consumed: Consumed,
}

#[async_trait]
impl Subscription for MeteredSubscription {
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivered>, BusError> {
        let records = self.inner.poll(max, wait).await?;
        self.consumed.emit(records.len());
        Ok(records)
    }

    async fn commit(&mut self, done: &[Delivered]) -> Result<(), BusError> {
        self.inner.commit(done).await
    }
}
