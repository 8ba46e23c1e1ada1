//! The status page: a relay fed by a real Prometheus, with one healthy and one down target;
//! the page and the JSON it is rendered from (`/api/v1/status`) agree, values are escaped,
//! and a task page's Enable/Disable buttons show only where the API is writable.

mod common;

use common::*;
use hyper::Method;
use serde_json::Value;
use std::time::Duration;

async fn status(relay: &Relay) -> Value {
    let r = get(&format!("{}/api/v1/status", relay.base()))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    serde_json::from_slice(&r.body).unwrap()
}

async fn page(relay: &Relay, path: &str) -> HttpResponse {
    get(&format!("{}{path}", relay.base())).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_a_prometheus_fed_relay_as_its_json_says() {
    let receiver = Prometheus::receiver().await;
    let closed = free_port();
    let main = format!(
        r#"
tasks:
  - name: to-central
    description: "up series <to> the central Prometheus"
    filter: "__name__=~prometheus_.*"
    labels: {{relay: "a&b"}}
    targets:
      - {{name: central, type: remote_write, url: "{url}", queue: {{batch_send_deadline: 200ms}}}}
      - {{name: gone, type: remote_write, url: "http://127.0.0.1:{closed}/api/v1/write", queue: {{batch_send_deadline: 200ms, min_backoff: 50ms, max_backoff: 100ms}}}}
"#,
        url = receiver.write_url()
    );
    let relay = Relay::start(&format!("  admin:\n    tasks_dir: tasks\n{main}")).await;
    // A task made through the API, so it is writable: its page gets the buttons.
    let r = http(
        Method::PUT,
        &format!("{}/api/v1/tasks/made", relay.base()),
        &[],
        format!(
            r#"{{"filter": "__name__=up", "targets": [{{"name": "f", "type": "file", "path": "{}/made.jsonl"}}]}}"#,
            relay.dir.path().display()
        )
        .into_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    let _sender = Prometheus::self_scraping_sender(&relay.write_url()).await;
    // One refused request, to be counted by reason.
    let r = remote_write(&relay.write_url(), b"not snappy".to_vec()).await;
    assert_eq!(r.status, 400, "{}", r.text());

    // Rates need two readings of the counters (5 s apart) after data flowed.
    let st = eventually(
        Duration::from_secs(60),
        "matched/s > 0 and `gone` down",
        || {
            let relay = &relay;
            async move {
                let st = status(relay).await;
                let task = &st["tasks"][0];
                let matched = task["status"]["matched_per_second"].as_f64().unwrap_or(0.0);
                let gone = &task["status"]["targets"][1];
                let p99 = task["status"]["targets"][0]["p99_send_seconds"]
                    .as_f64()
                    .unwrap_or(0.0);
                if matched > 0.0
                    && gone["state"] == "down"
                    && gone["last_error"].is_string()
                    && p99 > 0.0
                {
                    Ok(st)
                } else {
                    Err(format!("{st}"))
                }
            }
        },
    )
    .await;
    assert_eq!(st["tasks"][0]["status"]["targets"][0]["state"], "healthy");
    let src = &st["sources"][0];
    assert!(src["received_per_second"].as_f64().unwrap() > 0.0, "{src}");
    assert!(src["requests_per_second"].as_f64().unwrap() > 0.0, "{src}");
    assert!(src["last_request_time"].as_f64().unwrap() > 0.0, "{src}");
    let refused = src["refused"].as_object().unwrap();
    assert_eq!(
        refused.values().filter_map(Value::as_u64).sum::<u64>(),
        1,
        "{src}"
    );
    assert_eq!(st["config"]["last_reload_successful"], true);

    let r = page(&relay, "/").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.headers.get("content-type").unwrap(),
        "text/html; charset=utf-8"
    );
    let html = r.text();
    // Every task of the JSON has its table, its link and its targets with their states.
    for task in st["tasks"].as_array().unwrap() {
        let name = task["name"].as_str().unwrap();
        assert!(html.contains(&format!("href=\"/tasks/{name}\"")), "{html}");
        for t in task["status"]["targets"].as_array().unwrap() {
            assert!(
                html.contains(&format!(
                    "data-task=\"{name}\" data-target=\"{}\"",
                    t["name"].as_str().unwrap()
                )),
                "{html}"
            );
        }
    }
    let (reason, _) = refused.iter().next().unwrap();
    assert!(html.contains(&format!("{reason}: 1")), "{html}");
    assert!(html.contains("<span class=\"state healthy\">healthy</span>"));
    assert!(html.contains("<span class=\"state down\">down</span>"));
    // The down target's error, escaped as it came from the JSON.
    let error = st["tasks"][0]["status"]["targets"][1]["last_error"]
        .as_str()
        .unwrap();
    assert!(
        html.contains(&promrelay::admin::page::escape(error)),
        "{error} not in {html}"
    );
    assert!(html.contains("up series &lt;to&gt; the central Prometheus"));
    assert!(html.contains("relay=a&amp;b"));
    assert!(!html.contains("<to>"));
    let matched = html
        .split("<b class=\"matched\">")
        .nth(1)
        .and_then(|s| s.split('<').next())
        .unwrap();
    assert!(
        matched.parse::<f64>().is_ok_and(|m| m > 0.0),
        "matched/s on the page: {matched}"
    );
    assert!(html.contains(&format!(
        "{} (revision",
        st["build"]["version"].as_str().unwrap()
    )));
    assert!(html.contains(st["config"]["hash"].as_str().unwrap()));
    // The healthy target's p99 send latency (sends to the real receiver), in its own cell.
    let p99 = html
        .split("data-target=\"central\"")
        .nth(1)
        .and_then(|row| row.split("<td class=\"p99\">").nth(1))
        .and_then(|cell| cell.split('<').next())
        .unwrap_or_else(|| panic!("no p99 cell for central in {html}"));
    assert!(
        p99.strip_suffix(" ms")
            .or(p99.strip_suffix(" s"))
            .and_then(|n| n.parse::<f64>().ok())
            .is_some_and(|n| n > 0.0),
        "p99 on the page: {p99}"
    );

    // Task pages: the file-defined task is read-only, the API-made one has its button,
    // and the button's request changes the task as the API reports it.
    let ro = page(&relay, "/tasks/to-central").await;
    assert_eq!(ro.status, 200);
    assert!(!ro.text().contains("/disable"), "{}", ro.text());
    assert!(ro.text().contains("Read-only here"));
    let made = page(&relay, "/tasks/made").await.text();
    let url = made
        .split("<button id=\"disable\" data-url=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_else(|| panic!("no button in {made}"))
        .to_owned();
    assert_eq!(url, "/api/v1/tasks/made/disable");
    let r = http(
        Method::POST,
        &format!("{}{url}", relay.base()),
        &[],
        Vec::new(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let made = page(&relay, "/tasks/made").await.text();
    assert!(made.contains("<b class=\"enabled\">false</b>"), "{made}");
    assert!(made.contains("id=\"enable\""), "{made}");
    assert_eq!(status(&relay).await["tasks"][1]["enabled"], false);

    assert_eq!(page(&relay, "/tasks/nope").await.status, 404);
    let r = http(Method::POST, &format!("{}/", relay.base()), &[], Vec::new())
        .await
        .unwrap();
    assert_eq!(r.status, 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_admin_credentials_the_page_needs_them_and_then_shows_the_buttons() {
    let relay = Relay::start(
        "  admin:\n    tasks_dir: tasks\n    bearer_token: s3cret\ntasks:\n  - name: base\n    targets: [{name: f, type: file, path: out.jsonl}]\n",
    )
    .await;
    let r = page(&relay, "/").await;
    assert_eq!(r.status, 401);
    let auth = [("authorization", "Bearer s3cret")];
    let r = http(
        Method::GET,
        &format!("{}/", relay.base()),
        &auth,
        Vec::new(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    assert!(r.text().contains("href=\"/tasks/base\""));
    let r = http(
        Method::GET,
        &format!("{}/api/v1/status", relay.base()),
        &auth,
        Vec::new(),
    )
    .await
    .unwrap();
    let st: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(st["may_change"], true);
}
