//! Shared helpers for the integration tests: real processes on free loopback ports, a small
//! HTTP client, and Prometheus' query API. Every process is killed and every directory removed
//! when its guard drops, even when a test fails.
#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("promrelay-it-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process killed on drop.
pub struct Proc {
    pub child: Child,
    pub name: String,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(name: &str, cmd: &mut Command, log: PathBuf) -> Proc {
        let out = std::fs::File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e} (is it installed? `bash .ci/run` installs the test dependencies)"));
        Proc {
            child,
            name: name.to_owned(),
            log,
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Send SIGTERM and wait (bounded) for the exit status.
    pub fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("----- log of {} -----\n{}", self.name, self.log_text());
        }
    }
}

pub struct HttpResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl HttpResponse {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub async fn http(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Result<HttpResponse, String> {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let mut req = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(Duration::from_secs(30), client.request(req))
        .await
        .map_err(|_| "timeout".to_string())?
        .map_err(|e| format!("{e:?}"))?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

pub async fn get(url: &str) -> Result<HttpResponse, String> {
    http(Method::GET, url, &[], Vec::new()).await
}

/// POST a remote-write 1.0 body the way Prometheus does.
/// POST a remote-write 2.0 request as a 2.0 sender does (its content type and version).
pub async fn remote_write_v2(url: &str, req: &promrelay::proto::v2::Request) -> HttpResponse {
    use promrelay::proto::v2;
    http(
        Method::POST,
        url,
        &[
            ("Content-Type", v2::CONTENT_TYPE),
            ("Content-Encoding", "snappy"),
            ("X-Prometheus-Remote-Write-Version", "2.0.0"),
        ],
        v2::encode_snappy(req),
    )
    .await
    .unwrap()
}

pub async fn remote_write(url: &str, snappy_body: Vec<u8>) -> HttpResponse {
    http(
        Method::POST,
        url,
        &[
            ("Content-Encoding", "snappy"),
            ("Content-Type", "application/x-protobuf"),
            ("X-Prometheus-Remote-Write-Version", "0.1.0"),
        ],
        snappy_body,
    )
    .await
    .unwrap()
}

/// Poll `check` every 200 ms until it returns `Some`, for at most `limit`. Used to wait for
/// asynchronous delivery; a bound on waiting, never an assertion about speed.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + limit;
    let mut last = String::new();
    while Instant::now() < deadline {
        match check().await {
            Ok(v) => return v,
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("gave up waiting for {what} after {limit:?}; last state: {last}");
}

pub async fn wait_ready(base: &str, proc: &mut Proc) {
    let url = format!("{base}/-/ready");
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = proc.child.try_wait() {
            panic!(
                "{} exited with {status} before it was ready:\n{}",
                proc.name,
                proc.log_text()
            );
        }
        if let Ok(r) = get(&url).await
            && r.status == StatusCode::OK
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "{} was not ready within 60 s:\n{}",
        proc.name,
        proc.log_text()
    );
}

/// Wait until a child listens on a loopback port.
pub async fn wait_port(port: u16, proc: &mut Proc) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = proc.child.try_wait() {
            panic!("{} exited with {status}:\n{}", proc.name, proc.log_text());
        }
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "{} did not listen on {port} within 60 s:\n{}",
        proc.name,
        proc.log_text()
    );
}

/// Prometheus config for a remote-write receiver (with `--web.enable-remote-write-receiver`).
pub const RECEIVER_CONFIG: &str =
    "global:\n  scrape_interval: 1h\nstorage:\n  tsdb:\n    out_of_order_time_window: 1h\n";

/// A real Prometheus server (Debian's `prometheus` package), killed on drop.
pub struct Prometheus {
    pub proc: Proc,
    pub port: u16,
    pub dir: TempDir,
    receiver: bool,
    /// `--enable-feature` value, if any.
    features: Option<String>,
}

impl Prometheus {
    /// Start Prometheus with a config (YAML text, `{port}` replaced by its own port); as a
    /// remote-write receiver when `receiver`.
    pub async fn start(config: &str, receiver: bool) -> Prometheus {
        Prometheus::start_with(config, receiver, None).await
    }

    /// As [`Prometheus::start`], with an optional `--web.config.file` (TLS, basic auth). With a
    /// web config, readiness is only waited for as an open port: plain HTTP cannot ask.
    pub async fn start_with(config: &str, receiver: bool, web_config: Option<&str>) -> Prometheus {
        Prometheus::start_on(free_port(), config, receiver, web_config).await
    }

    /// As [`Prometheus::start_with`], on a given port.
    pub async fn start_on(
        port: u16,
        config: &str,
        receiver: bool,
        web_config: Option<&str>,
    ) -> Prometheus {
        Prometheus::start_featured(port, config, receiver, web_config, None).await
    }

    /// As [`Prometheus::start_on`], with `--enable-feature=<features>`.
    pub async fn start_featured(
        port: u16,
        config: &str,
        receiver: bool,
        web_config: Option<&str>,
        features: Option<&str>,
    ) -> Prometheus {
        let features = features.map(str::to_owned);
        let dir = TempDir::new("prometheus");
        let cfg = dir.path().join("prometheus.yml");
        std::fs::write(&cfg, config.replace("{port}", &port.to_string())).unwrap();
        if let Some(web) = web_config {
            std::fs::write(dir.path().join("web.yml"), web).unwrap();
        }
        let mut proc = Proc::spawn(
            "prometheus",
            &mut Prometheus::command(
                port,
                &dir,
                receiver,
                web_config.is_some(),
                features.as_deref(),
            ),
            dir.path().join("prometheus.log"),
        );
        if web_config.is_some() {
            wait_port(port, &mut proc).await;
        } else {
            wait_ready(&format!("http://127.0.0.1:{port}"), &mut proc).await;
        }
        Prometheus {
            proc,
            port,
            dir,
            receiver,
            features,
        }
    }

    fn command(
        port: u16,
        dir: &TempDir,
        receiver: bool,
        web_config: bool,
        features: Option<&str>,
    ) -> Command {
        let bin = std::env::var("PROMETHEUS_BIN").unwrap_or_else(|_| "prometheus".into());
        let mut cmd = Command::new(bin);
        cmd.arg(format!(
            "--config.file={}",
            dir.path().join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--log.level=warn");
        if receiver {
            cmd.arg("--web.enable-remote-write-receiver");
        }
        if web_config {
            cmd.arg(format!(
                "--web.config.file={}",
                dir.path().join("web.yml").display()
            ));
        }
        if let Some(f) = features {
            cmd.arg(format!("--enable-feature={f}"));
        }
        cmd
    }

    /// Stop (SIGTERM, bounded wait) and start again on the same port and data directory.
    /// `down_for` is how long it stays stopped.
    pub async fn restart_after(&mut self, down_for: Duration) {
        assert!(
            self.proc.terminate(Duration::from_secs(30)).is_some(),
            "prometheus did not stop"
        );
        tokio::time::sleep(down_for).await;
        let log = self.dir.path().join("prometheus-2.log");
        self.proc = Proc::spawn(
            "prometheus",
            &mut Prometheus::command(
                self.port,
                &self.dir,
                self.receiver,
                false,
                self.features.as_deref(),
            ),
            log,
        );
        wait_ready(&self.base(), &mut self.proc).await;
    }

    /// A receiver as the delivery docs require: remote-write receiver on, out-of-order window set.
    pub async fn receiver() -> Prometheus {
        Prometheus::receiver_on(free_port()).await
    }

    /// A receiver that also stores native histograms and exemplars.
    pub async fn receiver_with_histograms_and_exemplars() -> Prometheus {
        Prometheus::start_featured(
            free_port(),
            RECEIVER_CONFIG,
            true,
            None,
            Some("native-histograms,exemplar-storage"),
        )
        .await
    }

    pub async fn receiver_on(port: u16) -> Prometheus {
        Prometheus::start_on(port, RECEIVER_CONFIG, true, None).await
    }

    /// A sender: scrapes its own `/metrics` every second as job `self` and remote-writes to
    /// `write_url` with short batch deadlines and backoffs.
    pub async fn self_scraping_sender(write_url: &str) -> Prometheus {
        let config = format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: self\n    static_configs: [{{targets: [\"127.0.0.1:{{port}}\"]}}]\nremote_write:\n  - url: {write_url}\n    queue_config: {{batch_send_deadline: 1s, min_backoff: 100ms, max_backoff: 1s}}\n"
        );
        Prometheus::start(&config, false).await
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn write_url(&self) -> String {
        format!("{}/api/v1/write", self.base())
    }

    /// Every raw sample of every series matching `selector` in the last `range` at `time_ms`:
    /// a map from the sorted label set to its (timestamp ms, value) pairs.
    pub async fn raw_series(
        &self,
        selector: &str,
        range: &str,
        time_ms: i64,
    ) -> Result<SeriesMap, String> {
        let q = format!("{selector}[{range}]");
        let url = format!(
            "{}/api/v1/query?query={}&time={}",
            self.base(),
            urlencode(&q),
            time_ms as f64 / 1000.0
        );
        let r = get(&url).await?;
        if r.status != StatusCode::OK {
            return Err(format!("query {q}: HTTP {} {}", r.status, r.text()));
        }
        let v: serde_json::Value = serde_json::from_slice(&r.body).map_err(|e| e.to_string())?;
        let mut out = SeriesMap::new();
        for s in v["data"]["result"].as_array().ok_or("no result array")? {
            let labels: BTreeMap<String, String> = s["metric"]
                .as_object()
                .ok_or("no metric")?
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect();
            let mut points = Vec::new();
            for p in s["values"].as_array().ok_or("no values")? {
                let ts = (p[0].as_f64().ok_or("bad ts")? * 1000.0).round() as i64;
                let val: f64 = p[1]
                    .as_str()
                    .ok_or("bad value")?
                    .parse()
                    .map_err(|_| "bad value")?;
                points.push((ts, val));
            }
            out.insert(labels, points);
        }
        Ok(out)
    }
}

impl Prometheus {
    /// Wait (bounded) until `selector` over the last `range` holds exactly `want`.
    pub async fn wait_for_series(
        &self,
        selector: &str,
        range: &str,
        want: &SeriesMap,
        what: &str,
    ) -> SeriesMap {
        eventually(Duration::from_secs(30), what, || async {
            let got = self.raw_series(selector, range, now_ms()).await?;
            if &got == want {
                Ok(got)
            } else {
                Err(format!("{got:?}"))
            }
        })
        .await
    }
}

impl Prometheus {
    /// Wait (bounded, 60 s) until `selector` has any sample in the last minute.
    pub async fn wait_for_any(&self, selector: &str, what: &str) -> SeriesMap {
        eventually(Duration::from_secs(60), what, || async {
            let got = self.raw_series(selector, "1m", now_ms()).await?;
            if got.is_empty() {
                Err("none yet".to_string())
            } else {
                Ok(got)
            }
        })
        .await
    }

    /// Wait (bounded) until `selector` over `range` evaluated at the fixed time `at_ms` holds
    /// exactly `want`.
    pub async fn wait_for_series_at(
        &self,
        selector: &str,
        range: &str,
        at_ms: i64,
        want: &SeriesMap,
        what: &str,
    ) -> SeriesMap {
        eventually(Duration::from_secs(60), what, || async {
            let got = self.raw_series(selector, range, at_ms).await?;
            if &got == want {
                Ok(got)
            } else {
                let have: usize = got.values().map(Vec::len).sum();
                let need: usize = want.values().map(Vec::len).sum();
                Err(format!("{have} of {need} points; got {got:?}"))
            }
        })
        .await
    }
}

pub type SeriesMap = BTreeMap<BTreeMap<String, String>, Vec<(i64, f64)>>;

/// Add what `req` carries to `want`, keyed as a receiver's query API reports it.
pub fn expect_request(want: &mut SeriesMap, req: &promrelay::proto::WriteRequest) {
    for s in &req.timeseries {
        let labels: BTreeMap<String, String> = s
            .labels
            .iter()
            .map(|l| (l.name.clone(), l.value.clone()))
            .collect();
        let points = want.entry(labels).or_default();
        points.extend(s.samples.iter().map(|p| (p.timestamp, p.value)));
        points.sort_by_key(|p| p.0);
    }
}

pub fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The promrelay binary under test, on a config written to a temp dir, killed on drop.
pub struct Relay {
    pub proc: Proc,
    pub port: u16,
    pub dir: TempDir,
    starts: u32,
    /// `server.admin_listen`'s port, when the config sets one: health and `/metrics` live there.
    pub admin_port: Option<u16>,
    /// A command the relay runs under (`prlimit --nofile=…`), empty for none.
    launcher: Vec<String>,
}

/// The binary under test: this build's, or `PROMRELAY_BIN` (to run the same probes against
/// another build, as the measurements in `hostile_senders.rs` do).
pub fn relay_bin() -> String {
    std::env::var("PROMRELAY_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_promrelay").to_owned())
}

impl Relay {
    /// Start the relay. `config` is YAML without the `server:` section's `listen`, which is
    /// added here (a free port); `{dir}` in the text is replaced by the relay's temp dir.
    pub async fn start(config: &str) -> Relay {
        Relay::start_under(&[], config).await
    }

    /// [`Relay::start`], the relay run by `launcher` (e.g. `["prlimit", "--nofile=1024:1024"]`,
    /// which sets the limit and then execs the relay, so the process is still the relay).
    pub async fn start_under(launcher: &[&str], config: &str) -> Relay {
        let launcher: Vec<String> = launcher.iter().map(|s| s.to_string()).collect();
        let dir = TempDir::new("relay");
        let port = free_port();
        let text = format!(
            "server:\n  listen: \"127.0.0.1:{port}\"\n{}",
            config.replace("{dir}", &dir.path().display().to_string())
        );
        std::fs::write(dir.path().join("promrelay.yaml"), text).unwrap();
        let admin_port = admin_port_in(config);
        let mut proc = Relay::spawn(&launcher, &dir, 1);
        let health = format!("http://127.0.0.1:{}", admin_port.unwrap_or(port));
        wait_ready(&health, &mut proc).await;
        Relay {
            proc,
            port,
            dir,
            starts: 1,
            admin_port,
            launcher,
        }
    }

    fn spawn(launcher: &[String], dir: &TempDir, start: u32) -> Proc {
        let mut cmd = match launcher.split_first() {
            None => Command::new(relay_bin()),
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(relay_bin());
                c
            }
        };
        cmd.arg("run")
            .arg("--config")
            .arg(dir.path().join("promrelay.yaml"))
            .env("RUST_LOG", "info");
        let log = dir.path().join(format!("promrelay-{start}.log"));
        Proc::spawn("promrelay", &mut cmd, log)
    }

    /// `kill -9` the relay (no shutdown of any kind) and start it again on the same config,
    /// port and directory.
    pub async fn kill9_and_restart(&mut self) {
        let _ = self.proc.child.kill(); // SIGKILL
        let _ = self.proc.child.wait();
        self.starts += 1;
        self.proc = Relay::spawn(&self.launcher, &self.dir, self.starts);
        wait_ready(&self.admin_base(), &mut self.proc).await;
    }

    /// Stop the relay with SIGTERM (its graceful shutdown), check it exited cleanly within
    /// `within`, and start it again on the same config, port and directory.
    pub async fn terminate_and_restart(&mut self, within: Duration) {
        let status = self.proc.terminate(within);
        assert!(
            status.is_some_and(|s| s.success()),
            "promrelay did not exit cleanly on SIGTERM within {within:?}: {status:?}\n{}",
            self.proc.log_text()
        );
        self.starts += 1;
        self.proc = Relay::spawn(&self.launcher, &self.dir, self.starts);
        wait_ready(&self.admin_base(), &mut self.proc).await;
    }

    /// Resident memory of the relay process now, from /proc.
    pub fn rss_bytes(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.proc.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .expect("VmRSS in /proc/pid/status")
            * 1024
    }

    /// Peak resident memory of the relay process so far (`VmHWM`), from /proc.
    pub fn peak_rss_bytes(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.proc.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .expect("VmHWM in /proc/pid/status")
            * 1024
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn write_url(&self) -> String {
        format!("{}/api/v1/write", self.base())
    }

    /// Where `/metrics` and the health endpoints are served: `admin_listen`, else `listen`.
    pub fn admin_base(&self) -> String {
        format!("http://127.0.0.1:{}", self.admin_port.unwrap_or(self.port))
    }

    /// Wait (bounded) until a self-metric satisfies `ok`; returns its value.
    pub async fn wait_metric(&self, series: &str, what: &str, ok: impl Fn(f64) -> bool) -> f64 {
        eventually(Duration::from_secs(30), what, || async {
            match self.metric(series).await {
                Some(v) if ok(v) => Ok(v),
                other => Err(format!("{series} = {other:?}")),
            }
        })
        .await
    }

    /// The value of one self-metric sample, by its exact exposition line prefix
    /// (`promrelay_requests_total{source="default",code="204"}`).
    pub async fn metric(&self, series: &str) -> Option<f64> {
        let text = get(&format!("{}/metrics", self.admin_base()))
            .await
            .ok()?
            .text();
        text.lines().find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.trim().parse().ok())
        })
    }
}

/// The port of an `admin_listen: "127.0.0.1:PORT"` line in a config's text.
fn admin_port_in(config: &str) -> Option<u16> {
    let rest = &config[config.find("admin_listen:")? + "admin_listen:".len()..];
    let line = rest.lines().next()?.trim().trim_matches('"');
    line.rsplit(':').next()?.trim_matches('"').parse().ok()
}

/// A real Kafka-compatible broker: Tansu (`cargo install tansu`), in-memory storage, killed on
/// drop.
pub struct Tansu {
    pub proc: Proc,
    pub port: u16,
    pub dir: TempDir,
}

pub fn tansu_bin() -> String {
    std::env::var("TANSU_BIN").unwrap_or_else(|_| "tansu".into())
}

impl Tansu {
    pub async fn start() -> Tansu {
        let dir = TempDir::new("tansu");
        let port = free_port();
        let proc = Tansu::spawn(&dir, port, "tansu.log");
        Tansu { proc, port, dir }
    }

    fn spawn(dir: &TempDir, port: u16, log: &str) -> Proc {
        let url = format!("tcp://127.0.0.1:{port}");
        let mut cmd = Command::new(tansu_bin());
        cmd.args([
            "broker",
            "--storage-engine",
            "memory://tansu/",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .env("RUST_LOG", "warn");
        let mut proc = Proc::spawn("tansu", &mut cmd, dir.path().join(log));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = proc.child.try_wait() {
                panic!("tansu exited with {status}:\n{}", proc.log_text());
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "tansu did not listen within 60 s:\n{}",
                proc.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        proc
    }

    /// Kill the broker (SIGKILL; its in-memory storage goes with it).
    pub fn kill(&mut self) {
        let _ = self.proc.child.kill();
        let _ = self.proc.child.wait();
    }

    /// Start a fresh broker on the same port (after [`Tansu::kill`]).
    pub fn start_again(&mut self) {
        self.proc = Tansu::spawn(&self.dir, self.port, "tansu-2.log");
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn create_topic(&self, name: &str, partitions: u32) {
        let out = Command::new(tansu_bin())
            .args([
                "topic",
                "create",
                "--broker",
                &format!("tcp://127.0.0.1:{}", self.port),
                "--partitions",
                &partitions.to_string(),
                name,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tansu topic create {name}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Run one of the tests' Python Kafka clients (`script` under tests/, `command` before the
    /// options if it has several) to read `want` items of `topic` from the beginning; its
    /// output lines, one JSON value each.
    fn read_lines_with_python(
        &self,
        script: &str,
        command: Option<&str>,
        topic: &str,
        want: usize,
    ) -> Vec<serde_json::Value> {
        let path = format!("{}/tests/{script}", env!("CARGO_MANIFEST_DIR"));
        let brokers = self.brokers();
        let want = want.to_string();
        let mut args = vec![path.as_str()];
        args.extend(command);
        args.extend([
            "--brokers",
            &brokers,
            "--topic",
            topic,
            "--want",
            &want,
            "--timeout",
            "60",
        ]);
        let out = Command::new("python3")
            .args(&args)
            .output()
            .unwrap_or_else(|e| panic!("python3: {e}"));
        assert!(
            out.status.success(),
            "{script} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Read `want` samples back with the independent Python client (tests/kafka_read.py).
    pub fn read_with_python(&self, topic: &str, want: usize) -> Vec<serde_json::Value> {
        self.read_lines_with_python("kafka_read.py", None, topic, want)
    }
}

/// A raw Kafka message as the independent Python client sees it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RawMessage {
    pub partition: Option<i32>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

impl Tansu {
    /// Produce `messages` in order with the independent Python client (tests/kafka_raw.py):
    /// each to its partition (or the client's partitioner), key and value as given.
    pub fn produce_with_python(&self, topic: &str, messages: &[RawMessage]) {
        use std::io::Write;
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/kafka_raw.py");
        let mut child = Command::new("python3")
            .args([
                script,
                "produce",
                "--brokers",
                &self.brokers(),
                "--topic",
                topic,
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("python3: {e}"));
        {
            let mut stdin = child.stdin.take().unwrap();
            for m in messages {
                let line = serde_json::json!({
                    "partition": m.partition,
                    "key": m.key.as_deref().map(hex),
                    "value": m.value.as_deref().map(hex),
                });
                writeln!(stdin, "{line}").unwrap();
            }
        }
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "kafka_raw.py produce failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            messages.len().to_string()
        );
    }

    /// Read `want` raw messages of `topic` from the beginning with the independent Python
    /// client (every partition; in offset order per partition).
    pub fn read_raw_with_python(&self, topic: &str, want: usize) -> Vec<RawMessage> {
        self.read_lines_with_python("kafka_raw.py", Some("read"), topic, want)
            .into_iter()
            .map(|v| RawMessage {
                partition: v["partition"].as_i64().map(|p| p as i32),
                key: v["key"].as_str().map(unhex),
                value: v["value"].as_str().map(unhex),
            })
            .collect()
    }
}

/// Run `openssl ARGS` in `dir` (test certificates).
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a server certificate for 127.0.0.1 signed by it.
pub fn make_certs(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=promrelay test CA",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
}

/// `series` series named `metric`, label `id` = 0.., each with one sample at `ts`.
pub fn series_request(
    metric: &str,
    series: usize,
    ts: i64,
    value: f64,
) -> promrelay::proto::WriteRequest {
    promrelay::proto::WriteRequest {
        timeseries: (0..series)
            .map(|i| promrelay::proto::TimeSeries {
                labels: vec![
                    promrelay::proto::Label::new("__name__", metric),
                    promrelay::proto::Label::new("id", &i.to_string()),
                ],
                samples: vec![promrelay::proto::Sample {
                    value: value + i as f64,
                    timestamp: ts,
                }],
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// One request as the test receiver saw it.
pub struct Received {
    pub content_type: String,
    pub version: String,
    pub body: Vec<u8>,
}

/// A remote-write receiver written in the tests: for 2.0, because no real one can be
/// installed here (Prometheus 2.42 only takes 1.0; 2.0 receiving arrived in Prometheus 3.x);
/// for metadata, because Prometheus' receiver does not store remote-written metadata. It
/// keeps every request and answers `status`; tests decode the bodies with the prost
/// reference types, an implementation independent of the relay's hand-written encoder.
pub async fn test_receiver(
    status: u16,
) -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<Received>>>,
    tokio::task::JoinHandle<()>,
) {
    use http_body_util::BodyExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/api/v1/write", listener.local_addr().unwrap());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let store = seen.clone();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let store = store.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let store = store.clone();
                        async move {
                            let h = |k: &str| {
                                req.headers()
                                    .get(k)
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or("")
                                    .to_owned()
                            };
                            let (content_type, version) =
                                (h("content-type"), h("x-prometheus-remote-write-version"));
                            let body = req.into_body().collect().await?.to_bytes().to_vec();
                            store.lock().unwrap().push(Received {
                                content_type,
                                version,
                                body,
                            });
                            let mut resp = hyper::Response::new(http_body_util::Full::new(
                                bytes::Bytes::new(),
                            ));
                            *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                            Ok::<_, hyper::Error>(resp)
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (url, seen, task)
}
