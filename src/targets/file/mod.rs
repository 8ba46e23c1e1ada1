//! The file target: JSON lines, one flat sample object per line in the seed's Kafka format,
//! appended to a file or written to standard output (`path: "-"`).
//!
//! - `config.rs`: the `type: file` keys;
//! - `encode.rs`: one series → a line per sample, in one lane (arrival order);
//! - `service.rs`: appending a batch on tokio's blocking pool;
//! - `verify.rs`: `promrelay verify`'s probe (the directory is writable).

mod config;
mod encode;
mod service;
pub mod verify;

pub use config::{FileConfig, RawFile};
pub use encode::FileEncoder;
pub use service::FileService;
