//! `promrelay kafka-tail`: read a topic, decompress, print one JSON sample per line.
//!
//! The product documents' console "Message Query", for people and for scripts. Messages in the
//! seed format (`format: json`) are printed element by element exactly as they were written;
//! `format: remote_write` messages are decoded and printed in the same flat JSON form.

use crate::batch::SeriesBatch;
use crate::encode::json_sample as json;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use serde_json::value::RawValue;
use std::io::Write;
use std::time::{Duration, Instant};

/// What to read and how.
#[derive(Debug, Clone)]
pub struct TailOptions {
    pub brokers: String,
    pub topic: String,
    pub from_beginning: bool,
    /// Stop after printing this many samples.
    pub limit: Option<u64>,
    /// Consumer group; offsets are committed only when one is given.
    pub group: Option<String>,
    /// Message payloads are remote-write protobuf instead of JSON arrays.
    pub remote_write: bool,
    /// Payloads are not snappy-compressed.
    pub uncompressed: bool,
    /// Stop after this long without a message.
    pub idle_exit: Option<Duration>,
    /// Extra librdkafka consumer settings.
    pub options: Vec<(String, String)>,
}

/// Why tailing stopped early.
#[derive(Debug, thiserror::Error)]
pub enum TailError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("message at partition {partition} offset {offset}: {why}")]
    BadMessage {
        partition: i32,
        offset: i64,
        why: String,
    },
    #[error("writing output: {0}")]
    Output(#[from] std::io::Error),
}

/// Consume and print until the limit, the idle timeout, or forever. Returns samples printed.
///
/// # Errors
/// A consumer that cannot be created or subscribed, a message that does not decompress or
/// parse, or an output that cannot be written.
pub fn tail(opts: &TailOptions, out: &mut impl Write) -> Result<u64, TailError> {
    let group = opts.group.clone().unwrap_or_else(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        format!("promrelay-kafka-tail-{}-{nanos}", std::process::id())
    });
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", &opts.brokers)
        .set("group.id", &group)
        .set(
            "enable.auto.commit",
            if opts.group.is_some() {
                "true"
            } else {
                "false"
            },
        )
        .set(
            "auto.offset.reset",
            if opts.from_beginning {
                "earliest"
            } else {
                "latest"
            },
        );
    for (k, v) in &opts.options {
        cfg.set(k, v);
    }
    let consumer: BaseConsumer = cfg.create()?;
    consumer.subscribe(&[&opts.topic])?;
    let mut printed = 0u64;
    let mut batch = SeriesBatch::new();
    let mut line = Vec::new();
    let mut last = Instant::now();
    let mut decoder = snap::raw::Decoder::new();
    loop {
        if opts.limit.is_some_and(|l| printed >= l) {
            break;
        }
        if opts.idle_exit.is_some_and(|d| last.elapsed() >= d) {
            break;
        }
        let Some(msg) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let msg = msg?;
        last = Instant::now();
        let bad = |why: String| TailError::BadMessage {
            partition: msg.partition(),
            offset: msg.offset(),
            why,
        };
        let payload = msg.payload().unwrap_or_default();
        let raw = if opts.uncompressed {
            payload.to_vec()
        } else {
            decoder
                .decompress_vec(payload)
                .map_err(|e| bad(format!("not raw snappy: {e}")))?
        };
        let remaining = |printed: u64| opts.limit.map_or(u64::MAX, |l| l - printed);
        if opts.remote_write {
            batch
                .decode_protobuf(&raw)
                .map_err(|e| bad(e.to_string()))?;
            'series: for s in batch.iter() {
                for sample in s.samples() {
                    if remaining(printed) == 0 {
                        break 'series;
                    }
                    line.clear();
                    json::write_sample(&mut line, s.labels(), sample);
                    line.push(b'\n');
                    out.write_all(&line)?;
                    printed += 1;
                }
            }
        } else {
            let items: Vec<&RawValue> =
                serde_json::from_slice(&raw).map_err(|e| bad(format!("not a JSON array: {e}")))?;
            for item in items
                .into_iter()
                .take(remaining(printed).min(usize::MAX as u64) as usize)
            {
                writeln!(out, "{}", item.get())?;
                printed += 1;
            }
        }
        out.flush()?;
    }
    Ok(printed)
}
