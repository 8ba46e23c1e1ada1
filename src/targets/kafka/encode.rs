//! How Kafka-bound series travel through a queue lane (their records); [`super::messages`] turns
//! a lane's batch of records into messages.
//!
//! The data path writes one *record* per series into the lane buffer:
//!
//! ```text
//! [u16 topic length][topic]   length 0: the configured fixed topic
//! [u16 key length][key]       length 0: the lane's group key (key: series) or no key
//! [u32 samples]
//! [u32 body length][body]     JSON objects joined by ',' (json) or a `timeseries` field (remote_write)
//! ```
//!
//! (little-endian). The queue cuts batches between records like between any series. The sender
//! then groups a batch's records by (topic, key) in arrival order and packs each group into
//! messages of at most `max_message_bytes` before compression: `[` + bodies joined by `,` + `]`
//! for JSON, the concatenated fields (a `WriteRequest`) for remote_write. A single record larger
//! than the cap goes out alone.
//!
//! Partitioning: with `key: series` a series' lane is picked by its label hash and every message
//! of lane N carries the key `series-group-N`, so a series always reaches the same partition, in
//! order. With `key: metric` the lane is picked by the metric name and the key is the metric
//! name. With `key: none` messages have no key.

use super::{KafkaConfig, KafkaFormat, KafkaKey, TopicPart};
use crate::batch::{MetadataRef, Sample, SeriesView};
use crate::decode::SeriesHasher;
use crate::encode::histogram_buckets::{HistogramMode, Joins, write_buckets};
use crate::encode::{json_sample as json, remote_write, start_timestamp};
use crate::relabel::MergedLabels;
use crate::targets::Output;

/// What the data path needs to know to write records for one Kafka target.
#[derive(Debug, Clone)]
pub struct KafkaLayout {
    pub format: KafkaFormat,
    pub key: KafkaKey,
    /// `format: json`: what native histograms become.
    pub histograms: HistogramMode,
    /// `None` for a fixed topic.
    topic: Option<Vec<TopicPart>>,
}

/// Longest topic name Kafka accepts.
const MAX_TOPIC: usize = 249;

impl KafkaConfig {
    /// The Kafka encoder is the target's record layout.
    pub fn encoder(&self) -> KafkaLayout {
        KafkaLayout::new(self)
    }
}

impl KafkaLayout {
    pub fn new(cfg: &KafkaConfig) -> KafkaLayout {
        KafkaLayout {
            format: cfg.format,
            key: cfg.key,
            histograms: cfg.histograms,
            topic: cfg.fixed_topic().is_none().then(|| cfg.topic.clone()),
        }
    }

    /// `key: series` and `key: none` pick the lane by the series hash (and `key: series` is
    /// the hash, whatever the lanes); `key: metric` by the name.
    pub fn uses_series_hash(&self, _lanes: usize) -> bool {
        !matches!(self.key, KafkaKey::Metric)
    }

    /// JSON messages, never a request's own bytes.
    pub fn passes_requests_through(&self) -> bool {
        false
    }

    /// Write one series (its delivered `labels`) as a record into the lane its key picks.
    /// JSON cannot carry native histograms: they are counted as unsupported.
    #[inline]
    pub fn write_series(
        &self,
        out: &mut Output,
        series: &SeriesView<'_>,
        labels: MergedLabels<'_>,
    ) {
        let samples = series.samples();
        let histograms = series.histogram_count() as usize;
        let json = self.format == KafkaFormat::Json;
        let buckets = json && histograms > 0 && self.histograms == HistogramMode::Buckets;
        if json && !buckets {
            out.unsupported += histograms;
            if samples.is_empty() {
                return;
            }
        }
        // Neither format has a place for 2.0 start timestamps: JSON loses them (with a
        // dropped histogram they go unnoticed), 1.0 protobuf has them cut from histograms.
        out.scratch.clear();
        let mut rewritten = false;
        if json {
            out.start_timestamps_dropped += if buckets {
                start_timestamp::count(series)
            } else {
                series.start_timestamps().count()
            };
        } else {
            out.start_timestamps_dropped += series.start_timestamps().count();
            if let Some(cut) = start_timestamp::v1_extras(series, &mut out.scratch) {
                out.start_timestamps_dropped += cut;
                rewritten = true;
            }
        }
        let name = series.label(b"__name__").unwrap_or_default();
        // The series hash (see `SeriesRef::hash_region`) only when it picks the lane: computed
        // before delivery when `uses_series_hash` says so, or else on demand here.
        let hash = match self.key {
            KafkaKey::Metric => 0,
            KafkaKey::Series | KafkaKey::None => series.hash(),
        };
        let lane = self.lane(hash, name, out.lanes.len());
        let chunk = &mut out.lanes[lane];
        let mut n = 0;
        if json && !samples.is_empty() {
            n = self.write_record(
                &mut chunk.bytes,
                labels.clone(),
                samples,
                std::iter::empty(),
            );
        } else if !json {
            // The `timeseries` field as the remote_write target writes it: spliced from the
            // received bytes when it can be.
            let internal = rewritten.then_some(&out.scratch[..]);
            n = self.write_record_with(&mut chunk.bytes, labels.clone(), samples.len(), |b| {
                remote_write::write_series_field(b, series, labels.clone(), rewritten, internal)
            });
        }
        if buckets {
            // Cold: only with `histograms: buckets`. A record of its own, after the samples'.
            let (written, failed) = self.write_bucket_record(
                &mut chunk.bytes,
                &mut out.histogram_scratch,
                labels,
                series.extras(),
            );
            n += written;
            out.unsupported += failed;
            if n == 0 {
                return;
            }
        }
        let carried = if json { n } else { n + histograms };
        chunk.end_series(carried);
        out.samples += carried;
    }

    /// Kafka messages carry series only (JSON objects, or `timeseries` fields grouped by
    /// key): metadata is counted as unsupported.
    pub fn write_metadata<'a>(
        &self,
        out: &mut Output,
        _buf: &[u8],
        entries: impl Iterator<Item = &'a MetadataRef>,
        _per_series: bool,
    ) {
        out.metadata_unsupported += entries.count();
    }

    /// The lane a series goes to (see the module docs).
    #[inline]
    pub fn lane(&self, series_hash: u64, metric: &[u8], lanes: usize) -> usize {
        let h = match self.key {
            KafkaKey::Metric => {
                let mut h = SeriesHasher::new();
                h.write(metric);
                h.finish()
            }
            KafkaKey::Series | KafkaKey::None => series_hash,
        };
        (h % lanes as u64) as usize
    }

    /// Append a record holding a series' native histograms as classic bucket objects
    /// ([`crate::encode::histogram_buckets`]); returns the objects written and the histograms
    /// that did not convert. No record when nothing converted.
    pub fn write_bucket_record<'a, L, E>(
        &self,
        out: &mut Vec<u8>,
        scratch: &mut crate::encode::histogram_buckets::Scratch,
        labels: L,
        extras: E,
    ) -> (usize, usize)
    where
        L: Iterator<Item = (&'a [u8], &'a [u8])> + Clone,
        E: Iterator<Item = &'a [u8]> + Clone,
    {
        let start = out.len();
        // The header as for samples, with no samples; the body is filled in below.
        self.write_record(out, labels.clone(), &[], std::iter::empty());
        let body = out.len();
        let (mut written, mut failed) = (0usize, 0usize);
        for h in extras.filter(|e| e.first() == Some(&0x22)) {
            let joins = Joins {
                first: if written == 0 { b"" } else { b"," },
                between: b",",
                after: b"",
            };
            match write_buckets(out, scratch, labels.clone(), h, joins) {
                Ok(k) => written += k,
                Err(_) => failed += 1,
            }
        }
        if written == 0 {
            out.truncate(start);
            return (0, failed);
        }
        // Patch the header's sample count and body length (the last 8 bytes before it).
        let len = (out.len() - body) as u32;
        out[body - 4..body].copy_from_slice(&len.to_le_bytes());
        out[body - 8..body - 4].copy_from_slice(&(written as u32).to_le_bytes());
        (written, failed)
    }

    /// Append one series' record. `labels` are the delivered (merged) labels. Returns the
    /// number of samples the record carries.
    pub fn write_record<'a, L, E>(
        &self,
        out: &mut Vec<u8>,
        labels: L,
        samples: &[Sample],
        extras: E,
    ) -> usize
    where
        L: Iterator<Item = (&'a [u8], &'a [u8])> + Clone,
        E: Iterator<Item = &'a [u8]> + Clone,
    {
        self.write_record_with(out, labels.clone(), samples.len(), |out| {
            match self.format {
                KafkaFormat::Json => json::write_samples(out, labels, samples),
                KafkaFormat::RemoteWrite => {
                    remote_write::encode_series(out, labels, samples, extras)
                }
            }
        })
    }

    /// Append a record: its header (topic and key from `labels`, `samples`), then the body
    /// that `body` writes, whose length is filled in after. Returns `samples`.
    fn write_record_with<'a, L>(
        &self,
        out: &mut Vec<u8>,
        labels: L,
        samples: usize,
        body: impl FnOnce(&mut Vec<u8>),
    ) -> usize
    where
        L: Iterator<Item = (&'a [u8], &'a [u8])> + Clone,
    {
        // Topic.
        let at = out.len();
        out.extend_from_slice(&[0, 0]);
        if let Some(parts) = &self.topic {
            for part in parts {
                match part {
                    TopicPart::Text(t) => out.extend_from_slice(t.as_bytes()),
                    TopicPart::Label(name) => {
                        let v = labels
                            .clone()
                            .find(|(n, _)| *n == name.as_bytes())
                            .map_or(&b""[..], |(_, v)| v);
                        // Kafka allows only [a-zA-Z0-9._-] in topic names.
                        out.extend(v.iter().map(|&b| {
                            if b.is_ascii_alphanumeric() || b"._-".contains(&b) {
                                b
                            } else {
                                b'_'
                            }
                        }));
                    }
                }
            }
            let len = (out.len() - at - 2).min(MAX_TOPIC);
            out.truncate(at + 2 + len);
            out[at..at + 2].copy_from_slice(&(len as u16).to_le_bytes());
        }
        // Key.
        let at = out.len();
        out.extend_from_slice(&[0, 0]);
        if self.key == KafkaKey::Metric {
            let name = labels
                .clone()
                .find(|(n, _)| *n == b"__name__")
                .map_or(&b""[..], |(_, v)| v);
            let name = &name[..name.len().min(u16::MAX as usize)];
            out.extend_from_slice(name);
            out[at..at + 2].copy_from_slice(&(name.len() as u16).to_le_bytes());
        }
        // Sample count, then the body.
        let count_at = out.len();
        out.extend_from_slice(&[0; 4]);
        let at = out.len();
        out.extend_from_slice(&[0; 4]);
        body(out);
        let len = (out.len() - at - 4) as u32;
        out[at..at + 4].copy_from_slice(&len.to_le_bytes());
        out[count_at..count_at + 4].copy_from_slice(&(samples as u32).to_le_bytes());
        samples
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::SeriesBatch;
    use crate::encode::remote_write::SpliceLabels;
    use crate::proto::{Histogram, Label};
    use crate::relabel::{LabelSet, merge};
    use crate::targets::kafka::{KafkaCompression, parse_topic};
    use crate::targets::queue::Chunk;
    use crate::tools::workload::WorkloadSpec;
    use prost::Message;

    /// `format: remote_write` records carry each series spliced from its received bytes when
    /// the decoder marked it copyable, and those records are byte for byte the ones encoding
    /// the merged labels writes (the pipeline offers the encoded labels; without them every
    /// series is encoded).
    #[test]
    fn remote_write_records_splice_what_encoding_writes() {
        let mut req = WorkloadSpec {
            series: 100,
            samples_per_series: 2,
            ..Default::default()
        }
        .request(2);
        req.timeseries[1].histograms.push(Histogram {
            count_int: 4,
            sum: 2.5,
            schema: 1,
            timestamp: 9,
        });
        req.timeseries[2].labels.swap(1, 2); // unsorted: encoded, not spliced
        req.timeseries[3].labels.push(Label::new("zz_empty", ""));
        let body = req.encode_to_vec();
        let mut batch = SeriesBatch::new();
        batch.decode_protobuf(&body).unwrap();
        assert_eq!(batch.iter().filter(|s| s.splice().is_some()).count(), 98);
        let cfg = KafkaConfig {
            topic: parse_topic("rw.{job}").unwrap(),
            key: KafkaKey::Metric,
            format: KafkaFormat::RemoteWrite,
            histograms: Default::default(),
            compression: KafkaCompression::Snappy,
            max_message_bytes: 1 << 20,
            client: vec![],
        };
        let layout = KafkaLayout::new(&cfg);
        type Labels<'a> = &'a [(&'a str, &'a str)];
        let sets: &[(Labels, Labels)] = &[
            (&[], &[]),
            (
                &[("deliver_test_key1", "ssss")],
                &[("source_cluster", "c1")],
            ),
            (&[("job", "")], &[("instance", "ignored"), ("zone", "")]),
            (&[("AAA", "first"), ("job", "t")], &[("zzz", "last")]),
        ];
        for (task, ext) in sets {
            let task = LabelSet::new(task.iter().copied()).unwrap();
            let ext = LabelSet::new(ext.iter().copied()).unwrap();
            let statics = SpliceLabels::new(&task, &ext);
            let output = || Output {
                lanes: (0..3).map(|_| Chunk::default()).collect(),
                ..Output::default()
            };
            let (mut spliced, mut encoded) = (output(), output());
            for s in batch.iter() {
                let labels = merge(s.buf(), s.label_refs(), &task, &ext);
                layout.write_series(&mut spliced, &s, labels.clone().with_splice(&statics));
                layout.write_series(&mut encoded, &s, labels);
            }
            assert_eq!(spliced.samples, 201, "{task:?} {ext:?}");
            assert_eq!(spliced.samples, encoded.samples);
            for (a, b) in spliced.lanes.iter().zip(&encoded.lanes) {
                assert_eq!(a.bytes, b.bytes, "task {task:?}, external {ext:?}");
                assert_eq!(a.series, b.series);
            }
        }
    }
}
