//! The file target: JSON lines appended to a file, or written to standard output (`path: "-"`).
//! Writes run on tokio's blocking pool so a slow disk never stalls the async workers.
//!
//! A file is rotated so that no setup, the default one included, can fill a disk: before a
//! batch would take the file past `max_file_bytes`, `path` becomes `path.1` (an older `path.1`
//! becomes `path.2`, and so on up to `max_files`; the oldest is replaced) and a new `path` is
//! started. Rotation happens between batches, never inside one, so every file holds whole
//! lines; a single batch larger than `max_file_bytes` gets a file of its own.

use super::FileConfig;
use crate::targets::queue::Batch;
use crate::targets::{Payload, SendResult};
use bytes::Bytes;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// One writer: the file target has a single lane, so lines keep their order.
///
/// # Errors
/// As [`FileService::open`].
impl FileConfig {
    pub fn services(&self, _lanes: usize) -> Result<Vec<FileService>, String> {
        Ok(vec![FileService::open(self)?])
    }

    /// One destination: no receivers of its own (`targets/receivers.rs`).
    pub fn receivers(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Where the lines go.
enum Sink {
    Stdout(std::io::Stdout),
    File(RotatingFile),
}

impl Sink {
    fn write_batch(&mut self, batch: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Stdout(out) => {
                out.write_all(batch)?;
                out.flush()
            }
            Sink::File(f) => f.write_batch(batch),
        }
    }
}

/// A file that rotates at a size bound (see the module docs).
pub struct RotatingFile {
    path: PathBuf,
    /// `None` after a failed rotation or open: opened again at the next write.
    file: Option<File>,
    /// Bytes in the current file.
    size: u64,
    max_bytes: u64,
    max_files: usize,
}

impl RotatingFile {
    /// Open `path` for appending (created, with its directory, if missing).
    ///
    /// # Errors
    /// The directory cannot be created or the file opened.
    pub fn open(path: &Path, max_bytes: u64, max_files: usize) -> std::io::Result<RotatingFile> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut f = RotatingFile {
            path: path.to_owned(),
            file: None,
            size: 0,
            max_bytes,
            max_files,
        };
        f.reopen()?;
        Ok(f)
    }

    fn reopen(&mut self) -> std::io::Result<()> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = file.metadata()?.len();
        self.file = Some(file);
        Ok(())
    }

    /// `path.N`.
    fn rotated(&self, n: usize) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    /// Shift `path` → `path.1` → … → `path.{max_files}` (the oldest is replaced) and start a
    /// new `path`.
    fn rotate(&mut self) -> std::io::Result<()> {
        self.file = None;
        for n in (1..self.max_files).rev() {
            match std::fs::rename(self.rotated(n), self.rotated(n + 1)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        if self.max_files == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            std::fs::rename(&self.path, self.rotated(1))?;
        }
        self.reopen()
    }

    /// Append one batch of whole lines, rotating first if it would not fit.
    ///
    /// # Errors
    /// Rotating, opening or writing failed (the batch is retried whole).
    pub fn write_batch(&mut self, batch: &[u8]) -> std::io::Result<()> {
        if self.file.is_none() {
            self.reopen()?;
        }
        if self.size > 0 && self.size + batch.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        let Some(file) = self.file.as_mut() else {
            return Err(std::io::Error::other("the file is not open"));
        };
        let written = file.write_all(batch).and_then(|()| file.flush());
        // Count what may have reached the file even on failure: a retry may rotate early,
        // never late.
        self.size += batch.len() as u64;
        written
    }
}

pub struct FileService {
    out: Arc<Mutex<Sink>>,
    label: String,
}

impl FileService {
    /// # Errors
    /// The file cannot be created or opened for appending.
    pub fn open(cfg: &FileConfig) -> Result<Self, String> {
        let (out, label) = match &cfg.path {
            None => (Sink::Stdout(std::io::stdout()), "stdout".into()),
            Some(p) => {
                let f = RotatingFile::open(p, cfg.max_file_bytes, cfg.max_files)
                    .map_err(|e| format!("cannot open {} for appending: {e}", p.display()))?;
                (Sink::File(f), p.display().to_string())
            }
        };
        Ok(FileService {
            out: Arc::new(Mutex::new(out)),
            label,
        })
    }

    /// The batch as it is: JSON lines.
    pub fn prepare(&mut self, batch: &Batch) -> Payload {
        debug_assert!(
            !batch.snappy,
            "only remote_write 1.0 targets pass requests through"
        );
        Payload::Bytes(Bytes::copy_from_slice(&batch.body))
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
            w.write_batch(&payload)
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

#[cfg(test)]
mod tests {
    use super::RotatingFile;

    fn read(p: &std::path::Path) -> Option<String> {
        std::fs::read_to_string(p).ok()
    }

    #[test]
    fn rotates_before_a_batch_would_pass_the_bound_and_keeps_max_files() {
        let dir = std::env::temp_dir().join(format!("promrelay-rotate-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("sub/out.jsonl");
        let mut f = RotatingFile::open(&path, 10, 2).unwrap();
        for batch in [
            "aaaa\n",
            "bbbb\n",
            "cccc\n",
            "dddd\n",
            "eeee\n",
            "ffffffffffffffff\n",
        ] {
            f.write_batch(batch.as_bytes()).unwrap();
        }
        let name = |n: &str| dir.join(format!("sub/out.jsonl{n}"));
        assert_eq!(
            read(&name("")).as_deref(),
            Some("ffffffffffffffff\n"),
            "too large: alone"
        );
        assert_eq!(read(&name(".1")).as_deref(), Some("eeee\n"));
        assert_eq!(read(&name(".2")).as_deref(), Some("cccc\ndddd\n"));
        assert_eq!(read(&name(".3")), None, "max_files: 2");

        // Reopened, an existing file's size counts; max_files 0 keeps nothing.
        let mut f = RotatingFile::open(&path, 20, 0).unwrap();
        f.write_batch(b"gggg\n").unwrap();
        assert_eq!(read(&name("")).as_deref(), Some("gggg\n"));
        assert_eq!(read(&name(".1")).as_deref(), Some("eeee\n"), "untouched");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
