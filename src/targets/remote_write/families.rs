//! Metadata that arrived on its own, kept per metric family for a remote-write 2.0 target.
//!
//! A 1.0 sender (every Prometheus with `metadata_config`) sends metadata in requests of their
//! own, apart from series; a 2.0 request has no place for metadata without a series: each
//! series carries its own. So a 2.0 target remembers each family's latest entry, and a later
//! series of that family (its name, or its name without a `_bucket`, `_sum`, `_count`,
//! `_total`, `_created` or `_info` suffix) carries it. Bounded: past [`MAX_FAMILIES`] families
//! a new family's entry is counted as dropped (`without_series`), as it was before any was kept.
//!
//! The data path pays one relaxed atomic load per series while nothing is known, and a shared
//! read lock per series of a 2.0 target once something is (1.0 targets never look).

use crate::batch::MetadataRef;
use crate::encode::metadata::{SERIES_METADATA_TAG, write_metadata};
use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};

/// Families a target remembers at most.
pub const MAX_FAMILIES: usize = 100_000;

/// Suffixes a series name may add to its family's name.
const SUFFIXES: [&[u8]; 6] = [
    b"_bucket",
    b"_sum",
    b"_count",
    b"_total",
    b"_created",
    b"_info",
];

/// Family name → that family's relay-internal per-series metadata field, encoded.
type Fields = HashMap<Box<[u8]>, Box<[u8]>>;

/// What a 2.0 target knows of families' metadata.
#[derive(Debug, Default)]
pub struct FamilyMetadata {
    known: AtomicBool,
    fields: RwLock<Fields>,
}

impl FamilyMetadata {
    /// Keep `m` (spans into `buf`) as its family's entry, replacing an older one. Returns false
    /// when the family is new and [`MAX_FAMILIES`] are already kept.
    pub fn remember(&self, buf: &[u8], m: &MetadataRef) -> bool {
        let family = &buf[m.family.range()];
        let mut field = Vec::new();
        write_metadata(&mut field, SERIES_METADATA_TAG, buf, m);
        let mut fields = self.fields.write().unwrap_or_else(|e| e.into_inner());
        if fields.len() >= MAX_FAMILIES && !fields.contains_key(family) {
            return false;
        }
        fields.insert(family.into(), field.into());
        self.known.store(true, Ordering::Relaxed);
        true
    }

    /// Append the metadata field of the family a series named `name` belongs to, if known;
    /// returns whether it did.
    #[inline]
    pub fn append_for(&self, name: &[u8], out: &mut Vec<u8>) -> bool {
        if !self.known.load(Ordering::Relaxed) {
            return false;
        }
        let fields = self.fields.read().unwrap_or_else(|e| e.into_inner());
        let field = fields.get(name).or_else(|| {
            SUFFIXES
                .iter()
                .find_map(|s| name.strip_suffix(*s).and_then(|family| fields.get(family)))
        });
        match field {
            Some(f) => {
                out.extend_from_slice(f);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::Span;

    /// A buffer holding the strings, and an entry pointing into it.
    fn entry(family: &str, kind: u32, help: &str) -> (Vec<u8>, MetadataRef) {
        let buf = [family, help].concat().into_bytes();
        let span = |a: usize, b: usize| Span {
            start: a as u32,
            end: b as u32,
        };
        let m = MetadataRef {
            family: span(0, family.len()),
            kind,
            help: span(family.len(), buf.len()),
            unit: span(buf.len(), buf.len()),
        };
        (buf, m)
    }

    #[test]
    fn a_series_gets_its_familys_latest_entry_by_name_or_suffix() {
        let f = FamilyMetadata::default();
        let mut out = Vec::new();
        assert!(
            !f.append_for(b"latency_seconds_bucket", &mut out),
            "nothing known"
        );
        let (buf, old) = entry("latency_seconds", 3, "Old.");
        assert!(f.remember(&buf, &old));
        let (buf, new) = entry("latency_seconds", 3, "Latency.");
        assert!(f.remember(&buf, &new));
        let mut want = Vec::new();
        write_metadata(&mut want, SERIES_METADATA_TAG, &buf, &new);
        for name in [
            &b"latency_seconds"[..],
            b"latency_seconds_bucket",
            b"latency_seconds_sum",
            b"latency_seconds_count",
        ] {
            out.clear();
            assert!(f.append_for(name, &mut out), "{name:?}");
            assert_eq!(out, want, "the latest entry");
        }
        out.clear();
        assert!(!f.append_for(b"latency", &mut out));
        assert!(!f.append_for(b"other_total", &mut out));
        assert!(out.is_empty());
    }

    #[test]
    fn the_number_of_families_is_bounded_and_known_ones_still_update() {
        let f = FamilyMetadata::default();
        for i in 0..MAX_FAMILIES {
            let (buf, m) = entry(&format!("f{i}"), 2, "");
            assert!(f.remember(&buf, &m));
        }
        let (buf, m) = entry("one_more", 2, "");
        assert!(!f.remember(&buf, &m));
        let (buf, m) = entry("f7", 1, "Now a counter.");
        assert!(f.remember(&buf, &m), "a known family is replaced");
    }
}
