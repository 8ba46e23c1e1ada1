//! Live tasks: reload (SIGHUP, `POST /-/reload`, a poll of the files) under load without
//! losing a sample, a bad config that changes nothing, a removed target's spool picked up
//! again, the task API and its files, who may change things, and `promrelay tasks`; with real
//! Prometheus receivers and senders.

mod common;

use common::*;
use hyper::Method;
use promrelay::proto::{self, Label, Sample, TimeSeries, WriteRequest};
use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

/// One series per metric name, label `seq`, one sample at `ts`.
fn request(metrics: &[&str], seq: i64, ts: i64) -> WriteRequest {
    WriteRequest {
        timeseries: metrics
            .iter()
            .map(|m| TimeSeries {
                labels: vec![
                    Label::new("__name__", m),
                    Label::new("seq", &seq.to_string()),
                ],
                samples: vec![Sample {
                    value: seq as f64,
                    timestamp: ts,
                }],
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// Add one expected point: series `labels` at (ts, value).
fn expect(want: &mut SeriesMap, labels: &[(&str, &str)], ts: i64, value: f64) {
    let l: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    want.entry(l).or_default().push((ts, value));
}

/// Rewrite the relay's config file (the `server:` block keeps the relay's listen address).
fn write_config(relay: &Relay, server_extra: &str, body: &str) {
    let text = format!(
        "server:\n  listen: \"127.0.0.1:{}\"\n{server_extra}{body}",
        relay.port
    );
    std::fs::write(relay.dir.path().join("promrelay.yaml"), text).unwrap();
}

async fn post(url: &str, headers: &[(&str, &str)], body: &str) -> HttpResponse {
    http(Method::POST, url, headers, body.as_bytes().to_vec())
        .await
        .unwrap()
}

async fn reload(relay: &Relay) -> HttpResponse {
    post(&format!("{}/-/reload", relay.base()), &[], "").await
}

async fn send(relay: &Relay, req: &WriteRequest) {
    let r = remote_write(&relay.write_url(), proto::encode_snappy(req)).await;
    assert_eq!(r.status, 204, "{}", r.text());
}

fn sighup(relay: &Relay) {
    let status = Command::new("kill")
        .arg("-HUP")
        .arg(relay.proc.child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_reloads_under_load_apply_each_filter_to_its_window_and_never_answer_5xx() {
    let receiver = Prometheus::receiver().await;
    let task_body = |round: i64| {
        let (metric, phase) = if round % 2 == 0 {
            ("reload_a", "even")
        } else {
            ("reload_b", "odd")
        };
        format!(
            r#"
tasks:
  - name: switch
    filter: "__name__={metric}"
    labels: "phase={phase}"
    targets: [{{name: r, type: remote_write, url: "{url}", queue: {{batch_send_deadline: 200ms}}}}]
  - name: steady
    filter: "__name__=reload_.*"
    labels: "copy=steady"
    targets: [{{name: r, type: remote_write, url: "{url}", queue: {{batch_send_deadline: 200ms}}}}]
"#,
            url = receiver.write_url()
        )
    };
    let mut relay = Relay::start(&task_body(0)).await;
    // Load that never stops during the reloads: a real Prometheus scraping itself into the
    // relay, and the built-in load generator (bounded by its duration).
    let sender = Prometheus::self_scraping_sender(&relay.write_url()).await;
    let mut bench = Command::new(relay_bin())
        .args([
            "bench",
            "--quiet",
            "--url",
            &relay.write_url(),
            "--duration",
            "60",
        ])
        .args(["--series", "500", "--connections", "2"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();

    let base = now_ms() - 60_000;
    let mut want_a = SeriesMap::new();
    let mut want_b = SeriesMap::new();
    for round in 0..21i64 {
        if round > 0 {
            write_config(&relay, "", &task_body(round));
            // Alternate the two triggers: POST /-/reload answers once the new config runs;
            // SIGHUP is checked through the reload counter.
            if round % 2 == 0 {
                let r = reload(&relay).await;
                assert_eq!(r.status, 200, "{}", r.text());
                assert!(
                    r.text()
                        .contains("2 unchanged, 0 started, 0 restarted, 0 removed"),
                    "only filter and labels changed, the targets keep running: {}",
                    r.text()
                );
            } else {
                let before = relay
                    .metric("promrelay_config_reloads_total{result=\"success\"}")
                    .await
                    .unwrap_or_default();
                sighup(&relay);
                relay
                    .wait_metric(
                        "promrelay_config_reloads_total{result=\"success\"}",
                        "the SIGHUP reload",
                        |v| v > before,
                    )
                    .await;
            }
        }
        let ts = base + round * 1000;
        send(&relay, &request(&["reload_a", "reload_b"], round, ts)).await;
        let seq = round.to_string();
        let v = round as f64;
        // The steady task takes both every time; the switched task only its window's metric.
        expect(
            &mut want_a,
            &[("__name__", "reload_a"), ("seq", &seq), ("copy", "steady")],
            ts,
            v,
        );
        expect(
            &mut want_b,
            &[("__name__", "reload_b"), ("seq", &seq), ("copy", "steady")],
            ts,
            v,
        );
        if round % 2 == 0 {
            expect(
                &mut want_a,
                &[("__name__", "reload_a"), ("seq", &seq), ("phase", "even")],
                ts,
                v,
            );
        } else {
            expect(
                &mut want_b,
                &[("__name__", "reload_b"), ("seq", &seq), ("phase", "odd")],
                ts,
                v,
            );
        }
    }
    receiver
        .wait_for_series(
            "reload_a",
            "5m",
            &want_a,
            "each reload_a sample as its window's config said",
        )
        .await;
    receiver
        .wait_for_series(
            "reload_b",
            "5m",
            &want_b,
            "each reload_b sample as its window's config said",
        )
        .await;
    let _ = bench.kill();
    let _ = bench.wait();
    drop(sender);
    let text = get(&format!("{}/metrics", relay.base()))
        .await
        .unwrap()
        .text();
    let server_errors: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("promrelay_requests_total{") && l.contains("code=\"5"))
        .collect();
    assert!(
        server_errors.is_empty(),
        "answered 5xx during reloads: {server_errors:?}"
    );
    let reloads = relay
        .metric("promrelay_config_reloads_total{result=\"success\"}")
        .await;
    assert_eq!(reloads, Some(21.0), "the start and 20 reloads");
    assert_eq!(
        relay
            .metric("promrelay_config_last_reload_successful")
            .await,
        Some(1.0)
    );
    let log = relay.proc.log_text();
    let timed = log
        .lines()
        .filter(|l| l.contains("config reloaded") && l.contains(" took="))
        .count();
    assert_eq!(timed, 20, "each reload logs how long it took:\n{log}");
    relay.terminate_and_restart(Duration::from_secs(20)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_config_changes_nothing_and_says_why() {
    let receiver = Prometheus::receiver().await;
    let good = format!(
        r#"
tasks:
  - name: keep
    filter: "__name__=bad_reload_test"
    targets: [{{name: r, type: remote_write, url: "{}", queue: {{batch_send_deadline: 200ms}}}}]
"#,
        receiver.write_url()
    );
    let relay = Relay::start(&good).await;
    let hash = relay.metric("promrelay_config_hash").await;
    let base = now_ms() - 60_000;
    let mut want = SeriesMap::new();

    write_config(
        &relay,
        "",
        &good.replace("__name__=bad_reload_test", "__name__=(unclosed"),
    );
    let r = reload(&relay).await;
    assert_eq!(r.status, 400);
    assert!(
        r.text().contains("tasks[0].filter") && r.text().contains("(unclosed"),
        "{}",
        r.text()
    );
    assert_eq!(
        relay
            .metric("promrelay_config_last_reload_successful")
            .await,
        Some(0.0)
    );
    assert_eq!(
        relay
            .metric("promrelay_config_reloads_total{result=\"failure\"}")
            .await,
        Some(1.0)
    );
    assert_eq!(
        relay.metric("promrelay_config_hash").await,
        hash,
        "the old config runs"
    );
    // The old task still delivers.
    send(&relay, &request(&["bad_reload_test"], 1, base)).await;
    expect(
        &mut want,
        &[("__name__", "bad_reload_test"), ("seq", "1")],
        base,
        1.0,
    );
    receiver
        .wait_for_series(
            "bad_reload_test",
            "5m",
            &want,
            "the old task still delivering",
        )
        .await;

    // A server key a running process cannot change: refused, naming it.
    let other = free_port();
    std::fs::write(
        relay.dir.path().join("promrelay.yaml"),
        format!("server:\n  listen: \"127.0.0.1:{other}\"\n{good}"),
    )
    .unwrap();
    let r = reload(&relay).await;
    assert_eq!(r.status, 400);
    assert!(
        r.text().contains("server.listen cannot change"),
        "{}",
        r.text()
    );

    // Fixed: reloads again.
    write_config(&relay, "", &good);
    let r = reload(&relay).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        relay
            .metric("promrelay_config_last_reload_successful")
            .await,
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_target_keeps_its_spool_and_delivers_everything_when_re_added() {
    let port = free_port(); // the receiver starts at the end
    let with_target = format!(
        r#"
tasks:
  - name: stays
    filter: "__name__=nothing_matches_this"
    targets: [{{name: f, type: file, path: "{{dir}}/stays.jsonl"}}]
  - name: durable
    filter: "__name__=removed_spool_test"
    targets:
      - name: r
        type: remote_write
        url: http://127.0.0.1:{port}/api/v1/write
        queue: {{shards: 2, min_backoff: 50ms, max_backoff: 500ms}}
        spool: {{dir: "{{dir}}/spool"}}
"#
    );
    let relay = Relay::start(&with_target).await;
    let dir = relay.dir.path().display().to_string();
    let without = format!(
        r#"
tasks:
  - name: stays
    filter: "__name__=nothing_matches_this"
    targets: [{{name: f, type: file, path: "{dir}/stays.jsonl"}}]
"#
    );
    let base = now_ms() - 60_000;
    let mut want = SeriesMap::new();
    for seq in 0..30i64 {
        send(
            &relay,
            &request(&["removed_spool_test"], seq, base + seq * 1000),
        )
        .await;
        expect(
            &mut want,
            &[
                ("__name__", "removed_spool_test"),
                ("seq", &seq.to_string()),
            ],
            base + seq * 1000,
            seq as f64,
        );
    }
    let spool_bytes = "promrelay_target_spool_bytes{task=\"durable\",target=\"r\"}";
    relay
        .wait_metric(spool_bytes, "data in the spool", |v| v > 0.0)
        .await;

    // Removed while its receiver is down: its series leave /metrics, its spool stays.
    write_config(&relay, "", &without);
    let r = reload(&relay).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("1 removed [durable/r]"), "{}", r.text());
    eventually(
        Duration::from_secs(30),
        "the removed target's metrics gone",
        || async {
            match relay.metric(spool_bytes).await {
                None => Ok(()),
                Some(v) => Err(format!("still there: {v}")),
            }
        },
    )
    .await;
    let segments = std::fs::read_dir(relay.dir.path().join("spool/lane-0"))
        .unwrap()
        .count();
    assert!(segments > 1, "the spool stays on disk");

    // Re-added: it picks its spool up again, and delivers all of it once the receiver is up.
    write_config(&relay, "", &with_target.replace("{dir}", &dir));
    let r = reload(&relay).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("1 started [durable/r]"), "{}", r.text());
    let receiver = Prometheus::receiver_on(port).await;
    receiver
        .wait_for_series("removed_spool_test", "5m", &want, "every spooled sample")
        .await;
}

/// Requests carrying `api_a` (the API-made task's metric) and `api_control` (a task of the main
/// file's, the barrier): once a request's control sample is at the receiver, its `api_a`
/// sample either is too or was not delivered.
struct Flow {
    base: i64,
    want_a: SeriesMap,
    want_control: SeriesMap,
}

impl Flow {
    /// Send request `seq`; wait for its control sample, then check `api_a` is exactly what
    /// was delivered so far (this request's included when `delivered`).
    async fn step(
        &mut self,
        relay: &Relay,
        receiver: &Prometheus,
        seq: i64,
        delivered: bool,
        what: &str,
    ) {
        let ts = self.base + seq * 1000;
        let s = seq.to_string();
        expect(
            &mut self.want_control,
            &[("__name__", "api_control"), ("seq", &s)],
            ts,
            seq as f64,
        );
        if delivered {
            expect(
                &mut self.want_a,
                &[("__name__", "api_a"), ("seq", &s)],
                ts,
                seq as f64,
            );
        }
        send(relay, &request(&["api_a", "api_control"], seq, ts)).await;
        receiver
            .wait_for_series("api_control", "5m", &self.want_control, "control")
            .await;
        receiver
            .wait_for_series("api_a", "5m", &self.want_a, what)
            .await;
    }
}

/// An API write with a JSON body (and extra headers), as curl would send it.
async fn api(method: Method, url: &str, headers: &[(&str, &str)], body: &str) -> HttpResponse {
    http(method, url, headers, body.as_bytes().to_vec())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_made_through_the_api_run_change_and_survive_a_restart() {
    let receiver = Prometheus::receiver().await;
    let main = format!(
        r#"
tasks:
  - name: control
    filter: "__name__=api_control"
    targets: [{{name: r, type: remote_write, url: "{url}", queue: {{batch_send_deadline: 100ms}}}}]
"#,
        url = receiver.write_url()
    );
    let relay = Relay::start(&format!("  admin:\n    tasks_dir: tasks\n{main}")).await;
    let tasks = format!("{}/api/v1/tasks", relay.base());
    let task = |metric: &str| {
        format!(
            r#"{{"description": "made by the test", "filter": "__name__={metric}",
               "targets": [{{"name": "r", "type": "remote_write", "url": "{}",
                            "queue": {{"batch_send_deadline": "100ms"}}}}]}}"#,
            receiver.write_url()
        )
    };
    // Create.
    let r = api(Method::PUT, &format!("{tasks}/made"), &[], &task("api_a")).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let etag = r.headers.get("etag").unwrap().to_str().unwrap().to_owned();
    let file = relay.dir.path().join("tasks/made.yaml");
    assert!(file.is_file(), "the API writes {}", file.display());

    // Data flows to it; `control` (in the main file) is the barrier that shows a request was
    // fully processed, so a sample that did not arrive with it was not delivered.
    let mut flow = Flow {
        base: now_ms() - 60_000,
        want_a: SeriesMap::new(),
        want_control: SeriesMap::new(),
    };
    flow.step(&relay, &receiver, 1, true, "the new task delivers")
        .await;

    // Disable: nothing more; enable: again.
    let r = api(Method::POST, &format!("{tasks}/made/disable"), &[], "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    flow.step(
        &relay,
        &receiver,
        2,
        false,
        "the disabled task delivers nothing",
    )
    .await;
    let r = api(Method::POST, &format!("{tasks}/made/enable"), &[], "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    flow.step(&relay, &receiver, 3, true, "enabled again").await;

    // Edit with a stale ETag: 412; with the current one: the new filter applies.
    let r = api(
        Method::PUT,
        &format!("{tasks}/made"),
        &[("If-Match", &etag)],
        &task("api_b"),
    )
    .await;
    assert_eq!(
        r.status,
        412,
        "enable/disable changed the task since: {}",
        r.text()
    );
    let current = get(&format!("{tasks}/made")).await.unwrap();
    let etag = current
        .headers
        .get("etag")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let r = api(
        Method::PUT,
        &format!("{tasks}/made"),
        &[("If-Match", &etag)],
        &task("api_b"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    flow.step(
        &relay,
        &receiver,
        4,
        false,
        "the edited filter no longer takes api_a",
    )
    .await;

    // A bad body: 400 naming the field and the regex's problem; nothing written.
    let before = std::fs::read_to_string(&file).unwrap();
    let r = api(Method::PUT, &format!("{tasks}/made"), &[], &task("(oops")).await;
    assert_eq!(r.status, 400);
    assert!(
        r.text().contains("tasks[0].filter") && r.text().contains("(oops"),
        "{}",
        r.text()
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), before);

    // The main file's task is read-only here; unknown tasks are 404; a huge body 413.
    let r = api(Method::PUT, &format!("{tasks}/control"), &[], &task("x")).await;
    assert_eq!(r.status, 409);
    assert!(r.text().contains("promrelay.yaml"), "{}", r.text());
    assert_eq!(get(&format!("{tasks}/nope")).await.unwrap().status, 404);
    let r = api(
        Method::PUT,
        &format!("{tasks}/big"),
        &[],
        &"x".repeat(2 << 20),
    )
    .await;
    assert_eq!(r.status, 413);

    // The list shows both, with their files and status.
    let list: serde_json::Value = serde_json::from_slice(&get(&tasks).await.unwrap().body).unwrap();
    let names: Vec<&str> = list["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["control", "made"]);
    assert_eq!(list["tasks"][0]["writable"], false);
    assert_eq!(list["tasks"][1]["writable"], true);
    assert_eq!(list["tasks"][1]["status"]["targets"][0]["state"], "healthy");

    // A restart keeps API-made tasks (they are files).
    let mut relay = relay;
    relay.terminate_and_restart(Duration::from_secs(20)).await;
    let r = get(&format!("{tasks}/made")).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("api_b"), "{}", r.text());

    // Delete: the file goes, and so does the task.
    let r = api(Method::DELETE, &format!("{tasks}/made"), &[], "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(!file.exists());
    assert_eq!(get(&format!("{tasks}/made")).await.unwrap().status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_credentials_guard_changes_and_the_cli_applies_idempotently() {
    let relay = Relay::start(
        "  admin:\n    tasks_dir: tasks\n    bearer_token: s3cret\ntasks:\n  - name: base\n    targets: [{name: f, type: file, path: out.jsonl}]\n",
    )
    .await;
    let tasks = format!("{}/api/v1/tasks", relay.base());
    // Without the token: 401 everywhere but health; with it: 200.
    assert_eq!(get(&tasks).await.unwrap().status, 401);
    assert_eq!(reload(&relay).await.status, 401);
    assert_eq!(
        get(&format!("{}/metrics", relay.base()))
            .await
            .unwrap()
            .status,
        401
    );
    assert_eq!(
        get(&format!("{}/-/healthy", relay.base()))
            .await
            .unwrap()
            .status,
        200
    );
    let r = api(
        Method::GET,
        &tasks,
        &[("Authorization", "bearer s3cret")],
        "",
    )
    .await;
    assert_eq!(
        r.status,
        200,
        "the scheme is case-insensitive: {}",
        r.text()
    );
    let r = api(
        Method::GET,
        &tasks,
        &[("Authorization", "Bearer wrong")],
        "",
    )
    .await;
    assert_eq!(r.status, 401);

    // The CLI: apply twice (created, then unchanged), list, wrong token exit 1.
    let token = relay.dir.path().join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let file = relay.dir.path().join("apply.yaml");
    std::fs::write(
        &file,
        "tasks:\n  - name: cli-made\n    filter: __name__=up\n    targets: [{name: f, type: file, path: cli.jsonl}]\n",
    )
    .unwrap();
    let cli = |args: &[&str], token: &std::path::Path| {
        let out = Command::new(relay_bin())
            .args(["tasks", "--url", &relay.base(), "--token-file"])
            .arg(token)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let file_arg = file.to_str().unwrap();
    let (code, out, err) = cli(&["apply", "-f", file_arg], &token);
    assert_eq!((code, out.trim()), (Some(0), "cli-made: created"), "{err}");
    let (code, out, err) = cli(&["apply", "-f", file_arg], &token);
    assert_eq!(
        (code, out.trim()),
        (Some(0), "cli-made: unchanged"),
        "{err}"
    );
    let (code, out, _) = cli(&["list"], &token);
    assert_eq!(code, Some(0));
    assert!(out.contains("cli-made") && out.contains("base"), "{out}");
    let (code, out, _) = cli(&["get", "cli-made"], &token);
    assert_eq!(code, Some(0));
    assert!(out.contains("__name__=up"), "{out}");
    let wrong = relay.dir.path().join("wrong");
    std::fs::write(&wrong, "nope").unwrap();
    let (code, _, err) = cli(&["list"], &wrong);
    assert_eq!(code, Some(1), "the relay refused: {err}");
    let (code, _, _) = cli(&["disable", "cli-made"], &token);
    assert_eq!(code, Some(0));
    let (code, _, err) = cli(&["delete", "cli-made"], &token);
    assert_eq!(code, Some(0), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_files_are_polled_when_asked_and_task_files_join_the_config() {
    let receiver = Prometheus::receiver().await;
    let dir = TempDir::new("relay-poll");
    let port = free_port();
    let config = dir.path().join("promrelay.yaml");
    std::fs::create_dir_all(dir.path().join("tasks.d")).unwrap();
    std::fs::write(
        &config,
        format!("server:\n  listen: \"127.0.0.1:{port}\"\ntask_files: [\"tasks.d/*.yaml\"]\n"),
    )
    .unwrap();
    let mut cmd = Command::new(relay_bin());
    cmd.args(["run", "--config"])
        .arg(&config)
        .args(["--config.auto-reload-interval", "1s"]);
    let mut proc = Proc::spawn("promrelay", &mut cmd, dir.path().join("promrelay.log"));
    let base_url = format!("http://127.0.0.1:{port}");
    wait_ready(&base_url, &mut proc).await;
    // A task file appears: the poll picks it up.
    std::fs::write(
        dir.path().join("tasks.d/polled.yaml"),
        format!(
            "tasks:\n  - name: polled\n    filter: __name__=poll_test\n    targets: [{{name: r, type: remote_write, url: \"{}\", queue: {{batch_send_deadline: 100ms}}}}]\n",
            receiver.write_url()
        ),
    )
    .unwrap();
    eventually(Duration::from_secs(30), "the polled task", || async {
        let r = get(&format!("{base_url}/api/v1/tasks/polled")).await?;
        if r.status == 200 {
            Ok(())
        } else {
            Err(r.text())
        }
    })
    .await;
    let ts = now_ms() - 10_000;
    let r = remote_write(
        &format!("{base_url}/api/v1/write"),
        proto::encode_snappy(&request(&["poll_test"], 7, ts)),
    )
    .await;
    assert_eq!(r.status, 204);
    let mut want = SeriesMap::new();
    expect(
        &mut want,
        &[("__name__", "poll_test"), ("seq", "7")],
        ts,
        7.0,
    );
    receiver
        .wait_for_series("poll_test", "5m", &want, "the polled task delivers")
        .await;
    // The same name in a second file: refused, naming both places; the old config stays.
    std::fs::write(
        dir.path().join("tasks.d/twice.yaml"),
        "tasks:\n  - name: polled\n    targets: [{name: f, type: file, path: x.jsonl}]\n",
    )
    .unwrap();
    eventually(Duration::from_secs(30), "the failed reload", || async {
        let text = get(&format!("{base_url}/metrics")).await?.text();
        if text.contains("promrelay_config_last_reload_successful 0") {
            Ok(())
        } else {
            Err("not yet".into())
        }
    })
    .await;
    let log = proc.log_text();
    assert!(
        log.contains("twice.yaml: tasks[0].name") && log.contains("polled.yaml: tasks[0]"),
        "the error names both places: {log}"
    );
    assert_eq!(
        get(&format!("{base_url}/api/v1/tasks/polled"))
            .await
            .unwrap()
            .status,
        200
    );
}
