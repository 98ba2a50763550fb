//! Decode throughput of the `sls` source's hot path on one core: a PullLogs
//! body of 1000 demo log groups (LZ4 block, as the service sends it) →
//! decompress → protobuf (zero-copy `Bytes` fields) → one flattened
//! `LogEvent` per log with its finalizer. The body is built with the SLS
//! emulator's encoder, which shares no code with the source.
//!
//! Flattening defers each event's field map (see `event::DeferredFields`):
//! `lz4_decode_flatten` is what the source does per pull, and
//! `lz4_decode_flatten_build` adds building every event's map, what a
//! pipeline pays when a transform or sink reads arbitrary fields.
//!
//! MB/s are raw log bytes (`DemoLog::raw_size`: key and value text, as SLS
//! counts them). The stated figure for the source is at least 400 MB/s per
//! core for `lz4_decode_flatten`.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pipe::event::{BatchNotifier, BatchStatusReceiver, LogEvent};
use pipe::sources::sls::proto::{attach_finalizers, batch_metadata, decode_pull, decompress, Compression};

#[path = "support/sls_pull.rs"]
mod sls_pull;
use sls_pull::{demo_pull, PullBody};

/// The allocator the `pipe` binary uses, so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const LOG_GROUPS: usize = 1000;
const LOGS_PER_GROUP: usize = 10;

fn pull_body() -> PullBody {
    demo_pull(LOG_GROUPS, LOGS_PER_GROUP)
}

fn decode(c: &mut Criterion) {
    // The binary's memory settings, so the figures are the binary's.
    pipe::memory::tune();
    let body = pull_body();
    let source: Arc<str> = Arc::from("sls");
    let partition: Arc<str> = Arc::from("bench-logs/0");
    eprintln!(
        "body: {} log groups, {} logs, {} raw log bytes, {} protobuf bytes, {} lz4 bytes",
        LOG_GROUPS,
        LOG_GROUPS * LOGS_PER_GROUP,
        body.raw_log_bytes,
        body.raw.len(),
        body.compressed.len()
    );

    report_cpu_time_throughput(&body, &source, &partition);

    let mut group = c.benchmark_group("sls_decode");
    group.throughput(Throughput::Bytes(body.raw_log_bytes));
    // The events are dropped outside the measurement: in a pipeline the
    // sink drops them, on another task.
    for (name, build_fields) in [("lz4_decode_flatten", false), ("lz4_decode_flatten_build", true)] {
        group.bench_function(name, |bench| {
            bench.iter_with_large_drop(|| flatten_pull(&body, &source, &partition, build_fields))
        });
    }
    group.bench_function("decode_flatten_uncompressed", |bench| {
        bench.iter_with_large_drop(|| {
            let mut events = Vec::with_capacity(LOG_GROUPS * LOGS_PER_GROUP);
            let metadata = batch_metadata(&source, &partition);
            decode_pull(body.raw.clone(), &Compression::None, body.raw.len(), LOG_GROUPS, &metadata, &mut events)
                .expect("valid body");
            events
        })
    });
    group.bench_function("lz4_decode_only", |bench| {
        bench.iter(|| decompress(body.compressed.clone(), &Compression::Lz4, body.raw.len()).expect("valid body").len())
    });
    group.finish();
}

/// One pull as the source handles it: LZ4 and protobuf, one event per log
/// with a finalizer share of the pull's notifier; with `build_fields`, every
/// event's map built as well. Returned whole so the caller drops it
/// outside the measurement.
fn flatten_pull(
    body: &PullBody,
    source: &Arc<str>,
    partition: &Arc<str>,
    build_fields: bool,
) -> (Vec<LogEvent>, Arc<BatchNotifier>, BatchStatusReceiver) {
    let mut events = Vec::with_capacity(LOG_GROUPS * LOGS_PER_GROUP);
    let metadata = batch_metadata(source, partition);
    decode_pull(body.compressed.clone(), &Compression::Lz4, body.raw.len(), LOG_GROUPS, &metadata, &mut events)
        .expect("valid body");
    let (notifier, status) = BatchNotifier::new_with_receiver();
    attach_finalizers(&mut events, &notifier);
    if build_fields {
        for event in &events {
            std::hint::black_box(event.fields());
        }
    }
    (events, notifier, status)
}

/// This thread's CPU time, so the per-core figure holds on a machine shared
/// with other work, where criterion's wall-clock times include waiting for
/// a core.
fn thread_cpu_time() -> std::time::Duration {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `now` is a valid, writable timespec for the duration of the call.
    let result = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    assert_eq!(result, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    std::time::Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

fn report_cpu_time_throughput(body: &PullBody, source: &Arc<str>, partition: &Arc<str>) {
    const ROUNDS: u32 = 60;
    let measure = |build_fields: bool| {
        let mut measured = std::time::Duration::ZERO;
        for _ in 0..ROUNDS {
            let started = thread_cpu_time();
            let pull = flatten_pull(body, source, partition, build_fields);
            measured += thread_cpu_time() - started;
            drop(pull);
        }
        measured
    };
    let mut decode_only = std::time::Duration::ZERO;
    for _ in 0..ROUNDS {
        let started = thread_cpu_time();
        let raw = decompress(body.compressed.clone(), &Compression::Lz4, body.raw.len()).expect("valid body");
        decode_only += thread_cpu_time() - started;
        drop(raw);
    }
    eprintln!(
        "lz4_decode_only CPU time: {:.0} MB/s of raw log bytes per core ({:.2} ms per pull)",
        (body.raw_log_bytes * u64::from(ROUNDS)) as f64 / decode_only.as_secs_f64() / 1e6,
        decode_only.as_secs_f64() * 1e3 / f64::from(ROUNDS)
    );
    for (name, build_fields) in [("lz4_decode_flatten", false), ("lz4_decode_flatten_build", true)] {
        let seconds = measure(build_fields).as_secs_f64();
        eprintln!(
            "{name} CPU time: {:.0} MB/s of raw log bytes per core ({:.2} ms per pull of {} logs)",
            (body.raw_log_bytes * u64::from(ROUNDS)) as f64 / seconds / 1e6,
            seconds * 1e3 / f64::from(ROUNDS),
            LOG_GROUPS * LOGS_PER_GROUP
        );
    }
}

criterion_group!(benches, decode);
criterion_main!(benches);
