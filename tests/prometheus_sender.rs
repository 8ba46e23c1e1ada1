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
