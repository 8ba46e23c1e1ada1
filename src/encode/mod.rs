//! Writers from a batch straight into reused output buffers: remote-write protobuf and the
//! flat JSON sample objects of the seed's Kafka format.
//!
//! Both take the series' labels as an iterator of `(name, value)` byte slices (normally
//! [`crate::relabel::MergedLabels`]), so no intermediate owned series is ever built.

pub mod json;
pub mod remote_write;
