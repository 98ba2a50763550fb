//! `filter`: keeps the events that match a condition.
//!
//! Keys: `condition` (Lucene query string) or `query` (Elasticsearch query
//! DSL table), `keyword_fields` (see `condition`).
//!
//! Acknowledgements: events that do not match are dropped on purpose, so
//! they are settled as delivered (their source may move on) and counted in
//! `pipe_component_discarded_events_total{intentional="true"}`.

use serde::Deserialize;

use super::condition::ConditionConfig;
use crate::event::{BatchStatus, EventBatch};
use crate::query::Query;
use crate::topology::{BuildContext, BuildError, FunctionTransform, Transform, TransformOutputBuffer};

#[derive(Debug, Clone, Deserialize)]
#[serde(transparent)]
pub struct FilterConfig(pub ConditionConfig);

impl FilterConfig {
    pub fn build(&self, cx: &BuildContext) -> Result<Transform, BuildError> {
        let query = self.0.compile("condition")?;
        let discarded = metrics::counter!(
            "pipe_component_discarded_events_total",
            "component_id" => cx.id.clone(),
            "component_kind" => "transform",
            "component_type" => "filter",
            "intentional" => "true"
        );
        Ok(Transform::Function(Box::new(Filter { query, discarded })))
    }
}

struct Filter {
    query: Query,
    discarded: metrics::Counter,
}

impl FunctionTransform for Filter {
    fn transform(&mut self, batch: EventBatch, output: &mut TransformOutputBuffer) {
        let mut dropped = 0;
        for event in batch {
            if self.query.matches(&event) {
                output.push(event);
            } else {
                dropped += 1;
                event.settle(BatchStatus::Delivered);
            }
        }
        self.discarded.increment(dropped);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{BatchNotifier, EventFinalizer, LogEvent};

    #[tokio::test]
    async fn keeps_matches_and_settles_the_rest_as_delivered() {
        let config: FilterConfig = toml::from_str("condition = \"message:*Exception*\"").unwrap();
        let Transform::Function(mut filter) =
            config.build(&BuildContext { id: "f".into(), data_dir: "data".into() }).unwrap()
        else {
            panic!("a function transform")
        };
        let (notifier, status) = BatchNotifier::new_with_receiver();
        let event = |message: &str| {
            let mut event =
                LogEvent::from_fields("test", Default::default()).with_finalizer(EventFinalizer::new(notifier.clone()));
            event.insert("message", message);
            event
        };
        let mut output = TransformOutputBuffer::default();
        filter.transform(vec![event("java.lang.NullPointerException at x"), event("all good")], &mut output);
        drop(notifier);
        assert_eq!(output.default.len(), 1);
        output.default.pop().unwrap().settle(BatchStatus::Delivered);
        assert_eq!(status.await, BatchStatus::Delivered);
    }

    #[test]
    fn a_malformed_condition_is_a_build_error_with_its_position() {
        let config: FilterConfig = toml::from_str("condition = \"message:(a OR\"").unwrap();
        let error = config.build(&BuildContext { id: "f".into(), data_dir: "data".into() }).err().unwrap();
        assert!(error.0.starts_with("condition: "), "{error}");
        assert!(error.0.contains("position"), "{error}");
    }
}
