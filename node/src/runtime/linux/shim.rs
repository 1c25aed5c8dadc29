//! `rudder shim`: the small single-threaded process that owns one container (as containerd's
//! shims do). libcontainer forks, and forking the multi-threaded kubelet is fragile; the shim
//! is forked before it has a second thread.
//!
//! ```text
//!  kubelet ── spawn `rudder shim create ...` ──► shim ── fork ──► (parent exits at once)
//!                                                 child: setsid; libcontainer create + start
//!  kubelet ◄── "started <pid>" | "error: ..." on the shim's stdout ──┘
//!                                                 child: waitpid(container) → OOM? →
//!                                                 delete (cgroups, state) → exit file
//! ```
//!
//! The shim is nobody's child once its parent exits, so it outlives a kubelet restart; the
//! exit file (written atomically, after cleanup) is how the kubelet learns the end.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::error::LibcontainerError;
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, setsid, ForkResult, Pid};
use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

use super::shim_attach::{self, AttachModes, AttachPoint, Streams};
use crate::log_format::Source;

/// What the shim needs to run one container.
#[derive(Debug, Clone)]
pub struct ShimArgs {
    /// libcontainer's state root (one per node).
    pub state_root: PathBuf,
    pub id: String,
    pub bundle: PathBuf,
    /// The container's stdout and stderr, appended.
    pub log: PathBuf,
    /// Written when the container has ended and been cleaned up.
    pub exit_file: PathBuf,
    /// The container's cgroup path (for the OOM check).
    pub cgroups_path: String,
    /// Its standard input and terminal (`stdin`, `stdinOnce`, `tty`): with either, the shim
    /// keeps an attach point (shim_attach.rs).
    pub modes: AttachModes,
}

impl ShimArgs {
    /// As command-line arguments after `rudder shim create`.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = vec![
            "--state-root".into(),
            self.state_root.display().to_string(),
            "--id".into(),
            self.id.clone(),
            "--bundle".into(),
            self.bundle.display().to_string(),
            "--log".into(),
            self.log.display().to_string(),
            "--exit-file".into(),
            self.exit_file.display().to_string(),
            "--cgroups-path".into(),
            self.cgroups_path.clone(),
        ];
        let AttachModes {
            stdin,
            stdin_once,
            tty,
        } = self.modes;
        for (on, flag) in [
            (stdin, "--stdin"),
            (stdin_once, "--stdin-once"),
            (tty, "--tty"),
        ] {
            if on {
                args.push(flag.into());
            }
        }
        args
    }
}

/// Why a shim did not start its container (the kubelet's side reads these from the shim's
/// report; the shim's side makes them).
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error("starting {}: {source}", binary.display())]
    Spawn {
        binary: PathBuf,
        source: std::io::Error,
    },
    #[error("the shim has no stdout")]
    NoStdout,
    #[error("reading the shim's report: {0}")]
    Report(std::io::Error),
    /// The shim's own words (it runs in another process: its error reaches us as text).
    #[error("{0}")]
    Reported(String),
    #[error("the shim reported {0:?}")]
    Garbled(String),
    #[error("the shim ended without a report")]
    Silent,
    #[error("opening {}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{action}: {source}")]
    Container {
        action: String,
        source: Box<LibcontainerError>,
    },
    #[error("the container has no process")]
    NoProcess,
}

fn container_error(action: impl Into<String>) -> impl FnOnce(LibcontainerError) -> ShimError {
    let action = action.into();
    move |source| ShimError::Container {
        action,
        source: Box::new(source),
    }
}

/// How a container ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// The exit code; 128 + the signal for a killed process (as shells and Kubernetes report).
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub oom_killed: bool,
    /// RFC 3339.
    pub finished_at: String,
}

impl ExitRecord {
    pub fn read(path: &Path) -> Option<Self> {
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    }
}

/// Starts a shim for `args` and waits for its report: the container's pid.
pub fn spawn(shim_binary: &Path, args: &ShimArgs) -> Result<i32, ShimError> {
    let mut child = Command::new(shim_binary)
        .arg("shim")
        .arg("create")
        .args(args.to_args())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|source| ShimError::Spawn {
            binary: shim_binary.to_path_buf(),
            source,
        })?;
    let stdout = child.stdout.take().ok_or(ShimError::NoStdout)?;
    let mut line = String::new();
    let read = BufReader::new(stdout).read_line(&mut line);
    // The first process exits right after its fork; reap it.
    let _ = child.wait();
    read.map_err(ShimError::Report)?;
    let line = line.trim();
    if let Some(pid) = line.strip_prefix("started ") {
        return pid
            .parse()
            .map_err(|_| ShimError::Garbled(line.to_string()));
    }
    Err(match line.strip_prefix("error: ") {
        Some(error) => ShimError::Reported(error.to_string()),
        None if line.is_empty() => ShimError::Silent,
        None => ShimError::Garbled(line.to_string()),
    })
}

/// `rudder shim create`: never returns. Must be called before the process has threads.
pub fn create(args: ShimArgs) -> ! {
    // SAFETY: the process is single-threaded here (the CLI calls this before any runtime).
    match unsafe { fork() } {
        Ok(ForkResult::Parent { .. }) => std::process::exit(0),
        Ok(ForkResult::Child) => {}
        Err(e) => {
            println!("error: forking the shim: {e}");
            std::process::exit(1);
        }
    }
    let _ = setsid();
    // The shim's own messages (libcontainer's errors) go next to the container's files.
    if let Ok(own_log) = OpenOptions::new()
        .create(true)
        .append(true)
        .open(args.bundle.join("shim.log"))
    {
        let _ = nix::unistd::dup2_stderr(&own_log);
    }
    let (pid, outputs) = match start(&args) {
        Ok(started) => started,
        Err(error) => {
            println!("error: {error}");
            let _ = std::io::stdout().flush();
            eprintln!("create failed: {error}");
            cleanup(&args);
            std::process::exit(1);
        }
    };
    println!("started {pid}");
    let _ = std::io::stdout().flush();
    // Let go of the kubelet's pipe.
    if let Ok(null) = File::open("/dev/null") {
        let _ = nix::unistd::dup2_stdout(&null);
    }
    let (exit_code, signal) = relay_output(pid, outputs);
    let record = ExitRecord {
        exit_code,
        signal,
        oom_killed: oom_killed(&args.cgroups_path),
        finished_at: jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string(),
    };
    cleanup(&args);
    let temp = args.exit_file.with_extension("tmp");
    let written = serde_json::to_vec(&record)
        .map_err(std::io::Error::other)
        .and_then(|bytes| std::fs::write(&temp, bytes))
        .and_then(|()| std::fs::rename(&temp, &args.exit_file));
    if let Err(e) = written {
        eprintln!("writing {}: {e}", args.exit_file.display());
        std::process::exit(1);
    }
    std::process::exit(0)
}

/// What the shim reads and keeps of a started container: the read ends of its output (its
/// stdout and stderr pipes, or its terminal), its log, and its attach point if it has one.
struct Outputs {
    streams: Vec<(OwnedFd, Source)>,
    log: File,
    attach: Option<AttachPoint>,
}

/// Creates and starts the container, its output piped (or on a terminal) to the shim: its
/// pid, and what the shim reads and keeps.
fn start(args: &ShimArgs) -> Result<(i32, Outputs), ShimError> {
    let open = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ShimError::Open { path, source }
    };
    // Opened first: a log that cannot be written fails the start, before anything runs.
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.log)
        .map_err(open(&args.log))?;
    let Streams {
        container_stdin,
        container_stdout,
        container_stderr,
        outputs,
        input,
        terminal,
    } = shim_attach::streams(args.modes).map_err(open(Path::new("the container's stdio")))?;
    let mut container = ContainerBuilder::new(args.id.clone(), SyscallType::default())
        .with_root_path(&args.state_root)
        .map_err(container_error("state root"))?
        .with_executor(InitExecutor {
            terminal: args.modes.tty,
        })
        .with_stdin(container_stdin)
        .with_stdout(container_stdout)
        .with_stderr(container_stderr)
        .validate_id()
        .map_err(container_error(format!("container id {:?}", args.id)))?
        .as_init(&args.bundle)
        .with_systemd(false)
        .with_detach(true)
        .build()
        .map_err(container_error("creating the container"))?;
    container
        .start()
        .map_err(container_error("starting the container"))?;
    let pid = container.pid().map(|pid| pid.as_raw());
    // The builder's copies of the container's ends go with it: the container holds the only
    // ones, so the shim reads the end of its output when the container is gone.
    drop(container);
    let pid = pid.ok_or(ShimError::NoProcess)?;
    // Listening before the start is reported: once the kubelet sees the container running,
    // an attach finds its socket.
    let attach = if args.modes.stdin || args.modes.tty {
        let listening = AttachPoint::listen(&args.bundle, input, terminal, args.modes.stdin_once);
        Some(listening.map_err(open(&args.bundle.join(shim_attach::SOCKET)))?)
    } else {
        None
    };
    Ok((
        pid,
        Outputs {
            streams: outputs,
            log,
            attach,
        },
    ))
}

/// How long attached clients still get the output queued for them once the container ended.
const FLUSH_ATTACHED: std::time::Duration = std::time::Duration::from_secs(2);

/// How long the shim still reads the pipes once the container's process has exited (a
/// process it left behind may hold them open).
const DRAIN_AFTER_EXIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Writes the container's output to its log in the CRI format (log_format.rs) as it comes,
/// until the pipes end or the process exited and [`DRAIN_AFTER_EXIT`] passed; returns how
/// the process ended. Output that waits for its newline longer than a poll goes out as a
/// piece (a prompt shows in `logs -f` and `attach`). A log that cannot be written loses
/// output, never blocks the container.
fn relay_output(pid: i32, outputs: Outputs) -> (i32, Option<i32>) {
    use crate::log_format::{encode, Splitter};
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;

    let Outputs {
        streams,
        mut log,
        mut attach,
    } = outputs;
    let mut streams: Vec<(Option<OwnedFd>, Source, Splitter)> = streams
        .into_iter()
        .map(|(fd, source)| (Some(fd), source, Splitter::default()))
        .collect();
    let mut ended: Option<((i32, Option<i32>), std::time::Instant)> = None;
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let open: Vec<usize> = (0..streams.len())
            .filter(|i| streams[*i].0.is_some())
            .collect();
        let drained = ended.is_some_and(|(_, at)| at.elapsed() >= DRAIN_AFTER_EXIT);
        // A container that closed its output may still read its input: its attach point
        // stays until it exits.
        let outputs_ended = open.is_empty() && (attach.is_none() || ended.is_some());
        if outputs_ended || drained {
            break;
        }
        let mut fds: Vec<PollFd> = open
            .iter()
            .map(|i| {
                let fd = streams[*i].0.as_ref().expect("open");
                PollFd::new(fd.as_fd(), PollFlags::POLLIN)
            })
            .collect();
        if let Some(attach) = &mut attach {
            fds.extend(
                attach
                    .interests()
                    .into_iter()
                    .map(|(fd, flags)| PollFd::new(fd, flags)),
            );
        }
        let polled = poll(&mut fds, PollTimeout::from(200u16));
        let revents: Vec<PollFlags> = fds
            .iter()
            .map(|fd| fd.revents().unwrap_or(PollFlags::empty()))
            .collect();
        drop(fds);
        let ready: Vec<usize> = revents
            .iter()
            .zip(&open)
            .filter(|(revents, _)| !revents.is_empty())
            .map(|(_, i)| *i)
            .collect();
        if let Some(attach) = &mut attach {
            attach.handle(&revents[open.len()..]);
        }
        // One write per round: lines are never interleaved or cut by another's write.
        let mut lines = Vec::new();
        let now = jiff::Timestamp::now();
        if polled == Ok(0) {
            // Quiet for a poll: a line still waiting for its newline goes out as it is.
            for (_, source, splitter) in &mut streams {
                if let Some(piece) = splitter.finish() {
                    lines.extend(encode(now, *source, &piece));
                }
            }
        }
        for i in ready {
            let (fd, source, splitter) = &mut streams[i];
            let pieces = match nix::unistd::read(fd.as_ref().expect("open"), &mut buffer) {
                Ok(0) => {
                    *fd = None;
                    splitter.finish().into_iter().collect()
                }
                Ok(n) => {
                    // Attached clients get the output as it comes, not as lines.
                    if let Some(attach) = &mut attach {
                        attach.broadcast(*source, &buffer[..n]);
                    }
                    splitter.push(&buffer[..n])
                }
                Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => Vec::new(),
                Err(_) => {
                    *fd = None;
                    splitter.finish().into_iter().collect()
                }
            };
            for piece in pieces {
                lines.extend(encode(now, *source, &piece));
            }
        }
        if !lines.is_empty() {
            let _ = log.write_all(&lines);
        }
        if ended.is_none() {
            if let Some(status) = exited(pid) {
                ended = Some((status, std::time::Instant::now()));
            }
        }
    }
    // Attached clients get what is queued for them, then see their streams end.
    if let Some(attach) = attach {
        attach.finish(FLUSH_ATTACHED);
    }
    let mut lines = Vec::new();
    for (_, source, splitter) in &mut streams {
        if let Some(piece) = splitter.finish() {
            lines.extend(encode(jiff::Timestamp::now(), *source, &piece));
        }
    }
    let _ = log.write_all(&lines);
    match ended {
        Some((status, _)) => status,
        None => wait_for(pid),
    }
}

/// How the process ended, if it has (reaped).
fn exited(pid: i32) -> Option<(i32, Option<i32>)> {
    match waitpid(
        Pid::from_raw(pid),
        Some(nix::sys::wait::WaitPidFlag::WNOHANG),
    ) {
        Ok(WaitStatus::Exited(_, code)) => Some((code, None)),
        Ok(WaitStatus::Signaled(_, signal, _)) => Some((128 + signal as i32, Some(signal as i32))),
        Ok(_) => None,
        Err(nix::errno::Errno::EINTR) => None,
        // Already reaped, or not ours: nothing more will come of it.
        Err(_) => Some((255, None)),
    }
}

/// Reaps the container's process: (exit code, signal).
fn wait_for(pid: i32) -> (i32, Option<i32>) {
    loop {
        match waitpid(Pid::from_raw(pid), None) {
            Ok(WaitStatus::Exited(_, code)) => return (code, None),
            Ok(WaitStatus::Signaled(_, signal, _)) => {
                let signal = signal as i32;
                return (128 + signal, Some(signal));
            }
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            // Not our child (cannot happen for a container we created): no status to give.
            Err(_) => return (255, None),
        }
    }
}

/// Whether the kernel's OOM killer acted in the container's cgroup (v1 `memory.oom_control`,
/// v2 `memory.events`).
fn oom_killed(cgroups_path: &str) -> bool {
    let relative = cgroups_path.trim_start_matches('/');
    let v1 = Path::new("/sys/fs/cgroup/memory")
        .join(relative)
        .join("memory.oom_control");
    let v2 = Path::new("/sys/fs/cgroup")
        .join(relative)
        .join("memory.events");
    [v1, v2].iter().any(|path| {
        std::fs::read_to_string(path).is_ok_and(|text| {
            text.lines().any(|line| {
                line.strip_prefix("oom_kill ")
                    .and_then(|n| n.trim().parse::<u64>().ok())
                    .is_some_and(|n| n > 0)
            })
        })
    })
}

/// Deletes libcontainer's state and the container's cgroups.
fn cleanup(args: &ShimArgs) {
    let dir = args.state_root.join(&args.id);
    if dir.exists() {
        match Container::load(dir.clone()) {
            Ok(mut container) => {
                if let Err(e) = container.delete(true) {
                    eprintln!("deleting container {}: {e}", args.id);
                }
            }
            Err(e) => {
                eprintln!("loading container {}: {e}", args.id);
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
    }
}

/// `rudder shim exec`: runs `argv` in the container's namespaces and cgroup with this
/// process's stdio; returns its exit code. Must be called before the process has threads.
/// The command dies with this process. With `terminal`, the stdio is a terminal, which
/// becomes the command's controlling terminal, and `TERM` is `xterm` (as a Kubernetes node
/// sets it).
pub fn exec(
    state_root: &Path,
    id: &str,
    argv: Vec<String>,
    terminal: bool,
) -> Result<i32, ShimError> {
    let builder = ContainerBuilder::new(id.to_string(), SyscallType::default())
        .with_root_path(state_root)
        .map_err(container_error("state root"))?;
    let mut tenant = builder.with_executor(ExecExecutor { terminal }).as_tenant();
    if terminal {
        tenant = tenant.with_env(HashMap::from([("TERM".to_owned(), "xterm".to_owned())]));
    }
    let pid = tenant
        .with_container_args(argv)
        .with_detach(false)
        .build()
        .map_err(container_error(format!("exec in container {id}")))?;
    Ok(wait_for(pid.as_raw()).0)
}

nix::ioctl_write_int_bad!(set_controlling_terminal, nix::libc::TIOCSCTTY);

/// Makes standard input (a terminal) the controlling terminal of the session libcontainer
/// started for the process, so ^C and SIGWINCH reach its foreground job.
fn take_terminal() -> Result<(), ExecutorError> {
    // SAFETY: an ioctl on standard input with an integer argument.
    unsafe { set_controlling_terminal(0, 0) }
        .map_err(|e| ExecutorError::Execution(format!("making stdin the terminal: {e}").into()))?;
    Ok(())
}

/// Runs a container's process as libcontainer's default does, on its terminal when it has
/// one (`tty: true`).
#[derive(Clone)]
struct InitExecutor {
    terminal: bool,
}

impl Executor for InitExecutor {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        if self.terminal {
            take_terminal()?;
        }
        DefaultExecutor {}.exec(spec)
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        DefaultExecutor {}.validate(spec)
    }
}

/// Runs an exec's command as libcontainer's default does, after two things: the command
/// dies with the `rudder shim exec` that started it (its parent, which the kubelet kills
/// when the client hangs up), and with `terminal`, its stdin (a terminal) becomes the
/// controlling terminal of the session libcontainer started for it.
#[derive(Clone)]
struct ExecExecutor {
    terminal: bool,
}

impl Executor for ExecExecutor {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        let failed = |what: &str, error: nix::errno::Errno| {
            ExecutorError::Execution(format!("{what}: {error}").into())
        };
        // Set last before the command runs: a change of user clears it.
        nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
            .map_err(|e| failed("tying the command to its shim", e))?;
        // The shim died before the tie was made: nothing waits for this command.
        if nix::unistd::getppid() == Pid::from_raw(1) {
            std::process::exit(137);
        }
        if self.terminal {
            take_terminal()?;
        }
        DefaultExecutor {}.exec(spec)
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        DefaultExecutor {}.validate(spec)
    }
}

/// Starts `rudder shim exec` for `argv` with piped output (the kubelet's side of exec and
/// exec probes). With `terminal`, the caller gives it a terminal as its stdio instead.
pub fn exec_command(
    shim_binary: &Path,
    state_root: &Path,
    id: &str,
    argv: &[String],
    terminal: bool,
) -> Command {
    let mut command = Command::new(shim_binary);
    command
        .arg("shim")
        .arg("exec")
        .arg("--state-root")
        .arg(state_root)
        .arg("--id")
        .arg(id);
    if terminal {
        command.arg("--tty");
    }
    command
        .arg("--")
        .args(argv)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Whether a process with this pid exists (for adopting containers after a restart).
pub fn alive(pid: i32) -> bool {
    nix::sys::signal::kill(Pid::from_raw(pid), None).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attach_wire::{Decoder, Frame};
    use crate::log_format::{parse, Source};

    /// Runs `script` in sh with its output piped to [`relay_output`] (as a container's is)
    /// and logged at `path`: how it ended.
    fn relay_to(path: &Path, script: &str) -> (i32, Option<i32>) {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        let (stdout, stdout_writer) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let (stderr, stderr_writer) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        // relay_output reaps it by its pid, as the shim reaps a container.
        #[allow(clippy::zombie_processes)]
        let child = Command::new("sh")
            .args(["-c", script])
            .stdin(Stdio::null())
            .stdout(stdout_writer)
            .stderr(stderr_writer)
            .spawn()
            .unwrap();
        // (`spawn` took the write ends: the pipes end when sh does.)
        let outputs = Outputs {
            streams: vec![(stdout, Source::Stdout), (stderr, Source::Stderr)],
            log,
            attach: None,
        };
        relay_output(child.id() as i32, outputs)
    }

    fn relayed(script: &str) -> ((i32, Option<i32>), String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let ended = relay_to(&path, script);
        (ended, std::fs::read_to_string(&path).unwrap())
    }

    fn pieces(log: &str) -> Vec<(Source, bool, String)> {
        log.lines()
            .map(|line| {
                let entry = parse(line.as_bytes()).unwrap_or_else(|| panic!("{line:?}"));
                let content = String::from_utf8(entry.content.to_vec()).unwrap();
                (entry.source, entry.full, content)
            })
            .collect()
    }

    #[test]
    fn output_is_logged_line_by_line_to_its_last_byte_with_the_exit_status() {
        let (ended, log) = relayed("echo one; echo two >&2; printf tail; exit 3");
        assert_eq!(ended, (3, None));
        let mut logged = pieces(&log);
        // stdout and stderr are read apart: their order between them is the reads'.
        logged.sort_by_key(|(source, _, _)| *source == Source::Stderr);
        assert_eq!(
            logged,
            [
                (Source::Stdout, true, "one".to_owned()),
                (Source::Stdout, false, "tail".to_owned()),
                (Source::Stderr, true, "two".to_owned()),
            ]
        );
    }

    #[test]
    fn a_killed_process_ends_as_128_and_its_signal() {
        let (ended, log) = relayed("echo before; kill -9 $$");
        assert_eq!(ended, (137, Some(9)));
        assert_eq!(pieces(&log), [(Source::Stdout, true, "before".to_owned())]);
    }

    #[test]
    fn a_line_without_its_newline_is_logged_while_the_process_waits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let go = dir.path().join("go");
        // A prompt, then a wait for the go-ahead: the prompt is logged during the wait.
        let script = format!(
            "printf 'name? '; while [ ! -e {} ]; do sleep 0.05; done",
            go.display()
        );
        let relay = std::thread::spawn({
            let path = path.clone();
            move || relay_to(&path, &script)
        });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !std::fs::read_to_string(&path).is_ok_and(|log| log.contains("name? ")) {
            assert!(
                std::time::Instant::now() < deadline,
                "the prompt was not logged while the process waited"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        std::fs::write(&go, "").unwrap();
        assert_eq!(relay.join().unwrap(), (0, None));
        let log = std::fs::read_to_string(&path).unwrap();
        assert_eq!(pieces(&log), [(Source::Stdout, false, "name? ".to_owned())]);
    }

    /// Runs `script` in sh on the streams a container in `modes` gets, relayed with an
    /// attach point in `dir` (as the shim runs a container): the relay's thread.
    fn relay_attached(
        dir: &Path,
        modes: AttachModes,
        script: &str,
    ) -> std::thread::JoinHandle<(i32, Option<i32>)> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("0.log"))
            .unwrap();
        let Streams {
            container_stdin,
            container_stdout,
            container_stderr,
            outputs,
            input,
            terminal,
        } = shim_attach::streams(modes).unwrap();
        // relay_output reaps it by its pid, as the shim reaps a container. (The Command,
        // a temporary, takes the container's ends with it.)
        #[allow(clippy::zombie_processes)]
        let child = Command::new("sh")
            .args(["-c", script])
            .stdin(container_stdin)
            .stdout(container_stdout)
            .stderr(container_stderr)
            .spawn()
            .unwrap();
        let attach = AttachPoint::listen(dir, input, terminal, modes.stdin_once).unwrap();
        let outputs = Outputs {
            streams: outputs,
            log,
            attach: Some(attach),
        };
        let pid = child.id() as i32;
        std::thread::spawn(move || relay_output(pid, outputs))
    }

    fn attach_client(dir: &Path, stdin: bool) -> std::os::unix::net::UnixStream {
        let mut stream = shim_attach::connect(dir).unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        stream.write_all(&Frame::Hello { stdin }.encode()).unwrap();
        stream
    }

    fn send(stream: &mut std::os::unix::net::UnixStream, frame: Frame) {
        stream.write_all(&frame.encode()).unwrap();
    }

    /// The output a client is sent (stdout and stderr as they come, as text) until the
    /// shim closes the socket, or `enough` says so; a read that times out fails the test.
    fn output_until(
        stream: &mut std::os::unix::net::UnixStream,
        enough: impl Fn(&str) -> bool,
    ) -> String {
        use std::io::Read;
        let mut decoder = Decoder::default();
        let mut seen = String::new();
        let mut buffer = [0u8; 4096];
        while !enough(&seen) {
            let n = stream
                .read(&mut buffer)
                .unwrap_or_else(|e| panic!("reading the attach socket: {e}; seen {seen:?}"));
            if n == 0 {
                break;
            }
            decoder.push(&buffer[..n]);
            while let Some(frame) = decoder.next_frame().unwrap() {
                match frame {
                    Frame::Stdout(data) | Frame::Stderr(data) => {
                        seen.push_str(&String::from_utf8_lossy(&data))
                    }
                    Frame::Ended => seen.push_str(ENDED),
                    other => panic!("the shim sent {other:?}"),
                }
            }
        }
        seen
    }

    /// How [`output_until`] shows the shim's `Ended`.
    const ENDED: &str = "<ended>";

    const STDIN_KEPT: AttachModes = AttachModes {
        stdin: true,
        stdin_once: false,
        tty: false,
    };

    #[test]
    fn typed_input_reaches_the_container_and_its_output_every_attached_client() {
        let dir = tempfile::tempdir().unwrap();
        let relay = relay_attached(
            dir.path(),
            STDIN_KEPT,
            "read first; echo \"got $first\"; read second; echo \"then $second\" >&2",
        );
        // The watcher first: accepted no later than the typist, so it sees every answer.
        let mut watcher = attach_client(dir.path(), false);
        let mut typist = attach_client(dir.path(), true);
        send(&mut typist, Frame::Stdin(b"one\n".to_vec()));
        for client in [&mut typist, &mut watcher] {
            let seen = output_until(client, |seen| seen.contains('\n'));
            assert_eq!(seen, "got one\n");
        }
        // A client that did not ask for stdin types at nothing; without stdinOnce the
        // input outlives the typist who goes, and the next one's reaches the container.
        send(&mut watcher, Frame::Stdin(b"ignored\n".to_vec()));
        drop(typist);
        let mut next = attach_client(dir.path(), true);
        send(&mut next, Frame::Stdin(b"two\n".to_vec()));
        assert_eq!(output_until(&mut next, |_| false), "then two\n<ended>");
        assert_eq!(output_until(&mut watcher, |_| false), "then two\n<ended>");
        assert_eq!(relay.join().unwrap(), (0, None));
        // Gone with the container.
        assert!(!dir.path().join(shim_attach::SOCKET).exists());
        let log = std::fs::read_to_string(dir.path().join("0.log")).unwrap();
        assert_eq!(
            pieces(&log),
            [
                (Source::Stdout, true, "got one".to_owned()),
                (Source::Stderr, true, "then two".to_owned()),
            ]
        );
    }

    #[test]
    fn with_stdin_once_the_first_typist_s_departure_ends_the_input() {
        let dir = tempfile::tempdir().unwrap();
        let once = AttachModes {
            stdin_once: true,
            ..STDIN_KEPT
        };
        let relay = relay_attached(dir.path(), once, "cat; echo ended");
        let mut watcher = attach_client(dir.path(), false);
        let mut typist = attach_client(dir.path(), true);
        send(&mut typist, Frame::Stdin(b"a\n".to_vec()));
        assert_eq!(
            output_until(&mut watcher, |seen| seen.contains('\n')),
            "a\n"
        );
        // What was typed before the going is still read; then cat reads the end.
        send(&mut typist, Frame::Stdin(b"b\n".to_vec()));
        drop(typist);
        assert_eq!(output_until(&mut watcher, |_| false), "b\nended\n<ended>");
        assert_eq!(relay.join().unwrap(), (0, None));
    }

    #[test]
    fn on_a_terminal_the_client_sizes_it_and_types_at_it() {
        let dir = tempfile::tempdir().unwrap();
        let terminal = AttachModes {
            tty: true,
            ..STDIN_KEPT
        };
        let relay = relay_attached(dir.path(), terminal, "read x; stty size; echo \"x=$x\"");
        let mut client = attach_client(dir.path(), true);
        send(
            &mut client,
            Frame::Resize {
                width: 132,
                height: 43,
            },
        );
        send(&mut client, Frame::Stdin(b"go\n".to_vec()));
        let seen = output_until(&mut client, |_| false);
        // The terminal echoes what is typed and ends lines with CR LF; all of it is stdout.
        assert_eq!(seen, "go\r\n43 132\r\nx=go\r\n<ended>");
        assert_eq!(relay.join().unwrap(), (0, None));
    }

    #[test]
    fn a_terminal_s_input_outlives_its_first_typist_even_with_stdin_once() {
        let dir = tempfile::tempdir().unwrap();
        let resumable = AttachModes {
            stdin: true,
            stdin_once: true,
            tty: true,
        };
        let relay = relay_attached(
            dir.path(),
            resumable,
            "read a; echo \"a=$a\"; read b; echo \"b=$b\"",
        );
        let mut first = attach_client(dir.path(), true);
        send(&mut first, Frame::Stdin(b"one\n".to_vec()));
        let seen = output_until(&mut first, |seen| seen.contains("a=one"));
        assert!(seen.contains("a=one"), "{seen:?}");
        drop(first);
        // `kubectl attach -i -t` again: the session resumes.
        let mut second = attach_client(dir.path(), true);
        send(&mut second, Frame::Stdin(b"two\n".to_vec()));
        let seen = output_until(&mut second, |_| false);
        assert!(seen.contains("b=two"), "{seen:?}");
        assert_eq!(relay.join().unwrap(), (0, None));
    }

    #[test]
    fn a_client_that_reads_nothing_is_cut_off_without_holding_up_the_others() {
        let dir = tempfile::tempdir().unwrap();
        // More than a client may fall behind by.
        let size = 3 * shim_attach::MAX_OUTGOING;
        let relay = relay_attached(
            dir.path(),
            STDIN_KEPT,
            &format!("read go; head -c {size} /dev/zero | tr '\\0' x; echo; echo done"),
        );
        let idle = attach_client(dir.path(), false);
        let mut reader = attach_client(dir.path(), false);
        let mut typist = attach_client(dir.path(), true);
        let reading = std::thread::spawn(move || output_until(&mut reader, |_| false));
        send(&mut typist, Frame::Stdin(b"go\n".to_vec()));
        let seen = reading.join().unwrap();
        assert_eq!(seen.len(), size + "\ndone\n<ended>".len());
        assert!(seen.ends_with("x\ndone\n<ended>"));
        assert_eq!(relay.join().unwrap(), (0, None));
        // The idle client got at most what it was allowed to fall behind by, then its
        // socket closed without `Ended`: it knows it was cut off.
        let mut idle = idle;
        let taken = output_until(&mut idle, |_| false);
        assert!(taken.len() <= shim_attach::MAX_OUTGOING, "{}", taken.len());
        assert!(!taken.ends_with(ENDED));
        drop(typist);
    }

    #[test]
    fn a_container_that_closed_its_output_can_still_be_typed_at() {
        let dir = tempfile::tempdir().unwrap();
        let written = dir.path().join("typed");
        let relay = relay_attached(
            dir.path(),
            STDIN_KEPT,
            &format!(
                "exec >/dev/null 2>&1; read line; echo \"$line\" > {}",
                written.display()
            ),
        );
        let mut typist = attach_client(dir.path(), true);
        send(&mut typist, Frame::Stdin(b"kept\n".to_vec()));
        // The container's end closes the socket.
        assert_eq!(output_until(&mut typist, |_| false), ENDED);
        assert_eq!(relay.join().unwrap(), (0, None));
        assert_eq!(std::fs::read_to_string(&written).unwrap(), "kept\n");
    }
}
