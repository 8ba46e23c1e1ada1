//! How a file target takes one series: one JSON sample object per line
//! ([`crate::encode::json_sample`]), all into its single lane so lines keep arrival order.
//! Native histograms have no place in the format: counted as unsupported.

use crate::batch::{MetadataRef, SeriesView};
use crate::encode::json_sample::write_sample;
use crate::relabel::MergedLabels;
use crate::targets::Output;

use super::FileConfig;

/// The file encoder: stateless, one lane.
#[derive(Debug, Clone, Copy)]
pub struct FileEncoder;

impl FileConfig {
    pub fn encoder(&self) -> FileEncoder {
        FileEncoder
    }
}

impl FileEncoder {
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
        out.unsupported += histograms;
        if samples.is_empty() {
            return;
        }
        let chunk = &mut out.lanes[0];
        for s in samples {
            write_sample(&mut chunk.bytes, labels.clone(), s);
            chunk.bytes.push(b'\n');
        }
        chunk.end_series(samples.len());
        out.samples += samples.len();
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
