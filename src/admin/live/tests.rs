use super::*;
use std::sync::atomic::AtomicBool;

/// A config of `tasks` tasks, each with a regex name condition (compiled when the config
/// loads, and into the source's index when the pipeline is assembled) and one target.
fn config_text(dir: &std::path::Path, tasks: usize) -> String {
    let mut text = format!("server:\n  data_dir: {:?}\ntasks:\n", dir.join("data"));
    for i in 0..tasks {
        text.push_str(&format!(
            "  - name: t{i}\n    filter: [\"__name__=metric_{i}(_sum|_count)?\", \"id=i-{i}.*\"]\n    targets: [{{name: r, type: remote_write, url: \"http://127.0.0.1:9/w\"}}]\n"
        ));
    }
    text
}

/// The runtime has one thread here, so a task that counts its turns runs only while the
/// reload waits. A reload that loaded the config or assembled the pipeline on that thread
/// would let it run a handful of times (at the reload's own awaits); off the thread, it runs
/// all the while 300 tasks' regexes and index compile.
#[tokio::test(flavor = "current_thread")]
async fn a_reload_compiles_the_new_config_off_the_runtime_worker() {
    let dir = std::env::temp_dir().join(format!("promrelay-live-reload-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("promrelay.yaml");
    std::fs::write(&path, config_text(&dir, 1)).unwrap();
    let config = Config::load(&path).unwrap();
    let live = Arc::new(Live::start(config, Arc::new(Metrics::new()), Some(path.clone())).unwrap());
    std::fs::write(&path, config_text(&dir, 300)).unwrap();

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
    let summary = live.reload().await.unwrap();
    let during = turns.load(Ordering::Relaxed) - before;
    stop.store(true, Ordering::Relaxed);
    ticker.await.unwrap();

    assert_eq!((summary.unchanged, summary.started.len()), (1, 299));
    assert_eq!(
        live.pipeline().targets().len(),
        300,
        "the new pipeline runs"
    );
    assert!(
        during >= 1000,
        "other tasks ran only {during} times on the runtime's thread while it reloaded 300 \
         tasks: the config was compiled on that thread"
    );
    live.shutdown(Duration::from_secs(1)).await;
    let _ = std::fs::remove_dir_all(&dir);
}
