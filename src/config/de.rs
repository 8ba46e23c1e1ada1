//! How the YAML is read so that an error points at the key: the exact path and its line and
//! column, with types in words.
//!
//! - **Path.** The file is deserialized through `serde_path_to_error`, which tracks the path
//!   as serde walks it (`tasks[0].targets[1].spool.max_bytes`). serde's internally tagged
//!   enums would hide everything under a target (they buffer the map before picking the
//!   variant), so a target's kind is read by [`KindFirst`]: once the `type` key is seen, the
//!   rest of the map streams into the kind's struct and the path keeps tracking.
//! - **Line and column.** serde_yaml_ng knows where it was when serde failed, but checks run
//!   after deserialization (`must be at least 1 MiB`) only know their path. [`locate`] finds
//!   a path's key by walking the same parser's events to it, so both kinds of error point at
//!   the key the same way.
//! - **Types in words.** Numeric and duration keys are read with `deserialize_with` helpers
//!   ([`bytes()`], [`count`], [`samples`], [`duration`], [`status`]) whose expectation is a
//!   phrase: `expected a whole number of bytes`, not `expected u64`.

use serde::de::{self, DeserializeSeed, IgnoredAny, IntoDeserializer, MapAccess, SeqAccess};
use serde::{Deserialize, Deserializer};
use std::fmt;

/// Where in the file: 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

struct WholeNumber(&'static str);

impl de::Visitor<'_> for WholeNumber {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        u64::try_from(v).map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
    }
}

/// A size in bytes: `expected a whole number of bytes`.
///
/// # Errors
/// Anything but a non-negative integer.
pub fn bytes<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    d.deserialize_u64(WholeNumber("a whole number of bytes"))
}

/// An optional size in bytes (with `#[serde(default)]`): as [`bytes()`].
///
/// # Errors
/// Anything but a non-negative integer.
pub fn opt_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    bytes(d).map(Some)
}

/// An optional count (with `#[serde(default)]`): as [`count`].
///
/// # Errors
/// Anything but a non-negative integer.
pub fn opt_count<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    count(d).map(Some)
}

/// A count of samples: `expected a whole number of samples`.
///
/// # Errors
/// Anything but a non-negative integer.
pub fn samples<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    d.deserialize_u64(WholeNumber("a whole number of samples"))
}

/// A count (shards, limits): `expected a whole number`.
///
/// # Errors
/// Anything but a non-negative integer.
pub fn count<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    d.deserialize_u64(WholeNumber("a whole number"))
}

/// An HTTP status code: `expected an HTTP status code such as 503`.
///
/// # Errors
/// Anything but an integer that fits a status code.
pub fn status<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    let v = d.deserialize_u64(WholeNumber("an HTTP status code such as 503"))?;
    u16::try_from(v).map_err(|_| {
        de::Error::invalid_value(
            de::Unexpected::Unsigned(v),
            &"an HTTP status code such as 503",
        )
    })
}

struct DurationText;

impl de::Visitor<'_> for DurationText {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration such as 30s")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }
}

/// A duration, kept as text for [`super::values::duration`] to check: a map or a list here
/// says `expected a duration such as 30s`.
///
/// # Errors
/// Anything but a scalar.
pub fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    d.deserialize_str(DurationText)
}

/// The rest of a kind's map once its `type` key was read: the keys seen before `type`
/// (buffered, usually just `name`) and then the live map, so the kind's struct streams from
/// the parser and errors keep their path and position. See the module docs.
pub struct KindFirst<A> {
    before: std::vec::IntoIter<(String, serde_yaml_ng::Value)>,
    value: Option<(String, serde_yaml_ng::Value)>,
    live: A,
}

impl<'de, A: MapAccess<'de>> KindFirst<A> {
    /// Read `map` up to its `type` key; the type's value, and the map to build the kind from.
    ///
    /// # Errors
    /// No `type` key, or a `type` that `T` refuses (an unknown kind).
    pub fn read<T: Deserialize<'de>>(mut map: A) -> Result<(T, KindFirst<A>), A::Error> {
        let mut before = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if key == "type" {
                let kind = map.next_value::<T>()?;
                return Ok((
                    kind,
                    KindFirst {
                        before: before.into_iter(),
                        value: None,
                        live: map,
                    },
                ));
            }
            let value: serde_yaml_ng::Value = map.next_value()?;
            before.push((key, value));
        }
        Err(de::Error::missing_field("type"))
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for KindFirst<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        if let Some((key, value)) = self.before.next() {
            let k = seed.deserialize(key.as_str().into_deserializer())?;
            self.value = Some((key, value));
            return Ok(Some(k));
        }
        self.live.next_key_seed(seed)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        match self.value.take() {
            // A buffered key is not on the tracked path: name it in the message.
            Some((key, value)) => seed
                .deserialize(value)
                .map_err(|e| de::Error::custom(format_args!("{key}: {e}"))),
            None => self.live.next_value_seed(seed),
        }
    }
}

/// One step of a config path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// `tasks[0].targets[1].spool` → steps. Anything after a space (`filter line 2`) is not part
/// of the path.
fn steps(path: &str) -> Vec<Step> {
    let path = path.split(' ').next().unwrap_or("");
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let mut rest = part;
        if let Some(i) = rest.find('[') {
            if i > 0 {
                out.push(Step::Key(rest[..i].to_owned()));
            }
            rest = &rest[i..];
            while let Some(inner) = rest.strip_prefix('[') {
                let Some((n, after)) = inner.split_once(']') else {
                    break;
                };
                match n.parse() {
                    Ok(n) => out.push(Step::Index(n)),
                    Err(_) => break,
                }
                rest = after;
            }
        } else {
            out.push(Step::Key(rest.to_owned()));
        }
    }
    out
}

/// The marker a [`Find`] fails with once it stands on the key: the parser attaches its
/// position to it.
const FOUND: &str = "promrelay: found the key";

/// Walks the parser's events along a path (see [`locate`]).
struct Find<'a>(&'a [Step]);

impl<'de> DeserializeSeed<'de> for Find<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        if self.0.is_empty() {
            // At the node itself (a list element): fail where it starts.
            return d.deserialize_any(Here);
        }
        d.deserialize_any(self)
    }
}

impl<'de> de::Visitor<'de> for Find<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("anything")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((Step::Key(want), rest)) = self.0.split_first() else {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            return Ok(());
        };
        while let Some(key) = map.next_key_seed(KeyNamed {
            want,
            last: rest.is_empty(),
        })? {
            if key {
                map.next_value_seed(Find(rest))?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some((Step::Index(want), rest)) = self.0.split_first() else {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            return Ok(());
        };
        let mut i = 0;
        loop {
            let found = if i == *want {
                seq.next_element_seed(Find(rest))?
            } else {
                seq.next_element::<IgnoredAny>()?.map(|_| ())
            };
            if found.is_none() {
                return Ok(());
            }
            i += 1;
        }
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}

/// Reads a map key: true when it is the one wanted; fails on it when it is the last step.
struct KeyNamed<'a> {
    want: &'a str,
    last: bool,
}

impl<'de> DeserializeSeed<'de> for KeyNamed<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        // Fail inside the parser's call, so the error carries the key's own position.
        d.deserialize_str(self)
    }
}

impl de::Visitor<'_> for KeyNamed<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<bool, E> {
        if key == self.want && self.last {
            return Err(E::custom(FOUND));
        }
        Ok(key == self.want)
    }

    // Keys that are not strings (`1: x`) are never the one wanted.
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
}

/// Fails at once, wherever it is asked to read.
struct Here;

impl<'de> de::Visitor<'de> for Here {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("anything")
    }

    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(FOUND))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(FOUND))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(E::custom(FOUND))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(E::custom(FOUND))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(E::custom(FOUND))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(E::custom(FOUND))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(E::custom(FOUND))
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
}

/// Where the key a config path names is in `text` (the start of the element, for a path
/// ending in `[i]`). For `… line N` of a literal block (`filter: |`), the line of that row.
/// `None` when the path is not in the file (a default that failed a check).
pub fn locate(text: &str, path: &str) -> Option<Location> {
    let steps = steps(path);
    if steps.is_empty() {
        return None;
    }
    let err = Find(&steps)
        .deserialize(serde_yaml_ng::Deserializer::from_str(text))
        .err()?;
    if !err.to_string().contains(FOUND) {
        return None;
    }
    let at = err.location()?;
    let mut found = Location {
        line: at.line(),
        column: at.column(),
    };
    // `filter line N`: rows of a literal block start on the line after the key.
    if let Some(n) = path
        .split_once(" line ")
        .and_then(|(_, n)| n.parse::<usize>().ok())
    {
        let key_line = text.lines().nth(found.line - 1)?;
        let after_colon = key_line.split_once(':').map_or("", |(_, v)| v).trim_start();
        if after_colon.starts_with('|') {
            let row = text.lines().nth(found.line - 1 + n)?;
            found = Location {
                line: found.line + n,
                column: row.len() - row.trim_start().len() + 1,
            };
        }
    }
    Some(found)
}

/// The message of a serde_yaml_ng error without the parts this module reports itself: its
/// own path prefix (serde_yaml_ng's idea of the path, shorter than ours) and ` at line L
/// column C`.
pub fn bare_message(err: &serde_yaml_ng::Error) -> String {
    let mut text = err.to_string();
    if let Some(at) = err.location() {
        let suffix = format!(" at line {} column {}", at.line(), at.column());
        if let Some(stripped) = text.strip_suffix(&suffix) {
            text = stripped.to_owned();
        }
    }
    // `path: message`, where a path has no spaces (`tasks[0].targets`): drop the path.
    if let Some((head, rest)) = text.split_once(": ")
        && !head.is_empty()
        && !head.contains(' ')
        && head
            .chars()
            .all(|c| c.is_alphanumeric() || "_.[]-?".contains(c))
    {
        text = rest.to_owned();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = "\
server:
  listen: x
tasks:
  - name: a
    filter: |
      job=ok
      id=(
    targets:
      - name: f
        type: file
        spool: {dir: s, max_bytes: lots}
      - {name: g, type: file}
";

    #[test]
    fn locate_finds_keys_elements_and_block_rows() {
        for (path, want) in [
            ("server", Some((1, 1))),
            ("server.listen", Some((2, 3))),
            ("tasks[0].name", Some((4, 5))),
            ("tasks[0].targets[0].spool.max_bytes", Some((11, 25))),
            ("tasks[0].targets[1]", Some((12, 9))),
            ("tasks[0].targets[1].name", Some((12, 10))),
            ("tasks[0].filter line 2", Some((7, 7))),
            ("tasks[0].nothing", None),
            ("tasks[3]", None),
            ("", None),
        ] {
            let got = locate(YAML, path).map(|l| (l.line, l.column));
            assert_eq!(got, want, "{path}");
        }
    }

    #[test]
    fn paths_split_into_keys_and_indices() {
        assert_eq!(
            steps("tasks[0].targets[12].spool.max_bytes"),
            vec![
                Step::Key("tasks".into()),
                Step::Index(0),
                Step::Key("targets".into()),
                Step::Index(12),
                Step::Key("spool".into()),
                Step::Key("max_bytes".into()),
            ]
        );
        assert_eq!(
            steps("tasks[0].filter line 2"),
            vec![
                Step::Key("tasks".into()),
                Step::Index(0),
                Step::Key("filter".into())
            ]
        );
    }
}
