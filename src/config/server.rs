//! `server:`: listen addresses, input limits, answers, timeouts and TLS of the relay itself.

use super::raw::RawServer;
use super::secrets::{Auth, SecretSources, expected};
use super::values::{duration, existing_file, positive};
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
