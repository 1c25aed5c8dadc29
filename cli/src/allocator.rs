//! The process's memory allocator: mimalloc rather than glibc's malloc, and what an idle
//! thread gives back ([`give_back_when_idle`]).
//!
//! mimalloc returns a page to the system (purges it) a second after its last block is freed,
//! but only when its thread next goes to mimalloc for a page, and a thread's pages that
//! became free through other threads' frees stay its own until it next allocates. A master
//! that goes quiet after a burst of writes kept both: the master leading the controllers
//! and the scheduler stayed at 326 MiB 30 s after `rudder bench controllers`' 10,000 pods
//! ran, and falls to 309-322 MiB when each thread collects as it parks (BENCHMARKS.md).
//! Collecting at once (`MIMALLOC_PURGE_DELAY=0`) gave back more but cost 6-9% more CPU.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// mimalloc: a master allocates and frees many small objects on many threads (decoded JSON,
/// store entries), where glibc spent a third of the leading master's CPU and its per-thread
/// arenas held memory long after use. Built not to ask the kernel for transparent huge pages
/// (the workspace's `Cargo.toml` says why). (The `system-allocator` feature keeps glibc's,
/// for heap profilers that hook malloc.)
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How often one thread collects at most: a busy thread parks many times a second.
const COLLECT_EVERY: Duration = Duration::from_secs(1);

thread_local! {
    /// When this thread last collected.
    static COLLECTED: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Run by a runtime's thread each time it parks (tokio's `on_thread_park`): at most once a
/// [`COLLECT_EVERY`] per thread, mimalloc frees the thread's empty pages and purges those
/// empty for longer than its purge delay. Not forced: a page emptied within the delay, likely
/// to be used again, stays. With glibc's allocator, nothing.
pub fn give_back_when_idle() {
    if cfg!(feature = "system-allocator") {
        return;
    }
    let now = Instant::now();
    let due = COLLECTED.with(|collected| {
        let due = is_due(collected.get(), now);
        if due {
            collected.set(Some(now));
        }
        due
    });
    if due {
        // SAFETY: mi_collect takes no pointers; it only walks mimalloc's own state for the
        // calling thread (and the process's arenas), as mimalloc does on any allocation.
        unsafe { libmimalloc_sys::mi_collect(false) };
    }
}

/// Whether a thread that last collected at `last` collects at `now`.
fn is_due(last: Option<Instant>, now: Instant) -> bool {
    last.is_none_or(|last| now.saturating_duration_since(last) >= COLLECT_EVERY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_collects_at_most_once_a_second() {
        let start = Instant::now();
        assert!(is_due(None, start));
        assert!(!is_due(Some(start), start));
        assert!(!is_due(Some(start), start + Duration::from_millis(999)));
        assert!(is_due(Some(start), start + COLLECT_EVERY));
        // A clock read out of order on another core never makes it due early.
        assert!(!is_due(Some(start + Duration::from_millis(5)), start));
    }

    /// The thread that frees a burst's memory gives it back once it idles past mimalloc's
    /// purge delay (1 s): without the collect, the process keeps it.
    #[cfg(not(feature = "system-allocator"))]
    #[test]
    fn an_idle_thread_gives_a_burst_back() {
        const BURST: usize = 256 << 20;
        let before = resident_anon_kib();
        let blocks: Vec<Vec<u8>> = (0..BURST / 4096).map(|_| vec![1u8; 4000]).collect();
        let during = resident_anon_kib();
        assert!(
            during > before + (BURST as u64 >> 10) / 2,
            "{before} KiB → {during} KiB"
        );
        drop(blocks);
        let deadline = Instant::now() + Duration::from_secs(20);
        let given_back = |kib: u64| kib < before + (BURST as u64 >> 10) / 4;
        loop {
            give_back_when_idle();
            let now = resident_anon_kib();
            if given_back(now) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "still {now} KiB resident (before the burst {before}, during {during})"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    #[cfg(not(feature = "system-allocator"))]
    fn resident_anon_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("RssAnon:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
}
