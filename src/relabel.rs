//! Label changes on the way out: task labels ("data labeling") and target external labels.
//!
//! Rules, in precedence order:
//! 1. a **task label** sets the label, overwriting the series' own value;
//! 2. the **series' own labels** come next;
//! 3. a target **external label** is added only where the series (after task labels) lacks it,
//!    as Prometheus' `external_labels` do.
//!
//! A label whose resulting value is empty is left out, as Prometheus treats an empty label as
//! absent; so a task label `key=` removes `key`. The output is sorted by name and unique: it is
//! a merge of three sorted, unique lists, done lazily by [`MergedLabels`] without allocating,
//! so encoders can walk it twice (once to size, once to write).

use crate::batch::LabelRef;
use crate::decode::cmp_bytes;
use crate::encode::remote_write::SpliceLabels;
use std::cmp::Ordering;

/// One owned label: name and value bytes.
type Pair = (Box<[u8]>, Box<[u8]>);

/// An owned, sorted, unique set of labels from the config.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSet {
    pairs: Vec<Pair>,
}

/// Why a configured label set was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LabelSetError {
    #[error("label name {0:?} is not valid: use [a-zA-Z_][a-zA-Z0-9_]*")]
    BadName(String),
    #[error("label {0:?} is set twice")]
    Duplicate(String),
    #[error("expected key=value, got {0:?}")]
    NotKeyValue(String),
}

/// Is `name` a valid Prometheus label name?
pub fn is_valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

impl LabelSet {
    /// Build from `(name, value)` pairs in any order.
    ///
    /// # Errors
    /// An invalid or repeated name.
    pub fn new<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<LabelSet, LabelSetError> {
        let mut out: Vec<Pair> = Vec::new();
        for (name, value) in pairs {
            if !is_valid_label_name(name) {
                return Err(LabelSetError::BadName(name.to_owned()));
            }
            out.push((name.as_bytes().into(), value.as_bytes().into()));
        }
        out.sort();
        if let Some(w) = out.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(LabelSetError::Duplicate(
                String::from_utf8_lossy(&w[0].0).into_owned(),
            ));
        }
        Ok(LabelSet { pairs: out })
    }

    /// Parse `key=value` lines (blank and `#` lines skipped); the value is everything after the
    /// first `=`, trimmed.
    ///
    /// # Errors
    /// The offending line, as for [`LabelSet::new`].
    pub fn parse_lines(text: &str) -> Result<LabelSet, LabelSetError> {
        let mut pairs = Vec::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| LabelSetError::NotKeyValue(line.to_owned()))?;
            pairs.push((k.trim(), v.trim()));
        }
        LabelSet::new(pairs)
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.pairs.iter().map(|(n, v)| (&**n, &**v))
    }
}

/// The label set of one series after task labels and external labels, in sorted order.
#[derive(Clone)]
pub struct MergedLabels<'a> {
    buf: &'a [u8],
    series: &'a [LabelRef],
    task: &'a [Pair],
    external: &'a [Pair],
    /// The same configured labels, encoded for remote-write splicing, when the caller has them.
    splice: Option<&'a SpliceLabels>,
}

/// Merge a series' labels (sorted spans into `buf`) with a task's and a target's label sets.
#[inline]
pub fn merge<'a>(
    buf: &'a [u8],
    series: &'a [LabelRef],
    task: &'a LabelSet,
    external: &'a LabelSet,
) -> MergedLabels<'a> {
    MergedLabels {
        buf,
        series,
        task: &task.pairs,
        external: &external.pairs,
        splice: None,
    }
}

/// Which configured list the head of the static side came from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Static {
    Task,
    External,
    /// Same name in both: the task label wins, the external one is skipped.
    Both,
}

impl<'a> MergedLabels<'a> {
    /// The same merge, also offering `splice` (built from the same task and external label
    /// sets) to encoders that can copy a series' bytes as received.
    #[inline]
    pub fn with_splice(mut self, splice: &'a SpliceLabels) -> Self {
        self.splice = Some(splice);
        self
    }

    /// The configured labels encoded for splicing, if the caller offered them.
    #[inline]
    pub fn splice_labels(&self) -> Option<&'a SpliceLabels> {
        self.splice
    }

    #[inline]
    fn advance(&mut self, from: Static) {
        if from != Static::External {
            self.task = &self.task[1..];
        }
        if from != Static::Task {
            self.external = &self.external[1..];
        }
    }
}

impl<'a> Iterator for MergedLabels<'a> {
    type Item = (&'a [u8], &'a [u8]);

    /// Hand-written merge: it runs once per label of every delivered series, so it makes at
    /// most two inlined comparisons per step and none at all once the (short) configured lists
    /// are used up.
    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.task.is_empty() && self.external.is_empty() {
            // Nothing (left) to merge in: the series' own labels, minus empty ones.
            while let Some((l, rest)) = self.series.split_first() {
                self.series = rest;
                let value = &self.buf[l.value.range()];
                if !value.is_empty() {
                    return Some((&self.buf[l.name.range()], value));
                }
            }
            return None;
        }
        loop {
            let head: Option<(&'a [u8], &'a [u8], Static)> =
                match (self.task.first(), self.external.first()) {
                    (None, None) => None,
                    (Some((n, v)), None) => Some((n, v, Static::Task)),
                    (None, Some((n, v))) => Some((n, v, Static::External)),
                    (Some((tn, tv)), Some((en, ev))) => Some(match cmp_bytes(tn, en) {
                        Ordering::Less => (tn, tv, Static::Task),
                        Ordering::Greater => (en, ev, Static::External),
                        Ordering::Equal => (tn, tv, Static::Both),
                    }),
                };
            let series = self
                .series
                .first()
                .map(|l| (&self.buf[l.name.range()], &self.buf[l.value.range()]));
            let (name, value) = match (series, head) {
                (None, None) => return None,
                (Some(s), None) => {
                    self.series = &self.series[1..];
                    s
                }
                (None, Some((n, v, from))) => {
                    self.advance(from);
                    (n, v)
                }
                (Some((sn, sv)), Some((n, v, from))) => match cmp_bytes(sn, n) {
                    Ordering::Less => {
                        self.series = &self.series[1..];
                        (sn, sv)
                    }
                    Ordering::Greater => {
                        self.advance(from);
                        (n, v)
                    }
                    Ordering::Equal => {
                        self.series = &self.series[1..];
                        self.advance(from);
                        // A task label overwrites; an external label only fills a gap.
                        if from == Static::External {
                            (sn, sv)
                        } else {
                            (n, v)
                        }
                    }
                },
            };
            if !value.is_empty() {
                return Some((name, value));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::SeriesBatch;
    use crate::proto::{Label, Sample, TimeSeries, WriteRequest};
    use prost::Message;

    fn merged(
        series: &[(&str, &str)],
        task: &[(&str, &str)],
        ext: &[(&str, &str)],
    ) -> Vec<(String, String)> {
        let req = WriteRequest {
            timeseries: vec![TimeSeries {
                labels: series.iter().map(|(n, v)| Label::new(n, v)).collect(),
                samples: vec![Sample::default()],
                ..Default::default()
            }],
            metadata: vec![],
        };
        let mut b = SeriesBatch::new();
        b.decode_protobuf(&req.encode_to_vec()).unwrap();
        let s = b.series(0);
        let task = LabelSet::new(task.iter().copied()).unwrap();
        let ext = LabelSet::new(ext.iter().copied()).unwrap();
        merge(s.buf(), s.label_refs(), &task, &ext)
            .map(|(n, v)| {
                (
                    String::from_utf8(n.to_vec()).unwrap(),
                    String::from_utf8(v.to_vec()).unwrap(),
                )
            })
            .collect()
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn merge_rules_table() {
        type Case<'a> = (
            &'a str,
            &'a [(&'a str, &'a str)],
            &'a [(&'a str, &'a str)],
            &'a [(&'a str, &'a str)],
            &'a [(&'a str, &'a str)],
        );
        let cases: &[Case] = &[
            (
                "no changes",
                &[("__name__", "up"), ("job", "a")],
                &[],
                &[],
                &[("__name__", "up"), ("job", "a")],
            ),
            (
                "task label added in order",
                &[("__name__", "up"), ("job", "a")],
                &[("deliver_test_key1", "ssss")],
                &[],
                &[
                    ("__name__", "up"),
                    ("deliver_test_key1", "ssss"),
                    ("job", "a"),
                ],
            ),
            (
                "task label overwrites",
                &[("__name__", "up"), ("job", "a")],
                &[("job", "b")],
                &[],
                &[("__name__", "up"), ("job", "b")],
            ),
            (
                "external only where missing",
                &[("__name__", "up"), ("source_cluster", "mine")],
                &[],
                &[("source_cluster", "cluster-01"), ("zone", "z1")],
                &[
                    ("__name__", "up"),
                    ("source_cluster", "mine"),
                    ("zone", "z1"),
                ],
            ),
            (
                "task beats external",
                &[("__name__", "up")],
                &[("env", "task")],
                &[("env", "ext")],
                &[("__name__", "up"), ("env", "task")],
            ),
            (
                "empty task value removes",
                &[("__name__", "up"), ("job", "a")],
                &[("job", "")],
                &[],
                &[("__name__", "up")],
            ),
            (
                "removed label is not refilled by external",
                &[("__name__", "up"), ("job", "a")],
                &[("job", "")],
                &[("job", "ext")],
                &[("__name__", "up")],
            ),
            (
                "empty series value is dropped",
                &[("__name__", "up"), ("job", "")],
                &[],
                &[],
                &[("__name__", "up")],
            ),
            (
                "labels before and after all series labels",
                &[("m", "1")],
                &[("a", "t"), ("z", "t")],
                &[("b", "e"), ("zz", "e")],
                &[("a", "t"), ("b", "e"), ("m", "1"), ("z", "t"), ("zz", "e")],
            ),
        ];
        for (name, series, task, ext, want) in cases {
            assert_eq!(merged(series, task, ext), pairs(want), "{name}");
        }
    }

    #[test]
    fn label_set_parsing_and_errors() {
        let set =
            LabelSet::parse_lines("deliver_test_key1=ssss\n\n# c\ndeliver_test_key2 = yyyy=z\n")
                .unwrap();
        let got: Vec<_> = set.iter().map(|(n, v)| (n.to_vec(), v.to_vec())).collect();
        assert_eq!(
            got,
            vec![
                (b"deliver_test_key1".to_vec(), b"ssss".to_vec()),
                (b"deliver_test_key2".to_vec(), b"yyyy=z".to_vec())
            ]
        );
        assert_eq!(
            LabelSet::parse_lines("novalue").unwrap_err(),
            LabelSetError::NotKeyValue("novalue".into())
        );
        assert_eq!(
            LabelSet::parse_lines("a-b=1").unwrap_err(),
            LabelSetError::BadName("a-b".into())
        );
        assert_eq!(
            LabelSet::parse_lines("a=1\na=2").unwrap_err(),
            LabelSetError::Duplicate("a".into())
        );
        assert!(
            is_valid_label_name("__name__")
                && is_valid_label_name("_1")
                && !is_valid_label_name("1a")
                && !is_valid_label_name("")
        );
    }
}
