//! `promrelay verify` and `POST /api/v1/tasks/{name}/verify` against real, misconfigured
//! Prometheus peers: each gets its ✗ with the FAQ's fix, a well-configured receiver passes
//! every check, and the exit code says which.

mod common;

use common::*;
use hyper::Method;
use serde_json::Value;
use std::process::Command;

/// bcrypt of "s3cret" (as in tests/prometheus_tls_auth.rs).
const S3CRET_BCRYPT: &str = "$2b$12$ox2GqsHF/MRnksriMl9s2.4PVARwKGE3/xikwcO6aA.HtLdNHVkfK";

/// A task named `name` with one remote_write target `extra` adds keys to.
fn task(name: &str, url: &str, extra: &str) -> String {
    format!(
        "  - name: {name}\n    targets: [{{name: rw, type: remote_write, url: \"{url}\", timeout: 5s{extra}}}]\n"
    )
}

/// Run `promrelay verify` on `config`: (exit code, the JSON report, the text report).
fn verify(dir: &TempDir, config: &str, task: Option<&str>) -> (i32, Value, String) {
    let file = dir.path().join("verify.yaml");
    std::fs::write(&file, config).unwrap();
    let run = |json: bool| {
        let mut cmd = Command::new(relay_bin());
        cmd.arg("verify").arg("--config").arg(&file);
        if let Some(t) = task {
            cmd.arg("--task").arg(t);
        }
        if json {
            cmd.arg("--output").arg("json");
        }
        cmd.output().unwrap()
    };
    let json = run(true);
    let text = run(false);
    assert_eq!(json.status.code(), text.status.code());
    let v: Value = serde_json::from_slice(&json.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&json.stdout)));
    (
        json.status.code().unwrap_or(-1),
        v,
        String::from_utf8_lossy(&text.stdout).into_owned(),
    )
}

/// The check named `check` of the only target of task `task` in a report.
fn check<'a>(report: &'a Value, task: &str, check: &str) -> &'a Value {
    let t = report["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["task"] == task)
        .unwrap_or_else(|| panic!("no task {task} in {report}"));
    t["targets"][0]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == check)
        .unwrap_or_else(|| panic!("no check {check} in {t}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_misconfigured_prometheus_gets_its_cross_and_fix() {
    let good = Prometheus::receiver().await;
    let no_receiver = Prometheus::start(RECEIVER_CONFIG, false).await;
    let no_window = Prometheus::start("global:\n  scrape_interval: 1h\n", true).await;
    let web = format!("basic_auth_users:\n  relay: {S3CRET_BCRYPT}\n");
    let guarded = Prometheus::start_with(RECEIVER_CONFIG, true, Some(&web)).await;
    let closed = free_port();
    let dir = TempDir::new("verify");
    let config = format!(
        "tasks:\n{}{}{}{}{}{}",
        task("good", &good.write_url(), ""),
        task("no-receiver", &no_receiver.write_url(), ""),
        task("no-window", &no_window.write_url(), ""),
        task(
            "wrong-password",
            &guarded.write_url(),
            ", basic_auth: {username: relay, password: wrong}"
        ),
        task(
            "right-password",
            &guarded.write_url(),
            ", basic_auth: {username: relay, password: s3cret}"
        ),
        task(
            "closed",
            &format!("http://127.0.0.1:{closed}/api/v1/write"),
            ""
        ),
    );

    // The good receiver alone: every check passes, exit 0.
    let (code, r, text) = verify(&dir, &config, Some("good"));
    assert_eq!(code, 0, "{text}");
    assert_eq!(r["ok"], true);
    for c in r["tasks"][0]["targets"][0]["checks"].as_array().unwrap() {
        assert!(
            c["outcome"] == "ok"
                || ((c["check"] == "tls" || c["check"] == "certificate")
                    && c["outcome"] == "skipped"),
            "{c}"
        );
    }
    assert!(text.contains("✓ remote_write receiver"), "{text}");
    assert!(text.contains("✓ prometheus version"), "{text}");
    assert!(text.contains("✓ out_of_order_time_window"), "{text}");

    // All of them: exit 1, and each failure says what to do.
    let (code, r, text) = verify(&dir, &config, None);
    assert_eq!(code, 1, "{text}");
    assert_eq!(r["ok"], false);

    let c = check(&r, "no-receiver", "remote_write receiver");
    assert_eq!(c["outcome"], "failed", "{c}");
    assert!(
        c["hint"]
            .as_str()
            .unwrap()
            .contains("--web.enable-remote-write-receiver"),
        "{c}"
    );

    let c = check(&r, "no-window", "remote_write receiver");
    assert_eq!(c["outcome"], "ok", "{c}");
    let c = check(&r, "no-window", "out_of_order_time_window");
    assert_eq!(c["outcome"], "failed", "{c}");
    assert!(
        c["hint"]
            .as_str()
            .unwrap()
            .contains("storage.tsdb.out_of_order_time_window"),
        "{c}"
    );

    let c = check(&r, "wrong-password", "remote_write receiver");
    assert_eq!(c["outcome"], "failed", "{c}");
    assert!(c["detail"].as_str().unwrap().contains("401"), "{c}");
    assert!(c["hint"].as_str().unwrap().contains("basic_auth"), "{c}");
    // With the wrong password the API cannot be asked either: said so, not failed.
    let c = check(&r, "wrong-password", "prometheus version");
    assert_eq!(c["outcome"], "skipped", "{c}");

    let c = check(&r, "right-password", "out_of_order_time_window");
    assert_eq!(c["outcome"], "ok", "{c}");

    let c = check(&r, "closed", "connect");
    assert_eq!(c["outcome"], "failed", "{c}");
    assert!(c["hint"].as_str().unwrap().contains("listening"), "{c}");
    let c = check(&r, "closed", "remote_write receiver");
    assert_eq!(c["outcome"], "skipped", "{c}");

    assert!(text.contains("✗ connect"), "{text}");
    assert!(
        text.contains("— fix: the remote-write receiver is not enabled"),
        "{text}"
    );

    // A task that is not there: exit 2.
    let (code, _, _) = {
        let file = dir.path().join("verify.yaml");
        let out = Command::new(relay_bin())
            .args(["verify", "--task", "nope", "--config"])
            .arg(&file)
            .output()
            .unwrap();
        (out.status.code().unwrap_or(-1), (), ())
    };
    assert_eq!(code, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_verifies_a_task_and_its_page_shows_the_result() {
    let no_receiver = Prometheus::start(RECEIVER_CONFIG, false).await;
    let relay = Relay::start(&format!(
        "tasks:\n{}  - name: files\n    targets: [{{name: f, type: file, path: \"{{dir}}/x.jsonl\"}}]\n",
        task("to-prom", &no_receiver.write_url(), "")
    ))
    .await;
    let url = format!("{}/api/v1/tasks/to-prom/verify", relay.base());
    let r = http(Method::POST, &url, &[], Vec::new()).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["ok"], false);
    let wrapped = serde_json::json!({"tasks": [v]});
    let c = check(&wrapped, "to-prom", "remote_write receiver");
    assert_eq!(c["outcome"], "failed", "{c}");

    let page = get(&format!("{}/tasks/to-prom", relay.base()))
        .await
        .unwrap()
        .text();
    assert!(page.contains("✗ remote_write receiver"), "{page}");
    assert!(
        page.contains("--web.enable-remote-write-receiver"),
        "{page}"
    );

    let r = http(Method::GET, &url, &[], Vec::new()).await.unwrap();
    assert_eq!(r.status, 405);
    let r = http(
        Method::POST,
        &format!("{}/api/v1/tasks/nope/verify", relay.base()),
        &[],
        Vec::new(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_a_missing_topic_fails_and_an_existing_one_takes_a_test_message() {
    let tansu = Tansu::start().await;
    tansu.create_topic("present", 2);
    let dir = TempDir::new("verify-kafka");
    let kafka = |name: &str, topic: &str| {
        format!(
            "  - name: {name}\n    targets: [{{name: k, type: kafka, brokers: \"{}\", topic: {topic}}}]\n",
            tansu.brokers()
        )
    };
    let config = format!(
        "tasks:\n{}{}",
        kafka("missing", "absent"),
        kafka("present", "present")
    );
    let (code, r, text) = verify(&dir, &config, Some("missing"));
    assert_eq!(code, 1, "{text}");
    assert_eq!(check(&r, "missing", "brokers")["outcome"], "ok", "{text}");
    let c = check(&r, "missing", "topic");
    assert_eq!(c["outcome"], "failed", "{text}");
    assert!(
        c["hint"].as_str().unwrap().contains("create the topic"),
        "{c}"
    );

    let file = dir.path().join("verify.yaml");
    let out = Command::new(relay_bin())
        .args([
            "verify",
            "--task",
            "present",
            "--produce-test",
            "--output",
            "json",
            "--config",
        ])
        .arg(&file)
        .output()
        .unwrap();
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{r}");
    assert!(
        check(&r, "present", "topic")["detail"]
            .as_str()
            .unwrap()
            .contains("2 partition(s)"),
        "{r}"
    );
    assert_eq!(check(&r, "present", "produce test")["outcome"], "ok", "{r}");

    // A closed broker port: the brokers check fails and says what to check.
    drop(tansu);
    let (code, r, text) = verify(&dir, &config, Some("present"));
    assert_eq!(code, 1, "{text}");
    let c = check(&r, "present", "brokers");
    assert_eq!(c["outcome"], "failed", "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_the_certificate_are_checked_against_the_configured_ca() {
    let certs = TempDir::new("verify-certs");
    make_certs(certs.path());
    // Another CA (same name, other key): trusting it is trusting the wrong CA.
    let other = TempDir::new("verify-other-ca");
    make_certs(other.path());
    let web = format!(
        "tls_server_config:\n  cert_file: {dir}/server.pem\n  key_file: {dir}/server.key\n",
        dir = certs.path().display()
    );
    let receiver = Prometheus::start_with(RECEIVER_CONFIG, true, Some(&web)).await;
    let url = format!("https://127.0.0.1:{}/api/v1/write", receiver.port);
    let ca = certs.path().join("ca.pem");
    let dir = TempDir::new("verify-tls");
    let config = format!(
        "tasks:\n{}{}{}",
        task(
            "trusted",
            &url,
            &format!(", tls: {{ca_file: \"{}\"}}", ca.display())
        ),
        task("untrusted", &url, ""),
        task(
            "wrong-ca",
            &url,
            &format!(
                ", tls: {{ca_file: \"{}\"}}",
                other.path().join("ca.pem").display()
            )
        ),
    );
    let (code, r, text) = verify(&dir, &config, Some("trusted"));
    assert_eq!(code, 0, "{text}");
    assert_eq!(check(&r, "trusted", "tls")["outcome"], "ok", "{text}");
    let c = check(&r, "trusted", "certificate");
    assert_eq!(c["outcome"], "ok", "{text}");
    let detail = c["detail"].as_str().unwrap();
    assert!(detail.contains("valid for 127.0.0.1"), "{detail}");
    // make_certs signs for 2 days: so close to the end, the line says to renew it.
    let days = detail
        .split("expires in ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse::<u32>().ok());
    assert!(days.is_some_and(|d| d <= 2), "{detail}");
    assert!(detail.contains("renew it soon"), "{detail}");
    assert!(detail.contains("names 127.0.0.1, localhost"), "{detail}");
    assert!(
        text.contains("✓ certificate: valid for 127.0.0.1"),
        "{text}"
    );
    assert_eq!(
        check(&r, "trusted", "out_of_order_time_window")["outcome"],
        "ok",
        "{text}"
    );

    // The system's roots do not hold the test CA: the handshake works, the certificate not.
    let (code, r, text) = verify(&dir, &config, Some("untrusted"));
    assert_eq!(code, 1, "{text}");
    assert_eq!(check(&r, "untrusted", "tls")["outcome"], "ok", "{text}");
    let c = check(&r, "untrusted", "certificate");
    assert_eq!(c["outcome"], "failed", "{text}");
    assert!(
        c["hint"]
            .as_str()
            .unwrap()
            .contains("unknown CA: set tls.ca_file"),
        "{c}"
    );
    assert_eq!(
        check(&r, "untrusted", "remote_write receiver")["outcome"],
        "skipped"
    );

    let (code, r, text) = verify(&dir, &config, Some("wrong-ca"));
    assert_eq!(code, 1, "{text}");
    assert_eq!(check(&r, "wrong-ca", "tls")["outcome"], "ok", "{text}");
    let c = check(&r, "wrong-ca", "certificate");
    assert_eq!(c["outcome"], "failed", "{text}");
    assert!(
        c["detail"]
            .as_str()
            .unwrap()
            .contains("signed by a CA not in tls.ca_file"),
        "{c}"
    );
    assert!(
        c["hint"]
            .as_str()
            .unwrap()
            .contains("point tls.ca_file at the CA that signed"),
        "{c}"
    );
    assert!(
        text.contains("✗ certificate: signed by a CA not in"),
        "{text}"
    );
}
