//! Elasticsearch hot paths on one core, with demo-shaped documents (the
//! emulator's `demo_document`: message, host, fields, source, level, ...):
//! - `poller/page_to_events`: one `_search` answer of 1000 hits parsed
//!   and turned into events (throughput in answer bytes and hits);
//! - `sink/bulk_encode`: 1000 events encoded into `_bulk` NDJSON
//!   (throughput in encoded bytes and events).
//!
//! Figures go to BENCHMARKS.md.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use pipe::event::{LogEvent, Value};
use pipe::sinks::elasticsearch::encode::{encode_item, ActionMeta};
use pipe::sinks::elasticsearch::BulkAction;
use pipe::sources::elasticsearch_poller::query::SearchPage;
use pipe_demo_logs::DemoLogGenerator;
use serde_json::json;
use testkit::es::fixtures::demo_document;

/// The allocator the `pipe` binary uses, so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const HITS: usize = 1000;

fn demo_sources() -> Vec<serde_json::Map<String, serde_json::Value>> {
    let mut generator = DemoLogGenerator::new(11);
    (0..HITS)
        .map(|position| {
            let mut document = demo_document(&generator.next_log(1_700_000_000));
            document.insert(
                "@timestamp".into(),
                json!(format!("2026-01-01T00:00:{:02}.{:03}Z", position % 60, position % 1000)),
            );
            document
        })
        .collect()
}

fn search_answer() -> Vec<u8> {
    let hits: Vec<serde_json::Value> = demo_sources()
        .into_iter()
        .enumerate()
        .map(|(position, source)| {
            json!({"_index": "logstash-2026.01.01", "_id": format!("id-{position:08}"), "_score": null, "_source": source, "sort": [1_767_225_600_000_i64 + position as i64, position]})
        })
        .collect();
    serde_json::to_vec(&json!({
        "pit_id": "pit", "took": 3, "timed_out": false,
        "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
        "hits": {"max_score": null, "hits": hits}
    }))
    .unwrap()
}

fn poller(c: &mut Criterion) {
    // The binary's memory settings, so the figures are the binary's.
    pipe::memory::tune();
    let body = search_answer();
    let source: Arc<str> = Arc::from("es_in");
    let mut group = c.benchmark_group("poller");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("page_to_events_bytes", |b| {
        b.iter(|| {
            let page = SearchPage::parse(&body).unwrap();
            let per_hit = body.len() / page.hits.len();
            page.hits.into_iter().map(|hit| hit.into_event(&source, per_hit)).collect::<Vec<LogEvent>>()
        })
    });
    group.throughput(Throughput::Elements(HITS as u64));
    group.bench_function("page_to_events_hits", |b| {
        b.iter(|| {
            let page = SearchPage::parse(&body).unwrap();
            page.hits.into_iter().map(|hit| hit.into_event(&source, 1)).collect::<Vec<LogEvent>>()
        })
    });
    group.finish();
}

fn sink(c: &mut Criterion) {
    // The binary's memory settings, so the figures are the binary's.
    pipe::memory::tune();
    let events: Vec<LogEvent> = demo_sources()
        .into_iter()
        .map(|source| match Value::from(serde_json::Value::Object(source)) {
            Value::Object(fields) => LogEvent::from_fields("bench", fields),
            _ => unreachable!("an object stays an object"),
        })
        .collect();
    let mut sample = Vec::new();
    for event in &events {
        encode_item(
            &mut sample,
            ActionMeta { action: BulkAction::Create, index: "logs-2026.01.01", id: None, type_name: None },
            event.fields(),
        );
    }
    let mut group = c.benchmark_group("sink");
    group.throughput(Throughput::Bytes(sample.len() as u64));
    group.bench_function("bulk_encode_bytes", |b| {
        b.iter_batched_ref(
            || Vec::with_capacity(sample.len()),
            |buffer| {
                for event in &events {
                    encode_item(
                        buffer,
                        ActionMeta { action: BulkAction::Create, index: "logs-2026.01.01", id: None, type_name: None },
                        event.fields(),
                    );
                }
            },
            BatchSize::SmallInput,
        )
    });
    group.throughput(Throughput::Elements(HITS as u64));
    group.bench_function("bulk_encode_events", |b| {
        b.iter_batched_ref(
            || Vec::with_capacity(sample.len()),
            |buffer| {
                for event in &events {
                    encode_item(
                        buffer,
                        ActionMeta { action: BulkAction::Create, index: "logs-2026.01.01", id: None, type_name: None },
                        event.fields(),
                    );
                }
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, poller, sink);
criterion_main!(benches);
