//! Deterministic generators of realistic remote-write requests, for tests, benchmarks and
//! `promrelay bench`.
//!
//! The label sets imitate what node-exporter and kube-state-metrics scraped by Prometheus look
//! like (`__name__`, `instance`, `job`, `namespace`, `pod`, …), so filter benchmarks see the
//! same label counts and value lengths a real fleet sends. Everything is derived from a seed:
//! the same spec always yields the same bytes.

use crate::proto::{Label, Sample, TimeSeries, WriteRequest};

/// A tiny xorshift64* generator: deterministic, dependency-free, good enough for test data.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    pub fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }
}

/// The metric names the generator draws from. The first two are what the seed's example filter
/// keeps, so a filter on them selects a known share of the series.
pub const METRIC_NAMES: &[&str] = &[
    "AliyunEcs_CPUUtilization",
    "AliyunEcs_memory_usedutilization",
    "node_cpu_seconds_total",
    "node_memory_MemAvailable_bytes",
    "node_network_receive_bytes_total",
    "node_filesystem_avail_bytes",
    "container_cpu_usage_seconds_total",
    "container_memory_working_set_bytes",
    "kube_pod_status_phase",
    "http_requests_total",
    "apiserver_request_duration_seconds_bucket",
    "process_resident_memory_bytes",
];

const NAMESPACES: &[&str] = &[
    "default",
    "kube-system",
    "monitoring",
    "payments",
    "checkout",
    "search",
];
const REGIONS: &[&str] = &["cn-hangzhou", "cn-beijing", "cn-shanghai", "eu-central-1"];
const EXTRA_LABELS: &[&str] = &[
    "container",
    "cpu",
    "device",
    "endpoint",
    "le",
    "method",
    "mode",
    "node",
    "phase",
    "service",
    "status",
    "uid",
];

/// What to generate.
#[derive(Clone, Debug)]
pub struct WorkloadSpec {
    /// Series per request.
    pub series: usize,
    /// Labels per series including `__name__` (at least 6).
    pub labels_per_series: usize,
    /// Samples per series.
    pub samples_per_series: usize,
    /// Distinct hosts (instance/id values): the cardinality knob.
    pub hosts: usize,
    pub seed: u64,
    /// Timestamp of the first sample, ms since the epoch.
    pub start_ms: i64,
}

impl Default for WorkloadSpec {
    fn default() -> Self {
        WorkloadSpec {
            series: 2000,
            labels_per_series: 10,
            samples_per_series: 1,
            hosts: 500,
            seed: 1,
            start_ms: 1_698_732_988_354,
        }
    }
}

impl WorkloadSpec {
    /// Generate request number `n` of a stream: same series as every other request of the
    /// stream (chosen by the seed), timestamps advanced by 15 s per request.
    pub fn request(&self, n: u64) -> WriteRequest {
        let mut rng = Rng::new(self.seed);
        let mut timeseries = Vec::with_capacity(self.series);
        for i in 0..self.series {
            let name = METRIC_NAMES[rng.below(METRIC_NAMES.len() as u64) as usize];
            let host = rng.below(self.hosts as u64);
            let mut labels = vec![
                Label::new("__name__", name),
                Label::new("id", &format!("i-2ze0mxp{host:06x}")),
                Label::new(
                    "instance",
                    &format!(
                        "10.{}.{}.{}:9100",
                        host >> 16,
                        (host >> 8) & 255,
                        host & 255
                    ),
                ),
                Label::new(
                    "job",
                    if name.starts_with("node_") {
                        "node-exporter"
                    } else {
                        "kubernetes-pods"
                    },
                ),
                Label::new(
                    "namespace",
                    NAMESPACES[rng.below(NAMESPACES.len() as u64) as usize],
                ),
                Label::new(
                    "regionId",
                    REGIONS[rng.below(REGIONS.len() as u64) as usize],
                ),
            ];
            for extra in EXTRA_LABELS
                .iter()
                .take(self.labels_per_series.saturating_sub(labels.len()))
            {
                labels.push(Label::new(extra, &format!("{extra}-{}", i % 97)));
            }
            labels.sort_by(|a, b| a.name.cmp(&b.name));
            let samples = (0..self.samples_per_series)
                .map(|k| Sample {
                    value: (rng.below(1_000_000) as f64) / 8.0,
                    timestamp: self.start_ms + (n as i64) * 15_000 + k as i64 * 1000,
                })
                .collect();
            timeseries.push(TimeSeries {
                labels,
                samples,
                ..Default::default()
            });
        }
        WriteRequest {
            timeseries,
            metadata: Vec::new(),
        }
    }
}
