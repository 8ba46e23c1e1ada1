//! `histograms: buckets` end to end: a native histogram sent with remote-write 2.0 →
//! promrelay → a file target writes it as classic `_bucket` (cumulative, with `le`), `_sum`
//! and `_count` sample objects; a file target without the setting counts it
//! `unsupported_by_format` and writes only the float samples. The conversion rules are in
//! docs/configuration.md (`histograms`); the expected rows below follow them by hand.

mod common;

use common::*;
use promrelay::proto::v2::{BucketSpan, Histogram, Request, Sample, TimeSeries};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_target_writes_native_histograms_as_classic_buckets() {
    let relay = Relay::start(
        r#"
tasks:
  - name: t
    targets:
      - name: buckets
        type: file
        path: "{dir}/buckets.jsonl"
        histograms: buckets
        queue: {batch_send_deadline: 50ms}
      - name: plain
        type: file
        path: "{dir}/plain.jsonl"
        queue: {batch_send_deadline: 50ms}
"#,
    )
    .await;
    let t = 1_700_000_000_000i64;
    // symbols: "", __name__, lat_seconds, job, api, temp
    let symbols: Vec<String> = ["", "__name__", "lat_seconds", "job", "api", "temp"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let req = Request {
        symbols,
        timeseries: vec![
            TimeSeries {
                labels_refs: vec![1, 2, 3, 4],
                // Schema 1 (bounds 2^(i/2)): negative bucket 0 ([-1, -2^-0.5)) holds 2, the
                // zero bucket (threshold 0.25) 1, positive buckets 1 and 2 (bounds 2^0.5,
                // 2) hold 3 and 1 (deltas 3, -2), bucket 4 (bound 4) after a gap holds 0.
                histograms: vec![Histogram {
                    count_int: 7,
                    sum: 3.5,
                    schema: 1,
                    zero_threshold: 0.25,
                    zero_count_int: 1,
                    negative_spans: vec![BucketSpan {
                        offset: 0,
                        length: 1,
                    }],
                    negative_deltas: vec![2],
                    positive_spans: vec![
                        BucketSpan {
                            offset: 1,
                            length: 2,
                        },
                        BucketSpan {
                            offset: 1,
                            length: 1,
                        },
                    ],
                    positive_deltas: vec![3, -2, -1],
                    timestamp: t,
                    ..Default::default()
                }],
                ..Default::default()
            },
            TimeSeries {
                labels_refs: vec![1, 5, 3, 4],
                samples: vec![Sample {
                    value: 21.5,
                    timestamp: t,
                    start_timestamp: 0,
                }],
                ..Default::default()
            },
        ],
    };
    let r = remote_write_v2(&relay.write_url(), &req).await;
    assert_eq!(r.status, 204, "{}", r.text());
    let read = |name: &str| {
        let path = relay.dir.path().join(name);
        std::fs::read_to_string(path).unwrap_or_default()
    };
    let rows = |text: &str| -> Vec<(String, Option<String>, String, String)> {
        text.lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                assert_eq!(v["job"], "api", "{l}");
                let s = |k: &str| v[k].as_str().map(str::to_owned);
                (
                    s("__name__").unwrap(),
                    s("le"),
                    s("value").unwrap(),
                    s("timestamp").unwrap(),
                )
            })
            .collect()
    };
    let ts = t.to_string();
    let row = |name: &str, le: Option<&str>, v: &str| {
        (
            name.to_string(),
            le.map(str::to_owned),
            v.to_string(),
            ts.clone(),
        )
    };
    let bucket = |le: &str, v: &str| row("lat_seconds_bucket", Some(le), v);
    let want = vec![
        bucket(&format!("{}", -(0.5f64.sqrt())), "2.0"),
        bucket("0.25", "3.0"),
        bucket(&format!("{}", 2f64.sqrt()), "6.0"),
        bucket("2.0", "7.0"),
        bucket("4.0", "7.0"),
        bucket("+Inf", "7.0"),
        row("lat_seconds_sum", None, "3.5"),
        row("lat_seconds_count", None, "7.0"),
        row("temp", None, "21.5"),
    ];
    let got = eventually(
        std::time::Duration::from_secs(30),
        "both files written",
        || async {
            let (b, p) = (read("buckets.jsonl"), read("plain.jsonl"));
            if b.lines().count() >= want.len() && !p.is_empty() {
                Ok((b, p))
            } else {
                Err(format!("{b:?} / {p:?}"))
            }
        },
    )
    .await;
    assert_eq!(rows(&got.0), want);
    assert_eq!(rows(&got.1), vec![row("temp", None, "21.5")]);
    relay
        .wait_metric(
            "promrelay_target_dropped_samples_total{task=\"t\",target=\"plain\",reason=\"unsupported_by_format\"}",
            "the histogram counted unsupported without the setting",
            |v| v == 1.0,
        )
        .await;
    assert_eq!(
        relay
            .metric("promrelay_target_dropped_samples_total{task=\"t\",target=\"buckets\",reason=\"unsupported_by_format\"}")
            .await,
        Some(0.0)
    );
}
