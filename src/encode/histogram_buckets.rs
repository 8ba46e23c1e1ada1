//! Native histograms as classic bucket samples, for the JSON targets (`histograms: buckets`).
//!
//! A JSON sample object carries one float, so a native histogram becomes the sample objects of
//! the classic histogram with the same buckets, as a Prometheus client would have exposed it:
//!
//! - `<name>_bucket{…, le="<upper bound>"}` per bucket, its value the **cumulative** count of
//!   observations up to that bound, ending with `le="+Inf"` = the histogram's count;
//! - `<name>_sum{…}` = the sum, `<name>_count{…}` = the count;
//!
//! all with the histogram's timestamp, and the series' other labels unchanged (`le` inserted in
//! label order).
//!
//! Bounds. With schema `s` (−4 ..= 8), positive bucket `i` holds the observations in
//! `(2^((i−1)·2^−s), 2^(i·2^−s)]`: its `le` is `2^(i·2^−s)`, computed as `2^q · 2^(r/2^s)` for
//! `i = q·2^s + r` (exact for every whole power of two). Negative bucket `i` holds
//! `[−2^(i·2^−s), −2^((i−1)·2^−s))`: its `le` is `−2^((i−1)·2^−s)` (the bucket excludes
//! that bound, a classic bucket includes it: only an observation exactly on a bound can tell).
//! The order is ascending `le`: negative buckets (most negative first), then the zero bucket,
//! then the positive buckets. The **zero bucket** (`[−zero_threshold, zero_threshold]`) becomes
//! `le="<zero_threshold>"`, holding every negative observation plus its own count; it is left
//! out when it is empty and its threshold is 0. Only the buckets a histogram's spans list are
//! written (those inside a span with a count of 0 too); a gap between spans is empty, so the
//! cumulative count there is the previous bucket's. Integer histograms (bucket deltas) and
//! float histograms (absolute counts) convert alike. Values are written like every `value`
//! (shortest round-trip decimal), `le` the same way, `+Inf` for the last.
//!
//! What is not converted, and counted as `unsupported_by_format` like any histogram without
//! the setting: schemas outside −4 ..= 8 (custom-bucket histograms, schema −53, whose bounds
//! travel in `custom_values`), and a histogram that does not parse.

use super::json_sample::{write_str, write_value};
use serde::Deserialize;

/// What a JSON target does with native histograms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HistogramMode {
    /// Counted as `unsupported_by_format` (the default).
    #[default]
    Drop,
    /// Written as classic `_bucket`, `_sum` and `_count` sample objects.
    Buckets,
}

/// Reused buffers of the conversion (cold: only targets with `histograms: buckets`).
#[derive(Debug, Default, Clone)]
pub struct Scratch {
    negative: Vec<(i32, f64)>,
    positive: Vec<(i32, f64)>,
    name: Vec<u8>,
    le: Vec<u8>,
}

/// A parsed native histogram (bucket counts absolute, in `Scratch`).
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Parsed {
    count: f64,
    sum: f64,
    schema: i32,
    zero_threshold: f64,
    zero_count: f64,
    timestamp: i64,
}

/// How the objects of one histogram are separated in the output.
#[derive(Debug, Clone, Copy)]
pub struct Joins<'a> {
    /// Before the first object.
    pub first: &'a [u8],
    /// Before each later object.
    pub between: &'a [u8],
    /// After each object.
    pub after: &'a [u8],
}

/// Write the native histogram `field` (a complete 1.0 `histograms` field: tag, length,
/// message) of a series with `labels` as classic sample objects; returns how many.
///
/// # Errors
/// The schema is outside −4 ..= 8, or the histogram does not parse; nothing is written then.
pub fn write_buckets<'a, L>(
    out: &mut Vec<u8>,
    scratch: &mut Scratch,
    labels: L,
    field: &[u8],
    joins: Joins<'_>,
) -> Result<usize, &'static str>
where
    L: Iterator<Item = (&'a [u8], &'a [u8])> + Clone,
{
    let h = parse(field, scratch)?;
    let name = labels
        .clone()
        .find(|(n, _)| *n == b"__name__")
        .map_or(&b""[..], |(_, v)| v);
    let mut written = 0usize;
    let mut object =
        |out: &mut Vec<u8>, scratch: &mut Scratch, suffix: &[u8], le: Option<f64>, value: f64| {
            out.extend_from_slice(if written == 0 {
                joins.first
            } else {
                joins.between
            });
            scratch.name.clear();
            scratch.name.extend_from_slice(name);
            scratch.name.extend_from_slice(suffix);
            scratch.le.clear();
            if let Some(le) = le {
                if le == f64::INFINITY {
                    scratch.le.extend_from_slice(b"+Inf");
                } else {
                    write_value(&mut scratch.le, le);
                }
            }
            out.push(b'{');
            let mut le_done = le.is_none();
            for (n, v) in labels.clone() {
                if !le_done && n >= &b"le"[..] {
                    write_label(out, b"le", &scratch.le);
                    le_done = true;
                    if n == b"le" {
                        continue; // the bucket's bound replaces it
                    }
                }
                let v = if n == b"__name__" {
                    &scratch.name[..]
                } else {
                    v
                };
                write_label(out, n, v);
            }
            if !le_done {
                write_label(out, b"le", &scratch.le);
            }
            out.extend_from_slice(b"\"value\":\"");
            write_value(out, value);
            out.extend_from_slice(b"\",\"timestamp\":\"");
            out.extend_from_slice(itoa::Buffer::new().format(h.timestamp).as_bytes());
            out.extend_from_slice(b"\"}");
            out.extend_from_slice(joins.after);
            written += 1;
        };
    let mut cumulative = 0.0;
    let negative = std::mem::take(&mut scratch.negative);
    for &(i, c) in negative.iter().rev() {
        cumulative += c;
        object(
            out,
            scratch,
            b"_bucket",
            Some(-upper_bound(i - 1, h.schema)),
            cumulative,
        );
    }
    scratch.negative = negative;
    if h.zero_count != 0.0 || h.zero_threshold != 0.0 {
        cumulative += h.zero_count;
        object(out, scratch, b"_bucket", Some(h.zero_threshold), cumulative);
    }
    let positive = std::mem::take(&mut scratch.positive);
    for &(i, c) in &positive {
        cumulative += c;
        object(
            out,
            scratch,
            b"_bucket",
            Some(upper_bound(i, h.schema)),
            cumulative,
        );
    }
    scratch.positive = positive;
    object(out, scratch, b"_bucket", Some(f64::INFINITY), h.count);
    object(out, scratch, b"_sum", None, h.sum);
    object(out, scratch, b"_count", None, h.count);
    Ok(written)
}

fn write_label(out: &mut Vec<u8>, n: &[u8], v: &[u8]) {
    write_str(out, n);
    out.push(b':');
    write_str(out, v);
    out.push(b',');
}

/// The upper bound of positive bucket `i` at `schema`: `2^(i·2^−schema)`.
pub fn upper_bound(i: i32, schema: i32) -> f64 {
    let i = i64::from(i);
    if schema <= 0 {
        return ldexp(1.0, i << (-schema));
    }
    let per = 1i64 << schema;
    let (q, r) = (i.div_euclid(per), i.rem_euclid(per));
    let frac = if r == 0 {
        1.0
    } else {
        (r as f64 / per as f64).exp2()
    };
    ldexp(frac, q)
}

/// `x · 2^e` without overflowing the intermediate power (exact while the result is normal).
fn ldexp(mut x: f64, mut e: i64) -> f64 {
    while e > 1000 && x.is_finite() {
        x *= 2f64.powi(1000);
        e -= 1000;
    }
    while e < -1000 && x != 0.0 {
        x *= 2f64.powi(-1000);
        e += 1000;
    }
    x * 2f64.powi(e.clamp(-1100, 1100) as i32)
}

fn varint(buf: &[u8], pos: &mut usize) -> Result<u64, &'static str> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos).ok_or("truncated varint")?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Ok(v);
        }
    }
    Err("varint too long")
}

fn double(buf: &[u8], pos: &mut usize) -> Result<f64, &'static str> {
    let b = buf.get(*pos..*pos + 8).ok_or("truncated double")?;
    *pos += 8;
    Ok(f64::from_le_bytes(
        b.try_into().map_err(|_| "truncated double")?,
    ))
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// One sign's buckets as written: spans `(offset, length)`, counts (or deltas), and whether
/// they are deltas (an integer histogram).
type Side = (Vec<(i32, u32)>, Vec<f64>, bool);

/// Parse a complete `histograms` field into `Parsed` and the absolute bucket counts (by
/// index) into `scratch.negative` / `scratch.positive`.
fn parse(field: &[u8], scratch: &mut Scratch) -> Result<Parsed, &'static str> {
    let mut pos = 1;
    let len = varint(field, &mut pos)? as usize;
    let msg = field.get(pos..pos + len).ok_or("truncated histogram")?;
    let mut h = Parsed::default();
    let mut sides: [Side; 2] = Default::default();
    let mut p = 0;
    while p < msg.len() {
        let key = varint(msg, &mut p)?;
        let (f, wire) = (key >> 3, key & 7);
        let side = match f {
            8..=10 => 0,
            _ => 1,
        };
        match (f, wire) {
            (1, 0) => h.count = varint(msg, &mut p)? as f64,
            (2, 1) => h.count = double(msg, &mut p)?,
            (3, 1) => h.sum = double(msg, &mut p)?,
            (4, 0) => h.schema = unzigzag(varint(msg, &mut p)?) as i32,
            (5, 1) => h.zero_threshold = double(msg, &mut p)?,
            (6, 0) => h.zero_count = varint(msg, &mut p)? as f64,
            (7, 1) => h.zero_count = double(msg, &mut p)?,
            (8 | 11, 2) => {
                let l = varint(msg, &mut p)? as usize;
                let span = msg.get(p..p + l).ok_or("truncated span")?;
                p += l;
                let (mut offset, mut length, mut q) = (0i32, 0u32, 0);
                while q < span.len() {
                    match varint(span, &mut q)? {
                        0x08 => offset = unzigzag(varint(span, &mut q)?) as i32,
                        0x10 => length = varint(span, &mut q)? as u32,
                        _ => return Err("unexpected span field"),
                    }
                }
                sides[side].0.push((offset, length));
            }
            // Deltas (integer histograms): zigzag varints, packed or one per field.
            (9 | 12, 2) => {
                let l = varint(msg, &mut p)? as usize;
                let packed = msg.get(p..p + l).ok_or("truncated deltas")?;
                p += l;
                let mut q = 0;
                while q < packed.len() {
                    sides[side].1.push(unzigzag(varint(packed, &mut q)?) as f64);
                }
                sides[side].2 = true;
            }
            (9 | 12, 0) => {
                sides[side].1.push(unzigzag(varint(msg, &mut p)?) as f64);
                sides[side].2 = true;
            }
            // Absolute counts (float histograms): doubles, packed or one per field.
            (10 | 13, 2) => {
                let l = varint(msg, &mut p)? as usize;
                let packed = msg.get(p..p + l).ok_or("truncated counts")?;
                p += l;
                let mut q = 0;
                while q < packed.len() {
                    sides[side].1.push(double(packed, &mut q)?);
                }
            }
            (10 | 13, 1) => sides[side].1.push(double(msg, &mut p)?),
            (15, 0) => h.timestamp = varint(msg, &mut p)? as i64,
            (_, 0) => {
                varint(msg, &mut p)?;
            }
            (_, 1) => p += 8,
            (_, 2) => {
                let l = varint(msg, &mut p)? as usize;
                p += l;
            }
            (_, 5) => p += 4,
            _ => return Err("unexpected wire type"),
        }
        if p > msg.len() {
            return Err("a field runs past the histogram");
        }
    }
    if !(-4..=8).contains(&h.schema) {
        return Err("schema outside -4..8");
    }
    scratch.negative.clear();
    scratch.positive.clear();
    for (k, (spans, counts, deltas)) in sides.iter().enumerate() {
        let into = if k == 0 {
            &mut scratch.negative
        } else {
            &mut scratch.positive
        };
        let mut index = 0i32;
        let mut n = 0usize;
        let mut running = 0.0;
        for (s, &(offset, length)) in spans.iter().enumerate() {
            // The first span's offset is the first index; later ones are gaps.
            index = if s == 0 { offset } else { index + offset };
            for _ in 0..length {
                let c = *counts
                    .get(n)
                    .ok_or("fewer bucket counts than the spans list")?;
                let c = if *deltas {
                    running += c;
                    running
                } else {
                    c
                };
                into.push((index, c));
                n += 1;
                index += 1;
            }
        }
        if n != counts.len() {
            return Err("more bucket counts than the spans list");
        }
    }
    Ok(h)
}

#[cfg(test)]
mod tests;
