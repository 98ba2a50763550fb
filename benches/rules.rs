//! Rule engine benchmarks: frequency rule over 10 000 query keys, and the
//! whole `rules` transform on demo events.
//!
//! Target: at least 1 M events/s per core for a frequency rule with 10 000
//! keys. Events carry five fields; the ISO variant parses `@timestamp`
//! strings, the SLS variant `__time__` digit strings (timestamp_type unix).
//! Timestamps advance 1 ms per event, so each measured batch also crosses
//! run boundaries (housekeeping over all keys). A counting allocator reports
//! the heap held per tracked key once per run.
//!
//! `rules_transform` measures CPU time of the benchmark thread (see
//! `support/cpu_time.rs`) in MB/s of raw demo log bytes (key + value text,
//! as SLS counts them): `process_batch` is the transform's per-batch work
//! (engine, alerter, alert events) without channels; the topology variant
//! runs demo → rules → blackhole on a current-thread runtime, so the figure
//! includes generating the demo logs and is per core.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicIsize, Ordering};

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use pipe::config::graph::{BuiltPipeline, BuiltSink, BuiltSource, BuiltTransform, OutputRef};
use pipe::config::GlobalOptions;
use pipe::event::{EventMetadata, LogEvent, Str, Value};
use pipe::observability::Telemetry;
use pipe::rules::{parse_rule_yaml, RuleDefinition, RuleEngine};
use pipe::sinks::blackhole::BlackholeSink;
use pipe::sources::demo::{demo_log_fields, DemoSourceConfig};
use pipe::topology::buffer::BufferOptions;
use pipe::topology::{BuildContext, RunningTopology};
use pipe::transforms::rules::RulesConfig;
use pipe_demo_logs::DemoLogGenerator;

#[path = "support/cpu_time.rs"]
mod cpu_time;
use cpu_time::ThreadCpuTime;

struct CountingAllocator;

static HEAP_BYTES: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to mimalloc (the binary's allocator) and only adds bookkeeping.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        HEAP_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { mimalloc::MiMalloc.alloc(layout) }
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        HEAP_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { mimalloc::MiMalloc.dealloc(pointer, layout) }
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        HEAP_BYTES.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        unsafe { mimalloc::MiMalloc.realloc(pointer, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

const KEYS: usize = 10_000;
const EVENTS_PER_ITERATION: usize = 100_000;
const BATCH: usize = 1_000;
/// 2024-01-01T00:00:00Z.
const BASE_SECONDS: i64 = 1_704_067_200;

fn frequency_engine(timestamp: &str) -> RuleEngine {
    let yaml = format!(
        "name: bench\ntype: frequency\nnum_events: 1000\ntimeframe: {{minutes: 1}}\nquery_key: host\nrun_every: {{seconds: 10}}\nmax_tracked_keys: 20000\n{timestamp}"
    );
    RuleEngine::new(vec![RuleDefinition::from_config(parse_rule_yaml(&yaml, "bench").unwrap()).unwrap()]).unwrap()
}

/// Events built the way sources decode them: every string of a batch is a
/// slice of one shared read buffer (`Str` over `Bytes`), so copying a field
/// value bumps a reference count instead of allocating.
fn events(sls_time: bool, offset_ms: i64) -> Vec<Vec<LogEvent>> {
    (0..EVENTS_PER_ITERATION / BATCH)
        .map(|batch_index| {
            let mut buffer = String::new();
            let mut layout: Vec<Vec<(&'static str, std::ops::Range<usize>)>> = Vec::with_capacity(BATCH);
            for in_batch in 0..BATCH {
                let index = batch_index * BATCH + in_batch;
                let millis = offset_ms + index as i64;
                let (time_field, time_text) = if sls_time {
                    ("__time__", (BASE_SECONDS + millis / 1000).to_string())
                } else {
                    let stamp = chrono::DateTime::from_timestamp_millis(BASE_SECONDS * 1000 + millis).unwrap();
                    ("@timestamp", stamp.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                };
                let host = format!("host-{:05}", (index * 7919) % KEYS);
                let mut fields = Vec::new();
                for (name, text) in [
                    (time_field, time_text.as_str()),
                    ("host", host.as_str()),
                    ("level", "INFO"),
                    ("service", "checkout"),
                    ("message", "request served in 12 ms"),
                ] {
                    let start = buffer.len();
                    buffer.push_str(text);
                    fields.push((name, start..buffer.len()));
                }
                layout.push(fields);
            }
            let shared = bytes::Bytes::from(buffer);
            layout
                .into_iter()
                .map(|fields| {
                    let mut map = pipe::event::object_map_with_capacity(fields.len());
                    for (name, range) in fields {
                        let text = Str::from_utf8(shared.slice(range)).unwrap();
                        map.insert(name.into(), Value::String(text));
                    }
                    LogEvent::from_fields("bench", map)
                })
                .collect()
        })
        .collect()
}

fn bench_frequency(criterion: &mut Criterion) {
    // The binary's memory settings, so the figures are the binary's.
    pipe::memory::tune();
    let mut group = criterion.benchmark_group("rules_frequency_10k_keys");
    group.throughput(Throughput::Elements(EVENTS_PER_ITERATION as u64));
    group.sample_size(20);
    for (name, sls_time, timestamp_config) in
        [("iso_timestamp", false, ""), ("sls_unix_time", true, "timestamp_field: __time__\ntimestamp_type: unix\n")]
    {
        let warm = events(sls_time, 0);
        let measured = events(sls_time, EVENTS_PER_ITERATION as i64);
        group.bench_function(name, |bencher| {
            bencher.iter_batched(
                || {
                    let mut engine = frequency_engine(timestamp_config);
                    for batch in &warm {
                        engine.add_events(batch);
                    }
                    engine
                },
                |mut engine| {
                    let mut matches = Vec::new();
                    for batch in &measured {
                        engine.add_events_into(batch, &mut matches);
                    }
                    (engine, matches)
                },
                BatchSize::LargeInput,
            );
        });
        report_memory_per_key(name, timestamp_config, &warm);
        report_cpu_throughput(name, timestamp_config, &warm, &measured);
    }
    group.finish();
}

fn report_memory_per_key(name: &str, timestamp_config: &str, warm: &[Vec<LogEvent>]) {
    let before = HEAP_BYTES.load(Ordering::Relaxed);
    let mut engine = frequency_engine(timestamp_config);
    for batch in warm {
        engine.add_events(batch);
    }
    let after = HEAP_BYTES.load(Ordering::Relaxed);
    let keys = engine.stats()[0].tracked_keys.max(1);
    eprintln!(
        "{name}: {keys} tracked keys hold {} bytes of heap, {} bytes per key",
        after - before,
        (after - before) / keys as isize
    );
    drop(engine);
}

/// Nanoseconds this thread has spent on a CPU (Linux schedstat), so the
/// figure holds on a machine shared with other work, where wall time does
/// not.
fn thread_cpu_nanos() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

fn report_cpu_throughput(name: &str, timestamp_config: &str, warm: &[Vec<LogEvent>], measured: &[Vec<LogEvent>]) {
    const ROUNDS: usize = 5;
    let mut cpu_nanos = 0u64;
    for _ in 0..ROUNDS {
        let mut engine = frequency_engine(timestamp_config);
        for batch in warm {
            engine.add_events(batch);
        }
        let mut matches = Vec::new();
        let Some(before) = thread_cpu_nanos() else { return };
        for batch in measured {
            engine.add_events_into(batch, &mut matches);
        }
        let Some(after) = thread_cpu_nanos() else { return };
        cpu_nanos += after - before;
        std::hint::black_box(&matches);
    }
    let events = (ROUNDS * EVENTS_PER_ITERATION) as f64;
    eprintln!(
        "{name}: {:.0} events per CPU second ({:.0} ns of CPU per event)",
        events / (cpu_nanos as f64 / 1e9),
        cpu_nanos as f64 / events
    );
}

/// The seed rule: the query_string filter ElastAlert users run.
const SEED_RULE: &str = r#"
[[rule]]
name = "exceptions"
type = "any"
timestamp_field = "__time__"
timestamp_type = "unix"
filter = [{ query = { query_string = { query = "message:'Traceback' OR message:*Exception* OR source:*Defend*" } } }]
"#;

/// A per-host frequency and a per-host flatline rule, seeing every event.
const HOST_RULES: &str = r#"
[[rule]]
name = "busy host"
type = "frequency"
num_events = 500
timeframe = "1m"
run_every = "10s"
query_key = "host"
timestamp_field = "__time__"
timestamp_type = "unix"

[[rule]]
name = "quiet host"
type = "flatline"
threshold = 1
timeframe = "5m"
query_key = "host"
timestamp_field = "__time__"
timestamp_type = "unix"
"#;

const TRANSFORM_EVENTS: usize = 20_000;
const TRANSFORM_BATCH: usize = 500;

fn rules_config(rules: &str) -> RulesConfig {
    toml::from_str(rules).unwrap()
}

fn build_context(id: &str) -> BuildContext {
    BuildContext { id: id.to_string(), data_dir: "data".into() }
}

/// Demo events at 1 000 per second of event time, with their raw size.
fn demo_batches() -> (Vec<Vec<LogEvent>>, u64) {
    let mut generator = DemoLogGenerator::new(7);
    let source: Arc<str> = Arc::from("demo");
    let mut bytes = 0;
    let events: Vec<LogEvent> = (0..TRANSFORM_EVENTS)
        .map(|index| {
            let log = generator.next_log(BASE_SECONDS as u32 + (index / 1000) as u32);
            bytes += log.raw_size() as u64;
            LogEvent::new(demo_log_fields(&log), EventMetadata::new(Arc::clone(&source), log.raw_size()))
        })
        .collect();
    (events.chunks(TRANSFORM_BATCH).map(<[LogEvent]>::to_vec).collect(), bytes)
}

fn bench_transform(criterion: &mut Criterion<ThreadCpuTime>) {
    // The binary's memory settings, so the figures are the binary's.
    pipe::memory::tune();
    let (batches, bytes) = demo_batches();
    let mut group = criterion.benchmark_group("rules_transform");
    group.throughput(Throughput::Bytes(bytes));
    group.sample_size(20);
    let now = chrono::DateTime::from_timestamp(BASE_SECONDS + 30, 0).unwrap();
    let three_rules = format!("{SEED_RULE}{HOST_RULES}");
    for (name, rules) in [("process_batch_seed_rule", SEED_RULE), ("process_batch_three_rules", three_rules.as_str())] {
        let mut transform = rules_config(rules).build_rules(&build_context("rules")).unwrap();
        group.bench_function(name, |bencher| {
            bencher.iter_batched(
                || batches.clone(),
                |batches| {
                    let mut alerts = 0;
                    for batch in batches {
                        alerts += transform.process_batch(&batch, now, "rules").len();
                        for event in batch {
                            event.settle(pipe::event::BatchStatus::Delivered);
                        }
                    }
                    alerts
                },
                BatchSize::LargeInput,
            )
        });
    }

    const TOPOLOGY_EVENTS: u64 = 100_000;
    let topology_bytes: u64 = {
        let mut generator = DemoLogGenerator::new(1);
        (0..TOPOLOGY_EVENTS).map(|_| generator.next_log(1_700_000_000).raw_size() as u64).sum()
    };
    group.throughput(Throughput::Bytes(topology_bytes));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    for (name, with_rules) in [("topology_demo_blackhole_baseline", false), ("topology_demo_rules_blackhole", true)] {
        group.bench_function(name, |bencher| {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            bencher.iter_custom(|iterations| {
                let mut total = 0;
                for _ in 0..iterations {
                    let demo = DemoSourceConfig { rate: None, count: Some(TOPOLOGY_EVENTS), seed: 1, batch_size: 500 };
                    let mut transforms = Vec::new();
                    let mut sink_input = "demo";
                    if with_rules {
                        transforms.push(BuiltTransform {
                            id: "rules".into(),
                            component_type: "rules",
                            inputs: vec![OutputRef { component: "demo".into(), output: None }],
                            outputs: vec![None],
                            transform: rules_config(&three_rules).build(&build_context("rules")).unwrap(),
                        });
                        sink_input = "rules";
                    }
                    let pipeline = BuiltPipeline {
                        global: GlobalOptions::default(),
                        sources: vec![BuiltSource {
                            id: "demo".into(),
                            component_type: "demo",
                            source: demo.build(&build_context("demo")).unwrap(),
                        }],
                        transforms,
                        sinks: vec![BuiltSink {
                            id: "out".into(),
                            component_type: "blackhole",
                            inputs: vec![OutputRef { component: sink_input.into(), output: None }],
                            buffer: BufferOptions::default(),
                            sink: Box::new(BlackholeSink),
                        }],
                        warnings: vec![],
                    };
                    let started = cpu_time::thread_cpu_nanos();
                    runtime.block_on(async {
                        let mut topology = RunningTopology::start(pipeline, Telemetry::default());
                        topology.finished().await;
                        assert!(topology.stop(Duration::from_secs(5)).await.is_clean());
                    });
                    total += cpu_time::thread_cpu_nanos() - started;
                }
                total
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_frequency);
criterion_group! {
    name = transform_benches;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = bench_transform
}
criterion_main!(benches, transform_benches);
