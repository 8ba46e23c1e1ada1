//! Log setup, in Prometheus' idiom: `--log.level debug|info|warn|error` and
//! `--log.format logfmt|json`, with `RUST_LOG` (an `EnvFilter` directive) as an override when
//! it is set. Logs go to standard error.
//!
//! Colour only when standard error is a terminal: escape codes in a file or a pipe (`promrelay
//! run > relay.log 2>&1`, journald, a container runtime) are noise to whatever reads them.
//!
//! The logfmt line is `ts=… level=… caller=file.rs:line msg="…" key=value …`, as Prometheus and
//! vmagent write it: a value is quoted only when it has to be (empty, spaces, `=`, quotes,
//! control characters). The JSON line is one object per event with the event's fields at the
//! top level beside `timestamp`, `level` and `message`.

use std::fmt::{self, Write as _};
use std::io::IsTerminal;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// `--log.level`: the least severe level written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogLevel {
    Debug,
    #[default]
    Info,
    Warn,
    Error,
}

impl LogLevel {
    fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// `--log.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// `key=value` pairs, one event a line.
    #[default]
    Logfmt,
    /// One JSON object a line.
    Json,
}

/// Install the global logger. `RUST_LOG`, when set and valid, replaces `level`. A second call
/// changes nothing.
pub fn init_logging(level: LogLevel, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level.as_str()));
    let ansi = std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Logfmt => builder
            .with_ansi(ansi)
            .event_format(Logfmt { ansi })
            .try_init(),
        LogFormat::Json => builder
            .with_ansi(false)
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            // Our events carry a `target` field (the delivery target's name); the module path
            // would collide with it under the same key.
            .with_target(false)
            .try_init(),
    };
}

/// The logfmt event formatter (see the module docs).
pub struct Logfmt {
    ansi: bool,
}

impl<S, N> FormatEvent<S, N> for Logfmt
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        w.write_str("ts=")?;
        SystemTime.format_time(&mut w)?;
        let (level, colour) = match *meta.level() {
            Level::ERROR => ("error", "31"),
            Level::WARN => ("warn", "33"),
            Level::INFO => ("info", "32"),
            Level::DEBUG => ("debug", "34"),
            Level::TRACE => ("trace", "35"),
        };
        if self.ansi {
            write!(w, " level=\x1b[{colour}m{level}\x1b[0m")?;
        } else {
            write!(w, " level={level}")?;
        }
        if let (Some(file), Some(line)) = (meta.file(), meta.line()) {
            let file = file.rsplit('/').next().unwrap_or(file);
            write!(w, " caller={file}:{line}")?;
        }
        let mut fields = LogfmtFields::default();
        event.record(&mut fields);
        w.write_str(" msg=")?;
        write_value(&mut w, &fields.message)?;
        w.write_str(&fields.rest)?;
        w.write_char('\n')
    }
}

/// Collects an event's fields: the message apart, the rest as ` key=value`.
#[derive(Default)]
struct LogfmtFields {
    message: String,
    rest: String,
}

impl LogfmtFields {
    fn push(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_owned();
            return;
        }
        let _ = write!(self.rest, " {}=", field.name());
        let _ = write_value(&mut self.rest, value);
    }
}

impl Visit for LogfmtFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.push(field, &format!("{value:?}"));
    }
}

/// Write a logfmt value, quoted and escaped only when it has to be.
fn write_value(w: &mut impl fmt::Write, v: &str) -> fmt::Result {
    let plain = !v.is_empty()
        && v.chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && c != '"' && c != '=');
    if plain {
        return w.write_str(v);
    }
    w.write_char('"')?;
    for c in v.chars() {
        match c {
            '"' => w.write_str("\\\"")?,
            '\\' => w.write_str("\\\\")?,
            '\n' => w.write_str("\\n")?,
            '\r' => w.write_str("\\r")?,
            '\t' => w.write_str("\\t")?,
            c if c.is_control() => write!(w, "\\u{{{:x}}}", c as u32)?,
            c => w.write_char(c)?,
        }
    }
    w.write_char('"')
}

/// A duration as a config would write it (`30s`, `1m30s`, `250ms`), for log fields.
pub struct Seconds(pub std::time::Duration);

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms == 0 {
            return f.write_str("0s");
        }
        let (h, m, s, ms) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
        if h > 0 {
            write!(f, "{h}h")?;
        }
        if m > 0 {
            write!(f, "{m}m")?;
        }
        if s > 0 {
            write!(f, "{s}s")?;
        }
        if ms > 0 {
            write!(f, "{ms}ms")?;
        }
        Ok(())
    }
}

/// The startup lines about the config: its sources (with their paths and whether they ask for
/// credentials) and its tasks. Each enabled target gets its own line when it is built.
pub fn log_config(config: &crate::config::Config) {
    let enabled = config.tasks.iter().filter(|t| t.enabled).count();
    let targets: usize = config
        .tasks
        .iter()
        .filter(|t| t.enabled)
        .map(|t| t.targets.len())
        .sum();
    tracing::info!(
        version = crate::telemetry::build::VERSION,
        revision = crate::telemetry::build::REVISION,
        sources = config.sources.len(),
        tasks = enabled,
        targets,
        "starting promrelay"
    );
    for (name, auth) in config.sources.iter().zip(&config.source_auth) {
        let path = if name == "default" {
            "/api/v1/write".to_owned()
        } else {
            format!("/sources/{name}/api/v1/write")
        };
        let auth = match auth {
            crate::config::Auth::None => None,
            crate::config::Auth::Basic { .. } => Some("basic_auth"),
            crate::config::Auth::Bearer(_) => Some("bearer_token"),
        };
        let tasks = config
            .tasks
            .iter()
            .filter(|t| t.enabled && &t.source == name)
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>()
            .join(",");
        tracing::info!(source = %name, path, auth, tasks, "source");
    }
    for task in config.tasks.iter().filter(|t| !t.enabled) {
        tracing::info!(task = %task.name, "task disabled: it receives nothing");
    }
}

#[cfg(test)]
mod tests {
    use super::{Seconds, write_value};
    use std::time::Duration;

    #[test]
    fn durations_print_as_a_config_writes_them() {
        for (ms, want) in [
            (0, "0s"),
            (250, "250ms"),
            (30_000, "30s"),
            (90_000, "1m30s"),
            (3_600_000, "1h"),
            (1_500, "1s500ms"),
        ] {
            assert_eq!(Seconds(Duration::from_millis(ms)).to_string(), want);
        }
    }

    #[test]
    fn logfmt_values_are_quoted_only_when_needed() {
        for (v, want) in [
            ("queued", "queued"),
            ("127.0.0.1:9201", "127.0.0.1:9201"),
            ("", "\"\""),
            ("two words", "\"two words\""),
            ("a=b", "\"a=b\""),
            ("say \"hi\"\n", "\"say \\\"hi\\\"\\n\""),
            ("back\\slash x", "\"back\\\\slash x\""),
        ] {
            let mut out = String::new();
            write_value(&mut out, v).unwrap();
            assert_eq!(out, want, "{v:?}");
        }
    }
}
