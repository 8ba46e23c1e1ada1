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
use std::collections::{HashMap, HashSet};
use std::path::Path;

pub use de::Location;
pub use raw::Ack;
pub use secrets::Auth;
pub use server::{ServerConfig, ServerTls};
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
    pub tasks: Vec<TaskConfig>,
}

impl Config {
    /// Read and validate a config file.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file, the YAML position or the field.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::from_yaml(&text, base)
    }

    /// Parse and validate YAML text; relative paths resolve against `base`.
    ///
    /// # Errors
    /// As [`Config::load`].
    pub fn from_yaml(text: &str, base: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig =
            serde_path_to_error::deserialize(serde_yaml_ng::Deserializer::from_str(text))
                .map_err(|e| ConfigError::from_serde(text, e))?;
        validate(raw, base).map_err(|e| e.located(text))
    }
}

/// Turn the raw structs into checked types.
///
/// # Errors
/// The first problem found, with its field path.
pub fn validate(raw: RawConfig, base: &Path) -> Result<Config, ConfigError> {
    let server = server::validate(&raw.server, base)?;

    let mut sources = vec!["default".to_owned()];
    let mut source_auth = vec![Auth::None];
    let mut default_configured = false;
    for (i, src) in raw.sources.iter().enumerate() {
        let auth = src.validate(&format!("sources[{i}]"), base)?;
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
        sources.push(src.name.clone());
        source_auth.push(auth);
    }

    let mut spool_dirs = HashMap::new();
    let mut task_names = HashSet::new();
    let mut cx = task::TaskContext {
        base,
        sources: &sources,
        spool_dirs: &mut spool_dirs,
        task_names: &mut task_names,
    };
    let tasks = raw
        .tasks
        .into_iter()
        .enumerate()
        .map(|(i, t)| task::validate(t, &format!("tasks[{i}]"), &mut cx))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Config {
        server,
        sources,
        source_auth,
        tasks,
    })
}

#[cfg(test)]
mod tests;
