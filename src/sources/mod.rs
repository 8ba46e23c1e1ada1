//! Where data comes in: one folder per source kind, each owning its config keys and its way of
//! turning input into pipeline requests. Today the HTTP source ([`http`]): remote-write
//! `POST`s per named source path.

pub mod http;
