//! Helpers for the proxy's tests that run the kernel's side in a network namespace of
//! their own.

use std::process::Command;

/// Runs `work` on a thread in a network namespace of its own (nothing it does touches the
/// machine's network); processes it starts run there too.
pub fn in_new_network<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare (root)");
        work()
    })
    .join()
    .expect("the namespaced thread")
}

pub fn ip(args: &str) {
    let status = Command::new("ip")
        .args(args.split_whitespace())
        .status()
        .expect("ip runs");
    assert!(status.success(), "ip {args}");
}
