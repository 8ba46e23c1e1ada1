//! Credentials: where a secret may come from (inline, a file, an environment variable), and
//! the [`Auth`] they build, used both by targets (sent) and by sources (expected).

use super::{ConfigError, invalid};
use serde::Deserialize;
use std::path::Path;

/// `basic_auth:` as written in YAML, for targets and sources alike.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBasicAuth {
    pub username: String,
    pub password: Option<String>,
    pub password_file: Option<String>,
    pub password_env: Option<String>,
}

/// How a remote-write target authenticates. Secrets are already read from their files.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Auth {
    #[default]
    None,
    Basic {
        username: String,
        password: String,
    },
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

    /// Basic auth from a `basic_auth:` block, its password read from wherever it is set.
    ///
    /// # Errors
    /// No password source, more than one, or one that cannot be read; named under `at`.
    pub fn basic(b: &RawBasicAuth, base: &Path, at: &str) -> Result<Auth, ConfigError> {
        Ok(Auth::Basic {
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
        })
    }
}

/// The credentials a server side (a source, the admin endpoints) requires: basic auth or a
/// bearer token, at most one; `Auth::None` for neither.
///
/// # Errors
/// Both set, or a secret that cannot be read; named under `at`.
pub fn expected(
    basic: Option<&RawBasicAuth>,
    bearer: SecretSources<'_>,
    at: &str,
    base: &Path,
) -> Result<Auth, ConfigError> {
    match (basic, bearer.any()) {
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

/// Standard base64 with padding, for the basic-auth header.
pub(crate) fn base64(input: &[u8]) -> String {
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

/// Read a secret from a file (trailing newline trimmed), resolving relative paths.
fn read_secret(path: &str, base: &Path, field: &str) -> Result<String, ConfigError> {
    let p = base.join(path);
    let text = std::fs::read_to_string(&p)
        .map_err(|e| invalid(field, format!("cannot read {}: {e}", p.display())))?;
    Ok(text.trim_end_matches(['\n', '\r']).to_owned())
}

/// Where a secret may come from: inline, a file, or an environment variable; exactly one.
pub struct SecretSources<'a> {
    pub inline: &'a Option<String>,
    pub file: &'a Option<String>,
    pub env: &'a Option<String>,
}

impl SecretSources<'_> {
    /// Whether any of the three is set.
    pub fn any(&self) -> bool {
        self.inline.is_some() || self.file.is_some() || self.env.is_some()
    }
}

/// Read the one secret configured for `field` (`{field}`, `{field}_file` or `{field}_env`).
///
/// # Errors
/// None or more than one of the three set, an unreadable file, an unset variable.
pub fn one_secret(src: SecretSources<'_>, base: &Path, field: &str) -> Result<String, ConfigError> {
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
