//! Real topologies built in-process: backpressure and fan-out acknowledgement.
//! The test components below are ordinary `Source`/`Sink` implementations
//! wired by the real topology; nothing of pipe is mocked.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pipe::config::graph::{BuiltPipeline, BuiltSink, BuiltSource, OutputRef};
use pipe::config::GlobalOptions;
use pipe::event::{
    BatchNotifier, BatchStatus, BatchStatusReceiver, EventFinalizer, EventMetadata, LogEvent, ObjectMap,
};
use pipe::observability::Telemetry;
use pipe::sinks::blackhole::BlackholeSink;
use pipe::sources::demo::DemoSourceConfig;
use pipe::topology::buffer::{BufferOptions, BufferReceiver, WhenFull};
use pipe::topology::{
    BuildContext, ComponentError, ComponentFuture, RunningTopology, Sink, SinkContext, Source, SourceContext,
};
use tokio::sync::{mpsc, oneshot};

use super::support::wait_for;

fn input(component: &str) -> Vec<OutputRef> {
    vec![OutputRef { component: component.to_string(), output: None }]
}

/// A sink that takes batches off its input and never settles them.
struct StuckSink {
    taken: Arc<AtomicUsize>,
}

impl Sink for StuckSink {
    fn run(self: Box<Self>, mut input: BufferReceiver, _cx: SinkContext) -> ComponentFuture {
        Box::pin(async move {
            let mut held = Vec::new();
            // Take one batch, then stop reading: the buffer stays full.
            if let Some(batch) = input.recv().await {
                self.taken.fetch_add(batch.len(), Ordering::SeqCst);
                held.push(batch);
            }
            std::future::pending::<()>().await;
            drop(held);
            Ok(())
        })
    }
}

// Paused time: the runtime only advances the clock when every task is idle,
// so the sleep below returns exactly when the source can make no progress.
#[tokio::test(start_paused = true)]
async fn a_sink_that_never_completes_stops_the_source_within_the_buffer_capacity() {
    const CAPACITY: usize = 300;
    const BATCH: usize = 50;
    let demo = DemoSourceConfig { rate: None, count: None, seed: 1, batch_size: BATCH };
    let taken = Arc::new(AtomicUsize::new(0));
    let pipeline = BuiltPipeline {
        global: GlobalOptions::default(),
        sources: vec![BuiltSource {
            id: "demo".into(),
            component_type: "demo",
            source: demo.build(&BuildContext { id: "demo".into(), data_dir: "data".into() }).unwrap(),
        }],
        transforms: vec![],
        sinks: vec![BuiltSink {
            id: "stuck".into(),
            component_type: "test",
            inputs: input("demo"),
            buffer: BufferOptions { max_events: CAPACITY, when_full: WhenFull::Block },
            sink: Box::new(StuckSink { taken: Arc::clone(&taken) }),
        }],
        warnings: vec![],
    };
    let telemetry = Telemetry::default();
    let topology = RunningTopology::start(pipeline, telemetry.clone());
    // One batch taken by the sink, the buffer full, one batch blocked in send.
    let limit = (CAPACITY + 2 * BATCH) as u64;
    wait_for("the buffer to fill", || (telemetry.progress.totals().0 >= CAPACITY as u64).then_some(())).await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    let produced = telemetry.progress.totals().0;
    assert!(
        produced <= limit,
        "the source produced {produced} events with {CAPACITY} buffered and {} taken",
        taken.load(Ordering::SeqCst)
    );
    assert_eq!(taken.load(Ordering::SeqCst), BATCH);
    let report = topology.stop(Duration::from_millis(200)).await;
    assert_eq!(
        report.forced,
        vec!["demo".to_string(), "stuck".to_string()],
        "a stuck sink must be named at the deadline"
    );
}

/// A source that emits the batches the test hands it, each with its own finalizer.
struct HandFedSource {
    batches: mpsc::Receiver<(usize, oneshot::Sender<BatchStatusReceiver>)>,
}

impl Source for HandFedSource {
    fn run(mut self: Box<Self>, mut cx: SourceContext) -> ComponentFuture {
        Box::pin(async move {
            while let Some((events, reply)) = self.batches.recv().await {
                let (notifier, status) = BatchNotifier::new_with_receiver();
                let batch = (0..events)
                    .map(|_| {
                        LogEvent::new(ObjectMap::default(), EventMetadata::new(Arc::clone(&cx.id), 10))
                            .with_finalizer(EventFinalizer::new(Arc::clone(&notifier)))
                    })
                    .collect();
                drop(notifier);
                cx.output.send(batch).await;
                let _ = reply.send(status);
            }
            Ok::<(), ComponentError>(())
        })
    }
}

/// A sink that hands every batch to the test, which settles it.
struct GateSink {
    batches: mpsc::UnboundedSender<Vec<LogEvent>>,
}

impl Sink for GateSink {
    fn run(self: Box<Self>, mut input: BufferReceiver, _cx: SinkContext) -> ComponentFuture {
        Box::pin(async move {
            while let Some(batch) = input.recv().await {
                let _ = self.batches.send(batch);
            }
            Ok(())
        })
    }
}

/// Asks the hand-fed source for a batch of N events and gets its status back.
type BatchFeed = mpsc::Sender<(usize, oneshot::Sender<BatchStatusReceiver>)>;

fn fan_out_pipeline() -> (RunningTopology, BatchFeed, mpsc::UnboundedReceiver<Vec<LogEvent>>) {
    let (feed, batches) = mpsc::channel(1);
    let (gate, gated) = mpsc::unbounded_channel();
    let pipeline = BuiltPipeline {
        global: GlobalOptions::default(),
        sources: vec![BuiltSource {
            id: "hand".into(),
            component_type: "test",
            source: Box::new(HandFedSource { batches }),
        }],
        transforms: vec![],
        sinks: vec![
            BuiltSink {
                id: "fast".into(),
                component_type: "blackhole",
                inputs: input("hand"),
                buffer: BufferOptions::default(),
                sink: Box::new(BlackholeSink),
            },
            BuiltSink {
                id: "gate".into(),
                component_type: "test",
                inputs: input("hand"),
                buffer: BufferOptions::default(),
                sink: Box::new(GateSink { batches: gate }),
            },
        ],
        warnings: vec![],
    };
    (RunningTopology::start(pipeline, Telemetry::default()), feed, gated)
}

#[tokio::test]
async fn fan_out_resolves_only_when_every_sink_settled_with_the_worst_status() {
    let (topology, feed, mut gated) = fan_out_pipeline();

    let (reply, status) = oneshot::channel();
    feed.send((3, reply)).await.unwrap();
    let mut status = status.await.unwrap();
    let held = gated.recv().await.unwrap();
    assert_eq!(held.len(), 3);
    // The blackhole settled its copies; the gate still holds the others.
    assert!(
        tokio::time::timeout(Duration::from_millis(100), &mut status).await.is_err(),
        "resolved before every sink settled"
    );
    for event in held {
        event.settle(BatchStatus::Delivered);
    }
    assert_eq!(status.await, BatchStatus::Delivered);

    let (reply, status) = oneshot::channel();
    feed.send((2, reply)).await.unwrap();
    let status = status.await.unwrap();
    let mut held = gated.recv().await.unwrap();
    held.pop().unwrap().settle(BatchStatus::Errored);
    for event in held {
        event.settle(BatchStatus::Delivered);
    }
    assert_eq!(status.await, BatchStatus::Errored, "one errored copy makes the batch errored");

    drop(feed);
    let report = topology.stop(Duration::from_secs(5)).await;
    assert!(report.is_clean(), "{report:?}");
}
