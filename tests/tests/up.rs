//! `rudder up`: three master processes on loopback, a CLI config that the verbs pick up,
//! Ctrl-C stops every process it started, and running it again resumes the same cluster; a
//! master killed with SIGKILL is restarted while the others keep serving.

use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rudder_tests::rudder_binary_beside_tests;
use rudder_tests::up::{cli, free_base_port, stop, up};
use tokio::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_writes_the_cli_config_stops_everything_on_ctrl_c_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    let args = rudder_tests::up::args(dir.path(), &["--hollow-nodes", "2", "--nodes", "0"]);
    let running = up(&args).await;
    assert_eq!(
        running.pids.len(),
        4,
        "three masters and the hollow nodes' process"
    );
    let created = cli(&config, &["create", "namespace", "kept"]).await;
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    // The hollow nodes register.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let nodes = cli(&config, &["get", "nodes", "-o", "name"]).await;
        if String::from_utf8_lossy(&nodes.stdout).lines().count() == 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the hollow nodes never registered"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop(running).await;

    let running = up(&args).await;
    let listed = cli(&config, &["get", "ns", "kept", "-o", "name"]).await;
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout).trim(),
        "namespace/kept"
    );
    stop(running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_killed_with_sigkill_is_restarted_while_the_others_serve() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    let base = free_base_port();
    let args: Vec<String> = vec![
        "--data-dir".into(),
        dir.path().join("data").display().to_string(),
        "--base-port".into(),
        base.to_string(),
        "--api-port".into(),
        "0".into(),
        "--config".into(),
        config.display().to_string(),
        "--nodes".into(),
        "0".into(),
    ];
    let mut running = up(&args).await;
    assert_eq!(running.pids.len(), 3, "three masters");
    kill(Pid::from_raw(running.pids[1]), Signal::SIGKILL).unwrap();
    let killed = tokio::time::Instant::now();

    // The CLI goes on through the other two.
    let created = cli(&config, &["create", "namespace", "during"]).await;
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    // m2 serves again on its own address within 10 s.
    let m2 = format!("127.0.0.1:{}", base + 10_000);
    loop {
        // Only m2, with the credentials of the CLI config `rudder up` wrote.
        let read = Command::new(rudder_binary_beside_tests())
            .args(["get", "ns", "during", "-o", "name", "--server", &m2])
            .env("RUDDER_CONFIG", &config)
            .env_remove("RUDDER_SERVER")
            .output()
            .await
            .unwrap();
        if String::from_utf8_lossy(&read.stdout).trim() == "namespace/during" {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "m2 was not back within 10 s: {}",
            String::from_utf8_lossy(&read.stderr)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let restarted = pid_listening_on(base + 10_000).expect("m2 runs again");
    assert_ne!(restarted, running.pids[1]);
    running.pids[1] = restarted;
    stop(running).await;
}

/// The pid of the `rudder server` whose command line names `--listen-client 127.0.0.1:PORT`.
fn pid_listening_on(port: u16) -> Option<i32> {
    let wanted = format!("127.0.0.1:{port}");
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            let names_it = args
                .windows(2)
                .any(|w| w[0] == b"--listen-client" && w[1] == wanted.as_bytes());
            names_it.then_some(pid)
        })
}
