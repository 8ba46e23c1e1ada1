//! The remote_write target: snappy-compressed `WriteRequest`s POSTed with the spec's headers to
//! any Prometheus-compatible receiver.
//!
//! - `config.rs`: the `type: remote_write` keys (URL, basic auth / bearer token / AccessKey,
//!   TLS, headers, timeout) and their checks;
//! - `encode.rs`: one series → one `timeseries` field in the lane its label hash picks;
//! - `service.rs`: one batch → one POST, answers classified as the spec says (2xx delivered,
//!   5xx and 429 retried, other 4xx refused for good);
//! - `verify.rs`: `promrelay verify`'s probes (connect, TLS, an empty write, the Prometheus behind).

mod certificate;
mod config;
mod encode;
mod service;
pub mod verify;

pub use config::{RawAccessKey, RawRemoteWrite, RemoteWriteConfig};
pub use encode::RemoteWriteEncoder;
pub use service::{RemoteWriteService, USER_AGENT};
