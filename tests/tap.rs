//! The tap: while a real Prometheus sends, `GET /api/v1/tasks/{name}/tap` streams the samples a
//! target receives (filtered, with task and external labels) as NDJSON or SSE, ends at its
//! limit with a trailer, holds each listener to its rate, allows four listeners per task (429
//! after), and `promrelay tap`
//! prints the same lines.

mod common;

use common::*;
use serde_json::Value;
use std::process::Command;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CONFIG: &str = r#"  admin:
    tasks_dir: tasks
tasks:
  - name: t
    filter: "__name__=~prometheus_.*"
    labels: {tapped: "yes"}
    targets:
      - {name: f, type: file, path: "{dir}/f.jsonl"}
      - {name: g, type: file, path: "{dir}/g.jsonl", external_labels: {ext: e2}}
"#;

async fn tap(relay: &Relay, query: &str, ndjson: bool) -> HttpResponse {
    let headers: &[(&str, &str)] = if ndjson {
        &[("accept", "application/x-ndjson")]
    } else {
        &[]
    };
    http(
        hyper::Method::GET,
        &format!("{}/api/v1/tasks/t/tap?{query}", relay.base()),
        headers,
        Vec::new(),
    )
    .await
    .unwrap()
}

/// A tap opened on a raw connection and never read: a slow listener.
async fn open_unread(relay: &Relay) -> tokio::net::TcpStream {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", relay.port))
        .await
        .unwrap();
    s.write_all(b"GET /api/v1/tasks/t/tap HTTP/1.1\r\nhost: relay\r\n\r\n")
        .await
        .unwrap();
    let mut head = vec![0u8; 12];
    s.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200", "{}", String::from_utf8_lossy(&head));
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tap_streams_what_a_target_receives_while_prometheus_sends() {
    let relay = Relay::start(CONFIG).await;
    let _sender = Prometheus::self_scraping_sender(&relay.write_url()).await;

    // NDJSON from target g: filtered, task label and g's external label, then the trailer.
    let r = tap(&relay, "target=g&limit=30", true).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.headers.get("content-type").unwrap(),
        "application/x-ndjson"
    );
    let lines: Vec<Value> = r
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 31, "30 samples and the trailer");
    for s in &lines[..30] {
        assert!(
            s["__name__"].as_str().unwrap().starts_with("prometheus_"),
            "{s}"
        );
        assert_eq!(s["tapped"], "yes", "{s}");
        assert_eq!(s["ext"], "e2", "{s}");
        assert!(s["value"].is_string() && s["timestamp"].is_string(), "{s}");
    }
    assert_eq!(lines[30]["trailer"]["samples"], 30);

    // SSE from the first target (f, without g's external label).
    let r = tap(&relay, "limit=5", false).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers.get("content-type").unwrap(), "text/event-stream");
    let text = r.text();
    let data: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(data.len(), 6, "{text}");
    assert!(text.contains("event: trailer\n"), "{text}");
    assert!(
        data[..5]
            .iter()
            .all(|s| s.get("ext").is_none() && s["tapped"] == "yes")
    );

    // A listener's rate: one sample per second reaches it, the rest of what the target
    // received meanwhile (Prometheus sends its series in batches) is counted as skipped.
    let r = tap(&relay, "target=g&limit=2&rate=1", true).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let lines: Vec<Value> = r
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "2 samples and the trailer");
    assert_eq!(lines[2]["trailer"]["samples"], 2);
    assert!(
        lines[2]["trailer"]["skipped"].as_u64().unwrap() > 0,
        "{}",
        lines[2]
    );
    let r = tap(&relay, "rate=0", true).await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("rate"), "{}", r.text());

    // Four listeners that never read; a fifth is refused; data keeps flowing meanwhile.
    let mut slow = Vec::new();
    for _ in 0..4 {
        slow.push(open_unread(&relay).await);
    }
    let r = tap(&relay, "limit=1", true).await;
    assert_eq!(r.status, 429, "{}", r.text());
    let series = "promrelay_target_delivered_samples_total{task=\"t\",target=\"f\"}";
    let before = relay.wait_metric(series, "delivered", |v| v > 0.0).await;
    relay
        .wait_metric(series, "delivery goes on beside slow taps", |v| v > before)
        .await;
    drop(slow);
    eventually(
        Duration::from_secs(20),
        "a tap again once the slow ones left",
        || {
            let relay = &relay;
            async move {
                let r = tap(relay, "limit=1", true).await;
                if r.status == 200 {
                    Ok(())
                } else {
                    Err(r.text())
                }
            }
        },
    )
    .await;

    // Unknown task or target.
    let r = tap(&relay, "target=nope", true).await;
    assert_eq!(r.status, 404);
    assert!(r.text().contains("f, g"), "{}", r.text());

    // The command line.
    let out = Command::new(relay_bin())
        .args([
            "tap",
            "--url",
            &relay.base(),
            "--task",
            "t",
            "--target",
            "g",
            "--limit",
            "3",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
    for l in stdout.lines() {
        let s: Value = serde_json::from_str(l).unwrap();
        assert_eq!(s["ext"], "e2");
    }
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"trailer\""));
    let out = Command::new(relay_bin())
        .args(["tap", "--url", &relay.base(), "--task", "nope"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}
