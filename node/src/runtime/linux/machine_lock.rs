//! The lock the nodes on one machine take turns with while they change what they share
//! (the service device, the cluster range's route): a reset deciding it is the last node
//! must not interleave with a node starting. An flock on a file under /run: released when
//! the holder drops it or dies.

use std::fs::File;

/// Where the lock lives.
pub const MACHINE_LOCK: &str = "/run/rudder-network.lock";

/// Held while changing what the machine's nodes share; released when dropped.
pub struct MachineLock {
    _held: nix::fcntl::Flock<File>,
}

/// Takes [`MACHINE_LOCK`], waiting for whoever holds it.
pub fn lock() -> std::io::Result<MachineLock> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(MACHINE_LOCK)?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map(|held| MachineLock { _held: held })
        .map_err(|(_, errno)| std::io::Error::from(errno))
}
