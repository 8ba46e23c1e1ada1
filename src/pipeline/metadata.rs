//! Metadata through the tasks: once per request and task, never per series.
//!
//! Metadata names a metric family, not a series, so a task's series filter does not apply to
//! it, except its `__name__` conditions: a task that keeps only some metric names forwards only
//! the metadata of those families ([`crate::filter::Filter::keeps_family`]). Task and target
//! labels do not apply either (metadata has no labels). Each target's kind decides what it
//! can carry ([`crate::targets::Encoder::write_metadata`]).

use super::{TargetScratch, TaskRuntime};
use crate::batch::SeriesBatch;
use crate::decode::Protocol;
use crate::targets::Target;
use std::sync::Arc;

/// Write the request's metadata that `task` keeps for each of its targets.
pub(super) fn forward(
    task: &TaskRuntime,
    batch: &SeriesBatch,
    protocol: Protocol,
    targets: &[Arc<Target>],
    outs: &mut [TargetScratch],
    touched: &mut Vec<usize>,
) {
    let buf = batch.bytes_with_tail();
    let kept = batch
        .metadata()
        .iter()
        .filter(|m| task.filter.keeps_family(&buf[m.family.range()]));
    if kept.clone().next().is_none() {
        return;
    }
    for tt in &task.targets {
        let ti = tt.index;
        let out = TargetScratch::touch(outs, touched, ti);
        targets[ti]
            .encoder
            .write_metadata(out, buf, kept.clone(), protocol == Protocol::V2);
    }
}
