//! A container's attach point, kept by its shim for a container made with `stdin: true` or
//! `tty: true` (`kubectl run -i -t`, `kubectl attach -i -t`): a Unix socket in the attempt's
//! bundle (`attach.sock`) that the node's endpoint connects to, speaking attach_wire.rs.
//!
//! - Every attached client gets the container's output from when it attached (the shim's
//!   poll loop hands each piece to [`AttachPoint::broadcast`] as it logs it). The shim never
//!   waits on a client: what a client has not taken yet is queued for it, and a client that
//!   falls [`MAX_OUTGOING`] bytes behind, or takes nothing for [`CLIENT_STALL`], is cut off
//!   (a client must not slow the container, its log or the other clients). When the
//!   container ends, each client gets what is queued for it and `Ended`: a client whose
//!   socket closes without it knows it was cut off.
//! - A client that said `Hello { stdin: true }` types at the container's standard input.
//!   What the container has not read yet waits here, up to [`MAX_PENDING`] bytes; past that
//!   the shim stops reading its clients until the container takes some.
//! - With `stdinOnce`, the input ends (the container reads its end) when the first client
//!   with stdin closes it or goes; then it stays closed until the container restarts, as in
//!   Kubernetes. Not on a terminal: a terminal has no end of input of its own (^D is the
//!   user's to type), so its input stays for the next client (`kubectl attach -i -t` resumes
//!   a session), as containerd does.
//! - On a terminal, a client's `Resize` sizes it.
//!
//! The socket's path goes through `/proc/self/fd/N/` (the bundle opened as a directory), so
//! a deep bundle never meets the 108-byte limit of a socket address.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::PollFlags;

use crate::attach_wire::{Decoder, Frame};
use crate::log_format::Source;

/// The socket's name in the bundle.
pub const SOCKET: &str = "attach.sock";

/// How long a client may take nothing of the container's output queued for it.
pub const CLIENT_STALL: Duration = Duration::from_secs(10);

/// How far behind the container's output a client may fall.
pub const MAX_OUTGOING: usize = 1 << 20;

/// Input typed but not yet read by the container, at most.
pub const MAX_PENDING: usize = 256 * 1024;

/// The longest [`AttachPoint::finish`] gives clients to take their last output.
const FINISH_AT_MOST: Duration = Duration::from_secs(10);

/// Clients at once; more wait to be accepted.
pub const MAX_CLIENTS: usize = 64;

/// How long accepting pauses after it failed (out of descriptors): the listener stays
/// readable, and polling it again at once would spin.
const ACCEPT_PAUSE: Duration = Duration::from_secs(1);

/// How the container's standard input and terminal were made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttachModes {
    pub stdin: bool,
    pub stdin_once: bool,
    pub tty: bool,
}

struct Client {
    /// Non-blocking.
    stream: UnixStream,
    decoder: Decoder,
    /// Said `Hello { stdin: true }`: its input is the container's.
    stdin: bool,
    /// Output not yet taken.
    outgoing: Vec<u8>,
    /// Since when it has taken nothing of `outgoing`.
    stalled_since: Option<Instant>,
}

pub struct AttachPoint {
    listener: UnixListener,
    socket: PathBuf,
    clients: Vec<Client>,
    /// Where the container's standard input is written (non-blocking); `None` without
    /// stdin, or once it ended.
    input: Option<OwnedFd>,
    pending: Vec<u8>,
    /// The input ends once `pending` is written (a stdin client closed it).
    closing: bool,
    stdin_once: bool,
    /// The node's side of the container's terminal (to size it).
    terminal: Option<OwnedFd>,
    accept_paused_until: Option<Instant>,
    polled: Polled,
}

/// What the last [`AttachPoint::interests`] asked to poll, for [`AttachPoint::handle`] to
/// read the results by.
#[derive(Debug, Clone, Copy, Default)]
struct Polled {
    listener: bool,
    input: bool,
    clients: usize,
}

/// Runs `with` on the `/proc/self/fd/N/<name>` path of `name` in `dir`.
fn through_dir<T>(
    dir: &Path,
    name: &str,
    with: impl FnOnce(&Path) -> io::Result<T>,
) -> io::Result<T> {
    use std::os::fd::AsRawFd;
    let handle = nix::fcntl::open(
        dir,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    let path = PathBuf::from(format!("/proc/self/fd/{}/{name}", handle.as_raw_fd()));
    with(&path)
}

/// Connects to the attach point of the attempt whose bundle is `bundle` (the node's side).
pub fn connect(bundle: &Path) -> io::Result<UnixStream> {
    through_dir(bundle, SOCKET, |path| UnixStream::connect(path))
}

fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

impl AttachPoint {
    /// Listens in `bundle`. `input` is where the container's stdin is written (its pipe's
    /// write end, or the terminal's node side), `terminal` the terminal's node side.
    pub fn listen(
        bundle: &Path,
        input: Option<OwnedFd>,
        terminal: Option<OwnedFd>,
        stdin_once: bool,
    ) -> io::Result<AttachPoint> {
        let socket = bundle.join(SOCKET);
        let _ = std::fs::remove_file(&socket);
        let listener = through_dir(bundle, SOCKET, |path| UnixListener::bind(path))?;
        listener.set_nonblocking(true)?;
        if let Some(input) = &input {
            set_nonblocking(input)?;
        }
        Ok(AttachPoint {
            listener,
            socket,
            clients: Vec::new(),
            input,
            pending: Vec::new(),
            closing: false,
            stdin_once,
            terminal,
            accept_paused_until: None,
            polled: Polled::default(),
        })
    }

    fn accepting(&self) -> bool {
        self.clients.len() < MAX_CLIENTS
            && self
                .accept_paused_until
                .is_none_or(|until| Instant::now() >= until)
    }

    /// What to poll, in the order [`AttachPoint::handle`] takes the results.
    pub fn interests(&mut self) -> Vec<(BorrowedFd<'_>, PollFlags)> {
        self.polled = Polled {
            listener: self.accepting(),
            input: self.input.is_some() && !self.pending.is_empty(),
            clients: self.clients.len(),
        };
        let mut interests = Vec::new();
        if self.polled.listener {
            interests.push((self.listener.as_fd(), PollFlags::POLLIN));
        }
        if let Some(input) = self.input.as_ref().filter(|_| self.polled.input) {
            interests.push((input.as_fd(), PollFlags::POLLOUT));
        }
        for client in &self.clients {
            let mut flags = PollFlags::empty();
            if self.pending.len() < MAX_PENDING {
                flags |= PollFlags::POLLIN;
            }
            if !client.outgoing.is_empty() {
                flags |= PollFlags::POLLOUT;
            }
            // Even with no flags, a hang-up is reported.
            interests.push((client.stream.as_fd(), flags));
        }
        interests
    }

    /// Acts on what the poll said of [`AttachPoint::interests`] (in its order).
    pub fn handle(&mut self, revents: &[PollFlags]) {
        let polled = self.polled;
        let mut revents = revents.iter().copied();
        if polled.listener && revents.next().is_some_and(|r| !r.is_empty()) {
            self.accept();
        }
        if polled.input && revents.next().is_some_and(|r| !r.is_empty()) {
            self.write_input();
        }
        // The clients polled, first in the list: those accepted just now come after them.
        let results: Vec<PollFlags> = revents.take(polled.clients).collect();
        let hung_up = PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR;
        // Backwards: a client removed does not move those still to visit.
        for index in (0..results.len()).rev() {
            if results[index].contains(PollFlags::POLLOUT) && !self.flush(index) {
                continue;
            }
            if results[index].intersects(hung_up) {
                self.read_client(index);
            }
        }
        for index in (0..self.clients.len()).rev() {
            let stalled = self.clients[index]
                .stalled_since
                .is_some_and(|since| since.elapsed() >= CLIENT_STALL);
            if stalled {
                eprintln!("attach: a client took no output for {CLIENT_STALL:?}; cutting it off");
                self.drop_client(index);
            }
        }
    }

    /// Hands a piece of the container's output to every client.
    pub fn broadcast(&mut self, source: Source, data: &[u8]) {
        if self.clients.is_empty() || data.is_empty() {
            return;
        }
        let frame = match source {
            Source::Stdout => Frame::Stdout(data.to_vec()),
            Source::Stderr => Frame::Stderr(data.to_vec()),
        }
        .encode();
        for index in (0..self.clients.len()).rev() {
            let client = &mut self.clients[index];
            if client.outgoing.len() + frame.len() > MAX_OUTGOING {
                eprintln!("attach: a client fell {MAX_OUTGOING} bytes behind; cutting it off");
                self.drop_client(index);
                continue;
            }
            client.outgoing.extend_from_slice(&frame);
            self.flush(index);
        }
    }

    /// Writes what the client can take now of its queued output. False if the client is
    /// gone (dropped).
    fn flush(&mut self, index: usize) -> bool {
        let client = &mut self.clients[index];
        while !client.outgoing.is_empty() {
            match client.stream.write(&client.outgoing) {
                Ok(0) => break,
                Ok(written) => {
                    client.outgoing.drain(..written);
                    client.stalled_since = None;
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    self.drop_client(index);
                    return false;
                }
            }
        }
        if client.outgoing.is_empty() {
            client.stalled_since = None;
        } else if client.stalled_since.is_none() {
            client.stalled_since = Some(Instant::now());
        }
        true
    }

    fn accept(&mut self) {
        while self.clients.len() < MAX_CLIENTS {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if stream.set_nonblocking(true).is_ok() {
                        self.clients.push(Client {
                            stream,
                            decoder: Decoder::default(),
                            stdin: false,
                            outgoing: Vec::new(),
                            stalled_since: None,
                        });
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return,
                Err(error) => {
                    eprintln!("attach: accepting a client: {error}; pausing");
                    self.accept_paused_until = Some(Instant::now() + ACCEPT_PAUSE);
                    return;
                }
            }
        }
    }

    fn write_input(&mut self) {
        let Some(input) = &self.input else { return };
        match nix::unistd::write(input, &self.pending) {
            Ok(written) => {
                self.pending.drain(..written);
                if self.pending.is_empty() && self.closing {
                    self.input = None;
                }
            }
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => {}
            // The container closed its input: what was typed has nowhere to go.
            Err(_) => {
                self.input = None;
                self.pending.clear();
            }
        }
    }

    /// Reads what a client sent (it is readable, or hung up).
    fn read_client(&mut self, index: usize) {
        let mut buffer = [0u8; 16 * 1024];
        let read = self.clients[index].stream.read(&mut buffer);
        let n = match read {
            Ok(0) => return self.drop_client(index),
            Ok(n) => n,
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
                ) =>
            {
                return
            }
            Err(_) => return self.drop_client(index),
        };
        self.clients[index].decoder.push(&buffer[..n]);
        loop {
            let frame = match self.clients[index].decoder.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => return,
                Err(error) => {
                    eprintln!("attach: {error}; cutting the client off");
                    return self.drop_client(index);
                }
            };
            let client = &mut self.clients[index];
            match frame {
                Frame::Hello { stdin } => client.stdin = stdin,
                Frame::Stdin(data) if client.stdin && self.input.is_some() && !self.closing => {
                    self.pending.extend_from_slice(&data);
                }
                Frame::CloseStdin if client.stdin => {
                    client.stdin = false;
                    self.stdin_ended();
                }
                Frame::Resize { width, height } => {
                    if let Some(terminal) = &self.terminal {
                        let _ = crate::terminal::set_size(terminal, width, height);
                    }
                }
                _ => {}
            }
        }
    }

    /// The container ended: every client gets what is queued for it and [`Frame::Ended`]
    /// (while it takes some at least every `within`), then its socket closes as the point
    /// is dropped.
    pub fn finish(mut self, within: Duration) {
        use nix::poll::{poll, PollFd, PollTimeout};
        // No one new: a connect from now on finds no socket (and follows the log, which
        // ends as the container did); those already waiting are taken and told the end.
        let _ = std::fs::remove_file(&self.socket);
        self.accept();
        let ended = Frame::Ended.encode();
        for index in (0..self.clients.len()).rev() {
            self.clients[index].outgoing.extend_from_slice(&ended);
            self.flush(index);
        }
        // A client that keeps taking its output gets it all, up to `within` of no progress
        // and [`FINISH_AT_MOST`] in all: the kubelet learns of the end only after this.
        let started = Instant::now();
        loop {
            self.clients.retain(|client| !client.outgoing.is_empty());
            let stalled = self.clients.iter().all(|client| {
                client
                    .stalled_since
                    .is_some_and(|since| since.elapsed() >= within)
            });
            let left = FINISH_AT_MOST.saturating_sub(started.elapsed()).min(within);
            if self.clients.is_empty() || stalled || left.is_zero() {
                return;
            }
            let mut fds: Vec<PollFd> = self
                .clients
                .iter()
                .map(|client| PollFd::new(client.stream.as_fd(), PollFlags::POLLOUT))
                .collect();
            let wait = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
            let ready: Vec<bool> = match poll(&mut fds, wait) {
                Ok(_) => fds
                    .iter()
                    .map(|fd| fd.revents().is_some_and(|r| !r.is_empty()))
                    .collect(),
                Err(_) => vec![false; fds.len()],
            };
            drop(fds);
            for index in (0..ready.len()).rev() {
                if ready[index] {
                    self.flush(index);
                }
            }
        }
    }

    fn drop_client(&mut self, index: usize) {
        let client = self.clients.remove(index);
        if client.stdin {
            self.stdin_ended();
        }
    }

    /// A client with stdin closed it or went: with `stdinOnce`, the input ends once what it
    /// typed is written (not a terminal's: it stays for the next client).
    fn stdin_ended(&mut self) {
        if !self.stdin_once || self.input.is_none() || self.terminal.is_some() {
            return;
        }
        self.closing = true;
        if self.pending.is_empty() {
            self.input = None;
        }
    }
}

impl Drop for AttachPoint {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// The container's standard streams for its attach modes: what the container gets as stdin,
/// stdout and stderr, and what the shim keeps: the output streams it reads and logs, and
/// the attach point's input and terminal.
pub struct Streams {
    pub container_stdin: OwnedFd,
    pub container_stdout: OwnedFd,
    pub container_stderr: OwnedFd,
    pub outputs: Vec<(OwnedFd, Source)>,
    pub input: Option<OwnedFd>,
    pub terminal: Option<OwnedFd>,
}

/// Makes the pipes (or the terminal) for a container started in `modes`.
pub fn streams(modes: AttachModes) -> io::Result<Streams> {
    let pipe = || nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(io::Error::from);
    if modes.tty {
        let (master, command_side) = crate::terminal::open_pty(
            crate::terminal::DEFAULT_SIZE.0,
            crate::terminal::DEFAULT_SIZE.1,
        )?;
        let input = if modes.stdin {
            Some(master.try_clone()?)
        } else {
            None
        };
        return Ok(Streams {
            container_stdin: command_side.try_clone()?,
            container_stdout: command_side.try_clone()?,
            container_stderr: command_side,
            terminal: Some(master.try_clone()?),
            outputs: vec![(master, Source::Stdout)],
            input,
        });
    }
    let (stdout, container_stdout) = pipe()?;
    let (stderr, container_stderr) = pipe()?;
    let (container_stdin, input) = if modes.stdin {
        let (read, write) = pipe()?;
        (read, Some(write))
    } else {
        (OwnedFd::from(File::open("/dev/null")?), None)
    };
    Ok(Streams {
        container_stdin,
        container_stdout,
        container_stderr,
        outputs: vec![(stdout, Source::Stdout), (stderr, Source::Stderr)],
        input,
        terminal: None,
    })
}
