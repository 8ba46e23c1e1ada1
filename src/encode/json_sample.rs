//! The seed's flat JSON sample object, written by hand into a reused buffer.
//!
//! `{"__name__":"up","job":"api","value":"675.0","timestamp":"1698732988354"}`: every label as
//! a string field in label order, then `value` and `timestamp`, both strings. Values use the
//! shortest decimal that round-trips the f64 (ryu), `NaN`, `Infinity` and `-Infinity`, which
//! Java's `Double.parseDouble` and Python's `float()` both read. Hand-written because a
//! `serde_json::Value` per sample would allocate a map and a string per label.
//!
//! A label named `value` or `timestamp` would collide with the sample fields; the sample fields
//! come last so that JSON readers that keep the last duplicate key see the sample.

use crate::batch::Sample;

/// Bytes that need escaping in a JSON string: `"`, `\` and the control characters.
const fn escape_table() -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = true;
        i += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
}
static NEEDS_ESCAPE: [bool; 256] = escape_table();

/// Does any byte of `s` need escaping? Eight bytes at a time (SWAR): almost no label needs
/// escaping, so the common case is a few words of arithmetic and a single copy. Labels are
/// short, so there is no early exit per word and no loop per byte: the tail is one more word
/// that overlaps the last one checked (checking a byte twice is harmless), and a string of 4
/// to 7 bytes is two overlapping halves.
#[inline]
fn needs_escape(s: &[u8]) -> bool {
    let n = s.len();
    if n >= 8 {
        let word = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&s[i..i + 8]);
            u64::from_le_bytes(b)
        };
        let mut flags = 0;
        let mut i = 0;
        while i + 8 < n {
            flags |= escape_flags(word(i));
            i += 8;
        }
        return (flags | escape_flags(word(n - 8))) != 0;
    }
    if n >= 4 {
        let half = |i: usize| {
            let mut b = [0u8; 4];
            b.copy_from_slice(&s[i..i + 4]);
            u64::from(u32::from_le_bytes(b))
        };
        return escape_flags(half(0) | (half(n - 4) << 32)) != 0;
    }
    s.iter().any(|&b| NEEDS_ESCAPE[b as usize])
}

/// The high bit of each byte of `w` that is below 0x20, `"` or `\`, and perhaps of bytes
/// above such a byte (a borrow): so exact as to whether any byte needs escaping.
#[inline]
fn escape_flags(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below = w.wrapping_sub(ONES * 0x20) & !w;
    let q = w ^ (ONES * u64::from(b'"'));
    let quote = q.wrapping_sub(ONES) & !q;
    let b = w ^ (ONES * u64::from(b'\\'));
    let slash = b.wrapping_sub(ONES) & !b;
    (below | quote | slash) & HIGH
}

/// Append `s` as a JSON string (with quotes). `s` is valid UTF-8 (a batch invariant), which
/// JSON carries as it is.
#[inline]
pub fn write_str(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    if !needs_escape(s) {
        out.extend_from_slice(s);
        out.push(b'"');
        return;
    }
    let mut start = 0;
    for (i, &b) in s.iter().enumerate() {
        if !NEEDS_ESCAPE[b as usize] {
            continue;
        }
        out.extend_from_slice(&s[start..i]);
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(b >> 4) as usize]);
                out.push(HEX[(b & 15) as usize]);
            }
        }
        start = i + 1;
    }
    out.extend_from_slice(&s[start..]);
    out.push(b'"');
}

/// Append the value as the seed formats it (without quotes).
#[inline]
pub fn write_value(out: &mut Vec<u8>, v: f64) {
    if write_thousandths(out, v) {
        return;
    }
    if v.is_nan() {
        out.extend_from_slice(b"NaN");
    } else if v.is_infinite() {
        out.extend_from_slice(if v > 0.0 { b"Infinity" } else { b"-Infinity" });
    } else {
        out.extend_from_slice(ryu::Buffer::new().format_finite(v).as_bytes());
    }
}

/// The common values without ryu: a whole number of thousandths below 10^12 in magnitude
/// (counters, and gauges such as 0.5, 12.25 or 0.125) is written as its integer part, `.`, and
/// its thousandths without trailing zeros (`0` for none): exactly ryu's output, because
///
/// - `m / 1000.0` is the correctly rounded quotient, so the check below holds only when `v`
///   is the double nearest the decimal `m/1000` (never for NaN or the infinities);
/// - that decimal has at most 15 significant digits, and two distinct decimals of at most 15
///   digits never round to the same double (`f64::DIGITS`), so it is the shortest decimal that
///   round-trips, the one ryu picks;
/// - ryu writes it without an exponent: `0.001 <= |v| < 10^12` is inside its plain range
///   (`10^-5 <= |v| < 10^16`), and zero is `0.0` or `-0.0`.
///
/// Returns false, having written nothing, for every other value.
#[inline]
fn write_thousandths(out: &mut Vec<u8>, v: f64) -> bool {
    let m = (v * 1000.0).round();
    // NaN first: a NaN `v` would pass the bit check.
    if m.is_nan() || m.abs() >= 1e15 || (m / 1000.0).to_bits() != v.to_bits() {
        return false;
    }
    // The sign from `v`: `-0.0` passes the check (its `m` is `-0.0`) and ryu writes `-0.0`.
    if v.is_sign_negative() {
        out.push(b'-');
    }
    let a = (m as i64).unsigned_abs();
    out.extend_from_slice(itoa::Buffer::new().format(a / 1000).as_bytes());
    let f = a % 1000;
    let digits = [
        b'0' + (f / 100) as u8,
        b'0' + (f / 10 % 10) as u8,
        b'0' + (f % 10) as u8,
    ];
    // No thousandths: `.0`, as ryu writes whole numbers.
    let len = if f.is_multiple_of(100) {
        1
    } else if f.is_multiple_of(10) {
        2
    } else {
        3
    };
    out.push(b'.');
    out.extend_from_slice(&digits[..len]);
    true
}

/// Append one flat sample object.
#[inline]
pub fn write_sample<'a>(
    out: &mut Vec<u8>,
    labels: impl Iterator<Item = (&'a [u8], &'a [u8])>,
    sample: &Sample,
) {
    write_labels(out, labels);
    write_fields(out, sample);
}

/// Append a series' samples as flat objects joined by `,` (nothing for no samples): the same
/// bytes as [`write_sample`] per sample. The labels are written once, for the first sample;
/// every later object copies that prefix (`{"name":"value",…,`) from the buffer itself, so the
/// label merge and the escape check run once per series instead of once per sample.
#[inline]
pub fn write_samples<'a>(
    out: &mut Vec<u8>,
    labels: impl Iterator<Item = (&'a [u8], &'a [u8])>,
    samples: &[Sample],
) {
    let Some((first, rest)) = samples.split_first() else {
        return;
    };
    let start = out.len();
    write_labels(out, labels);
    let end = out.len();
    write_fields(out, first);
    for s in rest {
        out.push(b',');
        out.extend_from_within(start..end);
        write_fields(out, s);
    }
}

/// `{` and every label as `"name":"value",`.
#[inline]
fn write_labels<'a>(out: &mut Vec<u8>, labels: impl Iterator<Item = (&'a [u8], &'a [u8])>) {
    out.push(b'{');
    for (n, v) in labels {
        if needs_escape(n) || needs_escape(v) {
            write_str(out, n);
            out.push(b':');
            write_str(out, v);
            out.push(b',');
        } else {
            // The common case in one reservation and five copies: `"name":"value",`.
            out.reserve(n.len() + v.len() + 6);
            out.push(b'"');
            out.extend_from_slice(n);
            out.extend_from_slice(b"\":\"");
            out.extend_from_slice(v);
            out.extend_from_slice(b"\",");
        }
    }
}

/// The sample's fields and the closing brace: `"value":"…","timestamp":"…"}`.
#[inline]
fn write_fields(out: &mut Vec<u8>, sample: &Sample) {
    out.extend_from_slice(b"\"value\":\"");
    write_value(out, sample.value);
    out.extend_from_slice(b"\",\"timestamp\":\"");
    out.extend_from_slice(itoa::Buffer::new().format(sample.timestamp).as_bytes());
    out.extend_from_slice(b"\"}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(v: f64) -> String {
        let mut b = Vec::new();
        write_value(&mut b, v);
        String::from_utf8(b).unwrap()
    }

    #[test]
    fn values_are_shortest_round_trip_strings() {
        let cases: &[(f64, &str)] = &[
            (675.0, "675.0"),
            (0.25, "0.25"),
            (1e-7, "1e-7"),
            (0.1 + 0.2, "0.30000000000000004"),
            (-3.0, "-3.0"),
            (0.0, "0.0"),
            (1e21, "1e21"),
            (1.7976931348623157e308, "1.7976931348623157e308"),
            (5e-324, "5e-324"),
            (f64::NAN, "NaN"),
            (f64::from_bits(0x7ff0_0000_0000_0002), "NaN"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
        ];
        for &(v, want) in cases {
            let got = value(v);
            assert_eq!(got, want);
            if v.is_finite() {
                assert_eq!(
                    got.parse::<f64>().unwrap().to_bits(),
                    v.to_bits(),
                    "{want} must round-trip"
                );
            }
        }
    }

    /// The thousandths shortcut against ryu itself, byte for byte: whole and fractional
    /// thousandths at every magnitude up to the bound and past it, both signs, binary
    /// fractions, values near the shortcut's edges, and random doubles.
    #[test]
    fn the_thousandths_shortcut_writes_what_ryu_writes() {
        fn ryu(v: f64) -> String {
            if v.is_nan() {
                "NaN".into()
            } else if v.is_infinite() {
                (if v > 0.0 { "Infinity" } else { "-Infinity" }).into()
            } else {
                ryu::Buffer::new().format_finite(v).to_owned()
            }
        }
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut values = vec![
            0.0,
            -0.0,
            0.001,
            -0.001,
            0.0005,
            0.0015,
            0.05,
            0.1,
            0.3,
            0.1 + 0.2,
            1.0 / 3.0,
            675.0,
            12.25,
            0.125,
            999_999_999_999.999,
            1e12,
            1e12 - 1.0,
            1e12 + 0.5,
            1e15,
            1e16,
            1e21,
            5e-324,
            f64::MAX,
            f64::MIN_POSITIVE,
            f64::NAN,
            f64::INFINITY,
        ];
        for _ in 0..200_000 {
            let r = next();
            // A whole number of thousandths of 1 to 16 digits, or one just off it.
            let digits = 1 + (r % 16) as u32;
            let m = (next() % 10u64.pow(digits)) as f64;
            let v = m / 1000.0;
            values.push(v);
            values.push(-v);
            values.push(f64::from_bits(v.to_bits() + 1));
            values.push((next() % 8_000_000) as f64 / 8.0);
            values.push(f64::from_bits(next()));
        }
        let mut shortcut = 0;
        for v in values {
            let mut got = Vec::new();
            write_value(&mut got, v);
            assert_eq!(
                String::from_utf8(got).unwrap(),
                ryu(v),
                "{:#x}",
                v.to_bits()
            );
            shortcut += usize::from(write_thousandths(&mut Vec::new(), v));
        }
        assert!(shortcut > 400_000, "the shortcut must be taken: {shortcut}");
    }

    #[test]
    fn the_word_at_a_time_check_agrees_with_the_table_for_every_byte_at_every_position() {
        for len in 1..=25 {
            for b in 0..=255u8 {
                for pos in 0..len {
                    for fill in [b'a', 0xc3, b'~'] {
                        let mut s = vec![fill; len];
                        s[pos] = b;
                        assert_eq!(
                            needs_escape(&s),
                            NEEDS_ESCAPE[b as usize],
                            "byte {b:#x} at {pos} of {len}, fill {fill:#x}"
                        );
                    }
                }
            }
        }
        assert!(!needs_escape(b""));
        // Multi-byte UTF-8 (high bytes) never needs escaping.
        assert!(!needs_escape("ünïcødé 中文 🙂 ok".as_bytes()));
    }

    #[test]
    fn strings_are_escaped_as_json_requires() {
        let nasty = "q\"b\\n\nt\tc\u{1}é中🙂";
        let mut b = Vec::new();
        write_str(&mut b, nasty.as_bytes());
        let back: String = serde_json::from_slice(&b).unwrap();
        assert_eq!(back, nasty);
        assert_eq!(
            String::from_utf8(b).unwrap(),
            "\"q\\\"b\\\\n\\nt\\tc\\u0001é中🙂\""
        );
    }

    #[test]
    fn sample_object_matches_the_seed_format() {
        let labels: Vec<(&[u8], &[u8])> = vec![(b"__name__", b"up"), (b"job", b"api\"x")];
        let mut b = Vec::new();
        write_sample(
            &mut b,
            labels.into_iter(),
            &Sample {
                value: 675.0,
                timestamp: 1698732988354,
            },
        );
        assert_eq!(
            String::from_utf8(b.clone()).unwrap(),
            r#"{"__name__":"up","job":"api\"x","value":"675.0","timestamp":"1698732988354"}"#
        );
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["job"], "api\"x");
    }

    #[test]
    fn a_series_objects_are_the_per_sample_objects_joined_by_commas() {
        let labels: Vec<(&[u8], &[u8])> = vec![
            (b"__name__", b"up"),
            (b"job", b"a\"b\\c\n"),
            (b"zone", "中文".as_bytes()),
        ];
        let samples: Vec<Sample> = [675.0, f64::NAN, -0.125, 1e21]
            .iter()
            .zip([1698732988354i64, -1, 0, i64::MAX])
            .map(|(&value, timestamp)| Sample { value, timestamp })
            .collect();
        for n in 0..=samples.len() {
            let mut want = b"prefix".to_vec();
            for (i, s) in samples[..n].iter().enumerate() {
                if i > 0 {
                    want.push(b',');
                }
                write_sample(&mut want, labels.iter().copied(), s);
            }
            let mut got = b"prefix".to_vec();
            write_samples(&mut got, labels.iter().copied(), &samples[..n]);
            assert_eq!(
                String::from_utf8(got).unwrap(),
                String::from_utf8(want).unwrap(),
                "{n} samples"
            );
        }
    }
}
