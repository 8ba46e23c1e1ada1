//! The standard process metrics every Prometheus client library exports
//! (`process_cpu_seconds_total`, `process_resident_memory_bytes`, `process_virtual_memory_bytes`,
//! `process_open_fds`, `process_max_fds`, `process_start_time_seconds`), read from `/proc` at
//! each scrape, so they cost nothing between scrapes. The names and meanings are
//! client_golang's, so dashboards and alerts written for any Prometheus-instrumented process
//! work unchanged.
//!
//! Off Linux (no `/proc`) the collector writes nothing rather than zeros that would look real.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Clock ticks per second in `/proc/*/stat` times. The kernel reports these in `USER_HZ`,
/// which is 100 on every Linux architecture (it is part of the ABI, whatever `CONFIG_HZ` is);
/// asking `sysconf(_SC_CLK_TCK)` would take unsafe code for the same answer.
const TICKS_PER_SECOND: f64 = 100.0;

/// One reading of the process' figures.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessStats {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub start_time_seconds: f64,
    pub open_fds: u64,
    /// The soft limit on open files; `None` when unlimited.
    pub max_fds: Option<u64>,
}

impl ProcessStats {
    /// Read this process' figures; `None` without a readable `/proc`.
    pub fn read() -> Option<ProcessStats> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let system = std::fs::read_to_string("/proc/stat").ok()?;
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
        let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
        parse(&stat, &status, &system, &limits, open_fds)
    }
}

/// The parsing half of [`ProcessStats::read`], apart so it can be tested on fixed text.
fn parse(
    stat: &str,
    status: &str,
    system: &str,
    limits: &str,
    open_fds: u64,
) -> Option<ProcessStats> {
    // The command name (field 2) is in parentheses and may hold spaces or parentheses itself:
    // the fields after the last ')' are fixed. `rest[0]` is field 3 (state).
    let rest: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let field = |n: usize| -> Option<u64> { rest.get(n - 3)?.parse().ok() };
    let utime = field(14)?;
    let stime = field(15)?;
    let start_ticks = field(22)?;
    let virtual_bytes = field(23)?;
    let boot_time: u64 = system
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    // VmRSS is in kB; the page count in `stat` would need the page size (unsafe sysconf).
    let resident_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let max_fds = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|soft| soft.parse().ok());
    Some(ProcessStats {
        cpu_seconds: (utime + stime) as f64 / TICKS_PER_SECOND,
        resident_bytes: resident_kb * 1024,
        virtual_bytes,
        start_time_seconds: boot_time as f64 + start_ticks as f64 / TICKS_PER_SECOND,
        open_fds,
        max_fds,
    })
}

/// Registered once on the root registry (no `promrelay_` prefix: these names are standard).
#[derive(Debug, Default)]
pub struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(p) = ProcessStats::read() else {
            return Ok(());
        };
        let cpu = ConstCounter::new(p.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds.",
            None,
            cpu.metric_type(),
        )?)?;
        let mut gauge = |name: &str, help: &str, value: f64| -> Result<(), std::fmt::Error> {
            let g = ConstGauge::new(value);
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)
        };
        gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            p.resident_bytes as f64,
        )?;
        gauge(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            p.virtual_bytes as f64,
        )?;
        gauge(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            p.start_time_seconds,
        )?;
        gauge(
            "process_open_fds",
            "Number of open file descriptors.",
            p.open_fds as f64,
        )?;
        if let Some(max) = p.max_fds {
            gauge(
                "process_max_fds",
                "Maximum number of open file descriptors.",
                max as f64,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_text_including_a_command_name_with_spaces_and_parentheses() {
        let stat = "4242 (prom relay (x)) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 8 0 12345 987654321 2048 18446744073709551615";
        let status = "Name:\tpromrelay\nVmRSS:\t   8192 kB\nThreads:\t8\n";
        let system = "cpu  1 2 3\nbtime 1700000000\nprocesses 5\n";
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n";
        let p = parse(stat, status, system, limits, 17).unwrap();
        assert_eq!(
            p,
            ProcessStats {
                cpu_seconds: 3.0,
                resident_bytes: 8192 * 1024,
                virtual_bytes: 987654321,
                start_time_seconds: 1700000000.0 + 123.45,
                open_fds: 17,
                max_fds: Some(1024),
            }
        );
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(
            parse(stat, status, system, unlimited, 1).unwrap().max_fds,
            None
        );
    }

    #[test]
    fn reads_this_process() {
        let p = ProcessStats::read().expect("/proc is readable on Linux");
        assert!(p.resident_bytes > 0 && p.open_fds > 0, "{p:?}");
        assert!(p.start_time_seconds > 1.0e9, "{p:?}");
    }
}
