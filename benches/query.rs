//! Matcher throughput: the seed ElastAlert filter
//! (`message:'Traceback' OR message:*Exception* OR source:*Defend*`) over
//! demo events, reported as events per second on one core.
//!
//! The stated target is at least 2 million events/s per core. Events are
//! built once, outside the timed loop, the way the `demo` source shapes SLS
//! logs: one string field per content pair plus `__topic__`, `__source__`
//! and `__time__`.
//!
//! Time is the benchmark thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), not
//! wall time: the build machine is shared, and wall time would count the
//! periods other processes hold the core. Two event sets are measured: a
//! batch of `BATCH_EVENTS` (a few hundred KiB, cache-resident, like a batch a
//! transform receives right after the source decoded it) and `COLD_EVENTS`
//! (several MiB, so field lookups mostly miss the cache).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pipe::event::{object_map_with_capacity, LogEvent, Value};
use pipe::query::{Query, QueryOptions};
use pipe_demo_logs::DemoLogGenerator;
use serde_json::json;

#[path = "support/cpu_time.rs"]
mod cpu_time;
use cpu_time::ThreadCpuTime;

/// The allocator the `pipe` binary uses, so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One batch as a transform sees it; large enough that the demo mix (about
/// 4% of events over 1 KiB) is represented.
const BATCH_EVENTS: usize = 512;

/// A working set far larger than the L2 cache.
const COLD_EVENTS: usize = 10_000;

fn demo_events(count: usize) -> Vec<LogEvent> {
    let mut generator = DemoLogGenerator::new(7);
    (0..count)
        .map(|_| {
            let log = generator.next_log(1_700_000_000);
            let mut fields = object_map_with_capacity(log.contents.len() + 3);
            for (key, value) in &log.contents {
                fields.insert(key.as_str().into(), Value::from(value.as_str()));
            }
            fields.insert("__topic__".into(), Value::from(log.topic.as_str()));
            fields.insert("__source__".into(), Value::from(log.source.as_str()));
            fields.insert("__time__".into(), Value::from(log.time.to_string()));
            LogEvent::from_fields("demo", fields)
        })
        .collect()
}

fn count_matches(query: &Query, events: &[LogEvent]) -> usize {
    events.iter().filter(|event| query.matches(event)).count()
}

fn matcher_throughput(criterion: &mut Criterion<ThreadCpuTime>) {
    // The binary's memory settings, so the figures are the binary's.
    pipe::memory::tune();
    let batch = demo_events(BATCH_EVENTS);
    let cold = demo_events(COLD_EVENTS);
    let options = QueryOptions::default();
    let seed = Query::from_filter_list(
        &[json!({"query": [{"query_string": {"query": "message:'Traceback' OR message:*Exception* OR source:*Defend*"}}]})],
        &options,
    )
    .expect("the seed filter compiles");
    let routing = Query::from_dsl(
        &json!({"bool": {
            "must": [{"query_string": {"query": "host:(wallet OR api OR admin) AND NOT host:qa"}}],
            "should": [{"match": {"level": "ERROR"}}, {"range": {"__time__": {"gte": "now-1h"}}}],
            "minimum_should_match": 1
        }}),
        &options,
    )
    .expect("the routing filter compiles");

    for (name, events) in [("batch", &batch), ("cold", &cold)] {
        let mut group = criterion.benchmark_group(format!("query_matcher_{name}"));
        group.throughput(Throughput::Elements(events.len() as u64));
        group.bench_function("seed_filter", |bencher| {
            bencher.iter(|| count_matches(black_box(&seed), black_box(events)))
        });
        group.bench_function("routing_bool", |bencher| {
            bencher.iter(|| count_matches(black_box(&routing), black_box(events)))
        });
        group.finish();
    }

    criterion.bench_function("compile_seed_filter", |bencher| {
        bencher.iter(|| {
            Query::parse_lucene(black_box("message:'Traceback' OR message:*Exception* OR source:*Defend*"), &options)
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = matcher_throughput
}
criterion_main!(benches);
