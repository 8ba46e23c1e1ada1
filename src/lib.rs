//! promrelay: a Prometheus data-delivery engine.
//!
//! Prometheus (or anything that speaks remote-write) pushes to promrelay; each configured
//! delivery *task* filters the samples by label, attaches labels, and delivers them to its
//! targets. Data flows one way through the modules below; a later stage never imports an
//! earlier one's internals, and `config` and `batch` are shared by all.
#![forbid(unsafe_code)]

pub mod admin; // the control plane: live tasks, reload, the task API
pub mod batch; // the arena-backed sample batch every stage speaks
pub mod config; // YAML → checked, compiled configuration (shared parts; kinds check their own)
pub mod decode; // snappy + hand-written protobuf walk into a batch
pub mod encode; // batch → remote-write protobuf / flat JSON sample objects, into reused buffers
pub mod filter; // label conditions, compiled once with per-pattern strategies
pub mod pipeline; // one request through every task: match → relabel → encode → queue
pub mod proto; // prost reference types (tests, benches, request generation)
pub mod relabel; // task labels and external labels, merged lazily in sorted order
pub mod relay; // wiring and orderly shutdown
pub mod sources; // where data comes in, one folder per kind: http/, kafka/
pub mod targets; // where data goes, one folder per kind: remote_write/, kafka/, file/
pub mod telemetry; // self-metrics and logging
pub mod tools; // bench, blackhole, kafka-tail: command-line tools beside the relay
