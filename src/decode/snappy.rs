//! Snappy (raw block format) decompression that can stop and resume: the walk decodes the
//! series of a request while they are still in the cache that decompressing them warmed.
//!
//! Why by hand: `snap` decompresses a whole body in one call. A 2,000-series request is about
//! 550 KB decoded, more than a core's L2, so by the time the walk reads its first series the
//! decompressor has pushed them out to L3, and every dependent load of the walk waits on it.
//! Decompressing a window at a time ahead of the walk keeps what the walk reads in L1/L2.
//!
//! The format (github.com/google/snappy, `format_description.txt`): a varint of the decoded
//! length, then elements. A tag byte's low two bits say which: `00` a literal (length − 1 in
//! the upper six bits, or 60–63 for a length − 1 in the next 1–4 bytes), `01` a copy of 4–11
//! bytes with an 11-bit offset, `10` a copy of 1–64 bytes with a 16-bit offset, `11` the same
//! with a 32-bit offset. A copy may overlap what it writes (offset < length repeats a pattern).
//!
//! Invariants (no `unsafe`: every access is a checked slice access, which the branch predictor
//! takes for free on valid input):
//! - `d` (bytes written) only grows and never passes `dst.len()`; `dst[..d]` is final output.
//! - The fast loop runs only while 64 bytes of room follow `d` in `dst` and 69 follow `s` in
//!   `src`, so it copies whole 16-byte words and may write up to 64 bytes past an element's
//!   end; those bytes lie beyond `d` and are written again, correctly, by the elements that
//!   own them before anything reads them (a copy reads only below its own write position).
//! - A copy's offset is checked against `d` (never before the start) and is non-zero.
//! - The body is valid only when the input ends exactly where the output is full.

/// A snappy body the decoder refuses, with what was wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SnappyError {
    #[error("the header (decoded length) is not a varint of at most 32 bits")]
    Header,
    #[error("a literal runs past the end of the input or the declared length")]
    Literal,
    #[error("a copy's offset is 0 or reaches before the start of the output")]
    Offset,
    #[error("a copy runs past the declared length")]
    CopyPastEnd,
    #[error("the input is truncated inside an element")]
    Truncated,
    #[error("the input ends after {got} decoded bytes, not the {declared} its header declares")]
    Short { got: usize, declared: usize },
    #[error("the input goes on past the {declared} decoded bytes its header declares")]
    Trailing { declared: usize },
}

/// The decoded length a body declares and the size of that header.
///
/// # Errors
/// [`SnappyError::Header`] when it is not a varint of at most 5 bytes and 32 bits.
pub fn declared_len(body: &[u8]) -> Result<(usize, usize), SnappyError> {
    let mut value = 0u64;
    for (i, &b) in body.iter().take(5).enumerate() {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            return match u32::try_from(value) {
                Ok(v) => Ok((v as usize, i + 1)),
                Err(_) => Err(SnappyError::Header),
            };
        }
    }
    Err(SnappyError::Header)
}

/// Room the fast loop needs after `s` in the input: a tag, up to 4 length or offset bytes
/// and a 64-byte literal copy.
const SRC_SLACK: usize = 69;
/// Room the fast loop needs after `d` in the output: one 64-byte copy.
const DST_SLACK: usize = 64;

/// Where a decompression stands: `s` in the input, `d` in the output.
#[derive(Debug, Clone, Copy)]
pub struct Inflate {
    s: usize,
    d: usize,
}

impl Inflate {
    /// Start after the header (`header_len` from [`declared_len`]).
    pub fn new(header_len: usize) -> Self {
        Inflate {
            s: header_len,
            d: 0,
        }
    }

    /// Bytes of output final so far.
    #[inline]
    pub fn written(&self) -> usize {
        self.d
    }

    /// Whether all of `dst` is written and all of `src` read.
    pub fn finished(&self, src: &[u8], dst: &[u8]) -> bool {
        self.s == src.len() && self.d == dst.len()
    }

    /// Decompress more of `src` into `dst` (exactly the declared length), until at least
    /// `until` bytes of output are final or the input ends; returns the bytes final.
    ///
    /// # Errors
    /// A malformed element ([`SnappyError`]); and, once the input ends, an output that is not
    /// exactly full ([`SnappyError::Short`]). After an error the state is not to be resumed.
    pub fn run(&mut self, src: &[u8], dst: &mut [u8], until: usize) -> Result<usize, SnappyError> {
        let until = until.min(dst.len());
        let (mut s, mut d) = (self.s, self.d);
        let src_end = src.len().saturating_sub(SRC_SLACK);
        let fast_until = until.min(dst.len().saturating_sub(DST_SLACK));
        loop {
            // The fast loop: no length checks beyond the slack, 16-byte words (see the module
            // invariants). Written for the common shapes of remote-write bodies: short
            // literals, and copies of a few dozen bytes from a few hundred bytes back.
            while s < src_end && d < fast_until {
                let tag = src[s];
                if tag & 3 == 0 {
                    let len = usize::from(tag >> 2) + 1;
                    if len > 60 {
                        break; // a long literal: one careful step
                    }
                    if len <= 16 {
                        copy_words::<1>(src, s + 1, dst, d);
                    } else {
                        copy_words::<4>(src, s + 1, dst, d);
                    }
                    s += 1 + len;
                    d += len;
                } else {
                    let entry = COPY[usize::from(tag)];
                    let len = usize::from(entry & 0x7f);
                    let extra = usize::from(entry >> 13);
                    let word =
                        u32::from_le_bytes(*src[s + 1..].first_chunk::<4>().unwrap_or(&[0; 4]));
                    let offset = usize::from(entry & 0x0700) | (word & EXTRA_MASK[extra]) as usize;
                    if offset < 16 || offset > d {
                        break; // a short-period pattern, or malformed: one careful step
                    }
                    let from = d - offset;
                    // Word by word, each read after the one before was written: with an
                    // offset of 16 or more a word never reads bytes this copy has yet to write.
                    if len <= 16 {
                        // Two 8-byte words, as `snap` does: a 16-byte load right behind the
                        // stores of the element before stalls store forwarding more often.
                        let a = *dst[from..].first_chunk::<8>().unwrap_or(&[0; 8]);
                        dst[d..d + 8].copy_from_slice(&a);
                        let b = *dst[from + 8..].first_chunk::<8>().unwrap_or(&[0; 8]);
                        dst[d + 8..d + 16].copy_from_slice(&b);
                        s += 1 + extra;
                        d += len;
                        continue;
                    }
                    let mut k = 0;
                    while k < len {
                        let w = *dst[from + k..].first_chunk::<16>().unwrap_or(&[0; 16]);
                        dst[d + k..d + k + 16].copy_from_slice(&w);
                        k += 16;
                    }
                    s += 1 + extra;
                    d += len;
                }
            }
            if s >= src.len() || d >= until {
                break;
            }
            // One careful step: every length checked, byte-exact writes. The ends of bodies,
            // long literals, short-period copies and every malformed element come here.
            careful_step(src, dst, &mut s, &mut d)?;
        }
        self.s = s;
        self.d = d;
        if s == src.len() && d != dst.len() {
            return Err(SnappyError::Short {
                got: d,
                declared: dst.len(),
            });
        }
        if d == dst.len() && s != src.len() {
            return Err(SnappyError::Trailing { declared: d });
        }
        Ok(d)
    }
}

/// Decode one element at `src[*s..]` into `dst[*d..]`, checking everything.
#[inline(never)]
fn careful_step(
    src: &[u8],
    dst: &mut [u8],
    s: &mut usize,
    d: &mut usize,
) -> Result<(), SnappyError> {
    let tag = src[*s];
    *s += 1;
    if tag & 3 == 0 {
        let mut len = usize::from(tag >> 2);
        if len >= 60 {
            let n = len - 59;
            let bytes = src.get(*s..*s + n).ok_or(SnappyError::Truncated)?;
            len = bytes
                .iter()
                .rev()
                .fold(0usize, |acc, &b| acc << 8 | usize::from(b));
            *s += n;
        }
        let len = len + 1;
        let from = src.get(*s..*s + len).ok_or(SnappyError::Literal)?;
        dst.get_mut(*d..*d + len)
            .ok_or(SnappyError::Literal)?
            .copy_from_slice(from);
        *s += len;
        *d += len;
        return Ok(());
    }
    let entry = COPY[usize::from(tag)];
    let len = usize::from(entry & 0x7f);
    let extra = usize::from(entry >> 13);
    let bytes = src.get(*s..*s + extra).ok_or(SnappyError::Truncated)?;
    let low = bytes
        .iter()
        .rev()
        .fold(0usize, |acc, &b| acc << 8 | usize::from(b));
    let offset = usize::from(entry & 0x0700) | low;
    *s += extra;
    if offset == 0 || offset > *d {
        return Err(SnappyError::Offset);
    }
    if len > dst.len() - *d {
        return Err(SnappyError::CopyPastEnd);
    }
    if offset >= len {
        dst.copy_within(*d - offset..*d - offset + len, *d);
    } else {
        // A pattern of period `offset`, repeated.
        for i in *d..*d + len {
            dst[i] = dst[i - offset];
        }
    }
    *d += len;
    Ok(())
}

/// `words` 16-byte words from `src[at..]` to `dst[d..]` (the caller guarantees the room).
#[inline(always)]
fn copy_words<const WORDS: usize>(src: &[u8], at: usize, dst: &mut [u8], d: usize) {
    for k in 0..WORDS {
        let w = *src[at + 16 * k..].first_chunk::<16>().unwrap_or(&[0; 16]);
        dst[d + 16 * k..d + 16 * k + 16].copy_from_slice(&w);
    }
}

/// The bytes of a copy's offset that follow its tag, by [`COPY`]'s `extra` (1, 2 or 4).
const EXTRA_MASK: [u32; 5] = [0, 0xff, 0xffff, 0, 0xffff_ffff];

/// Per copy tag: bits 0–6 the copy's length, bits 8–10 the offset's bits 8–10 (which a
/// copy with a 1-byte offset carries in its tag), bits 13–15 how many offset bytes follow the
/// tag. Literal tags are unused.
const COPY: [u16; 256] = {
    let mut t = [0u16; 256];
    let mut tag = 0;
    while tag < 256 {
        t[tag] = copy_entry(tag as u8);
        tag += 1;
    }
    t
};

const fn copy_entry(tag: u8) -> u16 {
    match tag & 3 {
        // 4 to 11 bytes, the offset's bits 8-10 in the tag's top three bits, one more byte.
        1 => {
            let len = 4 + ((tag >> 2) & 7) as u16;
            let high = ((tag >> 5) as u16) << 8;
            len | high | (1 << 13)
        }
        2 => ((tag >> 2) as u16 + 1) | (2 << 13),
        3 => ((tag >> 2) as u16 + 1) | (4 << 13),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::workload::Rng;

    fn inflate_all(body: &[u8]) -> Result<Vec<u8>, SnappyError> {
        let (n, h) = declared_len(body)?;
        let mut out = vec![0u8; n];
        let mut st = Inflate::new(h);
        st.run(body, &mut out, usize::MAX)?;
        if !st.finished(body, &out) {
            return Err(SnappyError::Short {
                got: st.written(),
                declared: n,
            });
        }
        Ok(out)
    }

    /// Bytes that compress: protobuf-like runs of repeated words with changing numbers, runs
    /// of one byte (short-period copies), and random stretches (literals of every length).
    fn sample(rng: &mut Rng, len: usize) -> Vec<u8> {
        let words: [&[u8]; 6] = [
            b"\x0a\x08__name__\x12\x0bhttp_total",
            b"instance",
            b"kube-system",
            b"node_cpu_seconds_total",
            b"\x00\x00\x00\x00",
            b"ab",
        ];
        let mut v = Vec::with_capacity(len + 64);
        while v.len() < len {
            match rng.below(5) {
                0 | 1 => v.extend_from_slice(words[rng.below(6) as usize]),
                2 => {
                    let b = rng.below(256) as u8;
                    let n = rng.below(80) as usize;
                    v.extend(std::iter::repeat_n(b, n));
                }
                _ => {
                    let n = rng.below(300) as usize;
                    v.extend((0..n).map(|_| rng.below(256) as u8));
                }
            }
        }
        v.truncate(len);
        v
    }

    #[test]
    fn decodes_what_snap_encodes_for_every_size_and_shape() {
        let mut rng = Rng::new(7);
        let mut enc = snap::raw::Encoder::new();
        for len in (0..300).chain([1000, 4096, 65_535, 65_536, 65_537, 200_000, 700_000]) {
            let data = sample(&mut rng, len);
            let body = enc.compress_vec(&data).unwrap();
            assert_eq!(inflate_all(&body).unwrap(), data, "length {len}");
        }
    }

    #[test]
    fn stopping_and_resuming_anywhere_gives_the_same_bytes() {
        let mut rng = Rng::new(11);
        let data = sample(&mut rng, 150_000);
        let body = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        for step in [1usize, 7, 64, 1000, 4096, 65_536] {
            let (n, h) = declared_len(&body).unwrap();
            let mut out = vec![0u8; n];
            let mut st = Inflate::new(h);
            let mut until = 0;
            while !st.finished(&body, &out) {
                until += step;
                let got = st.run(&body, &mut out, until).unwrap();
                assert!(got >= until.min(n), "stopped short at {got} of {until}");
                // What is reported final is final.
                assert_eq!(out[..got], data[..got]);
            }
            assert_eq!(out, data, "step {step}");
        }
    }

    /// Hand-built elements the encoders here never emit: every literal length form, copies
    /// with 4-byte offsets, a 1-byte period, a copy that ends the output exactly.
    #[test]
    fn decodes_every_element_form() {
        let mut body = vec![0u8; 0];
        let mut want = Vec::new();
        let lit = |body: &mut Vec<u8>, want: &mut Vec<u8>, bytes: &[u8], extra: usize| {
            let n = bytes.len() - 1;
            if extra == 0 {
                body.push((n as u8) << 2);
            } else {
                body.push(((59 + extra) as u8) << 2);
                body.extend_from_slice(&n.to_le_bytes()[..extra]);
            }
            body.extend_from_slice(bytes);
            want.extend_from_slice(bytes);
        };
        let text: Vec<u8> = (0..2100u32).map(|i| b'a' + (i % 26) as u8).collect();
        lit(&mut body, &mut want, &text[..5], 0);
        lit(&mut body, &mut want, &text[..100], 1);
        lit(&mut body, &mut want, &text[..260], 2);
        lit(&mut body, &mut want, &text[..3], 3);
        lit(&mut body, &mut want, &text[..2], 4);
        lit(&mut body, &mut want, &text[..2048], 2);
        let copy = |body: &mut Vec<u8>, want: &mut Vec<u8>, kind: u8, off: usize, len: usize| {
            match kind {
                1 => {
                    body.push(((off >> 8) as u8) << 5 | ((len - 4) as u8) << 2 | 1);
                    body.push(off as u8);
                }
                2 => {
                    body.push(((len - 1) as u8) << 2 | 2);
                    body.extend_from_slice(&(off as u16).to_le_bytes());
                }
                _ => {
                    body.push(((len - 1) as u8) << 2 | 3);
                    body.extend_from_slice(&(off as u32).to_le_bytes());
                }
            }
            for _ in 0..len {
                want.push(want[want.len() - off]);
            }
        };
        copy(&mut body, &mut want, 1, 1, 11);
        copy(&mut body, &mut want, 1, 2047, 4);
        copy(&mut body, &mut want, 2, 3, 64);
        copy(&mut body, &mut want, 2, 300, 64);
        copy(&mut body, &mut want, 3, 17, 33);
        copy(&mut body, &mut want, 3, 370, 1);
        // Enough elements that the fast loop meets each of them too.
        let (head, tail) = (body.clone(), want.clone());
        for _ in 0..40 {
            body.extend_from_slice(&head[..]);
            want.extend_from_slice(&tail[..]);
        }
        let mut full = Vec::new();
        let mut n = want.len();
        while n >= 0x80 {
            full.push(n as u8 | 0x80);
            n >>= 7;
        }
        full.push(n as u8);
        full.extend_from_slice(&body);
        assert_eq!(inflate_all(&full).unwrap(), want);
        assert_eq!(
            snap::raw::Decoder::new().decompress_vec(&full).unwrap(),
            want
        );
    }

    /// Whatever the bytes, an answer and never a panic; and an answer agreeing with `snap`
    /// on whether the body is valid, and on the bytes when it is.
    #[test]
    fn refuses_what_snap_refuses_and_never_panics() {
        let mut rng = Rng::new(3);
        let data = sample(&mut rng, 20_000);
        let good = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        for round in 0..4000 {
            let mut body = good.clone();
            match round % 4 {
                0 => {
                    let at = rng.below(body.len() as u64) as usize;
                    body[at] ^= 1 << rng.below(8);
                }
                1 => body.truncate(rng.below(body.len() as u64) as usize),
                2 => {
                    let at = rng.below(body.len() as u64) as usize;
                    body[at] = rng.below(256) as u8;
                    let at = rng.below(body.len() as u64) as usize;
                    body[at] = rng.below(256) as u8;
                }
                _ => {
                    let n = rng.below(200) as usize;
                    body = (0..n).map(|_| rng.below(256) as u8).collect();
                }
            }
            // Keep the declared length within reach so that most bodies get decoded.
            let theirs = snap::raw::decompress_len(&body)
                .ok()
                .filter(|&n| n <= 1 << 20)
                .map(|_| snap::raw::Decoder::new().decompress_vec(&body));
            let Some(theirs) = theirs else { continue };
            let ours = inflate_all(&body);
            match (&ours, &theirs) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "round {round}"),
                (Err(_), Err(_)) => {}
                _ => panic!("round {round}: ours {ours:?}, snap {theirs:?}"),
            }
        }
    }

    #[test]
    fn the_header_is_a_varint_of_at_most_32_bits() {
        assert_eq!(declared_len(&[0]), Ok((0, 1)));
        assert_eq!(declared_len(&[0x80, 0x01]), Ok((128, 2)));
        assert_eq!(
            declared_len(&[0xff, 0xff, 0xff, 0xff, 0x0f]),
            Ok((u32::MAX as usize, 5))
        );
        assert_eq!(
            declared_len(&[0xff, 0xff, 0xff, 0xff, 0x10]),
            Err(SnappyError::Header)
        );
        assert_eq!(declared_len(&[0x80; 6]), Err(SnappyError::Header));
        assert_eq!(declared_len(&[]), Err(SnappyError::Header));
    }
}
