//! Offset bookkeeping for at-least-once delivery. The daemon marks, per partition, the last offset
//! whose effects are durable (archived windows, acknowledged alerts); the tracker says what to
//! commit: `last + 1`, Kafka's "next offset to read", only where it moved since the last commit.
//! The tracker is pure; [`commit_durable`] is the one call that talks to the broker.

use std::collections::BTreeMap;

use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};

/// One partition's commit: `next_offset` is the first offset a restarted consumer will read.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct OffsetCommit {
    pub topic: String,
    pub partition: i32,
    pub next_offset: i64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct PartitionState {
    /// Highest offset marked durable (inclusive).
    durable: Option<i64>,
    /// Next offset last committed through this tracker.
    committed: Option<i64>,
}

/// Durable marks and confirmed commits per (topic, partition).
#[derive(Debug, Clone, Default)]
pub struct OffsetTracker {
    partitions: BTreeMap<(String, i32), PartitionState>,
}

impl OffsetTracker {
    /// An empty tracker.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that every message of `topic`/`partition` up to and including `last_offset` is
    /// done. Marks only move forward: a lower or negative mark is ignored and `false` returned.
    pub fn mark_durable(&mut self, topic: &str, partition: i32, last_offset: i64) -> bool {
        if last_offset < 0 {
            return false;
        }
        let state = self
            .partitions
            .entry((topic.to_string(), partition))
            .or_default();
        match state.durable {
            Some(durable) if durable >= last_offset => false,
            _ => {
                state.durable = Some(last_offset);
                true
            }
        }
    }

    /// The commits due: one per partition whose durable mark is past its last confirmed commit,
    /// in (topic, partition) order.
    pub fn pending(&self) -> Vec<OffsetCommit> {
        self.partitions
            .iter()
            .filter_map(|((topic, partition), state)| pending_commit(topic, *partition, state))
            .collect()
    }

    /// Records that `commits` succeeded; later [`OffsetTracker::pending`] calls omit them until a
    /// new mark moves past them.
    pub fn confirm(&mut self, commits: &[OffsetCommit]) {
        for commit in commits {
            if let Some(state) = self
                .partitions
                .get_mut(&(commit.topic.clone(), commit.partition))
            {
                state.committed = Some(
                    state
                        .committed
                        .map_or(commit.next_offset, |c| c.max(commit.next_offset)),
                );
            }
        }
    }

    /// Forgets a partition this consumer lost in a rebalance, returning the commit still due for
    /// it (commit it before the revocation completes, or another member re-reads more).
    pub fn revoke(&mut self, topic: &str, partition: i32) -> Option<OffsetCommit> {
        let state = self.partitions.remove(&(topic.to_string(), partition))?;
        pending_commit(topic, partition, &state)
    }

    /// The last offset marked durable for a partition, if any.
    pub fn durable(&self, topic: &str, partition: i32) -> Option<i64> {
        self.partitions
            .get(&(topic.to_string(), partition))
            .and_then(|state| state.durable)
    }
}

fn pending_commit(topic: &str, partition: i32, state: &PartitionState) -> Option<OffsetCommit> {
    let next_offset = state.durable? + 1;
    match state.committed {
        Some(committed) if committed >= next_offset => None,
        _ => Some(OffsetCommit {
            topic: topic.to_string(),
            partition,
            next_offset,
        }),
    }
}

/// The commits as an explicit `TopicPartitionList` of `Offset::Offset(next_offset)`.
pub fn partition_list(commits: &[OffsetCommit]) -> Result<TopicPartitionList, KafkaError> {
    let mut list = TopicPartitionList::with_capacity(commits.len());
    for commit in commits {
        list.add_partition_offset(
            &commit.topic,
            commit.partition,
            Offset::Offset(commit.next_offset),
        )?;
    }
    Ok(list)
}

/// Commits what the tracker says is due (synchronously: it blocks until the group coordinator
/// answers, so call it from `spawn_blocking` or `block_in_place` on a busy runtime) and confirms
/// it. Returns the number of partitions committed; on error nothing is confirmed and the same
/// commits stay pending, so retrying is safe.
pub fn commit_durable<X, C>(consumer: &C, tracker: &mut OffsetTracker) -> Result<usize, KafkaError>
where
    X: ConsumerContext,
    C: Consumer<X>,
{
    let due = tracker.pending();
    if due.is_empty() {
        return Ok(0);
    }
    consumer.commit(&partition_list(&due)?, CommitMode::Sync)?;
    tracker.confirm(&due);
    Ok(due.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(topic: &str, partition: i32, next_offset: i64) -> OffsetCommit {
        OffsetCommit {
            topic: topic.to_string(),
            partition,
            next_offset,
        }
    }

    #[test]
    fn commits_last_durable_plus_one_once() {
        let mut tracker = OffsetTracker::new();
        assert!(tracker.pending().is_empty());
        assert!(tracker.mark_durable("t", 0, 9));
        assert!(tracker.mark_durable("t", 1, 0));
        let due = tracker.pending();
        assert_eq!(due, vec![commit("t", 0, 10), commit("t", 1, 1)]);
        tracker.confirm(&due);
        assert!(tracker.pending().is_empty());
        assert!(tracker.mark_durable("t", 0, 15));
        assert_eq!(tracker.pending(), vec![commit("t", 0, 16)]);
    }

    #[test]
    fn marks_never_move_back() {
        let mut tracker = OffsetTracker::new();
        let cases = [(5, true), (3, false), (5, false), (-1, false), (6, true)];
        for (offset, advanced) in cases {
            assert_eq!(tracker.mark_durable("t", 2, offset), advanced, "{offset}");
        }
        assert_eq!(tracker.durable("t", 2), Some(6));
        assert_eq!(tracker.pending(), vec![commit("t", 2, 7)]);
    }

    #[test]
    fn a_failed_commit_stays_pending_and_a_stale_confirm_does_not_regress() {
        let mut tracker = OffsetTracker::new();
        tracker.mark_durable("t", 0, 4);
        let first = tracker.pending();
        tracker.mark_durable("t", 0, 8);
        // The commit of 5 fails (no confirm): the next round carries the newer mark.
        assert_eq!(tracker.pending(), vec![commit("t", 0, 9)]);
        tracker.confirm(&[commit("t", 0, 9)]);
        // A late confirmation of the older commit changes nothing.
        tracker.confirm(&first);
        assert!(tracker.pending().is_empty());
    }

    #[test]
    fn revoke_returns_the_final_commit_and_forgets_the_partition() {
        let mut tracker = OffsetTracker::new();
        tracker.mark_durable("t", 0, 4);
        tracker.mark_durable("t", 1, 7);
        tracker.confirm(&[commit("t", 1, 8)]);
        assert_eq!(tracker.revoke("t", 0), Some(commit("t", 0, 5)));
        assert_eq!(tracker.revoke("t", 1), None);
        assert_eq!(tracker.revoke("t", 3), None);
        assert!(tracker.pending().is_empty());
        assert_eq!(tracker.durable("t", 0), None);
        // Assigned again later, it starts from scratch.
        assert!(tracker.mark_durable("t", 0, 2));
        assert_eq!(tracker.pending(), vec![commit("t", 0, 3)]);
    }

    #[test]
    fn topics_are_tracked_apart() {
        let mut tracker = OffsetTracker::new();
        tracker.mark_durable("b", 0, 1);
        tracker.mark_durable("a", 0, 2);
        assert_eq!(
            tracker.pending(),
            vec![commit("a", 0, 3), commit("b", 0, 2)]
        );
    }

    #[test]
    fn partition_list_holds_explicit_offsets() {
        let list = partition_list(&[commit("t", 0, 10), commit("t", 3, 1)]).unwrap();
        assert_eq!(list.count(), 2);
        let p3 = list.find_partition("t", 3).unwrap();
        assert_eq!(p3.offset(), Offset::Offset(1));
    }
}
