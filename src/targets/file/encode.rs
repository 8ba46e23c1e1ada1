//! How a file target takes one series: one JSON sample object per line
//! ([`crate::encode::json_sample`]), all into its single lane so lines keep arrival order.
//! Native histograms have no place in the format: counted as unsupported, or written as
//! classic bucket objects with `histograms: buckets` ([`crate::encode::histogram_buckets`]).

use crate::batch::{MetadataRef, SeriesView};
use crate::encode::histogram_buckets::{HistogramMode, Joins, write_buckets};
use crate::encode::json_sample::write_sample;
use crate::encode::start_timestamp;
use crate::relabel::MergedLabels;
use crate::targets::Output;

use super::FileConfig;

/// The file encoder: one lane.
#[derive(Debug, Clone, Copy)]
pub struct FileEncoder {
    histograms: HistogramMode,
}

impl FileConfig {
    pub fn encoder(&self) -> FileEncoder {
        FileEncoder {
            histograms: self.histograms,
        }
    }
}

impl FileEncoder {
    /// One file, one lane: no hash.
    pub fn uses_series_hash(&self, _lanes: usize) -> bool {
        false
    }

    /// JSON lines, never a request's own bytes.
    pub fn passes_requests_through(&self) -> bool {
        false
    }

    /// Write one series (its delivered `labels`): a line per sample.
    #[inline]
    pub fn write_series(
        &self,
        out: &mut Output,
        series: &SeriesView<'_>,
        labels: MergedLabels<'_>,
    ) {
        let samples = series.samples();
        let histograms = series.histogram_count() as usize;
        // JSON has no place for 2.0 start timestamps (those of dropped histograms go with them).
        out.start_timestamps_dropped += if self.histograms == HistogramMode::Buckets {
            start_timestamp::count(series)
        } else {
            series.start_timestamps().count()
        };
        let chunk = &mut out.lanes[0];
        let mut n = samples.len();
        for s in samples {
            write_sample(&mut chunk.bytes, labels.clone(), s);
            chunk.bytes.push(b'\n');
        }
        if histograms > 0 {
            if self.histograms == HistogramMode::Buckets {
                // Cold: only with `histograms: buckets`.
                let joins = Joins {
                    first: b"",
                    between: b"",
                    after: b"\n",
                };
                for h in series.extras().filter(|e| e.first() == Some(&0x22)) {
                    match write_buckets(
                        &mut chunk.bytes,
                        &mut out.histogram_scratch,
                        labels.clone(),
                        h,
                        joins,
                    ) {
                        Ok(k) => n += k,
                        Err(_) => out.unsupported += 1,
                    }
                }
            } else {
                out.unsupported += histograms;
            }
        }
        if n == 0 {
            return;
        }
        chunk.end_series(n);
        out.samples += n;
    }

    /// JSON lines have no place for metadata: counted as unsupported.
    pub fn write_metadata<'a>(
        &self,
        out: &mut Output,
        _buf: &[u8],
        entries: impl Iterator<Item = &'a MetadataRef>,
        _per_series: bool,
    ) {
        out.metadata_unsupported += entries.count();
    }
}
