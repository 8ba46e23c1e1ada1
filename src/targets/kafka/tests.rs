//! The `type: kafka` keys through the whole config walk: defaults, and errors naming the field.

use super::TopicPart;
use crate::config::Config;
use crate::targets::TargetKind;
use std::path::{Path, PathBuf};

fn tempdir() -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("promrelay-kafka-cfg-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn kafka_target_from_the_issue_loads_with_safe_producer_defaults() {
    let dir = tempdir();
    std::fs::write(dir.join("kpw"), "kafka-secret\n").unwrap();
    let yaml = r#"
tasks:
  - name: t
    targets:
      - name: lake
        type: kafka
        brokers: 127.0.0.1:9092, 127.0.0.1:9093
        topic: metrics.{__name__}
        key: series
        format: json
        compression: snappy
        max_message_bytes: 1000000
        external_labels: {source_cluster: cluster-01}
        sasl: {mechanism: PLAIN, username: u, password_file: kpw}
        options: {linger.ms: "20", queue.buffering.max.messages: "5000"}
"#;
    let cfg = Config::from_yaml(yaml, &dir).unwrap();
    let TargetKind::Kafka(k) = &cfg.tasks[0].targets[0].kind else {
        panic!()
    };
    let get = |key: &str| {
        k.client
            .iter()
            .find(|(a, _)| a == key)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(
        get("bootstrap.servers"),
        Some("127.0.0.1:9092,127.0.0.1:9093")
    );
    assert_eq!(get("acks"), Some("all"));
    assert_eq!(get("enable.idempotence"), Some("true"));
    assert_eq!(get("compression.type"), Some("none"));
    assert_eq!(get("linger.ms"), Some("20"), "options override defaults");
    assert_eq!(get("queue.buffering.max.messages"), Some("5000"));
    assert_eq!(get("security.protocol"), Some("sasl_plaintext"));
    assert_eq!(get("sasl.password"), Some("kafka-secret"));
    assert_eq!(
        k.topic,
        vec![
            TopicPart::Text("metrics.".into()),
            TopicPart::Label("__name__".into())
        ]
    );
    assert!(
        !format!("{k:?}").contains("kafka-secret"),
        "secrets never reach debug output"
    );
    assert_eq!(cfg.tasks[0].targets[0].queue.max_samples_per_send, 10_000);
}

#[test]
fn kafka_errors_name_the_field() {
    let cases: &[(&str, &str)] = &[
        (
            "brokers: '', topic: m",
            "targets[0].brokers: must list at least one",
        ),
        (
            "brokers: nohost, topic: m",
            "targets[0].brokers: \"nohost\" must be host:port",
        ),
        (
            "brokers: 'h:1', topic: 'a b'",
            "targets[0].topic: \"a b\": ' ' is not allowed",
        ),
        (
            "brokers: 'h:1', topic: 'm.{__name__'",
            "targets[0].topic: \"m.{__name__\": unclosed",
        ),
        (
            "brokers: 'h:1', topic: 'm.{1x}'",
            "targets[0].topic: \"m.{1x}\": {1x} is not a label name",
        ),
        (
            "brokers: 'h:1', topic: m, key: partition",
            "unknown variant `partition`",
        ),
        (
            "brokers: 'h:1', topic: m, format: avro",
            "unknown variant `avro`",
        ),
        (
            "brokers: 'h:1', topic: m, sasl: {mechanism: GSSAPI, username: u, password: p}",
            "targets[0].sasl.mechanism",
        ),
        (
            "brokers: 'h:1', topic: m, options: {bootstrap.servers: x}",
            "targets[0].options: set brokers with",
        ),
        (
            "brokers: 'h:1', topic: m, max_message_bytes: 0",
            "targets[0].max_message_bytes: must be greater than 0",
        ),
    ];
    for (target, want) in cases {
        let yaml = format!("tasks: [{{name: a, targets: [{{name: k, type: kafka, {target}}}]}}]");
        let err = Config::from_yaml(&yaml, Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(want),
            "{target}\n  error: {err}\n  wanted: {want}"
        );
    }
}
