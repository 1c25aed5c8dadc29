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
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::error::LibcontainerError;
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use nix::unistd::{fork, setsid, ForkResult, Pid};
use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

use super::shim_attach::{self, AttachModes, AttachPoint, Streams};
use super::shim_relay::{relay_output, wait_for, Outputs};

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
