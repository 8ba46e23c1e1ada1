//! Where data comes in: one folder per source kind, each owning its config keys and its way of
//! turning input into pipeline requests: the HTTP source ([`http`], remote-write `POST`s per
//! named source path) and the Kafka source ([`kafka`], topics read in a consumer group).

pub mod http;
pub mod kafka;
