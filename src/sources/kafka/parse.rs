//! A Kafka message → the batch the HTTP path builds ([`SeriesBatch`]), so tasks, filters,
//! labels and targets run unchanged on what a Kafka source reads.
//!
//! `format: json` is the seed's message: a JSON array of flat sample objects (every label a
//! string field, plus `value` and `timestamp`), raw-snappy compressed or not. It is parsed
//! with simd-json into a tape and walked once; each object's label names and values are
//! copied into the batch's buffer (unescaped) as spans, its labels checked, sorted and hashed
//! by the same code as remote-write ingest (`SeriesBatch::check_labels`), so the batch keeps
//! every invariant of `batch.rs`. Values are strings (`"675.0"`, `"1e-3"`, `"NaN"`, `"+Inf"`,
//! `"-Inf"`, and `"Infinity"`/`"-Infinity"` as the Kafka target writes them) or JSON numbers;
//! timestamps are milliseconds, as a string of digits or an integral JSON number.
//!
//! `format: remote_write` is what the Kafka target writes with that format: a remote-write
//! 1.0 `WriteRequest`, raw-snappy compressed or not, decoded by the ingest decoder itself.
//!
//! Compressed or not is found out, not configured: a message is first read as raw snappy; if
//! that fails (or, for JSON, does not give an array), the message itself is read. A message
//! that is neither is refused with the snappy error.
//!
//! A message is taken or refused whole ([`MessageError`], with a `reason` for the metric): a
//! dead-letter topic then holds exactly the message that was refused.

use crate::batch::{LabelRef, Sample, SeriesBatch, SeriesRef, Span};
use crate::decode::{DecodeError, DecodeLimits, Protocol};
use simd_json::{Node, StaticNode};

/// Why a message was refused: `reason` is the `reason` label of
/// `promrelay_kafka_source_invalid_messages_total`, `detail` the log line's text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct MessageError {
    pub reason: &'static str,
    pub detail: String,
}

fn refused(reason: &'static str, detail: impl Into<String>) -> MessageError {
    MessageError {
        reason,
        detail: detail.into(),
    }
}

/// Reasons a message is refused (the metric's `reason` label).
pub mod reason {
    /// Neither valid raw snappy nor an uncompressed message.
    pub const SNAPPY: &str = "snappy";
    /// Not JSON, or not an array of objects.
    pub const JSON: &str = "json";
    /// A sample object without `__name__`.
    pub const NO_NAME: &str = "no_name";
    /// A `value` that is missing or not a number.
    pub const BAD_VALUE: &str = "bad_value";
    /// A `timestamp` that is missing or not an integer of milliseconds.
    pub const BAD_TIMESTAMP: &str = "bad_timestamp";
    /// A label that is not a string, empty, duplicated, not UTF-8 or over a `server` limit.
    pub const BAD_LABELS: &str = "bad_labels";
    /// `format: remote_write`: not a valid `WriteRequest`.
    pub const REMOTE_WRITE: &str = "remote_write";
    /// Larger than `server.max_decoded_bytes` once decompressed.
    pub const TOO_LARGE: &str = "too_large";
    /// A message without a value (a tombstone).
    pub const EMPTY: &str = "empty";
}

/// Reused buffers of one reader: the decompressed message and simd-json's own.
#[derive(Default)]
pub struct JsonScratch {
    /// The message as simd-json parses it (in place: it unescapes strings into it).
    text: Vec<u8>,
    buffers: simd_json::Buffers,
}

/// How much a decompressed message may be, at most: the snappy header's claim is checked
/// against this and against what the message can hold before anything is allocated.
fn snappy_len(msg: &[u8], limits: &DecodeLimits) -> Result<usize, MessageError> {
    let declared = snap::raw::decompress_len(msg)
        .map_err(|e| refused(reason::SNAPPY, format!("snappy: {e}")))?;
    // Snappy's densest element is a 3-byte copy of 64 bytes (see decode/mod.rs).
    if declared > msg.len().saturating_mul(64) / 3 + 64 {
        return Err(refused(
            reason::SNAPPY,
            format!("snappy: the header declares {declared} bytes, more than the message can hold"),
        ));
    }
    if declared > limits.max_decoded_bytes {
        return Err(refused(
            reason::TOO_LARGE,
            format!(
                "decompressed size {declared} exceeds server.max_decoded_bytes ({})",
                limits.max_decoded_bytes
            ),
        ));
    }
    Ok(declared)
}

/// Whether `b` starts (after JSON whitespace) with `[`.
fn looks_like_array(b: &[u8]) -> bool {
    b.iter()
        .find(|c| !matches!(c, b' ' | b'\t' | b'\n' | b'\r'))
        .is_some_and(|&c| c == b'[')
}

impl JsonScratch {
    /// Put the message's JSON text into `self.text`: decompressed, or as it is.
    fn load(&mut self, msg: &[u8], limits: &DecodeLimits) -> Result<(), MessageError> {
        let snappy = snappy_len(msg, limits).and_then(|n| {
            self.text.clear();
            self.text.resize(n, 0);
            snap::raw::Decoder::new()
                .decompress(msg, &mut self.text)
                .map_err(|e| refused(reason::SNAPPY, format!("snappy: {e}")))
        });
        match snappy {
            Ok(n) if looks_like_array(&self.text[..n]) => {
                self.text.truncate(n);
                Ok(())
            }
            Err(e) if e.reason == reason::TOO_LARGE => Err(e),
            // Not snappy (or snappy of something else): the message itself, if it is JSON.
            _ if looks_like_array(msg) => {
                if msg.len() > limits.max_decoded_bytes {
                    return Err(refused(
                        reason::TOO_LARGE,
                        format!(
                            "message of {} bytes exceeds server.max_decoded_bytes ({})",
                            msg.len(),
                            limits.max_decoded_bytes
                        ),
                    ));
                }
                self.text.clear();
                self.text.extend_from_slice(msg);
                Ok(())
            }
            Ok(_) => Err(refused(
                reason::JSON,
                "the decompressed message is not a JSON array",
            )),
            Err(e) => Err(e),
        }
    }
}

/// Fill `batch` (cleared first) from a `format: json` message.
///
/// # Errors
/// [`MessageError`] for a message that is not a valid array of sample objects; the batch is
/// then left cleared.
pub fn json_into(
    batch: &mut SeriesBatch,
    msg: &[u8],
    limits: DecodeLimits,
    scratch: &mut JsonScratch,
) -> Result<(), MessageError> {
    batch.clear();
    batch.limits = limits;
    let result = scratch
        .load(msg, &limits)
        .and_then(|()| walk(batch, &mut scratch.text, &mut scratch.buffers, limits));
    if result.is_err() {
        batch.clear();
    }
    result
}

/// Append `bytes` to the batch's buffer; their span.
fn push_bytes(batch: &mut SeriesBatch, bytes: &[u8]) -> Span {
    let start = batch.len;
    let end = start + bytes.len();
    if batch.buf.len() < end {
        batch.buf.resize(end.max(batch.buf.len() * 2), 0);
    }
    batch.buf[start..end].copy_from_slice(bytes);
    batch.len = end;
    Span {
        start: start as u32,
        end: end as u32,
    }
}

fn walk(
    batch: &mut SeriesBatch,
    text: &mut [u8],
    buffers: &mut simd_json::Buffers,
    limits: DecodeLimits,
) -> Result<(), MessageError> {
    let tape = simd_json::to_tape_with_buffers(text, buffers)
        .map_err(|e| refused(reason::JSON, format!("json: {e}")))?;
    let nodes = tape.0.as_slice();
    let Some(Node::Array { len, .. }) = nodes.first() else {
        return Err(refused(reason::JSON, "json: the message is not an array"));
    };
    if *len > limits.max_series_per_request {
        return Err(refused(
            reason::BAD_LABELS,
            format!(
                "{len} samples exceed server.max_series_per_request ({})",
                limits.max_series_per_request
            ),
        ));
    }
    // Everything copied into the buffer fits in u32 spans: bounded by the decoded text.
    let mut i = 1;
    for sample in 0..*len {
        let Some(&Node::Object { len: fields, count }) = nodes.get(i) else {
            return Err(refused(
                reason::JSON,
                format!("json: element {sample} is not an object"),
            ));
        };
        let end = i + 1 + count;
        i += 1;
        let labels_start = batch.labels.len();
        let mut value = None;
        let mut timestamp = None;
        for _ in 0..fields {
            let key = match nodes.get(i) {
                Some(Node::String(k)) => *k,
                _ => return Err(refused(reason::JSON, "json: object key expected")),
            };
            let node = nodes.get(i + 1);
            match (key, node) {
                ("value", Some(n)) => value = Some(number(n).ok_or_else(|| bad_value(sample, n))?),
                ("timestamp", Some(n)) => {
                    timestamp = Some(millis(n).ok_or_else(|| bad_timestamp(sample, n))?);
                }
                (name, Some(Node::String(v))) => {
                    let name = push_bytes(batch, name.as_bytes());
                    let value = push_bytes(batch, v.as_bytes());
                    batch.labels.push(LabelRef { name, value });
                }
                (name, _) => {
                    return Err(refused(
                        reason::BAD_LABELS,
                        format!("sample {sample}: label {name:?} is not a string"),
                    ));
                }
            }
            // Past the value (a label value, number or string is one node; anything nested
            // was refused above).
            i += 2;
        }
        if i != end {
            return Err(refused(
                reason::JSON,
                "json: nested value in a sample object",
            ));
        }
        let Some(value) = value else {
            return Err(refused(
                reason::BAD_VALUE,
                format!("sample {sample}: no \"value\""),
            ));
        };
        let Some(timestamp) = timestamp else {
            return Err(refused(
                reason::BAD_TIMESTAMP,
                format!("sample {sample}: no \"timestamp\""),
            ));
        };
        let series = batch.series.len();
        let hash = batch
            .check_pushed_labels(series, labels_start)
            .map_err(|e| match e {
                DecodeError::BadSeries { what, .. } if what == "series has no labels" => {
                    refused(reason::NO_NAME, format!("sample {sample}: no \"__name__\""))
                }
                e => refused(reason::BAD_LABELS, format!("sample {sample}: {e}")),
            })?;
        let has_name = batch.labels[labels_start..]
            .iter()
            .any(|l| &batch.buf[l.name.range()] == b"__name__");
        if !has_name {
            return Err(refused(
                reason::NO_NAME,
                format!("sample {sample}: no \"__name__\""),
            ));
        }
        let s = batch.samples.len() as u32;
        batch.samples.push(Sample { value, timestamp });
        let extras = batch.extras.len() as u32;
        batch.series.push(SeriesRef {
            labels: (labels_start as u32, batch.labels.len() as u32),
            samples: (s, s + 1),
            extras: (extras, extras),
            histograms: 0,
            metadata: 0,
            hash,
            hash_region: Span::default(),
            // Not spliced: there are no received protobuf bytes to copy.
            splice: None,
        });
    }
    if i != nodes.len() {
        return Err(refused(reason::JSON, "json: trailing data after the array"));
    }
    Ok(())
}

fn shown(n: &Node<'_>) -> String {
    match n {
        Node::String(s) => format!("{s:?}"),
        Node::Static(s) => format!("{s}"),
        Node::Array { .. } => "an array".into(),
        Node::Object { .. } => "an object".into(),
    }
}

fn bad_value(sample: usize, n: &Node<'_>) -> MessageError {
    refused(
        reason::BAD_VALUE,
        format!("sample {sample}: value {} is not a number", shown(n)),
    )
}

fn bad_timestamp(sample: usize, n: &Node<'_>) -> MessageError {
    refused(
        reason::BAD_TIMESTAMP,
        format!(
            "sample {sample}: timestamp {} is not an integer of milliseconds",
            shown(n)
        ),
    )
}

/// A sample value: a JSON number, or a string Rust's float parser reads (which takes
/// `NaN`, `+Inf`, `-Inf`, `Infinity`, `1e-3`, `675.0`, case-insensitively for the words).
fn number(n: &Node<'_>) -> Option<f64> {
    match n {
        Node::String(s) => s.trim().parse::<f64>().ok(),
        Node::Static(StaticNode::F64(v)) => Some(*v),
        Node::Static(StaticNode::I64(v)) => Some(*v as f64),
        Node::Static(StaticNode::U64(v)) => Some(*v as f64),
        _ => None,
    }
}

/// A timestamp in milliseconds: digits in a string, or an integral JSON number.
fn millis(n: &Node<'_>) -> Option<i64> {
    match n {
        Node::String(s) => s.trim().parse::<i64>().ok(),
        Node::Static(StaticNode::I64(v)) => Some(*v),
        Node::Static(StaticNode::U64(v)) => i64::try_from(*v).ok(),
        Node::Static(StaticNode::F64(v)) if v.fract() == 0.0 && v.abs() < 9.2e18 => Some(*v as i64),
        _ => None,
    }
}

/// Fill `batch` from a `format: remote_write` message (snappy or not).
///
/// # Errors
/// [`MessageError`] with reason `remote_write` (or `too_large`) naming the decoder's error.
pub fn remote_write_into(
    batch: &mut SeriesBatch,
    msg: &[u8],
    limits: DecodeLimits,
) -> Result<(), MessageError> {
    let snappy = batch.decode_snappy_as(msg, limits, Protocol::V1);
    let Err(first) = snappy else { return Ok(()) };
    if matches!(first, DecodeError::TooLarge { .. }) {
        return Err(refused(reason::TOO_LARGE, first.to_string()));
    }
    batch
        .decode_protobuf_with(msg, Protocol::V1, limits)
        .map_err(|_| refused(reason::REMOTE_WRITE, format!("remote-write: {first}")))
}
