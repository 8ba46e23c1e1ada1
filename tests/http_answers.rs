//! The ingest answers of the remote-write spec, against the real binary over loopback HTTP.
//!
//! The backpressure case needs a receiver that accepts connections and never answers. No real
//! Prometheus can be made to do that on demand, so a bare TCP listener in this test plays the
//! stalled receiver (fault injection; the only stand-in in these tests).

mod common;

use common::*;
use hyper::Method;
use promrelay::proto;
use promrelay::tools::workload::WorkloadSpec;

fn body(series: usize) -> Vec<u8> {
    proto::encode_snappy(
        &WorkloadSpec {
            series,
            ..Default::default()
        }
        .request(0),
    )
}

const SNAPPY: (&str, &str) = ("Content-Encoding", "snappy");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_follow_the_remote_write_spec() {
    // A stalled receiver: accepts, reads nothing, answers nothing.
    let stalled = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stalled_url = format!("http://{}/api/v1/write", stalled.local_addr().unwrap());
    let accept = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = stalled.accept().await {
            held.push(s);
        }
    });
    let relay = Relay::start(&format!(
        r#"
  max_body_bytes: 20000
  max_decoded_bytes: 200000
  max_label_value_bytes: 100
  retry_after: 2s
tasks:
  - name: all
    targets:
      - name: stalled
        type: remote_write
        url: {stalled_url}
        timeout: 60s
        queue: {{capacity: 150, max_samples_per_send: 100, shards: 1, batch_send_deadline: 50ms}}
        # Memory only: with the default overflow a full queue spills to disk (tests/isolation.rs)
        # instead of answering 503; this test is about the 503.
        overflow: {{enabled: false}}
"#
    ))
    .await;
    let url = relay.write_url();

    // 204: an empty queue takes a request, and says how much it wrote (1.0 senders ignore
    // the header; it is there for every answer, as 2.0 requires).
    let r = remote_write(&url, body(100)).await;
    assert_eq!(r.status, 204, "{}", r.text());
    let sent: usize = WorkloadSpec {
        series: 100,
        ..Default::default()
    }
    .request(0)
    .timeseries
    .iter()
    .map(|t| t.samples.len())
    .sum();
    assert_eq!(
        r.headers
            .get("x-prometheus-remote-write-samples-written")
            .unwrap(),
        &sent.to_string()
    );

    // 503 + Retry-After: 100 held (in flight to the stalled receiver) + 100 > capacity 150.
    let r = remote_write(&url, body(100)).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.headers.get("retry-after").unwrap(), "2");
    assert!(
        r.text().contains("queue of target \"stalled\""),
        "{}",
        r.text()
    );
    // Its samples are counted by reason too (the sender retries them).
    let refused: usize = WorkloadSpec {
        series: 100,
        ..Default::default()
    }
    .request(0)
    .timeseries
    .iter()
    .map(|t| t.samples.len())
    .sum();
    assert_eq!(
        relay
            .metric(
                "promrelay_ingest_refused_samples_total{source=\"default\",reason=\"queue_full\"}"
            )
            .await,
        Some(refused as f64)
    );

    // 400: not snappy; snappy but not protobuf; a series without labels.
    let r = http(
        Method::POST,
        &url,
        &[SNAPPY],
        b"definitely not snappy".to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("snappy"), "{}", r.text());
    let junk = snap::raw::Encoder::new().compress_vec(&[0xff; 64]).unwrap();
    let r = http(Method::POST, &url, &[SNAPPY], junk).await.unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
    let no_labels = proto::WriteRequest {
        timeseries: vec![proto::TimeSeries::default()],
        metadata: vec![],
    };
    let r = remote_write(&url, proto::encode_snappy(&no_labels)).await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("no labels"), "{}", r.text());
    let dup = proto::WriteRequest {
        timeseries: vec![proto::TimeSeries {
            labels: vec![proto::Label::new("a", "1"), proto::Label::new("a", "2")],
            ..Default::default()
        }],
        metadata: vec![],
    };
    let r = remote_write(&url, proto::encode_snappy(&dup)).await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("duplicate label name"), "{}", r.text());

    // 400 naming the limit: a label value over max_label_value_bytes.
    let long = proto::WriteRequest {
        timeseries: vec![proto::TimeSeries {
            labels: vec![
                proto::Label::new("__name__", "up"),
                proto::Label::new("huge", &"x".repeat(101)),
            ],
            ..Default::default()
        }],
        metadata: vec![],
    };
    let r = remote_write(&url, proto::encode_snappy(&long)).await;
    assert_eq!(r.status, 400);
    assert!(
        r.text().contains("server.max_label_value_bytes"),
        "{}",
        r.text()
    );
    assert_eq!(relay.metric("promrelay_ingest_refused_total{source=\"default\",reason=\"max_label_value_bytes\"}").await, Some(1.0));

    // Every write answer carries the 2.0 spec's written counts; nothing is written on a 400.
    for h in ["samples", "histograms", "exemplars"] {
        let key = format!("x-prometheus-remote-write-{h}-written");
        assert_eq!(r.headers.get(&key).unwrap(), "0", "{key}");
    }

    // 413: a body over max_body_bytes; a plausible body whose snappy header declares more
    // than max_decoded_bytes (300 kB of zeros compress to ~14 kB).
    let r = remote_write(&url, vec![0u8; 30000]).await;
    assert_eq!(r.status, 413, "{}", r.text());
    let dense = snap::raw::Encoder::new()
        .compress_vec(&[0u8; 300_000])
        .unwrap();
    assert!(dense.len() < 20000, "{}", dense.len());
    let r = remote_write(&url, dense).await;
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(r.text().contains("exceeds the limit"), "{}", r.text());
    // Junk is malformed, not large: a header claiming more than its body could hold is a
    // 400 even when the claim is also over max_decoded_bytes.
    let r = remote_write(&url, vec![0xff, 0xff, 0xff, 0xff, 0x0f]).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.text().contains("more than a 5-byte body can hold"),
        "{}",
        r.text()
    );

    // 415: other encodings, other content types, remote-write 2.0.
    let r = http(Method::POST, &url, &[("Content-Encoding", "gzip")], body(1))
        .await
        .unwrap();
    assert_eq!(r.status, 415, "{}", r.text());
    let r = http(Method::POST, &url, &[], body(1)).await.unwrap();
    assert_eq!(r.status, 415, "{}", r.text());
    let r = http(
        Method::POST,
        &url,
        &[SNAPPY, ("Content-Type", "application/json")],
        body(1),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 415, "{}", r.text());
    // (Remote-write 2.0 is taken: tests/remote_write_2.rs.) An unknown proto= is not.
    let v3 = (
        "Content-Type",
        "application/x-protobuf;proto=io.prometheus.write.v3.Request",
    );
    let r = http(Method::POST, &url, &[SNAPPY, v3], body(1))
        .await
        .unwrap();
    assert_eq!(r.status, 415, "{}", r.text());
    assert!(
        r.text().contains("io.prometheus.write.v2.Request"),
        "{}",
        r.text()
    );
    assert_eq!(
        r.headers
            .get("x-prometheus-remote-write-samples-written")
            .unwrap(),
        "0"
    );
    let v1 = (
        "Content-Type",
        "application/x-protobuf;proto=prometheus.WriteRequest",
    );
    let r = http(
        Method::POST,
        &format!("{}/sources/default/api/v1/write", relay.base()),
        &[SNAPPY, v1],
        body(1),
    )
    .await
    .unwrap();
    assert_eq!(
        r.status,
        204,
        "an explicit proto=prometheus.WriteRequest is remote-write 1.0: {}",
        r.text()
    );

    // 404: unknown source, unknown path. 405: wrong method, with Allow.
    let r = remote_write(
        &format!("{}/sources/nope/api/v1/write", relay.base()),
        body(1),
    )
    .await;
    assert_eq!(r.status, 404);
    assert!(r.text().contains("unknown source \"nope\""), "{}", r.text());
    let r = get(&format!("{}/nothing/here", relay.base()))
        .await
        .unwrap();
    assert_eq!(r.status, 404);
    let r = get(&url).await.unwrap();
    assert_eq!(r.status, 405);
    assert_eq!(r.headers.get("allow").unwrap(), "POST");

    // h2c (HTTP/2 with prior knowledge, as some senders use) reaches the same handler.
    let h2: hyper_util::client::legacy::Client<_, http_body_util::Full<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(true)
            .build(hyper_util::client::legacy::connect::HttpConnector::new());
    let req = hyper::Request::builder()
        .method(Method::POST)
        .uri(&url)
        .header("Content-Encoding", "gzip")
        .body(http_body_util::Full::new(bytes::Bytes::from(body(1))))
        .unwrap();
    let resp = h2.request(req).await.unwrap();
    assert_eq!(resp.version(), hyper::Version::HTTP_2);
    assert_eq!(resp.status(), 415);

    // Health and metrics.
    assert_eq!(
        get(&format!("{}/-/healthy", relay.base()))
            .await
            .unwrap()
            .status,
        200
    );
    assert_eq!(
        relay
            .metric("promrelay_requests_total{source=\"default\",code=\"503\"}")
            .await,
        Some(1.0)
    );
    assert_eq!(
        relay
            .metric("promrelay_requests_total{source=\"default\",code=\"413\"}")
            .await,
        Some(2.0)
    );
    assert_eq!(
        relay
            .metric("promrelay_target_queue_samples{task=\"all\",target=\"stalled\"}")
            .await,
        Some(101.0)
    );
    accept.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_that_require_credentials_answer_401_without_them() {
    let relay = Relay::start(
        r#"
sources:
  - name: default
    bearer_token: s3cret-token
  - name: fleet-a
    basic_auth: {username: fleet, password: pw1}
tasks:
  - name: all
    targets: [{name: f, type: file, path: "{dir}/out.jsonl"}]
"#,
    )
    .await;
    let fleet = format!("{}/sources/fleet-a/api/v1/write", relay.base());
    let cases: &[(&str, Option<&str>, u16)] = &[
        ("default", None, 401),
        ("default", Some("Bearer wrong"), 401),
        ("default", Some("Bearer s3cret-token"), 204),
        ("fleet-a", None, 401),
        ("fleet-a", Some("Basic ZmxlZXQ6bm9wZQ=="), 401), // fleet:nope
        ("fleet-a", Some("Basic ZmxlZXQ6cHcx"), 204),     // fleet:pw1
    ];
    for &(source, auth, want) in cases {
        let url = if source == "default" {
            relay.write_url()
        } else {
            fleet.clone()
        };
        let mut headers = vec![SNAPPY, ("Content-Type", "application/x-protobuf")];
        if let Some(a) = auth {
            headers.push(("Authorization", a));
        }
        let r = http(Method::POST, &url, &headers, body(1)).await.unwrap();
        assert_eq!(r.status, want, "{source} with {auth:?}: {}", r.text());
        if want == 401 {
            assert!(r.headers.contains_key("www-authenticate"), "{source}");
        }
    }
    assert_eq!(
        relay
            .metric("promrelay_ingest_refused_total{source=\"default\",reason=\"unauthorized\"}")
            .await,
        Some(2.0)
    );
    assert_eq!(
        relay
            .metric("promrelay_ingest_refused_total{source=\"fleet-a\",reason=\"unauthorized\"}")
            .await,
        Some(2.0)
    );
    assert_eq!(
        relay
            .metric("promrelay_requests_total{source=\"fleet-a\",code=\"204\"}")
            .await,
        Some(1.0)
    );
}
