//! The process's memory allocator: mimalloc rather than glibc's malloc, and what an idle
//! thread gives back ([`give_back_when_idle`], run as each runtime thread parks: the tokio
//! runtime in `main`, the actix systems of [`actix_system`] and the controller manager's
//! and scheduler's threads).
//!
//! mimalloc gives an empty page back to the system (purges it) once it has been empty a
//! second, but the purge runs only when some thread frees, abandons or collects a page, and
//! a thread's pages emptied by other threads' frees stay with it until it next allocates or
//! collects. So a thread that frees a burst and idles while no other thread frees a page
//! keeps all of it (the test below). In a master other threads free pages all the time, so
//! the gain is smaller: the master leading the controllers and the scheduler held 318-326
//! MiB 30 s after `rudder bench controllers`' 10,000 pods ran, and 309-322 MiB with each
//! thread collecting as it parks (BENCHMARKS.md). Purging at once
//! (`MIMALLOC_PURGE_DELAY=0`) gave back more but cost 6-9% more CPU.

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
/// [`COLLECT_EVERY`] per thread, mimalloc takes back the pages the thread's blocks left
/// empty (the few it keeps for reuse go after 16 such collects) and purges every page,
/// process-wide, empty for longer than its purge delay (1 s). Not forced, so a page emptied
/// within the delay stays for now: it goes at a later park, and a master's threads wake many
/// times a second (Raft heartbeats, leases). With glibc's allocator, nothing.
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

/// An actix system (for `rudder node` and `rudder proxy`) whose thread gives memory back as
/// it parks.
pub fn actix_system() -> actix::SystemRunner {
    rudder_actors::system::with_idle(give_back_when_idle)
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
    /// purge delay (1 s): without the collect, the process keeps it (checked: 265 MB still
    /// resident after 20 s). Needs a process of its own, as nextest runs each test: under
    /// `cargo test` other tests' frees purge too, and their memory counts in `RssAnon`.
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
