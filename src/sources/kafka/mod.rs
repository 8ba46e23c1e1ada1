//! The Kafka source: topics read in a consumer group, each message turned into the batch the
//! HTTP path builds and run through the source's tasks; offsets committed only once the data is
//! safe under those tasks' `ack` policy.
//!
//! - `config.rs`: the `sources[*].kafka` keys (the client keys are the Kafka target's:
//!   [`crate::targets::kafka::ClientKeys`]);
//! - `parse.rs`: a message (`format: json` with simd-json, or `remote_write`) → [`SeriesBatch`];
//! - `offsets.rs`: which offsets are safe to commit, per partition, in order;
//! - `service.rs`: the consumer (its thread, backpressure by pause/resume, rebalance callbacks,
//!   commits, the dead-letter topic, lag) and the task that waits for acknowledgements.
//!
//! [`SeriesBatch`]: crate::batch::SeriesBatch

mod config;
mod offsets;
pub mod parse;
mod service;

pub use config::{KafkaSourceConfig, RawKafkaSource, SourceFormat};
pub use parse::{JsonScratch, MessageError};
pub use service::KafkaSources;

#[cfg(test)]
mod tests;
