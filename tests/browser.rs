//! The status page in a real browser: headless Chromium (Debian's `chromium` and
//! `chromium-driver`, driven by pip's `selenium`; `tests/run-all.sh` installs them) opens the
//! page of a relay fed by a real Prometheus with one healthy and one down target, reads the
//! DOM, clicks Disable on a task page and sees the change through the API, fills the tap
//! table, and saves screenshots under `target/tmp/` for a person to look at.
//! Kept in its own file so the rest of the suite runs without a browser.

mod common;

use common::*;
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_in_headless_chromium_shows_states_and_its_buttons_work() {
    assert!(
        std::path::Path::new("/usr/bin/chromedriver").exists(),
        "needs Debian's chromium and chromium-driver, and pip's selenium: tests/run-all.sh installs them"
    );
    let receiver = Prometheus::receiver().await;
    let closed = free_port();
    let relay = Relay::start(&format!(
        r#"  admin:
    tasks_dir: tasks
tasks:
  - name: to-central
    description: Prometheus' own series to the central one
    filter: "__name__=~prometheus_.*"
    labels: {{relay: edge-1}}
    targets:
      - {{name: central, type: remote_write, url: "{}", queue: {{batch_send_deadline: 200ms}}}}
      - {{name: gone, type: remote_write, url: "http://127.0.0.1:{closed}/api/v1/write", queue: {{batch_send_deadline: 200ms, min_backoff: 50ms, max_backoff: 100ms}}}}
"#,
        receiver.write_url()
    ))
    .await;
    let r = http(
        hyper::Method::PUT,
        &format!("{}/api/v1/tasks/made", relay.base()),
        &[],
        br#"{"filter": "__name__=up", "targets": [{"name": "f", "type": "file", "path": "made.jsonl"}]}"#.to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    let _sender = Prometheus::self_scraping_sender(&relay.write_url()).await;
    // Wait until the page has rates and the closed port is `down`.
    eventually(Duration::from_secs(60), "rates and a down target", || {
        let relay = &relay;
        async move {
            let r = get(&format!("{}/api/v1/tasks/to-central", relay.base())).await?;
            let v: Value = serde_json::from_slice(&r.body).map_err(|e| e.to_string())?;
            let ok = v["status"]["matched_per_second"].as_f64().unwrap_or(0.0) > 0.0
                && v["status"]["targets"][1]["state"] == "down"
                && v["status"]["targets"][0]["p99_send_seconds"]
                    .as_f64()
                    .unwrap_or(0.0)
                    > 0.0;
            if ok { Ok(()) } else { Err(v.to_string()) }
        }
    })
    .await;

    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser");
    std::fs::create_dir_all(&shots).unwrap();
    let out = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/browser_check.py"
        ))
        .arg(relay.base())
        .arg(&shots)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dom: Value = serde_json::from_slice(&out.stdout).unwrap();

    let matched: f64 = dom["matched"].as_str().unwrap().parse().unwrap();
    assert!(matched > 0.0, "{dom}");
    let targets = dom["targets"].as_array().unwrap();
    assert_eq!(targets[0]["name"], "central");
    assert_eq!(targets[0]["state"], "healthy", "{dom}");
    let p99 = targets[0]["p99"].as_str().unwrap();
    assert!(
        p99.strip_suffix(" ms")
            .or(p99.strip_suffix(" s"))
            .and_then(|n| n.parse::<f64>().ok())
            .is_some_and(|n| n > 0.0),
        "the healthy target shows its p99 send latency: {dom}"
    );
    assert_eq!(targets[1]["name"], "gone");
    assert_eq!(targets[1]["state"], "down", "{dom}");
    assert!(
        targets[1]["error"].as_str().unwrap().contains("onnect"),
        "the down target shows its error: {dom}"
    );

    assert_eq!(dom["before"], "true");
    assert_eq!(dom["after"], "false", "{dom}");
    let r = get(&format!("{}/api/v1/tasks/made", relay.base()))
        .await
        .unwrap();
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["enabled"], false, "the click went through the API");

    let rows = dom["tap_rows"].as_array().unwrap();
    assert_eq!(rows.len(), 20, "{dom}");
    for row in rows {
        let labels = row[0].as_str().unwrap();
        assert!(labels.contains("__name__=\"prometheus_"), "{labels}");
        assert!(labels.contains("relay=\"edge-1\""), "{labels}");
    }
    assert!(
        dom["tap_trailer"]
            .as_str()
            .unwrap()
            .starts_with("20 samples")
    );
    assert_eq!(dom["js_errors"], serde_json::json!([]), "{dom}");
    assert!(shots.join("status-page.png").is_file());
    assert!(shots.join("task-page.png").is_file());
}
