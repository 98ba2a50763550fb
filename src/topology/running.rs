//! Starting and stopping a built pipeline.
//!
//! `RunningTopology::start` creates one input buffer per transform and sink,
//! connects every output to the buffers of its consumers through a `Fanout`,
//! and spawns each component as a task it owns. Sinks start first and
//! sources last, so nothing is sent before its consumer exists.
//!
//! Shutdown (`stop`) cancels the sources' token only. Sources stop reading,
//! drop their outputs and wait for their acknowledgements; as the last sender
//! of each buffer goes, transforms and then sinks see their input close,
//! flush and finish. Whatever has not finished by the deadline is aborted and
//! named; its unsettled events count as errored, so no checkpoint passes them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::buffer::{buffer, BufferMetrics, BufferOptions, BufferReceiver, BufferSender};
use super::component::{
    SinkContext, SourceContext, SourceOutput, Transform, TransformContext, TransformOutputBuffer, TransformOutputs,
};
use super::fanout::Fanout;
use crate::config::graph::{BuiltPipeline, OutputRef};
use crate::config::ComponentKind;
use crate::observability::{ComponentHealth, ComponentMetrics, Telemetry};

struct ComponentTask {
    id: String,
    kind: ComponentKind,
    handle: JoinHandle<bool>,
    /// Whether the task ended cleanly, once it has been awaited (a join
    /// handle must not be polled again after it completed).
    outcome: Option<bool>,
}

/// How a topology ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopReport {
    /// Components that returned an error.
    pub failed: Vec<String>,
    /// Components still running at the deadline, aborted.
    pub forced: Vec<String>,
}

impl StopReport {
    pub fn is_clean(&self) -> bool {
        self.failed.is_empty() && self.forced.is_empty()
    }
}

pub struct RunningTopology {
    tasks: Vec<ComponentTask>,
    source_shutdown: CancellationToken,
    telemetry: Telemetry,
}

impl RunningTopology {
    /// Wires and spawns every component of `pipeline`.
    pub fn start(pipeline: BuiltPipeline, telemetry: Telemetry) -> RunningTopology {
        let data_dir = pipeline.global.data_dir.clone();
        let mut receivers: BTreeMap<String, BufferReceiver> = BTreeMap::new();
        // Consumers of each output: (consumer id, its buffer sender).
        let mut consumers: BTreeMap<OutputRef, Vec<(String, BufferSender)>> = BTreeMap::new();

        let mut connect = |id: &str,
                           inputs: &[OutputRef],
                           options: BufferOptions,
                           kind: ComponentKind,
                           component_type: &'static str| {
            let (sender, receiver) = buffer(options, BufferMetrics::register(id, kind.as_str(), component_type));
            for input in inputs {
                consumers.entry(input.clone()).or_default().push((id.to_string(), sender.clone()));
            }
            receivers.insert(id.to_string(), receiver);
        };
        for sink in &pipeline.sinks {
            connect(&sink.id, &sink.inputs, sink.buffer, ComponentKind::Sink, sink.component_type);
        }
        for transform in &pipeline.transforms {
            connect(
                &transform.id,
                &transform.inputs,
                BufferOptions::default(),
                ComponentKind::Transform,
                transform.component_type,
            );
        }

        let mut fanout_for = |metrics: &ComponentMetrics, component: &str, output: Option<String>| {
            let reference = OutputRef { component: component.to_string(), output };
            Fanout::new(consumers.remove(&reference).unwrap_or_default(), metrics.discarded_intentional.clone())
        };

        let mut tasks = Vec::new();
        let register = |id: &str, kind: ComponentKind, component_type: &'static str| {
            (ComponentMetrics::register(id, kind, component_type), telemetry.health.register(id, kind, component_type))
        };

        let mut transform_parts = Vec::new();
        for transform in pipeline.transforms {
            let (metrics, health) = register(&transform.id, ComponentKind::Transform, transform.component_type);
            let mut outputs = TransformOutputs { default: None, named: Default::default(), metrics: metrics.clone() };
            for output in &transform.outputs {
                let fanout = fanout_for(&metrics, &transform.id, output.clone());
                match output {
                    None => outputs.default = Some(fanout),
                    Some(name) => {
                        outputs.named.insert(name.clone(), fanout);
                    }
                }
            }
            transform_parts.push((transform, metrics, health, outputs));
        }
        let mut source_parts = Vec::new();
        for source in pipeline.sources {
            let (metrics, health) = register(&source.id, ComponentKind::Source, source.component_type);
            let fanout = fanout_for(&metrics, &source.id, None);
            source_parts.push((source, metrics, health, fanout));
        }
        // Every sender now lives in a fanout; dropping the leftovers here means a
        // buffer closes exactly when its last upstream component finishes.
        drop(consumers);

        for sink in pipeline.sinks {
            let (metrics, health) = register(&sink.id, ComponentKind::Sink, sink.component_type);
            let input = receivers.remove(&sink.id).expect("every sink has a buffer");
            let cx = SinkContext {
                id: Arc::from(sink.id.as_str()),
                data_dir: data_dir.clone(),
                health: health.clone(),
                latency: telemetry.latency.recorder(&sink.id, sink.component_type),
                metrics,
                telemetry: telemetry.clone(),
            };
            let future = sink.sink.run(input, cx);
            tasks.push(spawn_component(sink.id, ComponentKind::Sink, health, future));
        }

        for (transform, metrics, health, outputs) in transform_parts {
            let input = receivers.remove(&transform.id).expect("every transform has a buffer");
            let cx = TransformContext {
                id: Arc::from(transform.id.as_str()),
                data_dir: data_dir.clone(),
                health: health.clone(),
                metrics,
            };
            let future = match transform.transform {
                Transform::Function(function) => Box::pin(run_function_transform(function, input, outputs, cx)),
                Transform::Task(task) => task.run(input, outputs, cx),
            };
            tasks.push(spawn_component(transform.id, ComponentKind::Transform, health, future));
        }

        let source_shutdown = CancellationToken::new();
        for (source, metrics, health, fanout) in source_parts {
            let cx = SourceContext {
                id: Arc::from(source.id.as_str()),
                output: SourceOutput::new(fanout, metrics.clone(), telemetry.clone()),
                shutdown: source_shutdown.child_token(),
                data_dir: data_dir.clone(),
                health: health.clone(),
                acks_pending: metrics.gauge("pipe_source_acks_pending", &[]),
                metrics,
                telemetry: telemetry.clone(),
            };
            let future = source.source.run(cx);
            tasks.push(spawn_component(source.id, ComponentKind::Source, health, future));
        }

        RunningTopology { tasks, source_shutdown, telemetry }
    }

    /// Resolves when every component has finished on its own (all sources
    /// were finite and everything drained).
    /// Cancel-safe: an outcome is recorded as soon as its task is awaited.
    pub async fn finished(&mut self) {
        for task in &mut self.tasks {
            if task.outcome.is_none() {
                task.outcome = Some((&mut task.handle).await.unwrap_or(false));
            }
        }
    }

    /// Stops the sources, lets everything drain, and waits up to `deadline`.
    pub async fn stop(self, deadline: Duration) -> StopReport {
        self.telemetry.health.set_shutting_down(true);
        self.source_shutdown.cancel();
        let deadline = tokio::time::Instant::now() + deadline;
        let mut report = StopReport { failed: Vec::new(), forced: Vec::new() };
        // Sources first, then transforms, then sinks: the order data drains in.
        let mut tasks = self.tasks;
        tasks.sort_by_key(|task| match task.kind {
            ComponentKind::Source => 0,
            ComponentKind::Transform => 1,
            ComponentKind::Sink => 2,
        });
        for mut task in tasks {
            let outcome = match task.outcome {
                Some(outcome) => Ok(outcome),
                None => tokio::time::timeout_at(deadline, &mut task.handle).await.map(|joined| joined.unwrap_or(false)),
            };
            match outcome {
                Ok(true) => {}
                Ok(false) => report.failed.push(task.id),
                Err(_) => {
                    task.handle.abort();
                    tracing::error!(component = %task.id, kind = %task.kind, "did not finish before shutdown_timeout; forced to stop, its in-flight events will be read again after restart");
                    report.forced.push(task.id);
                }
            }
        }
        report
    }
}

/// Spawns a component future; the task returns whether it ended cleanly.
fn spawn_component(
    id: String,
    kind: ComponentKind,
    health: ComponentHealth,
    future: super::component::ComponentFuture,
) -> ComponentTask {
    let task_id = id.clone();
    let handle = tokio::spawn(async move {
        health.running();
        match future.await {
            Ok(()) => {
                health.stopped();
                tracing::debug!(component = %task_id, %kind, "finished");
                true
            }
            Err(error) => {
                tracing::error!(component = %task_id, %kind, error = %error, "component failed");
                health.failed(error.message);
                false
            }
        }
    });
    ComponentTask { id, kind, handle, outcome: None }
}

async fn run_function_transform(
    mut function: Box<dyn super::component::FunctionTransform>,
    mut input: BufferReceiver,
    mut outputs: TransformOutputs,
    cx: TransformContext,
) -> Result<(), super::component::ComponentError> {
    while let Some(batch) = input.recv().await {
        cx.metrics.received_events.increment(batch.len() as u64);
        cx.metrics.received_bytes.increment(batch.iter().map(|event| event.byte_size()).sum::<usize>() as u64);
        let mut buffer = TransformOutputBuffer::default();
        function.transform(batch, &mut buffer);
        outputs.send(buffer).await;
    }
    Ok(())
}
