//! Reloads do their heavy work off the runtime's workers. The runtime in these tests has one
//! thread, so a task that counts its turns runs only while the work under test waits: work done
//! on that thread lets it run a handful of times (at the awaits around it), work done off it
//! lets it run all along (hundreds of thousands of times for these configs).

use super::*;
use std::path::Path;
use std::sync::atomic::AtomicBool;

/// A config with one task, then `heavy` tasks each with a regex name condition (compiled when
/// the config loads, and into the source's index when the pipeline is assembled) and one
/// target at `scheme`://127.0.0.1:9.
fn config_text(dir: &Path, heavy: usize, scheme: &str) -> String {
    let mut text = format!(
        "server:\n  data_dir: {:?}\ntasks:\n  - name: first\n    targets: [{{name: r, type: remote_write, url: \"http://127.0.0.1:9/w\"}}]\n",
        dir.join("data")
    );
    for i in 0..heavy {
        text.push_str(&format!(
            "  - name: t{i}\n    filter: [\"__name__=metric_{i}(_sum|_count)?\", \"id=i-{i}.*\"]\n    targets: [{{name: r, type: remote_write, url: \"{scheme}://127.0.0.1:9/w\"}}]\n"
        ));
    }
    text
}

/// A directory of its own, removed when the test ends, passed or not.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!("promrelay-live-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A relay started from `text`, its config file at `dir/promrelay.yaml`.
fn live(dir: &Path, text: &str) -> Arc<Live> {
    let path = dir.join("promrelay.yaml");
    std::fs::write(&path, text).unwrap();
    let config = Config::load(&path).unwrap();
    Arc::new(Live::start(config, Arc::new(Metrics::new()), Some(path)).unwrap())
}

/// Run `work`, and count the turns another task of the runtime got meanwhile.
async fn turns_during<T>(work: impl Future<Output = T>) -> (T, u64) {
    let turns = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let ticker = tokio::spawn({
        let (turns, stop) = (turns.clone(), stop.clone());
        async move {
            while !stop.load(Ordering::Relaxed) {
                turns.fetch_add(1, Ordering::Relaxed);
                tokio::task::yield_now().await;
            }
        }
    });
    tokio::task::yield_now().await;
    let before = turns.load(Ordering::Relaxed);
    let out = work.await;
    let during = turns.load(Ordering::Relaxed) - before;
    stop.store(true, Ordering::Relaxed);
    ticker.await.unwrap();
    (out, during)
}

/// Fewer turns than this: the work ran on the runtime's thread (measured: 1 then; over 100,000
/// off it).
const OFF_WORKER: u64 = 1_000;

#[tokio::test(flavor = "current_thread")]
async fn a_reload_loads_the_new_config_off_the_runtime_worker() {
    let dir = Dir::new("load");
    let path = dir.0.join("promrelay.yaml");
    std::fs::write(&path, config_text(&dir.0, 300, "http")).unwrap();
    let (config, turns) = turns_during(load_off_worker(path)).await;
    assert_eq!(config.unwrap().tasks.len(), 301);
    assert!(
        turns >= OFF_WORKER,
        "other tasks ran {turns} times on the runtime's thread while 300 regex tasks loaded: they loaded on that thread"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_reload_assembles_the_pipeline_off_the_runtime_worker() {
    let dir = Dir::new("assemble");
    let text = config_text(&dir.0, 300, "http");
    let live = live(&dir.0, &text);
    let map: TargetMap = live
        .state
        .lock()
        .await
        .running
        .iter()
        .map(|(k, r)| (k.clone(), r.target.clone()))
        .collect();
    let config = Config::load(&dir.0.join("promrelay.yaml")).unwrap();
    let before = live.pipeline();
    let (_, turns) = turns_during(live.swap(config, map)).await;
    assert!(
        !Arc::ptr_eq(&before, &live.pipeline()),
        "the new pipeline runs"
    );
    assert_eq!(live.pipeline().targets().len(), 301);
    assert!(
        turns >= OFF_WORKER,
        "other tasks ran {turns} times on the runtime's thread while the pipeline of 300 regex tasks was assembled: it was assembled on that thread"
    );
    live.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_reload_starts_new_targets_off_the_runtime_worker() {
    let dir = Dir::new("start");
    let live = live(&dir.0, &config_text(&dir.0, 0, "http"));
    // https targets: each lane's TLS setup loads the system's CA certificates.
    let path = dir.0.join("promrelay.yaml");
    std::fs::write(&path, config_text(&dir.0, 40, "https")).unwrap();
    let config = Config::load(&path).unwrap();
    let which: Vec<(Key, usize, usize)> = (1..=40)
        .map(|ti| ((format!("t{}", ti - 1), "r".to_owned()), ti, 0))
        .collect();
    let ((_, built), turns) = turns_during(live.start_off_worker(config, &which)).await;
    assert_eq!(built.len(), 40);
    let mut started = Vec::new();
    for r in built {
        started.push(r.expect("the target starts"));
    }
    assert!(
        turns >= OFF_WORKER,
        "other tasks ran {turns} times on the runtime's thread while 40 https targets started: they started on that thread"
    );
    for r in started {
        r.retire(Duration::from_secs(1), false).await;
    }
    live.shutdown(Duration::from_secs(1)).await;
}

/// The whole reload, as SIGHUP runs it: 300 new regex tasks and their targets.
#[tokio::test(flavor = "current_thread")]
async fn a_whole_reload_leaves_the_runtime_worker_free() {
    let dir = Dir::new("reload");
    let live = live(&dir.0, &config_text(&dir.0, 0, "http"));
    std::fs::write(
        dir.0.join("promrelay.yaml"),
        config_text(&dir.0, 300, "http"),
    )
    .unwrap();
    let (summary, turns) = turns_during(live.reload()).await;
    let summary = summary.unwrap();
    assert_eq!((summary.unchanged, summary.started.len()), (1, 300));
    assert_eq!(
        live.pipeline().targets().len(),
        301,
        "the new pipeline runs"
    );
    assert!(turns >= OFF_WORKER, "{turns} turns");
    live.shutdown(Duration::from_secs(1)).await;
    assert!(
        matches!(live.reload().await, Err(ReloadError::Stopping)),
        "a reload after shutdown starts nothing"
    );
}

/// Two spooled targets of one task, removed by a reload and added back by the next while the
/// old ones still drain (their receiver takes connections and never answers), so the old ones
/// hold both spool directories and both new ones fail to start at first. The reload waits for
/// the retiring targets once, then starts both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_retries_every_target_whose_directory_a_retiring_one_held() {
    let dir = Dir::new("retry");
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((c, _)) = silent.accept().await {
            conns.push(c);
        }
    });
    let base = format!(
        "server:\n  data_dir: {:?}\n  shutdown_timeout: 3s\ntasks:\n  - name: first\n    targets: [{{name: r, type: remote_write, url: \"http://127.0.0.1:9/w\"}}]\n",
        dir.0.join("data")
    );
    let spooled = (1..=2)
        .map(|i| {
            format!(
                "      - {{name: s{i}, type: remote_write, url: \"http://127.0.0.1:{port}/w\", queue: {{max_samples_per_send: 5}}, spool: {{dir: {:?}}}}}\n",
                dir.0.join(format!("spool{i}"))
            )
        })
        .collect::<String>();
    let with = format!("{base}  - name: spooled\n    targets:\n{spooled}");
    let live = live(&dir.0, &with);
    let source = live.pipeline().source("default").unwrap();
    let body = crate::proto::encode_snappy(
        &crate::tools::workload::WorkloadSpec {
            series: 10,
            ..Default::default()
        }
        .request(0),
    );
    live.pipeline().process(source, &body).unwrap();
    // Let both senders take their batch to the silent receiver.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let path = dir.0.join("promrelay.yaml");
    std::fs::write(&path, &base).unwrap();
    let removed = live.reload().await.unwrap();
    assert_eq!(removed.removed.len(), 2);
    std::fs::write(&path, &with).unwrap();
    let added = live
        .reload()
        .await
        .expect("both spooled targets start again");
    assert_eq!(added.started.len(), 2);
    assert_eq!(live.pipeline().targets().len(), 3);
    live.shutdown(Duration::from_secs(1)).await;
    held.abort();
}
