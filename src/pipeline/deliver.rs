//! Delivering what matched: a series to each of its task's targets, and the matched (series,
//! task) pairs of a request a group at a time, their series hashed four at a time first.

use super::{TargetScratch, TaskRuntime};
use crate::batch::{SeriesBatch, SeriesView};
use crate::relabel::merge;
use crate::targets::Target;
use std::sync::Arc;

/// Write a series that matched `task` for each of its targets; returns the samples it carries.
#[inline]
pub(super) fn deliver(
    task: &TaskRuntime,
    series: &SeriesView<'_>,
    targets: &[Arc<Target>],
    outs: &mut [TargetScratch],
    touched: &mut Vec<usize>,
) -> usize {
    let newest = series.newest_timestamp_ms();
    for tt in &task.targets {
        let ti = tt.index;
        let out = TargetScratch::touch(outs, touched, ti);
        let labels = merge(
            series.buf(),
            series.label_refs(),
            &task.labels,
            &tt.external_labels,
        )
        .with_splice(&tt.splice);
        targets[ti].encoder.write_series(out, series, labels);
        out.newest_timestamp_ms = out.newest_timestamp_ms.max(newest);
    }
    series.samples().len() + series.histogram_count() as usize
}

/// Matched pairs a group holds before it is delivered: small enough that a group's series are
/// still in cache when they are written out, large enough that the hashing runs four wide.
/// (Through the task index a group can go past it by the candidates of one series: the
/// pipeline checks after each series.)
pub(super) const GROUP_PAIRS: usize = 256;

/// The (series, task) pairs of a request that matched and are not yet delivered, with what
/// delivering them needs.
pub(super) struct Group<'a> {
    pub(super) tasks: &'a [TaskRuntime],
    pub(super) targets: &'a [Arc<Target>],
    /// (series index, task index), in the order they are delivered.
    pub(super) pairs: &'a mut Vec<(u32, u32)>,
    /// Samples delivered per task.
    pub(super) matched: &'a mut [usize],
}

impl Group<'_> {
    /// Deliver the pairs held and empty the group. The series hash (a chain of dependent
    /// multiplies over the label bytes, which a remote-write or Kafka target asks for to pick
    /// a lane) is computed first for the group's series, four at a time
    /// ([`SeriesBatch::resolve_hashes`]): one series at a time it was most of the cost of
    /// delivering a series.
    pub(super) fn deliver(
        &mut self,
        batch: &mut SeriesBatch,
        outs: &mut [TargetScratch],
        touched: &mut Vec<usize>,
    ) {
        let tasks = self.tasks;
        batch.resolve_hashes(
            self.pairs
                .iter()
                .filter(|&&(_, ti)| tasks[ti as usize].uses_series_hash)
                .map(|&(i, _)| i),
        );
        for &(i, ti) in self.pairs.iter() {
            let task = &tasks[ti as usize];
            self.matched[ti as usize] +=
                deliver(task, &batch.series(i as usize), self.targets, outs, touched);
        }
        self.pairs.clear();
    }
}
