//! The YAML file as serde sees it: field for field, defaults in one place, unknown keys refused.
//! Nothing here is trusted yet; [`super::validate`] turns it into checked, compiled types.
//! The keys of each target and source kind are that kind's own (`targets::<kind>::config`).

use super::secrets::RawBasicAuth;
use crate::sources::http::RawSource;
use crate::targets::RawTarget;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub sources: Vec<RawSource>,
    #[serde(default)]
    pub tasks: Vec<RawTask>,
    /// More files of tasks (globs, relative to this file), each `tasks: [...]`.
    #[serde(default)]
    pub task_files: Vec<String>,
}

/// A file named by `task_files` (or written by the admin API into `server.admin.tasks_dir`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTaskFile {
    #[serde(default)]
    pub tasks: Vec<RawTask>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawServer {
    /// Address the ingest and admin endpoints listen on.
    pub listen: String,
    /// Largest compressed request body accepted (413 above).
    #[serde(deserialize_with = "crate::config::de::bytes")]
    pub max_body_bytes: u64,
    /// Largest decoded body, checked from the snappy header before allocating (413 above).
    #[serde(deserialize_with = "crate::config::de::bytes")]
    pub max_decoded_bytes: u64,
    /// HTTP status answered when a target queue is full: 503 (default) or 429.
    #[serde(deserialize_with = "crate::config::de::status")]
    pub backpressure_status: u16,
    /// `Retry-After` sent with the backpressure answer.
    #[serde(deserialize_with = "crate::config::de::duration")]
    pub retry_after: String,
    /// How long shutdown waits for queues to drain.
    #[serde(deserialize_with = "crate::config::de::duration")]
    pub shutdown_timeout: String,
    /// Pipeline shards (runtime worker threads); 0 means one per CPU core.
    #[serde(deserialize_with = "crate::config::de::count")]
    pub shards: u64,
    /// Input limits: a request over any of them is refused with 400 naming the setting.
    #[serde(deserialize_with = "crate::config::de::count")]
    pub max_series_per_request: u64,
    #[serde(deserialize_with = "crate::config::de::count")]
    pub max_labels_per_series: u64,
    #[serde(deserialize_with = "crate::config::de::bytes")]
    pub max_label_name_bytes: u64,
    #[serde(deserialize_with = "crate::config::de::bytes")]
    pub max_label_value_bytes: u64,
    /// Longest an `ack: spooled | delivered` request waits before it is answered 503.
    #[serde(deserialize_with = "crate::config::de::duration")]
    pub ack_timeout: String,
    /// Deprecated spelling of `admin.listen`.
    pub admin_listen: Option<String>,
    /// The admin endpoints: their address, who may call them, where API-made tasks live.
    pub admin: Option<RawAdmin>,
    /// Serve HTTPS on `listen` (and `admin_listen`).
    pub tls: Option<RawServerTls>,
    /// Where targets keep what they hold on disk (the overflow of a target that falls behind).
    pub data_dir: String,
    /// Longest a client may take to send a request's header: from connecting, or from the
    /// first byte of a kept-alive connection's next request.
    pub header_read_timeout: String,
    /// Longest a request's body may take to arrive once its header has.
    pub body_read_timeout: String,
    /// A kept-alive connection without a request is closed after this long.
    pub idle_timeout: String,
    /// HTTP/2: ping each connection this often (`0s`: never) …
    pub http2_keepalive_interval: String,
    /// … and close it when a ping is not answered within this.
    pub http2_keepalive_timeout: String,
    /// HTTP/2: streams (requests) one connection may have open at once.
    pub http2_max_concurrent_streams: u64,
    /// Connections served at once on `listen`; beyond it, accepting waits.
    pub max_connections: u64,
    /// Request bodies held in memory at once, in bytes, over all connections and streams
    /// (default: derived from `max_body_bytes` and the machine's memory).
    pub max_inflight_body_bytes: Option<u64>,
    /// How long an HTTP/1.1 request waits for room in `max_inflight_body_bytes` before it is
    /// answered 503/429 + `Retry-After` (HTTP/2 requests do not wait).
    pub inflight_body_wait: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// Serve `/metrics`, health, reload and the task API here instead of on `listen`.
    pub listen: Option<String>,
    /// Where the task API writes one file per task (read like `task_files`).
    pub tasks_dir: Option<String>,
    /// Credentials every admin path but `/-/healthy` and `/-/ready` requires.
    pub basic_auth: Option<RawBasicAuth>,
    pub bearer_token: Option<String>,
    pub bearer_token_file: Option<String>,
    pub bearer_token_env: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServerTls {
    pub cert_file: String,
    pub key_file: String,
    /// When set, clients must present a certificate signed by this CA.
    pub client_ca_file: Option<String>,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            listen: "127.0.0.1:9201".into(),
            max_body_bytes: 32 << 20,
            max_decoded_bytes: 256 << 20,
            backpressure_status: 503,
            retry_after: "1s".into(),
            shutdown_timeout: "30s".into(),
            shards: 0,
            max_series_per_request: 1_000_000,
            max_labels_per_series: 256,
            max_label_name_bytes: 1024,
            max_label_value_bytes: 64 << 10,
            ack_timeout: "25s".into(),
            admin_listen: None,
            admin: None,
            tls: None,
            data_dir: "data".into(),
            header_read_timeout: "10s".into(),
            body_read_timeout: "60s".into(),
            idle_timeout: "2m".into(),
            http2_keepalive_interval: "30s".into(),
            http2_keepalive_timeout: "20s".into(),
            http2_max_concurrent_streams: 100,
            max_connections: 512,
            max_inflight_body_bytes: None,
            inflight_body_wait: "5s".into(),
        }
    }
}

/// Text with one item per line, or a YAML list of items.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Lines {
    Text(String),
    List(Vec<String>),
}

/// `key=value` lines, or a YAML map.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum LabelsSpec {
    Text(String),
    Map(BTreeMap<String, String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTask {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "default_source")]
    pub source: String,
    pub filter: Option<Lines>,
    pub labels: Option<LabelsSpec>,
    /// When ingest answers 2xx: once queued, spooled (on disk) or delivered.
    pub ack: Option<Ack>,
    #[serde(default)]
    pub targets: Vec<RawTarget>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ack {
    /// In the memory queues (or written to the spool file, not yet synced).
    Queued,
    /// Synced to disk in every spooled target of the task.
    Spooled,
    /// Taken by every target of the task.
    Delivered,
}

impl std::fmt::Display for Ack {
    /// As written in the config: `queued`, `spooled`, `delivered`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Ack::Queued => "queued",
            Ack::Spooled => "spooled",
            Ack::Delivered => "delivered",
        })
    }
}

fn yes() -> bool {
    true
}

fn default_source() -> String {
    "default".into()
}
