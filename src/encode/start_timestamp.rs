//! Remote-write 2.0 `start_timestamp`s (when a counter or histogram series started), which
//! 1.0 has no field for.
//!
//! - A float sample's start timestamp (2.0 `Sample` field 3) is kept beside the batch's
//!   samples. Toward a 2.0 target it rides inside the queued 1.0 `timeseries` message as a
//!   relay-internal field 6 ([`SERIES_START_TAG`]: packed varints, one per sample, 0 for none),
//!   which only the 1.0 → 2.0 conversion reads and turns back into `Sample.start_timestamp`;
//!   no 1.0 receiver sees it.
//! - A native histogram's (field 17) stays in its raw bytes, so it reaches 2.0 targets as it
//!   came; toward a 1.0 target it is cut out of the histogram ([`strip_histogram_start`]).
//!
//! Every start timestamp a target cannot carry (1.0 protobuf, JSON) is counted in
//! `promrelay_target_start_timestamps_dropped_total{reason="unsupported_by_format"}`.

/// Tag of the relay-internal per-series start timestamps (field 6, length-delimited) inside a
/// queued `timeseries` message bound for a 2.0 target.
pub const SERIES_START_TAG: u8 = 0x32;

/// The key of a histogram's `start_timestamp` (field 17, varint) as it is written: 0x88 0x01.
const HISTOGRAM_START_KEY: u64 = 17 << 3;

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

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Walk the fields of a complete histogram field (tag, length, message), calling `each` with
/// every field's key and its bytes (key included). `None` for malformed bytes.
fn fields(field: &[u8], mut each: impl FnMut(u64, &[u8])) -> Option<()> {
    let mut pos = 1;
    let len = read_varint(field, &mut pos)? as usize;
    let msg = field.get(pos..pos.checked_add(len)?)?;
    let mut p = 0;
    while p < msg.len() {
        let start = p;
        let key = read_varint(msg, &mut p)?;
        match key & 7 {
            0 => {
                read_varint(msg, &mut p)?;
            }
            1 => p += 8,
            2 => {
                let l = read_varint(msg, &mut p)? as usize;
                p = p.checked_add(l)?;
            }
            5 => p += 4,
            _ => return None,
        }
        each(key, msg.get(start..p)?);
    }
    Some(())
}

/// Append the complete histogram field `field` to `out` without its `start_timestamp`;
/// `true` when there was one to cut. A malformed field is appended as it is (the decoder
/// checked it, so this does not happen).
pub fn strip_histogram_start(field: &[u8], out: &mut Vec<u8>) -> bool {
    let mut kept = Vec::with_capacity(field.len());
    let mut cut = false;
    let ok = fields(field, |key, bytes| {
        if key == HISTOGRAM_START_KEY {
            cut = true;
        } else {
            kept.extend_from_slice(bytes);
        }
    });
    if ok.is_none() || !cut {
        out.extend_from_slice(field);
        return false;
    }
    out.push(field[0]);
    put_varint(out, kept.len() as u64);
    out.extend_from_slice(&kept);
    true
}

/// Toward a 1.0 format: when a histogram of `series` may carry a start timestamp, append its
/// extras to `out` with every histogram's cut ([`strip_histogram_start`]) and return how many
/// were cut (`Some`); `None` (nothing written) when the extras can go as they are.
pub fn v1_extras(series: &crate::batch::SeriesView<'_>, out: &mut Vec<u8>) -> Option<usize> {
    if !series.may_have_histogram_start_timestamps() {
        return None;
    }
    let mut cut = 0;
    for e in series.extras() {
        if e.first() == Some(&0x22) {
            cut += usize::from(strip_histogram_start(e, out));
        } else {
            out.extend_from_slice(e);
        }
    }
    Some(cut)
}

/// Start timestamps of `series` a 1.0 format loses: its float samples' and its histograms'.
pub fn count(series: &crate::batch::SeriesView<'_>) -> usize {
    let floats = series.start_timestamps().count();
    if !series.may_have_histogram_start_timestamps() {
        return floats;
    }
    floats
        + series
            .extras()
            .filter(|e| e.first() == Some(&0x22) && crate::decode::histogram_start(e).is_some())
            .count()
}

/// Append the relay-internal start timestamps of a series with `samples` samples (`starts`:
/// (sample index, start timestamp), ascending).
pub fn write_series_starts(
    out: &mut Vec<u8>,
    samples: usize,
    starts: impl Iterator<Item = (usize, i64)>,
) {
    let mut packed = Vec::with_capacity(samples * 2);
    let mut next = 0;
    for (i, t) in starts {
        while next < i {
            packed.push(0);
            next += 1;
        }
        put_varint(&mut packed, t as u64);
        next += 1;
    }
    while next < samples {
        packed.push(0);
        next += 1;
    }
    out.push(SERIES_START_TAG);
    put_varint(out, packed.len() as u64);
    out.extend_from_slice(&packed);
}

/// Read the relay-internal start timestamps (the field's payload) into `out`.
///
/// # Errors
/// A malformed payload (an internal error: only the relay writes these).
pub fn read_series_starts(payload: &[u8], out: &mut Vec<i64>) -> Result<(), &'static str> {
    out.clear();
    let mut p = 0;
    while p < payload.len() {
        out.push(read_varint(payload, &mut p).ok_or("truncated start timestamp")? as i64);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::v2::Histogram;
    use prost::Message;

    fn field(h: &Histogram) -> Vec<u8> {
        let body = h.encode_to_vec();
        let mut f = vec![0x22];
        put_varint(&mut f, body.len() as u64);
        f.extend_from_slice(&body);
        f
    }

    #[test]
    fn a_histograms_start_timestamp_is_found_and_cut() {
        let with = Histogram {
            count_int: 3,
            sum: 1.5,
            schema: 2,
            timestamp: 1_700_000_000_000,
            start_timestamp: 1_699_999_000_000,
            ..Default::default()
        };
        let without = Histogram {
            start_timestamp: 0,
            ..with.clone()
        };
        let found = |f: &[u8]| crate::decode::histogram_start(f);
        assert_eq!(found(&field(&with)), Some(1_699_999_000_000));
        assert_eq!(found(&field(&without)), None);
        let mut out = Vec::new();
        assert!(strip_histogram_start(&field(&with), &mut out));
        assert_eq!(out, field(&without));
        out.clear();
        assert!(!strip_histogram_start(&field(&without), &mut out));
        assert_eq!(out, field(&without));
    }

    #[test]
    fn series_start_timestamps_round_trip_one_per_sample() {
        let mut out = Vec::new();
        write_series_starts(&mut out, 4, [(1, 5), (2, 1 << 40)].into_iter());
        assert_eq!(out[0], SERIES_START_TAG);
        let mut got = Vec::new();
        read_series_starts(&out[2..], &mut got).unwrap();
        assert_eq!(got, [0, 5, 1 << 40, 0]);
    }
}
