//! Throughput of the core transforms and of a whole in-process topology on
//! demo-shaped events. Figures go to BENCHMARKS.md.
//!
//! MB/s are raw log bytes (the demo log's key + value text, as SLS counts
//! them), per CPU-second of the benchmark thread (see `support/cpu_time.rs`).
//! The topology bench runs on a current-thread runtime, so every component
//! runs on that thread and the figure is per core.

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pipe::config::graph::{BuiltPipeline, BuiltSink, BuiltSource, BuiltTransform, OutputRef};
use pipe::config::GlobalOptions;
use pipe::event::{EventMetadata, LogEvent};
use pipe::observability::Telemetry;
use pipe::sinks::blackhole::BlackholeSink;
use pipe::sources::demo::{demo_log_fields, DemoSourceConfig};
use pipe::topology::buffer::BufferOptions;
use pipe::topology::{BuildContext, RunningTopology};
use pipe::transforms::json_expand::JsonExpandConfig;
use pipe::transforms::truncate::{LengthUnit, TruncateConfig};
use pipe_demo_logs::DemoLogGenerator;

#[path = "support/cpu_time.rs"]
mod cpu_time;
use cpu_time::{thread_cpu_nanos, ThreadCpuTime};

/// The allocator the `pipe` binary uses, so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn demo_events(count: usize) -> (Vec<LogEvent>, u64) {
    let mut generator = DemoLogGenerator::new(7);
    let source: Arc<str> = Arc::from("demo");
    let mut bytes = 0;
    let events = (0..count)
        .map(|_| {
            let log = generator.next_log(1_700_000_000);
            bytes += log.raw_size() as u64;
            LogEvent::new(demo_log_fields(&log), EventMetadata::new(Arc::clone(&source), log.raw_size()))
        })
        .collect();
    (events, bytes)
}

fn build_context(id: &str) -> BuildContext {
    BuildContext { id: id.to_string(), data_dir: "data".into() }
}

fn json_expand_config() -> JsonExpandConfig {
    JsonExpandConfig {
        fields: vec!["event".into()],
        topics: Some(vec!["actiontrail_audit_event".into()]),
        topic_field: "__topic__".into(),
    }
}

fn truncate_config() -> TruncateConfig {
    TruncateConfig {
        fields: [("message".to_string(), 1024)].into(),
        unit: LengthUnit::Characters,
        suffix: "...".into(),
    }
}

fn transforms(c: &mut Criterion<ThreadCpuTime>) {
    // The binary's memory settings, so the figures are the binary's.
    pipe::memory::tune();
    let (events, bytes) = demo_events(10_000);
    let mut group = c.benchmark_group("transforms");
    group.throughput(Throughput::Bytes(bytes));
    let expander = json_expand_config().build_expander(&build_context("expand")).unwrap();
    group.bench_function("json_expand", |b| {
        b.iter_batched_ref(
            || events.clone(),
            |events| {
                for event in events.iter_mut() {
                    expander.expand(event);
                }
            },
            criterion::BatchSize::LargeInput,
        )
    });
    let truncator = truncate_config().build_truncator(&build_context("truncate")).unwrap();
    group.bench_function("truncate", |b| {
        b.iter_batched_ref(
            || events.clone(),
            |events| {
                for event in events.iter_mut() {
                    truncator.truncate(event);
                }
            },
            criterion::BatchSize::LargeInput,
        )
    });
    group.finish();
}

fn topology(c: &mut Criterion<ThreadCpuTime>) {
    // The binary's memory settings, so the figures are the binary's.
    pipe::memory::tune();
    const EVENTS: u64 = 100_000;
    let bytes: u64 = {
        let mut generator = DemoLogGenerator::new(1);
        (0..EVENTS).map(|_| generator.next_log(1_700_000_000).raw_size() as u64).sum()
    };
    let mut group = c.benchmark_group("topology");
    group.throughput(Throughput::Bytes(bytes));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.bench_function("demo_json_expand_truncate_blackhole", |b| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        b.iter_custom(|iterations| {
            let mut total = 0;
            for _ in 0..iterations {
                let demo = DemoSourceConfig { rate: None, count: Some(EVENTS), seed: 1, batch_size: 500 };
                let pipeline = BuiltPipeline {
                    global: GlobalOptions::default(),
                    sources: vec![BuiltSource {
                        id: "demo".into(),
                        component_type: "demo",
                        source: demo.build(&build_context("demo")).unwrap(),
                    }],
                    transforms: vec![
                        BuiltTransform {
                            id: "expand".into(),
                            component_type: "json_expand",
                            inputs: vec![OutputRef { component: "demo".into(), output: None }],
                            outputs: vec![None],
                            transform: json_expand_config().build(&build_context("expand")).unwrap(),
                        },
                        BuiltTransform {
                            id: "truncate".into(),
                            component_type: "truncate",
                            inputs: vec![OutputRef { component: "expand".into(), output: None }],
                            outputs: vec![None],
                            transform: truncate_config().build(&build_context("truncate")).unwrap(),
                        },
                    ],
                    sinks: vec![BuiltSink {
                        id: "out".into(),
                        component_type: "blackhole",
                        inputs: vec![OutputRef { component: "truncate".into(), output: None }],
                        buffer: BufferOptions::default(),
                        sink: Box::new(BlackholeSink),
                    }],
                    warnings: vec![],
                };
                let started = thread_cpu_nanos();
                runtime.block_on(async {
                    let mut topology = RunningTopology::start(pipeline, Telemetry::default());
                    topology.finished().await;
                    assert!(topology.stop(Duration::from_secs(5)).await.is_clean());
                });
                total += thread_cpu_nanos() - started;
            }
            total
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = transforms, topology
}
criterion_main!(benches);
