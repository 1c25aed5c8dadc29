//! Disk faults: failpoints in a Rudder member's log store (`raftstore/src/log_store.rs`),
//! turned on while it runs through its failpoints file and SIGUSR1. A failed write or
//! fsync must stop the member (it may not acknowledge what it did not persist, nor trust
//! its log again); a slow fsync must only slow it. What each did is the evidence a run
//! keeps ([`DiskEffect`]). Pure.

use serde::{Deserialize, Serialize};

/// The failpoints file a member started by [`crate::cluster`] reads on SIGUSR1: beside
/// its data directory.
pub fn failpoints_file(data_dir: &std::path::Path) -> std::path::PathBuf {
    data_dir.with_extension("failpoints")
}

/// What goes wrong with the member's disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DiskFault {
    /// The log's fsync reports an error.
    FsyncFails,
    /// Writing entries to the log fails.
    WriteFails,
    /// Each fsync of the log takes [`SLOW_FSYNC_MS`] longer.
    SlowFsync,
}

/// How much longer a slow fsync takes. Longer than the chaos runs' election timeout
/// (150 ms): Raft waits for each append's fsync, so a slow leader misses heartbeats and
/// loses its leadership, as it would on a disk this slow. What must hold is that the
/// member goes on.
pub const SLOW_FSYNC_MS: u64 = 300;

/// The histogram of the members' log fsyncs, and the bucket below [`SLOW_FSYNC_MS`].
const FSYNC_HISTOGRAM: &str = "rudder_raft_log_fsync_duration_seconds";
const FAST_BUCKET: &str = "0.256";

impl DiskFault {
    pub const ALL: [DiskFault; 3] = [
        DiskFault::FsyncFails,
        DiskFault::WriteFails,
        DiskFault::SlowFsync,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DiskFault::FsyncFails => "fsync fails",
            DiskFault::WriteFails => "write fails",
            DiskFault::SlowFsync => "slow fsync",
        }
    }

    fn failpoint(self) -> &'static str {
        match self {
            DiskFault::FsyncFails => "log-fsync-fails",
            DiskFault::WriteFails => "log-write-fails",
            DiskFault::SlowFsync => "log-fsync-slow",
        }
    }

    /// The failpoints file's text that starts the fault.
    pub fn on(self) -> String {
        match self {
            DiskFault::SlowFsync => format!("{}=return({SLOW_FSYNC_MS})", self.failpoint()),
            _ => format!("{}=return", self.failpoint()),
        }
    }

    /// The failpoints file's text that ends it.
    pub fn off(self) -> String {
        format!("{}=off", self.failpoint())
    }

    /// Whether the member must stop (else it must go on, slower).
    pub fn stops_the_member(self) -> bool {
        !matches!(self, DiskFault::SlowFsync)
    }

    /// What the member logs when the fault strikes (`raftstore/src/log_store.rs`).
    pub fn logged(self) -> String {
        format!("injected disk fault (failpoint {})", self.failpoint())
    }
}

/// What the member logs when it applies its failpoints file (`rudder server`).
pub const APPLIED: &str = "failpoint on (fault injection)";

/// How a member that ended during `fault` ended: `code` its exit code, `log` what it
/// logged since the fault began. Stopping means exit code 1 after the injected error:
/// anything else (a panic, a signal) ended it for another reason.
pub fn judge_exit(
    fault: DiskFault,
    code: Option<i32>,
    exit: String,
    log: &str,
    after_ms: u64,
) -> DiskEffect {
    match code == Some(1) && log.contains(&fault.logged()) {
        true => DiskEffect::Stopped { exit, after_ms },
        false => DiskEffect::EndedOtherwise { exit },
    }
}

/// What a disk fault did to its member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DiskEffect {
    /// It stopped, as it must, `after_ms` after the fault was in place.
    Stopped { exit: String, after_ms: u64 },
    /// It ran on through a fault that must stop it (or never wrote to its log).
    KeptRunning,
    /// It ended, but not from the fault (another error, a panic, a signal).
    EndedOtherwise { exit: String },
    /// Its fsyncs that took longer than the fast buckets, while the fault lasted.
    SlowFsyncs { count: u64 },
    /// Its metrics could not be read, so whether its fsyncs were slow is not known.
    Unmeasured { why: String },
}

impl DiskEffect {
    /// E.g. `stopped 11 ms after (exit status: 1)`, `6 slow fsyncs`.
    pub fn describe(&self) -> String {
        match self {
            DiskEffect::Stopped { exit, after_ms } => {
                format!("stopped {after_ms} ms after ({exit})")
            }
            DiskEffect::KeptRunning => "kept running".into(),
            DiskEffect::EndedOtherwise { exit } => format!("ended otherwise ({exit})"),
            DiskEffect::SlowFsyncs { count } => format!("{count} slow fsyncs"),
            DiskEffect::Unmeasured { why } => format!("not measured: {why}"),
        }
    }

    /// Whether it shows the fault happened and was met as it must be; why not, if not.
    pub fn problem(&self) -> Option<String> {
        match self {
            DiskEffect::Stopped { .. } => None,
            DiskEffect::KeptRunning => {
                Some("kept running through a failed log write or fsync (or never wrote)".into())
            }
            DiskEffect::EndedOtherwise { exit } => {
                Some(format!("ended, but not from the injected fault ({exit})"))
            }
            DiskEffect::SlowFsyncs { count: 0 } => Some("had no slow fsync".into()),
            DiskEffect::SlowFsyncs { .. } => None,
            DiskEffect::Unmeasured { why } => Some(format!("could not be measured: {why}")),
        }
    }
}

/// The fsyncs in a member's `/metrics` text slower than the fast buckets (cumulative);
/// `None` when the text has no fsync histogram.
pub fn slow_fsyncs(metrics: &str) -> Option<u64> {
    let labelled = |le: &str| {
        rudder_proto::metrics::sample(metrics, &format!("{FSYNC_HISTOGRAM}_bucket"), &[("le", le)])
    };
    match (labelled("+Inf"), labelled(FAST_BUCKET)) {
        (Some(all), Some(fast)) => Some((all - fast).max(0.0) as u64),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_fault_turns_its_failpoint_on_and_off() {
        assert_eq!(DiskFault::FsyncFails.on(), "log-fsync-fails=return");
        assert_eq!(DiskFault::WriteFails.off(), "log-write-fails=off");
        assert_eq!(DiskFault::SlowFsync.on(), "log-fsync-slow=return(300)");
        assert!(DiskFault::FsyncFails.stops_the_member());
        assert!(!DiskFault::SlowFsync.stops_the_member());
    }

    #[test]
    fn slow_fsyncs_are_those_above_the_fast_buckets() {
        let metrics = "# TYPE rudder_raft_log_fsync_duration_seconds histogram\n\
                       rudder_raft_log_fsync_duration_seconds_bucket{le=\"0.128\"} 90\n\
                       rudder_raft_log_fsync_duration_seconds_bucket{le=\"0.256\"} 95\n\
                       rudder_raft_log_fsync_duration_seconds_bucket{le=\"0.512\"} 101\n\
                       rudder_raft_log_fsync_duration_seconds_bucket{le=\"+Inf\"} 102\n";
        assert_eq!(slow_fsyncs(metrics), Some(7));
        assert_eq!(slow_fsyncs(""), None);
    }

    #[test]
    fn an_effect_is_evidence_only_when_the_member_did_what_it_must() {
        let stopped = DiskEffect::Stopped {
            exit: "exit status: 1".into(),
            after_ms: 12,
        };
        assert_eq!(stopped.problem(), None);
        assert!(DiskEffect::KeptRunning.problem().is_some());
        assert!(DiskEffect::SlowFsyncs { count: 0 }.problem().is_some());
        assert_eq!(DiskEffect::SlowFsyncs { count: 3 }.problem(), None);
        assert!(DiskEffect::Unmeasured { why: "x".into() }
            .problem()
            .is_some());
    }

    #[test]
    fn stopping_is_exit_code_1_after_the_injected_error_and_nothing_else() {
        let fault = DiskFault::FsyncFails;
        let logged = format!(
            "ERROR {}: the log's fsync failed\nerror: member stopped",
            fault.logged()
        );
        let judged = |code, log: &str| judge_exit(fault, code, "exit".into(), log, 7);
        assert_eq!(
            judged(Some(1), &logged),
            DiskEffect::Stopped {
                exit: "exit".into(),
                after_ms: 7
            }
        );
        // A panic, a signal, another error: not the fault's doing.
        assert!(judged(Some(101), &logged).problem().is_some());
        assert!(judged(None, &logged).problem().is_some());
        assert!(judged(Some(1), "error: member stopped: disk full")
            .problem()
            .is_some());
    }
}
