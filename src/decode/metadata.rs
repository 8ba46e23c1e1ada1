//! Metadata in: the 1.0 `MetricMetadata` message and the 2.0 per-series `Metadata`, both
//! read into the version-independent [`MetadataRef`] (spans into the decoded buffer, nothing
//! copied), so every target writes metadata the same way whatever version brought it.
//!
//! A 2.0 sender attaches metadata to every series; a 1.0 target wants one entry per metric
//! family. The family of a 2.0 series is its `__name__`, less the `_bucket`, `_sum` or
//! `_count` suffix of a classic histogram's or summary's series (the name the 1.0 sender puts
//! in `metric_family_name`). Consecutive series of one family with the same type, help and
//! unit share one entry (Prometheus sends a family's series together), so a 2.0 request of
//! many series makes few entries without a hash lookup per series.

use super::*;
use crate::batch::MetadataRef;

/// `MetricType` numbers whose classic series carry `_bucket`/`_sum`/`_count` suffixes.
const HISTOGRAM: u32 = 3;
const GAUGE_HISTOGRAM: u32 = 4;
const SUMMARY: u32 = 5;

/// A 2.0 `Metadata` message with its refs resolved.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct SeriesMetadata {
    pub kind: u32,
    pub help: Span,
    pub unit: Span,
}

impl SeriesBatch {
    /// Read one 1.0 `MetricMetadata` message at `buf[a..b]` (type 1, metric_family_name 2,
    /// help 4, unit 5) into [`SeriesBatch::metadata`].
    pub(super) fn read_metadata_v1(&mut self, a: usize, b: usize) -> Result<(), DecodeError> {
        let buf = &self.buf[..b];
        let mut entry = MetadataRef::default();
        let mut pos = a;
        while pos < b {
            let (field, wire) = read_key(buf, &mut pos)?;
            match (field, wire) {
                (1, WIRE_VARINT) => entry.kind = read_varint(buf, &mut pos)? as u32,
                (2 | 4 | 5, WIRE_LEN) => {
                    let (s, e) = read_len(buf, &mut pos)?;
                    if !is_utf8(&buf[s..e]) {
                        return Err(DecodeError::Protobuf("text that is not UTF-8"));
                    }
                    let span = Span {
                        start: s as u32,
                        end: e as u32,
                    };
                    match field {
                        2 => entry.family = span,
                        4 => entry.help = span,
                        _ => entry.unit = span,
                    }
                }
                _ => skip_unknown(buf, &mut pos, field, wire, &[1, 2, 4, 5])?,
            }
        }
        self.metadata.push(entry);
        self.metadata_received += 1;
        Ok(())
    }

    /// Attach a 2.0 series' metadata (the series just pushed, labels checked and sorted) and
    /// return its index + 1 for [`SeriesRef::metadata`]; 0 when it says nothing (type
    /// unspecified, no help, no unit) or the series has no `__name__`.
    pub(super) fn attach_metadata_v2(&mut self, labels_start: usize, m: SeriesMetadata) -> u32 {
        self.metadata_received += 1;
        if m.kind == 0 && m.help.start == m.help.end && m.unit.start == m.unit.end {
            return 0;
        }
        let buf = &self.buf;
        let Some(name) = self.labels[labels_start..]
            .iter()
            .find(|l| &buf[l.name.range()] == b"__name__")
            .map(|l| l.value)
        else {
            return 0;
        };
        let family = family_of(&buf[name.range()], m.kind);
        let entry = MetadataRef {
            family: Span {
                start: name.start,
                end: name.start + family as u32,
            },
            kind: m.kind,
            help: m.help,
            unit: m.unit,
        };
        let text = |s: Span| &buf[s.range()];
        if let Some(last) = self.metadata.last()
            && last.kind == entry.kind
            && text(last.family) == text(entry.family)
            && text(last.help) == text(entry.help)
            && text(last.unit) == text(entry.unit)
        {
            return self.metadata.len() as u32;
        }
        self.metadata.push(entry);
        self.metadata.len() as u32
    }
}

/// The length of the family name of a series named `name` of metric type `kind`: the name
/// less a classic histogram's or summary's series suffix.
fn family_of(name: &[u8], kind: u32) -> usize {
    let suffixes: &[&[u8]] = match kind {
        HISTOGRAM | GAUGE_HISTOGRAM => &[b"_bucket", b"_sum", b"_count"],
        SUMMARY => &[b"_sum", b"_count"],
        _ => &[],
    };
    suffixes
        .iter()
        .find(|s| name.len() > s.len() && name.ends_with(s))
        .map_or(name.len(), |s| name.len() - s.len())
}

/// Read a 2.0 `Metadata` message at `buf[a..b]` (type 1, help_ref 3, unit_ref 4), resolving
/// the refs through `symbol` (which refuses one out of range).
pub(super) fn metadata_v2<F>(
    buf: &[u8],
    a: usize,
    b: usize,
    symbol: &F,
) -> Result<SeriesMetadata, DecodeError>
where
    F: Fn(u64, &str) -> Result<Span, DecodeError>,
{
    let buf = &buf[..b];
    let mut m = SeriesMetadata::default();
    let mut p = a;
    while p < b {
        let (f, w) = read_key(buf, &mut p)?;
        match (f, w) {
            (1, WIRE_VARINT) => m.kind = read_varint(buf, &mut p)? as u32,
            (3, WIRE_VARINT) => m.help = symbol(read_varint(buf, &mut p)?, "metadata help")?,
            (4, WIRE_VARINT) => m.unit = symbol(read_varint(buf, &mut p)?, "metadata unit")?,
            _ => skip_unknown(buf, &mut p, f, w, &[1, 3, 4])?,
        }
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::family_of;

    #[test]
    fn family_names_drop_classic_suffixes_by_type() {
        for (name, kind, family) in [
            ("http_duration_seconds_bucket", 3, "http_duration_seconds"),
            ("http_duration_seconds_sum", 3, "http_duration_seconds"),
            ("http_duration_seconds_count", 4, "http_duration_seconds"),
            ("http_duration_seconds", 3, "http_duration_seconds"),
            ("rpc_seconds_sum", 5, "rpc_seconds"),
            ("rpc_seconds_bucket", 5, "rpc_seconds_bucket"),
            ("requests_total", 1, "requests_total"),
            ("queue_count", 2, "queue_count"),
            ("_count", 3, "_count"),
        ] {
            assert_eq!(
                &name[..family_of(name.as_bytes(), kind)],
                family,
                "{name} ({kind})"
            );
        }
    }
}
