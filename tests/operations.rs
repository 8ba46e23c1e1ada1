//! Operating the relay: a real Prometheus 2.42 scrapes `/metrics` (the target is up and the
//! relay's series are stored), `promtool check metrics` accepts the exposition,
//! `promtool check rules` and `promtool test rules` accept docs/alerts.yml, and the
//! target-down alert fires in a real Prometheus scraping a relay whose target is down. Also:
//! build info and `--version`, log formats and levels, no escape codes in a log file.

mod common;

use common::*;
use promrelay::proto;
use promrelay::tools::workload::WorkloadSpec;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const OPENMETRICS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

fn promtool(args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let bin = std::env::var("PROMTOOL_BIN").unwrap_or_else(|_| "promtool".into());
    let mut child = Command::new(bin)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package) is installed");
    if let Some(text) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// docs/alerts.yml as YAML, with `edit` applied to every rule.
fn shipped_rules(edit: impl Fn(&mut serde_yaml_ng::Mapping)) -> String {
    let text = std::fs::read_to_string(root().join("docs/alerts.yml")).unwrap();
    let mut doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    for group in doc["groups"].as_sequence_mut().unwrap() {
        for rule in group["rules"].as_sequence_mut().unwrap() {
            edit(rule.as_mapping_mut().unwrap());
        }
    }
    serde_yaml_ng::to_string(&doc).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_the_text_exposition_and_openmetrics_ends_with_one_eof() {
    let relay = Relay::start(
        "tasks:\n  - name: t\n    targets: [{name: f, type: file, path: \"{dir}/out.jsonl\"}]\n",
    )
    .await;
    // Some traffic first, so histograms and labelled families have samples.
    let req = WorkloadSpec {
        series: 20,
        ..Default::default()
    }
    .request(0);
    let r = remote_write(&relay.write_url(), proto::encode_snappy(&req)).await;
    assert_eq!(r.status, 204, "{}", r.text());
    let url = format!("{}/metrics", relay.base());

    let plain = get(&url).await.unwrap();
    assert_eq!(
        plain.headers["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = plain.text();
    let (ok, report) = promtool(&["check", "metrics"], Some(&text));
    assert!(ok && report.trim().is_empty(), "promtool: {report}\n{text}");
    assert!(!text.contains("# EOF"), "{text}");
    assert!(text.contains("# TYPE promrelay_requests_total counter"));
    for name in [
        "process_cpu_seconds_total ",
        "process_resident_memory_bytes ",
        "process_open_fds ",
        "process_max_fds ",
        "process_start_time_seconds ",
        "promrelay_request_duration_seconds_count{source=\"default\"} 1",
        "promrelay_target_pending_samples{task=\"t\",target=\"f\"} ",
        "promrelay_target_highest_received_timestamp_seconds{task=\"t\",target=\"f\"} ",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(name)),
            "{name} missing:\n{text}"
        );
    }
    let build = format!(
        "promrelay_build_info{{version=\"{}\",revision=\"",
        env!("CARGO_PKG_VERSION")
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with(&build) && l.contains(",rustc=\"") && l.ends_with("} 1")),
        "{text}"
    );

    let om = http(
        hyper::Method::GET,
        &url,
        &[("Accept", OPENMETRICS_ACCEPT)],
        Vec::new(),
    )
    .await
    .unwrap();
    assert_eq!(
        om.headers["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let body = om.text();
    assert!(
        body.ends_with("\n# EOF\n"),
        "{:?}",
        &body[body.len() - 20..]
    );
    assert_eq!(body.matches("# EOF").count(), 1);
    assert!(body.contains("# TYPE promrelay_requests counter"));
}

#[test]
fn version_prints_what_build_info_reports() {
    let out = Command::new(relay_bin()).arg("--version").output().unwrap();
    assert!(out.status.success());
    let line = String::from_utf8(out.stdout).unwrap();
    let want = format!("promrelay {} (revision: ", env!("CARGO_PKG_VERSION"));
    assert!(line.starts_with(&want), "{line}");
    assert!(line.contains(", rustc: "), "{line}");
    assert!(
        !line.contains("revision: unknown"),
        "built inside git: {line}"
    );
}

#[test]
fn shipped_alert_rules_pass_promtool_check_and_their_unit_tests() {
    let (ok, report) = promtool(
        &[
            "check",
            "rules",
            root().join("docs/alerts.yml").to_str().unwrap(),
        ],
        None,
    );
    assert!(ok, "{report}");
    // The unit tests run against the shipped expressions and `for:` durations; annotations
    // are left out because promtool would compare their rendered text too (their templates
    // are what `check rules` just validated).
    let dir = TempDir::new("alert-tests");
    std::fs::write(
        dir.path().join("alerts.yml"),
        shipped_rules(|rule| {
            rule.remove("annotations");
        }),
    )
    .unwrap();
    std::fs::copy(
        root().join("tests/alerts_test.yml"),
        dir.path().join("alerts_test.yml"),
    )
    .unwrap();
    let (ok, report) = promtool(
        &[
            "test",
            "rules",
            dir.path().join("alerts_test.yml").to_str().unwrap(),
        ],
        None,
    );
    assert!(ok, "{report}");
}

/// The alerts a Prometheus has now: `(alertname, labels, state)`.
async fn alerts(
    prom: &Prometheus,
) -> Result<Vec<(String, BTreeMap<String, String>, String)>, String> {
    let r = get(&format!("{}/api/v1/alerts", prom.base())).await?;
    let v: serde_json::Value = serde_json::from_slice(&r.body).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for a in v["data"]["alerts"].as_array().ok_or("no alerts array")? {
        let labels: BTreeMap<String, String> = a["labels"]
            .as_object()
            .ok_or("no labels")?
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
            .collect();
        out.push((
            labels["alertname"].clone(),
            labels,
            a["state"].as_str().unwrap_or_default().to_owned(),
        ));
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_relay_and_the_target_down_alert_fires() {
    // One task delivers to a file (healthy), one to a port where nothing listens (down).
    let dead = free_port();
    let relay = Relay::start(&format!(
        r#"
tasks:
  - name: to-file
    targets: [{{name: file, type: file, path: "{{dir}}/out.jsonl", queue: {{batch_send_deadline: 200ms}}}}]
  - name: to-nowhere
    targets:
      - name: down
        type: remote_write
        url: http://127.0.0.1:{dead}/api/v1/write
        queue: {{batch_send_deadline: 200ms, min_backoff: 100ms, max_backoff: 500ms}}
"#
    ))
    .await;
    // The shipped rules with every `for:` cut to 1s, so the test does not sit out the real
    // durations (2m for PromrelayTargetDown); nothing else is changed, so the expressions
    // that fire are the shipped ones. The real `for:` durations are exercised by
    // shipped_alert_rules_pass_promtool_check_and_their_unit_tests (simulated time).
    let rules_dir = TempDir::new("alert-rules");
    let rules = rules_dir.path().join("alerts.yml");
    std::fs::write(
        &rules,
        shipped_rules(|rule| {
            if rule.contains_key("for") {
                rule.insert("for".into(), "1s".into());
            }
        }),
    )
    .unwrap();
    // The same Prometheus scrapes the relay, evaluates the rules, and remote-writes what it
    // scrapes to the relay (the data the relay's tasks deliver).
    let config = format!(
        "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
         rule_files: [{rules}]\n\
         scrape_configs:\n  - job_name: promrelay\n    static_configs: [{{targets: [\"127.0.0.1:{port}\"]}}]\n\
         remote_write:\n  - url: {write}\n    queue_config: {{batch_send_deadline: 1s, min_backoff: 100ms, max_backoff: 1s}}\n",
        rules = rules.display(),
        port = relay.port,
        write = relay.write_url(),
    );
    let prom = Prometheus::start(&config, false).await;

    // The target is up: the OpenMetrics body parses (no data after `# EOF`).
    eventually(
        Duration::from_secs(60),
        "the relay's scrape target up",
        || async {
            let r = get(&format!("{}/api/v1/targets", prom.base())).await?;
            let v: serde_json::Value =
                serde_json::from_slice(&r.body).map_err(|e| e.to_string())?;
            let t = &v["data"]["activeTargets"][0];
            if t["health"] == "up" && t["lastError"] == "" {
                Ok(())
            } else {
                Err(format!("{t}"))
            }
        },
    )
    .await;
    let build = prom
        .wait_for_any(
            "promrelay_build_info{job=\"promrelay\"}",
            "build info stored",
        )
        .await;
    let (labels, points) = build.iter().next().unwrap();
    assert_eq!(labels["version"], env!("CARGO_PKG_VERSION"));
    assert!(points.iter().all(|&(_, v)| v == 1.0));
    prom.wait_for_any(
        "process_resident_memory_bytes{job=\"promrelay\"}",
        "process metrics stored",
    )
    .await;

    // The healthy target delivers: its sent timestamp follows what it received.
    relay
        .wait_metric(
            "promrelay_target_highest_sent_timestamp_seconds{task=\"to-file\",target=\"file\"}",
            "the file target's delivered timestamp",
            |v| v > 1.0e9,
        )
        .await;
    let received = relay
        .metric("promrelay_target_highest_received_timestamp_seconds{task=\"to-nowhere\",target=\"down\"}")
        .await
        .unwrap();
    assert!(received > 1.0e9, "{received}");
    assert_eq!(
        relay
            .metric("promrelay_target_highest_sent_timestamp_seconds{task=\"to-nowhere\",target=\"down\"}")
            .await,
        Some(0.0)
    );

    // The target-down alert fires for the dead target, and for it only.
    let firing = eventually(
        Duration::from_secs(90),
        "PromrelayTargetDown firing",
        || async {
            let all = alerts(&prom).await?;
            let down: Vec<_> = all
                .iter()
                .filter(|(name, _, state)| name == "PromrelayTargetDown" && state == "firing")
                .collect();
            if down.is_empty() {
                Err(format!("{all:?}"))
            } else {
                Ok(all)
            }
        },
    )
    .await;
    for (name, labels, state) in &firing {
        if name == "PromrelayTargetDown" {
            assert_eq!(
                (
                    labels["task"].as_str(),
                    labels["target"].as_str(),
                    state.as_str()
                ),
                ("to-nowhere", "down", "firing"),
                "{firing:?}"
            );
            assert_eq!(labels["severity"], "critical");
        }
    }
}

/// Start `promrelay run` with `args` on a config, with `RUST_LOG` set to `rust_log` or unset.
fn spawn_relay(dir: &TempDir, args: &[&str], rust_log: Option<&str>) -> (Proc, u16) {
    let port = free_port();
    let cfg = dir.path().join("promrelay.yaml");
    std::fs::write(
        &cfg,
        format!(
            "server: {{listen: \"127.0.0.1:{port}\"}}\ntasks:\n  - name: t\n    ack: queued\n    targets: [{{name: f, type: file, path: out.jsonl}}]\n"
        ),
    )
    .unwrap();
    let mut cmd = Command::new(relay_bin());
    cmd.arg("run").arg("--config").arg(&cfg).args(args);
    match rust_log {
        Some(v) => cmd.env("RUST_LOG", v),
        None => cmd.env_remove("RUST_LOG"),
    };
    let log = dir.path().join(format!("promrelay-{port}.log"));
    (Proc::spawn("promrelay", &mut cmd, log), port)
}

/// Run a relay until it is ready, stop it with SIGTERM, and return its log.
async fn run_and_stop(args: &[&str], rust_log: Option<&str>) -> String {
    let dir = TempDir::new("logs");
    let (mut proc, port) = spawn_relay(&dir, args, rust_log);
    wait_ready(&format!("http://127.0.0.1:{port}"), &mut proc).await;
    let status = proc
        .terminate(Duration::from_secs(30))
        .expect("exits on SIGTERM");
    assert!(status.success(), "{status}");
    proc.log_text()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_logfmt_or_json_without_escape_codes_and_say_what_runs_and_what_was_left() {
    let logfmt = run_and_stop(&[], None).await;
    assert!(
        !logfmt.contains('\x1b'),
        "escape codes in a log file:\n{logfmt}"
    );
    for line in logfmt.lines() {
        assert!(line.starts_with("ts="), "{line}");
        let fields = logfmt_fields(line);
        assert!(
            fields.contains_key("level") && fields.contains_key("msg"),
            "{line}"
        );
    }
    let target = logfmt
        .lines()
        .find(|l| l.contains("msg=target "))
        .expect("a startup line per target");
    let f = logfmt_fields(target);
    assert_eq!(f["ack"], "queued", "{target}");
    assert_eq!(f["type"], "file", "{target}");
    assert!(
        !f.contains_key("spool"),
        "no spool: the field is left out: {target}"
    );
    assert!(logfmt.contains("msg=listening addr=127.0.0.1:"), "{logfmt}");
    assert!(
        logfmt.contains("msg=drained task=t target=f delivered=0 dropped=0"),
        "{logfmt}"
    );

    let json = run_and_stop(&["--log.format", "json"], None).await;
    let mut messages = Vec::new();
    for line in json.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        messages.push(v["message"].as_str().unwrap_or_default().to_owned());
        if v["message"] == "target" {
            assert_eq!(v["ack"], "queued", "{line}");
            assert_eq!(v["target"], "f", "{line}");
            assert!(v.get("spool").is_none(), "{line}");
        }
    }
    assert!(messages.iter().any(|m| m == "listening"), "{json}");
    assert!(messages.iter().any(|m| m == "stopped"), "{json}");

    // --log.level warn hides the info lines; RUST_LOG, when set, overrides the flag.
    let quiet = run_and_stop(&["--log.level", "warn"], None).await;
    assert!(!quiet.contains("level=info"), "{quiet}");
    let overridden = run_and_stop(&["--log.level", "warn"], Some("info")).await;
    assert!(overridden.contains("level=info"), "{overridden}");
}

/// Split a logfmt line into its fields (quoted values unescaped).
fn logfmt_fields(line: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = line;
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once('=')
            .unwrap_or_else(|| panic!("no = in {rest:?} of {line}"));
        let (value, after) = if let Some(q) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = q.char_indices();
            let mut end = q.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, e)) = chars.next() {
                            value.push(match e {
                                'n' => '\n',
                                other => other,
                            });
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            (value, &q[end..])
        } else {
            let end = after.find(' ').unwrap_or(after.len());
            (after[..end].to_owned(), &after[end..])
        };
        assert!(
            !key.is_empty() && !key.contains(' '),
            "bad key {key:?} in {line}"
        );
        out.insert(key.to_owned(), value);
        rest = after.trim_start();
    }
    out
}
