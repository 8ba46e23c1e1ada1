//! The control plane: what runs (tasks, targets, their senders) and how it changes while the
//! relay runs: reload ([`live`]), the task API and its files, and who may call them. It speaks
//! to the data path only through the compiled pipeline it swaps in and the counters it reads.

pub mod api;
pub mod live;
pub mod page;
pub mod rates;
pub mod store;
pub mod tap;
pub mod verify;

pub use live::{Live, ReloadError, ReloadSummary};
