//! Result caches (`cache:` of a storage): upstream's kinds with their eviction order.
//!
//! - `LRU`: evicts the least recently used entry (a hit makes an entry recent);
//! - `MRU`: evicts the most recently used entry;
//! - `FIFO`: evicts the oldest entry added (hits do not matter);
//! - `LIFO`: evicts the newest entry added;
//! - `RR`: evicts a random entry.
//!
//! Adding an id that is cached already changes nothing; a size of 0 caches nothing.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde_json::Value as Json;

/// How a cache chooses what to evict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheKind {
    /// Least recently used is evicted first (`LRU`).
    Lru,
    /// Most recently used is evicted first (`MRU`).
    Mru,
    /// The oldest entry is evicted first (`FIFO`).
    Fifo,
    /// The newest entry is evicted first (`LIFO`).
    Lifo,
    /// A random entry is evicted (`RR`).
    Rr,
}

impl CacheKind {
    /// Upstream's class names (`LRU`, `MRU`, `FIFO`, `LIFO`, `RR`).
    pub fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_uppercase().as_str() {
            "LRU" => Some(CacheKind::Lru),
            "MRU" => Some(CacheKind::Mru),
            "FIFO" => Some(CacheKind::Fifo),
            "LIFO" => Some(CacheKind::Lifo),
            "RR" => Some(CacheKind::Rr),
            _ => None,
        }
    }
}

struct State {
    /// Front: the next to evict for LRU/FIFO; back: the next for MRU/LIFO.
    entries: VecDeque<(String, Json)>,
    seed: u64,
}

/// A bounded cache of task results by task id.
pub struct ResultCache {
    kind: CacheKind,
    max: usize,
    state: Mutex<State>,
}

impl std::fmt::Debug for ResultCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResultCache")
            .field("kind", &self.kind)
            .field("ids", &self.ids())
            .finish()
    }
}

impl ResultCache {
    /// An empty cache of at most `max_cache_size` entries (0 caches nothing).
    pub fn new(kind: CacheKind, max_cache_size: usize) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9e37_79b9_7f4a_7c15)
            | 1;
        ResultCache {
            kind,
            max: max_cache_size,
            state: Mutex::new(State {
                entries: VecDeque::new(),
                seed,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached ids, from the next to evict (LRU/FIFO order) to the last.
    pub fn ids(&self) -> Vec<String> {
        self.lock().entries.iter().map(|(k, _)| k.clone()).collect()
    }

    /// How many entries are cached.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The cached result of a task id (a hit counts as a use for LRU and MRU).
    pub fn get(&self, id: &str) -> Option<Json> {
        let mut st = self.lock();
        let i = st.entries.iter().position(|(k, _)| k == id)?;
        if matches!(self.kind, CacheKind::Lru | CacheKind::Mru) {
            let entry = st.entries.remove(i).expect("found");
            let value = entry.1.clone();
            st.entries.push_back(entry);
            return Some(value);
        }
        Some(st.entries[i].1.clone())
    }

    /// Caches a result, evicting by the cache's kind to make room.
    pub fn add(&self, id: &str, value: Json) {
        if self.max == 0 {
            return;
        }
        let mut st = self.lock();
        if st.entries.iter().any(|(k, _)| k == id) {
            return;
        }
        while st.entries.len() >= self.max {
            match self.kind {
                CacheKind::Lru | CacheKind::Fifo => {
                    st.entries.pop_front();
                }
                CacheKind::Mru | CacheKind::Lifo => {
                    st.entries.pop_back();
                }
                CacheKind::Rr => {
                    // xorshift64: random replacement needs no cryptographic randomness.
                    let mut x = st.seed;
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    st.seed = x;
                    let i = (x % st.entries.len() as u64) as usize;
                    st.entries.remove(i);
                }
            }
        }
        st.entries.push_back((id.to_string(), value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn filled(kind: CacheKind, size: usize, ids: &[&str]) -> ResultCache {
        let c = ResultCache::new(kind, size);
        for id in ids {
            c.add(id, json!(id));
        }
        c
    }

    // Counterparts of upstream's test/caches/test_*.py: eviction order per kind.
    #[test]
    fn lru_evicts_the_least_recently_used() {
        let c = filled(CacheKind::Lru, 3, &["a", "b", "c"]);
        assert_eq!(c.get("a"), Some(json!("a")));
        c.add("d", json!("d"));
        assert_eq!(c.ids(), ["c", "a", "d"], "b was the least recently used");
        assert_eq!(c.get("b"), None);
    }

    #[test]
    fn mru_evicts_the_most_recently_used() {
        let c = filled(CacheKind::Mru, 3, &["a", "b", "c"]);
        assert_eq!(c.get("a"), Some(json!("a")));
        c.add("d", json!("d"));
        assert_eq!(c.ids(), ["b", "c", "d"], "a was the most recently used");
    }

    #[test]
    fn fifo_evicts_the_oldest_whatever_is_used() {
        let c = filled(CacheKind::Fifo, 3, &["a", "b", "c"]);
        assert_eq!(c.get("a"), Some(json!("a")));
        c.add("d", json!("d"));
        assert_eq!(c.ids(), ["b", "c", "d"]);
    }

    #[test]
    fn lifo_evicts_the_newest() {
        let c = filled(CacheKind::Lifo, 3, &["a", "b", "c"]);
        c.add("d", json!("d"));
        assert_eq!(c.ids(), ["a", "b", "d"]);
    }

    #[test]
    fn rr_evicts_one_of_them() {
        let c = filled(CacheKind::Rr, 3, &["a", "b", "c"]);
        c.add("d", json!("d"));
        let ids = c.ids();
        assert_eq!(ids.len(), 3);
        assert!(ids.contains(&"d".to_string()));
        let kept = ["a", "b", "c"]
            .iter()
            .filter(|i| ids.contains(&i.to_string()))
            .count();
        assert_eq!(kept, 2, "exactly one old entry went: {ids:?}");
    }

    #[test]
    fn size_zero_caches_nothing_and_repeats_change_nothing() {
        let c = filled(CacheKind::Lru, 0, &["a"]);
        assert!(c.is_empty());
        let c = filled(CacheKind::Fifo, 2, &["a", "b", "a"]);
        assert_eq!(c.ids(), ["a", "b"]);
        assert_eq!(CacheKind::from_name("lru"), Some(CacheKind::Lru));
        assert_eq!(CacheKind::from_name("ARC"), None);
    }
}
