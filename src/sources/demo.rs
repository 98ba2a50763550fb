//! `demo`: a generator of realistic SLS-shaped logs.
//!
//! Produces what the `sls` source would deliver for the logs of
//! `pipe_demo_logs::DemoLogGenerator`: content fields plus `__time__`
//! (integer seconds), `__time_ns_part__` (when non-zero), `__topic__`,
//! `__source__` and `__tag__:KEY`, flattened the way the official SLS SDK does.
//! Deterministic for a `seed`, apart from timestamps (the current time).
//!
//! To generate at pipeline speed rather than at formatting speed, the source
//! renders `TEMPLATE_POOL` logs once and then emits clones of them in turn
//! (string values share their buffers), stamping each copy with the current
//! time and a fresh `seq` number (1, 2, 3… across the whole run).
//!
//! Keys: `rate` (events per second; absent means as fast as the pipeline
//! takes them), `count` (stop after this many events; absent means forever),
//! `seed` (default 1), `batch_size` (default 500).
//!
//! Acknowledgements: events carry finalizers; the source counts batches that
//! come back errored (`pipe_component_errors_total{error_type="delivery_failed"}`)
//! since it has nothing to replay. It waits for outstanding acknowledgements
//! before it finishes.
//!
//! Metrics: the standard component counters.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use pipe_demo_logs::{DemoLog, DemoLogGenerator};
use serde::Deserialize;

use super::checkpoint::PendingBatches;
use crate::event::{
    object_map_with_capacity, BatchStatus, EventFinalizer, EventMetadata, KeyString, LogEvent, ObjectMap, Str, Value,
};
use crate::topology::{BuildContext, BuildError, ComponentError, ComponentFuture, Source, SourceContext};

const DEFAULT_BATCH_SIZE: usize = 500;
/// Distinct logs rendered at start-up and then cycled through.
const TEMPLATE_POOL: usize = 1024;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoSourceConfig {
    /// Events per second; absent means unthrottled.
    #[serde(default)]
    pub rate: Option<f64>,
    /// Total events to emit; absent means unlimited.
    #[serde(default)]
    pub count: Option<u64>,
    #[serde(default = "default_seed")]
    pub seed: u64,
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
}

fn default_seed() -> u64 {
    1
}

fn default_batch_size() -> usize {
    DEFAULT_BATCH_SIZE
}

impl DemoSourceConfig {
    pub fn build(&self, _cx: &BuildContext) -> Result<Box<dyn Source>, BuildError> {
        if let Some(rate) = self.rate {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(BuildError::new(format!(
                    "\"rate\" is {rate}; set it above 0, or remove it to generate as fast as possible"
                )));
            }
        }
        if self.batch_size == 0 {
            return Err(BuildError::new("\"batch_size\" is 0; set it above 0"));
        }
        // Paced runs emit ten batches a second so output looks continuous.
        let batch_size = match self.rate {
            Some(rate) => ((rate / 10.0).ceil() as usize).clamp(1, self.batch_size),
            None => self.batch_size,
        };
        Ok(Box::new(DemoSource { rate: self.rate, count: self.count, seed: self.seed, batch_size }))
    }
}

struct DemoSource {
    rate: Option<f64>,
    count: Option<u64>,
    seed: u64,
    batch_size: usize,
}

impl Source for DemoSource {
    fn run(self: Box<Self>, cx: SourceContext) -> ComponentFuture {
        Box::pin(self.run_loop(cx))
    }
}

impl DemoSource {
    async fn run_loop(self, mut cx: SourceContext) -> Result<(), ComponentError> {
        let mut generator = DemoLogGenerator::new(self.seed);
        let templates: Vec<Template> = (0..TEMPLATE_POOL).map(|_| Template::new(&generator.next_log(0))).collect();
        let mut pending = PendingBatches::new(None, cx.acks_pending.clone());
        let delivery_failures = cx.metrics.errors("delivery_failed", "sending");
        let mut pacer = self.rate.map(|rate| {
            let mut interval = tokio::time::interval(Duration::from_secs_f64(self.batch_size as f64 / rate));
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            interval
        });
        let source_id: Arc<str> = Arc::clone(&cx.id);
        let mut emitted: u64 = 0;
        loop {
            let remaining = self.count.map_or(u64::MAX, |count| count - emitted);
            if remaining == 0 {
                break;
            }
            if let Some(pacer) = pacer.as_mut() {
                // Both arms are cancel-safe: a tick not taken is not lost, and
                // cancellation only ends the loop.
                tokio::select! {
                    _ = cx.shutdown.cancelled() => break,
                    _ = pacer.tick() => {}
                }
            } else if cx.shutdown.is_cancelled() {
                break;
            }
            while let Some(Some(status)) = pending.next_status().now_or_never() {
                if status != BatchStatus::Delivered {
                    delivery_failures.increment(1);
                }
            }

            let size = (self.batch_size as u64).min(remaining) as usize;
            let notifier = pending.start_batch(emitted + size as u64);
            let now = chrono::Utc::now().timestamp();
            let receive_time = Value::String(Str::from(now.to_string()));
            let mut batch = Vec::with_capacity(size);
            let mut bytes = 0;
            for offset in 0..size as u64 {
                let sequence = emitted + offset + 1;
                let template = &templates[(sequence as usize - 1) % TEMPLATE_POOL];
                let mut fields = template.fields.clone();
                // Positions were found once per template: no hashing per event.
                let mut set = |index: Option<usize>, value: Value| {
                    if let Some((_, slot)) = index.and_then(|index| fields.get_index_mut(index)) {
                        *slot = value;
                    }
                };
                set(template.time_index, Value::Integer(now));
                set(template.receive_time_index, receive_time.clone());
                set(template.seq_index, Value::String(Str::from(sequence.to_string())));
                bytes += template.byte_size;
                let event = LogEvent::new(fields, EventMetadata::new(Arc::clone(&source_id), template.byte_size))
                    .with_finalizer(EventFinalizer::new(Arc::clone(&notifier)));
                batch.push(event);
            }
            drop(notifier);
            cx.metrics.received_events.increment(size as u64);
            cx.metrics.received_bytes.increment(bytes as u64);
            emitted += size as u64;
            // Not cancel-safe by itself, so it is not raced against shutdown:
            // a batch already built is always handed over.
            cx.output.send(batch).await;
        }
        drop(cx.output);
        while let Some(status) = pending.next_status().await {
            if status != BatchStatus::Delivered {
                delivery_failures.increment(1);
            }
        }
        Ok(())
    }
}

/// One pre-rendered log and where its per-copy fields sit.
struct Template {
    fields: ObjectMap,
    byte_size: usize,
    time_index: Option<usize>,
    receive_time_index: Option<usize>,
    seq_index: Option<usize>,
}

impl Template {
    fn new(log: &DemoLog) -> Template {
        let fields = demo_log_fields(log);
        Template {
            time_index: fields.get_index_of("__time__"),
            receive_time_index: fields.get_index_of("__tag__:__receive_time__"),
            seq_index: fields.get_index_of("seq"),
            byte_size: log.raw_size(),
            fields,
        }
    }
}

/// The event fields SLS consumer groups deliver for `log`, in the SDK's order:
/// `__time__`, `__topic__`, `__source__`, `__time_ns_part__` (non-zero only),
/// `__tag__:KEY` for each tag, then the contents.
pub fn demo_log_fields(log: &DemoLog) -> ObjectMap {
    let mut fields = object_map_with_capacity(4 + log.tags.len() + log.contents.len());
    fields.insert(KeyString::const_new("__time__"), Value::Integer(i64::from(log.time)));
    fields.insert(KeyString::const_new("__topic__"), Value::String(Str::from(log.topic.as_str())));
    fields.insert(KeyString::const_new("__source__"), Value::String(Str::from(log.source.as_str())));
    if log.time_ns != 0 {
        fields.insert(KeyString::const_new("__time_ns_part__"), Value::Integer(i64::from(log.time_ns)));
    }
    for (key, value) in &log.tags {
        let mut name = KeyString::const_new("__tag__:");
        name.push_str(key);
        fields.insert(name, Value::String(Str::from(value.as_str())));
    }
    for (key, value) in &log.contents {
        fields.insert(KeyString::from(key.as_str()), Value::String(Str::from(value.as_str())));
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_follow_the_sdk_flattening() {
        let log = DemoLog {
            time: 1_700_000_000,
            time_ns: 5,
            topic: "topic1".into(),
            source: "10.0.0.1".into(),
            tags: vec![("__receive_time__".into(), "1700000000".into())],
            contents: vec![("msg".into(), "hello".into())],
        };
        let fields = demo_log_fields(&log);
        let keys: Vec<&str> = fields.keys().map(|key| key.as_str()).collect();
        assert_eq!(
            keys,
            ["__time__", "__topic__", "__source__", "__time_ns_part__", "__tag__:__receive_time__", "msg"]
        );
        assert_eq!(fields["__time__"], Value::Integer(1_700_000_000));
    }

    #[test]
    fn invalid_rates_are_rejected_at_build() {
        let config = DemoSourceConfig { rate: Some(0.0), count: None, seed: 1, batch_size: 10 };
        let error = config.build(&BuildContext { id: "d".into(), data_dir: "data".into() }).err().unwrap();
        assert!(error.0.contains("\"rate\""));
    }
}
