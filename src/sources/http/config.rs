//! `sources[*]` for the HTTP source: a name (its path, `/sources/{name}/api/v1/write`) and the
//! credentials its senders must present.

use crate::config::secrets::{Auth, RawBasicAuth, SecretSources, one_secret};
use crate::config::{ConfigError, invalid};
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
        match (&self.basic_auth, bearer.any()) {
            (Some(_), true) => Err(invalid(
                at,
                "set either basic_auth or bearer_token(_file), not both",
            )),
            (Some(b), false) => Auth::basic(b, base, at),
            (None, true) => Ok(Auth::Bearer(one_secret(
                bearer,
                base,
                &format!("{at}.bearer_token"),
            )?)),
            (None, false) => Ok(Auth::None),
        }
    }
}
