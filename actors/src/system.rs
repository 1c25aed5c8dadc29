//! An actix system whose thread runs a hook each time it runs out of work ([`with_idle`]):
//! the controller manager's and scheduler's threads, and the binary's node and proxy, give
//! their allocator's free memory back there.

/// What a component's thread runs each time it runs out of work (tokio's `on_thread_park`).
pub type OnIdle = fn();

/// An actix system whose thread runs `on_idle` as it parks; otherwise what
/// `actix::System::new` builds (a current-thread runtime with I/O and timers).
pub fn with_idle(on_idle: OnIdle) -> actix::SystemRunner {
    actix::System::with_tokio_rt(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .on_thread_park(on_idle)
            .build()
            .expect("a current-thread runtime (what actix::System::new builds)")
    })
}
