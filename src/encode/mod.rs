//! Writers from a batch straight into reused output buffers, shared by the target kinds that
//! speak each format: remote-write protobuf (remote_write targets, Kafka `format: remote_write`)
//! and the flat JSON sample object of the seed's Kafka format (file and Kafka targets,
//! `kafka-tail`).
//!
//! Both take the series' labels as an iterator of `(name, value)` byte slices (normally
//! [`crate::relabel::MergedLabels`]), so no intermediate owned series is ever built.

pub mod histogram_buckets;
pub mod json_sample;
pub mod metadata;
pub mod remote_write;
pub mod remote_write_v2;
pub mod start_timestamp;
