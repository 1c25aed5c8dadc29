//! Running one probe (Kubernetes' handlers): an HTTP GET answered with 2xx/3xx, a TCP
//! connection accepted, or a command in the container exiting 0 — each within its timeout.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::shim;

/// Where and how to run probes of one container.
pub struct ProbeTarget<'a> {
    pub pod_ip: &'a str,
    pub container: &'a Container,
    pub shim_binary: &'a Path,
    pub state_root: &'a Path,
    pub container_id: &'a str,
}

/// Timing and thresholds with Kubernetes' defaults.
pub fn timing(probe: &Probe) -> (Duration, Duration, Duration, u32, u32) {
    let secs = |v: Option<i32>, default: u64| {
        Duration::from_secs(v.map_or(default, |v| u64::try_from(v.max(0)).unwrap_or(default)))
    };
    let count = |v: Option<i32>, default: u32| {
        v.map_or(default, |v| u32::try_from(v.max(1)).unwrap_or(default))
    };
    (
        secs(probe.initial_delay_seconds, 0),
        secs(probe.period_seconds, 10),
        secs(probe.timeout_seconds, 1),
        count(probe.success_threshold, 1),
        count(probe.failure_threshold, 3),
    )
}

/// A named or numbered port of the container.
fn port(target: &ProbeTarget, port: &IntOrString) -> Option<u16> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).ok(),
        IntOrString::String(name) => target
            .container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok()),
    }
}

/// Runs the probe once: passed or not.
pub fn run(target: &ProbeTarget, probe: &Probe) -> bool {
    let (_, _, timeout, _, _) = timing(probe);
    if let Some(http) = &probe.http_get {
        let host = http.host.as_deref().unwrap_or(target.pod_ip);
        let Some(port) = port(target, &http.port) else {
            return false;
        };
        return http_get(host, port, http.path.as_deref().unwrap_or("/"), timeout);
    }
    if let Some(tcp) = &probe.tcp_socket {
        let host = tcp.host.as_deref().unwrap_or(target.pod_ip);
        let Some(port) = port(target, &tcp.port) else {
            return false;
        };
        return address(host, port)
            .is_some_and(|a| TcpStream::connect_timeout(&a, timeout).is_ok());
    }
    if let Some(exec) = &probe.exec {
        let argv = exec.command.clone().unwrap_or_default();
        return exec_succeeds(target, &argv, timeout);
    }
    false
}

fn address(host: &str, port: u16) -> Option<SocketAddr> {
    format!("{host}:{port}").parse().ok()
}

/// An HTTP/1.0 GET: any status from 200 to 399 passes.
fn http_get(host: &str, port: u16, path: &str, timeout: Duration) -> bool {
    let Some(address) = address(host, port) else {
        return false;
    };
    let Ok(mut stream) = TcpStream::connect_timeout(&address, timeout) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/1.0\r\nAccept: */*\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 64];
    let mut read = 0;
    while read < 12 {
        match stream.read(&mut head[read..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => read += n,
        }
    }
    status_passes(&head[..read])
}

/// Whether an HTTP response's status line says 2xx or 3xx.
pub fn status_passes(head: &[u8]) -> bool {
    let text = String::from_utf8_lossy(head);
    let mut parts = text.split_whitespace();
    let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
        return false;
    };
    version.starts_with("HTTP/") && code.parse::<u16>().is_ok_and(|c| (200..400).contains(&c))
}

/// The command run in the container exits 0 within the timeout.
fn exec_succeeds(target: &ProbeTarget, argv: &[String], timeout: Duration) -> bool {
    if argv.is_empty() {
        return false;
    }
    let mut command = shim::exec_command(
        target.shim_binary,
        target.state_root,
        target.container_id,
        argv,
        false,
    );
    command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let Ok(mut child) = command.spawn() else {
        return false;
    };
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_from_200_to_399_pass() {
        assert!(status_passes(b"HTTP/1.0 200 OK\r\n"));
        assert!(status_passes(b"HTTP/1.1 302 Found\r\n"));
        assert!(!status_passes(b"HTTP/1.1 404 Not Found\r\n"));
        assert!(!status_passes(b"HTTP/1.1 500 Oops\r\n"));
        assert!(!status_passes(b"garbage"));
        assert!(!status_passes(b""));
    }

    #[test]
    fn probe_timing_has_kubernetes_defaults() {
        let probe = Probe::default();
        let (delay, period, timeout, success, failure) = timing(&probe);
        assert_eq!(
            (
                delay.as_secs(),
                period.as_secs(),
                timeout.as_secs(),
                success,
                failure
            ),
            (0, 10, 1, 1, 3)
        );
    }
}
