//! The command-line tools that are not the relay itself: `promrelay bench` (HTTP, in-process,
//! Kafka) and the workload it sends, `promrelay blackhole`, and `promrelay kafka-tail`. Nothing in the relay depends on
//! them; they use the relay's library like any other client would.

pub mod bench; // filter throughput, in-process or over HTTP
pub mod bench_kafka; // throughput of a relay's Kafka source
pub mod blackhole; // a receiver that answers 204 to everything
pub mod kafka_tail; // read a topic back as JSON lines
pub mod tap; // print what a task's target receives
pub mod tasks; // a client of a running relay's task API
pub mod workload; // deterministic realistic request generators
