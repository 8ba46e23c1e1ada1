//! `type: remote_write` keys: URL, credentials, TLS, headers and timeout.

use crate::config::secrets::{Auth, RawBasicAuth, SecretSources, one_secret};
use crate::config::values::nonzero_duration;
use crate::config::{ConfigError, invalid};
use crate::relabel::is_valid_label_name;
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
    /// The receiver; or `urls` for several, each series sent to `replicas` of them.
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub urls: Vec<String>,
    /// Labels whose values pick a series' receivers (default: all its labels).
    #[serde(default)]
    pub shard_by: Vec<String>,
    /// How many of `urls` receive each series.
    #[serde(default = "one")]
    pub replicas: u64,
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

fn one() -> u64 {
    1
}

/// The most receivers one target may shard over.
pub const MAX_URLS: usize = 64;

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
    /// The first (or only) receiver.
    pub url: hyper::Uri,
    /// Every receiver, `url` first; a series goes to `replicas` of them.
    pub urls: Vec<hyper::Uri>,
    pub shard_by: Vec<String>,
    pub replicas: usize,
    pub auth: Auth,
    pub tls: TlsConfig,
    pub headers: Vec<(hyper::header::HeaderName, hyper::header::HeaderValue)>,
    pub timeout: Duration,
    /// The message the receiver is sent (`protobuf_message`).
    pub protocol: crate::decode::Protocol,
}

/// A receiver's URL: http or https, with a host. Returns it and whether it is https.
fn parse_url(text: &str, field: &str) -> Result<(hyper::Uri, bool), ConfigError> {
    let url: hyper::Uri = text
        .parse()
        .map_err(|e| invalid(field, format!("{text:?} is not a URL: {e}")))?;
    let https = match url.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => {
            return Err(invalid(
                field,
                format!("{text:?} must start with http:// or https://"),
            ));
        }
    };
    if url.host().is_none() {
        return Err(invalid(field, format!("{text:?} has no host")));
    }
    Ok((url, https))
}

impl RawRemoteWrite {
    /// Check this target (at `at`).
    ///
    /// # Errors
    /// The first bad key, named under `at`.
    pub fn validate(self, at: &str, base: &Path) -> Result<TargetConfig, ConfigError> {
        let given: Vec<(String, &str)> = match (&self.url, self.urls.is_empty()) {
            (Some(u), true) => vec![(format!("{at}.url"), u.as_str())],
            (None, false) => self
                .urls
                .iter()
                .enumerate()
                .map(|(i, u)| (format!("{at}.urls[{i}]"), u.as_str()))
                .collect(),
            (Some(_), false) => {
                return Err(invalid(at, "set either url or urls, not both"));
            }
            (None, true) => {
                return Err(invalid(
                    format!("{at}.url"),
                    "is required (or urls, to shard series over several receivers)",
                ));
            }
        };
        if given.len() > MAX_URLS {
            return Err(invalid(
                format!("{at}.urls"),
                format!("at most {MAX_URLS} receivers"),
            ));
        }
        let mut urls = Vec::new();
        let mut https = false;
        for (field, text) in &given {
            let (url, secure) = parse_url(text, field)?;
            https |= secure;
            urls.push(url);
        }
        let replicas = usize::try_from(self.replicas).unwrap_or(usize::MAX);
        if replicas == 0 || replicas > urls.len() {
            return Err(invalid(
                format!("{at}.replicas"),
                format!(
                    "must be between 1 and the number of urls ({}), got {}",
                    urls.len(),
                    self.replicas
                ),
            ));
        }
        if let Some(bad) = self.shard_by.iter().find(|l| !is_valid_label_name(l)) {
            return Err(invalid(
                format!("{at}.shard_by"),
                format!("{bad:?} is not a label name"),
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
            url: urls[0].clone(),
            urls,
            shard_by: self.shard_by.clone(),
            replicas,
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
        let endpoints = given.len();
        let mut cfg = TargetConfig::new(common, at, base, kind.into())?;
        // `queue.shards` lanes per receiver: a receiver's lanes are its own (senders, disk).
        cfg.queue.shards *= endpoints;
        Ok(cfg)
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
    use crate::targets::TargetKind;
    use std::path::Path;

    fn target(keys: &str) -> String {
        format!("tasks: [{{name: t, targets: [{{name: r, type: remote_write, {keys}}}]}}]")
    }

    #[test]
    fn sharded_targets_check_their_keys() {
        let cases = [
            (
                "urls: ['http://a:1', 'http://b:1'], replicas: 3",
                "tasks[0].targets[0].replicas: must be between 1 and the number of urls (2), got 3",
            ),
            (
                "urls: ['http://a:1'], replicas: 0",
                "tasks[0].targets[0].replicas: must be between 1",
            ),
            (
                "url: 'http://a:1', urls: ['http://b:1']",
                "tasks[0].targets[0]: set either url or urls, not both",
            ),
            ("queue: {shards: 1}", "tasks[0].targets[0].url: is required"),
            (
                "urls: ['http://a:1', 'ftp://b']",
                "tasks[0].targets[0].urls[1]: \"ftp://b\" must start with http",
            ),
            (
                "urls: ['http://a:1'], shard_by: ['a-b']",
                "tasks[0].targets[0].shard_by: \"a-b\" is not a label name",
            ),
        ];
        for (keys, want) in cases {
            let err = Config::from_yaml(&target(keys), Path::new("."))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(want),
                "{keys}\n  error: {err}\n  wanted: {want}"
            );
        }
    }

    #[test]
    fn a_sharded_target_has_its_shards_per_receiver() {
        let cfg = Config::from_yaml(
            &target(
                "urls: ['http://a:1', 'http://b:1', 'http://c:1'], replicas: 2, queue: {shards: 2}",
            ),
            Path::new("."),
        )
        .unwrap();
        let t = &cfg.tasks[0].targets[0];
        assert_eq!(t.queue.shards, 6, "2 lanes for each of 3 receivers");
        let TargetKind::RemoteWrite(rw) = &t.kind else {
            panic!()
        };
        assert_eq!((rw.urls.len(), rw.replicas), (3, 2));
        let services = t.kind.services(t.queue.shards).unwrap();
        assert_eq!(services.len(), 6);
    }

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
