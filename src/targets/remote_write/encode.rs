//! How a remote_write target takes one series: its `timeseries` field, written by
//! [`crate::encode::remote_write`] into the lane its label hash picks. A lane's chunks appended
//! back to back are already a `WriteRequest` body.

use crate::batch::SeriesView;
use crate::encode::remote_write::encode_series;
use crate::relabel::MergedLabels;
use crate::targets::Output;

use super::RemoteWriteConfig;

/// The remote_write encoder: stateless, the lane is the series hash's.
#[derive(Debug, Clone, Copy)]
pub struct RemoteWriteEncoder;

impl RemoteWriteConfig {
    pub fn encoder(&self) -> RemoteWriteEncoder {
        RemoteWriteEncoder
    }
}

impl RemoteWriteEncoder {
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
        let lane = (series.hash() % out.lanes.len() as u64) as usize;
        let chunk = &mut out.lanes[lane];
        encode_series(&mut chunk.bytes, labels, samples, series.extras());
        chunk.end_series(carried);
        out.samples += carried;
    }
}
