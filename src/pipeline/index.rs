//! The task index: which tasks of a source a series can match, by its metric name.

use super::TaskRuntime;
use std::collections::HashMap;

/// From this many tasks on a source, series meet only the tasks their name can match.
pub(super) const INDEX_FROM: usize = 4;

/// The tasks of a source by the metric names their filters list literally (`__name__=a|b`):
/// a series meets the tasks listed under its name and those whose filter may keep any name.
/// Built once per pipeline; a lookup per series replaces a filter run per task.
///
/// The map hashes with foldhash, not std's SipHash: a name is hashed once per series (SipHash
/// was 8 % of a 10-task pipeline's time). Its seed is random per process, and the keys are
/// the configured names only, so a sender cannot grow the map or aim at its collisions.
pub(super) struct TaskIndex {
    by_name: HashMap<Box<[u8]>, Vec<u32>, foldhash::fast::RandomState>,
    always: Vec<u32>,
}

impl TaskIndex {
    pub(super) fn new(tasks: &[TaskRuntime]) -> TaskIndex {
        let mut by_name = HashMap::<_, Vec<u32>, _>::default();
        let mut always = Vec::new();
        for (i, t) in tasks.iter().enumerate() {
            match t.filter.metric_names() {
                Some(names) => {
                    for n in names {
                        by_name.entry(n.into()).or_default().push(i as u32);
                    }
                }
                None => always.push(i as u32),
            }
        }
        TaskIndex { by_name, always }
    }

    /// The tasks a series named `name` can match (those for any name first).
    #[inline]
    pub(super) fn candidates<'a>(&'a self, name: &[u8]) -> impl Iterator<Item = u32> + 'a {
        let named = self.by_name.get(name).map_or(&[][..], Vec::as_slice);
        self.always.iter().chain(named).copied()
    }
}
