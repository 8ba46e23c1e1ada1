//! Criterion benchmarks of the data path, one stage each, plus the whole in-process pipeline.
//! Throughput is reported in samples/s (elements; series/s for filters, labels/s for relabel)
//! and, for decode, decoded bytes/s.
//!
//! Workload: 2,000-series requests of node-exporter/Kubernetes-like label sets (10 labels per
//! series, one sample each; `promrelay::workload`). The filter is the 2-condition one used in
//! docs/performance.md, which keeps about 16 % of the series.
//!
//! Run: `cargo bench --bench pipeline`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use promrelay::batch::SeriesBatch;
use promrelay::config::Config;
use promrelay::decode::DecodeLimits;
use promrelay::encode::{json_sample as json, remote_write};
use promrelay::filter::Filter;
use promrelay::pipeline::Pipeline;
use promrelay::relabel::{LabelSet, merge};
use promrelay::telemetry::Metrics;
use promrelay::tools::workload::WorkloadSpec;
use prost::Message;
use std::hint::black_box;
use std::path::Path;

// The relay's allocator, so allocation costs here are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const FILTER: [&str; 2] = [
    "__name__=AliyunEcs_CPUUtilization|AliyunEcs_memory_usedutilization",
    "id=i-2ze0mxp.*",
];

fn workload() -> (Vec<u8>, Vec<u8>, usize) {
    let req = WorkloadSpec::default().request(0);
    let samples = req.timeseries.iter().map(|t| t.samples.len()).sum();
    (
        req.encode_to_vec(),
        promrelay::proto::encode_snappy(&req),
        samples,
    )
}

fn decode(c: &mut Criterion) {
    let (raw, snappy, samples) = workload();
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Bytes(raw.len() as u64));
    let mut batch = SeriesBatch::new();
    g.bench_function("protobuf_walk_bytes", |b| {
        b.iter(|| batch.decode_protobuf(black_box(&raw)).unwrap())
    });
    g.throughput(Throughput::Elements(samples as u64));
    // Snappy alone, into a kept buffer as the decoder does: the part of decoding no relay of
    // compressed remote-write bodies can skip (the floor in docs/performance.md, round 8).
    let mut out = vec![0u8; raw.len()];
    let mut dec = snap::raw::Decoder::new();
    g.bench_function("snappy_decompress_only_samples", |b| {
        b.iter(|| dec.decompress(black_box(&snappy), &mut out).unwrap())
    });
    g.bench_function("snappy_and_walk_samples", |b| {
        b.iter(|| {
            batch
                .decode_snappy(black_box(&snappy), DecodeLimits::default())
                .unwrap()
        })
    });
    g.finish();
}

fn filter(c: &mut Criterion) {
    let (raw, _, samples) = workload();
    let mut batch = SeriesBatch::new();
    batch.decode_protobuf(&raw).unwrap();
    let f = Filter::parse(FILTER).unwrap();
    let mut g = c.benchmark_group("filter");
    g.throughput(Throughput::Elements(samples as u64));
    g.bench_function("seed_two_conditions", |b| {
        b.iter(|| batch.iter().filter(|s| f.matches(s)).count())
    });
    // One condition per matcher strategy, over the same series (see filter/predicate.rs).
    for (kind, cond) in [
        ("literal", "job==node-exporter"),
        (
            "set",
            "__name__=AliyunEcs_CPUUtilization|AliyunEcs_memory_usedutilization|node_cpu_seconds_total",
        ),
        ("prefix", "id=i-2ze0mxp00.*"),
        ("suffix", "__name__=.*_total"),
        ("contains", "instance=.*\\.1\\..*"),
        ("dfa", "namespace=(kube|mon)[a-z-]+"),
        ("negated_regex", "namespace!~kube-system|monitoring"),
    ] {
        let f = Filter::parse([cond]).unwrap();
        let strategy = f.matchers()[0].strategy();
        g.bench_function(format!("{kind}_{strategy}"), |b| {
            b.iter(|| batch.iter().filter(|s| f.matches(s)).count())
        });
    }
    g.finish();
}

fn relabel(c: &mut Criterion) {
    let (raw, _, _) = workload();
    let mut batch = SeriesBatch::new();
    batch.decode_protobuf(&raw).unwrap();
    let labels: usize = batch.iter().map(|s| s.label_refs().len()).sum();
    let task = LabelSet::new([("deliver_test_key1", "ssss"), ("job", "relabelled")]).unwrap();
    let ext = LabelSet::new([("source_cluster", "cluster-01")]).unwrap();
    let none = LabelSet::default();
    let mut g = c.benchmark_group("relabel");
    g.throughput(Throughput::Elements(labels as u64));
    g.bench_function("merge_task_and_external_labels", |b| {
        b.iter(|| {
            batch
                .iter()
                .map(|s| merge(s.buf(), s.label_refs(), &task, &ext).count())
                .sum::<usize>()
        })
    });
    g.bench_function("merge_nothing_to_add", |b| {
        b.iter(|| {
            batch
                .iter()
                .map(|s| merge(s.buf(), s.label_refs(), &none, &none).count())
                .sum::<usize>()
        })
    });
    g.finish();
}

fn encode(c: &mut Criterion) {
    let (raw, _, samples) = workload();
    let mut batch = SeriesBatch::new();
    batch.decode_protobuf(&raw).unwrap();
    let task = LabelSet::new([("deliver_test_key1", "ssss")]).unwrap();
    let ext = LabelSet::new([("source_cluster", "cluster-01")]).unwrap();
    let mut out = Vec::new();
    let mut g = c.benchmark_group("encode");
    g.throughput(Throughput::Elements(samples as u64));
    g.bench_function("remote_write_with_labels", |b| {
        b.iter(|| {
            out.clear();
            for s in batch.iter() {
                remote_write::encode_series(
                    &mut out,
                    merge(s.buf(), s.label_refs(), &task, &ext),
                    s.samples(),
                    s.extras(),
                );
            }
        })
    });
    // The same series copied as received with the same labels spliced in (what a
    // remote_write target does for series the decoder marked copyable: all of these).
    let statics = remote_write::SpliceLabels::new(&task, &ext);
    g.bench_function("remote_write_splice_with_labels", |b| {
        b.iter(|| {
            out.clear();
            for s in batch.iter() {
                if let Some(sp) = s.splice() {
                    remote_write::splice_series(&mut out, s.buf(), sp, s.label_refs(), &statics);
                }
            }
        })
    });
    let none = LabelSet::default();
    g.bench_function("remote_write_no_labels", |b| {
        b.iter(|| {
            out.clear();
            for s in batch.iter() {
                remote_write::encode_series(
                    &mut out,
                    merge(s.buf(), s.label_refs(), &none, &none),
                    s.samples(),
                    s.extras(),
                );
            }
        })
    });
    let no_statics = remote_write::SpliceLabels::new(&none, &none);
    g.bench_function("remote_write_splice_no_labels", |b| {
        b.iter(|| {
            out.clear();
            for s in batch.iter() {
                if let Some(sp) = s.splice() {
                    remote_write::splice_series(&mut out, s.buf(), sp, s.label_refs(), &no_statics);
                }
            }
        })
    });
    g.bench_function("json_with_labels", |b| {
        b.iter(|| {
            out.clear();
            for s in batch.iter() {
                for x in s.samples() {
                    json::write_sample(&mut out, merge(s.buf(), s.label_refs(), &task, &ext), x);
                }
            }
        })
    });
    let mut enc = snap::raw::Encoder::new();
    let mut compressed = vec![0; snap::raw::max_compress_len(raw.len())];
    g.bench_function("snappy_compress_request", |b| {
        b.iter(|| enc.compress(&raw, &mut compressed).unwrap())
    });
    g.finish();
}

fn pipeline(c: &mut Criterion) {
    let (_, snappy, samples) = workload();
    let yaml = format!(
        "tasks:\n  - name: bench\n    filter: [{:?}, {:?}]\n    labels: {{deliver_test_key1: ssss}}\n    targets:\n      - name: sink\n        type: remote_write\n        url: http://127.0.0.1:9/api/v1/write\n        external_labels: {{source_cluster: cluster-01}}\n        queue: {{capacity: 100000000}}\n",
        FILTER[0], FILTER[1]
    );
    let cfg = Config::from_yaml(&yaml, Path::new(".")).unwrap();
    let p = Pipeline::new(cfg, &Metrics::new()).unwrap();
    let source = p.source("default").unwrap();
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(samples as u64));
    g.bench_function("decode_filter_relabel_encode_queue", |b| {
        b.iter(|| {
            p.process(source, black_box(&snappy)).unwrap();
            p.targets()[0].queue.discard_all();
        })
    });
    g.finish();
}

/// The same pipeline with a spool on the target: each request is written to the spool's segment
/// files (page cache; no fsync here, the sync task is not running) and read back and finished as
/// the sender would. Compare with `pipeline` for the spool's cost per sample.
fn spool(c: &mut Criterion) {
    let (_, snappy, samples) = workload();
    let dir = std::env::temp_dir().join(format!("promrelay-bench-spool-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let yaml = format!(
        "tasks:\n  - name: bench\n    filter: [{:?}, {:?}]\n    labels: {{deliver_test_key1: ssss}}\n    targets:\n      - name: sink\n        type: remote_write\n        url: http://127.0.0.1:9/api/v1/write\n        external_labels: {{source_cluster: cluster-01}}\n        queue: {{max_samples_per_send: 1}}\n        spool: {{dir: {:?}}}\n",
        FILTER[0],
        FILTER[1],
        dir.display().to_string()
    );
    let cfg = Config::from_yaml(&yaml, Path::new(".")).unwrap();
    let p = Pipeline::new(cfg, &Metrics::new()).unwrap();
    let source = p.source("default").unwrap();
    // next_batch never reaches a timer here (every record is due at once), but keep a runtime
    // entered in case it would.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _entered = rt.enter();
    let queue = p.targets()[0].queue.clone();
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(samples as u64));
    g.bench_function("decode_filter_relabel_encode_spool_readback", |b| {
        b.iter(|| {
            p.process(source, black_box(&snappy)).unwrap();
            // Poll each lane by hand until it has nothing due: a timer (even a zero timeout)
            // would cost a millisecond tick per empty lane and measure tokio, not the spool.
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            for lane in 0..queue.lanes() {
                loop {
                    let next = std::pin::pin!(queue.next_batch(lane));
                    match std::future::Future::poll(next, &mut cx) {
                        std::task::Poll::Ready(Some(batch)) => {
                            black_box(&batch.body);
                            queue.finish(lane, batch, true);
                        }
                        _ => break,
                    }
                }
            }
        })
    });
    g.finish();
    drop(p);
    let _ = std::fs::remove_dir_all(&dir);
}

fn kafka(c: &mut Criterion) {
    use promrelay::targets::kafka::{KafkaCompression, KafkaFormat, KafkaKey, parse_topic};
    use promrelay::targets::kafka::{KafkaLayout, MessageBuilder};
    let (raw, _, samples) = workload();
    let mut batch = SeriesBatch::new();
    batch.decode_protobuf(&raw).unwrap();
    let cfg = promrelay::targets::kafka::KafkaConfig {
        topic: parse_topic("metrics").unwrap(),
        key: KafkaKey::Series,
        format: KafkaFormat::Json,
        histograms: Default::default(),
        compression: KafkaCompression::Snappy,
        max_message_bytes: 1_000_000,
        client: vec![],
    };
    let layout = KafkaLayout::new(&cfg);
    let mut builder = MessageBuilder::new(&cfg, 0);
    let task = LabelSet::new([("deliver_test_key1", "ssss")]).unwrap();
    let ext = LabelSet::new([("source_cluster", "cluster-01")]).unwrap();
    let mut records = Vec::new();
    let mut g = c.benchmark_group("kafka");
    g.throughput(Throughput::Elements(samples as u64));
    g.bench_function("json_records_messages_and_snappy", |b| {
        b.iter(|| {
            records.clear();
            for s in batch.iter() {
                layout.write_record(
                    &mut records,
                    merge(s.buf(), s.label_refs(), &task, &ext),
                    s.samples(),
                    s.extras(),
                );
            }
            black_box(builder.build(&records))
        })
    });
    g.finish();
}

/// Cost in the number of tasks on one source: N tasks, each keeping one metric name (the
/// workload's names first, then names nothing carries) and one more condition, over the same
/// 2,000-series requests. Per-sample time at N tasks over 1 task is the figure. `tasks/` names
/// the metric literally (`__name__=NAME`: the index's hash lookup), `tasks_regex/` by a regex
/// (`__name__=NAME(_sum|_count)?`: the index's combined DFA).
fn tasks(c: &mut Criterion) {
    tasks_with(c, "tasks", |name| format!("__name__={name}"));
    tasks_with(c, "tasks_regex", |name| {
        format!("__name__={name}(_sum|_count)?")
    });
}

fn tasks_with(c: &mut Criterion, group: &str, condition: impl Fn(&str) -> String) {
    let (_, snappy, samples) = workload();
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(samples as u64));
    for n in [1usize, 10, 100, 1000] {
        let names = promrelay::tools::workload::METRIC_NAMES;
        let tasks: String = (0..n)
            .map(|i| {
                let name = names
                    .get(i)
                    .map_or_else(|| format!("metric_{i}"), |s| s.to_string());
                format!(
                    "  - name: t{i}\n    filter: [{:?}, \"id=i-.*\"]\n    targets: [{{name: r, type: remote_write, url: \"http://127.0.0.1:9/w\", queue: {{capacity: 100000000}}}}]\n",
                    condition(&name)
                )
            })
            .collect();
        let cfg = Config::from_yaml(&format!("tasks:\n{tasks}"), Path::new(".")).unwrap();
        let p = Pipeline::new(cfg, &Metrics::new()).unwrap();
        g.bench_function(format!("{n}_tasks"), |b| {
            b.iter(|| {
                p.process(0, black_box(&snappy)).unwrap();
                for t in p.targets() {
                    t.queue.discard_all();
                }
            })
        });
    }
    g.finish();
}

criterion_group!(
    benches, decode, filter, relabel, encode, pipeline, spool, kafka, tasks
);
criterion_main!(benches);
