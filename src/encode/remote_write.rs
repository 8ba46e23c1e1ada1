//! Remote-write 1.0 protobuf, written by hand into a reused buffer.
//!
//! A `WriteRequest` is a sequence of `timeseries` fields (field 1), so the concatenation of
//! encoded series is itself a valid request body: queues append series to a buffer and send it
//! as it is. Each series is sized first (a cheap second walk over the labels) so its length
//! prefix can be written before its content, with no shifting and no scratch buffer.

use crate::batch::Sample;

#[inline]
fn varint_len(v: u64) -> usize {
    // 1 byte per started group of 7 bits; 0 still takes one byte.
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

#[inline]
fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

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
        out.push(0x0a);
        put_varint(out, label_len(n, v) as u64);
        out.push(0x0a);
        put_varint(out, n.len() as u64);
        out.extend_from_slice(n);
        out.push(0x12);
        put_varint(out, v.len() as u64);
        out.extend_from_slice(v);
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

    #[test]
    fn varint_lengths() {
        for (v, n) in [
            (0u64, 1),
            (127, 1),
            (128, 2),
            (16383, 2),
            (16384, 3),
            (u64::MAX, 10),
        ] {
            assert_eq!(varint_len(v), n, "{v}");
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(b.len(), n);
        }
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
