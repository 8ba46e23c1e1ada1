//! `promrelay bench --kafka-brokers …`: drive a relay's Kafka source.
//!
//! Produces N generated messages (the workload of [`super::workload`], each request's samples
//! as the seed's raw-snappy JSON array, written by the Kafka target's own JSON encoder) to a
//! topic, then watches the relay's `/metrics` until its Kafka sources have read them all, and
//! reports samples/s and samples per relay CPU-second over the window from the first message
//! read to the last. Start the relay (a Kafka source on the topic, its task into a blackhole
//! target) before or after producing: a relay that reads while the bench produces is measured
//! over that window too, and the report says how much of the reading overlapped producing.
//!
//! Only loopback brokers are accepted, as for every load the bench sends.

use super::bench::{BenchError, BenchReport, cpu_seconds, is_loopback_host, peak_rss};
use super::workload::WorkloadSpec;
use crate::batch::SeriesBatch;
use crate::relabel::{LabelSet, merge};
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::time::{Duration, Instant};

/// What to produce, and where the relay is.
pub struct KafkaBench {
    pub brokers: String,
    pub topic: String,
    pub messages: u64,
    /// The relay's `/metrics` URL (loopback); several, comma-separated, for relays that share
    /// the topic in one group (their reads are summed).
    pub metrics_url: String,
    /// The relay's process id (CPU seconds, peak RSS).
    pub pid: Option<u32>,
    /// Longest wait for the relay to read everything.
    pub timeout: Duration,
}

/// `spec`'s request `i` as one seed message: a JSON array of sample objects, raw snappy.
fn message(spec: &WorkloadSpec, i: u64, batch: &mut SeriesBatch) -> Result<Vec<u8>, String> {
    let raw = prost::Message::encode_to_vec(&spec.request(i));
    batch
        .decode_protobuf(&raw)
        .map_err(|e| format!("workload: {e}"))?;
    let (none, also_none) = (LabelSet::default(), LabelSet::default());
    let mut json = vec![b'['];
    for series in batch.iter() {
        for sample in series.samples() {
            if json.len() > 1 {
                json.push(b',');
            }
            let labels = merge(series.buf(), series.label_refs(), &none, &also_none);
            crate::encode::json_sample::write_sample(&mut json, labels, sample);
        }
    }
    json.push(b']');
    snap::raw::Encoder::new()
        .compress_vec(&json)
        .map_err(|e| format!("snappy: {e}"))
}

async fn delivered(d: rdkafka::producer::DeliveryFuture) -> Result<(), String> {
    match d.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _))) => Err(format!("produce: {e}")),
        Err(_) => Err("produce: the producer went away".into()),
    }
}

/// The sum of `promrelay_kafka_source_messages_total` over sources, from the metrics of
/// every relay in `urls` (comma-separated: relays sharing the topic in one group).
async fn messages_read(urls: &str) -> Result<f64, String> {
    let mut sum = 0.0;
    for url in urls.split(',') {
        let text = get_text(url.trim()).await?;
        sum += text
            .lines()
            .filter(|l| l.starts_with("promrelay_kafka_source_messages_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
    }
    Ok(sum)
}

async fn get_text(url: &str) -> Result<String, String> {
    use http_body_util::{BodyExt, Empty};
    let client: hyper_util::client::legacy::Client<_, Empty<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(hyper_util::client::legacy::connect::HttpConnector::new());
    let uri: hyper::Uri = url.parse().map_err(|_| format!("bad URL {url:?}"))?;
    let resp = tokio::time::timeout(Duration::from_secs(10), client.get(uri))
        .await
        .map_err(|_| format!("{url}: timeout"))?
        .map_err(|e| format!("{url}: {e}"))?;
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("{url}: {e}"))?
        .to_bytes();
    String::from_utf8(body.to_vec()).map_err(|e| format!("{url}: {e}"))
}

/// Produce, then measure the relay reading. See the module docs.
///
/// # Errors
/// A broker or metrics URL that is not loopback, a producer librdkafka refuses, a message
/// the broker does not take, a relay that does not read everything within the timeout.
pub async fn through_kafka(b: &KafkaBench, spec: &WorkloadSpec) -> Result<BenchReport, BenchError> {
    let err = |m: String| BenchError::Io(std::io::Error::other(m));
    for host in b.brokers.split(',') {
        let h = host.trim().rsplit_once(':').map_or(host.trim(), |(h, _)| h);
        if !is_loopback_host(h) {
            return Err(BenchError::NotLoopback(host.to_owned()));
        }
    }
    for url in b.metrics_url.split(',') {
        let metrics: hyper::Uri = url
            .trim()
            .parse()
            .map_err(|_| BenchError::BadUrl(url.to_owned()))?;
        if !metrics.host().is_some_and(is_loopback_host) {
            return Err(BenchError::NotLoopback(url.to_owned()));
        }
    }
    let baseline = messages_read(&b.metrics_url).await.map_err(err)?;
    // One record per batch: Tansu 0.6.0 returns nothing for a fetch inside a record batch, so a
    // consumer that paused mid-batch would never resume there (tests/kafka_raw.py).
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &b.brokers)
        .set("compression.type", "none")
        .set("batch.num.messages", "1")
        .set("message.max.bytes", "100000000")
        .create()
        .map_err(|e| err(format!("kafka producer: {e}")))?;
    let per_message = (spec.series * spec.samples_per_series) as u64;
    let mut batch = SeriesBatch::new();
    // Eight distinct bodies, cycled: generation is not what is measured.
    let bodies: Vec<Vec<u8>> = (0..8)
        .map(|i| message(spec, i, &mut batch))
        .collect::<Result<_, _>>()
        .map_err(err)?;
    let produce_start = Instant::now();
    // Up to 1,000 messages in flight, each awaited before the run counts as produced.
    let mut inflight = std::collections::VecDeque::new();
    for i in 0..b.messages {
        let body = &bodies[(i % 8) as usize];
        let key = i.to_string();
        let mut record = FutureRecord::to(&b.topic).key(&key).payload(body);
        let delivery = loop {
            match producer.send_result(record) {
                Ok(d) => break d,
                // librdkafka's queue is full: wait for the oldest delivery, then try again.
                Err((_, r)) => {
                    record = r;
                    if let Some(d) = inflight.pop_front() {
                        delivered(d).await.map_err(err)?;
                    } else {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        };
        inflight.push_back(delivery);
        if inflight.len() >= 1000
            && let Some(d) = inflight.pop_front()
        {
            delivered(d).await.map_err(err)?;
        }
    }
    for d in inflight {
        delivered(d).await.map_err(err)?;
    }
    let produced = produce_start.elapsed();
    // Measure from the first message read to the last.
    let want = baseline + b.messages as f64;
    let deadline = Instant::now() + b.timeout;
    let mut first: Option<(Instant, Option<f64>, f64)> = None;
    let read_while_producing = messages_read(&b.metrics_url).await.map_err(err)? - baseline;
    let mut last = baseline;
    while last < want {
        if Instant::now() > deadline {
            return Err(err(format!(
                "the relay read {} of {} messages within {:?}",
                last - baseline,
                b.messages,
                b.timeout
            )));
        }
        let now = messages_read(&b.metrics_url).await.map_err(err)?;
        if first.is_none() && now > baseline {
            first = Some((Instant::now(), b.pid.and_then(cpu_seconds), now));
        }
        last = now;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (t0, cpu0, at_first) = first.unwrap_or((Instant::now(), None, baseline));
    // The window starts at the first observation: the messages read by then are left out.
    let counted = (want - at_first).max(0.0) as u64;
    let mut report = BenchReport {
        mode: format!(
            "Kafka source: {} messages of {} samples to {} (produced in {:.2} s, {:.0} % read while producing)",
            b.messages,
            per_message,
            b.topic,
            produced.as_secs_f64(),
            100.0 * read_while_producing / b.messages.max(1) as f64
        ),
        elapsed: t0.elapsed(),
        requests: counted,
        samples: counted * per_message,
        ..Default::default()
    };
    report.cpu_seconds = b.pid.and_then(|p| Some(cpu_seconds(p)? - cpu0?));
    report.peak_rss_bytes = b.pid.and_then(peak_rss);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_message_is_the_seed_format() {
        let spec = WorkloadSpec {
            series: 20,
            ..Default::default()
        };
        let msg = message(&spec, 0, &mut SeriesBatch::new()).unwrap();
        let json = snap::raw::Decoder::new().decompress_vec(&msg).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        let arr = v.as_array().unwrap();
        assert_eq!(arr.len(), 20);
        for s in arr {
            assert!(s["__name__"].is_string() && s["value"].is_string());
            assert!(s["timestamp"].as_str().unwrap().parse::<i64>().is_ok());
        }
    }

    #[tokio::test]
    async fn refuses_brokers_that_are_not_loopback() {
        let b = KafkaBench {
            brokers: "10.0.0.1:9092".into(),
            topic: "t".into(),
            messages: 1,
            metrics_url: "http://127.0.0.1:9/metrics".into(),
            pid: None,
            timeout: Duration::from_secs(1),
        };
        let e = through_kafka(&b, &WorkloadSpec::default())
            .await
            .unwrap_err();
        assert!(e.to_string().contains("loopback"), "{e}");
    }
}
