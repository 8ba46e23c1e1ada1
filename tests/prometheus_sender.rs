//! A real Prometheus 2.42 as the *sender*: it scrapes its own `/metrics` and remote-writes to
//! promrelay, which filters and labels and delivers to a second real Prometheus.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_remote_writes_through_the_relay_to_prometheus() {
    let receiver = Prometheus::receiver().await;
    let relay = Relay::start(&format!(
        r#"
tasks:
  - name: self-monitoring
    filter: |
      __name__=up|prometheus_build_info
      job=self
    labels: |
      relayed=yes
    targets:
      - name: central
        type: remote_write
        url: {}
        external_labels: {{relay: r1}}
        queue: {{batch_send_deadline: 200ms}}
"#,
        receiver.write_url()
    ))
    .await;
    let _sender = Prometheus::self_scraping_sender(&relay.write_url()).await;

    let got = eventually(
        Duration::from_secs(60),
        "up and prometheus_build_info at the receiver",
        || async {
            let got = receiver
                .raw_series("{__name__=~\".+\"}", "5m", now_ms())
                .await?;
            let names: BTreeSet<&str> = got.keys().map(|l| l["__name__"].as_str()).collect();
            if names.contains("up") && names.contains("prometheus_build_info") {
                Ok(got.clone())
            } else {
                Err(format!("{names:?}"))
            }
        },
    )
    .await;
    let names: BTreeSet<&str> = got.keys().map(|l| l["__name__"].as_str()).collect();
    assert_eq!(
        names,
        BTreeSet::from(["up", "prometheus_build_info"]),
        "only what the filter keeps arrives"
    );
    for (labels, points) in &got {
        assert_eq!(labels["relayed"], "yes", "{labels:?}");
        assert_eq!(labels["relay"], "r1", "{labels:?}");
        assert_eq!(labels["job"], "self", "{labels:?}");
        assert!(
            points.iter().all(|&(_, v)| v == 1.0),
            "{labels:?} {points:?}"
        );
    }
    // The sender's other series (hundreds) were received and filtered, not lost in silence.
    let filtered = relay
        .metric("promrelay_task_filtered_samples_total{task=\"self-monitoring\"}")
        .await
        .unwrap();
    assert!(filtered > 100.0, "filtered {filtered}");
}

/// A target with one lane passes a real Prometheus' full requests on as the sender compressed
/// them (counted), and the receiver ends up with exactly what the sender scraped: every
/// series, sample and timestamp of a past window, queried from both. (That a passed request
/// keeps its place among ones sent the usual way is `pipeline::pass_through::tests`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_lane_target_passes_prometheus_requests_through_unchanged() {
    let receiver = Prometheus::receiver().await;
    let relay = Relay::start(&format!(
        r#"
tasks:
  - name: mirror
    targets:
      - name: central
        type: remote_write
        url: {}
        queue: {{shards: 1, max_samples_per_send: 400, batch_send_deadline: 200ms}}
"#,
        receiver.write_url()
    ))
    .await;
    // Full requests of 400 samples (a scrape is several hundred) fill the relay's batches of
    // 400 by themselves.
    let sender = Prometheus::start(
        &format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: self\n    static_configs: [{{targets: [\"127.0.0.1:{{port}}\"]}}]\nremote_write:\n  - url: {}\n    queue_config: {{max_samples_per_send: 400, batch_send_deadline: 1s, min_backoff: 100ms, max_backoff: 1s}}\n",
            relay.write_url()
        ),
        false,
    )
    .await;
    let passed =
        "promrelay_target_passed_through_requests_total{task=\"mirror\",target=\"central\"}";
    relay
        .wait_metric(passed, "full requests passed through", |n| n >= 5.0)
        .await;
    // A window the sender has scraped whole and sent by now (its deadline is 1 s).
    let at = now_ms() - 3_000;
    let selector = "{job=\"self\"}";
    let scraped = sender.raw_series(selector, "4s", at).await.unwrap();
    assert!(scraped.len() > 100, "{} series", scraped.len());
    // Values as bits: a summary with no observations reports NaN, equal to itself here.
    let bits = |m: &SeriesMap| -> Vec<(String, Vec<(i64, u64)>)> {
        m.iter()
            .map(|(l, p)| {
                let points = p.iter().map(|&(t, v)| (t, v.to_bits())).collect();
                (format!("{l:?}"), points)
            })
            .collect()
    };
    let want = bits(&scraped);
    eventually(
        Duration::from_secs(30),
        "the sender's window at the receiver",
        || async {
            let got = bits(&receiver.raw_series(selector, "4s", at).await?);
            if got == want {
                Ok(())
            } else {
                let differ = got.iter().zip(&want).find(|(g, w)| g != w);
                Err(format!(
                    "{} of {} series; first difference {differ:?}",
                    got.len(),
                    want.len()
                ))
            }
        },
    )
    .await;
}
