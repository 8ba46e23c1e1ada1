//! promrelay: a Prometheus data-delivery engine.
//!
//! Prometheus (or anything that speaks remote-write) pushes to promrelay; each configured
//! delivery *task* filters the samples by label, attaches labels, and delivers them to its
//! targets. Data flows one way through the modules below; a later stage never imports an
//! earlier one's internals, and `config` and `batch` are shared by all.
#![forbid(unsafe_code)]

pub mod batch; // the arena-backed sample batch every stage speaks
pub mod bench; // `promrelay bench` (filter throughput) and the blackhole receiver
pub mod config; // YAML → checked, compiled configuration
pub mod decode; // snappy + hand-written protobuf walk into a batch
pub mod encode; // batch → remote-write protobuf / flat JSON, into reused buffers
pub mod filter; // label conditions, compiled once with per-pattern strategies
pub mod ingest; // HTTP server: routes, limits, answers
pub mod kafka_tail; // `promrelay kafka-tail`: read a topic back as JSON lines
pub mod pipeline; // one request through every task: match → relabel → encode → queue
pub mod proto; // prost reference types (tests, benches, request generation)
pub mod relabel; // task labels and external labels, merged lazily in sorted order
pub mod relay; // wiring and orderly shutdown
pub mod sink; // targets: bounded queues, retrying senders; remote_write, kafka and file services
pub mod telemetry; // self-metrics and logging
pub mod workload; // deterministic realistic request generators
