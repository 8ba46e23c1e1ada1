//! Remote-write 1.0 protobuf, written by hand into a reused buffer.
//!
//! A `WriteRequest` is a sequence of `timeseries` fields (field 1), so the concatenation of
//! encoded series is itself a valid request body: queues append series to a buffer and send it
//! as it is. Each series is sized first (a cheap second walk over the labels) so its length
//! prefix can be written before its content, with no shifting and no scratch buffer.

use super::varint::{put_varint, varint_len};
use crate::batch::{LabelRef, Sample, SeriesView, Splice};
use crate::decode::cmp_bytes;
use crate::relabel::{LabelSet, MergedLabels};
use std::cmp::Ordering;

#[inline]
fn label_len(name: &[u8], value: &[u8]) -> usize {
    1 + varint_len(name.len() as u64)
        + name.len()
        + 1
        + varint_len(value.len() as u64)
        + value.len()
}

#[inline]
fn sample_len(s: &Sample) -> usize {
    1 + 8 + 1 + varint_len(s.timestamp as u64)
}

/// Room left for the series' length prefix: 5 varint bytes cover 32 GiB.
const LEN_ROOM: usize = 5;

/// Append one `timeseries` field (tag, length, content) to `out`.
///
/// `extras` are complete, already-encoded TimeSeries fields (exemplars, histograms) that are
/// copied verbatim. One pass over the labels: the content is written after room for the
/// length, then shifted left over the unused room (a short memmove), which costs less than
/// walking the label merge twice to size the series first.
#[inline]
pub fn encode_series<'a, L, E>(out: &mut Vec<u8>, labels: L, samples: &[Sample], extras: E)
where
    L: Iterator<Item = (&'a [u8], &'a [u8])>,
    E: Iterator<Item = &'a [u8]>,
{
    let start = out.len();
    out.push(0x0a);
    out.extend_from_slice(&[0; LEN_ROOM]);
    let body = out.len();
    for (n, v) in labels {
        out.reserve(label_len(n, v) + 3);
        encode_label(out, n, v);
    }
    for s in samples {
        out.push(0x12);
        put_varint(out, sample_len(s) as u64);
        out.push(0x09);
        // to_bits keeps NaN payloads (the stale marker) exactly.
        out.extend_from_slice(&s.value.to_bits().to_le_bytes());
        out.push(0x10);
        put_varint(out, s.timestamp as u64);
    }
    for e in extras {
        out.extend_from_slice(e);
    }
    finish_field(out, start, body);
}

/// Append one label field (`0x0a len 0x0a n name 0x12 m value`).
#[inline]
pub(crate) fn encode_label(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.push(0x0a);
    put_varint(out, label_len(name, value) as u64);
    out.push(0x0a);
    put_varint(out, name.len() as u64);
    out.extend_from_slice(name);
    out.push(0x12);
    put_varint(out, value.len() as u64);
    out.extend_from_slice(value);
}

/// One configured label as a spliced series receives it.
#[derive(Clone, Debug)]
struct SpliceLabel {
    name: Box<[u8]>,
    /// A task label (it replaces the series' own); otherwise an external label (it only fills
    /// a gap).
    task: bool,
    /// Its encoded label field; empty for an empty value, which removes the label.
    field: Box<[u8]>,
}

/// A task's labels and one target's external labels, merged once (a task label wins over an
/// external one of the same name) and encoded once, so [`splice_series`] copies them as bytes.
#[derive(Clone, Debug, Default)]
pub struct SpliceLabels {
    labels: Vec<SpliceLabel>,
}

impl SpliceLabels {
    pub fn new(task: &LabelSet, external: &LabelSet) -> SpliceLabels {
        let mut labels: Vec<SpliceLabel> = Vec::new();
        let mut add = |name: &[u8], value: &[u8], task: bool| {
            if labels.iter().any(|l| *l.name == *name) {
                return; // the task label came first and wins
            }
            let mut field = Vec::new();
            if !value.is_empty() {
                encode_label(&mut field, name, value);
            }
            labels.push(SpliceLabel {
                name: name.into(),
                task,
                field: field.into(),
            });
        };
        for (n, v) in task.iter() {
            add(n, v, true);
        }
        for (n, v) in external.iter() {
            add(n, v, false);
        }
        labels.sort_by(|a, b| a.name.cmp(&b.name));
        SpliceLabels { labels }
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// Append one `timeseries` field by copying the series' bytes as received (`splice`, see
/// [`Splice`]), with `statics` merged into its labels: runs of the series' own labels between
/// the configured ones are copied as they are, and so is everything after the labels
/// (samples, exemplars, histograms). Writes the same message as [`encode_series`] over the
/// merged labels (the tests check it), at the cost of a few `memcpy`s instead of an encode per
/// label and sample: forwarding is mostly this.
#[inline]
pub fn splice_series(
    out: &mut Vec<u8>,
    buf: &[u8],
    splice: Splice,
    labels: &[LabelRef],
    statics: &SpliceLabels,
) {
    if statics.is_empty() {
        out.extend_from_slice(&buf[splice.field.range()]);
        return;
    }
    // Canonical label fields: 4 bytes (tag, length, tag, name length) before the name, and
    // the field ends with the value.
    let field_start = |k: usize| labels[k].name.start as usize - 4;
    let run = |out: &mut Vec<u8>, a: usize, b: usize| {
        if a < b {
            out.extend_from_slice(&buf[field_start(a)..labels[b - 1].value.end as usize]);
        }
    };
    let name = |k: usize| &buf[labels[k].name.range()];
    let start = out.len();
    out.push(0x0a);
    out.extend_from_slice(&[0; LEN_ROOM]);
    let body = out.len();
    let (mut i, mut from) = (0, 0);
    for st in &statics.labels {
        while i < labels.len() && cmp_bytes(name(i), &st.name) == Ordering::Less {
            i += 1;
        }
        if i < labels.len() && *name(i) == *st.name {
            if !st.task {
                i += 1; // the series has it: an external label does not replace it
                continue;
            }
            run(out, from, i);
            i += 1;
            from = i;
        } else {
            run(out, from, i);
            from = i;
        }
        out.extend_from_slice(&st.field);
    }
    run(out, from, labels.len());
    out.extend_from_slice(&buf[splice.tail as usize..splice.field.end as usize]);
    finish_field(out, start, body);
}

/// One series' `timeseries` field, as both remote_write and Kafka (`format: remote_write`)
/// targets write it: its bytes as received with the configured labels spliced
/// in when the decoder marked it copyable, the caller offered the encoded labels and nothing
/// else changes (no `rewritten` extras, no relay-internal fields to add); encoded label by
/// label and sample by sample otherwise, with the extras replaced by `internal` when
/// `rewritten`, followed by it otherwise.
#[inline]
pub fn write_series_field(
    bytes: &mut Vec<u8>,
    series: &SeriesView<'_>,
    labels: MergedLabels<'_>,
    rewritten: bool,
    internal: Option<&[u8]>,
) {
    if !rewritten
        && internal.is_none()
        && let (Some(splice), Some(statics)) = (series.splice(), labels.splice_labels())
    {
        splice_series(bytes, series.buf(), splice, series.label_refs(), statics);
        return;
    }
    encode_series(
        bytes,
        labels,
        series.samples(),
        series.extras().filter(|_| !rewritten).chain(internal),
    );
}

/// Write the length of the field that starts at `start` (its tag) into the room after the
/// tag, then close the gap between the length and the content at `body`.
#[inline]
fn finish_field(out: &mut Vec<u8>, start: usize, body: usize) {
    let len = out.len() - body;
    let width = varint_len(len as u64);
    debug_assert!(width <= LEN_ROOM);
    let mut v = len as u64;
    let at = start + 1;
    for i in 0..width {
        out[at + i] = if i + 1 < width {
            (v as u8) | 0x80
        } else {
            v as u8
        };
        v >>= 7;
    }
    out.copy_within(body.., at + width);
    out.truncate(at + width + len);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::SeriesBatch;
    use crate::proto::{self, Histogram, Label, TimeSeries, WriteRequest};
    use crate::relabel::{LabelSet, merge};
    use crate::tools::workload::WorkloadSpec;
    use prost::Message;

    /// Splicing must write exactly what encoding the merged labels writes, for every kind of
    /// configured label (before, between, after and equal to the series' own; task labels
    /// replacing, external ones yielding; empty values removing), and must refuse the series
    /// it cannot copy (unsorted, empty-valued, non-canonical labels; 2.0 bodies).
    #[test]
    fn splicing_writes_what_encoding_writes() {
        let mut req = WorkloadSpec {
            series: 200,
            samples_per_series: 2,
            ..Default::default()
        }
        .request(3);
        req.timeseries[1].histograms.push(Histogram {
            count_int: 4,
            sum: 2.5,
            schema: 1,
            timestamp: 9,
        });
        // Not copyable: unsorted labels, an empty value, a 200-byte (2-byte length) value.
        req.timeseries[2].labels.swap(1, 2);
        req.timeseries[3].labels.push(Label::new("zz_empty", ""));
        req.timeseries[4]
            .labels
            .push(Label::new("zz_long", &"v".repeat(200)));
        let body = req.encode_to_vec();
        let mut batch = SeriesBatch::new();
        batch.decode_protobuf(&body).unwrap();
        let copyable: Vec<bool> = batch.iter().map(|s| s.splice().is_some()).collect();
        assert_eq!(&copyable[..6], &[true, true, false, false, false, true]);
        assert_eq!(copyable.iter().filter(|&&c| c).count(), 197);

        type Labels<'a> = &'a [(&'a str, &'a str)];
        let sets: &[(Labels, Labels)] = &[
            (&[], &[]),
            (
                &[("deliver_test_key1", "ssss")],
                &[("source_cluster", "c1")],
            ),
            (&[("AAA", "first"), ("zzz", "last")], &[]),
            (&[("job", "replaced")], &[]),
            (&[("job", "")], &[("instance", "ignored"), ("zone", "")]),
            (
                &[("job", "t")],
                &[("job", "e"), ("__name__", "x"), ("a", "b")],
            ),
            (&[], &[("instance", "ignored"), ("mmm", "added")]),
        ];
        for (task, ext) in sets {
            let task = LabelSet::new(task.iter().copied()).unwrap();
            let ext = LabelSet::new(ext.iter().copied()).unwrap();
            let statics = SpliceLabels::new(&task, &ext);
            for s in batch.iter() {
                let mut want = Vec::new();
                encode_series(
                    &mut want,
                    merge(s.buf(), s.label_refs(), &task, &ext),
                    s.samples(),
                    s.extras(),
                );
                if let Some(splice) = s.splice() {
                    let mut got = Vec::new();
                    splice_series(&mut got, s.buf(), splice, s.label_refs(), &statics);
                    assert_eq!(got, want, "task {task:?}, external {ext:?}");
                }
            }
        }

        let mut v2 = SeriesBatch::new();
        let v2_body = crate::proto::v2::from_v1(&req).encode_to_vec();
        v2.decode_protobuf_as(&v2_body, crate::decode::Protocol::V2)
            .unwrap();
        assert!(v2.iter().all(|s| s.splice().is_none()));
    }

    #[test]
    fn round_trips_through_prost_with_labels_applied() {
        let mut req = WorkloadSpec {
            series: 300,
            samples_per_series: 3,
            ..Default::default()
        }
        .request(1);
        req.timeseries[0].samples[0].value = f64::from_bits(0x7ff0_0000_0000_0002);
        req.timeseries[0].samples[1].timestamp = -5;
        req.timeseries[1].histograms.push(Histogram {
            count_int: 9,
            sum: 1.5,
            schema: 3,
            timestamp: 77,
        });
        let mut batch = SeriesBatch::new();
        batch
            .decode_snappy(&proto::encode_snappy(&req), Default::default())
            .unwrap();
        let task = LabelSet::new([("deliver_test_key1", "ssss"), ("job", "relabelled")]).unwrap();
        let ext = LabelSet::new([("source_cluster", "cluster-01")]).unwrap();
        let mut out = Vec::new();
        for s in batch.iter() {
            encode_series(
                &mut out,
                merge(s.buf(), s.label_refs(), &task, &ext),
                s.samples(),
                s.extras(),
            );
        }
        let back = WriteRequest::decode(&out[..]).unwrap();
        assert_eq!(back.timeseries.len(), 300);
        for (got, orig) in back.timeseries.iter().zip(&req.timeseries) {
            let mut want: Vec<Label> = orig
                .labels
                .iter()
                .filter(|l| l.name != "job")
                .cloned()
                .collect();
            want.push(Label::new("deliver_test_key1", "ssss"));
            want.push(Label::new("job", "relabelled"));
            want.push(Label::new("source_cluster", "cluster-01"));
            want.sort();
            assert_eq!(got.labels, want);
            let bits = |s: &[proto::Sample]| {
                s.iter()
                    .map(|x| (x.value.to_bits(), x.timestamp))
                    .collect::<Vec<_>>()
            };
            assert_eq!(bits(&got.samples), bits(&orig.samples));
            assert_eq!(got.histograms, orig.histograms);
        }
        let _ = TimeSeries::default();
    }
}
