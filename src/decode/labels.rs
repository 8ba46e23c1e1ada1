//! A series' labels after the walk: checked (non-empty, unique names, valid UTF-8, the input
//! limits), sorted when the sender did not sort them, and hashed (at once, or on demand for
//! the one-pass path), the hash being that of the label set's canonical encoding so a series
//! keeps its send lane whatever shape it arrived in. The one-pass path for labels as
//! Prometheus sends them lives here too.

use super::*;
use crate::encode::remote_write::encode_label;
use std::cmp::Ordering;

impl SeriesBatch {
    /// [`SeriesBatch::check_labels`] for labels another reader pushed into the batch (the
    /// Kafka source's JSON): checked, sorted and hashed as on ingest; the hash.
    pub(crate) fn check_pushed_labels(
        &mut self,
        series: usize,
        labels_start: usize,
    ) -> Result<u64, DecodeError> {
        let checked = self.check_labels(series, labels_start, None, false)?;
        // Without a canonical region the hash is always computed here.
        Ok(checked.hash.unwrap_or_default())
    }

    /// Validate one series' labels, sort them when the sender did not, and hash them (or leave
    /// the hash to whoever asks, on the one-pass path).
    ///
    /// The hash is that of the label set's canonical encoding (each label as
    /// `0x0a len 0x0a n name 0x12 m value`, sorted by name: what [`canonical_label`] accepts,
    /// and what any protobuf encoder writes), whatever shape or order the labels arrived in.
    ///
    /// `canonical`: the byte range of the series' label fields when every one of them had the
    /// canonical shape (non-empty name and value, each under 128 bytes) and they lie back to
    /// back, and `sorted`: the walk found their names in strictly increasing order (it
    /// compares them as it reads the canonical run; `false` when it does not know). Then the
    /// range *is* that encoding, and one pass over its words checks that it is ASCII (tags and
    /// 1-byte lengths are ASCII too), which stands for the per-string UTF-8 checks; the length
    /// limits need no check when they are at least 127. The hash is left to whoever needs it
    /// ([`CheckedLabels::hash`] `None`: a series that no task keeps is never hashed). Any other
    /// series takes the general path: every check per label, a sort when the sender did not
    /// sort, and the canonical encoding written into scratch to be hashed.
    pub(super) fn check_labels(
        &mut self,
        series: usize,
        labels_start: usize,
        canonical: Option<(usize, usize)>,
        sorted: bool,
    ) -> Result<CheckedLabels, DecodeError> {
        let buf = &self.buf;
        let labels = &mut self.labels[labels_start..];
        let limits = self.limits;
        if let Some((a, b)) = canonical
            && sorted
            && !labels.is_empty()
            && labels.len() <= limits.max_labels_per_series
            && limits.max_label_name_bytes >= 127
            && limits.max_label_value_bytes >= 127
            && is_ascii(&buf[a..b])
        {
            return Ok(CheckedLabels {
                hash: None,
                as_received: true,
            });
        }
        let bad = |what: String| DecodeError::BadSeries { series, what };
        if labels.is_empty() {
            return Err(bad("series has no labels".into()));
        }
        if labels.len() > limits.max_labels_per_series {
            return Err(DecodeError::Limit {
                what: format!("series {series}: {} labels", labels.len()),
                limit: limits.max_labels_per_series,
                setting: "max_labels_per_series",
            });
        }
        let mut increasing = true;
        let mut empty_value = false;
        let mut prev: &[u8] = &[];
        for l in labels.iter() {
            let name = &buf[l.name.range()];
            let value = &buf[l.value.range()];
            if name.is_empty() {
                return Err(bad("empty label name".into()));
            }
            if name.len() > limits.max_label_name_bytes {
                return Err(DecodeError::Limit {
                    what: format!("series {series}: a label name of {} bytes", name.len()),
                    limit: limits.max_label_name_bytes,
                    setting: "max_label_name_bytes",
                });
            }
            if value.len() > limits.max_label_value_bytes {
                return Err(DecodeError::Limit {
                    what: format!(
                        "series {series}: the value of label {:?} ({} bytes)",
                        String::from_utf8_lossy(name),
                        value.len()
                    ),
                    limit: limits.max_label_value_bytes,
                    setting: "max_label_value_bytes",
                });
            }
            if !is_utf8(name) || !is_utf8(value) {
                return Err(bad("label name or value is not valid UTF-8".into()));
            }
            increasing &= cmp_bytes(prev, name) == Ordering::Less;
            empty_value |= value.is_empty();
            prev = name;
        }
        if !increasing {
            labels.sort_unstable_by(|a, b| cmp_bytes(&buf[a.name.range()], &buf[b.name.range()]));
            if let Some(w) = labels
                .windows(2)
                .find(|w| buf[w[0].name.range()] == buf[w[1].name.range()])
            {
                return Err(bad(format!(
                    "duplicate label name {:?}",
                    String::from_utf8_lossy(&buf[w[0].name.range()])
                )));
            }
        }
        let scratch = &mut self.hash_scratch;
        scratch.clear();
        for l in labels.iter() {
            encode_label(scratch, &buf[l.name.range()], &buf[l.value.range()]);
        }
        Ok(CheckedLabels {
            hash: Some(label_set_hash(scratch)),
            as_received: increasing && !empty_value,
        })
    }
}

/// An 8-byte chunk (from `chunks_exact(8)`) as a little-endian word.
#[inline(always)]
fn word(w: &[u8]) -> u64 {
    u64::from_le_bytes(w.try_into().unwrap_or([0; 8]))
}

/// Whether every byte is ASCII: an OR of 8-byte words with no early exit, which the compiler
/// turns into wide vector ORs (the label regions it checks are a few hundred bytes, valid in
/// all but hostile requests).
#[inline]
fn is_ascii(bytes: &[u8]) -> bool {
    let mut words = bytes.chunks_exact(8);
    let mut high = 0u64;
    for w in &mut words {
        high |= word(w);
    }
    for &b in words.remainder() {
        high |= u64::from(b);
    }
    high & 0x8080_8080_8080_8080 == 0
}

/// The series hash of an encoded label set: each 8-byte word fed to a [`SeriesHasher`], the
/// last one padded and marked with the length. The same function as before the hash was
/// deferred to the targets, so a series keeps its send lane (and a Kafka `key: series` group)
/// across an upgrade. Written by hand because it runs once per series that a target keeps.
#[inline]
pub fn label_set_hash(bytes: &[u8]) -> u64 {
    hash_rest(SeriesHasher::new(), bytes, bytes.len())
}

/// [`label_set_hash`] of four label sets at once, the same values. The hash is a chain of
/// dependent multiplies, one per 8-byte word, so one set waits on each multiply (and on each
/// load of label bytes not yet in cache) in turn; four independent chains run side by side in
/// about the time of one. Hand-written for that reason: it was most of the cost of delivering
/// a series.
#[inline]
pub(crate) fn label_set_hash_x4(sets: [&[u8]; 4]) -> [u64; 4] {
    let common = 8 * sets.iter().map(|b| b.len() / 8).min().unwrap_or(0);
    let [mut a, mut b, mut c, mut d] = [SeriesHasher::new(); 4];
    // Zipped word iterators: no bounds check in the loop, the four chains in registers.
    let words = sets[0][..common]
        .chunks_exact(8)
        .zip(sets[1][..common].chunks_exact(8))
        .zip(sets[2][..common].chunks_exact(8))
        .zip(sets[3][..common].chunks_exact(8));
    for (((wa, wb), wc), wd) in words {
        a.add(word(wa));
        b.add(word(wb));
        c.add(word(wc));
        d.add(word(wd));
    }
    let h = [a, b, c, d];
    [0, 1, 2, 3].map(|k| hash_rest(h[k], &sets[k][common..], sets[k].len()))
}

/// Go on hashing with `rest`, the last bytes of a set of `len` bytes: whole words, then the
/// last one padded and marked with the length.
#[inline]
fn hash_rest(mut h: SeriesHasher, rest: &[u8], len: usize) -> u64 {
    let mut words = rest.chunks_exact(8);
    for w in &mut words {
        h.add(word(w));
    }
    let rest = words.remainder();
    let mut last = [0u8; 8];
    last[..rest.len()].copy_from_slice(rest);
    h.add(u64::from_le_bytes(last) ^ ((len as u64) << 56));
    h.finish()
}

impl SeriesBatch {
    /// Compute the deferred hashes (see [`SeriesRef::hash_region`]) of the series `indices`
    /// (in any order; repeats and series already hashed are skipped), four at a time
    /// ([`label_set_hash_x4`]), and keep them in the series: [`SeriesView::hash`] then reads
    /// the kept value. The pipeline calls it on the series a task keeps, before delivering
    /// them, when a target of the task picks lanes by the hash.
    ///
    /// [`SeriesRef::hash_region`]: crate::batch::SeriesRef::hash_region
    /// [`SeriesView::hash`]: crate::batch::SeriesView::hash
    pub(crate) fn resolve_hashes(&mut self, indices: impl IntoIterator<Item = u32>) {
        let mut group = [0usize; 4];
        let mut n = 0;
        for i in indices {
            let i = i as usize;
            let r = self.series[i].hash_region;
            // A series kept by several tasks comes once per task: in the index's order one
            // after the other (skipped here), task by task apart.
            if r.start == r.end || (n > 0 && group[n - 1] == i) {
                continue;
            }
            group[n] = i;
            n += 1;
            if n == 4 {
                let sets = group.map(|i| &self.buf[self.series[i].hash_region.range()]);
                let hashes = label_set_hash_x4(sets);
                for (i, hash) in group.into_iter().zip(hashes) {
                    self.series[i].hash = hash;
                    self.series[i].hash_region = Span::default();
                }
                n = 0;
            }
        }
        // One by one, a series can come twice (kept by two tasks, apart): hashed the first
        // time, left alone the second (its region is gone). A group of four reads all four
        // regions before it writes.
        for &i in &group[..n] {
            let s = &mut self.series[i];
            if s.hash_region.start < s.hash_region.end {
                s.hash = label_set_hash(&self.buf[s.hash_region.range()]);
                s.hash_region = Span::default();
            }
        }
    }
}

/// What [`SeriesBatch::check_labels`] found out about a valid label set.
pub(super) struct CheckedLabels {
    /// The hash of the sorted labels; `None` when it is that of the canonical region passed
    /// in, left for [`label_set_hash`] when a target asks.
    pub(super) hash: Option<u64>,
    /// The labels arrived sorted and none has an empty value: as they are, they are what an
    /// encoder would write (it leaves empty labels out).
    pub(super) as_received: bool,
}

/// Byte-wise comparison, inlined. Label names are short and usually differ in the first bytes;
/// a call to `memcmp` per comparison cost more than the comparison itself (10 % of the relay's
/// CPU in a profile before this).
#[inline(always)]
pub fn cmp_bytes(a: &[u8], b: &[u8]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        if x != y {
            return x.cmp(y);
        }
    }
    a.len().cmp(&b.len())
}

/// A small, fast, non-cryptographic hash of a label set (FxHash-style word mixing). Written by
/// hand because it runs once per series on the hot path and needs no keyed DoS resistance: it
/// only spreads series over send shards.
#[derive(Clone, Copy)]
pub struct SeriesHasher(u64);

impl SeriesHasher {
    const K: u64 = 0x517c_c1b7_2722_0a95;

    pub fn new() -> Self {
        SeriesHasher(0)
    }

    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(Self::K);
    }

    /// Feed one string: its length, its first and its last 8 bytes. Constant work per string
    /// (strings repeat the same few bytes in the middle far less often than they differ at the
    /// ends, and the hash only spreads series over send lanes: a collision costs balance, never
    /// correctness). The length is mixed in, so ("ab","c") and ("a","bc") differ.
    #[inline]
    pub fn write(&mut self, bytes: &[u8]) {
        let len = bytes.len() as u64;
        if let (Some(head), Some(tail)) = (bytes.first_chunk::<8>(), bytes.last_chunk::<8>()) {
            self.add(u64::from_le_bytes(*head));
            self.add(u64::from_le_bytes(*tail) ^ (len << 56) ^ len);
        } else if let (Some(head), Some(tail)) = (bytes.first_chunk::<4>(), bytes.last_chunk::<4>())
        {
            // 4 to 7 bytes: two overlapping 4-byte loads cover every byte.
            let w =
                u64::from(u32::from_le_bytes(*head)) | (u64::from(u32::from_le_bytes(*tail)) << 32);
            self.add(w ^ (len << 56));
        } else if let (Some(&a), Some(&b)) = (bytes.first(), bytes.last()) {
            // 1 to 3 bytes: first, middle and last cover every byte.
            let w = u64::from(a) | (u64::from(bytes[bytes.len() / 2]) << 8) | (u64::from(b) << 16);
            self.add(w ^ (len << 56));
        } else {
            self.add(len << 56);
        }
    }

    #[inline]
    pub fn finish(self) -> u64 {
        // Final avalanche so the low bits used for `% shards` depend on every input bit.
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h
    }
}

impl Default for SeriesHasher {
    fn default() -> Self {
        Self::new()
    }
}
