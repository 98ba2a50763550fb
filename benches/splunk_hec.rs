//! HEC encoding throughput: demo events to `/event` envelopes, with and
//! without gzip. Figures go to BENCHMARKS.md. The `sls_*` lines encode the
//! same kind of logs as they come out of an SLS pull (fields deferred, read
//! straight from the protobuf), which is what the SLS → Splunk process does.
//!
//! MB/s are raw log bytes (`LogEvent::byte_size`, the demo log's key and
//! value text, as SLS counts them), so the figure compares directly with
//! the source's and the topology's. Single-threaded, so the figure is per
//! core. Each bench runs twice: `splunk_hec` measures wall-clock time,
//! `splunk_hec_cpu` the thread's CPU time, which stays meaningful on a
//! machine shared with other work (there the wall-clock figure only shows
//! the share of a core the bench got).

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pipe::event::{EventMetadata, LogEvent};
use pipe::sinks::splunk_hec::encoder::{split_into_requests, Compression};
use pipe::sinks::splunk_hec::SplunkHecSinkConfig;
use pipe::sources::demo::demo_log_fields;
use pipe::sources::sls::proto::{batch_metadata, decode_pull, Compression as PullCompression};
use pipe_demo_logs::DemoLogGenerator;

#[path = "support/sls_pull.rs"]
mod sls_pull;
use sls_pull::demo_pull;

/// The allocator the `pipe` binary uses, so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EVENTS: usize = 10_000;
/// The sink's default `batch.max_bytes`.
const MAX_REQUEST_BYTES: usize = 1_000_000;

fn demo_events() -> (Vec<LogEvent>, u64) {
    let mut generator = DemoLogGenerator::new(7);
    let source: Arc<str> = Arc::from("demo");
    let events: Vec<LogEvent> = (0..EVENTS)
        .map(|_| {
            let log = generator.next_log(1_700_000_000);
            LogEvent::new(demo_log_fields(&log), EventMetadata::new(Arc::clone(&source), log.raw_size()))
        })
        .collect();
    let bytes = events.iter().map(LogEvent::byte_size).sum::<usize>() as u64;
    (events, bytes)
}

/// One SLS pull of `EVENTS` demo logs (1 000 groups of 10), flattened as
/// the source does: the events' fields stay deferred.
fn sls_pull_events() -> (Vec<LogEvent>, u64) {
    let pull = demo_pull(EVENTS / 10, 10);
    let mut events = Vec::with_capacity(EVENTS);
    let metadata = batch_metadata(&Arc::from("sls"), &Arc::from("bench-logs/0"));
    decode_pull(pull.raw.clone(), &PullCompression::None, pull.raw.len(), pull.log_groups, &metadata, &mut events)
        .expect("valid pull");
    assert!(events.iter().all(|event| event.unbuilt_fields().is_some()), "demo logs are deferred");
    let bytes = events.iter().map(LogEvent::byte_size).sum::<usize>() as u64;
    (events, bytes)
}

/// What the replaced consumer script sent: fixed index, source and
/// sourcetype, `time` from `__time__`, the rest as the event.
fn sink_config() -> SplunkHecSinkConfig {
    toml::from_str(
        r#"
endpoint = "https://splunk.example:8088"
token = "bench"
index = "sls"
source = "sls:consumer"
sourcetype = "_json"
"#,
    )
    .expect("bench config")
}

/// CPU time of the calling thread (`CLOCK_THREAD_CPUTIME_ID`), in the
/// same units and format as wall-clock time.
struct ThreadCpuTime {
    wall: WallTime,
}

fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `now` is a valid, writable timespec for the call's duration.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    assert_eq!(status, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

impl Measurement for ThreadCpuTime {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        thread_cpu_time()
    }
    fn end(&self, started: Duration) -> Duration {
        thread_cpu_time().saturating_sub(started)
    }
    fn add(&self, left: &Duration, right: &Duration) -> Duration {
        *left + *right
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        self.wall.formatter()
    }
}

fn encoding<M: Measurement>(c: &mut Criterion<M>, group_name: &str) {
    let encoder = sink_config().build_encoder().expect("encoder");
    let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let mut group = c.benchmark_group(group_name);
    for (prefix, (events, bytes)) in [("", demo_events()), ("sls_", sls_pull_events())] {
        let mut buffer = Vec::new();
        let encoding = encoder.encode_batch(&events, now, &mut buffer);
        let compressed: usize = split_into_requests(&buffer, &encoding, MAX_REQUEST_BYTES, Compression::Gzip)
            .iter()
            .map(|request| request.payload.len())
            .sum();
        eprintln!(
            "{group_name}/{prefix}: {EVENTS} demo events, {bytes} raw bytes, {} envelope bytes, {compressed} gzipped ({:.1}x)",
            buffer.len(),
            buffer.len() as f64 / compressed as f64
        );
        group.throughput(Throughput::Bytes(bytes));
        group.bench_function(format!("{prefix}encode_event_envelopes"), |b| {
            b.iter(|| {
                buffer.clear();
                let encoding = encoder.encode_batch(&events, now, &mut buffer);
                assert!(encoding.failures.is_empty());
                buffer.len()
            })
        });
        group.bench_function(format!("{prefix}encode_and_gzip_1mb_requests"), |b| {
            b.iter(|| {
                buffer.clear();
                let encoding = encoder.encode_batch(&events, now, &mut buffer);
                split_into_requests(&buffer, &encoding, MAX_REQUEST_BYTES, Compression::Gzip).len()
            })
        });
        if prefix == "sls_" {
            // gzip alone on the same bodies: pipe's own against zlib-rs at
            // level 1 (what the sink used before), one reused stream.
            let bodies: Vec<&[u8]> = buffer.chunks(MAX_REQUEST_BYTES).collect();
            group.bench_function("sls_gzip_only", |b| {
                b.iter(|| bodies.iter().map(|body| pipe::sinks::gzip::gzip(body).len()).sum::<usize>())
            });
            let mut stream = flate2::Compress::new_gzip(flate2::Compression::fast(), 15);
            group.bench_function("sls_gzip_only_zlib_rs_level_1", |b| {
                b.iter(|| bodies.iter().map(|body| zlib_rs_gzip(&mut stream, body).len()).sum::<usize>())
            });
        }
    }
    group.finish();
}

fn zlib_rs_gzip(stream: &mut flate2::Compress, body: &[u8]) -> Vec<u8> {
    stream.reset();
    let mut out = Vec::with_capacity(body.len() / 4 + 64);
    loop {
        let consumed = usize::try_from(stream.total_in()).expect("a body fits in memory");
        let status =
            stream.compress_vec(&body[consumed..], &mut out, flate2::FlushCompress::Finish).expect("in memory");
        if status == flate2::Status::StreamEnd {
            return out;
        }
        out.reserve(out.capacity().max(4096));
    }
}

fn wall_clock(c: &mut Criterion) {
    // The binary's memory settings, so the figures are the binary's.
    pipe::memory::tune();
    encoding(c, "splunk_hec");
}

fn cpu_time(c: &mut Criterion<ThreadCpuTime>) {
    // The binary's memory settings, so the figures are the binary's.
    pipe::memory::tune();
    encoding(c, "splunk_hec_cpu");
}

criterion_group!(wall_clock_benches, wall_clock);
criterion_group! {
    name = cpu_time_benches;
    config = Criterion::default().with_measurement(ThreadCpuTime { wall: WallTime });
    targets = cpu_time
}
criterion_main!(wall_clock_benches, cpu_time_benches);
