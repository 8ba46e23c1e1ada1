//! The arena-backed sample batch: the one type every stage speaks.
//!
//! A [`SeriesBatch`] owns the decompressed request bytes and describes them with flat vectors
//! of small `Copy` records: label names and values are byte ranges ([`Span`]) into that buffer,
//! never owned strings. Decoding a request therefore allocates nothing per label or per sample
//! once the vectors have grown to the size of a typical request; [`SeriesBatch::clear`] keeps
//! their capacity for the next request.
//!
//! Invariants that [`crate::decode`] establishes and every reader relies on:
//! - every span lies inside `buf` and is valid UTF-8;
//! - each series' labels are sorted by name, names are non-empty and unique;
//! - [`SeriesView::hash`] is a function of the sorted label set alone (computed at decode, or
//!   on demand from the label region: see `SeriesRef::hash_region`).

use std::ops::Range;

/// A byte range into [`SeriesBatch::bytes_with_tail`]. `u32` keeps the records small; the decoder refuses
/// bodies whose decoded size does not fit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    #[inline]
    pub fn range(self) -> Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// One label of one series.
#[derive(Clone, Copy, Debug, Default)]
pub struct LabelRef {
    pub name: Span,
    pub value: Span,
}

/// One sample: the remote-write `Sample` message.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Sample {
    pub value: f64,
    pub timestamp: i64,
}

/// One metadata entry (a metric family's type, help and unit): the 1.0 `MetricMetadata`
/// message, or a 2.0 series' `metadata` with its refs resolved. Text fields are spans into
/// [`SeriesBatch::bytes_with_tail`] (empty spans for absent fields).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MetadataRef {
    /// The metric family name (1.0: `metric_family_name`; 2.0: the series' `__name__`, with
    /// a histogram's or summary's `_bucket`/`_sum`/`_count` suffix removed).
    pub family: Span,
    /// The `MetricType` number (the same numbers in 1.0 and 2.0: 0 unknown, 1 counter,
    /// 2 gauge, 3 histogram, 4 gauge histogram, 5 summary, 6 info, 7 stateset).
    pub kind: u32,
    pub help: Span,
    pub unit: Span,
}

/// One series: ranges into the batch's label, sample and extra-field vectors.
#[derive(Clone, Copy, Debug, Default)]
pub struct SeriesRef {
    pub labels: (u32, u32),
    pub samples: (u32, u32),
    /// Raw encoded exemplar and histogram fields (tag, length and payload), passed through
    /// verbatim to protobuf targets.
    pub extras: (u32, u32),
    /// How many of the extras are native histograms (each counts as one sample).
    pub histograms: u32,
    /// Remote-write 2.0 only: the series' metadata, as an index + 1 into
    /// [`SeriesBatch::metadata`] (0: none). Fits in the padding after `histograms`.
    pub metadata: u32,
    /// Hash of the sorted label set; picks the send shard so one series stays in order.
    /// Unused while `hash_region` is non-empty: use [`SeriesView::hash`].
    pub hash: u64,
    /// Non-empty when the series took the decoder's one-pass path (label fields in their
    /// canonical encoding, sorted, ASCII, within the limits): the hash is then that of these
    /// bytes, computed later (a series no task keeps is never hashed; hashing was 40 % of the
    /// label check): by `SeriesBatch::resolve_hashes` for the series a task delivers, which
    /// keeps it in `hash` and empties this, or else by [`SeriesView::hash`] when asked. Any
    /// other series is hashed at decode.
    pub hash_region: Span,
    /// When the series can be spliced (see [`Splice`]): its bytes as received.
    pub splice: Option<Splice>,
}

/// Where a 1.0 series sits in the decoded body, for a remote-write target to copy its bytes
/// instead of encoding it again. Only set when copying gives the same message as encoding:
/// the labels arrived sorted, unique and non-empty, each in the canonical
/// `0x0a len 0x0a n name 0x12 m value` shape (so label `i`'s field starts 4 bytes before its
/// name and ends with its value), back to back at the start of the series.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Splice {
    /// The whole `timeseries` field: tag, length and content.
    pub field: Span,
    /// Where the label fields end and the rest (samples, exemplars, histograms, any unknown
    /// field) begins, up to `field.end`.
    pub tail: u32,
}

/// A decoded remote-write request. See the module docs for the invariants.
#[derive(Debug, Default)]
pub struct SeriesBatch {
    /// Decoded bytes are `buf[..len]`. The buffer keeps its length between requests so the
    /// next decompression needs no zero-fill (only growth is initialised).
    pub(crate) buf: Vec<u8>,
    pub(crate) len: usize,
    pub(crate) labels: Vec<LabelRef>,
    pub(crate) series: Vec<SeriesRef>,
    pub(crate) samples: Vec<Sample>,
    pub(crate) extras: Vec<Span>,
    /// Metadata entries of the request, one per metric family and version-independent (see
    /// [`MetadataRef`]); a 2.0 series points at its entry through [`SeriesRef::metadata`].
    pub(crate) metadata: Vec<MetadataRef>,
    /// Metadata the request carried as the sender counts it (1.0: `MetricMetadata`
    /// messages; 2.0: series with a `metadata` field).
    pub(crate) metadata_received: usize,
    /// Exemplars the request carried (each passed on in `extras`).
    pub(crate) exemplars: usize,
    /// Remote-write 2.0 only: the request's symbol table, each symbol a span into `buf`.
    /// Label spans of a 2.0 series are copies of these spans, so a 2.0 batch reads exactly
    /// like a 1.0 one.
    pub(crate) symbols: Vec<Span>,
    /// Remote-write 2.0 only: exemplar payloads of the series being decoded, converted to
    /// 1.0 exemplars once the series is walked.
    pub(crate) pending_exemplars: Vec<Span>,
    /// Remote-write 2.0 only: scratch for one exemplar's label refs.
    pub(crate) exemplar_refs: Vec<u32>,
    /// Remote-write 2.0 only: end of the bytes in use in `buf`. Past `len` sit exemplars
    /// rewritten in the 1.0 layout (a 2.0 exemplar names its labels by symbol refs, which no
    /// 1.0 reader understands); their `extras` spans point there.
    pub(crate) tail: usize,
    /// Remote-write 2.0 only: float samples' non-zero `start_timestamp`s, as (index into
    /// `samples`, start timestamp), in sample order. Empty for almost every request.
    pub(crate) start_timestamps: Vec<(u32, i64)>,
    /// Remote-write 2.0 only: native histograms with a `start_timestamp` (field 17, kept in
    /// their raw bytes).
    pub(crate) histogram_start_timestamps: usize,
    /// Limits of the decode in progress.
    pub(crate) limits: crate::decode::DecodeLimits,
    /// Scratch for the canonical encoding of a label set that did not arrive in it (hashed).
    pub(crate) hash_scratch: Vec<u8>,
}

impl SeriesBatch {
    pub fn new() -> Self {
        Self::default()
    }

    /// Forget the contents, keep every allocation for the next request.
    pub fn clear(&mut self) {
        self.len = 0;
        self.labels.clear();
        self.series.clear();
        self.samples.clear();
        self.extras.clear();
        self.metadata.clear();
        self.metadata_received = 0;
        self.exemplars = 0;
        self.symbols.clear();
        self.start_timestamps.clear();
        self.histogram_start_timestamps = 0;
        self.pending_exemplars.clear();
        self.tail = 0;
    }

    /// Give memory back after an unusually large request: keep at most `retain` bytes of
    /// decode buffer (and index vectors in proportion), so one huge request does not pin its
    /// size in every pipeline shard for good.
    pub fn trim(&mut self, retain: usize) {
        if self.buf.capacity() > retain {
            self.buf = Vec::new();
        }
        // An index entry per ~16 decoded bytes is already a dense body.
        let entries = retain / 16;
        if self.labels.capacity() > entries {
            self.labels = Vec::new();
        }
        if self.samples.capacity() > entries {
            self.samples = Vec::new();
        }
        if self.series.capacity() > entries {
            self.series = Vec::new();
        }
        if self.symbols.capacity() > entries {
            self.symbols = Vec::new();
        }
        if self.metadata.capacity() > entries {
            self.metadata = Vec::new();
        }
        if self.start_timestamps.capacity() > entries {
            self.start_timestamps = Vec::new();
        }
    }

    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Number of float samples in the batch.
    pub fn sample_count(&self) -> usize {
        self.samples.len()
    }

    /// Number of native histogram samples in the batch.
    pub fn histogram_count(&self) -> usize {
        self.series.iter().map(|s| s.histograms as usize).sum()
    }

    /// Number of metadata entries the request carried (1.0: `MetricMetadata` messages; 2.0:
    /// series with a `metadata` field).
    pub fn metadata_count(&self) -> usize {
        self.metadata_received
    }

    /// The request's metadata, one entry per metric family (consecutive 2.0 series of one
    /// family share one entry).
    pub fn metadata(&self) -> &[MetadataRef] {
        &self.metadata
    }

    /// Number of exemplars the request carried.
    pub fn exemplar_count(&self) -> usize {
        self.exemplars
    }

    /// The decompressed request bytes every span points into.
    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// The whole buffer spans may point into (2.0 exemplars are rewritten past the decoded
    /// bytes).
    pub fn bytes_with_tail(&self) -> &[u8] {
        &self.buf
    }

    pub fn series(&self, i: usize) -> SeriesView<'_> {
        SeriesView {
            batch: self,
            series: &self.series[i],
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = SeriesView<'_>> + '_ {
        self.series.iter().map(move |series| SeriesView {
            batch: self,
            series,
        })
    }
}

/// A borrowed view of one series in a batch.
#[derive(Clone, Copy)]
pub struct SeriesView<'a> {
    batch: &'a SeriesBatch,
    series: &'a SeriesRef,
}

impl<'a> SeriesView<'a> {
    #[inline]
    pub fn label_refs(&self) -> &'a [LabelRef] {
        let (a, b) = self.series.labels;
        &self.batch.labels[a as usize..b as usize]
    }

    /// The request buffer the label spans point into.
    #[inline]
    pub fn buf(&self) -> &'a [u8] {
        &self.batch.buf
    }

    /// Labels as `(name, value)` byte slices, sorted by name.
    pub fn labels(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + Clone + 'a {
        let buf: &'a [u8] = &self.batch.buf;
        self.label_refs()
            .iter()
            .map(move |l| (&buf[l.name.range()], &buf[l.value.range()]))
    }

    /// The value of label `name`, or `None` when the series lacks it.
    ///
    /// The labels are sorted, so the walk stops at the first name past `name`. First bytes
    /// settle the order of two names almost always; only names that share theirs are compared
    /// further, equal lengths word by word (every filter looks up `__name__`, whose 8 bytes a
    /// byte loop compared one at a time).
    #[inline]
    pub fn label(&self, name: &[u8]) -> Option<&'a [u8]> {
        use std::cmp::Ordering;
        let buf = &self.batch.buf;
        let first = name.first();
        for l in self.label_refs() {
            let n = &buf[l.name.range()];
            match n.first().cmp(&first) {
                Ordering::Less => continue,
                Ordering::Greater => return None,
                Ordering::Equal => {}
            }
            if n.len() == name.len() && same_bytes(n, name) {
                return Some(&buf[l.value.range()]);
            }
            if crate::decode::cmp_bytes(n, name) == Ordering::Greater {
                return None;
            }
        }
        None
    }

    #[inline]
    pub fn samples(&self) -> &'a [Sample] {
        let (a, b) = self.series.samples;
        &self.batch.samples[a as usize..b as usize]
    }

    /// The newest float sample timestamp (ms since the epoch), `i64::MIN` without samples.
    #[inline]
    pub fn newest_timestamp_ms(&self) -> i64 {
        self.samples()
            .iter()
            .fold(i64::MIN, |m, s| m.max(s.timestamp))
    }

    /// Raw encoded exemplar/histogram fields of this series, each a complete protobuf field.
    pub fn extras(&self) -> impl Iterator<Item = &'a [u8]> + Clone + 'a {
        let (a, b) = self.series.extras;
        let buf: &'a [u8] = &self.batch.buf;
        self.batch.extras[a as usize..b as usize]
            .iter()
            .map(move |s| &buf[s.range()])
    }

    #[inline]
    pub fn histogram_count(&self) -> u32 {
        self.series.histograms
    }

    /// The float samples' non-zero start timestamps (remote-write 2.0), as (index among
    /// [`SeriesView::samples`], start timestamp). Empty (one length check) for 1.0.
    #[inline]
    pub fn start_timestamps(&self) -> impl Iterator<Item = (usize, i64)> + 'a {
        let all = &self.batch.start_timestamps[..];
        let (a, b) = self.series.samples;
        let (lo, hi) = if all.is_empty() {
            (0, 0)
        } else {
            (
                all.partition_point(|&(i, _)| i < a),
                all.partition_point(|&(i, _)| i < b),
            )
        };
        all[lo..hi].iter().map(move |&(i, t)| ((i - a) as usize, t))
    }

    /// Might a native histogram of this series carry a start timestamp? (Only when some
    /// histogram of the request does.)
    #[inline]
    pub fn may_have_histogram_start_timestamps(&self) -> bool {
        self.batch.histogram_start_timestamps > 0 && self.series.histograms > 0
    }

    /// The series' own metadata (remote-write 2.0 senders attach it per series).
    #[inline]
    pub fn metadata(&self) -> Option<&'a MetadataRef> {
        match self.series.metadata {
            0 => None,
            i => self.batch.metadata.get(i as usize - 1),
        }
    }

    /// The hash of the sorted label set (see [`SeriesRef::hash_region`]).
    #[inline]
    pub fn hash(&self) -> u64 {
        let r = self.series.hash_region;
        if r.start == r.end {
            self.series.hash
        } else {
            crate::decode::label_set_hash(&self.batch.buf[r.range()])
        }
    }

    /// The series' bytes as received, when they can be copied out unchanged.
    #[inline]
    pub fn splice(&self) -> Option<Splice> {
        self.series.splice
    }
}

/// `a == b` for slices of one length, 8 bytes at a time, inlined (label names are short: a
/// call to `bcmp` costs more than the comparison).
#[inline(always)]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let (mut wa, mut wb) = (a.chunks_exact(8), b.chunks_exact(8));
    for (x, y) in (&mut wa).zip(&mut wb) {
        if x.first_chunk::<8>() != y.first_chunk::<8>() {
            return false;
        }
    }
    wa.remainder()
        .iter()
        .zip(wb.remainder())
        .all(|(x, y)| x == y)
}
