//! `promrelay verify` and `POST /api/v1/tasks/{name}/verify`: probe every target of a task the
//! way it delivers (each kind's `verify.rs`, through [`crate::targets::TargetKind::verify`]),
//! and report one line per check, ✓ or ✗ with the fix.

use crate::config::TaskConfig;
use crate::targets::check::{Check, Outcome};
use serde::Serialize;

/// One target's checks.
#[derive(Debug, Clone, Serialize)]
pub struct TargetReport {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// No check failed.
    pub ok: bool,
    pub checks: Vec<Check>,
}

/// One task's targets.
#[derive(Debug, Clone, Serialize)]
pub struct TaskReport {
    pub task: String,
    /// No check of any target failed.
    pub ok: bool,
    /// When the probes ended, seconds since the epoch.
    pub time: f64,
    pub targets: Vec<TargetReport>,
}

/// Probe every target of `task`, all at once. `produce_test`: Kafka targets produce one
/// empty-array message.
pub async fn verify_task(task: &TaskConfig, produce_test: bool) -> TaskReport {
    let mut set = tokio::task::JoinSet::new();
    for (i, t) in task.targets.iter().enumerate() {
        let (name, kind) = (t.name.clone(), t.kind.clone());
        set.spawn(async move {
            let checks = kind.verify(produce_test).await;
            let report = TargetReport {
                name,
                kind: kind.type_name(),
                ok: checks.iter().all(|c| c.outcome != Outcome::Failed),
                checks,
            };
            (i, report)
        });
    }
    let mut targets = Vec::new();
    while let Some(joined) = set.join_next().await {
        if let Ok(r) = joined {
            targets.push(r);
        }
    }
    targets.sort_by_key(|(i, _)| *i);
    let targets: Vec<TargetReport> = targets.into_iter().map(|(_, r)| r).collect();
    TaskReport {
        task: task.name.clone(),
        ok: targets.iter().all(|t| t.ok),
        time: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64()),
        targets,
    }
}

/// The reports as `promrelay verify` prints them: per task, per target, one line per check.
pub fn render_text(reports: &[TaskReport]) -> String {
    let mut out = String::new();
    for task in reports {
        out.push_str(&format!(
            "task {} {}\n",
            task.task,
            if task.ok { "✓" } else { "✗" }
        ));
        for t in &task.targets {
            out.push_str(&format!("  target {} ({})\n", t.name, t.kind));
            for c in &t.checks {
                out.push_str(&format!("    {}\n", c.line()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_names_each_target_and_marks_each_check() {
        let r = TaskReport {
            task: "t".into(),
            ok: false,
            time: 0.0,
            targets: vec![TargetReport {
                name: "rw".into(),
                kind: "remote_write",
                ok: false,
                checks: vec![
                    Check::ok("connect", "up"),
                    Check::failed("remote_write receiver", "404", "enable it"),
                    Check::skipped("prometheus version", "why"),
                ],
            }],
        };
        assert_eq!(
            render_text(&[r]),
            "task t ✗\n  target rw (remote_write)\n    ✓ connect: up\n    \
             ✗ remote_write receiver: 404 — fix: enable it\n    - prometheus version: skipped: why\n"
        );
    }
}
