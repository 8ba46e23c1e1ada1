//! promrelay → librdkafka's mock cluster (real Kafka protocol over loopback TCP, served by
//! librdkafka in this test process), for what a real broker cannot be made to do on demand:
//! a broker that is down for a while, and produce requests that fail. Nothing may be lost once
//! the cluster recovers, and `kafka-tail` reads back what was delivered.

mod common;

use common::*;
use promrelay::proto::{self, Label, Sample, TimeSeries, WriteRequest};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::types::RDKafkaApiKey;
use rdkafka::types::RDKafkaRespErr;
use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

/// Every sample object in every message of `topic`, as compact JSON text, plus the keys seen.
fn read_all(brokers: &str, topic: &str, want: usize) -> (Vec<serde_json::Value>, BTreeSet<String>) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("it-{}", now_ms()))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut samples = Vec::new();
    let mut keys = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while samples.len() < want && Instant::now() < deadline {
        let Some(m) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = m.unwrap();
        keys.insert(String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned());
        let raw = snap::raw::Decoder::new()
            .decompress_vec(m.payload().unwrap())
            .unwrap();
        let arr: Vec<serde_json::Value> = serde_json::from_slice(&raw).unwrap();
        samples.extend(arr);
    }
    (samples, keys)
}

fn request(n: usize, t0: i64) -> WriteRequest {
    WriteRequest {
        timeseries: (0..n)
            .map(|i| TimeSeries {
                labels: vec![
                    Label::new("__name__", if i % 2 == 0 { "up" } else { "down" }),
                    Label::new("instance", &format!("host-{i}")),
                ],
                samples: vec![Sample {
                    value: i as f64,
                    timestamp: t0 + i as i64,
                }],
                ..Default::default()
            })
            .collect(),
        metadata: vec![],
    }
}

fn keyed(samples: &[serde_json::Value]) -> BTreeSet<(String, String, String)> {
    samples
        .iter()
        .map(|s| {
            (
                s["instance"].as_str().unwrap().to_owned(),
                s["value"].as_str().unwrap().to_owned(),
                s["timestamp"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_lost_through_a_broker_outage_and_produce_errors() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("metrics", 3, 1).unwrap();
    let brokers = mock.bootstrap_servers();
    let relay = Relay::start(&format!(
        r#"
tasks:
  - name: to-kafka
    labels: {{via: kafka}}
    targets:
      - name: lake
        type: kafka
        brokers: {brokers}
        topic: metrics
        max_message_bytes: 2000
        options: {{message.timeout.ms: "3000", retry.backoff.ms: "50"}}
        queue: {{batch_send_deadline: 50ms, min_backoff: 50ms, max_backoff: 500ms}}
"#
    ))
    .await;
    let t0 = now_ms();

    // Healthy first.
    let r = remote_write(&relay.write_url(), proto::encode_snappy(&request(40, t0))).await;
    assert_eq!(r.status, 204, "{}", r.text());
    // Produce requests fail with retriable errors a few times.
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS; 5],
    );
    let r = remote_write(
        &relay.write_url(),
        proto::encode_snappy(&request(40, t0 + 1000)),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.text());
    // The only broker goes down longer than message.timeout.ms: librdkafka gives up on the
    // messages, and the relay must retry them itself.
    mock.broker_down(1).unwrap();
    let r = remote_write(
        &relay.write_url(),
        proto::encode_snappy(&request(40, t0 + 2000)),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.text());
    relay
        .wait_metric(
            "promrelay_target_retries_total{task=\"to-kafka\",target=\"lake\"}",
            "a retry counted while the broker is down",
            |n| n >= 1.0,
        )
        .await;
    mock.broker_up(1).unwrap();

    let (samples, keys) = read_all(&brokers, "metrics", 120);
    let mut want = BTreeSet::new();
    for base in [t0, t0 + 1000, t0 + 2000] {
        for i in 0..40 {
            want.insert((
                format!("host-{i}"),
                format!("{}.0", i),
                (base + i as i64).to_string(),
            ));
        }
    }
    assert_eq!(keyed(&samples), want, "every sample exactly as sent");
    assert!(samples.iter().all(|s| s["via"] == "kafka"));
    assert!(
        keys.iter().all(|k| k.starts_with("series-group-")),
        "{keys:?}"
    );
    relay
        .wait_metric(
            "promrelay_target_delivered_samples_total{task=\"to-kafka\",target=\"lake\"}",
            "delivered counter",
            |n| n == 120.0,
        )
        .await;

    // kafka-tail prints the same samples, one JSON object per line.
    let out = Command::new(relay_bin())
        .args([
            "kafka-tail",
            "--brokers",
            &brokers,
            "--topic",
            "metrics",
            "--from-beginning",
            "--limit",
            "120",
            "--idle-exit",
            "20",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 120);
    assert_eq!(keyed(&lines), want);
}
