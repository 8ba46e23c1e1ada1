//! `server.admin.tasks_dir`: one file per task the API manages, `NAME.yaml`, holding
//! `tasks: [the task]` like any task file. Writes go to a temporary file, are fsynced, renamed
//! over the old one and the directory fsynced, so a crash leaves the old file or the new one,
//! never half of one.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Names the API accepts for tasks it writes: they become file names.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && !name.starts_with('.')
}

/// The file of task `name` in `dir`.
pub fn task_file(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.yaml"))
}

/// The file's text for one task, given as JSON.
///
/// # Errors
/// The task cannot be written as YAML (not expected for JSON input).
pub fn render(task: &serde_json::Value) -> Result<String, String> {
    let doc = serde_json::json!({ "tasks": [task] });
    let body = serde_yaml_ng::to_string(&doc).map_err(|e| e.to_string())?;
    Ok(format!(
        "# Written by promrelay's task API; edit through the API (or here, then reload).\n{body}"
    ))
}

/// Write `text` to `path` atomically (see the module docs).
///
/// # Errors
/// Any I/O error on the way; the old file is then unchanged.
pub fn write(path: &Path, text: &str) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // A leading dot and no `.yaml` ending: never read as a task file.
    let tmp = dir.join(format!(".{name}.tmp"));
    {
        let mut f = File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
}

/// Remove `path` and sync its directory.
///
/// # Errors
/// Any I/O error on the way.
pub fn remove(path: &Path) -> io::Result<()> {
    fs::remove_file(path)?;
    File::open(path.parent().unwrap_or(Path::new(".")))?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_are_safe_file_names_only() {
        for ok in ["a", "ecs-to-central", "t_1.v2"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            ".hidden",
            "a/b",
            "a b",
            "ü",
            &"x".repeat(201),
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn writes_replace_whole_files_and_render_reads_back() {
        let dir = std::env::temp_dir().join(format!("promrelay-store-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let task = serde_json::json!({"name": "t", "filter": "up=1", "targets": []});
        let path = task_file(&dir, "t");
        write(&path, &render(&task).unwrap()).unwrap();
        write(&path, &render(&task).unwrap()).unwrap();
        let back: serde_json::Value =
            serde_yaml_ng::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(back["tasks"][0], task);
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["t.yaml"], "no temporary file is left");
        remove(&path).unwrap();
        assert!(!path.exists());
        let _ = fs::remove_dir_all(&dir);
    }
}
