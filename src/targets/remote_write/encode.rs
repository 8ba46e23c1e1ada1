//! How a remote_write target takes one series: its `timeseries` field, written by
//! [`crate::encode::remote_write`] into the lane its label hash picks. A lane's chunks appended
//! back to back are already a `WriteRequest` body.
//!
//! With several receivers (`urls`), the target's lanes are split between them, `queue.shards`
//! each, and a series goes to `replicas` receivers chosen by rendezvous hashing of its labels
//! (or of its `shard_by` labels): every receiver scores the series and the highest scores win.
//! A series always reaches the same receivers, so each receiver sees whole series in order;
//! adding a receiver moves only the series it now wins, about 1/(n+1) of them. A receiver
//! that is down keeps its share in its own lanes (memory, then its overflow): re-sharding it
//! to the others would split series across receivers.

use crate::batch::{MetadataRef, SeriesView};
use crate::decode::{Protocol, SeriesHasher};
use crate::encode::metadata::{METADATA_TAG, SERIES_METADATA_TAG, write_metadata};
use crate::encode::remote_write::write_series_field;
use crate::encode::start_timestamp::{v1_extras, write_series_starts};
use crate::relabel::MergedLabels;
use std::sync::Arc;

use super::families::FamilyMetadata;
use crate::targets::Output;

use super::RemoteWriteConfig;
use super::config::MAX_URLS;

/// The remote_write encoder. Stateless for one receiver: the lane is the series hash's.
#[derive(Debug, Clone)]
pub struct RemoteWriteEncoder {
    receivers: usize,
    replicas: usize,
    /// Label names whose values pick the receivers; empty: all labels (the series hash).
    shard_by: Box<[Box<[u8]>]>,
    /// A 2.0 target: a series' metadata rides inside its queued series
    /// ([`crate::encode::metadata`]).
    v2: bool,
    /// 2.0 targets: metadata that came without series, by family (see `families.rs`).
    families: Arc<FamilyMetadata>,
}

impl RemoteWriteConfig {
    pub fn encoder(&self) -> RemoteWriteEncoder {
        RemoteWriteEncoder {
            receivers: self.urls.len().max(1),
            replicas: self.replicas.max(1),
            shard_by: self.shard_by.iter().map(|l| l.as_bytes().into()).collect(),
            v2: self.protocol == Protocol::V2,
            families: Arc::default(),
        }
    }
}

/// A well-mixed 64-bit value of `x` (splitmix64's finaliser).
#[inline]
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Receiver `r`'s rendezvous score for a series key.
#[inline]
fn score(key: u64, r: usize) -> u64 {
    mix(key ^ (r as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// The `replicas` receivers (of `receivers`) with the highest scores for `key`, best first,
/// into `out` (no allocation); returns how many.
fn choose(key: u64, receivers: usize, replicas: usize, out: &mut [usize; MAX_URLS]) -> usize {
    let n = replicas.min(receivers);
    let mut scores = [0u64; MAX_URLS];
    for (r, s) in scores.iter_mut().enumerate().take(receivers) {
        *s = score(key, r);
    }
    for slot in out.iter_mut().take(n) {
        let mut best = 0;
        for r in 1..receivers {
            if scores[r] > scores[best] {
                best = r;
            }
        }
        *slot = best;
        scores[best] = 0; // taken (a real score of 0 loses ties only, harmlessly)
    }
    n
}

impl RemoteWriteEncoder {
    /// The series hash picks the lane (and, with several URLs, the receivers): not needed for
    /// one receiver through one lane.
    pub fn uses_series_hash(&self, lanes: usize) -> bool {
        self.receivers > 1 || lanes > 1
    }

    /// A 1.0 target with one receiver sends what it queued as a 1.0 `WriteRequest`: a 1.0
    /// request it took unchanged can go as its sender compressed it (the pipeline checks that
    /// it is unchanged; with several lanes the queue sends it as a barrier, `whole.rs`).
    pub fn passes_requests_through(&self) -> bool {
        !self.v2 && self.receivers == 1
    }

    /// Write one series (its delivered `labels`), samples, exemplars and histograms included.
    #[inline]
    pub fn write_series(
        &self,
        out: &mut Output,
        series: &SeriesView<'_>,
        labels: MergedLabels<'_>,
    ) {
        let samples = series.samples();
        let carried = samples.len() + series.histogram_count() as usize;
        // Toward a 2.0 target, what 1.0 has no field for rides as relay-internal fields
        // after the extras; toward a 1.0 target, histograms lose their start timestamps
        // (cold: only for 2.0 senders' metadata and start timestamps).
        out.scratch.clear();
        let mut rewritten = false;
        if self.v2 {
            if let Some(m) = series.metadata() {
                write_metadata(&mut out.scratch, SERIES_METADATA_TAG, series.buf(), m);
            } else if let Some(name) = series.label(b"__name__") {
                self.families.append_for(name, &mut out.scratch);
            }
            let mut starts = series.start_timestamps().peekable();
            if starts.peek().is_some() {
                write_series_starts(&mut out.scratch, samples.len(), starts);
            }
        } else {
            out.start_timestamps_dropped += series.start_timestamps().count();
            if let Some(cut) = v1_extras(series, &mut out.scratch) {
                out.start_timestamps_dropped += cut;
                rewritten = true;
            }
        }
        let internal = (!out.scratch.is_empty()).then_some(&out.scratch[..]);
        if self.receivers == 1 {
            // Computed before delivery, four series at a time, or else on demand from the
            // label bytes (see `SeriesRef::hash_region`); one lane needs none.
            let lanes = out.lanes.len() as u64;
            let lane = if lanes == 1 {
                0
            } else {
                (series.hash() % lanes) as usize
            };
            let chunk = &mut out.lanes[lane];
            // The splice of an unchanged series is a copy of its field (`splice_series`).
            let copied = !rewritten
                && internal.is_none()
                && series.splice().is_some()
                && labels.splice_labels().is_some_and(|s| s.is_empty());
            out.copied += usize::from(copied);
            write_series_field(&mut chunk.bytes, series, labels, rewritten, internal);
            chunk.end_series(carried);
            out.samples += carried;
            return;
        }
        let hash = series.hash();
        let lanes = out.lanes.len();
        let per = (lanes / self.receivers).max(1);
        let within = (hash % per as u64) as usize;
        let mut chosen = [0usize; MAX_URLS];
        let n = choose(
            self.key(series, hash),
            self.receivers,
            self.replicas,
            &mut chosen,
        );
        for &r in &chosen[..n] {
            let chunk = &mut out.lanes[(r * per + within).min(lanes - 1)];
            write_series_field(
                &mut chunk.bytes,
                series,
                labels.clone(),
                rewritten,
                internal,
            );
            chunk.end_series(carried);
            out.samples += carried;
        }
    }

    /// Write metadata entries. A 1.0 target: each a top-level `metadata` field in the first
    /// lane of each receiver (every receiver gets every family's metadata), one sample's
    /// room each; the sender sends them as requests of their own. A 2.0 target carries
    /// metadata only inside series: entries that came with series ride with them
    /// ([`RemoteWriteEncoder::write_series`]); those that came alone are kept per family
    /// (`families.rs`) for the family's later series (counted as dropped only past the bound).
    pub fn write_metadata<'a>(
        &self,
        out: &mut Output,
        buf: &[u8],
        entries: impl Iterator<Item = &'a MetadataRef> + Clone,
        per_series: bool,
    ) {
        if self.v2 {
            if !per_series {
                for m in entries {
                    if !self.families.remember(buf, m) {
                        out.metadata_without_series += 1;
                    }
                }
            }
            return;
        }
        let lanes = out.lanes.len();
        let per = (lanes / self.receivers).max(1);
        for r in 0..self.receivers {
            let chunk = &mut out.lanes[(r * per).min(lanes - 1)];
            for m in entries.clone() {
                write_metadata(&mut chunk.bytes, METADATA_TAG, buf, m);
                chunk.end_series(1);
                chunk.metadata = true;
                out.metadata += 1;
            }
        }
    }

    /// What picks a series' receivers: all its labels (`hash`), or the `shard_by` ones.
    #[inline]
    fn key(&self, series: &SeriesView<'_>, hash: u64) -> u64 {
        if self.shard_by.is_empty() {
            return hash;
        }
        let mut h = SeriesHasher::new();
        for name in self.shard_by.iter() {
            h.write(name);
            h.write(series.label(name).unwrap_or_default());
        }
        h.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(key: u64, receivers: usize, replicas: usize) -> Vec<usize> {
        let mut out = [0usize; MAX_URLS];
        let n = choose(key, receivers, replicas, &mut out);
        out[..n].to_vec()
    }

    #[test]
    fn a_series_gets_distinct_receivers_and_always_the_same() {
        for key in 0..1000u64 {
            let two = pick(mix(key), 5, 2);
            assert_eq!(two.len(), 2);
            assert_ne!(two[0], two[1]);
            assert!(two.iter().all(|&r| r < 5));
            assert_eq!(two, pick(mix(key), 5, 2), "stable");
            assert_eq!(
                pick(mix(key), 5, 1)[0],
                two[0],
                "the first replica is the 1-replica choice"
            );
        }
    }

    #[test]
    fn adding_a_receiver_moves_about_one_in_n_plus_one_series_and_only_to_it() {
        let keys: Vec<u64> = (0..20_000u64).map(mix).collect();
        for n in [2usize, 3, 5, 9] {
            let mut moved = 0;
            for &k in &keys {
                let before = pick(k, n, 1)[0];
                let after = pick(k, n + 1, 1)[0];
                if before != after {
                    assert_eq!(after, n, "a series only ever moves to the new receiver");
                    moved += 1;
                }
            }
            let share = moved as f64 / keys.len() as f64;
            let expected = 1.0 / (n + 1) as f64;
            assert!(
                (share - expected).abs() < 0.02,
                "{n} → {}: moved {share:.3}, expected {expected:.3}",
                n + 1
            );
        }
    }

    #[test]
    fn the_spread_is_even() {
        let mut counts = [0usize; 3];
        for k in 0..30_000u64 {
            counts[pick(mix(k), 3, 1)[0]] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
    }
}
