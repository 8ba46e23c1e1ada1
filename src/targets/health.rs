//! How a target's sends have been going, for status (the admin API, the status page): its
//! state (`healthy`, `retrying`, `down`, `refusing`) and last error. Updated once per send
//! attempt, never per sample.

use std::time::Duration;

/// How a target's sends have been going: updated once per send attempt by its lanes, read by
/// the admin API and status page.
#[derive(Default)]
pub struct Health(std::sync::Mutex<HealthState>);

#[derive(Debug, Clone, Default)]
pub struct HealthState {
    /// Failed attempts in a row (any lane), 0 after a delivery.
    pub failures: u32,
    /// When the current run of failures began.
    pub failing_since: Option<std::time::SystemTime>,
    /// The last error, and when.
    pub last_error: Option<(String, std::time::SystemTime)>,
    /// The last batch was refused for good (a 4xx, a permanent Kafka error).
    pub refusing: bool,
    pub last_delivery: Option<std::time::SystemTime>,
}

/// A target's state as status shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetState {
    Healthy,
    /// Failing, for less than `DOWN_AFTER` and fewer than `DOWN_FAILURES` tries.
    Retrying,
    Down,
    /// Its last batch was refused for good.
    Refusing,
}

/// A target failing this long, or this many times in a row, is `down`.
pub const DOWN_AFTER: Duration = Duration::from_secs(30);
pub const DOWN_FAILURES: u32 = 5;

impl TargetState {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetState::Healthy => "healthy",
            TargetState::Retrying => "retrying",
            TargetState::Down => "down",
            TargetState::Refusing => "refusing",
        }
    }
}

impl Health {
    fn lock(&self) -> std::sync::MutexGuard<'_, HealthState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn delivered(&self) {
        let mut h = self.lock();
        h.failures = 0;
        h.failing_since = None;
        h.refusing = false;
        h.last_delivery = Some(std::time::SystemTime::now());
    }

    pub fn failed(&self, why: &str) {
        let now = std::time::SystemTime::now();
        let mut h = self.lock();
        if h.failures == 0 {
            h.failing_since = Some(now);
        }
        h.failures = h.failures.saturating_add(1);
        h.last_error = Some((why.to_owned(), now));
    }

    pub fn refused(&self, why: &str) {
        let mut h = self.lock();
        h.refusing = true;
        h.last_error = Some((why.to_owned(), std::time::SystemTime::now()));
    }

    pub fn snapshot(&self) -> HealthState {
        self.lock().clone()
    }

    /// The state now (see [`TargetState`]).
    pub fn state(&self) -> TargetState {
        let h = self.lock();
        if h.refusing {
            return TargetState::Refusing;
        }
        if h.failures == 0 {
            return TargetState::Healthy;
        }
        let long = h
            .failing_since
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|d| d >= DOWN_AFTER);
        if long || h.failures >= DOWN_FAILURES {
            TargetState::Down
        } else {
            TargetState::Retrying
        }
    }
}
