//! `promrelay verify` for a Kafka target: the brokers answer a metadata request with the
//! target's client settings (so SASL and TLS were accepted), the topic exists with a leader
//! for every partition, and, with `--produce-test`, one message holding an empty JSON array
//! (compressed as the target compresses) is produced and its delivery report read.

use super::{KafkaCompression, KafkaConfig, TopicPart};
use crate::targets::check::Check;
use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, FutureProducer, FutureRecord, Producer};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(10);

/// Probe `cfg`; see the module docs.
pub async fn verify(cfg: &KafkaConfig, produce_test: bool) -> Vec<Check> {
    let mut client = ClientConfig::new();
    for (k, v) in &cfg.client {
        client.set(k, v);
    }
    let brokers = client
        .get("bootstrap.servers")
        .unwrap_or_default()
        .to_owned();
    // A literal topic can be checked; one built from labels cannot before data arrives.
    let topic: Option<String> = cfg
        .topic
        .iter()
        .map(|p| match p {
            TopicPart::Text(t) => Some(t.clone()),
            TopicPart::Label(_) => None,
        })
        .collect();
    let c = client.clone();
    let t = topic.clone();
    let metadata = tokio::task::spawn_blocking(move || {
        let producer: BaseProducer = c.create().map_err(|e| e.to_string())?;
        let md = producer
            .client()
            .fetch_metadata(t.as_deref(), TIMEOUT)
            .map_err(|e| e.to_string())?;
        let brokers = md.brokers().len();
        let topic = md.topics().first().map(|t| {
            let leaders: Vec<(i32, i32)> = t
                .partitions()
                .iter()
                .map(|p| (p.id(), p.leader()))
                .collect();
            (t.error().map(|e| format!("{e:?}")), leaders)
        });
        Ok::<_, String>((brokers, topic))
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r);
    let mut checks = Vec::new();
    let (count, topic_md) = match metadata {
        Ok(m) => m,
        Err(e) => {
            checks.push(Check::failed(
                "brokers",
                format!("{brokers}: {e}"),
                "check brokers (host:port reachable from here), and sasl/tls settings against the listener's",
            ));
            checks.push(Check::skipped("topic", "no metadata"));
            checks.push(Check::skipped("produce test", "no metadata"));
            return checks;
        }
    };
    checks.push(Check::ok(
        "brokers",
        format!("{brokers}: metadata of {count} broker(s)"),
    ));
    let Some(topic) = topic else {
        checks.push(Check::skipped(
            "topic",
            "the topic is built from labels; it is known only per series",
        ));
        checks.push(Check::skipped("produce test", "no single topic"));
        return checks;
    };
    match topic_md {
        Some((None, leaders)) if !leaders.is_empty() => {
            let without: Vec<String> = leaders
                .iter()
                .filter(|(_, l)| *l < 0)
                .map(|(p, _)| p.to_string())
                .collect();
            if without.is_empty() {
                let shown: Vec<String> = leaders.iter().map(|(p, l)| format!("{p}→{l}")).collect();
                checks.push(Check::ok(
                    "topic",
                    format!(
                        "{topic}: {} partition(s), leaders {}",
                        leaders.len(),
                        shown.join(" ")
                    ),
                ));
            } else {
                checks.push(Check::failed(
                    "topic",
                    format!(
                        "{topic}: partitions without a leader: {}",
                        without.join(", ")
                    ),
                    "the cluster is missing brokers; check its health",
                ));
            }
        }
        other => {
            let why = match other {
                Some((Some(e), _)) => e,
                _ => "no partitions".to_owned(),
            };
            checks.push(Check::failed(
                "topic",
                format!("{topic}: {why}"),
                "create the topic (kafka-topics.sh --create --topic …), or fix topic: in the target",
            ));
            checks.push(Check::skipped("produce test", "no topic"));
            return checks;
        }
    }
    if !produce_test {
        checks.push(Check::skipped(
            "produce test",
            "run with --produce-test to produce one empty-array message",
        ));
        return checks;
    }
    let body: Vec<u8> = match cfg.compression {
        KafkaCompression::Snappy => snap::raw::Encoder::new()
            .compress_vec(b"[]")
            .unwrap_or_default(),
        KafkaCompression::None => b"[]".to_vec(),
    };
    let producer: Result<FutureProducer, _> = client.create();
    match producer {
        Err(e) => checks.push(Check::failed(
            "produce test",
            e.to_string(),
            "check the producer settings",
        )),
        Ok(p) => {
            let record: FutureRecord<'_, (), [u8]> = FutureRecord::to(&topic).payload(&body);
            match p.send(record, TIMEOUT).await {
                Ok(d) => checks.push(Check::ok(
                    "produce test",
                    format!("delivered to partition {} at offset {}", d.partition, d.offset),
                )),
                Err((e, _)) => checks.push(Check::failed(
                    "produce test",
                    e.to_string(),
                    "the brokers refuse writes to the topic: check the ACLs of the SASL user and the topic's settings",
                )),
            }
        }
    }
    checks
}
