//! Metadata out, in the remote-write 1.0 layout: `MetricMetadata` messages (type 1,
//! metric_family_name 2, help 4, unit 5), written by hand like the series.
//!
//! Where metadata travels through a queue (which holds 1.0 bytes, see
//! [`crate::encode::remote_write_v2`]):
//! - toward a 1.0 target, each entry is a top-level `metadata` field (3) of the queued body,
//!   beside the `timeseries` fields; the sender splits them into a request of their own
//!   ([`split`]), as Prometheus sends metadata;
//! - toward a 2.0 target, a series' metadata is written inside its `timeseries` message under
//!   field 5, which `prometheus.TimeSeries` does not define and which only the relay's own
//!   1.0 → 2.0 conversion reads ([`SERIES_METADATA_TAG`]): it becomes the 2.0 series'
//!   `metadata` with symbol refs. No 1.0 receiver ever sees that field.

use super::varint::{put_varint, read_varint, varint_len};
use crate::batch::MetadataRef;

/// Tag of a top-level `metadata` field of a 1.0 `WriteRequest` (field 3, length-delimited).
pub const METADATA_TAG: u8 = 0x1a;
/// Tag of the relay-internal per-series metadata field (5, length-delimited) inside a queued
/// `timeseries` message bound for a 2.0 target.
pub const SERIES_METADATA_TAG: u8 = 0x2a;

fn text_len(s: &[u8]) -> usize {
    if s.is_empty() {
        0
    } else {
        1 + varint_len(s.len() as u64) + s.len()
    }
}

fn put_text(out: &mut Vec<u8>, tag: u8, s: &[u8]) {
    if !s.is_empty() {
        out.push(tag);
        put_varint(out, s.len() as u64);
        out.extend_from_slice(s);
    }
}

/// Append `m` (its spans into `buf`) as a complete field `tag` holding a `MetricMetadata`
/// message. Proto3 defaults (type 0, empty strings) are left out, as prost does.
pub fn write_metadata(out: &mut Vec<u8>, tag: u8, buf: &[u8], m: &MetadataRef) {
    let (family, help, unit) = (
        &buf[m.family.range()],
        &buf[m.help.range()],
        &buf[m.unit.range()],
    );
    let kind = if m.kind == 0 {
        0
    } else {
        1 + varint_len(u64::from(m.kind))
    };
    let len = kind + text_len(family) + text_len(help) + text_len(unit);
    out.reserve(len + 6);
    out.push(tag);
    put_varint(out, len as u64);
    if m.kind != 0 {
        out.push(0x08);
        put_varint(out, u64::from(m.kind));
    }
    put_text(out, 0x12, family);
    put_text(out, 0x22, help);
    put_text(out, 0x2a, unit);
}

/// A queued 1.0 body split in two: its `timeseries` fields and its `metadata` fields.
#[derive(Default)]
pub struct Split {
    pub series: Vec<u8>,
    pub metadata: Vec<u8>,
    /// `metadata` fields found.
    pub entries: usize,
}

/// Split the queued 1.0 `body` into `into` (cleared first) when it holds `metadata` fields;
/// `false` (and `into` untouched beyond clearing) when it holds none, so the body can be sent
/// as it is. Reads only the top-level tags and lengths.
///
/// # Errors
/// A body that is not a sequence of length-delimited fields (queues only hold what the relay
/// wrote, so this is an internal error).
pub fn split(body: &[u8], into: &mut Split) -> Result<bool, &'static str> {
    into.series.clear();
    into.metadata.clear();
    into.entries = 0;
    let mut found = false;
    let mut pos = 0;
    while pos < body.len() {
        let start = pos;
        let tag = body[pos];
        pos += 1;
        let len = read_varint(body, &mut pos).ok_or("truncated length")? as usize;
        let end = pos.checked_add(len).filter(|&e| e <= body.len());
        let end = end.ok_or("a length runs past the body")?;
        match tag {
            METADATA_TAG => {
                if !found {
                    into.series.extend_from_slice(&body[..start]);
                    found = true;
                }
                into.metadata.extend_from_slice(&body[start..end]);
                into.entries += 1;
            }
            0x0a => {
                if found {
                    into.series.extend_from_slice(&body[start..end]);
                }
            }
            _ => return Err("an unexpected top-level field"),
        }
        pos = end;
    }
    Ok(found)
}

/// The type, help and unit of a `MetricMetadata` message (without its tag and length).
///
/// # Errors
/// A malformed message (an internal error: only the relay writes these).
pub fn read_metadata(msg: &[u8]) -> Result<(u32, &[u8], &[u8]), &'static str> {
    let (mut kind, mut help, mut unit): (u32, &[u8], &[u8]) = (0, b"", b"");
    let mut p = 0;
    while p < msg.len() {
        let key = read_varint(msg, &mut p).ok_or("truncated key")?;
        match (key >> 3, key & 7) {
            (1, 0) => kind = read_varint(msg, &mut p).ok_or("truncated type")? as u32,
            (f, 2) => {
                let l = read_varint(msg, &mut p).ok_or("truncated length")? as usize;
                let s = msg.get(p..p + l).ok_or("a length runs past the message")?;
                p += l;
                match f {
                    4 => help = s,
                    5 => unit = s,
                    _ => {}
                }
            }
            _ => return Err("an unexpected metadata field"),
        }
    }
    Ok((kind, help, unit))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::Span;
    use crate::proto::{Label, MetricMetadata, Sample, TimeSeries, WriteRequest};
    use prost::Message;

    #[test]
    fn metadata_round_trips_through_prost_and_splits_from_series() {
        let buf = b"http_requests_totalRequests served.seconds";
        let span = |a: u32, b: u32| Span { start: a, end: b };
        let entries = [
            MetadataRef {
                family: span(0, 19),
                kind: 1,
                help: span(19, 35),
                unit: span(0, 0),
            },
            MetadataRef {
                family: span(0, 4),
                kind: 0,
                help: span(0, 0),
                unit: span(35, 42),
            },
        ];
        let series = WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![Label::new("__name__", "up")],
                samples: vec![Sample {
                    value: 1.0,
                    timestamp: 5,
                }],
                ..Default::default()
            }],
            metadata: vec![],
        }
        .encode_to_vec();
        let mut body = series.clone();
        write_metadata(&mut body, METADATA_TAG, buf, &entries[0]);
        body.extend_from_slice(&series);
        write_metadata(&mut body, METADATA_TAG, buf, &entries[1]);
        let mut s = Split::default();
        assert!(split(&body, &mut s).unwrap());
        assert_eq!(s.entries, 2);
        let got = WriteRequest::decode(&s.series[..]).unwrap();
        assert_eq!(got.timeseries.len(), 2);
        assert!(got.metadata.is_empty());
        let got = WriteRequest::decode(&s.metadata[..]).unwrap();
        assert!(got.timeseries.is_empty());
        assert_eq!(
            got.metadata,
            vec![
                MetricMetadata {
                    r#type: 1,
                    metric_family_name: "http_requests_total".into(),
                    help: "Requests served.".into(),
                    unit: String::new(),
                },
                MetricMetadata {
                    r#type: 0,
                    metric_family_name: "http".into(),
                    help: String::new(),
                    unit: "seconds".into(),
                },
            ]
        );
        assert!(!split(&series, &mut s).unwrap(), "no metadata: sent as is");
        let mut one = Vec::new();
        write_metadata(&mut one, SERIES_METADATA_TAG, buf, &entries[0]);
        assert_eq!(
            read_metadata(&one[2..]).unwrap(),
            (1, &b"Requests served."[..], &b""[..])
        );
    }
}
