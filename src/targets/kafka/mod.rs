//! The Kafka target: each message a JSON array of the seed's sample objects (or a remote-write
//! `WriteRequest`), raw-snappy compressed, produced with librdkafka and counted delivered only
//! on the broker's delivery report.
//!
//! - `config.rs`: the `type: kafka` keys and the producer settings they become;
//! - `encode.rs`: one series → one framed record (topic, key, samples, body) in the lane its
//!   key picks ([`KafkaLayout`]);
//! - `messages.rs`: a lane's batch of records → messages grouped by topic and key;
//! - `service.rs`: producing the messages and reading their delivery reports;
//! - `verify.rs`: `promrelay verify`'s probes (metadata, topic, a test message).

mod config;
mod encode;
mod messages;
mod service;
pub mod verify;

pub use config::{
    ClientKeys, KafkaCompression, KafkaConfig, KafkaFormat, KafkaKey, RawKafka, RawSasl, TopicPart,
    parse_topic,
};
pub use encode::KafkaLayout;
pub use messages::{KafkaMessage, MessageBuilder};
pub use service::KafkaService;

#[cfg(test)]
mod tests;
