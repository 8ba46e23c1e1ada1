//! `tls:` of a target (remote_write over https, Kafka over SSL): CA, client certificate and
//! key, checked to exist when the config is loaded.

use crate::config::values::existing_file;
use crate::config::{ConfigError, invalid};
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub ca_file: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub insecure_skip_verify: bool,
}

impl RawTls {
    /// Files that exist (resolved against the config's directory), and a client certificate
    /// only together with its key.
    ///
    /// # Errors
    /// A missing file or a lone certificate or key, named under `{at}.tls`.
    pub fn validate(&self, at: &str, base: &Path) -> Result<TlsConfig, ConfigError> {
        if self.cert_file.is_some() != self.key_file.is_some() {
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
            ca_file: file(&self.ca_file, "ca_file")?,
            cert_file: file(&self.cert_file, "cert_file")?,
            key_file: file(&self.key_file, "key_file")?,
            insecure_skip_verify: self.insecure_skip_verify,
        })
    }
}
