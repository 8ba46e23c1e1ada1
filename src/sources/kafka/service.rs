//! The consumer of a Kafka source, and the task that learns when its messages are safe.
//!
//! **One thread per source** polls a librdkafka `BaseConsumer` (subscribed to the topics in the
//! source's `group_id`) and runs each message through the pipeline on that thread, with the
//! thread's own scratch, exactly as an HTTP request runs on the worker that read it:
//! [`Pipeline::process_with`] parses the message straight into the shard's batch, matches,
//! relabels, encodes and admits it to the target queues all or nothing, and returns what its
//! tasks' `ack` policies must wait for.
//!
//! **Offsets** (see `offsets.rs`): a message read is recorded in order; it is done when its
//! waits are (none for `ack: queued`), when it was refused and skipped, or when the dead-letter
//! topic has it. A separate task (the *acker*) awaits the waits in the order the messages were
//! read and marks them done. Only the unbroken run of done messages at a partition's front is
//! committed, synchronously, every `commit_interval`, when partitions are revoked (the
//! rebalance callback commits what is safe before it lets go), and at shutdown after the
//! queues drained. librdkafka never commits on its own (`enable.auto.commit=false`).
//!
//! **Backpressure**: when a target queue is full (or `max_pending_messages` are waiting for
//! their acks), the message is held and every assigned partition paused (librdkafka
//! pause/resume: the consumer keeps polling, so it stays in its group and rebalances are
//! served). A message of any partition that still arrives while paused is not processed: its
//! offset is remembered, and once the held message is taken the partitions are resumed and
//! those partitions are sought back to it. Nothing is dropped, and nothing is read out of order.
//!
//! **Invalid messages** are counted by reason, logged once per partition (topic, partition,
//! offset, why), and skipped, or produced unchanged (same key and value) to
//! `dead_letter_topic`: then the message is done only once the broker has it.
//!
//! **Lag**: librdkafka's statistics (every `commit_interval`) give each assigned partition's
//! high watermark and committed offset: `promrelay_kafka_source_lag`.

use super::config::{KafkaSourceConfig, SourceFormat};
use super::offsets::{Offsets, Ticket, Tp};
use super::parse::{self, JsonScratch, MessageError};
use crate::admin::Live;
use crate::decode::{DecodeError, Protocol};
use crate::pipeline::{AckWait, IngestError, Pipeline};
use crate::telemetry::{KafkaSourceHandles, Metrics};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// What one source's threads and tasks share.
struct Shared {
    cfg: KafkaSourceConfig,
    offsets: Mutex<Offsets>,
    metrics: KafkaSourceHandles,
    /// Partitions whose first invalid message was logged (then only counted).
    logged: Mutex<HashSet<Tp>>,
    /// Shutdown began: stop reading; a wait that fails now is not counted safe (its data may
    /// have been dropped by the shutdown, and must be read again after the restart).
    stopping: AtomicBool,
    /// Messages sent to the acker and not finished.
    outstanding: AtomicUsize,
}

impl Shared {
    fn offsets(&self) -> MutexGuard<'_, Offsets> {
        self.offsets.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Commit the safe offsets (of `only`, or of every assigned partition), synchronously.
    fn commit(&self, consumer: &BaseConsumer<SourceContext>, only: Option<&[Tp]>) {
        let list = self.offsets().committable(only);
        if list.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in &list {
            if let Err(e) = tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset)) {
                tracing::warn!(source = %self.cfg.name, topic, partition, "kafka source: {e}");
            }
        }
        match consumer.commit(&tpl, CommitMode::Sync) {
            Ok(()) => {
                let mut offsets = self.offsets();
                for (tp, offset) in &list {
                    offsets.committed(tp, *offset);
                }
                self.metrics.commits.inc();
            }
            Err(e) => {
                tracing::warn!(source = %self.cfg.name, "kafka source: offset commit failed (retried at the next commit): {e}");
            }
        }
    }
}

/// The consumer's callbacks: rebalances and statistics.
struct SourceContext {
    shared: Arc<Shared>,
}

fn tps(tpl: &TopicPartitionList) -> Vec<Tp> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
        .collect()
}

impl ClientContext for SourceContext {
    /// librdkafka's own log lines, into the relay's log (its `debug` option's output at
    /// debug level).
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        let source = &self.shared.cfg.name;
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => tracing::error!(source, "librdkafka: {fac} {message}"),
            RDKafkaLogLevel::Warning => tracing::warn!(source, "librdkafka: {fac} {message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(source, "librdkafka: {fac} {message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(source, "librdkafka: {fac} {message}"),
        }
    }

    fn stats(&self, stats: Statistics) {
        let offsets = self.shared.offsets();
        let mut lags = Vec::new();
        for (topic, t) in &stats.topics {
            for (&partition, p) in &t.partitions {
                let tp = (topic.clone(), partition);
                if partition < 0 || p.hi_offset < 0 || offsets.generation(&tp).is_none() {
                    continue;
                }
                let from = if p.committed_offset >= 0 {
                    p.committed_offset
                } else if p.lo_offset >= 0 {
                    p.lo_offset
                } else {
                    continue;
                };
                lags.push((topic.clone(), partition, (p.hi_offset - from).max(0)));
            }
        }
        // The whole set each time: a partition another relay owns now is forgotten here even
        // if a report raced its revocation.
        self.shared.metrics.replace_lags(&lags);
    }
}

impl ConsumerContext for SourceContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let revoked = tps(tpl);
            // What is safe now is committed before the partitions go to another member; what
            // is still waiting will be read again by that member.
            self.shared.commit(consumer, Some(&revoked));
            self.shared.offsets().revoke(&revoked);
            for (topic, partition) in &revoked {
                self.shared.metrics.forget_lag(topic, *partition);
            }
            self.shared
                .metrics
                .rebalance("revoked", revoked.len() as u64);
            tracing::info!(source = %self.shared.cfg.name, partitions = ?revoked, "kafka source: partitions revoked");
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let assigned = tps(tpl);
                self.shared.offsets().assign(assigned.iter().cloned());
                self.shared
                    .metrics
                    .rebalance("assigned", assigned.len() as u64);
                tracing::info!(source = %self.shared.cfg.name, partitions = ?assigned, "kafka source: partitions assigned");
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => {
                tracing::warn!(source = %self.shared.cfg.name, "kafka source: rebalance error: {e}");
            }
        }
    }
}

/// What the acker waits for before a message is done.
enum Wait {
    /// The message's `ack` waits, in the pipeline that admitted it.
    Acks(Arc<Pipeline>, Vec<AckWait>),
    /// An invalid message being produced to the dead-letter topic (kept to produce it again
    /// if that fails).
    DeadLetter {
        delivery: DeliveryFuture,
        key: Option<Vec<u8>>,
        payload: Option<Vec<u8>>,
    },
}

struct Pending {
    tp: Tp,
    ticket: Ticket,
    wait: Wait,
}

/// A message held while the targets push back.
struct Held {
    tp: Tp,
    generation: u64,
    offset: i64,
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
}

enum Outcome {
    Taken,
    /// Not taken now (a full queue, too many pending): hold it and pause.
    Full,
}

/// The running Kafka sources of a relay.
pub struct KafkaSources {
    running: Vec<RunningSource>,
}

struct RunningSource {
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    /// Told to commit and leave once the queues have drained.
    finish: std::sync::mpsc::Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl KafkaSources {
    /// Create and subscribe a consumer per Kafka source and start reading (the acker runs on
    /// the current tokio runtime). The sources run as they were configured at start: a reload
    /// changes their tasks, not their Kafka settings.
    ///
    /// # Errors
    /// librdkafka refuses a setting (the message names it), or the subscription fails.
    pub fn start(
        configs: Vec<KafkaSourceConfig>,
        live: &Arc<Live>,
        metrics: &Metrics,
    ) -> Result<KafkaSources, String> {
        let mut running = Vec::new();
        for cfg in configs {
            running.push(start_one(cfg, live.clone(), metrics)?);
        }
        Ok(KafkaSources { running })
    }

    /// Whether any source runs.
    pub fn is_empty(&self) -> bool {
        self.running.is_empty()
    }

    /// Shutdown begins: stop reading new messages (what was taken keeps being acknowledged).
    pub fn stop(&self) {
        for s in &self.running {
            s.shared.stopping.store(true, Ordering::Release);
            s.stop.store(true, Ordering::Release);
        }
    }

    /// After the queues drained: let the acker catch up (briefly), commit what is safe, leave
    /// the group.
    pub async fn finish(mut self) {
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline
            && self
                .running
                .iter()
                .any(|s| s.shared.outstanding.load(Ordering::Acquire) > 0)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for s in &mut self.running {
            s.stop.store(true, Ordering::Release);
            let _ = s.finish.send(());
            if let Some(t) = s.thread.take() {
                let _ = tokio::task::spawn_blocking(move || t.join()).await;
            }
        }
    }
}

fn client(settings: &[(String, String)]) -> ClientConfig {
    let mut c = ClientConfig::new();
    for (k, v) in settings {
        c.set(k, v);
    }
    c
}

fn start_one(
    cfg: KafkaSourceConfig,
    live: Arc<Live>,
    metrics: &Metrics,
) -> Result<RunningSource, String> {
    let name = cfg.name.clone();
    let shared = Arc::new(Shared {
        metrics: metrics.kafka_source.source(&name),
        offsets: Mutex::new(Offsets::default()),
        logged: Mutex::new(HashSet::new()),
        stopping: AtomicBool::new(false),
        outstanding: AtomicUsize::new(0),
        cfg,
    });
    let mut consumer_cfg = client(&shared.cfg.consumer);
    if !shared
        .cfg
        .consumer
        .iter()
        .any(|(k, _)| k == "statistics.interval.ms")
    {
        consumer_cfg.set(
            "statistics.interval.ms",
            shared.cfg.commit_interval.as_millis().max(100).to_string(),
        );
    }
    // librdkafka logs what its `debug` option asks for; the relay's log level filters it.
    consumer_cfg.set_log_level(RDKafkaLogLevel::Debug);
    let consumer: BaseConsumer<SourceContext> = consumer_cfg
        .create_with_context(SourceContext {
            shared: shared.clone(),
        })
        .map_err(|e| format!("kafka source {name:?}: {e}"))?;
    let topics: Vec<&str> = shared.cfg.topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .map_err(|e| format!("kafka source {name:?}: subscribe: {e}"))?;
    let dead_letter = match &shared.cfg.dead_letter_topic {
        Some(topic) => {
            let producer: FutureProducer = client(&shared.cfg.producer)
                .create()
                .map_err(|e| format!("kafka source {name:?}: dead-letter producer: {e}"))?;
            Some((topic.clone(), producer))
        }
        None => None,
    };
    let (tx, rx) = mpsc::channel(shared.cfg.max_pending_messages);
    tokio::spawn(ack_loop(shared.clone(), rx, dead_letter.clone()));
    let stop = Arc::new(AtomicBool::new(false));
    let (finish, finished) = std::sync::mpsc::channel();
    let mut reader = Reader {
        shared: shared.clone(),
        live,
        json: JsonScratch::default(),
        acker: tx,
        dead_letter,
        held: None,
        rewind: HashMap::new(),
        last_error: None,
    };
    let thread_stop = stop.clone();
    let thread = std::thread::Builder::new()
        .name(format!("kafka-{name}"))
        .spawn(move || reader.run(&consumer, &thread_stop, &finished))
        .map_err(|e| format!("kafka source {name:?}: cannot start its thread: {e}"))?;
    tracing::info!(source = %name, topics = ?shared.cfg.topics, group_id = %shared.cfg.group_id, "kafka source: reading");
    Ok(RunningSource {
        shared,
        stop,
        finish,
        thread: Some(thread),
    })
}

/// The consumer thread's state.
struct Reader {
    shared: Arc<Shared>,
    live: Arc<Live>,
    json: JsonScratch,
    acker: mpsc::Sender<Pending>,
    dead_letter: Option<(String, FutureProducer)>,
    /// The message the targets pushed back on.
    held: Option<Held>,
    /// While paused: per partition (and its generation), the first offset polled and not
    /// processed, to seek back to on resume.
    rewind: HashMap<Tp, (u64, i64)>,
    /// The last poll error logged, and when (each distinct error at most every 30 s).
    last_error: Option<(String, Instant)>,
}

/// How long a poll waits for a message; a held message is retried this often.
const POLL: Duration = Duration::from_millis(100);

impl Reader {
    fn run(
        &mut self,
        consumer: &BaseConsumer<SourceContext>,
        stop: &AtomicBool,
        finished: &std::sync::mpsc::Receiver<()>,
    ) {
        let interval = self.shared.cfg.commit_interval;
        let mut next_commit = Instant::now() + interval;
        while !stop.load(Ordering::Acquire) {
            if let Some(h) = self.held.take() {
                self.retry(consumer, h);
            }
            match consumer.poll(POLL) {
                Some(Ok(m)) => {
                    let tp = (m.topic().to_owned(), m.partition());
                    if self.held.is_some() {
                        self.remember(tp, m.offset());
                    } else if let Outcome::Full = self.handle(&tp, m.offset(), m.key(), m.payload())
                    {
                        self.hold(consumer, tp, m.offset(), m.key(), m.payload());
                    }
                }
                Some(Err(e)) => self.poll_error(e.to_string()),
                None => {}
            }
            if Instant::now() >= next_commit {
                self.shared.commit(consumer, None);
                next_commit = Instant::now() + interval;
            }
        }
        // Shutdown: read nothing more; keep serving the group (rebalances) until the queues
        // have drained, then commit what is safe and leave.
        while matches!(
            finished.try_recv(),
            Err(std::sync::mpsc::TryRecvError::Empty)
        ) {
            let _ = consumer.poll(POLL);
        }
        self.shared.commit(consumer, None);
        tracing::info!(source = %self.shared.cfg.name, "kafka source: offsets committed, leaving the group");
    }

    fn poll_error(&mut self, e: String) {
        let now = Instant::now();
        let repeat = self.last_error.as_ref().is_some_and(|(last, at)| {
            *last == e && now.duration_since(*at) < Duration::from_secs(30)
        });
        if !repeat {
            tracing::warn!(source = %self.shared.cfg.name, "kafka source: {e}");
            self.last_error = Some((e, now));
        }
    }

    /// Hold a message the targets pushed back on, and pause every assigned partition.
    fn hold(
        &mut self,
        consumer: &BaseConsumer<SourceContext>,
        tp: Tp,
        offset: i64,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
    ) {
        let Some(generation) = self.shared.offsets().generation(&tp) else {
            return;
        };
        self.held = Some(Held {
            tp,
            generation,
            offset,
            key: key.map(<[u8]>::to_vec),
            payload: payload.map(<[u8]>::to_vec),
        });
        self.shared.metrics.pauses.inc();
        if let Ok(assigned) = consumer.assignment()
            && let Err(e) = consumer.pause(&assigned)
        {
            tracing::warn!(source = %self.shared.cfg.name, "kafka source: pause: {e}");
        }
        tracing::debug!(source = %self.shared.cfg.name, offset, "kafka source: targets push back; partitions paused");
    }

    /// A message polled while paused: not processed now; read again from here on resume.
    fn remember(&mut self, tp: Tp, offset: i64) {
        let Some(generation) = self.shared.offsets().generation(&tp) else {
            return;
        };
        let e = self.rewind.entry(tp).or_insert((generation, offset));
        if e.0 != generation {
            *e = (generation, offset);
        } else {
            e.1 = e.1.min(offset);
        }
    }

    /// Try the held message again; once it is taken, resume and seek back where needed.
    fn retry(&mut self, consumer: &BaseConsumer<SourceContext>, h: Held) {
        let generation = self.shared.offsets().generation(&h.tp);
        if generation == Some(h.generation) {
            match self.handle(&h.tp, h.offset, h.key.as_deref(), h.payload.as_deref()) {
                Outcome::Full => {
                    self.held = Some(h);
                    return;
                }
                Outcome::Taken => {}
            }
        }
        // Taken, or its partition went to another member (which reads it again).
        if let Ok(assigned) = consumer.assignment()
            && let Err(e) = consumer.resume(&assigned)
        {
            tracing::warn!(source = %self.shared.cfg.name, "kafka source: resume: {e}");
        }
        for ((topic, partition), (generation, offset)) in std::mem::take(&mut self.rewind) {
            if self
                .shared
                .offsets()
                .generation(&(topic.clone(), partition))
                != Some(generation)
            {
                continue;
            }
            if let Err(e) = consumer.seek(
                &topic,
                partition,
                Offset::Offset(offset),
                Duration::from_secs(10),
            ) {
                // Not sought back: what follows would skip; leave the group's committed
                // offset as it is and let the next assignment read from there.
                tracing::error!(source = %self.shared.cfg.name, topic, partition, offset, "kafka source: cannot seek back after a pause: {e}; unsubscribing to re-read from the committed offset");
                consumer.unsubscribe();
                let topics: Vec<&str> = self.shared.cfg.topics.iter().map(String::as_str).collect();
                let _ = consumer.subscribe(&topics);
            }
        }
        tracing::debug!(source = %self.shared.cfg.name, "kafka source: partitions resumed");
    }

    /// Run one message through the pipeline; record it for commit.
    fn handle(
        &mut self,
        tp: &Tp,
        offset: i64,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
    ) -> Outcome {
        if self.shared.offsets().pending() >= self.shared.cfg.max_pending_messages {
            return Outcome::Full;
        }
        let Ok(permit) = self.acker.clone().try_reserve_owned() else {
            return Outcome::Full;
        };
        let pipeline = self.live.pipeline();
        let Some(index) = pipeline.source(&self.shared.cfg.name) else {
            // A reload removed the source: hold until it is back (or the relay restarts).
            self.poll_error(format!(
                "source {:?} is not in the running config; holding its messages",
                self.shared.cfg.name
            ));
            return Outcome::Full;
        };
        let mut refused: Option<MessageError> = None;
        let mut waits = Vec::new();
        let format = self.shared.cfg.format;
        let json = &mut self.json;
        let result = pipeline.process_with(index, Protocol::V1, &mut waits, |batch, limits| {
            let parsed = match payload {
                None => Err(MessageError {
                    reason: parse::reason::EMPTY,
                    detail: "the message has no value".into(),
                }),
                Some(p) => match format {
                    SourceFormat::Json => parse::json_into(batch, p, limits, json),
                    SourceFormat::RemoteWrite => parse::remote_write_into(batch, p, limits),
                },
            };
            parsed.map_err(|e| {
                let d = DecodeError::BadRequest(e.detail.clone());
                refused = Some(e);
                d
            })
        });
        match result {
            Ok(_) => {
                self.shared.metrics.messages.inc();
                let done = waits.is_empty();
                let ticket = self.shared.offsets().read(tp, offset, done);
                if let Some(ticket) = ticket
                    && !done
                {
                    self.shared.outstanding.fetch_add(1, Ordering::AcqRel);
                    permit.send(Pending {
                        tp: tp.clone(),
                        ticket,
                        wait: Wait::Acks(pipeline, waits),
                    });
                }
                Outcome::Taken
            }
            Err(IngestError::Decode(e)) => {
                let e = refused.unwrap_or_else(|| MessageError {
                    reason: parse::reason::JSON,
                    detail: e.to_string(),
                });
                self.invalid(tp, offset, key, payload, e, permit)
            }
            Err(IngestError::QueueFull { .. }) => Outcome::Full,
            Err(e @ IngestError::Spool { .. }) => {
                // As an HTTP sender retries a 503: the message is tried again (the targets that
                // took it may get it twice).
                self.poll_error(e.to_string());
                Outcome::Full
            }
        }
    }

    fn invalid(
        &mut self,
        tp: &Tp,
        offset: i64,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        e: MessageError,
        permit: mpsc::OwnedPermit<Pending>,
    ) -> Outcome {
        let (topic, partition) = tp;
        if let Some((dlt, producer)) = &self.dead_letter {
            // Produced before it counts: a full producer queue is backpressure like a full
            // target queue.
            let mut record = FutureRecord::<[u8], [u8]>::to(dlt);
            if let Some(k) = key {
                record = record.key(k);
            }
            if let Some(p) = payload {
                record = record.payload(p);
            }
            match producer.send_result(record) {
                Ok(delivery) => {
                    let Some(ticket) = self.shared.offsets().read(tp, offset, false) else {
                        return Outcome::Taken;
                    };
                    self.shared.outstanding.fetch_add(1, Ordering::AcqRel);
                    permit.send(Pending {
                        tp: tp.clone(),
                        ticket,
                        wait: Wait::DeadLetter {
                            delivery,
                            key: key.map(<[u8]>::to_vec),
                            payload: payload.map(<[u8]>::to_vec),
                        },
                    });
                }
                Err((err, _)) => {
                    self.poll_error(format!("dead-letter topic {dlt:?}: {err}"));
                    return Outcome::Full;
                }
            }
        } else {
            self.shared.offsets().read(tp, offset, true);
        }
        self.shared.metrics.messages.inc();
        self.shared.metrics.invalid(e.reason);
        let first = self
            .shared
            .logged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(tp.clone());
        if first {
            let to = self
                .dead_letter
                .as_ref()
                .map_or("skipped".to_owned(), |(t, _)| format!("written to {t:?}"));
            tracing::warn!(source = %self.shared.cfg.name, topic, partition, offset, reason = e.reason, "kafka source: invalid message {to}: {e} (further invalid messages of this partition are only counted: promrelay_kafka_source_invalid_messages_total)");
        }
        Outcome::Taken
    }
}

/// Await each pending message's waits, in the order the messages were read, and mark it done.
async fn ack_loop(
    shared: Arc<Shared>,
    mut rx: mpsc::Receiver<Pending>,
    dead_letter: Option<(String, FutureProducer)>,
) {
    while let Some(p) = rx.recv().await {
        let safe = match p.wait {
            Wait::Acks(pipeline, waits) => match pipeline.wait_acks(&waits).await {
                Ok(()) => true,
                // Shutdown may have dropped it: read it again after the restart.
                Err(_) if shared.stopping.load(Ordering::Acquire) => false,
                // The target refused it for good (counted and logged by the target): reading
                // it again would be refused again.
                Err(e) => {
                    tracing::warn!(source = %shared.cfg.name, topic = %p.tp.0, partition = p.tp.1, offset = p.ticket.offset, "kafka source: {e}; the offset moves on");
                    true
                }
            },
            Wait::DeadLetter {
                delivery,
                key,
                payload,
            } => dead_letter_delivered(&shared, dead_letter.as_ref(), delivery, key, payload).await,
        };
        if safe {
            shared.offsets().done(&p.tp, p.ticket);
        }
        shared.outstanding.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Wait until the dead-letter topic has the message, producing it again after a failure
/// (every 1 s, until shutdown).
async fn dead_letter_delivered(
    shared: &Shared,
    producer: Option<&(String, FutureProducer)>,
    mut delivery: DeliveryFuture,
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
) -> bool {
    let Some((topic, producer)) = producer else {
        return false;
    };
    loop {
        match delivery.await {
            Ok(Ok(_)) => {
                shared.metrics.dead_letter.inc();
                return true;
            }
            Ok(Err((e, _))) => {
                tracing::warn!(source = %shared.cfg.name, topic, "kafka source: dead-letter produce failed, retrying: {e}");
            }
            Err(_) => {
                tracing::warn!(source = %shared.cfg.name, topic, "kafka source: dead-letter producer went away, retrying");
            }
        }
        loop {
            if shared.stopping.load(Ordering::Acquire) {
                return false;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            let mut record = FutureRecord::<[u8], [u8]>::to(topic);
            if let Some(k) = &key {
                record = record.key(k);
            }
            if let Some(v) = &payload {
                record = record.payload(v);
            }
            if let Ok(d) = producer.send_result(record) {
                delivery = d;
                break;
            }
        }
    }
}
