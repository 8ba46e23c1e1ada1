//! `tasks[*]`: name, source, filter, labels, ack policy, and the hand-off of each target to
//! its kind (see [`crate::targets`]).

use super::raw::{Ack, LabelsSpec, Lines, RawTask};
use super::{ConfigError, invalid};
use crate::filter::Filter;
use crate::relabel::LabelSet;
use crate::targets::TargetConfig;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct TaskConfig {
    pub name: String,
    pub description: String,
    pub enabled: bool,
    pub source: String,
    pub filter: Filter,
    pub labels: LabelSet,
    /// When ingest answers: resolved (`spooled` when a target has a spool, else `queued`).
    pub ack: Ack,
    pub targets: Vec<TargetConfig>,
    /// Where it was defined, and as what.
    pub origin: Origin,
}

/// Where a task was defined: its file (the main config, a task file, or a file the admin API
/// wrote), and the task as written there (as JSON: what the API shows and hashes for ETags).
#[derive(Debug, Clone)]
pub struct Origin {
    pub file: PathBuf,
    pub raw: serde_json::Value,
}

/// What checking one task needs to know of the rest of the config.
pub struct TaskContext<'a> {
    pub base: &'a Path,
    /// `FILE: ` for the tasks of a task file (empty for the main file), for messages that
    /// name another place.
    pub prefix: String,
    /// Defined source names.
    pub sources: &'a [String],
    /// Spool directories taken so far, and by which target (`tasks[i].targets[j]`).
    pub spool_dirs: &'a mut HashMap<PathBuf, String>,
    /// Task names taken so far, and where (`tasks[i]`, `FILE: tasks[i]`).
    pub task_names: &'a mut HashMap<String, String>,
}

/// Check `tasks[i]` (`at`).
///
/// # Errors
/// The first problem, named by its field path under `at`.
pub fn validate(
    t: RawTask,
    at: &str,
    origin: Origin,
    cx: &mut TaskContext<'_>,
) -> Result<TaskConfig, ConfigError> {
    if t.name.trim().is_empty() {
        return Err(invalid(format!("{at}.name"), "must not be empty"));
    }
    if let Some(first) = cx
        .task_names
        .insert(t.name.clone(), format!("{}{at}", cx.prefix))
    {
        return Err(invalid(
            format!("{at}.name"),
            format!(
                "task {:?} is defined twice (first at {first}); names are unique across all task files",
                t.name
            ),
        ));
    }
    if !cx.sources.contains(&t.source) {
        return Err(invalid(
            format!("{at}.source"),
            format!(
                "unknown source {:?}; define it under `sources:` (known: {})",
                t.source,
                cx.sources.join(", ")
            ),
        ));
    }
    let filter = match &t.filter {
        None => Filter::default(),
        Some(Lines::Text(text)) => Filter::parse(text.lines())
            .map_err(|(l, e)| invalid(format!("{at}.filter line {}", l + 1), e.to_string()))?,
        Some(Lines::List(list)) => Filter::parse(list.iter().map(String::as_str))
            .map_err(|(l, e)| invalid(format!("{at}.filter[{l}]"), e.to_string()))?,
    };
    let labels = match &t.labels {
        None => Ok(LabelSet::default()),
        Some(LabelsSpec::Text(text)) => LabelSet::parse_lines(text),
        Some(LabelsSpec::Map(map)) => {
            LabelSet::new(map.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        }
    }
    .map_err(|e| invalid(format!("{at}.labels"), e.to_string()))?;
    if t.targets.is_empty() && t.enabled {
        return Err(invalid(
            format!("{at}.targets"),
            "an enabled task needs at least one target",
        ));
    }
    let mut targets: Vec<TargetConfig> = Vec::new();
    let mut target_names = HashSet::new();
    for (j, target) in t.targets.into_iter().enumerate() {
        let tat = format!("{at}.targets[{j}]");
        let target = target.validate(&tat, cx.base)?;
        if target.name.trim().is_empty() {
            return Err(invalid(format!("{tat}.name"), "must not be empty"));
        }
        if !target_names.insert(target.name.clone()) {
            return Err(invalid(
                format!("{tat}.name"),
                format!("target {:?} is defined twice in this task", target.name),
            ));
        }
        if let Some(sp) = &target.spool
            && let Some(other) = cx
                .spool_dirs
                .insert(sp.dir.clone(), format!("{}{tat}", cx.prefix))
        {
            return Err(invalid(
                format!("{tat}.spool.dir"),
                format!(
                    "{} is already the spool of {other}; each target needs its own",
                    sp.dir.display()
                ),
            ));
        }
        targets.push(target);
    }
    let spooled = targets.iter().any(|t| t.spool.is_some());
    let ack = match t.ack {
        None if spooled => Ack::Spooled,
        None => Ack::Queued,
        Some(Ack::Spooled) if !spooled => {
            return Err(invalid(
                format!("{at}.ack"),
                "`spooled` needs a spool on at least one target of the task",
            ));
        }
        Some(a) => a,
    };
    for t in &mut targets {
        // A spool already holds everything on disk; an `ack: delivered` request waits for
        // delivery, so spilling would only turn its push-back into a timeout.
        if t.spool.is_some() || ack == Ack::Delivered {
            t.overflow = None;
        }
    }
    Ok(TaskConfig {
        ack,
        name: t.name,
        description: t.description,
        enabled: t.enabled,
        source: t.source,
        filter,
        labels,
        targets,
        origin,
    })
}
