//! Checks for the kinds of value every part of the config uses: counts, durations, files.
//! Each returns a [`ConfigError`] naming the field it was given.

use super::{ConfigError, invalid};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A count that must be at least 1.
///
/// # Errors
/// 0, or a number too large for this machine.
pub fn positive(v: u64, field: &str) -> Result<usize, ConfigError> {
    if v == 0 {
        return Err(invalid(field, "must be greater than 0"));
    }
    usize::try_from(v).map_err(|_| invalid(field, "is too large"))
}

/// A Prometheus-style duration, for `field`.
///
/// # Errors
/// Text [`parse_duration`] refuses.
pub fn duration(text: &str, field: &str) -> Result<Duration, ConfigError> {
    parse_duration(text).map_err(|m| invalid(field, m))
}

/// A duration that must be greater than zero.
///
/// # Errors
/// As [`duration`], or zero.
pub fn nonzero_duration(text: &str, field: &str) -> Result<Duration, ConfigError> {
    let d = duration(text, field)?;
    if d.is_zero() {
        return Err(invalid(field, "must be greater than 0"));
    }
    Ok(d)
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

/// A path (resolved against the config's directory) that must name a file.
///
/// # Errors
/// Nothing readable at that path.
pub fn existing_file(f: &str, base: &Path, field: &str) -> Result<PathBuf, ConfigError> {
    let p = base.join(f);
    if !p.is_file() {
        return Err(invalid(
            field,
            format!("{} is not a readable file", p.display()),
        ));
    }
    Ok(p)
}
