//! `type: remote_write` keys: URL, credentials, TLS, headers and timeout.

use crate::config::secrets::{Auth, RawBasicAuth, SecretSources, one_secret};
use crate::config::values::nonzero_duration;
use crate::config::{ConfigError, invalid};
use crate::targets::queue::RawQueue;
use crate::targets::spool::{RawOverflow, RawSpool};
use crate::targets::tls::{RawTls, TlsConfig};
use crate::targets::{CommonKeys, TargetConfig};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRemoteWrite {
    pub name: String,
    pub url: String,
    #[serde(default)]
    pub external_labels: BTreeMap<String, String>,
    pub basic_auth: Option<RawBasicAuth>,
    pub bearer_token: Option<String>,
    pub bearer_token_file: Option<String>,
    pub bearer_token_env: Option<String>,
    pub access_key: Option<RawAccessKey>,
    pub tls: Option<RawTls>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default = "default_timeout")]
    #[serde(deserialize_with = "crate::config::de::duration")]
    pub timeout: String,
    #[serde(default)]
    pub queue: RawQueue,
    pub spool: Option<RawSpool>,
    #[serde(default)]
    pub overflow: RawOverflow,
    /// Prometheus' own key and values: `prometheus.WriteRequest` (remote-write 1.0, the
    /// default) or `io.prometheus.write.v2.Request` (2.0, one symbol table per request).
    pub protobuf_message: Option<String>,
}

fn default_timeout() -> String {
    "30s".into()
}

/// An AccessKey ID/Secret pair, sent as basic auth (as the managed service expects).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccessKey {
    pub id: String,
    pub secret: Option<String>,
    pub secret_file: Option<String>,
    pub secret_env: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RemoteWriteConfig {
    pub url: hyper::Uri,
    pub auth: Auth,
    pub tls: TlsConfig,
    pub headers: Vec<(hyper::header::HeaderName, hyper::header::HeaderValue)>,
    pub timeout: Duration,
    /// The message the receiver is sent (`protobuf_message`).
    pub protocol: crate::decode::Protocol,
}

impl RawRemoteWrite {
    /// Check this target (at `at`).
    ///
    /// # Errors
    /// The first bad key, named under `at`.
    pub fn validate(self, at: &str, base: &Path) -> Result<TargetConfig, ConfigError> {
        let url: hyper::Uri = self.url.parse().map_err(|e| {
            invalid(
                format!("{at}.url"),
                format!("{:?} is not a URL: {e}", self.url),
            )
        })?;
        let https = match url.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => {
                return Err(invalid(
                    format!("{at}.url"),
                    format!("{:?} must start with http:// or https://", self.url),
                ));
            }
        };
        if url.host().is_none() {
            return Err(invalid(
                format!("{at}.url"),
                format!("{:?} has no host", self.url),
            ));
        }
        let auth = self.auth(at, base)?;
        let tls = match &self.tls {
            None => TlsConfig::default(),
            Some(_) if !https => {
                return Err(invalid(
                    format!("{at}.tls"),
                    "is only used with an https:// url",
                ));
            }
            Some(t) => t.validate(at, base)?,
        };
        let mut headers = Vec::new();
        for (k, v) in &self.headers {
            let name = hyper::header::HeaderName::from_bytes(k.as_bytes()).map_err(|_| {
                invalid(
                    format!("{at}.headers"),
                    format!("{k:?} is not a valid header name"),
                )
            })?;
            let value = hyper::header::HeaderValue::from_str(v)
                .map_err(|_| invalid(format!("{at}.headers.{k}"), "is not a valid header value"))?;
            headers.push((name, value));
        }
        let timeout = nonzero_duration(&self.timeout, &format!("{at}.timeout"))?;
        let protocol = match self.protobuf_message.as_deref() {
            None | Some("prometheus.WriteRequest") => crate::decode::Protocol::V1,
            Some("io.prometheus.write.v2.Request") => crate::decode::Protocol::V2,
            Some(other) => {
                return Err(invalid(
                    format!("{at}.protobuf_message"),
                    format!(
                        "{other:?} is not a remote-write message; use prometheus.WriteRequest \
                         (1.0, the default) or io.prometheus.write.v2.Request (2.0)"
                    ),
                ));
            }
        };
        let kind = RemoteWriteConfig {
            url,
            auth,
            tls,
            headers,
            timeout,
            protocol,
        };
        let common = CommonKeys {
            name: self.name,
            external_labels: &self.external_labels,
            queue: &self.queue,
            spool: self.spool.as_ref(),
            overflow: &self.overflow,
        };
        TargetConfig::new(common, at, base, kind.into())
    }

    /// At most one of basic_auth, bearer_token and access_key.
    fn auth(&self, at: &str, base: &Path) -> Result<Auth, ConfigError> {
        let mut auths = Vec::new();
        if let Some(b) = &self.basic_auth {
            auths.push(Auth::basic(b, base, at)?);
        }
        let bearer = SecretSources {
            inline: &self.bearer_token,
            file: &self.bearer_token_file,
            env: &self.bearer_token_env,
        };
        if bearer.any() {
            auths.push(Auth::Bearer(one_secret(
                bearer,
                base,
                &format!("{at}.bearer_token"),
            )?));
        }
        if let Some(k) = &self.access_key {
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
        Ok(auths.pop().unwrap_or(Auth::None))
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::path::Path;

    #[test]
    fn protobuf_message_takes_prometheus_own_values() {
        let yaml = |v: &str| {
            format!(
                "tasks:\n  - name: t\n    targets:\n      - {{name: rw, type: remote_write, url: \"http://127.0.0.1:9/w\"{v}}}\n"
            )
        };
        for ok in [
            "",
            ", protobuf_message: prometheus.WriteRequest",
            ", protobuf_message: io.prometheus.write.v2.Request",
        ] {
            Config::from_yaml(&yaml(ok), Path::new(".")).unwrap();
        }
        let err = Config::from_yaml(
            &yaml(", protobuf_message: io.prometheus.write.v3.Request"),
            Path::new("."),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("protobuf_message"), "{err}");
        assert!(err.contains("io.prometheus.write.v2.Request"), "{err}");
    }
}
