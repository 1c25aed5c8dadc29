//! The shim's loop while its container runs (shim.rs): the container's output written to
//! its log as it comes, handed to attached clients (shim_attach.rs), and the container's
//! end awaited. One thread, one `poll`: nothing in it may block on a client.

use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;

use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use super::shim_attach::AttachPoint;
use crate::log_format::Source;

/// What the shim reads and keeps of a started container: the read ends of its output (its
/// stdout and stderr pipes, or its terminal), its log, and its attach point if it has one.
pub(super) struct Outputs {
    pub streams: Vec<(OwnedFd, Source)>,
    pub log: File,
    pub attach: Option<AttachPoint>,
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
pub(super) fn relay_output(pid: i32, outputs: Outputs) -> (i32, Option<i32>) {
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

/// Reaps the process (the container's, or an exec's): (exit code, signal).
pub(super) fn wait_for(pid: i32) -> (i32, Option<i32>) {
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

#[cfg(test)]
mod tests {
    use std::fs::OpenOptions;
    use std::path::Path;
    use std::process::{Command, Stdio};

    use super::*;
    use crate::attach_wire::{Decoder, Frame};
    use crate::log_format::parse;
    use crate::runtime::linux::shim_attach::{self, AttachModes, Streams};

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
