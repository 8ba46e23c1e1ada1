//! Remote-write request decoding (1.0 `prometheus.WriteRequest` and 2.0
//! `io.prometheus.write.v2.Request`): raw snappy into a reused buffer, then a hand-written
//! protobuf walk that fills a [`SeriesBatch`] with byte ranges.
//!
//! 2.0 and the symbol table: a 2.0 request carries every string once in `symbols` and each
//! series names its labels by index pairs (`labels_refs`). The walk first records each symbol's
//! span in the decoded buffer, then resolves a series' refs to those spans, so a 2.0 label is
//! the same (name span, value span) pair as a 1.0 label and nothing downstream can tell the
//! versions apart. No string is copied. A 2.0 native histogram has the 1.0 layout (plus
//! `start_timestamp`, field 17, which 1.0 readers skip as unknown) under field 3 instead of 4:
//! its one-byte tag is rewritten in place (0x1a → 0x22) so it passes through to 1.0 targets as
//! a raw extra like a 1.0 histogram. A 2.0 exemplar names its labels by refs, which no 1.0
//! reader understands: it is rewritten once in the 1.0 layout into the buffer's tail, past
//! the decoded bytes (the only bytes a 2.0 decode writes; none for a request without
//! exemplars).
//!
//! Why by hand: prost would allocate a `String` per label name and value and a `Vec` per series;
//! at a few million samples a second that allocation is most of the cost. The walker here reads
//! each field once and records where it is. `prost` stays the reference: the tests decode random
//! requests both ways and compare.
//!
//! Safety of the limits: the snappy header declares the decoded length, which is checked against
//! [`DecodeLimits::max_decoded_bytes`] *before* anything is allocated, so a small body cannot make
//! the relay allocate gigabytes.
//!
//! Unknown fields are skipped, as protobuf requires. 1.0 exemplars (field 3) and native histograms
//! (field 4) are kept as raw encoded fields and passed through to protobuf targets unchanged.
//! Metadata (1.0 `MetricMetadata`, 2.0 per-series `metadata`) is read into
//! [`crate::batch::MetadataRef`]s (see `metadata.rs`); 2.0 `start_timestamp`s are kept beside
//! the samples (`SeriesBatch::start_timestamps`) and inside the raw histograms (field 17).

use crate::batch::{LabelRef, Sample, SeriesBatch, SeriesRef, Span, Splice};
use crate::encode::varint::varint_len;
#[cfg(test)]
use labels::label_set_hash_x4;
pub use labels::{SeriesHasher, cmp_bytes, label_set_hash};

/// What the decoder refuses. [`DecodeError::status`] maps each to its HTTP answer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("snappy: {0}")]
    Snappy(String),
    #[error("decoded body of {declared} bytes exceeds the limit of {limit} bytes")]
    TooLarge { declared: usize, limit: usize },
    #[error("protobuf: {0}")]
    Protobuf(&'static str),
    #[error("series {series}: {what}")]
    BadSeries { series: usize, what: String },
    #[error("remote-write 2.0: {0}")]
    BadRequest(String),
    #[error("{what} exceeds the limit of {limit} (server.{setting})")]
    Limit {
        what: String,
        limit: usize,
        setting: &'static str,
    },
}

impl DecodeError {
    /// The HTTP status the ingest answers with: 413 for size, 400 for everything else.
    pub fn status(&self) -> u16 {
        match self {
            DecodeError::TooLarge { .. } => 413,
            _ => 400,
        }
    }

    /// The `reason` label of `promrelay_ingest_refused_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::Snappy(_) => "snappy",
            DecodeError::TooLarge { .. } => "decoded_too_large",
            DecodeError::Protobuf(_) => "protobuf",
            DecodeError::BadSeries { .. } => "bad_series",
            DecodeError::BadRequest(_) => "bad_request",
            DecodeError::Limit { setting, .. } => setting,
        }
    }
}

/// Limits applied while decoding. Each refusal is a 400 (413 for the decoded size) naming the
/// setting, so a sender's operator can tell what to change.
#[derive(Clone, Copy, Debug)]
pub struct DecodeLimits {
    pub max_decoded_bytes: usize,
    pub max_series_per_request: usize,
    pub max_labels_per_series: usize,
    pub max_label_name_bytes: usize,
    pub max_label_value_bytes: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_decoded_bytes: 256 << 20,
            max_series_per_request: 1_000_000,
            max_labels_per_series: 256,
            max_label_name_bytes: 1024,
            max_label_value_bytes: 64 << 10,
        }
    }
}

/// Which remote-write message a body holds (chosen by the request's `Content-Type`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Protocol {
    /// `prometheus.WriteRequest`.
    #[default]
    V1,
    /// `io.prometheus.write.v2.Request` (spec 2.0-rc.4).
    V2,
}

impl SeriesBatch {
    /// Clear the batch and fill it from a snappy-compressed remote-write 1.0 body.
    ///
    /// # Errors
    /// [`DecodeError`] when the body is not valid snappy, declares more than the limit, is not a
    /// valid `WriteRequest`, or holds a series with no labels, an empty or duplicate label name,
    /// or a name or value that is not UTF-8. On error the batch is left cleared and reusable.
    pub fn decode_snappy(&mut self, body: &[u8], limits: DecodeLimits) -> Result<(), DecodeError> {
        self.decode_snappy_as(body, limits, Protocol::V1)
    }

    /// Clear the batch and fill it from a snappy-compressed body of `protocol`.
    ///
    /// # Errors
    /// As [`SeriesBatch::decode_snappy`]; for 2.0 also a non-empty `symbols[0]`, a symbol
    /// ref out of range, an odd number of label refs, a series with both samples and
    /// histograms, an exemplar without a timestamp (each a 400 naming it).
    pub fn decode_snappy_as(
        &mut self,
        body: &[u8],
        limits: DecodeLimits,
        protocol: Protocol,
    ) -> Result<(), DecodeError> {
        self.clear();
        self.limits = limits;
        let declared =
            snap::raw::decompress_len(body).map_err(|e| DecodeError::Snappy(e.to_string()))?;
        // Snappy's densest element is a 3-byte copy of 64 bytes, so no valid body of n bytes
        // decodes to more than 64n/3. A header claiming more is a lie that would otherwise
        // make a few hundred bytes of junk allocate up to max_decoded_bytes. Checked before
        // the size limit: junk is malformed (400), only a plausible body is too large (413).
        let ceiling = body.len().saturating_mul(64) / 3 + 64;
        if declared > ceiling {
            return Err(DecodeError::Snappy(format!(
                "the header declares {declared} decoded bytes, more than a {}-byte body can hold",
                body.len()
            )));
        }
        let limit = limits.max_decoded_bytes.min(u32::MAX as usize);
        if declared > limit {
            return Err(DecodeError::TooLarge { declared, limit });
        }
        // Reused buffer: only growth beyond the largest earlier request is zero-filled.
        if self.buf.len() < declared {
            self.buf.resize(declared, 0);
        }
        let n = snap::raw::Decoder::new()
            .decompress(body, &mut self.buf[..declared])
            .map_err(|e| DecodeError::Snappy(e.to_string()))?;
        self.len = n;
        self.decode_buffer(protocol)
    }

    /// Clear the batch and decode an uncompressed `WriteRequest`.
    ///
    /// # Errors
    /// As [`SeriesBatch::decode_snappy`], without the snappy cases.
    pub fn decode_protobuf(&mut self, raw: &[u8]) -> Result<(), DecodeError> {
        self.decode_protobuf_as(raw, Protocol::V1)
    }

    /// Clear the batch and decode an uncompressed body of `protocol`.
    ///
    /// # Errors
    /// As [`SeriesBatch::decode_snappy_as`], without the snappy cases.
    pub fn decode_protobuf_as(
        &mut self,
        raw: &[u8],
        protocol: Protocol,
    ) -> Result<(), DecodeError> {
        self.decode_protobuf_with(raw, protocol, DecodeLimits::default())
    }

    /// [`SeriesBatch::decode_protobuf_as`] under `limits`.
    ///
    /// # Errors
    /// As [`SeriesBatch::decode_protobuf_as`].
    pub fn decode_protobuf_with(
        &mut self,
        raw: &[u8],
        protocol: Protocol,
        limits: DecodeLimits,
    ) -> Result<(), DecodeError> {
        self.clear();
        self.limits = limits;
        if raw.len() > u32::MAX as usize {
            return Err(DecodeError::TooLarge {
                declared: raw.len(),
                limit: u32::MAX as usize,
            });
        }
        if self.buf.len() < raw.len() {
            self.buf.resize(raw.len(), 0);
        }
        self.buf[..raw.len()].copy_from_slice(raw);
        self.len = raw.len();
        self.decode_buffer(protocol)
    }

    fn decode_buffer(&mut self, protocol: Protocol) -> Result<(), DecodeError> {
        let result = match protocol {
            Protocol::V1 => self.walk_write_request(),
            Protocol::V2 => self.walk_request_v2(),
        };
        if result.is_err() {
            self.clear();
        }
        result
    }

    fn walk_write_request(&mut self) -> Result<(), DecodeError> {
        let end = self.len;
        let mut pos = 0usize;
        while pos < end {
            let field_start = pos;
            let (field, wire) = read_key(&self.buf[..end], &mut pos)?;
            match (field, wire) {
                (1, WIRE_LEN) => {
                    if self.series.len() >= self.limits.max_series_per_request {
                        return Err(DecodeError::Limit {
                            what: "number of series".into(),
                            limit: self.limits.max_series_per_request,
                            setting: "max_series_per_request",
                        });
                    }
                    let (start, stop) = read_len(&self.buf[..end], &mut pos)?;
                    self.walk_series(field_start, start, stop)?;
                }
                (3, WIRE_LEN) => {
                    let (a, b) = read_len(&self.buf[..end], &mut pos)?;
                    self.read_metadata_v1(a, b)?;
                }
                _ => skip_unknown(&self.buf[..end], &mut pos, field, wire, &[1, 3])?,
            }
        }
        Ok(())
    }

    /// Walk one `timeseries` message, `start..end` (its field begins at `field_start`).
    fn walk_series(
        &mut self,
        field_start: usize,
        start: usize,
        end: usize,
    ) -> Result<(), DecodeError> {
        let labels_start = self.labels.len();
        let samples_start = self.samples.len();
        let extras_start = self.extras.len();
        let mut histograms = 0u32;
        // Every read below is bounded by the message end through this slice; offsets stay
        // absolute because it starts at 0.
        let buf = &self.buf[..end];
        // The run of canonical label fields a series starts with (all of them, as Prometheus
        // sends), read by the shortest loop; the general walk below takes whatever follows.
        let (mut pos, run_sorted) = canonical_labels(buf, start, &mut self.labels);
        let run = self.labels.len();
        // Splice bookkeeping: where the next label field must start for the labels to be
        // canonical and back to back from the start of the series (`usize::MAX` once not).
        let mut labels_end = pos;
        while pos < end {
            let field_start = pos;
            let (field, wire) = read_key(buf, &mut pos)?;
            match (field, wire) {
                (1, WIRE_LEN) => {
                    let (a, b) = read_len(buf, &mut pos)?;
                    let label = match canonical_label(&buf[a..b]) {
                        Some((n, v)) => {
                            // Canonical means a 1-byte length, so the field is `a - 2 .. b`.
                            labels_end = if field_start == labels_end && a == field_start + 2 {
                                b
                            } else {
                                usize::MAX
                            };
                            LabelRef {
                                name: Span {
                                    start: (a + n.0) as u32,
                                    end: (a + n.1) as u32,
                                },
                                value: Span {
                                    start: (a + v.0) as u32,
                                    end: (a + v.1) as u32,
                                },
                            }
                        }
                        None => {
                            labels_end = usize::MAX;
                            walk_label(&buf[..b], a)?
                        }
                    };
                    self.labels.push(label);
                }
                (2, WIRE_LEN) => {
                    let (a, b) = read_len(buf, &mut pos)?;
                    let sample = match canonical_sample(&self.buf, a, b) {
                        Some(s) => s,
                        None => walk_sample(&buf[..b], a, &[1, 2])?.0,
                    };
                    self.samples.push(sample);
                }
                (3 | 4, WIRE_LEN) => {
                    let (a, b) = read_len(buf, &mut pos)?;
                    // Passed through as they are, so checked here: a target must not be the
                    // first to find them malformed.
                    let schema = if field == 3 { EXEMPLAR } else { HISTOGRAM };
                    check_message(&buf[a..b], schema)?;
                    self.extras.push(Span {
                        start: field_start as u32,
                        end: pos as u32,
                    });
                    histograms += u32::from(field == 4);
                    self.exemplars += usize::from(field == 3);
                }
                _ => skip_unknown(buf, &mut pos, field, wire, &[1, 2, 3, 4])?,
            }
        }
        let series_index = self.series.len();
        let canonical = (labels_end != usize::MAX).then_some((start, labels_end));
        // The run's order is known when the run holds every label of the series.
        let sorted = run_sorted && self.labels.len() == run;
        let checked = self.check_labels(series_index, labels_start, canonical, sorted)?;
        let splice = (checked.as_received && labels_end != usize::MAX).then_some(Splice {
            field: Span {
                start: field_start as u32,
                end: end as u32,
            },
            tail: labels_end as u32,
        });
        self.series.push(SeriesRef {
            labels: (labels_start as u32, self.labels.len() as u32),
            samples: (samples_start as u32, self.samples.len() as u32),
            extras: (extras_start as u32, self.extras.len() as u32),
            histograms,
            metadata: 0,
            hash: checked.hash.unwrap_or(0),
            hash_region: match (checked.hash, canonical) {
                (None, Some((a, b))) => Span {
                    start: a as u32,
                    end: b as u32,
                },
                _ => Span::default(),
            },
            splice,
        });
        Ok(())
    }
}

const WIRE_VARINT: u8 = 0;
const WIRE_I64: u8 = 1;
const WIRE_LEN: u8 = 2;
const WIRE_I32: u8 = 5;

#[inline(always)]
fn read_varint(buf: &[u8], pos: &mut usize) -> Result<u64, DecodeError> {
    // Fast path: tags and most lengths in a remote-write body fit in one byte, and a series'
    // length (128 bytes to 16 KiB) in two.
    if let Some(&b) = buf.get(*pos)
        && b < 0x80
    {
        *pos += 1;
        return Ok(u64::from(b));
    }
    if let Some(&[b0, b1]) = buf.get(*pos..*pos + 2).and_then(|s| s.first_chunk::<2>())
        && b1 < 0x80
    {
        *pos += 2;
        return Ok(u64::from(b0 & 0x7f) | (u64::from(b1) << 7));
    }
    read_varint_slow(buf, pos)
}

#[cold]
fn read_varint_slow(buf: &[u8], pos: &mut usize) -> Result<u64, DecodeError> {
    let mut value = 0u64;
    for shift in (0..70).step_by(7) {
        let Some(&byte) = buf.get(*pos) else {
            return Err(DecodeError::Protobuf("truncated varint"));
        };
        *pos += 1;
        if shift == 63 && byte > 1 {
            return Err(DecodeError::Protobuf("varint overflows 64 bits"));
        }
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Ok(value);
        }
    }
    Err(DecodeError::Protobuf("varint longer than 10 bytes"))
}

#[inline(always)]
fn read_key(buf: &[u8], pos: &mut usize) -> Result<(u64, u8), DecodeError> {
    let key = read_varint(buf, pos)?;
    if key > u64::from(u32::MAX) {
        // Field numbers have 29 bits; prost refuses such a key, and so must we.
        return Err(DecodeError::Protobuf("field key over 32 bits"));
    }
    let field = key >> 3;
    if field == 0 {
        return Err(DecodeError::Protobuf("field number 0"));
    }
    Ok((field, (key & 7) as u8))
}

/// Read a length prefix and return the payload range, advancing past it. `buf` ends where the
/// enclosing message ends.
#[inline(always)]
fn read_len(buf: &[u8], pos: &mut usize) -> Result<(usize, usize), DecodeError> {
    let len = read_varint(buf, pos)?;
    let start = *pos;
    if len > (buf.len() - start) as u64 {
        return Err(DecodeError::Protobuf(
            "length runs past the end of its message",
        ));
    }
    *pos = start + len as usize;
    Ok((start, *pos))
}

/// Skip a field this decoder does not read. A field number the message defines, arriving with
/// another wire type, is malformed (prost refuses it too), not unknown.
fn skip_unknown(
    buf: &[u8],
    pos: &mut usize,
    field: u64,
    wire: u8,
    known: &[u64],
) -> Result<(), DecodeError> {
    if known.contains(&field) {
        return Err(DecodeError::Protobuf(
            "a known field has the wrong wire type",
        ));
    }
    skip_field(buf, pos, wire)
}

fn skip_field(buf: &[u8], pos: &mut usize, wire: u8) -> Result<(), DecodeError> {
    let width = match wire {
        WIRE_VARINT => {
            read_varint(buf, pos)?;
            0
        }
        WIRE_I64 => 8,
        WIRE_LEN => {
            read_len(buf, pos)?;
            0
        }
        WIRE_I32 => 4,
        _ => return Err(DecodeError::Protobuf("unsupported wire type")),
    };
    if width > buf.len() - *pos {
        return Err(DecodeError::Protobuf(
            "fixed-width field runs past the end of its message",
        ));
    }
    *pos += width;
    Ok(())
}

/// Read the canonical label fields at `buf[pos..]` (each `0x0a len 0x0a n name 0x12 m value`,
/// the lengths one byte, name and value non-empty, exactly filling the field, as
/// [`canonical_label`] accepts them) into `labels`, and return where the first field that is
/// not one begins, and whether their names are in strictly increasing order. Hand-written
/// because it is the innermost loop of decoding: one bounds check per field and no varint, key
/// or length decoding beyond the bytes it compares. The order is checked here, where the names
/// were just read, rather than in a second walk over the labels (it is off the loop's chain of
/// dependent loads: names usually differ in their first byte).
#[inline(always)]
fn canonical_labels(buf: &[u8], mut pos: usize, labels: &mut Vec<LabelRef>) -> (usize, bool) {
    let mut sorted = true;
    let mut prev: &[u8] = &[];
    while let Some(&[0x0a, len, 0x0a, n]) = buf.get(pos..).and_then(|b| b.first_chunk::<4>()) {
        let (len, n) = (len as usize, n as usize);
        if len >= 0x80 || n >= 0x80 || n == 0 || len < n + 4 {
            break;
        }
        let name = pos + 4;
        let Some(&[0x12, m]) = buf.get(name + n..).and_then(|b| b.first_chunk::<2>()) else {
            break;
        };
        let m = m as usize;
        let value = name + n + 2;
        // The next field starts `len` bytes after this one's 2-byte head; the checks below
        // make that `value + m`, but the loop carries it as `pos + 2 + len` so each step
        // waits on one load (the field length), not on the name length and then the value
        // length loaded from where the name ends: half the dependent loads per label.
        let next = pos + 2 + len;
        if m == 0 || len != n + m + 4 || next > buf.len() {
            break;
        }
        let this = &buf[name..name + n];
        sorted &= cmp_bytes(prev, this) == std::cmp::Ordering::Less;
        prev = this;
        labels.push(LabelRef {
            name: Span {
                start: name as u32,
                end: (name + n) as u32,
            },
            value: Span {
                start: value as u32,
                end: next as u32,
            },
        });
        pos = next;
    }
    (pos, sorted)
}

/// The fast path for a label message as every protobuf encoder writes it when name and value
/// are non-empty and shorter than 128 bytes: `0x0a n name 0x12 m value`, exactly filling the
/// message. Returns the name and value ranges relative to the message, or `None` for any other
/// shape (which the general walker then handles, so this can never change an answer).
#[inline(always)]
fn canonical_label(msg: &[u8]) -> Option<((usize, usize), (usize, usize))> {
    let (&[0x0a, n], rest) = msg.split_first_chunk::<2>()? else {
        return None;
    };
    let n = n as usize;
    let after = rest.get(n..)?;
    let (&[0x12, m], value) = after.split_first_chunk::<2>()? else {
        return None;
    };
    if n == 0 || n >= 0x80 || m == 0 || m >= 0x80 || value.len() != m as usize {
        return None;
    }
    Some(((2, 2 + n), (4 + n, msg.len())))
}

/// The fast path for a sample message as encoders write it for a non-zero value:
/// `0x09 <8 bytes> 0x10 <varint timestamp>`, exactly filling the message.
///
/// The message is `whole[a..b]`; `whole` may go on past it (the decoded buffer), so that a
/// timestamp (6 bytes as a varint) is read from one 8-byte load, not byte by byte.
#[inline(always)]
fn canonical_sample(whole: &[u8], a: usize, b: usize) -> Option<Sample> {
    let msg = whole.get(a..b)?;
    let (&[0x09, b0, b1, b2, b3, b4, b5, b6, b7, 0x10], rest) = msg.split_first_chunk::<10>()?
    else {
        return None;
    };
    let ts = match varint_in_word(whole, a + 10) {
        Some((ts, len)) if len == rest.len() => ts,
        _ => {
            let mut pos = 0;
            let ts = read_varint(rest, &mut pos).ok()?;
            if pos != rest.len() {
                return None;
            }
            ts
        }
    };
    Some(Sample {
        // from_bits keeps NaN payloads (Prometheus' stale marker) bit for bit.
        value: f64::from_bits(u64::from_le_bytes([b0, b1, b2, b3, b4, b5, b6, b7])),
        timestamp: ts as i64,
    })
}

/// A varint of at most 8 bytes at `buf[at..]`, from one 8-byte load: its value and length.
/// `None` when fewer than 8 bytes follow `at` or the varint is longer (the caller then reads it
/// byte by byte). The 7-bit groups are gathered by three mask-and-shift steps, no loop.
#[inline(always)]
fn varint_in_word(buf: &[u8], at: usize) -> Option<(u64, usize)> {
    let w = u64::from_le_bytes(*buf.get(at..)?.first_chunk::<8>()?);
    let stops = !w & 0x8080_8080_8080_8080;
    if stops == 0 {
        return None;
    }
    let len = (stops.trailing_zeros() / 8 + 1) as usize;
    let x = if len == 8 {
        w
    } else {
        w & ((1u64 << (8 * len)) - 1)
    };
    let x = x & 0x7f7f_7f7f_7f7f_7f7f;
    let x = (x & 0x007f_007f_007f_007f) | ((x & 0x7f00_7f00_7f00_7f00) >> 1);
    let x = (x & 0x0000_3fff_0000_3fff) | ((x & 0x3fff_0000_3fff_0000) >> 2);
    let x = (x & 0x0000_0000_0fff_ffff) | ((x & 0x0fff_ffff_0000_0000) >> 4);
    Some((x, len))
}

/// What a field of a passed-through message may hold.
#[derive(Clone, Copy)]
enum Kind {
    Varint,
    I64,
    /// UTF-8 text.
    Text,
    /// A nested message.
    Message(&'static [(u64, Kind)]),
    /// A repeated varint: packed (length-delimited) or one per field.
    RepeatedVarint,
    /// A repeated double: packed or one per field.
    RepeatedI64,
}

const LABEL: &[(u64, Kind)] = &[(1, Kind::Text), (2, Kind::Text)];
const EXEMPLAR: &[(u64, Kind)] = &[(1, Kind::Message(LABEL)), (2, Kind::I64), (3, Kind::Varint)];
const BUCKET_SPAN: &[(u64, Kind)] = &[(1, Kind::Varint), (2, Kind::Varint)];
/// `prometheus.Histogram` of remote-write 1.0 (native histograms).
const HISTOGRAM: &[(u64, Kind)] = &[
    (1, Kind::Varint),
    (2, Kind::I64),
    (3, Kind::I64),
    (4, Kind::Varint),
    (5, Kind::I64),
    (6, Kind::Varint),
    (7, Kind::I64),
    (8, Kind::Message(BUCKET_SPAN)),
    (9, Kind::RepeatedVarint),
    (10, Kind::RepeatedI64),
    (11, Kind::Message(BUCKET_SPAN)),
    (12, Kind::RepeatedVarint),
    (13, Kind::RepeatedI64),
    (14, Kind::Varint),
    (15, Kind::Varint),
];

/// `io.prometheus.write.v2.Histogram`: the 1.0 fields plus `custom_values` (16) and
/// `start_timestamp` (17).
const HISTOGRAM_V2: &[(u64, Kind)] = &[
    (1, Kind::Varint),
    (2, Kind::I64),
    (3, Kind::I64),
    (4, Kind::Varint),
    (5, Kind::I64),
    (6, Kind::Varint),
    (7, Kind::I64),
    (8, Kind::Message(BUCKET_SPAN)),
    (9, Kind::RepeatedVarint),
    (10, Kind::RepeatedI64),
    (11, Kind::Message(BUCKET_SPAN)),
    (12, Kind::RepeatedVarint),
    (13, Kind::RepeatedI64),
    (14, Kind::Varint),
    (15, Kind::Varint),
    (16, Kind::RepeatedI64),
    (17, Kind::Varint),
];

/// Check that `buf` is a well-formed message of `schema`: every known field with its wire type,
/// lengths inside their message, text UTF-8; unknown fields skipped. Nesting is bounded by the
/// schemas themselves (two levels).
fn check_message(buf: &[u8], schema: &[(u64, Kind)]) -> Result<(), DecodeError> {
    let mut pos = 0;
    while pos < buf.len() {
        let (field, wire) = read_key(buf, &mut pos)?;
        let Some(&(_, kind)) = schema.iter().find(|(f, _)| *f == field) else {
            skip_field(buf, &mut pos, wire)?;
            continue;
        };
        let wrong = || DecodeError::Protobuf("a known field has the wrong wire type");
        match (kind, wire) {
            (Kind::Varint | Kind::RepeatedVarint, WIRE_VARINT) => {
                read_varint(buf, &mut pos)?;
            }
            (Kind::I64 | Kind::RepeatedI64, WIRE_I64) => skip_field(buf, &mut pos, wire)?,
            (Kind::Text, WIRE_LEN) => {
                let (a, b) = read_len(buf, &mut pos)?;
                if !is_utf8(&buf[a..b]) {
                    return Err(DecodeError::Protobuf("text that is not UTF-8"));
                }
            }
            (Kind::Message(inner), WIRE_LEN) => {
                let (a, b) = read_len(buf, &mut pos)?;
                check_message(&buf[a..b], inner)?;
            }
            (Kind::RepeatedVarint, WIRE_LEN) => {
                let (a, b) = read_len(buf, &mut pos)?;
                let packed = &buf[a..b];
                let mut p = 0;
                while p < packed.len() {
                    read_varint(packed, &mut p)?;
                }
            }
            (Kind::RepeatedI64, WIRE_LEN) => {
                let (a, b) = read_len(buf, &mut pos)?;
                if (b - a) % 8 != 0 {
                    return Err(DecodeError::Protobuf(
                        "packed doubles whose length is not a multiple of 8",
                    ));
                }
            }
            _ => return Err(wrong()),
        }
    }
    Ok(())
}

fn label_len(n: Span, v: Span) -> usize {
    let (n, v) = ((n.end - n.start) as u64, (v.end - v.start) as u64);
    (2 + varint_len(n) + varint_len(v)) + (n + v) as usize
}

/// A checked 2.0 exemplar's parts: its label refs (every `labels_refs` field, packed or
/// not, in order, appended to `refs`), value bits and timestamp.
fn exemplar_parts(
    buf: &[u8],
    start: usize,
    refs: &mut Vec<u32>,
) -> Result<(u64, u64), DecodeError> {
    let (mut value, mut timestamp) = (0u64, 0u64);
    let mut pos = start;
    while pos < buf.len() {
        let (field, wire) = read_key(buf, &mut pos)?;
        match (field, wire) {
            (1, WIRE_LEN) => {
                let (mut p, b) = read_len(buf, &mut pos)?;
                while p < b {
                    refs.push(read_varint(&buf[..b], &mut p)? as u32);
                }
            }
            (1, WIRE_VARINT) => refs.push(read_varint(buf, &mut pos)? as u32),
            (2, WIRE_I64) => {
                let bytes = buf
                    .get(pos..pos + 8)
                    .ok_or(DecodeError::Protobuf("truncated exemplar value"))?;
                let mut raw = [0u8; 8];
                raw.copy_from_slice(bytes);
                value = u64::from_le_bytes(raw);
                pos += 8;
            }
            (3, WIRE_VARINT) => timestamp = read_varint(buf, &mut pos)?,
            _ => skip_field(buf, &mut pos, wire)?,
        }
    }
    Ok((value, timestamp))
}

/// `buf` ends where the label message ends.
fn walk_label(buf: &[u8], start: usize) -> Result<LabelRef, DecodeError> {
    let mut label = LabelRef {
        name: Span {
            start: start as u32,
            end: start as u32,
        },
        value: Span {
            start: start as u32,
            end: start as u32,
        },
    };
    let mut pos = start;
    while pos < buf.len() {
        let (field, wire) = read_key(buf, &mut pos)?;
        match (field, wire) {
            (1, WIRE_LEN) => {
                let (a, b) = read_len(buf, &mut pos)?;
                label.name = Span {
                    start: a as u32,
                    end: b as u32,
                };
            }
            (2, WIRE_LEN) => {
                let (a, b) = read_len(buf, &mut pos)?;
                label.value = Span {
                    start: a as u32,
                    end: b as u32,
                };
            }
            _ => skip_unknown(buf, &mut pos, field, wire, &[1, 2])?,
        }
    }
    Ok(label)
}

/// `buf` ends where the sample message ends; `known` are the field numbers of the version's
/// `Sample` (2.0 adds `start_timestamp`, 3, returned beside the sample; 0 when absent).
fn walk_sample(buf: &[u8], start: usize, known: &[u64]) -> Result<(Sample, i64), DecodeError> {
    let mut sample = Sample::default();
    let mut start_timestamp = 0i64;
    let mut pos = start;
    while pos < buf.len() {
        let (field, wire) = read_key(buf, &mut pos)?;
        match (field, wire) {
            (1, WIRE_I64) => {
                let bytes = buf
                    .get(pos..pos + 8)
                    .ok_or(DecodeError::Protobuf("truncated sample value"))?;
                let mut raw = [0u8; 8];
                raw.copy_from_slice(bytes);
                // from_bits keeps NaN payloads (Prometheus' stale marker) bit for bit.
                sample.value = f64::from_bits(u64::from_le_bytes(raw));
                pos += 8;
            }
            (2, WIRE_VARINT) => sample.timestamp = read_varint(buf, &mut pos)? as i64,
            // 2.0's start_timestamp (1.0 has no place for it).
            (3, WIRE_VARINT) if known.contains(&3) => {
                start_timestamp = read_varint(buf, &mut pos)? as i64;
            }
            _ => skip_unknown(buf, &mut pos, field, wire, known)?,
        }
    }
    Ok((sample, start_timestamp))
}

/// UTF-8 check with an ASCII fast path: almost every label is ASCII.
#[inline]
fn is_utf8(bytes: &[u8]) -> bool {
    bytes.is_ascii() || std::str::from_utf8(bytes).is_ok()
}

mod labels;
mod metadata;
mod v2;

pub(crate) use v2::histogram_start;

#[cfg(test)]
mod tests;
