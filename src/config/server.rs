//! `server:`: listen addresses, input limits, answers, timeouts and TLS of the relay itself.

use super::raw::RawServer;
use super::secrets::{Auth, SecretSources, expected};
use super::values::{duration, existing_file, nonzero_duration, positive};
use super::{ConfigError, invalid};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
    /// Where the admin endpoints are served when not on `listen` (`admin.listen`).
    pub admin_listen: Option<SocketAddr>,
    /// Who may call the admin endpoints, and where API-made tasks live.
    pub admin: AdminConfig,
    pub tls: Option<ServerTls>,
    /// Where targets keep their overflow (resolved against the config file's directory).
    pub data_dir: PathBuf,
    /// Connection and request timeouts of both listeners (see `sources::http::conn`).
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    pub idle_timeout: Duration,
    /// `None`: no HTTP/2 pings.
    pub http2_keepalive_interval: Option<Duration>,
    pub http2_keepalive_timeout: Duration,
    pub http2_max_concurrent_streams: u32,
    /// Connections served at once on `listen` (lowered at start to fit the process's file
    /// descriptor limit).
    pub max_connections: usize,
    /// Bytes of request bodies held at once; at least `max_body_bytes`.
    pub max_inflight_body_bytes: usize,
    pub inflight_body_wait: Duration,
}

/// The share of the machine's memory request bodies may hold by default (1/16) …
const INFLIGHT_MEMORY_SHARE: u64 = 16;
/// … but never more than this many bodies of `max_body_bytes`, nor less than one.
const INFLIGHT_MAX_BODIES: u64 = 16;

/// `max_inflight_body_bytes` when the file does not set it: a sixteenth of the memory this
/// process may use (the cgroup's limit when there is one), within one to sixteen bodies of
/// `max_body_bytes`. 16 × 32 MiB = 512 MiB with the defaults on any machine of 8 GiB or more.
pub fn default_inflight_body_bytes(max_body_bytes: u64, memory: Option<u64>) -> u64 {
    let most = max_body_bytes.saturating_mul(INFLIGHT_MAX_BODIES);
    memory.map_or(most, |m| {
        (m / INFLIGHT_MEMORY_SHARE).clamp(max_body_bytes, most.max(max_body_bytes))
    })
}

/// The memory this process may use: the machine's (`MemTotal`), or its cgroup's limit when
/// lower. `None` where /proc is not there to ask.
fn usable_memory() -> Option<u64> {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .map(|kb| kb * 1024)
        })?;
    // cgroup v2, then v1 (which reports "no limit" as a huge number: min() takes care of it).
    let limit = [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]
    .iter()
    .find_map(|p| std::fs::read_to_string(p).ok()?.trim().parse::<u64>().ok());
    Some(limit.map_or(total, |l| l.min(total)))
}

/// `server.admin`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdminConfig {
    /// Where the task API writes one file per task; `None`: the API is read-only.
    pub tasks_dir: Option<PathBuf>,
    /// Required of every admin request but `/-/healthy` and `/-/ready`; `Auth::None`: nobody
    /// is asked, and changes are allowed only when the admin address is a loopback one.
    pub auth: Auth,
}

/// HTTPS for the server: files checked to exist at load, read at start.
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_ca_file: Option<PathBuf>,
}

fn address(text: &str, field: &str) -> Result<SocketAddr, ConfigError> {
    text.parse()
        .map_err(|_| invalid(field, format!("{text:?} is not an IP:port address")))
}

/// Check `server:`.
///
/// # Errors
/// The first bad key, named `server.KEY`.
pub fn validate(s: &RawServer, base: &Path) -> Result<ServerConfig, ConfigError> {
    let server = ServerConfig {
        listen: address(&s.listen, "server.listen")?,
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
        admin_listen: match (
            &s.admin_listen,
            s.admin.as_ref().and_then(|a| a.listen.as_ref()),
        ) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "server.admin_listen",
                    "is the old spelling of server.admin.listen; set only the new one",
                ));
            }
            (Some(a), None) => Some(address(a, "server.admin_listen")?),
            (None, Some(a)) => Some(address(a, "server.admin.listen")?),
            (None, None) => None,
        },
        admin: match &s.admin {
            None => AdminConfig::default(),
            Some(a) => AdminConfig {
                tasks_dir: a.tasks_dir.as_deref().map(|d| base.join(d)),
                auth: expected(
                    a.basic_auth.as_ref(),
                    SecretSources {
                        inline: &a.bearer_token,
                        file: &a.bearer_token_file,
                        env: &a.bearer_token_env,
                    },
                    "server.admin",
                    base,
                )?,
            },
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
        data_dir: base.join(&s.data_dir),
        header_read_timeout: nonzero_duration(
            &s.header_read_timeout,
            "server.header_read_timeout",
        )?,
        body_read_timeout: nonzero_duration(&s.body_read_timeout, "server.body_read_timeout")?,
        idle_timeout: nonzero_duration(&s.idle_timeout, "server.idle_timeout")?,
        http2_keepalive_interval: Some(duration(
            &s.http2_keepalive_interval,
            "server.http2_keepalive_interval",
        )?)
        .filter(|d| !d.is_zero()),
        http2_keepalive_timeout: nonzero_duration(
            &s.http2_keepalive_timeout,
            "server.http2_keepalive_timeout",
        )?,
        http2_max_concurrent_streams: u32::try_from(positive(
            s.http2_max_concurrent_streams,
            "server.http2_max_concurrent_streams",
        )?)
        .map_err(|_| invalid("server.http2_max_concurrent_streams", "is too large"))?,
        max_connections: positive(s.max_connections, "server.max_connections")?,
        max_inflight_body_bytes: match s.max_inflight_body_bytes {
            Some(n) if n < s.max_body_bytes => {
                return Err(invalid(
                    "server.max_inflight_body_bytes",
                    format!(
                        "must be at least server.max_body_bytes ({}), or one body could never be read",
                        s.max_body_bytes
                    ),
                ));
            }
            Some(n) => positive(n, "server.max_inflight_body_bytes")?,
            None => positive(
                default_inflight_body_bytes(s.max_body_bytes, usable_memory()),
                "server.max_inflight_body_bytes",
            )?,
        },
        inflight_body_wait: duration(&s.inflight_body_wait, "server.inflight_body_wait")?,
    };
    if s.data_dir.trim().is_empty() {
        return Err(invalid("server.data_dir", "must not be empty"));
    }
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
    Ok(server)
}
