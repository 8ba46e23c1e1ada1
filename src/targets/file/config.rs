//! `type: file` keys: the path (or `-` for standard output).

use crate::config::{ConfigError, invalid};
use crate::targets::queue::RawQueue;
use crate::targets::spool::{RawOverflow, RawSpool};
use crate::targets::{CommonKeys, TargetConfig};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFile {
    pub name: String,
    pub path: String,
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
        let kind = FileConfig {
            path: (self.path != "-").then(|| base.join(&self.path)),
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
