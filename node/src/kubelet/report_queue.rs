//! The pods waiting to have their status reported, first come first served (as Kubernetes'
//! status manager queues them). Only a few reports are in flight at once; without a queue
//! the sync's order (by uid) decided who waited, and a pod whose uid sorts late could wait
//! behind every change of the pods before it. Pure.

use std::collections::{HashSet, VecDeque};

#[derive(Debug, Default)]
pub struct ReportQueue {
    order: VecDeque<String>,
    queued: HashSet<String>,
}

impl ReportQueue {
    /// Queues `uid` at the back, unless it already waits (it keeps its place).
    pub fn push(&mut self, uid: &str) {
        if self.queued.insert(uid.to_string()) {
            self.order.push_back(uid.to_string());
        }
    }

    /// Keeps only the waiting pods `keep` says (the others went).
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.order.retain(|uid| keep(uid));
        self.queued.retain(|uid| keep(uid));
    }

    /// The pod that has waited longest.
    pub fn pop(&mut self) -> Option<String> {
        let uid = self.order.pop_front()?;
        self.queued.remove(&uid);
        Some(uid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_are_reported_in_the_order_they_started_waiting_each_once() {
        let mut queue = ReportQueue::default();
        for uid in ["zz", "aa", "mm", "aa", "zz"] {
            queue.push(uid);
        }
        assert_eq!(queue.pop().as_deref(), Some("zz"));
        // Gone from the queue, it may wait again, at the back.
        queue.push("zz");
        let rest: Vec<String> = std::iter::from_fn(|| queue.pop()).collect();
        assert_eq!(rest, ["aa", "mm", "zz"]);
        for uid in ["aa", "gone", "mm"] {
            queue.push(uid);
        }
        queue.retain(|uid| uid != "gone");
        queue.push("gone");
        let rest: Vec<String> = std::iter::from_fn(|| queue.pop()).collect();
        assert_eq!(rest, ["aa", "mm", "gone"]);
    }
}
