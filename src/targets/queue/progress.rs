//! How far each lane's sender has got: what requests waiting for delivery (`ack: delivered`)
//! wait on.

use super::Span;
use std::collections::VecDeque;
use std::sync::Mutex;
use tokio::sync::watch;

/// How far a lane's sender has got, for requests that wait for delivery.
pub(super) struct Progress {
    /// Everything before this position is finished (delivered or dropped).
    done: watch::Sender<u64>,
    /// Recent finished ranges that were not delivered (refused, dropped).
    failed: Mutex<VecDeque<(u64, u64)>>,
}

/// Failed ranges remembered per lane; a waiter checks right after its range finishes, so only
/// the recent ones matter.
const FAILED_KEPT: usize = 1024;

impl Progress {
    pub(super) fn new(at: u64) -> Progress {
        Progress {
            done: watch::Sender::new(at),
            failed: Mutex::new(VecDeque::new()),
        }
    }

    pub(super) fn finish(&self, start: u64, end: u64, delivered: bool) {
        if !delivered {
            let mut f = self.failed.lock().unwrap_or_else(|p| p.into_inner());
            if f.len() == FAILED_KEPT {
                f.pop_front();
            }
            f.push_back((start, end));
        }
        self.done.send_if_modified(|v| {
            let newer = end > *v;
            *v = (*v).max(end);
            newer
        });
    }

    /// Wait until `span` is finished; true when all of it was delivered.
    pub(super) async fn wait(&self, span: Span) -> bool {
        let mut rx = self.done.subscribe();
        let _ = rx.wait_for(|&v| v >= span.end).await;
        let f = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        !f.iter().any(|&(s, e)| s < span.end && e > span.start)
    }
}
