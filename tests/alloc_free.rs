//! The data path allocates nothing per sample: with a counting allocator installed, a warmed-up
//! pipeline processes whole requests (decode, filter, relabel, encode into every target kind,
//! queue) with at most a small constant number of allocations per request, however many
//! series the request holds.

use promrelay::config::Config;
use promrelay::decode::Protocol;
use promrelay::pipeline::Pipeline;
use promrelay::telemetry::Metrics;
use promrelay::tools::workload::WorkloadSpec;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

struct CountingAllocator;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    // Count only the test thread's allocations, not the harness's.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: every call is forwarded unchanged to the system allocator, which upholds the
// GlobalAlloc contract; the counter only reads a thread-local flag and bumps an atomic, neither
// of which allocates.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same layout the caller gave us.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: ptr was allocated by System.alloc with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: ptr/layout come from a previous allocation of ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Twenty tasks, each keeping one metric name or one namespace (and one more condition): the
/// source's task index path of the data path, through each of its lookups (a literal name, a
/// name regex in the combined DFA, another label's literal value).
fn many_tasks() -> String {
    let tasks: String = (0..20)
        .map(|i| {
            let name = promrelay::tools::workload::METRIC_NAMES
                [i % promrelay::tools::workload::METRIC_NAMES.len()];
            let key = match i % 3 {
                0 => format!("__name__={name}"),
                1 => format!("__name__={name}(_sum|_count)?"),
                _ => ["namespace=default", "namespace=kube-system|search"][i % 2].to_owned(),
            };
            format!(
                "  - name: t{i}\n    filter: [\"{key}\", \"id!=nothing\"]\n    targets: [{{name: r, type: remote_write, url: \"http://127.0.0.1:9/w\", queue: {{capacity: 100000000, max_samples_per_send: 1000000}}}}]\n"
            )
        })
        .collect();
    format!("tasks:\n{tasks}")
}

fn allocations_per_request(series: usize, protocol: Protocol) -> f64 {
    allocations_for(THREE_TARGETS, series, protocol)
}

const THREE_TARGETS: &str = r#"
tasks:
  - name: rw
    filter: |
      __name__=AliyunEcs_CPUUtilization|AliyunEcs_memory_usedutilization|node_cpu_seconds_total
      id=i-2ze0mxp.*
    labels: {deliver_test_key1: ssss}
    targets:
      - {name: central, type: remote_write, url: "http://127.0.0.1:9/api/v1/write", external_labels: {source_cluster: c1}, queue: {capacity: 100000000, max_samples_per_send: 1000000}}
      - {name: file, type: file, path: "-", queue: {capacity: 100000000, max_samples_per_send: 1000000}}
      - {name: kafka, type: kafka, brokers: "127.0.0.1:9", topic: "m.{__name__}", queue: {capacity: 100000000, max_samples_per_send: 1000000}}
"#;

const FORWARD_WHOLE: &str = r#"
tasks:
  - name: all
    targets:
      - {name: r, type: remote_write, url: "http://127.0.0.1:9/w", queue: {capacity: 100000000, max_samples_per_send: 2000}}
"#;

fn allocations_for(yaml: &str, series: usize, protocol: Protocol) -> f64 {
    allocations_with_metrics(yaml, series, protocol).0
}

/// As [`allocations_for`], with the pipeline's metrics after the run.
fn allocations_with_metrics(yaml: &str, series: usize, protocol: Protocol) -> (f64, Metrics) {
    let metrics = Metrics::new();
    let pipeline =
        Pipeline::new(Config::from_yaml(yaml, Path::new(".")).unwrap(), &metrics).unwrap();
    let spec = WorkloadSpec {
        series,
        ..Default::default()
    };
    let bodies: Vec<Vec<u8>> = (0..4)
        .map(|n| match protocol {
            Protocol::V1 => promrelay::proto::encode_snappy(&spec.request(n)),
            Protocol::V2 => promrelay::proto::v2::encode_snappy(&promrelay::proto::v2::from_v1(
                &spec.request(n),
            )),
        })
        .collect();
    let run = |rounds: usize| {
        for i in 0..rounds {
            let stats = pipeline
                .process_as(0, &bodies[i % bodies.len()], protocol)
                .unwrap();
            assert!(stats.queued > 0);
            for t in pipeline.targets() {
                t.queue.discard_all();
            }
        }
    };
    run(8); // warm up: buffers grow to their working size
    COUNTING.with(|c| c.set(true));
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let rounds = 40;
    run(rounds);
    let after = ALLOCATIONS.load(Ordering::Relaxed);
    COUNTING.with(|c| c.set(false));
    ((after - before) as f64 / rounds as f64, metrics)
}

#[test]
fn a_warm_pipeline_does_not_allocate_per_sample() {
    // The counter works: one Vec per item is seen as such.
    COUNTING.with(|c| c.set(true));
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let v: Vec<Vec<u8>> = (0..100).map(|i| vec![i as u8; 16]).collect();
    let seen = ALLOCATIONS.load(Ordering::Relaxed) - before;
    COUNTING.with(|c| c.set(false));
    assert!(
        seen >= 100,
        "counting allocator saw {seen} allocations for {} vectors",
        v.len()
    );

    // Remote-write 2.0 too: labels resolve through the symbol table without a copy.
    for protocol in [Protocol::V1, Protocol::V2] {
        let small = allocations_per_request(200, protocol);
        let large = allocations_per_request(4000, protocol);
        eprintln!(
            "{protocol:?}: allocations per request: {small} (200 series), {large} (4000 series)"
        );
        assert!(
            small <= 4.0,
            "{protocol:?}: {small} allocations per 200-series request"
        );
        assert!(
            large <= 4.0,
            "{protocol:?}: {large} allocations per 4000-series request: something allocates per series"
        );
    }
    // Forwarding everything through the default four lanes: each request goes whole, as its
    // sender compressed it (`pipeline/pass_through.rs`), into a kept buffer.
    let (whole, metrics) = allocations_with_metrics(FORWARD_WHOLE, 2000, Protocol::V1);
    eprintln!("allocations per request: {whole} (2000 series forwarded whole)");
    assert_eq!(
        metrics.target("all", "r").passed_through.get(),
        48,
        "every request went whole"
    );
    assert!(
        whole <= 4.0,
        "{whole} allocations per request forwarded whole"
    );
    let indexed = allocations_for(&many_tasks(), 2000, Protocol::V1);
    eprintln!("allocations per request: {indexed} (2000 series, 20 tasks through the task index)");
    assert!(
        indexed <= 4.0,
        "{indexed} allocations per request with 20 tasks"
    );
}
