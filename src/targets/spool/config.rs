//! `spool:` of a target: the directory, its budget, and what happens when it is full.

use crate::config::values::nonzero_duration;
use crate::config::{ConfigError, invalid};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What to do when the spool holds `max_bytes`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFull {
    /// Push back to ingest (429/503 + `Retry-After`); nothing is dropped.
    #[default]
    Block,
    /// Drop the oldest segment of the fullest lane, counted, and take the new data.
    DropOldest,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSpool {
    pub dir: String,
    #[serde(default = "default_spool_bytes")]
    #[serde(deserialize_with = "crate::config::de::bytes")]
    pub max_bytes: u64,
    #[serde(default)]
    pub on_full: OnFull,
    #[serde(default = "default_fsync_interval")]
    #[serde(deserialize_with = "crate::config::de::duration")]
    pub fsync_interval: String,
}

fn default_spool_bytes() -> u64 {
    1 << 30
}

fn default_fsync_interval() -> String {
    "1s".into()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolConfig {
    pub dir: PathBuf,
    pub max_bytes: u64,
    pub on_full: OnFull,
    pub fsync_interval: Duration,
}

impl SpoolConfig {
    /// Segment size: an eighth of the spool (so `drop_oldest` drops at most that much at a
    /// time), between 1 MiB and 128 MiB.
    pub(super) fn segment_bytes(&self) -> u64 {
        (self.max_bytes / 8).clamp(1 << 20, 128 << 20)
    }
}

/// `overflow:` of a target: where its batches go once its memory queue is full (see
/// [`crate::targets::queue`]). On by default, under `server.data_dir`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawOverflow {
    /// `false` turns the overflow off: a full memory queue then pushes back at once.
    pub enabled: bool,
    /// The disk budget of this target's overflow.
    pub max_bytes: u64,
    /// When the budget is used up: `block` pushes back, `drop_oldest` drops (counted).
    pub on_full: OnFull,
}

impl Default for RawOverflow {
    fn default() -> Self {
        RawOverflow {
            enabled: true,
            // 1 GiB: hours of a typical Prometheus' traffic for one target (about 5 M samples
            // of 200 bytes), and a bound no default setup can exceed per target.
            max_bytes: 1 << 30,
            on_full: OnFull::Block,
        }
    }
}

/// A checked `overflow:`; its directory is chosen when the target starts
/// (`{server.data_dir}/overflow/{task}/{target}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverflowConfig {
    pub max_bytes: u64,
    pub on_full: OnFull,
}

impl RawOverflow {
    /// `None` when turned off.
    ///
    /// # Errors
    /// A budget below 1 MiB, named `{at}.overflow.max_bytes`.
    pub fn validate(&self, at: &str) -> Result<Option<OverflowConfig>, ConfigError> {
        if !self.enabled {
            return Ok(None);
        }
        if self.max_bytes < 1 << 20 {
            return Err(invalid(
                format!("{at}.overflow.max_bytes"),
                "must be at least 1048576 (1 MiB)",
            ));
        }
        Ok(Some(OverflowConfig {
            max_bytes: self.max_bytes,
            on_full: self.on_full,
        }))
    }
}

impl RawSpool {
    /// Check the `spool:` block of the target at `at`; the directory resolves against `base`.
    ///
    /// # Errors
    /// The first bad key, named `{at}.spool.KEY`.
    pub fn validate(&self, at: &str, base: &Path) -> Result<SpoolConfig, ConfigError> {
        if self.dir.trim().is_empty() {
            return Err(invalid(format!("{at}.spool.dir"), "must not be empty"));
        }
        if self.max_bytes < 1 << 20 {
            return Err(invalid(
                format!("{at}.spool.max_bytes"),
                "must be at least 1048576 (1 MiB)",
            ));
        }
        Ok(SpoolConfig {
            dir: base.join(&self.dir),
            max_bytes: self.max_bytes,
            on_full: self.on_full,
            fsync_interval: nonzero_duration(
                &self.fsync_interval,
                &format!("{at}.spool.fsync_interval"),
            )?,
        })
    }
}
