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

/// This namespace as a node for `ruleset::tests::config()`: its bridge `rbtest`
/// (10.244.1.1), two "pods" as addresses on loopback (10.244.1.2 and 10.244.2.2), and the
/// service ranges routed to a bridge with no ports, so nothing leaves.
pub fn node_with_two_pods() {
    ip("link set lo up");
    ip("link add rbtest type bridge");
    ip("addr add 10.244.1.1/24 dev rbtest");
    ip("link set rbtest up");
    ip("addr add 10.244.1.2/32 dev lo");
    ip("addr add 10.244.2.2/32 dev lo");
    ip("link add rudder-svc type bridge");
    ip("link set rudder-svc up");
    ip("route add 10.96.0.0/12 dev rudder-svc");
    ip("route add 10.112.0.0/24 dev rudder-svc");
}
