//! `server:`: listen addresses, input limits, answers, timeouts and TLS of the relay itself.

use super::raw::RawServer;
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
    /// Where `/metrics` and the health endpoints are served when not on `listen`.
    pub admin_listen: Option<SocketAddr>,
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
        admin_listen: s
            .admin_listen
            .as_deref()
            .map(|a| address(a, "server.admin_listen"))
            .transpose()?,
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
