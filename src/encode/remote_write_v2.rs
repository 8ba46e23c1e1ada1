//! Remote-write 2.0 (`io.prometheus.write.v2.Request`) out, from a queued 1.0 body.
//!
//! Queues and spools hold remote-write 1.0 bytes whatever the target speaks (one on-disk
//! format, and a 1.0 body is the concatenation of its series). A 2.0 target converts each
//! batch once, when it is sent: the body is walked by the same zero-copy decoder as ingest,
//! every label name and value is interned into **one symbol table per request** (`""` first,
//! each string once), and each series is written with `labels_refs`. Native histograms have
//! the same layout in both versions (field 4 in 1.0, 3 in 2.0: the one-byte tag changes);
//! exemplars are rewritten with label refs. This runs per batch on the sender, not per
//! request on ingest, so its hash map is not on the hot path.

use crate::batch::SeriesBatch;
use crate::decode::{DecodeError, DecodeLimits, Protocol};
use std::collections::HashMap;

#[inline]
fn varint_len(v: u64) -> usize {
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

fn put_len_field(out: &mut Vec<u8>, tag: u8, payload: &[u8]) {
    out.push(tag);
    put_varint(out, payload.len() as u64);
    out.extend_from_slice(payload);
}

/// One request's symbol table: every string once, in first-use order, after the `""` that
/// the spec puts at index 0.
#[derive(Default)]
struct Symbols<'a> {
    list: Vec<&'a [u8]>,
    index: HashMap<&'a [u8], u32>,
}

impl<'a> Symbols<'a> {
    fn intern(&mut self, s: &'a [u8]) -> u32 {
        if s.is_empty() {
            return 0;
        }
        let next = self.list.len() as u32 + 1;
        let r = *self.index.entry(s).or_insert(next);
        if r == next {
            self.list.push(s);
        }
        r
    }
}

/// Reused buffers of the 1.0 → 2.0 conversion (one per remote_write lane).
#[derive(Default)]
pub struct V2Writer {
    batch: SeriesBatch,
    series: Vec<u8>,
    scratch: Vec<u8>,
    refs: Vec<u8>,
}

impl V2Writer {
    /// Write the 2.0 `Request` holding the series of the 1.0 `WriteRequest` body `v1` into
    /// `out` (cleared first).
    ///
    /// # Errors
    /// The body is not a valid 1.0 request (queues only hold what the relay encoded, so this
    /// is an internal error).
    pub fn convert(&mut self, v1: &[u8], out: &mut Vec<u8>) -> Result<(), DecodeError> {
        out.clear();
        // The relay's own output: no ingest limit applies (task and external labels may
        // have added labels beyond the ingest limits).
        let limits = DecodeLimits {
            max_decoded_bytes: u32::MAX as usize,
            max_series_per_request: usize::MAX,
            max_labels_per_series: usize::MAX,
            max_label_name_bytes: usize::MAX,
            max_label_value_bytes: usize::MAX,
        };
        self.batch.decode_protobuf_with(v1, Protocol::V1, limits)?;
        let batch = &self.batch;
        let internal = series_internal(v1)?;
        let mut symbols = Symbols::default();
        self.series.clear();
        for (i, s) in batch.iter().enumerate() {
            self.scratch.clear();
            self.refs.clear();
            for (n, v) in s.labels() {
                put_varint(&mut self.refs, u64::from(symbols.intern(n)));
                put_varint(&mut self.refs, u64::from(symbols.intern(v)));
            }
            put_len_field(&mut self.scratch, 0x0a, &self.refs);
            let ext = internal.get(i);
            let starts = ext.map_or(&[][..], |e| &e.starts[..]);
            for (j, x) in s.samples().iter().enumerate() {
                let start = starts.get(j).copied().unwrap_or(0);
                let start_len = if start == 0 {
                    0
                } else {
                    1 + varint_len(start as u64)
                };
                self.scratch.push(0x12);
                put_varint(
                    &mut self.scratch,
                    (10 + varint_len(x.timestamp as u64) + start_len) as u64,
                );
                self.scratch.push(0x09);
                self.scratch
                    .extend_from_slice(&x.value.to_bits().to_le_bytes());
                self.scratch.push(0x10);
                put_varint(&mut self.scratch, x.timestamp as u64);
                if start != 0 {
                    self.scratch.push(0x18);
                    put_varint(&mut self.scratch, start as u64);
                }
            }
            for e in s.extras() {
                match e.first() {
                    // A 1.0 histogram (field 4) is a 2.0 histogram under field 3.
                    Some(0x22) => {
                        self.scratch.push(0x1a);
                        self.scratch.extend_from_slice(&e[1..]);
                    }
                    // A 1.0 exemplar (field 3): labels become refs.
                    Some(0x1a) => {
                        let (labels, value, timestamp) = exemplar_v1(e)?;
                        let mut refs = Vec::with_capacity(labels.len() * 2);
                        for (n, v) in labels {
                            put_varint(&mut refs, u64::from(symbols.intern(n)));
                            put_varint(&mut refs, u64::from(symbols.intern(v)));
                        }
                        let mut msg = Vec::with_capacity(refs.len() + 24);
                        if !refs.is_empty() {
                            put_len_field(&mut msg, 0x0a, &refs);
                        }
                        msg.push(0x11);
                        msg.extend_from_slice(&value.to_le_bytes());
                        msg.push(0x18);
                        put_varint(&mut msg, timestamp);
                        put_len_field(&mut self.scratch, 0x22, &msg);
                    }
                    _ => {}
                }
            }
            if let Some((kind, help, unit)) = ext.and_then(|e| e.metadata) {
                let mut msg = Vec::with_capacity(16);
                for (tag, v) in [
                    (0x08, u64::from(kind)),
                    (0x18, u64::from(symbols.intern(help))),
                    (0x20, u64::from(symbols.intern(unit))),
                ] {
                    if v != 0 {
                        msg.push(tag);
                        put_varint(&mut msg, v);
                    }
                }
                put_len_field(&mut self.scratch, 0x2a, &msg);
            }
            put_len_field(&mut self.series, 0x2a, &self.scratch);
        }
        put_len_field(out, 0x22, b"");
        for s in &symbols.list {
            put_len_field(out, 0x22, s);
        }
        out.extend_from_slice(&self.series);
        Ok(())
    }
}

/// What a queued series bound for a 2.0 target carries in relay-internal fields.
#[derive(Default)]
struct SeriesInternal<'a> {
    /// Type, help and unit ([`crate::encode::metadata::SERIES_METADATA_TAG`]).
    metadata: Option<(u32, &'a [u8], &'a [u8])>,
    /// One start timestamp per float sample, 0 for none
    /// ([`crate::encode::start_timestamp::SERIES_START_TAG`]).
    starts: Vec<i64>,
}

/// Per series of the queued 1.0 body, in order, its relay-internal fields. The zero-copy
/// decoder skips them as unknown; this second, shallow walk reads them. Empty (no walk) when
/// no byte of the body could start one.
fn series_internal(v1: &[u8]) -> Result<Vec<SeriesInternal<'_>>, DecodeError> {
    use crate::encode::metadata::{SERIES_METADATA_TAG, read_metadata};
    use crate::encode::start_timestamp::{SERIES_START_TAG, read_series_starts};
    let bad = || DecodeError::Protobuf("malformed relay-internal series field");
    let mut out = Vec::new();
    if !v1.contains(&SERIES_METADATA_TAG) && !v1.contains(&SERIES_START_TAG) {
        return Ok(out);
    }
    let mut pos = 0;
    while pos < v1.len() {
        let key = read_varint(v1, &mut pos).ok_or_else(bad)?;
        let len = read_varint(v1, &mut pos).ok_or_else(bad)? as usize;
        let msg = v1.get(pos..pos + len).ok_or_else(bad)?;
        pos += len;
        if key != 0x0a {
            continue;
        }
        let mut found = SeriesInternal::default();
        let mut p = 0;
        while p < msg.len() {
            let k = read_varint(msg, &mut p).ok_or_else(bad)?;
            let width = match k & 7 {
                0 => {
                    read_varint(msg, &mut p).ok_or_else(bad)?;
                    0
                }
                1 => 8,
                2 => read_varint(msg, &mut p).ok_or_else(bad)? as usize,
                5 => 4,
                _ => return Err(bad()),
            };
            let field = msg.get(p..p + width).ok_or_else(bad)?;
            p += width;
            if k == u64::from(SERIES_METADATA_TAG) {
                found.metadata = Some(read_metadata(field).map_err(|_| bad())?);
            } else if k == u64::from(SERIES_START_TAG) {
                read_series_starts(field, &mut found.starts).map_err(|_| bad())?;
            }
        }
        out.push(found);
    }
    Ok(out)
}

/// The labels, value bits and timestamp of a complete 1.0 `exemplars` field (tag, length,
/// message) as the decoder checked it.
type ExemplarParts<'a> = (Vec<(&'a [u8], &'a [u8])>, u64, u64);

fn exemplar_v1(field: &[u8]) -> Result<ExemplarParts<'_>, DecodeError> {
    let bad = || DecodeError::Protobuf("malformed queued exemplar");
    let mut pos = 1;
    let len = read_varint(field, &mut pos).ok_or_else(bad)? as usize;
    let msg = field.get(pos..pos + len).ok_or_else(bad)?;
    let mut labels = Vec::new();
    let (mut value, mut timestamp) = (0u64, 0u64);
    let mut p = 0;
    while p < msg.len() {
        let key = read_varint(msg, &mut p).ok_or_else(bad)?;
        match (key >> 3, key & 7) {
            (1, 2) => {
                let l = read_varint(msg, &mut p).ok_or_else(bad)? as usize;
                let label = msg.get(p..p + l).ok_or_else(bad)?;
                p += l;
                let (mut name, mut val): (&[u8], &[u8]) = (b"", b"");
                let mut q = 0;
                while q < label.len() {
                    let k = read_varint(label, &mut q).ok_or_else(bad)?;
                    let n = read_varint(label, &mut q).ok_or_else(bad)? as usize;
                    let s = label.get(q..q + n).ok_or_else(bad)?;
                    q += n;
                    match k {
                        0x0a => name = s,
                        0x12 => val = s,
                        _ => return Err(bad()),
                    }
                }
                labels.push((name, val));
            }
            (2, 1) => {
                let b = msg.get(p..p + 8).ok_or_else(bad)?;
                value = u64::from_le_bytes(b.try_into().map_err(|_| bad())?);
                p += 8;
            }
            (3, 0) => timestamp = read_varint(msg, &mut p).ok_or_else(bad)?,
            _ => return Err(bad()),
        }
    }
    Ok((labels, value, timestamp))
}

fn read_varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{self, Exemplar, Histogram, Label, TimeSeries, WriteRequest, v2};
    use crate::tools::workload::WorkloadSpec;
    use prost::Message;

    #[test]
    fn a_1_0_body_becomes_the_same_series_in_2_0_with_one_symbol_table() {
        let mut req = WorkloadSpec {
            series: 300,
            ..Default::default()
        }
        .request(1);
        req.timeseries.push(TimeSeries {
            labels: vec![Label::new("__name__", "h"), Label::new("job", "api")],
            samples: vec![],
            exemplars: vec![Exemplar {
                labels: vec![Label::new("trace_id", "abc")],
                value: 2.5,
                timestamp: 9,
            }],
            histograms: vec![Histogram {
                count_int: 3,
                sum: 4.5,
                schema: 1,
                timestamp: 6,
            }],
        });
        let mut out = Vec::new();
        V2Writer::default()
            .convert(&req.encode_to_vec(), &mut out)
            .unwrap();
        let got = v2::Request::decode(&out[..]).unwrap();
        assert_eq!(got.symbols[0], "");
        let mut unique = got.symbols.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), got.symbols.len(), "each symbol once");
        // Back to 1.0 through the prost reference: the same series.
        let back = WriteRequest {
            timeseries: got
                .timeseries
                .iter()
                .map(|ts| TimeSeries {
                    labels: ts
                        .labels_refs
                        .chunks(2)
                        .map(|p| {
                            Label::new(&got.symbols[p[0] as usize], &got.symbols[p[1] as usize])
                        })
                        .collect(),
                    samples: ts
                        .samples
                        .iter()
                        .map(|s| proto::Sample {
                            value: s.value,
                            timestamp: s.timestamp,
                        })
                        .collect(),
                    exemplars: ts
                        .exemplars
                        .iter()
                        .map(|e| Exemplar {
                            labels: e
                                .labels_refs
                                .chunks(2)
                                .map(|p| {
                                    Label::new(
                                        &got.symbols[p[0] as usize],
                                        &got.symbols[p[1] as usize],
                                    )
                                })
                                .collect(),
                            value: e.value,
                            timestamp: e.timestamp,
                        })
                        .collect(),
                    histograms: ts
                        .histograms
                        .iter()
                        .map(|h| Histogram {
                            count_int: h.count_int,
                            sum: h.sum,
                            schema: h.schema,
                            timestamp: h.timestamp,
                        })
                        .collect(),
                })
                .collect(),
            metadata: vec![],
        };
        assert_eq!(back, req);
        // And the relay's own 2.0 decoder reads it too.
        let mut batch = SeriesBatch::new();
        batch.decode_protobuf_as(&out, Protocol::V2).unwrap();
        assert_eq!(batch.len(), 301);
        assert_eq!(batch.histogram_count(), 1);
        assert_eq!(batch.exemplar_count(), 1);
    }
}
