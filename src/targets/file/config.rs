//! `type: file` keys: the path (or `-` for standard output) and its rotation bound.

use crate::config::values::positive;
use crate::config::{ConfigError, invalid};
use crate::encode::histogram_buckets::HistogramMode;
use crate::targets::queue::RawQueue;
use crate::targets::spool::{RawOverflow, RawSpool};
use crate::targets::{CommonKeys, TargetConfig};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Rotate when the file would grow past this: 100 MiB.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 100 << 20;
/// Rotated files kept beside the current one.
pub const DEFAULT_MAX_FILES: u64 = 5;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFile {
    pub name: String,
    pub path: String,
    /// Rotate the file before it would grow past this (default 100 MiB). Not for `-`.
    #[serde(default, deserialize_with = "crate::config::de::opt_bytes")]
    pub max_file_bytes: Option<u64>,
    /// Rotated files kept (`path.1` the newest … `path.N`); 0 keeps none. Not for `-`.
    #[serde(default, deserialize_with = "crate::config::de::opt_count")]
    pub max_files: Option<u64>,
    /// `drop` (default; counted `unsupported_by_format`) or `buckets` (each native histogram
    /// as classic `_bucket`/`_sum`/`_count` objects).
    #[serde(default)]
    pub histograms: HistogramMode,
    #[serde(default)]
    pub external_labels: BTreeMap<String, String>,
    #[serde(default = "file_queue")]
    pub queue: RawQueue,
    pub spool: Option<RawSpool>,
    #[serde(default)]
    pub overflow: RawOverflow,
}

fn file_queue() -> RawQueue {
    RawQueue {
        shards: 1,
        batch_send_deadline: "1s".into(),
        ..RawQueue::default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileConfig {
    /// `None` for standard output (`path: "-"`).
    pub path: Option<PathBuf>,
    /// The current file is rotated before a write would take it past this.
    pub max_file_bytes: u64,
    /// Rotated files kept.
    pub max_files: usize,
    /// What native histograms become.
    pub histograms: HistogramMode,
}

impl RawFile {
    /// Check this target (at `at`); the path resolves against `base`.
    ///
    /// # Errors
    /// The first bad key, named under `at`.
    pub fn validate(self, at: &str, base: &Path) -> Result<TargetConfig, ConfigError> {
        if self.path.trim().is_empty() {
            return Err(invalid(
                format!("{at}.path"),
                "must not be empty (use \"-\" for standard output)",
            ));
        }
        let stdout = self.path == "-";
        for (key, set) in [
            ("max_file_bytes", self.max_file_bytes.is_some()),
            ("max_files", self.max_files.is_some()),
        ] {
            if stdout && set {
                return Err(invalid(
                    format!("{at}.{key}"),
                    "standard output (path: \"-\") is not rotated; leave it out",
                ));
            }
        }
        let max_files = self.max_files.unwrap_or(DEFAULT_MAX_FILES);
        if max_files > 1000 {
            return Err(invalid(format!("{at}.max_files"), "must be at most 1000"));
        }
        let kind = FileConfig {
            path: (!stdout).then(|| base.join(&self.path)),
            max_file_bytes: positive(
                self.max_file_bytes.unwrap_or(DEFAULT_MAX_FILE_BYTES),
                &format!("{at}.max_file_bytes"),
            )? as u64,
            max_files: max_files as usize,
            histograms: self.histograms,
        };
        let common = CommonKeys {
            name: self.name,
            external_labels: &self.external_labels,
            queue: &self.queue,
            spool: self.spool.as_ref(),
            overflow: &self.overflow,
        };
        let mut cfg = TargetConfig::new(common, at, base, kind.into())?;
        cfg.queue.shards = 1; // one writer keeps lines in arrival order
        Ok(cfg)
    }
}
