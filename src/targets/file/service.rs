//! The file target: JSON lines appended to a file, or written to standard output (`path: "-"`).
//! Writes run on tokio's blocking pool so a slow disk never stalls the async workers.

use super::FileConfig;
use crate::targets::{Payload, SendResult};
use bytes::Bytes;
use std::io::Write;
use std::sync::{Arc, Mutex};

/// One writer: the file target has a single lane, so lines keep their order.
///
/// # Errors
/// As [`FileService::open`].
impl FileConfig {
    pub fn services(&self, _lanes: usize) -> Result<Vec<FileService>, String> {
        Ok(vec![FileService::open(self)?])
    }
}

pub struct FileService {
    out: Arc<Mutex<Box<dyn Write + Send>>>,
    label: String,
}

impl FileService {
    /// # Errors
    /// The file cannot be created or opened for appending.
    pub fn open(cfg: &FileConfig) -> Result<Self, String> {
        let (out, label): (Box<dyn Write + Send>, String) = match &cfg.path {
            None => (Box::new(std::io::stdout()), "stdout".into()),
            Some(p) => {
                if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                }
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|e| format!("cannot open {} for appending: {e}", p.display()))?;
                (Box::new(f), p.display().to_string())
            }
        };
        Ok(FileService {
            out: Arc::new(Mutex::new(out)),
            label,
        })
    }

    /// The batch as it is: JSON lines.
    pub fn prepare(&mut self, body: &[u8]) -> Payload {
        Payload::Bytes(Bytes::copy_from_slice(body))
    }

    /// Append a prepared batch.
    pub async fn send(&self, payload: &mut Payload, _dropped: &mut usize) -> SendResult {
        let Payload::Bytes(payload) = payload else {
            return SendResult::Reject {
                why: "internal error: a file target was handed Kafka messages".into(),
            };
        };
        let payload = payload.clone();
        let out = self.out.clone();
        let written = tokio::task::spawn_blocking(move || {
            let mut w = out.lock().unwrap_or_else(|p| p.into_inner());
            w.write_all(&payload)?;
            w.flush()
        })
        .await;
        match written {
            Ok(Ok(())) => SendResult::Delivered,
            Ok(Err(e)) => SendResult::Retry {
                after: None,
                why: format!("writing {}: {e}", self.label),
            },
            Err(e) => SendResult::Retry {
                after: None,
                why: format!("writer task failed: {e}"),
            },
        }
    }
}
