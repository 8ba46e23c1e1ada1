//! `queue:` of a target: its memory bound, batching, parallel senders and retry backoff.

use crate::config::values::{duration, positive};
use crate::config::{ConfigError, invalid};
use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawQueue {
    /// Samples the target may hold (queued, batching and in flight) before ingest is pushed back.
    #[serde(deserialize_with = "crate::config::de::samples")]
    pub capacity: u64,
    #[serde(deserialize_with = "crate::config::de::samples")]
    pub max_samples_per_send: u64,
    /// Parallel senders; series are spread over them by hash, so each series stays in order.
    #[serde(deserialize_with = "crate::config::de::count")]
    pub shards: u64,
    #[serde(deserialize_with = "crate::config::de::duration")]
    pub min_backoff: String,
    #[serde(deserialize_with = "crate::config::de::duration")]
    pub max_backoff: String,
    #[serde(deserialize_with = "crate::config::de::duration")]
    pub batch_send_deadline: String,
}

impl Default for RawQueue {
    fn default() -> Self {
        RawQueue {
            capacity: 100_000,
            max_samples_per_send: 2_000,
            shards: 4,
            min_backoff: "30ms".into(),
            max_backoff: "5s".into(),
            batch_send_deadline: "5s".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    pub capacity: usize,
    pub max_samples_per_send: usize,
    pub shards: usize,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    pub batch_send_deadline: Duration,
}

impl RawQueue {
    /// Check the `queue:` block of the target at `at`.
    ///
    /// # Errors
    /// The first bad key, named `{at}.queue.KEY`.
    pub fn validate(&self, at: &str) -> Result<QueueConfig, ConfigError> {
        let f = |name: &str| format!("{at}.queue.{name}");
        let cfg = QueueConfig {
            capacity: positive(self.capacity, &f("capacity"))?,
            max_samples_per_send: positive(self.max_samples_per_send, &f("max_samples_per_send"))?,
            shards: positive(self.shards, &f("shards"))?,
            min_backoff: duration(&self.min_backoff, &f("min_backoff"))?,
            max_backoff: duration(&self.max_backoff, &f("max_backoff"))?,
            batch_send_deadline: duration(&self.batch_send_deadline, &f("batch_send_deadline"))?,
        };
        if cfg.max_backoff < cfg.min_backoff {
            return Err(invalid(
                f("max_backoff"),
                "must not be smaller than min_backoff",
            ));
        }
        if cfg.shards > 256 {
            return Err(invalid(f("shards"), "must be at most 256"));
        }
        if cfg.batch_send_deadline.is_zero() {
            return Err(invalid(f("batch_send_deadline"), "must be greater than 0"));
        }
        Ok(cfg)
    }
}
