//! A pseudo-terminal for `exec -t` (and, through [`open_pty`], the shim's for a container
//! made with `tty: true`): the command gets the terminal's side as its stdin,
//! stdout and stderr (the shim makes it the command's controlling terminal, so ^C and
//! SIGWINCH reach it); the node reads and writes the other side, and sizes it as the
//! client's terminal changes.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::pty::Winsize;
use tokio::io::unix::AsyncFd;

nix::ioctl_write_ptr_bad!(set_window_size, nix::libc::TIOCSWINSZ, Winsize);

/// The size a terminal starts with when the client has not said its own (the classic
/// console's).
pub const DEFAULT_SIZE: (u16, u16) = (80, 24);

/// The node's side of a terminal.
pub struct Terminal {
    master: AsyncFd<OwnedFd>,
}

fn winsize(width: u16, height: u16) -> Winsize {
    Winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

impl Terminal {
    /// A new terminal: the node's side, and the command's (to hand to it, then drop here so
    /// the node's side reads its end when the command's processes are gone). Both are
    /// close-on-exec: no other process the node starts meanwhile (a container's shim, a
    /// probe) may keep a side open, or the terminal would never end or never hang up.
    pub fn open(width: u16, height: u16) -> io::Result<(Terminal, OwnedFd)> {
        let (master, command_side) = open_pty(width, height)?;
        let flags = OFlag::from_bits_truncate(fcntl(&master, FcntlArg::F_GETFL)?);
        fcntl(&master, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
        // SAFETY: the OwnedFd owns the descriptor for as long as the AsyncFd holds it, and
        // always names that one.
        let master = unsafe { AsyncFd::register(master) }?;
        Ok((Terminal { master }, command_side))
    }

    /// Reads what the command wrote; 0 once every holder of the command's side closed it
    /// (Linux answers EIO then, which is the terminal's end, not a failure).
    pub async fn read(&self, buffer: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut ready = self.master.readable().await?;
            match ready.try_io(|master| {
                nix::unistd::read(master.get_ref(), buffer).map_err(io::Error::from)
            }) {
                Ok(Err(error)) if error.raw_os_error() == Some(nix::libc::EIO) => return Ok(0),
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    /// Writes `data` as if typed at the terminal.
    pub async fn write_all(&self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let mut ready = self.master.writable().await?;
            match ready.try_io(|master| {
                nix::unistd::write(master.get_ref(), data).map_err(io::Error::from)
            }) {
                Ok(Ok(written)) => data = &data[written..],
                Ok(Err(error)) => return Err(error),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }

    /// Sizes the terminal (the command's foreground process group gets SIGWINCH). Sizes
    /// beyond a terminal's 16 bits are clamped.
    pub fn resize(&self, width: u32, height: u32) -> io::Result<()> {
        let clamp = |n: u32| u16::try_from(n).unwrap_or(u16::MAX);
        set_size(self.master.get_ref(), clamp(width), clamp(height))
    }
}

/// A new pseudo-terminal sized `width` × `height`: (the node's side, the command's side),
/// both close-on-exec, blocking. [`Terminal::open`] for async use; the shim, which polls by
/// hand, uses this directly.
pub fn open_pty(width: u16, height: u16) -> io::Result<(OwnedFd, OwnedFd)> {
    use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
    let no_tty = OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC;
    let master = posix_openpt(no_tty)?;
    grantpt(&master)?;
    unlockpt(&master)?;
    let name = ptsname_r(&master)?;
    let command_side = nix::fcntl::open(name.as_str(), no_tty, nix::sys::stat::Mode::empty())?;
    let master = OwnedFd::from(master);
    set_size(&master, width, height)?;
    Ok((master, command_side))
}

/// Sizes the terminal whose node side is `master` (its foreground process group gets
/// SIGWINCH).
pub fn set_size(master: &impl AsRawFd, width: u16, height: u16) -> io::Result<()> {
    let size = winsize(width, height);
    // SAFETY: the descriptor is the open master of a terminal and `size` lives across the
    // call.
    unsafe { set_window_size(master.as_raw_fd(), &size) }?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn neither_side_is_inherited_by_what_the_node_starts() {
        let (terminal, command_side) = Terminal::open(80, 24).unwrap();
        for fd in [terminal.master.get_ref(), &command_side] {
            let flags = fcntl(fd, FcntlArg::F_GETFD).unwrap();
            assert_ne!(flags & nix::libc::FD_CLOEXEC, 0);
        }
    }

    #[tokio::test]
    async fn what_the_command_writes_is_read_and_its_size_is_what_the_client_says() {
        let (terminal, command_side) = Terminal::open(80, 24).unwrap();
        let mut command = std::process::Command::new("sh");
        command
            .args(["-c", "read line; echo \"got $line\"; stty size"])
            .stdin(command_side.try_clone().unwrap())
            .stdout(command_side.try_clone().unwrap())
            .stderr(command_side);
        terminal.resize(132, 43).unwrap();
        let mut child = command.spawn().unwrap();
        drop(command);
        terminal.write_all(b"hello\n").await.unwrap();
        let mut seen = Vec::new();
        let mut buffer = [0u8; 1024];
        loop {
            let n = terminal.read(&mut buffer).await.unwrap();
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buffer[..n]);
        }
        assert!(child.wait().unwrap().success());
        let seen = String::from_utf8_lossy(&seen);
        // The terminal echoes the input, and turns each newline into CR LF.
        assert!(seen.contains("got hello\r\n"), "{seen:?}");
        assert!(seen.contains("43 132\r\n"), "{seen:?}");
    }
}
