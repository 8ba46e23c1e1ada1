//! `sources[*]` for the HTTP source: a name (its path, `/sources/{name}/api/v1/write`) and the
//! credentials its senders must present; or, with `kafka:`, a Kafka source (its keys are
//! `sources/kafka/config.rs`'s).

use crate::config::ConfigError;
use crate::config::secrets::{Auth, RawBasicAuth, SecretSources, expected};
use serde::Deserialize;
use std::path::Path;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    pub name: String,
    /// Credentials senders must present (at most one kind).
    pub basic_auth: Option<RawBasicAuth>,
    pub bearer_token: Option<String>,
    pub bearer_token_file: Option<String>,
    pub bearer_token_env: Option<String>,
    /// Read these Kafka topics instead of taking HTTP writes (see `sources/kafka/`).
    pub kafka: Option<crate::sources::kafka::RawKafkaSource>,
}

impl RawSource {
    /// The credentials this source requires (`at` is `sources[i]`).
    ///
    /// # Errors
    /// Both kinds set, or a secret that cannot be read.
    pub fn validate(&self, at: &str, base: &Path) -> Result<Auth, ConfigError> {
        let bearer = SecretSources {
            inline: &self.bearer_token,
            file: &self.bearer_token_file,
            env: &self.bearer_token_env,
        };
        expected(self.basic_auth.as_ref(), bearer, at, base)
    }
}
