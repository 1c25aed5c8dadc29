//! `rudder up` driven as a user runs it: started on free ports, ready when it says so,
//! stopped with Ctrl-C with every master it ran checked gone.

use std::net::TcpListener;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::rudder_binary_beside_tests;

/// A base port whose six ports (client and peer of three masters) are free right now. All six
/// stay below 32768, outside Linux's default ephemeral range, so the outgoing connections of
/// tests running beside this one (their clients, the masters' controller managers) cannot take
/// one between this check and `rudder up`'s bind (it did, once).
pub fn free_base_port() -> u16 {
    for attempt in 0..200u32 {
        let base = 10_000 + ((std::process::id() * 7 + attempt * 131) % 2_700) as u16;
        let ports = [0u16, 1, 10_000, 10_001, 20_000, 20_001].map(|offset| base + offset);
        if ports
            .iter()
            .all(|port| TcpListener::bind(("127.0.0.1", *port)).is_ok())
        {
            return base;
        }
    }
    panic!("no free base port found");
}

/// The flags of a `rudder up` whose data (`<dir>/data`, with the kubeconfig it writes) and
/// CLI config (`<dir>/config`) live in `dir`, on free ports (its API endpoint on any), and
/// then `extra`.
pub fn args(dir: &std::path::Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "--data-dir".into(),
        dir.join("data").display().to_string(),
        "--base-port".into(),
        free_base_port().to_string(),
        "--api-port".into(),
        "0".into(),
        "--config".into(),
        dir.join("config").display().to_string(),
    ];
    args.extend(extra.iter().map(|arg| arg.to_string()));
    args
}

/// A running `rudder up`: the process, its masters' pids, and what it says on stderr.
pub struct Up {
    child: Child,
    pub pids: Vec<i32>,
    /// The cluster's API endpoint, as `rudder up` printed it.
    pub api_endpoint: String,
    stderr: tokio::task::JoinHandle<String>,
}

/// Starts `rudder up` and waits for its "press Ctrl-C" line.
pub async fn up(args: &[String]) -> Up {
    let mut child = Command::new(rudder_binary_beside_tests())
        .arg("up")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("rudder up starts");
    let mut errors = BufReader::new(child.stderr.take().unwrap()).lines();
    let stderr = tokio::spawn(async move {
        let mut said = String::new();
        while let Ok(Some(line)) = errors.next_line().await {
            said.push_str(&line);
            said.push('\n');
        }
        said
    });
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut pids = Vec::new();
    let mut api_endpoint = String::new();
    let ready = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.split("(pid ").nth(1) {
                pids.push(rest.split(',').next().unwrap().parse::<i32>().unwrap());
            }
            if let Some(rest) = line.split("the cluster's endpoint at ").nth(1) {
                api_endpoint = rest.split_whitespace().next().unwrap().to_owned();
            }
            if line.starts_with("press Ctrl-C") {
                return;
            }
        }
        panic!("rudder up exited before it was ready");
    };
    tokio::time::timeout(Duration::from_secs(60), ready)
        .await
        .expect("rudder up is ready within 60 s");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Up {
        child,
        pids,
        api_endpoint,
        stderr,
    }
}

/// Stops `rudder up`; every master it runs now (`pids`, and any it restarted) must be gone.
pub async fn stop(up: Up) {
    let Up {
        mut child,
        pids,
        stderr,
        ..
    } = up;
    let pid = child.id().expect("running") as i32;
    kill(Pid::from_raw(pid), Signal::SIGINT).unwrap();
    let Ok(status) = tokio::time::timeout(Duration::from_secs(30), child.wait()).await else {
        child.kill().await.unwrap();
        let said = stderr.await.unwrap();
        // Killed, it stops none of its masters: this test does, the first ones and those it
        // restarted ("m2 restarted (pid N)").
        let restarted = said
            .split("restarted (pid ")
            .skip(1)
            .filter_map(|rest| rest.split(')').next()?.parse::<i32>().ok());
        for master in pids.iter().copied().chain(restarted) {
            let _ = kill(Pid::from_raw(master), Signal::SIGKILL);
        }
        panic!("rudder up did not stop within 30 s of SIGINT; it said:\n{said}");
    };
    let status = status.unwrap();
    assert!(status.success(), "rudder up exited with {status}");
    for master in &pids {
        // Signal 0 only checks for existence.
        assert!(
            kill(Pid::from_raw(*master), None).is_err(),
            "master pid {master} is still running after Ctrl-C"
        );
    }
    // Every master stopped on its own, none had to be killed.
    let said = stderr.await.unwrap();
    assert!(!said.contains("did not stop in time"), "{said}");
}

pub async fn cli(config: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(rudder_binary_beside_tests())
        .args(args)
        .env("RUDDER_CONFIG", config)
        .env_remove("RUDDER_SERVER")
        .output()
        .await
        .unwrap()
}
