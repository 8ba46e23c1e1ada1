//! The Kafka target: lane batches become messages (see `encode.rs` and `messages.rs`), produced with librdkafka
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
//!
//! When messages time out, or the producer reports a fatal error, the producer is replaced by a
//! new one before the retry. An idempotent producer's id lives in the broker: a broker that was
//! restarted with its state lost (Tansu's in-memory storage, a wiped cluster) answers
//! `UnknownProducerId` to every later message of the old producer, forever; a new producer gets
//! a new id (found by `tests/kafka_tansu.rs`, restarting Tansu mid-stream).

use super::{KafkaConfig, MessageBuilder};
use crate::targets::queue::Batch;
use crate::targets::{Payload, SendResult};
use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The target's producer, replaceable (see the module docs).
struct ProducerSlot {
    client: ClientConfig,
    /// Generation (bumped on each replacement) and the producer.
    current: Mutex<(u64, FutureProducer)>,
}

impl ProducerSlot {
    fn get(&self) -> (u64, FutureProducer) {
        let c = self.current.lock().unwrap_or_else(|p| p.into_inner());
        (c.0, c.1.clone())
    }

    /// Replace generation `seen` (once: lanes that saw the same failure share the new one).
    fn renew(&self, seen: u64, why: &str) {
        let mut c = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if c.0 != seen {
            return;
        }
        match self.client.create::<FutureProducer>() {
            Ok(p) => {
                tracing::warn!("kafka: replacing the producer ({why})");
                *c = (seen + 1, p);
            }
            Err(e) => tracing::error!("kafka: cannot create a new producer: {e}"),
        }
    }
}

pub struct KafkaService {
    slot: Arc<ProducerSlot>,
    builder: MessageBuilder,
}

impl KafkaConfig {
    /// One service per lane around one shared producer.
    ///
    /// # Errors
    /// librdkafka's message for a setting it refuses.
    pub fn services(&self, lanes: usize) -> Result<Vec<KafkaService>, String> {
        services(self, lanes)
    }

    /// One cluster (the brokers share the partitions): no receivers of its own.
    pub fn receivers(&self) -> Vec<String> {
        Vec::new()
    }
}

fn services(cfg: &KafkaConfig, lanes: usize) -> Result<Vec<KafkaService>, String> {
    let mut client = ClientConfig::new();
    for (k, v) in &cfg.client {
        client.set(k, v);
    }
    let producer: FutureProducer = client
        .create()
        .map_err(|e| format!("kafka producer: {e}"))?;
    let slot = Arc::new(ProducerSlot {
        client,
        current: Mutex::new((0, producer)),
    });
    Ok((0..lanes)
        .map(|lane| KafkaService {
            slot: slot.clone(),
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
    pub fn prepare(&mut self, batch: &Batch) -> Payload {
        debug_assert!(
            !batch.snappy,
            "only remote_write 1.0 targets pass requests through"
        );
        Payload::Messages(self.builder.build(&batch.body))
    }

    /// Produce every message and wait for the delivery reports. Delivered messages and
    /// permanently refused ones are removed from `messages`; the samples of refused ones are
    /// added to `dropped`. `Retry` while any message is left.
    pub async fn send(&self, payload: &mut Payload, dropped: &mut usize) -> SendResult {
        let Payload::Messages(messages) = payload else {
            return SendResult::Reject {
                why: "internal error: a Kafka target was handed a request body".into(),
            };
        };
        let (generation, producer) = self.slot.get();
        let mut pending = Vec::with_capacity(messages.len());
        let mut failed: Vec<(usize, KafkaError)> = Vec::new();
        for (i, m) in messages.iter().enumerate() {
            let mut record = FutureRecord::to(&m.topic).payload(&m.payload[..]);
            if let Some(k) = &m.key {
                record = record.key(&k[..]);
            }
            loop {
                match producer.send_result(record) {
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
        let mut timed_out = false;
        for (i, e) in failed {
            timed_out |= e.rdkafka_error_code() == Some(RDKafkaErrorCode::MessageTimedOut);
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
        if let Some((code, reason)) = producer.client().fatal_error() {
            self.slot
                .renew(generation, &format!("fatal error {code:?}: {reason}"));
        } else if timed_out {
            self.slot.renew(generation, "messages timed out");
        }
        match why {
            None => SendResult::Delivered,
            Some(why) => SendResult::Retry { after: None, why },
        }
    }
}
