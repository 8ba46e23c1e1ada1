//! `promrelay verify` for a file target: its directory exists and the relay may write there
//! (a probe file is created and removed beside the target file).

use super::FileConfig;
use crate::targets::check::Check;

/// Probe `cfg` (`_produce_test` is for Kafka).
pub async fn verify(cfg: &FileConfig, _produce_test: bool) -> Vec<Check> {
    const C: &str = "directory writable";
    let Some(path) = cfg.path.clone() else {
        return vec![Check::skipped(C, "the target writes to standard output")];
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let probe = dir.join(format!(".promrelay-verify-{}", std::process::id()));
    let result = tokio::task::spawn_blocking(move || {
        std::fs::write(&probe, b"")?;
        std::fs::remove_file(&probe)
    })
    .await;
    match result {
        Ok(Ok(())) => vec![Check::ok(C, format!("{} takes new files", dir.display()))],
        Ok(Err(e)) => vec![Check::failed(
            C,
            format!("{}: {e}", dir.display()),
            "create the directory, or give the user the relay runs as write permission on it",
        )],
        Err(e) => vec![Check::failed(C, e.to_string(), "retry")],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::targets::check::Outcome;

    fn cfg(path: &str) -> FileConfig {
        FileConfig {
            path: Some(path.into()),
            max_file_bytes: 1,
            max_files: 1,
            histograms: Default::default(),
        }
    }

    #[tokio::test]
    async fn a_missing_directory_fails_and_a_writable_one_passes() {
        let dir = std::env::temp_dir();
        let ok = verify(&cfg(&dir.join("x.jsonl").display().to_string()), false).await;
        assert_eq!(ok[0].outcome, Outcome::Ok, "{ok:?}");
        let bad = verify(&cfg("/nonexistent-promrelay-dir/x.jsonl"), false).await;
        assert_eq!(bad[0].outcome, Outcome::Failed, "{bad:?}");
        assert!(
            bad[0]
                .hint
                .as_deref()
                .unwrap()
                .contains("create the directory")
        );
    }
}
