//! `promrelay bench`: the built-in filter-throughput benchmark.
//!
//! Two modes over the same generated remote-write bodies ([`super::workload`]):
//! - **in-process**: run the bodies through a config's tasks with [`Pipeline::process`] on N
//!   threads, discarding what reaches the queues: the data path alone, no HTTP, no sender.
//! - **HTTP**: drive a remote-write URL with N connections, like a fleet of Prometheus servers;
//!   with `--pid` it also reads that process' CPU time and peak RSS from `/proc`.
//!
//! Every run is bounded by its duration. Load is only ever sent to loopback addresses.

use super::workload::WorkloadSpec;
use crate::config::Config;
use crate::pipeline::Pipeline;
use crate::telemetry::Metrics;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The filter the built-in in-process benchmark uses: keeps about 16 % of generated series.
pub const DEFAULT_FILTER: [&str; 2] = [
    "__name__=AliyunEcs_CPUUtilization|AliyunEcs_memory_usedutilization",
    "id=i-2ze0mxp.*",
];

/// The config used in-process when none is given.
pub fn default_config() -> Config {
    let yaml = format!(
        "tasks:\n  - name: bench\n    filter: [{:?}, {:?}]\n    labels: {{deliver_test_key1: ssss}}\n    targets:\n      - name: sink\n        type: remote_write\n        url: http://127.0.0.1:9/api/v1/write\n        external_labels: {{source_cluster: cluster-01}}\n        queue: {{capacity: 1000000000}}\n",
        DEFAULT_FILTER[0], DEFAULT_FILTER[1]
    );
    // The text above is fixed and valid; the test suite loads it.
    Config::from_yaml(&yaml, Path::new("."))
        .unwrap_or_else(|e| unreachable!("built-in bench config: {e}"))
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}: load is only sent to loopback addresses (127.0.0.0/8, ::1, localhost)")]
    NotLoopback(String),
    #[error("bad URL {0:?}")]
    BadUrl(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Is this host a loopback address?
pub fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost") || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// What a run measured.
#[derive(Debug, Default, Clone)]
pub struct BenchReport {
    pub mode: String,
    pub elapsed: Duration,
    pub requests: u64,
    pub samples: u64,
    pub errors: u64,
    pub p50: Duration,
    pub p99: Duration,
    /// CPU seconds of the measured process (the relay over HTTP, this process in-process).
    pub cpu_seconds: Option<f64>,
    pub peak_rss_bytes: Option<u64>,
    pub first_error: Option<String>,
}

/// What one load worker saw.
#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    requests: u64,
    errors: u64,
    first_error: Option<String>,
}

impl Tally {
    /// Count one request that started at `t0`; true when it succeeded.
    fn record(&mut self, t0: Instant, outcome: Result<(), String>) -> bool {
        self.latencies.push(t0.elapsed());
        match outcome {
            Ok(()) => {
                self.requests += 1;
                true
            }
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert(e);
                false
            }
        }
    }
}

impl BenchReport {
    /// Fold the workers' tallies into the report: counts, elapsed time, percentiles.
    fn add(&mut self, tallies: impl Iterator<Item = Tally>, start: Instant, per_request: u64) {
        let mut lat = Vec::new();
        for t in tallies {
            lat.extend(t.latencies);
            self.requests += t.requests;
            self.errors += t.errors;
            if self.first_error.is_none() {
                self.first_error = t.first_error;
            }
        }
        self.elapsed = start.elapsed();
        self.samples = self.requests * per_request;
        lat.sort_unstable();
        self.p50 = percentile(&lat, 0.5);
        self.p99 = percentile(&lat, 0.99);
    }

    pub fn samples_per_second(&self) -> f64 {
        self.samples as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn samples_per_cpu_second(&self) -> Option<f64> {
        self.cpu_seconds
            .filter(|c| *c > 0.0)
            .map(|c| self.samples as f64 / c)
    }
}

impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let opt =
            |v: Option<f64>, unit: &str| v.map_or("n/a".to_string(), |v| format!("{v:.2}{unit}"));
        writeln!(f, "mode                  {}", self.mode)?;
        writeln!(
            f,
            "duration              {:.2} s",
            self.elapsed.as_secs_f64()
        )?;
        writeln!(
            f,
            "requests              {} ({:.0}/s)",
            self.requests,
            self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
        )?;
        writeln!(f, "samples               {}", self.samples)?;
        writeln!(f, "samples/s             {:.0}", self.samples_per_second())?;
        writeln!(
            f,
            "latency p50 / p99     {:.3} ms / {:.3} ms",
            self.p50.as_secs_f64() * 1e3,
            self.p99.as_secs_f64() * 1e3
        )?;
        writeln!(f, "cpu seconds           {}", opt(self.cpu_seconds, " s"))?;
        writeln!(
            f,
            "samples/cpu-second    {}",
            opt(self.samples_per_cpu_second(), "")
        )?;
        writeln!(
            f,
            "peak RSS              {}",
            opt(
                self.peak_rss_bytes.map(|b| b as f64 / (1 << 20) as f64),
                " MiB"
            )
        )?;
        write!(f, "errors                {}", self.errors)?;
        if let Some(e) = &self.first_error {
            write!(f, " (first: {e})")?;
        }
        Ok(())
    }
}

/// CPU seconds (user + system) a process has used, from `/proc/PID/stat`.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces: fields are counted after its closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Peak resident set size of a process (`VmHWM`), in bytes.
pub fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn bodies(spec: &WorkloadSpec, n: usize) -> (Vec<Bytes>, u64) {
    let bodies = (0..n.max(1) as u64)
        .map(|i| Bytes::from(crate::proto::encode_snappy(&spec.request(i))))
        .collect();
    (bodies, (spec.series * spec.samples_per_series) as u64)
}

/// A progress bar over the run's duration showing the current rate; hidden when `show` is false.
fn progress(
    duration: Duration,
    show: bool,
    samples: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let bar = if show {
            indicatif::ProgressBar::new(duration.as_millis() as u64)
        } else {
            indicatif::ProgressBar::hidden()
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {elapsed}/{duration} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let start = Instant::now();
        while !done.load(Ordering::Relaxed) && start.elapsed() < duration + Duration::from_secs(1) {
            std::thread::sleep(Duration::from_millis(200));
            let secs = start.elapsed().as_secs_f64();
            bar.set_position((secs * 1000.0) as u64);
            bar.set_message(format!(
                "{:.0} samples/s",
                samples.load(Ordering::Relaxed) as f64 / secs
            ));
        }
        bar.finish_and_clear();
    })
}

/// Run bodies through `config`'s tasks in this process on `threads` threads for `duration`,
/// or until each thread has processed `max_requests` (a fixed amount of work, for counting
/// instructions under callgrind).
pub fn in_process(
    config: Config,
    spec: &WorkloadSpec,
    threads: usize,
    duration: Duration,
    max_requests: Option<u64>,
    show_progress: bool,
) -> Result<BenchReport, crate::targets::SinkError> {
    let mut config = config;
    // Nothing is sent in process: queues are emptied after each request. A spool would fill
    // up (and measure the disk), so spools are left out.
    for t in config.tasks.iter_mut().flat_map(|t| t.targets.iter_mut()) {
        t.spool = None;
    }
    for t in &mut config.tasks {
        t.ack = crate::config::Ack::Queued;
    }
    let pipeline = Arc::new(Pipeline::new(config, &Metrics::new())?);
    let (bodies, per_request) = bodies(spec, 8);
    let source = pipeline.source("default").unwrap_or(0);
    let samples = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let bar = progress(duration, show_progress, samples.clone(), done.clone());
    let me = std::process::id();
    let cpu0 = cpu_seconds(me);
    let start = Instant::now();
    let workers: Vec<_> = (0..threads.max(1))
        .map(|t| {
            let (pipeline, bodies, samples) = (pipeline.clone(), bodies.clone(), samples.clone());
            std::thread::spawn(move || {
                let mut tally = Tally::default();
                let mut i = t;
                while start.elapsed() < duration
                    && max_requests.is_none_or(|m| tally.requests + tally.errors < m)
                {
                    let t0 = Instant::now();
                    let outcome = pipeline
                        .process(source, &bodies[i % bodies.len()])
                        .map(|_| ())
                        .map_err(|e| e.to_string());
                    for target in pipeline.targets() {
                        target.queue.discard_all();
                    }
                    if tally.record(t0, outcome) {
                        samples.fetch_add(per_request, Ordering::Relaxed);
                    }
                    i += 1;
                }
                tally
            })
        })
        .collect();
    let mut report = BenchReport {
        mode: format!(
            "in-process, {} thread(s), {} series x {} labels per request",
            threads.max(1),
            spec.series,
            spec.labels_per_series
        ),
        ..Default::default()
    };
    let tallies = workers.into_iter().filter_map(|w| w.join().ok());
    report.add(tallies, start, per_request);
    done.store(true, Ordering::Relaxed);
    let _ = bar.join();
    report.cpu_seconds = cpu0.and_then(|c0| cpu_seconds(me).map(|c1| c1 - c0));
    report.peak_rss_bytes = peak_rss(me);
    Ok(report)
}

/// Drive a remote-write URL over HTTP with `connections` concurrent senders for `duration`,
/// as fast as the receiver answers, or at `rate` samples per second in all (each connection
/// sends its share on a fixed schedule, so a receiver that keeps up sees a steady load and one
/// that does not is not sent more to catch up).
///
/// # Errors
/// A URL that does not parse or is not on a loopback address.
pub async fn over_http(
    url: &str,
    pid: Option<u32>,
    spec: &WorkloadSpec,
    connections: usize,
    rate: Option<u64>,
    duration: Duration,
    show_progress: bool,
) -> Result<BenchReport, BenchError> {
    let uri: Uri = url
        .parse()
        .map_err(|_| BenchError::BadUrl(url.to_owned()))?;
    let host = uri
        .host()
        .ok_or_else(|| BenchError::BadUrl(url.to_owned()))?;
    if !is_loopback_host(host) {
        return Err(BenchError::NotLoopback(url.to_owned()));
    }
    let (bodies, per_request) = bodies(spec, 8);
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let samples = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let bar = progress(duration, show_progress, samples.clone(), done.clone());
    let cpu0 = pid.and_then(cpu_seconds);
    let start = Instant::now();
    // With a rate: one request per connection every `every`.
    let every = rate.filter(|&r| r > 0).map(|r| {
        Duration::from_secs_f64(per_request as f64 * connections.max(1) as f64 / r as f64)
    });
    let mut tasks = Vec::new();
    for c in 0..connections.max(1) {
        let (client, uri, bodies, samples) =
            (client.clone(), uri.clone(), bodies.clone(), samples.clone());
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut i = c;
            let mut next = start;
            while start.elapsed() < duration {
                if let Some(every) = every {
                    tokio::time::sleep_until(next.into()).await;
                    if start.elapsed() >= duration {
                        break;
                    }
                    // A late request is not made up for: the schedule goes on from now.
                    next = (next + every).max(Instant::now());
                }
                let req = Request::builder()
                    .method(Method::POST)
                    .uri(uri.clone())
                    .header("Content-Encoding", "snappy")
                    .header("Content-Type", "application/x-protobuf")
                    .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                    .body(Full::new(bodies[i % bodies.len()].clone()));
                i += 1;
                let Ok(req) = req else { continue };
                let t0 = Instant::now();
                let outcome = match tokio::time::timeout(
                    Duration::from_secs(30),
                    client.request(req),
                )
                .await
                {
                    Ok(Ok(resp)) => {
                        let status = resp.status();
                        let _ = resp.into_body().collect().await;
                        if status.is_success() {
                            Ok(())
                        } else {
                            Err(format!("HTTP {status}"))
                        }
                    }
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("timeout".to_string()),
                };
                if tally.record(t0, outcome) {
                    samples.fetch_add(per_request, Ordering::Relaxed);
                } else {
                    // Back off a little so a refusing target is not hammered in a tight loop.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            tally
        }));
    }
    let mut report = BenchReport {
        mode: format!(
            "HTTP to {url}, {} connection(s), {} series x {} labels per request{}",
            connections.max(1),
            spec.series,
            spec.labels_per_series,
            rate.map_or(String::new(), |r| format!(", at most {r} samples/s"))
        ),
        ..Default::default()
    };
    let mut tallies = Vec::new();
    for t in tasks {
        if let Ok(tally) = t.await {
            tallies.push(tally);
        }
    }
    report.add(tallies.into_iter(), start, per_request);
    done.store(true, Ordering::Relaxed);
    let _ = bar.join();
    report.cpu_seconds = pid.and_then(|p| Some(cpu_seconds(p)? - cpu0?));
    report.peak_rss_bytes = pid.and_then(peak_rss);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_only() {
        for h in [
            "127.0.0.1",
            "127.5.6.7",
            "localhost",
            "[::1]",
            "::1",
            "LOCALHOST",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in ["10.0.0.1", "192.168.1.1", "example.com", "0.0.0.0", "[::]"] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }

    #[test]
    fn in_process_run_measures_and_the_default_config_is_valid() {
        let spec = WorkloadSpec {
            series: 100,
            ..Default::default()
        };
        let r = in_process(
            default_config(),
            &spec,
            1,
            Duration::from_millis(200),
            None,
            false,
        )
        .unwrap();
        assert!(r.requests > 0 && r.errors == 0, "{r}");
        assert_eq!(r.samples, r.requests * 100);
        assert!(r.p99 >= r.p50);
        assert!(r.to_string().contains("samples/s"));
    }

    /// With a rate, requests follow a fixed schedule: never more than it allows, however
    /// fast the receiver answers (a bound on the count, not on how long anything takes).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_rate_caps_what_is_sent() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(super::super::blackhole::blackhole(
            addr,
            std::time::Duration::ZERO,
            async {
                let _ = stopped.await;
            },
        ));
        let spec = WorkloadSpec {
            series: 100,
            ..Default::default()
        };
        let url = format!("http://127.0.0.1:{port}/api/v1/write");
        let mut r = None;
        for _ in 0..50 {
            // The server may not listen yet on the first tries.
            let got = over_http(
                &url,
                None,
                &spec,
                2,
                Some(1_000),
                Duration::from_millis(1_000),
                false,
            )
            .await
            .unwrap();
            if got.errors == 0 && got.requests > 0 {
                r = Some(got);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let r = r.expect("the blackhole answered");
        // 1,000 samples/s of 100-sample requests over 2 connections: one request per
        // connection every 200 ms, the first at once, so at most 5 each in 1 s.
        assert!(r.requests <= 10, "{r}");
        assert!(r.mode.contains("at most 1000 samples/s"), "{}", r.mode);
        let _ = stop.send(());
        let _ = server.await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn refuses_to_load_a_non_loopback_url() {
        let err = over_http(
            "http://10.1.2.3:9201/api/v1/write",
            None,
            &WorkloadSpec::default(),
            1,
            None,
            Duration::from_millis(10),
            false,
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("loopback"), "{err}");
    }
}
