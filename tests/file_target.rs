//! The file target rotates at its bound: a relay writing more than `max_file_bytes` leaves
//! `path`, `path.1` … `path.{max_files}`, each within the bound, holding the newest lines in
//! order, and nothing older.

mod common;

use common::*;
use promrelay::proto;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_target_rotates_at_max_file_bytes_and_keeps_max_files() {
    let relay = Relay::start(
        r#"
tasks:
  - name: t
    targets:
      - name: f
        type: file
        path: "{dir}/out/delivered.jsonl"
        max_file_bytes: 4096
        max_files: 2
        queue: {batch_send_deadline: 50ms}
"#,
    )
    .await;
    // 30 requests of 10 samples each (a few hundred bytes of JSON per sample line), each
    // delivered before the next is sent, so each is one batch.
    let requests = 30;
    for r in 0..requests {
        let req = proto::WriteRequest {
            timeseries: (0..10)
                .map(|i| proto::TimeSeries {
                    labels: vec![
                        proto::Label::new("__name__", "rotation_test"),
                        proto::Label::new("request", &format!("{r:03}")),
                        proto::Label::new("series", &format!("{i:02}")),
                        proto::Label::new("padding", &"p".repeat(200)),
                    ],
                    samples: vec![proto::Sample {
                        value: r as f64,
                        timestamp: 1_700_000_000_000 + r,
                    }],
                    ..Default::default()
                })
                .collect(),
            metadata: vec![],
        };
        let resp = remote_write(&relay.write_url(), proto::encode_snappy(&req)).await;
        assert_eq!(resp.status, 204, "{}", resp.text());
        let want = ((r + 1) * 10) as f64;
        relay
            .wait_metric(
                "promrelay_target_delivered_samples_total{task=\"t\",target=\"f\"}",
                "the request written",
                |v| v >= want,
            )
            .await;
    }
    let dir = relay.dir.path().join("out");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["delivered.jsonl", "delivered.jsonl.1", "delivered.jsonl.2"],
        "the current file and max_files rotated ones"
    );
    // Oldest first: .2, .1, then the current file. Each within the bound, whole lines, and
    // together the newest requests in order, ending with the last one.
    let mut requests_seen = Vec::new();
    for name in ["delivered.jsonl.2", "delivered.jsonl.1", "delivered.jsonl"] {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        assert!(text.len() <= 4096, "{name}: {} bytes", text.len());
        assert!(text.ends_with('\n'), "{name} ends with a whole line");
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let r: u64 = v["request"].as_str().unwrap().parse().unwrap();
            if requests_seen.last() != Some(&r) {
                requests_seen.push(r);
            }
        }
    }
    let last = (requests - 1) as u64;
    assert_eq!(requests_seen.last(), Some(&last), "{requests_seen:?}");
    let first = requests_seen[0];
    assert!(
        first > 0,
        "the oldest lines were rotated away: {requests_seen:?}"
    );
    assert_eq!(
        requests_seen,
        (first..=last).collect::<Vec<_>>(),
        "the newest requests, in order, none missing"
    );
}
