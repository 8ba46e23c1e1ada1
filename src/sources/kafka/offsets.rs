//! Which offsets are safe to commit, per partition, in order.
//!
//! Every message read is recorded here in the order it was read (per partition that is offset
//! order). A message becomes *done* when its data is safe under its tasks' `ack` policy (at
//! once for `ack: queued`, after the spool's fsync or the delivery for `spooled` and
//! `delivered`), or when it was refused and skipped or written to the dead-letter topic. The
//! committable offset of a partition is one past the last message of the unbroken run of done
//! messages at its front: a message done early behind one still waiting is not committed, so a
//! crash re-reads from the first message that was not safe and never skips one (at least
//! once).
//!
//! Each assignment of a partition gets a new generation: a completion from before a
//! revocation (its message is re-read by whoever owns the partition now) finds no entry and
//! changes nothing.

use std::collections::{HashMap, VecDeque};

/// A topic and partition.
pub type Tp = (String, i32);

#[derive(Debug, Default)]
struct Partition {
    generation: u64,
    /// Offsets read and not yet at the front of a done run, with whether each is done.
    pending: VecDeque<(i64, bool)>,
    /// One past the last offset known safe (what a commit would write), once one is.
    safe: Option<i64>,
    /// What was last committed (or found committed).
    committed: Option<i64>,
}

/// See the module docs.
#[derive(Debug, Default)]
pub struct Offsets {
    parts: HashMap<Tp, Partition>,
    next_generation: u64,
    /// Messages read and not done, over all partitions (bounded by `max_pending_messages`).
    pending: usize,
}

/// Where a read message is recorded: its partition's generation, for [`Offsets::done`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    pub generation: u64,
    pub offset: i64,
}

impl Offsets {
    /// The partitions now assigned to this consumer: each starts a new generation.
    pub fn assign(&mut self, tps: impl IntoIterator<Item = Tp>) {
        for tp in tps {
            self.next_generation += 1;
            let p = Partition {
                generation: self.next_generation,
                ..Partition::default()
            };
            if let Some(old) = self.parts.insert(tp, p) {
                self.pending -= old.pending.iter().filter(|(_, d)| !d).count();
            }
        }
    }

    /// Forget `tps` (revoked or lost); their pending completions will find nothing.
    pub fn revoke<'a>(&mut self, tps: impl IntoIterator<Item = &'a Tp>) {
        for tp in tps {
            if let Some(old) = self.parts.remove(tp) {
                self.pending -= old.pending.iter().filter(|(_, d)| !d).count();
            }
        }
    }

    /// The generation of `tp`'s assignment, if it is assigned.
    pub fn generation(&self, tp: &Tp) -> Option<u64> {
        self.parts.get(tp).map(|p| p.generation)
    }

    /// Messages read and not yet done.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// Record a message read at `offset` of `tp`, done at once or not. `None` when `tp` is
    /// not assigned (the message is not ours to commit).
    pub fn read(&mut self, tp: &Tp, offset: i64, done: bool) -> Option<Ticket> {
        let p = self.parts.get_mut(tp)?;
        p.pending.push_back((offset, done));
        if !done {
            self.pending += 1;
        }
        let ticket = Ticket {
            generation: p.generation,
            offset,
        };
        Self::advance(p);
        Some(ticket)
    }

    /// The message of `ticket` is safe.
    pub fn done(&mut self, tp: &Tp, ticket: Ticket) {
        let Some(p) = self.parts.get_mut(tp) else {
            return;
        };
        if p.generation != ticket.generation {
            return;
        }
        // Offsets are pending in increasing order.
        if let Ok(i) = p.pending.binary_search_by_key(&ticket.offset, |&(o, _)| o)
            && !p.pending[i].1
        {
            p.pending[i].1 = true;
            self.pending -= 1;
            Self::advance(p);
        }
    }

    fn advance(p: &mut Partition) {
        while let Some(&(offset, true)) = p.pending.front() {
            p.safe = Some(offset + 1);
            p.pending.pop_front();
        }
    }

    /// The offsets safe and not yet committed, per partition (those of `only`, if given).
    pub fn committable(&self, only: Option<&[Tp]>) -> Vec<(Tp, i64)> {
        self.parts
            .iter()
            .filter(|(tp, _)| only.is_none_or(|o| o.contains(tp)))
            .filter_map(|(tp, p)| match (p.safe, p.committed) {
                (Some(s), Some(c)) if s <= c => None,
                (Some(s), _) => Some((tp.clone(), s)),
                (None, _) => None,
            })
            .collect()
    }

    /// `offset` of `tp` was committed.
    pub fn committed(&mut self, tp: &Tp, offset: i64) {
        if let Some(p) = self.parts.get_mut(tp) {
            p.committed = Some(p.committed.map_or(offset, |c| c.max(offset)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(p: i32) -> Tp {
        ("m".into(), p)
    }

    #[test]
    fn commits_only_the_unbroken_run_of_safe_messages() {
        let mut o = Offsets::default();
        o.assign([tp(0), tp(1)]);
        let a = o.read(&tp(0), 10, false).unwrap();
        let b = o.read(&tp(0), 11, false).unwrap();
        let _c = o.read(&tp(0), 13, true).unwrap(); // a gap (compaction, control records)
        assert_eq!(o.pending(), 2);
        assert!(o.committable(None).is_empty());
        o.done(&tp(0), b); // done out of order: nothing committable yet
        assert!(o.committable(None).is_empty());
        o.done(&tp(0), a);
        assert_eq!(o.committable(None), vec![(tp(0), 14)]);
        assert_eq!(o.pending(), 0);
        o.committed(&tp(0), 14);
        assert!(o.committable(None).is_empty());
        o.read(&tp(1), 0, true);
        assert_eq!(o.committable(Some(&[tp(1)])), vec![(tp(1), 1)]);
        assert!(o.committable(Some(&[tp(2)])).is_empty());
    }

    #[test]
    fn a_completion_from_before_a_revocation_changes_nothing() {
        let mut o = Offsets::default();
        o.assign([tp(0)]);
        let old = o.read(&tp(0), 5, false).unwrap();
        o.revoke(&[tp(0)]);
        assert_eq!(o.pending(), 0);
        assert!(o.read(&tp(0), 6, true).is_none(), "not assigned: not ours");
        o.assign([tp(0)]);
        let new = o.read(&tp(0), 5, false).unwrap();
        o.done(&tp(0), old);
        assert!(o.committable(None).is_empty());
        assert_eq!(o.pending(), 1);
        o.done(&tp(0), new);
        assert_eq!(o.committable(None), vec![(tp(0), 6)]);
    }
}
