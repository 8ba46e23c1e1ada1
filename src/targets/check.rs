//! What `promrelay verify` reports per target: one [`Check`] per probe, ✓, ✗ or skipped, with
//! the fix in the words of the delivery FAQ. Each kind's folder has its own `verify.rs` that
//! probes the way that kind delivers; [`super::TargetKind::verify`] dispatches to it.

use serde::Serialize;

/// How a probe ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    Failed,
    /// Not run, and `detail` says why (an earlier check failed, or it does not apply).
    Skipped,
}

/// One probe of a target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What was checked (`connect`, `tls`, `remote_write receiver`, …).
    pub check: &'static str,
    pub outcome: Outcome,
    /// What was seen.
    pub detail: String,
    /// What to do, for a failed check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Check {
    pub fn ok(check: &'static str, detail: impl Into<String>) -> Check {
        Check {
            check,
            outcome: Outcome::Ok,
            detail: detail.into(),
            hint: None,
        }
    }

    pub fn failed(
        check: &'static str,
        detail: impl Into<String>,
        hint: impl Into<String>,
    ) -> Check {
        Check {
            check,
            outcome: Outcome::Failed,
            detail: detail.into(),
            hint: Some(hint.into()),
        }
    }

    pub fn skipped(check: &'static str, why: impl Into<String>) -> Check {
        Check {
            check,
            outcome: Outcome::Skipped,
            detail: why.into(),
            hint: None,
        }
    }

    /// `✓ check: detail`, `✗ check: detail — fix: hint`, `- check: skipped: detail`.
    pub fn line(&self) -> String {
        match self.outcome {
            Outcome::Ok => format!("✓ {}: {}", self.check, self.detail),
            Outcome::Failed => match &self.hint {
                Some(h) => format!("✗ {}: {} — fix: {h}", self.check, self.detail),
                None => format!("✗ {}: {}", self.check, self.detail),
            },
            Outcome::Skipped => format!("- {}: skipped: {}", self.check, self.detail),
        }
    }
}
