//! The Kafka target: lane batches become messages (see [`layout`]), produced with librdkafka
//! and acknowledged only when the broker's delivery report says so.
//!
//! One `FutureProducer` per target, shared by its lanes. Each message already carries thousands
//! of samples, so a future per message costs nothing measurable, and awaiting the delivery report
//! is what lets a batch count as delivered only once the broker has it (`acks=all`,
//! idempotence on). librdkafka retries transient errors itself until `message.timeout.ms`;
//! what is still undelivered after that is retried here with the queue's backoff, except errors
//! retrying cannot fix (message too large, authorization, invalid topic), which are dropped and
//! counted. A full producer queue makes the lane wait, which fills the target queue, which
//! pushes back to ingest with 503/429: nothing is dropped for lack of room.

pub mod layout;

use super::SendResult;
use crate::config::KafkaConfig;
use layout::{KafkaMessage, MessageBuilder};
use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::time::Duration;

pub struct KafkaService {
    producer: FutureProducer,
    builder: MessageBuilder,
}

/// Build one service per lane around one shared producer.
///
/// # Errors
/// librdkafka's message for a setting it refuses.
pub fn services(cfg: &KafkaConfig, lanes: usize) -> Result<Vec<KafkaService>, String> {
    let mut client = ClientConfig::new();
    for (k, v) in &cfg.client {
        client.set(k, v);
    }
    let producer: FutureProducer = client
        .create()
        .map_err(|e| format!("kafka producer: {e}"))?;
    Ok((0..lanes)
        .map(|lane| KafkaService {
            producer: producer.clone(),
            builder: MessageBuilder::new(cfg, lane),
        })
        .collect())
}

/// Errors that no retry can fix.
fn is_permanent(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::InvalidMessage
                | RDKafkaErrorCode::InvalidRecord
                | RDKafkaErrorCode::InvalidTopic
                | RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::ClusterAuthorizationFailed
        )
    )
}

impl KafkaService {
    pub fn prepare(&mut self, body: &[u8]) -> Vec<KafkaMessage> {
        self.builder.build(body)
    }

    /// Produce every message and wait for the delivery reports. Delivered messages and
    /// permanently refused ones are removed from `messages`; the samples of refused ones are
    /// added to `dropped`. `Retry` while any message is left.
    pub async fn send(&self, messages: &mut Vec<KafkaMessage>, dropped: &mut usize) -> SendResult {
        let mut pending = Vec::with_capacity(messages.len());
        let mut failed: Vec<(usize, KafkaError)> = Vec::new();
        for (i, m) in messages.iter().enumerate() {
            let mut record = FutureRecord::to(&m.topic).payload(&m.payload[..]);
            if let Some(k) = &m.key {
                record = record.key(&k[..]);
            }
            loop {
                match self.producer.send_result(record) {
                    Ok(f) => {
                        pending.push((i, f));
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        // The producer's own queue is full: wait for deliveries to make room.
                        record = r;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((e, _)) => {
                        failed.push((i, e));
                        break;
                    }
                }
            }
        }
        let mut done = vec![false; messages.len()];
        for (i, f) in pending {
            match f.await {
                Ok(Ok(_)) => done[i] = true,
                Ok(Err((e, _))) => failed.push((i, e)),
                Err(_) => failed.push((i, KafkaError::Canceled)),
            }
        }
        let mut why = None;
        for (i, e) in failed {
            if is_permanent(&e) {
                let m = &messages[i];
                *dropped += m.samples;
                tracing::error!(topic = %m.topic, samples = m.samples, bytes = m.payload.len(), "kafka refused a message, dropping it (not retried): {e}");
                done[i] = true;
            } else {
                why.get_or_insert_with(|| format!("kafka: {e}"));
            }
        }
        let mut i = 0;
        messages.retain(|_| {
            i += 1;
            !done[i - 1]
        });
        match why {
            None => SendResult::Delivered,
            Some(why) => SendResult::Retry { after: None, why },
        }
    }
}
