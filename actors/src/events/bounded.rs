//! A map that keeps at most `capacity` entries and forgets the least recently used one to
//! make room: the correlator's caches, bounded as client-go's LRU caches are, so a
//! controller that reports on many objects over days holds no more than a few thousand
//! records. Pure; a read counts as a use.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

#[derive(Debug)]
pub(super) struct BoundedMap<K, V> {
    capacity: usize,
    /// Each value with the tick of its last use.
    entries: HashMap<K, (V, u64)>,
    /// Every key under the tick of its last use, so the first is the least recently used.
    by_use: BTreeMap<u64, K>,
    tick: u64,
}

impl<K: Clone + Eq + Hash, V> BoundedMap<K, V> {
    /// An empty map holding up to `capacity` entries (at least one).
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            entries: HashMap::new(),
            by_use: BTreeMap::new(),
            tick: 0,
        }
    }

    /// The value under `key`, now the most recently used.
    pub(super) fn get(&mut self, key: &K) -> Option<&mut V> {
        let (value, used) = self.entries.get_mut(key)?;
        self.tick += 1;
        self.by_use.remove(&*used);
        *used = self.tick;
        self.by_use.insert(self.tick, key.clone());
        Some(value)
    }

    /// The value under `key`, made by `make` if there is none; the most recently used.
    pub(super) fn get_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        self.tick += 1;
        let tick = self.tick;
        if let Some((_, used)) = self.entries.get_mut(&key) {
            self.by_use.remove(&*used);
            *used = tick;
        } else {
            self.entries.insert(key.clone(), (make(), tick));
        }
        self.by_use.insert(tick, key.clone());
        self.evict();
        // The key just used carries the newest tick, so eviction (capacity >= 1) spared it.
        &mut self
            .entries
            .get_mut(&key)
            .expect("the entry just used is never the one evicted")
            .0
    }

    /// Puts `value` under `key` (replacing any), the most recently used.
    pub(super) fn insert(&mut self, key: K, value: V) {
        self.tick += 1;
        let tick = self.tick;
        if let Some((_, used)) = self.entries.insert(key.clone(), (value, tick)) {
            self.by_use.remove(&used);
        }
        self.by_use.insert(tick, key);
        self.evict();
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Forgets the least recently used entries until the map is within its capacity.
    fn evict(&mut self) {
        while self.entries.len() > self.capacity {
            match self.by_use.pop_first() {
                Some((_, oldest)) => {
                    self.entries.remove(&oldest);
                }
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::BoundedMap;

    #[test]
    fn forgets_the_least_recently_used_entry_beyond_capacity() {
        let mut map = BoundedMap::new(2);
        map.insert("a", 1);
        map.insert("b", 2);
        // Reading "a" makes "b" the least recently used.
        assert_eq!(map.get(&"a").copied(), Some(1));
        map.insert("c", 3);
        assert_eq!(map.len(), 2);
        assert_eq!(map.get(&"b"), None);
        assert_eq!(map.get(&"a").copied(), Some(1));
        assert_eq!(map.get(&"c").copied(), Some(3));
    }

    #[test]
    fn get_or_insert_with_keeps_an_existing_value_and_stays_bounded() {
        let mut map = BoundedMap::new(3);
        for i in 0..100 {
            *map.get_or_insert_with(i % 5, || 0) += 1;
            assert!(map.len() <= 3);
        }
        // Cycling five keys through three slots: every use after the first five finds its
        // key evicted, so each value is a fresh 1.
        assert_eq!(map.get(&4).copied(), Some(1));
        let mut kept = BoundedMap::new(3);
        for _ in 0..10 {
            *kept.get_or_insert_with("x", || 0) += 1;
        }
        assert_eq!(kept.get(&"x").copied(), Some(10));
    }

    #[test]
    fn replacing_a_value_does_not_grow_the_map() {
        let mut map = BoundedMap::new(2);
        map.insert("a", 1);
        map.insert("a", 2);
        map.insert("b", 3);
        assert_eq!(map.len(), 2);
        assert_eq!(map.get(&"a").copied(), Some(2));
    }
}
