//! Configuration: one YAML file, read into [`raw`] structs, then validated once into the
//! compiled types below. Nothing downstream sees a string that still needs parsing.
//!
//! Every error names the field it is about (`tasks[2].filter[1]: bad regex …`), so a user can
//! find the line without reading code. `docs/configuration.md` documents every key.
//!
//! This module owns what is shared: loading, the walk over the file, `server:`, tasks, secrets
//! and value checks. What belongs to one kind of target or source (its keys, defaults and
//! checks) lives in that kind's folder under [`crate::targets`] or [`crate::sources`]; the walk
//! hands each one over (see [`task::validate`] and the `sources:` loop below).

pub mod de;
pub mod raw;
pub mod secrets;
pub mod server;
pub mod task;
pub mod values;

use raw::RawConfig;
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

pub use de::Location;
pub use raw::Ack;
pub use secrets::Auth;
pub use server::{AdminConfig, ServerConfig, ServerTls};
pub use task::TaskConfig;
pub use values::parse_duration;

/// A configuration error: the field path, what is wrong with it, and where the key is.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// The file is not YAML (`field` empty), or a key has the wrong type or name.
    #[error("{}{message}{}", prefix(field), suffix(at))]
    Yaml {
        field: String,
        message: String,
        at: Option<Location>,
    },
    /// A value that deserialized but failed a check.
    #[error("{field}: {message}{}", suffix(at))]
    Invalid {
        field: String,
        message: String,
        at: Option<Location>,
    },
}

fn prefix(field: &str) -> String {
    if field.is_empty() {
        String::new()
    } else {
        format!("{field}: ")
    }
}

fn suffix(at: &Option<Location>) -> String {
    at.map(|l| format!(" ({l})")).unwrap_or_default()
}

impl ConfigError {
    /// The key's place in `text`, for an error that does not know it yet.
    fn located(mut self, text: &str) -> ConfigError {
        if let ConfigError::Invalid { field, at, .. } = &mut self
            && at.is_none()
        {
            *at = de::locate(text, field);
        }
        self
    }

    /// The same error in a task file: its field path starts with `FILE: `.
    fn prefixed(mut self, prefix: &str) -> ConfigError {
        if let ConfigError::Invalid { field, .. } | ConfigError::Yaml { field, .. } = &mut self {
            *field = format!("{prefix}{field}");
        }
        self
    }

    /// Where in the file the error is, when known.
    pub fn location(&self) -> Option<Location> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Yaml { at, .. } | ConfigError::Invalid { at, .. } => *at,
        }
    }

    fn from_serde(text: &str, e: serde_path_to_error::Error<serde_yaml_ng::Error>) -> ConfigError {
        let mut field = e.path().to_string();
        if field == "." {
            field.clear();
        }
        let inner = e.inner();
        let message = de::bare_message(inner);
        // An unknown key is named in the message; point at it rather than at its parent.
        let key = message
            .strip_prefix("unknown field `")
            .and_then(|r| r.split_once('`'))
            .map(|(k, _)| k);
        let lookup = match key {
            Some(k) if field.is_empty() => k.to_owned(),
            Some(k) if !field.ends_with(&format!(".{k}")) && field != k => format!("{field}.{k}"),
            _ => field.clone(),
        };
        let at = de::locate(text, &lookup).or_else(|| {
            inner.location().map(|l| Location {
                line: l.line(),
                column: l.column(),
            })
        });
        ConfigError::Yaml { field, message, at }
    }
}

/// A [`ConfigError::Invalid`] for `field`.
pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        message: message.into(),
        at: None,
    }
}

/// The checked configuration.
#[derive(Debug)]
pub struct Config {
    pub server: ServerConfig,
    /// Source names; `default` is always first.
    pub sources: Vec<String>,
    /// What each source (same order) requires of senders; `Auth::None` for no check.
    pub source_auth: Vec<Auth>,
    /// The sources that read Kafka (`sources[*].kafka`), by name.
    pub kafka_sources: Vec<crate::sources::kafka::KafkaSourceConfig>,
    /// Tasks of the main file, then of each task file in order.
    pub tasks: Vec<TaskConfig>,
    /// Every file read, main file first, for reload and `promrelay_config_hash`.
    pub files: Vec<PathBuf>,
    /// A hash of the contents of every file read.
    pub hash: u64,
    /// Things worth telling the operator that do not stop the config (deprecated keys).
    pub warnings: Vec<String>,
}

/// Where the main file's tasks say they come from when the config is not read from a file.
pub const INLINE: &str = "<config>";

impl Config {
    /// Read and validate a config file, and the task files it names.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file, the YAML position or the field.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_overriding(path, None)
    }

    /// [`Config::load`] as it would be with one task file replaced: `(file, Some(text))` reads
    /// `text` for `file` (adding it when the walk does not find it), `(file, None)` leaves
    /// `file` out. The admin API checks a change this way before it writes anything.
    ///
    /// # Errors
    /// As [`Config::load`].
    pub fn load_overriding(
        path: &Path,
        change: Option<(&Path, Option<&str>)>,
    ) -> Result<Config, ConfigError> {
        let text = read(path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::from_yaml_at(&text, base, path, change)
    }

    /// Parse and validate YAML text; relative paths (task files, spools, secrets) resolve
    /// against `base`.
    ///
    /// # Errors
    /// As [`Config::load`].
    pub fn from_yaml(text: &str, base: &Path) -> Result<Config, ConfigError> {
        Config::from_yaml_at(text, base, Path::new(INLINE), None)
    }

    fn from_yaml_at(
        text: &str,
        base: &Path,
        origin: &Path,
        change: Option<(&Path, Option<&str>)>,
    ) -> Result<Config, ConfigError> {
        let raw: RawConfig =
            serde_path_to_error::deserialize(serde_yaml_ng::Deserializer::from_str(text))
                .map_err(|e| ConfigError::from_serde(text, e))?;
        let mut files = vec![TaskSource {
            path: origin.to_path_buf(),
            prefix: String::new(),
            text: text.to_owned(),
            values: task_values(text),
            tasks: Vec::new(),
        }];
        let mut hasher = DefaultHasher::new();
        text.hash(&mut hasher);
        let mut paths = task_file_paths(&raw, base)?;
        if let Some((file, Some(_))) = change
            && !paths.iter().any(|p| p == file)
        {
            paths.push(file.to_path_buf());
        }
        for path in paths {
            let text = match change {
                Some((file, replaced)) if file == path => match replaced {
                    Some(t) => t.to_owned(),
                    None => continue,
                },
                _ => read(&path)?,
            };
            files.push(TaskSource::parse(&path, &text, &mut hasher)?);
        }
        validate_sources(raw, files, base, hasher.finish()).map_err(|e| e.located(text))
    }

    /// The hash [`Config::load`] would give the files as they are now, without checking them
    /// (a file that does not parse is hashed alone): to notice that they changed.
    ///
    /// # Errors
    /// A file that cannot be read.
    pub fn files_hash(path: &Path) -> Result<u64, ConfigError> {
        let text = read(path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut hasher = DefaultHasher::new();
        text.hash(&mut hasher);
        if let Ok(raw) = serde_yaml_ng::from_str::<RawConfig>(&text) {
            for p in task_file_paths(&raw, base)? {
                let t = read(&p)?;
                p.hash(&mut hasher);
                t.hash(&mut hasher);
            }
        }
        Ok(hasher.finish())
    }
}

/// The task files of a config: each `task_files` glob's matches in order, then the files of
/// `server.admin.tasks_dir`, each file once.
fn task_file_paths(raw: &RawConfig, base: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let mut out: Vec<PathBuf> = Vec::new();
    for (i, pattern) in raw.task_files.iter().enumerate() {
        for path in glob_files(base, pattern, &format!("task_files[{i}]"))? {
            if !out.contains(&path) {
                out.push(path);
            }
        }
    }
    if let Some(dir) = raw
        .server
        .admin
        .as_ref()
        .and_then(|a| a.tasks_dir.as_deref())
    {
        let pattern = Path::new(dir).join("*.yaml");
        for path in glob_files(base, &pattern.to_string_lossy(), "server.admin.tasks_dir")? {
            if !out.contains(&path) {
                out.push(path);
            }
        }
    }
    Ok(out)
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// The files a glob matches (relative to `base`), sorted; none is not an error (as with
/// Prometheus' `rule_files`).
fn glob_files(base: &Path, pattern: &str, field: &str) -> Result<Vec<PathBuf>, ConfigError> {
    let full = base.join(pattern);
    let paths = glob::glob(&full.to_string_lossy())
        .map_err(|e| invalid(field, format!("{pattern:?} is not a valid glob: {e}")))?;
    let mut out: Vec<PathBuf> = paths
        .filter_map(Result::ok)
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    Ok(out)
}

/// The tasks of one file, with each task's YAML as written (for the API and its ETags).
struct TaskSource {
    path: PathBuf,
    /// Put before each field path: empty for the main file, `FILE: ` for a task file.
    prefix: String,
    /// The file's text, to locate an error's key in.
    text: String,
    values: Vec<serde_json::Value>,
    tasks: Vec<raw::RawTask>,
}

impl TaskSource {
    fn parse(
        path: &Path,
        text: &str,
        hasher: &mut DefaultHasher,
    ) -> Result<TaskSource, ConfigError> {
        path.hash(hasher);
        text.hash(hasher);
        let prefix = format!("{}: ", path.display());
        let file: raw::RawTaskFile =
            serde_path_to_error::deserialize(serde_yaml_ng::Deserializer::from_str(text))
                .map_err(|e| ConfigError::from_serde(text, e).prefixed(&prefix))?;
        Ok(TaskSource {
            prefix,
            text: text.to_owned(),
            path: path.to_path_buf(),
            values: task_values(text),
            tasks: file.tasks,
        })
    }
}

/// Each entry of `tasks:` in `text` as JSON (what the admin API shows and hashes).
fn task_values(text: &str) -> Vec<serde_json::Value> {
    let Ok(doc) = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text) else {
        return Vec::new();
    };
    doc.get("tasks")
        .and_then(|t| t.as_sequence())
        .map(|tasks| {
            tasks
                .iter()
                .map(|t| serde_json::to_value(t).unwrap_or(serde_json::Value::Null))
                .collect()
        })
        .unwrap_or_default()
}

/// Turn the raw structs into checked types.
///
/// # Errors
/// The first problem found, with its field path.
pub fn validate(raw: RawConfig, base: &Path) -> Result<Config, ConfigError> {
    let main = TaskSource {
        path: PathBuf::from(INLINE),
        prefix: String::new(),
        text: String::new(),
        values: Vec::new(),
        tasks: Vec::new(),
    };
    validate_sources(raw, vec![main], base, 0)
}

fn validate_sources(
    mut raw: RawConfig,
    mut files: Vec<TaskSource>,
    base: &Path,
    hash: u64,
) -> Result<Config, ConfigError> {
    let server = server::validate(&raw.server, base)?;
    let mut warnings = Vec::new();
    if raw.server.admin_listen.is_some() {
        warnings
            .push("server.admin_listen is deprecated: move it to server.admin.listen".to_owned());
    }

    let mut sources = vec!["default".to_owned()];
    let mut source_auth = vec![Auth::None];
    let mut default_configured = false;
    let mut kafka_sources = Vec::new();
    for (i, src) in raw.sources.iter().enumerate() {
        let auth = src.validate(&format!("sources[{i}]"), base)?;
        if src.name == "default" && src.kafka.is_some() {
            return Err(invalid(
                format!("sources[{i}].name"),
                "\"default\" is the HTTP path /api/v1/write; give the Kafka source its own name",
            ));
        }
        if src.name == "default" && !default_configured {
            // Configures the always-present default source (its auth).
            default_configured = true;
            source_auth[0] = auth;
            continue;
        }
        let field = format!("sources[{i}].name");
        if src.name.is_empty()
            || !src
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        {
            return Err(invalid(
                field,
                format!(
                    "{:?} must be non-empty and use only A-Z a-z 0-9 - _ .",
                    src.name
                ),
            ));
        }
        if sources.contains(&src.name) {
            return Err(invalid(
                field,
                format!(
                    "source {:?} is defined twice (\"default\" always exists)",
                    src.name
                ),
            ));
        }
        if let Some(k) = &src.kafka {
            let at = format!("sources[{i}]");
            if !matches!(auth, Auth::None) {
                return Err(invalid(
                    format!("{at}.kafka"),
                    "a Kafka source takes no HTTP writes: drop basic_auth/bearer_token",
                ));
            }
            kafka_sources.push(k.validate(&src.name, &format!("{at}.kafka"), base)?);
        }
        sources.push(src.name.clone());
        source_auth.push(auth);
    }

    if let Some(main) = files.first_mut() {
        main.tasks = std::mem::take(&mut raw.tasks);
    }
    let mut spool_dirs = HashMap::new();
    let mut task_names = HashMap::new();
    let mut cx = task::TaskContext {
        base,
        prefix: String::new(),
        sources: &sources,
        spool_dirs: &mut spool_dirs,
        task_names: &mut task_names,
    };
    let mut tasks = Vec::new();
    let mut paths = Vec::new();
    for file in files {
        paths.push(file.path.clone());
        cx.prefix = file.prefix.clone();
        let mut values = file.values.into_iter();
        for (i, t) in file.tasks.into_iter().enumerate() {
            let at = format!("tasks[{i}]");
            let origin = task::Origin {
                file: file.path.clone(),
                raw: values.next().unwrap_or(serde_json::Value::Null),
            };
            let task = task::validate(t, &at, origin, &mut cx);
            // Locate the key in the task's own file, then say which file it is.
            tasks.push(task.map_err(|e| e.located(&file.text).prefixed(&file.prefix))?);
        }
    }
    Ok(Config {
        server,
        sources,
        source_auth,
        kafka_sources,
        tasks,
        files: paths,
        hash,
        warnings,
    })
}

#[cfg(test)]
mod tests;
