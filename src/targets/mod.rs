//! Delivery targets: one folder per kind, and what every kind shares.
//!
//! A kind's folder (`remote_write/`, `kafka/`, `file/`) owns its whole life: `config.rs` (its
//! YAML keys, defaults and checks), `encode.rs` (how one series is written into a lane's
//! chunk), `service.rs` (sending one batch). Shared here: [`TargetConfig`] and the running
//! [`Target`] (`target.rs`), the bounded [`queue`] and its lanes, the durable [`spool`], the
//! send-and-retry loop ([`run_lane`], `lane.rs`) and [`tls`] settings.
//!
//! Layering, from the data path outwards: the kind's encoder writes into the request's
//! [`Output`] → [`queue::SinkQueue`] (bounded, lanes by series hash) → [`run_lane`] → the
//! kind's service (HTTP POST, Kafka produce, file append).
//!
//! `target_kinds!` at the bottom is the one registry of kinds: adding a kind adds its folder
//! and one line there (see docs/architecture.md, "Adding a target kind").

pub mod check;
pub mod file;
mod health;
pub mod kafka;
mod lane;
mod latency;
pub mod queue;
pub mod receivers;
pub mod remote_write;
pub mod spool;
mod target;
pub mod tls;

pub use health::{Health, HealthState, TargetState};
pub use lane::{Payload, SendResult, run_lane};
pub use latency::{LatencySnapshot, SendLatency};
pub use target::{CommonKeys, Output, SinkError, Target, TargetConfig};

use crate::batch::SeriesView;
use crate::config::ConfigError;
use crate::config::de::KindFirst;
use crate::relabel::MergedLabels;
use serde::Deserialize;
use std::path::Path;

/// The registry: one line per kind, `Variant => folder::{Raw, Config, Encoder, Service}`.
///
/// Each kind's folder provides, under those names:
/// - `Raw`: its YAML keys (serde, `deny_unknown_fields`), with
///   `fn validate(self, at: &str, base: &Path) -> Result<TargetConfig, ConfigError>` that
///   builds the shared keys with [`TargetConfig::new`] and its own config `.into()` the kind;
/// - `Config` (`Debug + Clone + PartialEq`: a reload keeps a target whose config is equal):
///   the checked config, with `fn encoder(&self) -> Encoder` and
///   `fn services(&self, lanes: usize) -> Result<Vec<Service>, String>`;
/// - `Encoder` (`Debug + Clone`): `fn write_series(&self, out: &mut Output, series:
///   &SeriesView, labels: MergedLabels)`, called once per matching series on the data path,
///   `fn uses_series_hash(&self, lanes: usize) -> bool` (whether it asks [`SeriesView::hash`]: the
///   pipeline then hashes a task's kept series four at a time before delivering them) and
///   `fn passes_requests_through(&self) -> bool` (whether its sender takes a remote-write 1.0
///   request's own snappy bytes, [`queue::Batch::snappy`]);
/// - `Service`: `fn prepare(&mut self, batch: &Batch) -> Payload` (once per batch) and
///   `async fn send(&self, payload: &mut Payload, dropped: &mut usize) -> SendResult`.
///
/// From that the macro builds [`RawTarget`] (chosen by `type:`, the variant in snake case),
/// [`TargetKind`], [`Encoder`] and [`Service`], each dispatching by `match`: enum dispatch,
/// no `dyn` call per series.
macro_rules! target_kinds {
    ($($variant:ident => $kind:ident::{$raw:ident, $config:ident, $encoder:ident, $service:ident}),+ $(,)?) => {
        /// A target as written in YAML, chosen by its `type:` key.
        // Read once at start; the size difference between variants does not matter.
        #[allow(clippy::large_enum_variant)]
        #[derive(Debug)]
        pub enum RawTarget {
            $($variant($kind::$raw),)+
        }

        /// The `type:` values, the variants in snake case.
        #[derive(Deserialize)]
        #[serde(rename_all = "snake_case")]
        enum TargetType {
            $($variant,)+
        }

        /// Not serde's `#[serde(tag = "type")]`: that buffers the whole map before choosing the
        /// kind, and an error inside it would name only `tasks[i].targets[j]`. Streaming the
        /// rest of the map into the kind's struct keeps the full path and the position
        /// (see [`crate::config::de`]).
        impl<'de> Deserialize<'de> for RawTarget {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct Kind;
                impl<'de> serde::de::Visitor<'de> for Kind {
                    type Value = RawTarget;

                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str("a target: a map with name, type and the type's keys")
                    }

                    fn visit_map<A: serde::de::MapAccess<'de>>(
                        self,
                        map: A,
                    ) -> Result<RawTarget, A::Error> {
                        let (kind, rest) = KindFirst::read::<TargetType>(map)?;
                        let rest = serde::de::value::MapAccessDeserializer::new(rest);
                        match kind {
                            $(TargetType::$variant => {
                                $kind::$raw::deserialize(rest).map(RawTarget::$variant)
                            })+
                        }
                    }
                }
                d.deserialize_map(Kind)
            }
        }

        impl RawTarget {
            /// Check the target at `at` (`tasks[i].targets[j]`); relative paths resolve
            /// against `base`.
            ///
            /// # Errors
            /// The first bad key, named by its field path.
            pub fn validate(self, at: &str, base: &Path) -> Result<TargetConfig, ConfigError> {
                match self {
                    $(RawTarget::$variant(t) => t.validate(at, base),)+
                }
            }
        }

        /// A checked target's kind-specific config.
        // Built once at start; the size difference between variants does not matter.
        #[allow(clippy::large_enum_variant)]
        #[derive(Debug, Clone, PartialEq)]
        pub enum TargetKind {
            $($variant($kind::$config),)+
        }

        $(impl From<$kind::$config> for TargetKind {
            fn from(c: $kind::$config) -> TargetKind {
                TargetKind::$variant(c)
            }
        })+

        impl TargetKind {
            /// The kind's `type:` in YAML (`remote_write`, `file`, `kafka`).
            pub fn type_name(&self) -> &'static str {
                match self {
                    $(TargetKind::$variant(_) => stringify!($kind),)+
                }
            }

            /// `promrelay verify`'s probes of this target (each kind's `verify.rs`).
            pub async fn verify(&self, produce_test: bool) -> Vec<check::Check> {
                match self {
                    $(TargetKind::$variant(c) => $kind::verify::verify(c, produce_test).await,)+
                }
            }

            /// What the data path writes for this target.
            pub fn encoder(&self) -> Encoder {
                match self {
                    $(TargetKind::$variant(c) => Encoder::$variant(c.encoder()),)+
                }
            }

            /// One service per lane (`lanes` of them, or fewer where the kind needs fewer).
            ///
            /// # Errors
            /// TLS material that does not load, a file that cannot be opened, a Kafka setting
            /// librdkafka refuses.
            pub fn services(&self, lanes: usize) -> Result<Vec<Service>, String> {
                match self {
                    $(TargetKind::$variant(c) => {
                        Ok(c.services(lanes)?.into_iter().map(Service::$variant).collect())
                    })+
                }
            }

            /// The URLs (without credentials) of the receivers a target sends to when it has
            /// several (`receivers.rs`); empty for a kind with one destination.
            pub fn receivers(&self) -> Vec<String> {
                match self {
                    $(TargetKind::$variant(c) => c.receivers(),)+
                }
            }
        }

        /// How the data path writes one series for a target; chosen once when it is built.
        #[derive(Debug, Clone)]
        pub enum Encoder {
            $($variant($kind::$encoder),)+
        }

        impl Encoder {
            /// Write one matching series (its delivered `labels`) into the request's `out`.
            #[inline]
            pub fn write_series(
                &self,
                out: &mut Output,
                series: &SeriesView<'_>,
                labels: MergedLabels<'_>,
            ) {
                match self {
                    $(Encoder::$variant(e) => e.write_series(out, series, labels),)+
                }
            }

            /// Whether [`Encoder::write_series`] reads the series hash (to pick one of
            /// `lanes`, or a message key).
            pub fn uses_series_hash(&self, lanes: usize) -> bool {
                match self {
                    $(Encoder::$variant(e) => e.uses_series_hash(lanes),)+
                }
            }

            /// Whether a remote-write 1.0 request this target would queue byte for byte can be
            /// queued as its sender's compressed bytes instead (see
            /// [`queue::SinkQueue::append_compressed`]); the target must also have one lane.
            pub fn passes_requests_through(&self) -> bool {
                match self {
                    $(Encoder::$variant(e) => e.passes_requests_through(),)+
                }
            }

            /// Write a request's metadata `entries` (spans into `buf`) that the task keeps;
            /// `per_series`: they came attached to series (remote-write 2.0), and the series
            /// carry them too. Once per request and target, never per series.
            pub fn write_metadata<'a>(
                &self,
                out: &mut Output,
                buf: &[u8],
                entries: impl Iterator<Item = &'a crate::batch::MetadataRef> + Clone,
                per_series: bool,
            ) {
                match self {
                    $(Encoder::$variant(e) => e.write_metadata(out, buf, entries, per_series),)+
                }
            }
        }

        /// The service a lane sends through. One per lane, never moved in a hot loop.
        #[allow(clippy::large_enum_variant)]
        pub enum Service {
            $($variant($kind::$service),)+
        }

        impl Service {
            /// Turn a batch into the payload sent (compressed for remote-write, messages for
            /// Kafka), once per batch so retries resend the same bytes.
            fn prepare(&mut self, batch: &queue::Batch) -> Payload {
                match self {
                    $(Service::$variant(s) => s.prepare(batch),)+
                }
            }

            /// One attempt. `dropped` collects samples refused for good in a partial refusal.
            async fn send(&self, payload: &mut Payload, dropped: &mut usize) -> SendResult {
                match self {
                    $(Service::$variant(s) => s.send(payload, dropped).await,)+
                }
            }
        }
    };
}

target_kinds! {
    RemoteWrite => remote_write::{RawRemoteWrite, RemoteWriteConfig, RemoteWriteEncoder, RemoteWriteService},
    File => file::{RawFile, FileConfig, FileEncoder, FileService},
    Kafka => kafka::{RawKafka, KafkaConfig, KafkaLayout, KafkaService},
}
