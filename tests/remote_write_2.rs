//! Remote-write 2.0 in: requests as a 2.0 sender (Prometheus ≥ 3.8, the OpenTelemetry
//! Collector) sends them, built with the prost reference types of `promrelay::proto::v2`,
//! → promrelay → remote-write 1.0 out → a real Prometheus 2.42 receiver started with
//! `--enable-feature=native-histograms,exemplar-storage`, read back through its query API:
//! float samples exact (values, timestamps), native histograms exact (count, sum, buckets),
//! exemplars exact (labels, value, timestamp through `/api/v1/query_exemplars`).
//! The answers carry the spec's `X-Prometheus-Remote-Write-*-Written` headers.

mod common;

use common::*;
use hyper::Method;
use promrelay::proto::v2::{self, BucketSpan, Histogram, Request, Sample, TimeSeries};
use std::collections::BTreeMap;

const V2: (&str, &str) = ("Content-Type", v2::CONTENT_TYPE);
const SNAPPY: (&str, &str) = ("Content-Encoding", "snappy");
const VERSION: (&str, &str) = ("X-Prometheus-Remote-Write-Version", "2.0.0");

fn header(r: &HttpResponse, what: &str) -> String {
    let key = format!("x-prometheus-remote-write-{what}-written");
    r.headers
        .get(&key)
        .unwrap_or_else(|| panic!("no {key} header"))
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_write_2_0_in_arrives_exact_at_a_prometheus_receiver() {
    let receiver = Prometheus::receiver_with_histograms_and_exemplars().await;
    let relay = Relay::start(&format!(
        r#"
tasks:
  - name: v2-in
    filter: "__name__=rw2_.*"
    labels: {{via: promrelay}}
    targets:
      - name: prom
        type: remote_write
        url: {}
        queue: {{batch_send_deadline: 100ms}}
"#,
        receiver.write_url()
    ))
    .await;
    let url = relay.write_url();
    let t0 = now_ms() - 60_000;
    // Symbols: "" first, each string once; series name their labels by index pairs.
    let symbols: Vec<String> = [
        "",
        "__name__",
        "rw2_requests_total",
        "job",
        "api",
        "rw2_latency_seconds",
        "instance",
        "a:1",
        "other_metric",
        "trace_id",
        "abc123",
    ]
    .map(String::from)
    .to_vec();
    let floats = |points: &[(i64, f64)]| {
        points
            .iter()
            .map(|&(timestamp, value)| Sample {
                value,
                timestamp,
                start_timestamp: 0,
            })
            .collect::<Vec<_>>()
    };
    let histogram = Histogram {
        // schema 0: bucket i covers (2^(i-1), 2^i]; buckets 0 and 1 hold 2 and 3.
        count_int: 6,
        sum: 10.5,
        schema: 0,
        zero_threshold: 0.001,
        zero_count_int: 1,
        positive_spans: vec![BucketSpan {
            offset: 0,
            length: 2,
        }],
        positive_deltas: vec![2, 1],
        timestamp: t0 + 3000,
        ..Default::default()
    };
    let req = Request {
        symbols,
        timeseries: vec![
            // Labels out of order on the wire: the relay sorts them.
            TimeSeries {
                labels_refs: vec![6, 7, 1, 2, 3, 4],
                samples: floats(&[(t0, 1.0), (t0 + 1000, 2.5), (t0 + 2000, -7.25)]),
                exemplars: vec![v2::Exemplar {
                    labels_refs: vec![9, 10],
                    value: 2.5,
                    timestamp: t0 + 1000,
                }],
                ..Default::default()
            },
            TimeSeries {
                labels_refs: vec![1, 5, 3, 4],
                histograms: vec![histogram],
                ..Default::default()
            },
            // Filtered out by the task, still written (taken) by the relay.
            TimeSeries {
                labels_refs: vec![1, 8],
                samples: floats(&[(t0, 9.0)]),
                ..Default::default()
            },
        ],
    };
    let r = http(
        Method::POST,
        &url,
        &[SNAPPY, V2, VERSION],
        v2::encode_snappy(&req),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(header(&r, "samples"), "4");
    assert_eq!(header(&r, "histograms"), "1");
    assert_eq!(header(&r, "exemplars"), "1");

    // Floats: exact values and timestamps, task label applied.
    let mut want = SeriesMap::new();
    want.insert(
        [
            ("__name__", "rw2_requests_total"),
            ("instance", "a:1"),
            ("job", "api"),
            ("via", "promrelay"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect::<BTreeMap<_, _>>(),
        vec![(t0, 1.0), (t0 + 1000, 2.5), (t0 + 2000, -7.25)],
    );
    receiver
        .wait_for_series_at(
            "{__name__=~\"rw2_requests_total|other_metric\"}",
            "5m",
            now_ms(),
            &want,
            "2.0 float samples at the receiver",
        )
        .await;

    // The native histogram: count, sum and buckets as Prometheus reports them.
    let q = format!(
        "{}/api/v1/query?query={}&time={}",
        receiver.base(),
        urlencode("rw2_latency_seconds[5m]"),
        now_ms() as f64 / 1000.0
    );
    let got = eventually(
        std::time::Duration::from_secs(30),
        "the native histogram at the receiver",
        || async {
            let r = get(&q).await?;
            let v: serde_json::Value =
                serde_json::from_slice(&r.body).map_err(|e| e.to_string())?;
            let s = v["data"]["result"]
                .get(0)
                .ok_or_else(|| format!("no series yet: {}", r.text()))?
                .clone();
            Ok::<_, String>(s)
        },
    )
    .await;
    assert_eq!(got["metric"]["job"], "api");
    assert_eq!(got["metric"]["via"], "promrelay");
    let points = got["histograms"].as_array().expect("histogram points");
    assert_eq!(points.len(), 1, "{got}");
    let (ts, h) = (&points[0][0], &points[0][1]);
    assert_eq!(
        (ts.as_f64().unwrap() * 1000.0).round() as i64,
        t0 + 3000,
        "{got}"
    );
    assert_eq!(h["count"], "6", "{got}");
    assert_eq!(h["sum"], "10.5", "{got}");
    let buckets: Vec<(String, String, String)> = h["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b[1].as_str().unwrap().to_owned(),
                b[2].as_str().unwrap().to_owned(),
                b[3].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        buckets,
        vec![
            ("-0.001".into(), "0.001".into(), "1".into()),
            ("0.5".into(), "1".into(), "2".into()),
            ("1".into(), "2".into(), "3".into()),
        ],
        "{got}"
    );
    // The exemplar, its labels resolved from the symbol table.
    let q = format!(
        "{}/api/v1/query_exemplars?query={}&start={}&end={}",
        receiver.base(),
        urlencode("rw2_requests_total"),
        (t0 - 60_000) as f64 / 1000.0,
        now_ms() as f64 / 1000.0
    );
    let got = eventually(
        std::time::Duration::from_secs(30),
        "the exemplar at the receiver",
        || async {
            let r = get(&q).await?;
            let v: serde_json::Value =
                serde_json::from_slice(&r.body).map_err(|e| e.to_string())?;
            let s = v["data"]
                .get(0)
                .ok_or_else(|| format!("no exemplars yet: {}", r.text()))?
                .clone();
            Ok::<_, String>(s)
        },
    )
    .await;
    assert_eq!(got["seriesLabels"]["instance"], "a:1", "{got}");
    let exemplars = got["exemplars"].as_array().unwrap();
    assert_eq!(exemplars.len(), 1, "{got}");
    let e = &exemplars[0];
    assert_eq!(
        e["labels"],
        serde_json::json!({"trace_id": "abc123"}),
        "{got}"
    );
    assert_eq!(e["value"], "2.5", "{got}");
    assert_eq!(
        (e["timestamp"].as_f64().unwrap() * 1000.0).round() as i64,
        t0 + 1000,
        "{got}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_2_0_requests_are_400s_naming_the_violation() {
    let relay = Relay::start(
        r#"
tasks:
  - name: blackhole
    targets:
      - {name: f, type: file, path: "{dir}/out.jsonl"}
"#,
    )
    .await;
    let url = relay.write_url();
    let series = |labels_refs: Vec<u32>| TimeSeries {
        labels_refs,
        samples: vec![Sample {
            value: 1.0,
            timestamp: 1,
            start_timestamp: 0,
        }],
        ..Default::default()
    };
    let syms = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let cases: Vec<(&str, Request, &str)> = vec![
        (
            "symbols[0] not empty",
            Request {
                symbols: syms(&["x", "__name__", "up"]),
                timeseries: vec![series(vec![1, 2])],
            },
            "symbols[0] must be the empty string",
        ),
        (
            "ref out of range",
            Request {
                symbols: syms(&["", "__name__", "up"]),
                timeseries: vec![series(vec![1, 3])],
            },
            "label ref 3 is out of range",
        ),
        (
            "odd refs",
            Request {
                symbols: syms(&["", "__name__", "up"]),
                timeseries: vec![series(vec![1, 2, 1])],
            },
            "odd number of refs",
        ),
        (
            "samples and histograms",
            Request {
                symbols: syms(&["", "__name__", "up"]),
                timeseries: vec![TimeSeries {
                    histograms: vec![Histogram::default()],
                    ..series(vec![1, 2])
                }],
            },
            "both samples and histograms",
        ),
        (
            "exemplar without timestamp",
            Request {
                symbols: syms(&["", "__name__", "up"]),
                timeseries: vec![TimeSeries {
                    exemplars: vec![v2::Exemplar {
                        labels_refs: vec![],
                        value: 1.0,
                        timestamp: 0,
                    }],
                    ..series(vec![1, 2])
                }],
            },
            "exemplar has no timestamp",
        ),
    ];
    for (case, req, want) in cases {
        let r = http(Method::POST, &url, &[SNAPPY, V2], v2::encode_snappy(&req))
            .await
            .unwrap();
        assert_eq!(r.status, 400, "{case}: {}", r.text());
        assert!(r.text().contains(want), "{case}: {}", r.text());
        for what in ["samples", "histograms", "exemplars"] {
            assert_eq!(header(&r, what), "0", "{case}");
        }
    }
    // The same request is taken once fixed.
    let ok = Request {
        symbols: syms(&["", "__name__", "up"]),
        timeseries: vec![series(vec![1, 2])],
    };
    let r = http(Method::POST, &url, &[SNAPPY, V2], v2::encode_snappy(&ok))
        .await
        .unwrap();
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(header(&r, "samples"), "1");
}

/// Every (labels, samples) pair in the 2.0 requests received, labels resolved through each
/// request's own symbol table (which must start with "" and hold each string once).
fn decode_all(received: &[Received]) -> SeriesMap {
    use prost::Message;
    let mut out = SeriesMap::new();
    for r in received {
        assert_eq!(r.content_type, v2::CONTENT_TYPE);
        assert_eq!(r.version, "2.0.0");
        let raw = snap::raw::Decoder::new().decompress_vec(&r.body).unwrap();
        let req = Request::decode(&raw[..]).unwrap();
        assert_eq!(req.symbols.first().map(String::as_str), Some(""));
        let mut unique = req.symbols.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), req.symbols.len(), "a symbol repeated");
        for ts in &req.timeseries {
            let labels = ts
                .labels_refs
                .chunks(2)
                .map(|p| {
                    (
                        req.symbols[p[0] as usize].clone(),
                        req.symbols[p[1] as usize].clone(),
                    )
                })
                .collect();
            out.entry(labels)
                .or_default()
                .extend(ts.samples.iter().map(|s| (s.timestamp, s.value)));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2_0_target_fed_by_1_0_senders_receives_the_same_series() {
    let (url, seen, _server) = test_receiver(204).await;
    let relay = Relay::start(&format!(
        r#"
tasks:
  - name: to-v2
    labels: {{via: promrelay}}
    targets:
      - name: v2
        type: remote_write
        url: {url}
        protobuf_message: io.prometheus.write.v2.Request
        queue: {{batch_send_deadline: 100ms}}
"#
    ))
    .await;
    // A 1.0 request from this test...
    let t0 = now_ms() - 10_000;
    let req = promrelay::proto::WriteRequest {
        timeseries: vec![promrelay::proto::TimeSeries {
            labels: vec![
                promrelay::proto::Label::new("__name__", "from_test"),
                promrelay::proto::Label::new("job", "x"),
            ],
            samples: vec![
                promrelay::proto::Sample {
                    value: 1.5,
                    timestamp: t0,
                },
                promrelay::proto::Sample {
                    value: -2.0,
                    timestamp: t0 + 1,
                },
            ],
            ..Default::default()
        }],
        metadata: vec![],
    };
    let r = remote_write(&relay.write_url(), promrelay::proto::encode_snappy(&req)).await;
    assert_eq!(r.status, 204, "{}", r.text());
    let want_labels: BTreeMap<String, String> = [
        ("__name__", "from_test"),
        ("job", "x"),
        ("via", "promrelay"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    eventually(
        std::time::Duration::from_secs(30),
        "the 1.0 request at the 2.0 receiver",
        || async {
            let got = decode_all(&seen.lock().unwrap());
            match got.get(&want_labels) {
                Some(points) if points == &vec![(t0, 1.5), (t0 + 1, -2.0)] => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    // ...and a real Prometheus 2.42 sender (1.0) scraping itself.
    let _sender = Prometheus::self_scraping_sender(&relay.write_url()).await;
    eventually(
        std::time::Duration::from_secs(60),
        "Prometheus' own series at the 2.0 receiver",
        || async {
            let got = decode_all(&seen.lock().unwrap());
            let up = got.iter().find(|(l, _)| {
                l.get("__name__").map(String::as_str) == Some("up")
                    && l.get("job").map(String::as_str) == Some("self")
                    && l.get("via").map(String::as_str) == Some("promrelay")
            });
            match up {
                Some((_, points)) if points.iter().all(|p| p.1 == 1.0) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2_0_target_answering_415_is_refused_as_a_configuration_error() {
    let (url, seen, _server) = test_receiver(415).await;
    let relay = Relay::start(&format!(
        r#"
tasks:
  - name: to-v1-only
    targets:
      - name: old
        type: remote_write
        url: {url}
        protobuf_message: io.prometheus.write.v2.Request
        queue: {{batch_send_deadline: 100ms}}
"#
    ))
    .await;
    let req = promrelay::proto::WriteRequest {
        timeseries: vec![promrelay::proto::TimeSeries {
            labels: vec![promrelay::proto::Label::new("__name__", "m")],
            samples: vec![promrelay::proto::Sample {
                value: 1.0,
                timestamp: now_ms(),
            }],
            ..Default::default()
        }],
        metadata: vec![],
    };
    // Three requests, sent as three batches (each waits for the previous to be refused).
    for n in 1..=3 {
        let r = remote_write(&relay.write_url(), promrelay::proto::encode_snappy(&req)).await;
        assert_eq!(r.status, 204, "{}", r.text());
        eventually(std::time::Duration::from_secs(30), "sent", || async {
            let sent = seen.lock().unwrap().len();
            if sent >= n {
                Ok(())
            } else {
                Err(format!("{sent} sent"))
            }
        })
        .await;
    }
    eventually(
        std::time::Duration::from_secs(30),
        "the refusal logged",
        || async {
            let log = relay.proc.log_text();
            if log.contains("does not take remote-write 2.0") {
                Ok(())
            } else {
                Err(log)
            }
        },
    )
    .await;
    relay
        .wait_metric(
            "promrelay_target_dropped_samples_total{task=\"to-v1-only\",target=\"old\",reason=\"refused\"}",
            "the batch counted refused",
            |v| v == 3.0,
        )
        .await;
    // Each sent once, not retried; the configuration error logged once, not per batch.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(seen.lock().unwrap().len(), 3);
    assert_eq!(
        relay
            .proc
            .log_text()
            .matches("does not take remote-write 2.0")
            .count(),
        1
    );
}
