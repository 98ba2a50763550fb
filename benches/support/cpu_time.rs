//! Shared by the benches: criterion measures the benchmark thread's CPU time
//! (`CLOCK_THREAD_CPUTIME_ID`) instead of wall time, because the build machine
//! is shared and wall time would count the periods other processes hold the
//! core. With a current-thread runtime, everything a pipeline does runs on
//! that thread, so the figure is per core.

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::Throughput;

/// CPU time consumed by the calling thread.
pub struct ThreadCpuTime;

pub fn thread_cpu_nanos() -> u64 {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `now` is a valid, writable timespec for the duration of the call.
    let result = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    assert_eq!(result, 0, "CLOCK_THREAD_CPUTIME_ID is unavailable");
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

impl Measurement for ThreadCpuTime {
    type Intermediate = u64;
    type Value = u64;

    fn start(&self) -> u64 {
        thread_cpu_nanos()
    }

    fn end(&self, started: u64) -> u64 {
        thread_cpu_nanos().saturating_sub(started)
    }

    fn add(&self, first: &u64, second: &u64) -> u64 {
        first + second
    }

    fn zero(&self) -> u64 {
        0
    }

    fn to_f64(&self, value: &u64) -> f64 {
        *value as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuTimeFormatter
    }
}

struct CpuTimeFormatter;

impl ValueFormatter for CpuTimeFormatter {
    fn scale_values(&self, typical_nanos: f64, values: &mut [f64]) -> &'static str {
        let (divisor, unit) = if typical_nanos >= 1e6 {
            (1e6, "ms cpu")
        } else if typical_nanos >= 1e3 {
            (1e3, "µs cpu")
        } else {
            (1.0, "ns cpu")
        };
        values.iter_mut().for_each(|value| *value /= divisor);
        unit
    }

    fn scale_throughputs(&self, _typical_nanos: f64, throughput: &Throughput, values: &mut [f64]) -> &'static str {
        let (per_iteration, unit) = match throughput {
            Throughput::Elements(count) => (*count as f64, "M events/s (cpu)"),
            Throughput::Bytes(count) | Throughput::BytesDecimal(count) => (*count as f64, "MB/s (cpu)"),
            Throughput::Bits(count) => (*count as f64 / 8.0, "MB/s (cpu)"),
        };
        values.iter_mut().for_each(|nanos| *nanos = per_iteration * 1e9 / *nanos / 1e6);
        unit
    }

    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns cpu"
    }
}
