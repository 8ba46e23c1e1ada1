//! Configuration: one YAML file, read into [`raw`] structs, then validated once into the
//! compiled types below. Nothing downstream sees a string that still needs parsing.
//!
//! Every error names the field it is about (`tasks[2].filter[1]: bad regex …`), so a user can
//! find the line without reading code. `docs/configuration.md` documents every key.

pub mod raw;

use crate::filter::Filter;
use crate::relabel::{LabelSet, is_valid_label_name};
use raw::{LabelsSpec, Lines, RawConfig, RawQueue, RawTarget};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A configuration error: the field path and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Yaml(String),
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        message: message.into(),
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

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub max_body_bytes: usize,
    pub max_decoded_bytes: usize,
    pub backpressure_status: u16,
    pub retry_after: Duration,
    pub shutdown_timeout: Duration,
    /// Pipeline shards: runtime worker threads, each with its own data-path buffers.
    pub shards: usize,
    pub max_series_per_request: usize,
    pub max_labels_per_series: usize,
    pub max_label_name_bytes: usize,
    pub max_label_value_bytes: usize,
    pub ack_timeout: Duration,
    /// Where `/metrics` and the health endpoints are served when not on `listen`.
    pub admin_listen: Option<SocketAddr>,
    pub tls: Option<ServerTls>,
}

/// HTTPS for the server: files checked to exist at load, read at start.
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_ca_file: Option<PathBuf>,
}

pub use crate::sink::spool::{OnFull, SpoolConfig};
pub use raw::Ack;

#[derive(Debug)]
pub struct TaskConfig {
    pub name: String,
    pub description: String,
    pub enabled: bool,
    pub source: String,
    pub filter: Filter,
    pub labels: LabelSet,
    /// When ingest answers: resolved (`spooled` when a target has a spool, else `queued`).
    pub ack: Ack,
    pub targets: Vec<TargetConfig>,
}

#[derive(Debug)]
pub struct TargetConfig {
    pub name: String,
    pub external_labels: LabelSet,
    pub queue: QueueConfig,
    pub spool: Option<SpoolConfig>,
    pub kind: TargetKind,
}

// Built once at start; the size difference between variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum TargetKind {
    RemoteWrite(RemoteWriteConfig),
    File(FileConfig),
    Kafka(KafkaConfig),
}

pub use raw::{KafkaCompression, KafkaFormat, KafkaKey};

/// One piece of a topic template: literal text or a `{label}` placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicPart {
    Text(String),
    Label(String),
}

#[derive(Clone)]
pub struct KafkaConfig {
    pub topic: Vec<TopicPart>,
    pub key: KafkaKey,
    pub format: KafkaFormat,
    pub compression: KafkaCompression,
    pub max_message_bytes: usize,
    /// Every librdkafka producer setting: the defaults, then sasl/tls, then `options`.
    pub client: Vec<(String, String)>,
}

impl std::fmt::Debug for KafkaConfig {
    // The client settings may hold the SASL password: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let client: Vec<(&str, &str)> = self
            .client
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str(),
                    if k.contains("password") {
                        "<secret>"
                    } else {
                        v.as_str()
                    },
                )
            })
            .collect();
        f.debug_struct("KafkaConfig")
            .field("topic", &self.topic)
            .field("key", &self.key)
            .field("format", &self.format)
            .field("compression", &self.compression)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("client", &client)
            .finish()
    }
}

impl KafkaConfig {
    /// The topic when it has no placeholders.
    pub fn fixed_topic(&self) -> Option<&str> {
        match self.topic.as_slice() {
            [TopicPart::Text(t)] => Some(t),
            _ => None,
        }
    }
}

/// Split `metrics.{__name__}` into text and label parts.
///
/// # Errors
/// An unclosed brace, an empty or invalid label name, or characters Kafka does not allow in a
/// topic name.
pub fn parse_topic(text: &str) -> Result<Vec<TopicPart>, String> {
    let mut parts = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        match rest.find('{') {
            Some(0) => {
                let close = rest
                    .find('}')
                    .ok_or_else(|| format!("{text:?}: unclosed {{"))?;
                let name = &rest[1..close];
                if !is_valid_label_name(name) {
                    return Err(format!("{text:?}: {{{name}}} is not a label name"));
                }
                parts.push(TopicPart::Label(name.to_owned()));
                rest = &rest[close + 1..];
            }
            found => {
                let end = found.unwrap_or(rest.len());
                let lit = &rest[..end];
                if let Some(bad) = lit
                    .chars()
                    .find(|c| !(c.is_ascii_alphanumeric() || "._-".contains(*c)))
                {
                    return Err(format!(
                        "{text:?}: {bad:?} is not allowed in a Kafka topic name (use A-Z a-z 0-9 . _ -)"
                    ));
                }
                parts.push(TopicPart::Text(lit.to_owned()));
                rest = &rest[end..];
            }
        }
    }
    if parts.is_empty() {
        return Err("must not be empty".into());
    }
    Ok(parts)
}

#[derive(Debug, Clone)]
pub struct QueueConfig {
    pub capacity: usize,
    pub max_samples_per_send: usize,
    pub shards: usize,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    pub batch_send_deadline: Duration,
}

/// How a remote-write target authenticates. Secrets are already read from their files.
#[derive(Clone)]
pub enum Auth {
    None,
    Basic { username: String, password: String },
    Bearer(String),
}

impl Auth {
    /// The `Authorization` header value this auth sends (or, for ingest, expects).
    pub fn header_value(&self) -> Option<String> {
        match self {
            Auth::None => None,
            Auth::Basic { username, password } => Some(format!(
                "Basic {}",
                base64(format!("{username}:{password}").as_bytes())
            )),
            Auth::Bearer(token) => Some(format!("Bearer {token}")),
        }
    }
}

/// Standard base64 with padding, for the basic-auth header.
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

impl std::fmt::Debug for Auth {
    // Never print a secret, not even in a debug log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::None => write!(f, "None"),
            Auth::Basic { username, .. } => write!(f, "Basic({username}, <secret>)"),
            Auth::Bearer(_) => write!(f, "Bearer(<secret>)"),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct TlsConfig {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub insecure_skip_verify: bool,
}

#[derive(Debug, Clone)]
pub struct RemoteWriteConfig {
    pub url: hyper::Uri,
    pub auth: Auth,
    pub tls: TlsConfig,
    pub headers: Vec<(hyper::header::HeaderName, hyper::header::HeaderValue)>,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct FileConfig {
    /// `None` for standard output (`path: "-"`).
    pub path: Option<PathBuf>,
}

/// Parse a Prometheus-style duration: `500ms`, `30s`, `5m`, `1h`, `1m30s`.
///
/// # Errors
/// A message saying what was expected.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let err = || format!("{text:?} is not a duration (examples: 500ms, 30s, 5m, 1h30m)");
    let t = text.trim();
    if t.is_empty() {
        return Err(err());
    }
    let mut total = Duration::ZERO;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(err());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| err())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(1),
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            "d" => Duration::from_secs(86400),
            _ => return Err(err()),
        };
        total += unit * u32::try_from(n).map_err(|_| err())?;
        rest = &rest[unit_len..];
    }
    Ok(total)
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

    /// Parse and validate YAML text; relative secret files resolve against `base`.
    ///
    /// # Errors
    /// As [`Config::load`].
    pub fn from_yaml(text: &str, base: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig =
            serde_yaml_ng::from_str(text).map_err(|e| ConfigError::Yaml(e.to_string()))?;
        validate(raw, base)
    }
}

/// Turn the raw structs into checked types.
///
/// # Errors
/// The first problem found, with its field path.
pub fn validate(raw: RawConfig, base: &Path) -> Result<Config, ConfigError> {
    let s = &raw.server;
    let server = ServerConfig {
        listen: s.listen.parse().map_err(|_| {
            invalid(
                "server.listen",
                format!("{:?} is not an IP:port address", s.listen),
            )
        })?,
        max_body_bytes: positive(s.max_body_bytes, "server.max_body_bytes")?,
        max_decoded_bytes: positive(s.max_decoded_bytes, "server.max_decoded_bytes")?,
        backpressure_status: match s.backpressure_status {
            429 | 503 => s.backpressure_status,
            other => {
                return Err(invalid(
                    "server.backpressure_status",
                    format!("must be 429 or 503, got {other}"),
                ));
            }
        },
        retry_after: duration(&s.retry_after, "server.retry_after")?,
        shutdown_timeout: duration(&s.shutdown_timeout, "server.shutdown_timeout")?,
        shards: match s.shards {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n if n <= 1024 => n as usize,
            _ => return Err(invalid("server.shards", "must be at most 1024")),
        },
        max_series_per_request: positive(
            s.max_series_per_request,
            "server.max_series_per_request",
        )?,
        max_labels_per_series: positive(s.max_labels_per_series, "server.max_labels_per_series")?,
        max_label_name_bytes: positive(s.max_label_name_bytes, "server.max_label_name_bytes")?,
        max_label_value_bytes: positive(s.max_label_value_bytes, "server.max_label_value_bytes")?,
        ack_timeout: duration(&s.ack_timeout, "server.ack_timeout")?,
        admin_listen: match &s.admin_listen {
            None => None,
            Some(a) => Some(a.parse().map_err(|_| {
                invalid(
                    "server.admin_listen",
                    format!("{a:?} is not an IP:port address"),
                )
            })?),
        },
        tls: match &s.tls {
            None => None,
            Some(t) => Some(ServerTls {
                cert_file: existing_file(&t.cert_file, base, "server.tls.cert_file")?,
                key_file: existing_file(&t.key_file, base, "server.tls.key_file")?,
                client_ca_file: t
                    .client_ca_file
                    .as_deref()
                    .map(|f| existing_file(f, base, "server.tls.client_ca_file"))
                    .transpose()?,
            }),
        },
    };
    if server.ack_timeout.is_zero() {
        return Err(invalid("server.ack_timeout", "must be greater than 0"));
    }
    if server.admin_listen == Some(server.listen) {
        return Err(invalid(
            "server.admin_listen",
            "must differ from server.listen (leave it out to serve both on listen)",
        ));
    }
    if server.max_decoded_bytes > u32::MAX as usize {
        return Err(invalid("server.max_decoded_bytes", "must be below 4 GiB"));
    }

    let mut sources = vec!["default".to_owned()];
    let mut source_auth = vec![Auth::None];
    let mut default_configured = false;
    for (i, src) in raw.sources.iter().enumerate() {
        let auth = source_auth_of(src, &format!("sources[{i}]"), base)?;
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

    let mut tasks = Vec::new();
    let mut task_names = HashSet::new();
    let mut spool_dirs: HashMap<PathBuf, String> = HashMap::new();
    for (i, t) in raw.tasks.into_iter().enumerate() {
        let at = format!("tasks[{i}]");
        if t.name.trim().is_empty() {
            return Err(invalid(format!("{at}.name"), "must not be empty"));
        }
        if !task_names.insert(t.name.clone()) {
            return Err(invalid(
                format!("{at}.name"),
                format!("task {:?} is defined twice", t.name),
            ));
        }
        if !sources.contains(&t.source) {
            return Err(invalid(
                format!("{at}.source"),
                format!(
                    "unknown source {:?}; define it under `sources:` (known: {})",
                    t.source,
                    sources.join(", ")
                ),
            ));
        }
        let filter = match &t.filter {
            None => Filter::default(),
            Some(Lines::Text(text)) => Filter::parse(text.lines())
                .map_err(|(l, e)| invalid(format!("{at}.filter line {}", l + 1), e.to_string()))?,
            Some(Lines::List(list)) => Filter::parse(list.iter().map(String::as_str))
                .map_err(|(l, e)| invalid(format!("{at}.filter[{l}]"), e.to_string()))?,
        };
        let labels = match &t.labels {
            None => Ok(LabelSet::default()),
            Some(LabelsSpec::Text(text)) => LabelSet::parse_lines(text),
            Some(LabelsSpec::Map(map)) => {
                LabelSet::new(map.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            }
        }
        .map_err(|e| invalid(format!("{at}.labels"), e.to_string()))?;
        if t.targets.is_empty() && t.enabled {
            return Err(invalid(
                format!("{at}.targets"),
                "an enabled task needs at least one target",
            ));
        }
        let mut targets = Vec::new();
        let mut target_names = HashSet::new();
        for (j, target) in t.targets.into_iter().enumerate() {
            let tat = format!("{at}.targets[{j}]");
            let target = validate_target(target, &tat, base)?;
            if target.name.trim().is_empty() {
                return Err(invalid(format!("{tat}.name"), "must not be empty"));
            }
            if !target_names.insert(target.name.clone()) {
                return Err(invalid(
                    format!("{tat}.name"),
                    format!("target {:?} is defined twice in this task", target.name),
                ));
            }
            if let Some(sp) = &target.spool
                && let Some(other) = spool_dirs.insert(sp.dir.clone(), tat.clone())
            {
                return Err(invalid(
                    format!("{tat}.spool.dir"),
                    format!(
                        "{} is already the spool of {other}; each target needs its own",
                        sp.dir.display()
                    ),
                ));
            }
            targets.push(target);
        }
        let spooled = targets.iter().any(|t| t.spool.is_some());
        let ack = match t.ack {
            None if spooled => Ack::Spooled,
            None => Ack::Queued,
            Some(Ack::Spooled) if !spooled => {
                return Err(invalid(
                    format!("{at}.ack"),
                    "`spooled` needs a spool on at least one target of the task",
                ));
            }
            Some(a) => a,
        };
        tasks.push(TaskConfig {
            ack,
            name: t.name,
            description: t.description,
            enabled: t.enabled,
            source: t.source,
            filter,
            labels,
            targets,
        });
    }
    Ok(Config {
        server,
        sources,
        source_auth,
        tasks,
    })
}

/// The credentials a source requires: basic auth or a bearer token, secrets from files or inline.
fn source_auth_of(src: &raw::RawSource, at: &str, base: &Path) -> Result<Auth, ConfigError> {
    let bearer = src.bearer_token.is_some()
        || src.bearer_token_file.is_some()
        || src.bearer_token_env.is_some();
    match (&src.basic_auth, bearer) {
        (Some(_), true) => Err(invalid(
            at,
            "set either basic_auth or bearer_token(_file), not both",
        )),
        (Some(b), false) => Ok(Auth::Basic {
            username: b.username.clone(),
            password: one_secret(
                SecretSources {
                    inline: &b.password,
                    file: &b.password_file,
                    env: &b.password_env,
                },
                base,
                &format!("{at}.basic_auth.password"),
            )?,
        }),
        (None, true) => Ok(Auth::Bearer(one_secret(
            SecretSources {
                inline: &src.bearer_token,
                file: &src.bearer_token_file,
                env: &src.bearer_token_env,
            },
            base,
            &format!("{at}.bearer_token"),
        )?)),
        (None, false) => Ok(Auth::None),
    }
}

fn positive(v: u64, field: &str) -> Result<usize, ConfigError> {
    if v == 0 {
        return Err(invalid(field, "must be greater than 0"));
    }
    usize::try_from(v).map_err(|_| invalid(field, "is too large"))
}

fn duration(text: &str, field: &str) -> Result<Duration, ConfigError> {
    parse_duration(text).map_err(|m| invalid(field, m))
}

fn external_labels(
    map: &std::collections::BTreeMap<String, String>,
    field: &str,
) -> Result<LabelSet, ConfigError> {
    if let Some(bad) = map.keys().find(|k| !is_valid_label_name(k)) {
        return Err(invalid(
            field,
            format!("label name {bad:?} is not valid: use [a-zA-Z_][a-zA-Z0-9_]*"),
        ));
    }
    LabelSet::new(map.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .map_err(|e| invalid(field, e.to_string()))
}

fn queue(q: &RawQueue, at: &str) -> Result<QueueConfig, ConfigError> {
    let f = |name: &str| format!("{at}.queue.{name}");
    let cfg = QueueConfig {
        capacity: positive(q.capacity, &f("capacity"))?,
        max_samples_per_send: positive(q.max_samples_per_send, &f("max_samples_per_send"))?,
        shards: positive(q.shards, &f("shards"))?,
        min_backoff: duration(&q.min_backoff, &f("min_backoff"))?,
        max_backoff: duration(&q.max_backoff, &f("max_backoff"))?,
        batch_send_deadline: duration(&q.batch_send_deadline, &f("batch_send_deadline"))?,
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

/// Read a secret from a file (trailing newline trimmed), resolving relative paths.
fn read_secret(path: &str, base: &Path, field: &str) -> Result<String, ConfigError> {
    let p = base.join(path);
    let text = std::fs::read_to_string(&p)
        .map_err(|e| invalid(field, format!("cannot read {}: {e}", p.display())))?;
    Ok(text.trim_end_matches(['\n', '\r']).to_owned())
}

/// Where a secret may come from: inline, a file, or an environment variable; exactly one.
struct SecretSources<'a> {
    inline: &'a Option<String>,
    file: &'a Option<String>,
    env: &'a Option<String>,
}

/// Read the one secret configured for `field` (`{field}`, `{field}_file` or `{field}_env`).
fn one_secret(src: SecretSources<'_>, base: &Path, field: &str) -> Result<String, ConfigError> {
    match (src.inline, src.file, src.env) {
        (Some(s), None, None) => Ok(s.clone()),
        (None, Some(f), None) => read_secret(f, base, &format!("{field}_file")),
        (None, None, Some(var)) => match std::env::var(var) {
            Ok(v) if !v.is_empty() => Ok(v),
            _ => Err(invalid(
                format!("{field}_env"),
                format!("environment variable {var:?} is not set or empty"),
            )),
        },
        (None, None, None) => Err(invalid(
            field,
            format!("set one of {field}, {field}_file or {field}_env"),
        )),
        _ => Err(invalid(
            field,
            format!("set only one of {field}, {field}_file and {field}_env"),
        )),
    }
}

fn validate_target(target: RawTarget, at: &str, base: &Path) -> Result<TargetConfig, ConfigError> {
    match target {
        RawTarget::RemoteWrite(rw) => {
            let url: hyper::Uri = rw.url.parse().map_err(|e| {
                invalid(
                    format!("{at}.url"),
                    format!("{:?} is not a URL: {e}", rw.url),
                )
            })?;
            let https = match url.scheme_str() {
                Some("http") => false,
                Some("https") => true,
                _ => {
                    return Err(invalid(
                        format!("{at}.url"),
                        format!("{:?} must start with http:// or https://", rw.url),
                    ));
                }
            };
            if url.host().is_none() {
                return Err(invalid(
                    format!("{at}.url"),
                    format!("{:?} has no host", rw.url),
                ));
            }
            let mut auths = Vec::new();
            if let Some(b) = &rw.basic_auth {
                let password = one_secret(
                    SecretSources {
                        inline: &b.password,
                        file: &b.password_file,
                        env: &b.password_env,
                    },
                    base,
                    &format!("{at}.basic_auth.password"),
                )?;
                auths.push(Auth::Basic {
                    username: b.username.clone(),
                    password,
                });
            }
            if rw.bearer_token.is_some()
                || rw.bearer_token_file.is_some()
                || rw.bearer_token_env.is_some()
            {
                auths.push(Auth::Bearer(one_secret(
                    SecretSources {
                        inline: &rw.bearer_token,
                        file: &rw.bearer_token_file,
                        env: &rw.bearer_token_env,
                    },
                    base,
                    &format!("{at}.bearer_token"),
                )?));
            }
            if let Some(k) = &rw.access_key {
                // An AccessKey ID/Secret pair is sent as basic auth, as the managed service expects.
                let secret = one_secret(
                    SecretSources {
                        inline: &k.secret,
                        file: &k.secret_file,
                        env: &k.secret_env,
                    },
                    base,
                    &format!("{at}.access_key.secret"),
                )?;
                auths.push(Auth::Basic {
                    username: k.id.clone(),
                    password: secret,
                });
            }
            if auths.len() > 1 {
                return Err(invalid(
                    at,
                    "set at most one of basic_auth, bearer_token(_file) and access_key",
                ));
            }
            let tls = match rw.tls {
                None => TlsConfig::default(),
                Some(t) => {
                    if !https {
                        return Err(invalid(
                            format!("{at}.tls"),
                            "is only used with an https:// url",
                        ));
                    }
                    tls_files(&t, at, base)?
                }
            };
            let mut headers = Vec::new();
            for (k, v) in &rw.headers {
                let name = hyper::header::HeaderName::from_bytes(k.as_bytes()).map_err(|_| {
                    invalid(
                        format!("{at}.headers"),
                        format!("{k:?} is not a valid header name"),
                    )
                })?;
                let value = hyper::header::HeaderValue::from_str(v).map_err(|_| {
                    invalid(format!("{at}.headers.{k}"), "is not a valid header value")
                })?;
                headers.push((name, value));
            }
            let timeout = duration(&rw.timeout, &format!("{at}.timeout"))?;
            if timeout.is_zero() {
                return Err(invalid(format!("{at}.timeout"), "must be greater than 0"));
            }
            Ok(TargetConfig {
                external_labels: external_labels(
                    &rw.external_labels,
                    &format!("{at}.external_labels"),
                )?,
                queue: queue(&rw.queue, at)?,
                spool: spool(rw.spool.as_ref(), at, base)?,
                name: rw.name,
                kind: TargetKind::RemoteWrite(RemoteWriteConfig {
                    url,
                    auth: auths.pop().unwrap_or(Auth::None),
                    tls,
                    headers,
                    timeout,
                }),
            })
        }
        RawTarget::Kafka(k) => validate_kafka(k, at, base),
        RawTarget::File(f) => {
            if f.path.trim().is_empty() {
                return Err(invalid(
                    format!("{at}.path"),
                    "must not be empty (use \"-\" for standard output)",
                ));
            }
            let mut q = queue(&f.queue, at)?;
            q.shards = 1; // one writer keeps lines in arrival order
            Ok(TargetConfig {
                external_labels: external_labels(
                    &f.external_labels,
                    &format!("{at}.external_labels"),
                )?,
                queue: q,
                spool: spool(f.spool.as_ref(), at, base)?,
                name: f.name,
                kind: TargetKind::File(FileConfig {
                    path: (f.path != "-").then(|| base.join(&f.path)),
                }),
            })
        }
    }
}

/// A path (resolved against the config's directory) that must name a file.
fn existing_file(f: &str, base: &Path, field: &str) -> Result<PathBuf, ConfigError> {
    let p = base.join(f);
    if !p.is_file() {
        return Err(invalid(
            field,
            format!("{} is not a readable file", p.display()),
        ));
    }
    Ok(p)
}

/// Check a `spool:` block.
fn spool(
    raw: Option<&raw::RawSpool>,
    at: &str,
    base: &Path,
) -> Result<Option<SpoolConfig>, ConfigError> {
    let Some(sp) = raw else { return Ok(None) };
    if sp.dir.trim().is_empty() {
        return Err(invalid(format!("{at}.spool.dir"), "must not be empty"));
    }
    if sp.max_bytes < 1 << 20 {
        return Err(invalid(
            format!("{at}.spool.max_bytes"),
            "must be at least 1048576 (1 MiB)",
        ));
    }
    let fsync_interval = duration(&sp.fsync_interval, &format!("{at}.spool.fsync_interval"))?;
    if fsync_interval.is_zero() {
        return Err(invalid(
            format!("{at}.spool.fsync_interval"),
            "must be greater than 0",
        ));
    }
    Ok(Some(SpoolConfig {
        dir: base.join(&sp.dir),
        max_bytes: sp.max_bytes,
        on_full: match sp.on_full {
            raw::OnFull::Block => OnFull::Block,
            raw::OnFull::DropOldest => OnFull::DropOldest,
        },
        fsync_interval,
    }))
}

/// Check a `tls:` block: files that exist (resolved against the config's directory), and a
/// client certificate only together with its key.
fn tls_files(t: &raw::RawTls, at: &str, base: &Path) -> Result<TlsConfig, ConfigError> {
    if t.cert_file.is_some() != t.key_file.is_some() {
        return Err(invalid(
            format!("{at}.tls"),
            "cert_file and key_file go together",
        ));
    }
    let file = |f: &Option<String>, name: &str| -> Result<Option<PathBuf>, ConfigError> {
        f.as_deref()
            .map(|f| existing_file(f, base, &format!("{at}.tls.{name}")))
            .transpose()
    };
    Ok(TlsConfig {
        ca_file: file(&t.ca_file, "ca_file")?,
        cert_file: file(&t.cert_file, "cert_file")?,
        key_file: file(&t.key_file, "key_file")?,
        insecure_skip_verify: t.insecure_skip_verify,
    })
}

fn validate_kafka(k: raw::RawKafka, at: &str, base: &Path) -> Result<TargetConfig, ConfigError> {
    let brokers: Vec<&str> = k
        .brokers
        .split(',')
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .collect();
    if brokers.is_empty() {
        return Err(invalid(
            format!("{at}.brokers"),
            "must list at least one host:port",
        ));
    }
    if let Some(b) = brokers.iter().find(|b| !b.contains(':')) {
        return Err(invalid(
            format!("{at}.brokers"),
            format!("{b:?} must be host:port"),
        ));
    }
    let topic = parse_topic(&k.topic).map_err(|m| invalid(format!("{at}.topic"), m))?;
    let max_message_bytes = positive(k.max_message_bytes, &format!("{at}.max_message_bytes"))?;
    // Defaults that lose nothing; the payload is already compressed, so Kafka's own
    // compression stays off unless the user asks for it in `options`.
    let mut client: Vec<(String, String)> = vec![
        ("bootstrap.servers".into(), brokers.join(",")),
        ("acks".into(), "all".into()),
        ("enable.idempotence".into(), "true".into()),
        ("compression.type".into(), "none".into()),
        ("linger.ms".into(), "5".into()),
        // librdkafka refuses messages over message.max.bytes; leave room above our cap for the
        // framing and for a single oversized series.
        (
            "message.max.bytes".into(),
            (max_message_bytes.max(1_000_000) * 2)
                .min(1_000_000_000)
                .to_string(),
        ),
    ];
    let mut protocol_tls = false;
    if let Some(t) = &k.tls {
        protocol_tls = true;
        let tls = tls_files(t, at, base)?;
        let settings = [
            ("ssl.ca.location", &tls.ca_file),
            ("ssl.certificate.location", &tls.cert_file),
            ("ssl.key.location", &tls.key_file),
        ];
        for (key, path) in settings {
            if let Some(p) = path {
                client.push((key.into(), p.display().to_string()));
            }
        }
        if tls.insecure_skip_verify {
            client.push(("enable.ssl.certificate.verification".into(), "false".into()));
        }
    }
    if let Some(s) = &k.sasl {
        let mechanism = s.mechanism.to_ascii_uppercase();
        if !["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"].contains(&mechanism.as_str()) {
            return Err(invalid(
                format!("{at}.sasl.mechanism"),
                format!(
                    "{:?}: use PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512",
                    s.mechanism
                ),
            ));
        }
        let password = one_secret(
            SecretSources {
                inline: &s.password,
                file: &s.password_file,
                env: &s.password_env,
            },
            base,
            &format!("{at}.sasl.password"),
        )?;
        client.push(("sasl.mechanism".into(), mechanism));
        client.push(("sasl.username".into(), s.username.clone()));
        client.push(("sasl.password".into(), password));
    }
    let protocol = match (k.sasl.is_some(), protocol_tls) {
        (false, false) => "plaintext",
        (false, true) => "ssl",
        (true, false) => "sasl_plaintext",
        (true, true) => "sasl_ssl",
    };
    client.push(("security.protocol".into(), protocol.into()));
    for (key, value) in &k.options {
        if key == "bootstrap.servers" {
            return Err(invalid(
                format!("{at}.options"),
                "set brokers with `brokers:`, not bootstrap.servers",
            ));
        }
        client.retain(|(k2, _)| k2 != key);
        client.push((key.clone(), value.clone()));
    }
    Ok(TargetConfig {
        external_labels: external_labels(&k.external_labels, &format!("{at}.external_labels"))?,
        queue: queue(&k.queue, at)?,
        spool: spool(k.spool.as_ref(), at, base)?,
        name: k.name,
        kind: TargetKind::Kafka(KafkaConfig {
            topic,
            key: k.key,
            format: k.format,
            compression: k.compression,
            max_message_bytes,
            client,
        }),
    })
}

#[cfg(test)]
mod tests;
