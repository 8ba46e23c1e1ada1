//! A small pool of threads that decode large request bodies, so the async workers keep
//! answering small requests meanwhile.
//!
//! Decoding runs on the thread that calls [`crate::pipeline::Pipeline::process_acked`], with
//! that thread's own scratch (decode buffer, batch, encode buffers): the data path's one
//! shard per thread. A request whose *decoded* size (the snappy header says, before anything
//! is allocated) is at least [`OFFLOAD_DECODED_BYTES`] runs here instead of on the runtime
//! worker that read it; everything smaller stays where it was, with no hand-off. The pool has
//! as many threads as there are shards, so at most `shards` large decodes run at once, as
//! before, and their scratch is bounded: one per pool thread, kept for the process's life.
//!
//! Measured on 2 cores (docs/reliability.md): with 40 decompression bombs in flight, small
//! writes' p90 was 220–465 ms with decoding on the async workers, 5–12 ms with the pool.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

/// Bodies that decode to this many bytes or more are decoded on the pool. Prometheus'
/// default batches (2,000 samples) decode to a few hundred KiB and stay on the async workers;
/// at 1 MiB the hand-off (tens of µs) is well under 1 % of the decode.
pub const OFFLOAD_DECODED_BYTES: usize = 1 << 20;

type Job = Box<dyn FnOnce() + Send>;

/// The decode threads. Dropping the pool lets them finish their jobs and exit.
pub struct DecodePool {
    jobs: mpsc::Sender<Job>,
}

/// The job did not finish (it panicked; the panic is in the log).
#[derive(Debug, thiserror::Error)]
#[error("the decode worker failed")]
pub struct JobFailed;

impl DecodePool {
    /// Start `threads` decode threads (at least one). A thread that cannot be spawned is
    /// logged; with none at all, jobs run on the caller's thread.
    pub fn new(threads: usize) -> DecodePool {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("promrelay-decode-{i}"))
                .spawn(move || {
                    loop {
                        // The lock is held only while waiting for the next job.
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        let Ok(job) = job else { return };
                        // A panicking job drops its answer channel (its request fails); the
                        // thread lives on for the next one.
                        let _ = catch_unwind(AssertUnwindSafe(job));
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!("cannot start decode thread {i}: {e}");
            }
        }
        DecodePool { jobs: tx }
    }

    /// Run `job` on a pool thread and wait for its result.
    ///
    /// # Errors
    /// The job panicked.
    pub async fn run<R: Send + 'static>(
        &self,
        job: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, JobFailed> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(job());
        });
        if let Err(mpsc::SendError(job)) = self.jobs.send(job) {
            // No thread left to take it: run here rather than fail the request.
            job();
        }
        rx.await.map_err(|_| JobFailed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_on_pool_threads_and_a_panic_fails_only_its_own_job() {
        let pool = DecodePool::new(2);
        let name = pool
            .run(|| std::thread::current().name().map(str::to_owned))
            .await
            .unwrap();
        assert!(
            name.as_deref()
                .is_some_and(|n| n.starts_with("promrelay-decode-")),
            "{name:?}"
        );
        assert!(pool.run(|| panic!("a bad job")).await.is_err());
        // Both threads still serve.
        for i in 0..4 {
            assert_eq!(pool.run(move || i * 2).await.unwrap(), i * 2);
        }
    }
}
