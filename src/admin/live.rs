//! The running relay's tasks: the compiled pipeline the data path reads (swapped whole, never
//! locked), the targets behind it with their senders, and reload.
//!
//! A reload builds everything new off the request path, then swaps the pipeline once:
//! requests that started on the old pipeline finish with it. Per target, by (task, target)
//! name:
//! - **unchanged** (same kind settings, queue, spool, overflow and ack): the very same
//!   [`Target`] (queue, spool, senders, connections) goes into the new pipeline; filter, task
//!   labels, external labels, description and `enabled` are the pipeline's, so they change
//!   for the next request without touching it;
//! - **removed**, or its task disabled: it takes no more data (a request still on the old
//!   pipeline that reaches it is refused, and retried by its sender against the new one); what
//!   it holds in memory is still delivered for up to `shutdown_timeout`, then counted
//!   `dropped{reason="removed"}`; a spool or overflow stays on disk and is picked up again by
//!   a target of the same name and directory;
//! - **changed**: the old one is retired as if removed and a new one starts. When the new one
//!   needs a directory the old one holds (a spool, or an overflow in use), it starts once the
//!   old one has let go (its disk part stops after the batch in flight; its memory part drains
//!   first): until then the target refuses requests (503, retried), so nothing is lost.
//!
//! Nothing changes when the new config does not load, or changes a `server` key a running
//! process cannot change (addresses, TLS, shards, data directory).

use crate::config::{Ack, Config, ConfigError, ServerConfig, TaskConfig};
use crate::pipeline::{Pipeline, TargetMap};
use crate::targets::{SinkError, Target, TargetConfig, run_lane};
use crate::telemetry::Metrics;
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{Mutex, watch};
use tokio::task::{JoinHandle, JoinSet};

/// A target's key: (task name, target name).
pub type Key = (String, String);

/// How often a target's disk part is synced, when it has one.
const DISK_SYNC: Duration = Duration::from_secs(1);

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0} cannot change while the relay runs; restart it to apply the new value")]
    NeedsRestart(String),
    #[error(transparent)]
    Target(#[from] SinkError),
    #[error("the relay was started without a config file; there is nothing to reload")]
    NoFile,
    #[error("the relay is shutting down")]
    Stopping,
}

/// What a reload did, for the log and the `/-/reload` answer.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadSummary {
    pub unchanged: usize,
    pub started: Vec<Key>,
    pub changed: Vec<Key>,
    pub removed: Vec<Key>,
}

impl std::fmt::Display for ReloadSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `2 started [a/x, b/y]`, or `0 started`.
        let part = |keys: &[Key], what: &str| {
            let names: Vec<String> = keys.iter().map(|(t, n)| format!("{t}/{n}")).collect();
            if names.is_empty() {
                format!("0 {what}")
            } else {
                format!("{} {what} [{}]", names.len(), names.join(", "))
            }
        };
        write!(
            f,
            "targets: {} unchanged, {}, {}, {}",
            self.unchanged,
            part(&self.started, "started"),
            part(&self.changed, "restarted"),
            part(&self.removed, "removed")
        )
    }
}

/// A target and the tasks that send its batches.
struct Running {
    target: Arc<Target>,
    config: TargetConfig,
    ack: Ack,
    senders: JoinSet<()>,
    stop_sync: watch::Sender<bool>,
    syncer: Option<JoinHandle<()>>,
}

impl Running {
    /// Build a target and start its senders.
    fn start(
        task: &TaskConfig,
        cfg: &TargetConfig,
        metrics: &Metrics,
        data_dir: &std::path::Path,
    ) -> Result<Running, SinkError> {
        let services = cfg
            .kind
            .services(cfg.queue.shards)
            .map_err(|message| SinkError {
                target: cfg.name.clone(),
                message,
            })?;
        let target = Arc::new(Target::new(
            &task.name,
            cfg,
            metrics.target(&task.name, &cfg.name),
            task.ack,
            data_dir,
        )?);
        let mut senders = JoinSet::new();
        for (lane, service) in services.into_iter().enumerate() {
            senders.spawn(run_lane(target.clone(), lane, service));
        }
        let (stop_sync, mut stop_rx) = watch::channel(false);
        let syncer =
            (target.queue.disk().is_some() || target.queue.overflow().is_some()).then(|| {
                let target = target.clone();
                tokio::spawn(async move {
                    let stop = async move {
                        let _ = stop_rx.wait_for(|&v| v).await;
                    };
                    target.queue.run_sync(DISK_SYNC, stop).await;
                })
            });
        let spool = cfg.spool.as_ref().map(|s| s.dir.display().to_string());
        tracing::info!(
            task = %task.name, source = %task.source, target = %cfg.name,
            r#type = cfg.kind.type_name(), ack = %task.ack, lanes = cfg.queue.shards,
            spool = spool.as_deref(), "target"
        );
        Ok(Running {
            target,
            config: cfg.clone(),
            ack: task.ack,
            senders,
            stop_sync,
            syncer,
        })
    }

    /// A target that refuses every request until the real one can start (it needs the
    /// directory a retiring one still holds).
    fn placeholder(task: &TaskConfig, cfg: &TargetConfig, metrics: &Metrics) -> Arc<Target> {
        let mut cfg = cfg.clone();
        cfg.spool = None;
        cfg.overflow = None;
        let target = Target::new(
            &task.name,
            &cfg,
            metrics.target(&task.name, &cfg.name),
            task.ack,
            std::path::Path::new("."),
        )
        .map(Arc::new);
        match target {
            Ok(t) => {
                t.queue.close();
                t
            }
            // Unreachable: a target without spool or overflow opens no file.
            Err(e) => unreachable_target(e),
        }
    }

    /// Whether `cfg` (of a task acking `ack`) can keep running as this target.
    fn same(&self, cfg: &TargetConfig, ack: Ack) -> bool {
        let mut a = self.config.clone();
        let mut b = cfg.clone();
        // External labels are applied by the pipeline, not by the target.
        a.external_labels = Default::default();
        b.external_labels = Default::default();
        a == b && self.ack == ack
    }

    /// Stop taking data, let the senders deliver what is held for up to `drain`, then count
    /// what is left in memory (`removed` when a reload retired it, else `shutdown`), sync and
    /// release the disk part.
    async fn retire(mut self, drain: Duration, by_reload: bool) {
        let t = &self.target;
        let start = t.drain_start();
        t.queue.close();
        let drained = tokio::time::timeout(drain, async {
            while self.senders.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            self.senders.abort_all();
            while self.senders.join_next().await.is_some() {}
        }
        let left = t.queue.memory_held();
        if left > 0 {
            let counter = if by_reload {
                &t.metrics.dropped_removed
            } else {
                &t.metrics.dropped_shutdown
            };
            counter.inc_by(left as u64);
        }
        let _ = self.stop_sync.send(true);
        if let Some(s) = self.syncer.take() {
            let _ = s.await;
        }
        t.log_drained(&start);
        t.queue.release_disk();
    }
}

fn unreachable_target(e: SinkError) -> Arc<Target> {
    panic!("a memory-only target cannot fail to build: {e}")
}

struct State {
    running: HashMap<Key, Running>,
    /// Targets removed or changed by a reload, still draining.
    retiring: JoinSet<()>,
    server: ServerConfig,
    tasks: Arc<Vec<TaskConfig>>,
    /// Set by [`Live::shutdown`]: a reload that reaches the lock afterwards (a task API request
    /// still in its check) is refused rather than start the stopped targets again.
    stopped: bool,
}

/// See the module docs.
pub struct Live {
    pipeline: ArcSwap<Pipeline>,
    metrics: Arc<Metrics>,
    state: Mutex<State>,
    /// The config file reloads read; `None` for a relay built from a config in memory.
    config_path: Option<PathBuf>,
    /// The tasks as configured (the admin API's view), swapped with the pipeline.
    tasks: ArcSwap<Vec<TaskConfig>>,
    /// The hash of the config files that run now.
    hash: AtomicU64,
    rates: super::rates::Rates,
    /// Serialises the task API's check-write-reload sequences.
    pub(crate) writes: Mutex<()>,
    /// The last `POST /api/v1/tasks/{name}/verify` answer per task, for its page.
    pub(crate) last_verify: std::sync::Mutex<HashMap<String, serde_json::Value>>,
    /// Removed targets that finished retiring, with their receivers' URLs: their metrics are
    /// forgotten by whoever holds `state` next ([`Live::forget_removed`]).
    forget: std::sync::Mutex<Vec<(Key, Vec<String>)>>,
    /// Who listens to which task (kept across reloads).
    pub(crate) taps: crate::pipeline::tap::TapHub,
}

impl Live {
    /// Start every target of `config` and assemble its pipeline.
    ///
    /// # Errors
    /// A target that cannot be built (TLS files, an unwritable file, a spool in use).
    pub fn start(
        config: Config,
        metrics: Arc<Metrics>,
        config_path: Option<PathBuf>,
    ) -> Result<Live, SinkError> {
        let mut running = HashMap::new();
        for task in config.tasks.iter().filter(|t| t.enabled) {
            for t in &task.targets {
                let r = Running::start(task, t, &metrics, &config.server.data_dir)?;
                running.insert((task.name.clone(), t.name.clone()), r);
            }
        }
        let map: TargetMap = running
            .iter()
            .map(|(k, r)| (k.clone(), r.target.clone()))
            .collect();
        let taps = crate::pipeline::tap::TapHub::default();
        let pipeline = Pipeline::assemble(&config, &map, &metrics, &taps);
        metrics.config_loaded(true, config.hash);
        let hash = config.hash;
        let tasks = Arc::new(config.tasks);
        Ok(Live {
            pipeline: ArcSwap::from_pointee(pipeline),
            metrics,
            state: Mutex::new(State {
                running,
                retiring: JoinSet::new(),
                server: config.server,
                tasks: tasks.clone(),
                stopped: false,
            }),
            config_path,
            tasks: ArcSwap::new(tasks),
            hash: AtomicU64::new(hash),
            rates: Default::default(),
            writes: Mutex::new(()),
            last_verify: Default::default(),
            forget: Default::default(),
            taps,
        })
    }

    /// The pipeline requests run through now. One atomic reference count per call; hold it
    /// for the whole request, so a reload in between does not change it halfway.
    #[inline]
    pub fn pipeline(&self) -> Arc<Pipeline> {
        self.pipeline.load_full()
    }

    /// The tasks as configured now (enabled or not).
    pub fn tasks(&self) -> Arc<Vec<TaskConfig>> {
        self.tasks.load_full()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Rates over the last minute (fed by [`super::rates::sample`]).
    pub fn rates(&self) -> &super::rates::Rates {
        &self.rates
    }

    /// The hash of the config files that run now ([`Config::files_hash`]).
    pub fn config_hash(&self) -> u64 {
        self.hash.load(Ordering::Acquire)
    }

    /// The config file reloads read.
    pub fn config_path(&self) -> Option<&std::path::Path> {
        self.config_path.as_deref()
    }

    /// Reload the config file and apply it (see the module docs). Reloads are serialised; the
    /// call returns when the new config runs (or when it was refused, changing nothing).
    ///
    /// # Errors
    /// [`ReloadError`]: the config does not load, or needs a restart, or a new target cannot
    /// be built. The old config keeps running.
    pub async fn reload(self: &Arc<Self>) -> Result<ReloadSummary, ReloadError> {
        // A task of its own, so it runs to the end even when the caller goes away (a client
        // that hangs up on the task API): a reload stopped at one of its awaits would leave
        // the running targets and the pipeline disagreeing.
        let live = self.clone();
        match tokio::spawn(async move { live.reload_now().await }).await {
            Ok(result) => result,
            Err(e) => joined(e).await,
        }
    }

    async fn reload_now(self: &Arc<Self>) -> Result<ReloadSummary, ReloadError> {
        let mut st = self.state.lock().await;
        let began = std::time::Instant::now();
        if st.stopped {
            return Err(ReloadError::Stopping);
        }
        let result = match self.config_path.clone() {
            None => Err(ReloadError::NoFile),
            Some(path) => match load_off_worker(path).await {
                Err(e) => Err(e.into()),
                Ok(config) => {
                    let hash = config.hash;
                    self.apply(&mut st, config).await.inspect(|_| {
                        self.metrics.config_loaded(true, hash);
                        self.hash.store(hash, Ordering::Release);
                    })
                }
            },
        };
        match &result {
            Ok(summary) => tracing::info!(
                took = %crate::telemetry::logging::Seconds(began.elapsed()),
                "config reloaded: {summary}"
            ),
            Err(e) => {
                self.metrics.config_loaded(false, 0);
                tracing::error!("config reload failed, the running config stays: {e}");
            }
        }
        self.forget_removed(&st);
        result
    }

    async fn apply(
        self: &Arc<Self>,
        st: &mut State,
        config: Config,
    ) -> Result<ReloadSummary, ReloadError> {
        needs_restart(&st.server, &config.server)?;
        for w in &config.warnings {
            tracing::warn!("{w}");
        }
        // Plan, without changing anything yet.
        let mut summary = ReloadSummary::default();
        let mut keep: Vec<Key> = Vec::new();
        let mut fresh: Vec<(Key, usize, usize)> = Vec::new();
        let mut wait: Vec<(Key, usize, usize)> = Vec::new();
        for (ti, task) in config.tasks.iter().enumerate().filter(|(_, t)| t.enabled) {
            for (gi, t) in task.targets.iter().enumerate() {
                let key = (task.name.clone(), t.name.clone());
                match st.running.get(&key) {
                    Some(r) if r.same(t, task.ack) => keep.push(key),
                    Some(r) => {
                        summary.changed.push(key.clone());
                        if r.target.queue.disk().is_some() {
                            wait.push((key, ti, gi));
                        } else {
                            fresh.push((key, ti, gi));
                        }
                    }
                    None => {
                        summary.started.push(key.clone());
                        fresh.push((key, ti, gi));
                    }
                }
            }
        }
        let wanted: std::collections::HashSet<&Key> = keep
            .iter()
            .chain(fresh.iter().map(|f| &f.0))
            .chain(wait.iter().map(|w| &w.0))
            .collect();
        summary.removed = st
            .running
            .keys()
            .filter(|k| !wanted.contains(k))
            .cloned()
            .collect();
        summary.unchanged = keep.len();

        // Build what is new. A failure here changes nothing (what was built is dropped).
        let (mut config, built) = self.start_off_worker(config, &fresh).await;
        let mut started: HashMap<Key, Running> = HashMap::new();
        let mut failed: Vec<(Key, usize, usize)> = Vec::new();
        let mut first_error = None;
        for (f, r) in fresh.iter().zip(built) {
            match r {
                Ok(r) => {
                    started.insert(f.0.clone(), r);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                    failed.push(f.clone());
                }
            }
        }
        if let Some(e) = first_error {
            if st.retiring.is_empty() {
                return Err(e.into());
            }
            // Perhaps targets retired by an earlier reload still hold their directories: let
            // the retiring ones finish, then try every target that failed once more.
            tracing::info!(
                "{e} ({} target(s) did not start); waiting for retiring targets to let go",
                failed.len()
            );
            wait_all(&mut st.retiring, st.server.shutdown_timeout).await;
            let again;
            (config, again) = self.start_off_worker(config, &failed).await;
            for ((key, _, _), r) in failed.iter().zip(again) {
                started.insert(key.clone(), r?);
            }
        }

        // Swap: kept and started targets run the new config; those waiting for a directory
        // refuse for now.
        let mut retire_now: Vec<Running> = Vec::new();
        let mut retire_first: Vec<(Key, Running)> = Vec::new();
        for key in summary.removed.iter() {
            if let Some(r) = st.running.remove(key) {
                retire_now.push(r);
            }
        }
        for (key, _, _) in &fresh {
            if let Some(r) = st.running.remove(key) {
                retire_now.push(r);
            }
        }
        for (key, _, _) in &wait {
            if let Some(r) = st.running.remove(key) {
                retire_first.push((key.clone(), r));
            }
        }
        st.running.extend(started);
        let mut map: TargetMap = st
            .running
            .iter()
            .map(|(k, r)| (k.clone(), r.target.clone()))
            .collect();
        for (key, ti, gi) in &wait {
            let task = &config.tasks[*ti];
            map.insert(
                key.clone(),
                Running::placeholder(task, &task.targets[*gi], &self.metrics),
            );
        }
        let (config, mut map) = self.swap(config, map).await;

        // Retire in the background what nothing waits for; forget its metrics once drained,
        // unless a target of the same name runs again by then.
        let drain = config.server.shutdown_timeout;
        for r in retire_now {
            let key = (r.target.task.clone(), r.target.name.clone());
            let urls: Vec<String> = r.target.receivers.iter().map(|x| x.url.clone()).collect();
            let removed = summary.removed.contains(&key);
            let live = self.clone();
            st.retiring.spawn(async move {
                r.retire(drain, true).await;
                if removed {
                    // Not `lock().await`: a reload or shutdown holding the lock may be waiting
                    // for this very task (`wait_all`). Whoever holds it forgets the metrics.
                    live.forget
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((key, urls));
                    if let Ok(st) = live.state.try_lock() {
                        live.forget_removed(&st);
                    }
                }
            });
        }
        // Changed targets that need their old directory: retire the old ones now, then start.
        let mut failed = None;
        let (config, _) = if !wait.is_empty() {
            let olds = retire_first.into_iter().map(|(_, r)| r.retire(drain, true));
            futures_join_all(olds).await;
            let (config, built) = self.start_off_worker(config, &wait).await;
            for ((key, _, _), r) in wait.iter().zip(built) {
                match r {
                    Ok(r) => {
                        map.insert(key.clone(), r.target.clone());
                        st.running.insert(key.clone(), r);
                    }
                    Err(e) => {
                        tracing::error!(task = %key.0, target = %key.1, "restarted target cannot start, it refuses requests until the next reload: {e}");
                        failed = Some(e);
                    }
                }
            }
            self.swap(config, map).await
        } else {
            (config, map)
        };
        // Tasks that no longer run lose their series.
        for old in st.tasks.iter().filter(|t| t.enabled) {
            if !config.tasks.iter().any(|t| t.enabled && t.name == old.name) {
                self.metrics.remove_task(&old.name);
            }
        }
        let tasks = Arc::new(config.tasks);
        self.tasks.store(tasks.clone());
        st.tasks = tasks;
        st.server = config.server;
        match failed {
            Some(e) => Err(e.into()),
            None => Ok(summary),
        }
    }

    /// Forget the metrics of the removed targets that finished retiring ([`Live::forget`]),
    /// unless a target of the same name runs again by now. Called with the state locked, so
    /// no reload is starting one meanwhile (a new target takes its metric handles when it is
    /// built; forgetting them then would leave it counting into series nobody exports).
    fn forget_removed(&self, st: &State) {
        let gone = std::mem::take(&mut *self.forget.lock().unwrap_or_else(|p| p.into_inner()));
        for (key, urls) in gone {
            if !st.running.contains_key(&key) {
                self.metrics.remove_target(&key.0, &key.1);
                for url in &urls {
                    self.metrics.receivers.remove(&key.0, &key.1, url);
                }
            }
        }
    }

    /// Start the targets `which` names (key, task index, target index in the task) off the
    /// runtime's workers ([`off_worker`]): a target's TLS setup loads the system's CA
    /// certificates for each lane, a Kafka target creates its producer, a spool opens and
    /// reads its files. `config` is handed back, with one result per target in order.
    async fn start_off_worker(
        self: &Arc<Self>,
        config: Config,
        which: &[(Key, usize, usize)],
    ) -> (Config, Vec<Result<Running, SinkError>>) {
        let which: Vec<(usize, usize)> = which.iter().map(|(_, ti, gi)| (*ti, *gi)).collect();
        let metrics = self.metrics.clone();
        off_worker(move || {
            let built = which
                .iter()
                .map(|&(ti, gi)| {
                    let task = &config.tasks[ti];
                    Running::start(task, &task.targets[gi], &metrics, &config.server.data_dir)
                })
                .collect();
            (config, built)
        })
        .await
    }

    /// Assemble the pipeline of `config` over `targets` and switch requests to it; both are
    /// handed back. The assembly runs off the runtime's workers ([`off_worker`]): it compiles
    /// every source's task index, automata for regex conditions included (a second for a
    /// thousand tasks with regexes, docs/performance.md), and the requests of the worker it
    /// ran on would wait that long.
    async fn swap(self: &Arc<Self>, config: Config, targets: TargetMap) -> (Config, TargetMap) {
        let live = self.clone();
        let (config, targets, pipeline) = off_worker(move || {
            let pipeline = Pipeline::assemble(&config, &targets, &live.metrics, &live.taps);
            (config, targets, pipeline)
        })
        .await;
        self.pipeline.store(Arc::new(pipeline));
        (config, targets)
    }

    /// Stop every target: memory queues drain for up to `drain` (what is left is counted
    /// `dropped{reason="shutdown"}`), disk parts stop after their batch in flight and stay for
    /// the next start, then everything on disk is synced.
    pub async fn shutdown(&self, drain: Duration) {
        let mut st = self.state.lock().await;
        st.stopped = true;
        let running: Vec<Running> = st.running.drain().map(|(_, r)| r).collect();
        futures_join_all(running.into_iter().map(|r| r.retire(drain, false))).await;
        wait_all(&mut st.retiring, drain).await;
    }
}

/// [`Config::load`] off the runtime's workers: it compiles every task's regexes.
async fn load_off_worker(path: PathBuf) -> Result<Config, ConfigError> {
    off_worker(move || Config::load(&path)).await
}

/// Run `work` on the runtime's blocking threads and wait for it: for loading and compiling a
/// config (regexes, automata), which can take a second and would otherwise hold up every
/// request of the runtime worker it ran on.
pub(crate) async fn off_worker<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(work).await {
        Ok(v) => v,
        Err(e) => joined(e).await,
    }
}

/// What a task that did not finish leaves its waiter: its panic, carried on; or, when the
/// runtime shuts down and cancelled it, a wait the runtime's shutdown ends.
pub(crate) async fn joined<T>(e: tokio::task::JoinError) -> T {
    match e.try_into_panic() {
        Ok(panic) => std::panic::resume_unwind(panic),
        Err(_) => std::future::pending().await,
    }
}

/// The `server` keys a running relay cannot change.
fn needs_restart(old: &ServerConfig, new: &ServerConfig) -> Result<(), ReloadError> {
    let mut changed = Vec::new();
    if old.listen != new.listen {
        changed.push("server.listen");
    }
    if old.admin_listen != new.admin_listen {
        changed.push("server.admin.listen");
    }
    if old
        .tls
        .as_ref()
        .map(|t| (&t.cert_file, &t.key_file, &t.client_ca_file))
        != new
            .tls
            .as_ref()
            .map(|t| (&t.cert_file, &t.key_file, &t.client_ca_file))
    {
        changed.push("server.tls");
    }
    if old.shards != new.shards {
        changed.push("server.shards");
    }
    if old.data_dir != new.data_dir {
        changed.push("server.data_dir");
    }
    if changed.is_empty() {
        Ok(())
    } else {
        Err(ReloadError::NeedsRestart(changed.join(", ")))
    }
}

/// Wait for every task of `set`, for at most `limit`; then abort the rest.
async fn wait_all(set: &mut JoinSet<()>, limit: Duration) {
    let done =
        tokio::time::timeout(limit, async { while set.join_next().await.is_some() {} }).await;
    if done.is_err() {
        set.abort_all();
        while set.join_next().await.is_some() {}
    }
}

/// Run futures to completion concurrently (without a dependency for `join_all`).
async fn futures_join_all<F: std::future::Future<Output = ()> + Send + 'static>(
    futures: impl Iterator<Item = F>,
) {
    let mut set = JoinSet::new();
    for f in futures {
        set.spawn(f);
    }
    while set.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests;
