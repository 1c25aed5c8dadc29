//! A secured cluster as an operator makes one: a PKI directory (`rudder ca init`), an admin
//! certificate (`rudder ca issue`), masters started with `--pki`, and the verbs with the
//! admin's certificate.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rudder_proto::tls::{ClientTls, Issued};

use crate::{lines_of, rudder_binary_beside_tests};

pub struct Master {
    child: Child,
    /// Its client address (host:port).
    pub client: String,
    /// Its peer address.
    pub peer: String,
}

impl Drop for Master {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Master `name` with the PKI directory `dir/pki`, bootstrapping alone or joining `join`
/// (a peer address), with `extra` flags; its log is `dir/<name>.log`.
pub fn start(dir: &Path, name: &str, join: Option<&str>, extra: &[String]) -> Master {
    let mut flags = vec!["--pki".to_string(), dir.join("pki").display().to_string()];
    match join {
        Some(peer) => flags.extend(["--join".to_string(), peer.to_string()]),
        None => flags.extend([
            "--initial-cluster".to_string(),
            format!("{name}=127.0.0.1:0"),
        ]),
    };
    flags.extend(extra.iter().cloned());
    start_with(dir, name, &flags).unwrap_or_else(|log| panic!("{name} did not start: {log}"))
}

/// Master `name` in `dir/<name>` with `flags` only (on loopback port 0 unless they say
/// where it listens); its log is
/// `dir/<name>.log`, which is the error when it ends before it is ready.
pub fn start_with(dir: &Path, name: &str, flags: &[String]) -> Result<Master, String> {
    let log = dir.join(format!("{name}.log"));
    let mut command = Command::new(rudder_binary_beside_tests());
    command
        .args(["server", "--name", name, "--data-dir"])
        .arg(dir.join(name));
    for (flag, port_zero) in [
        ("--listen-client", "127.0.0.1:0"),
        ("--listen-peer", "127.0.0.1:0"),
    ] {
        if !flags.iter().any(|given| given == flag) {
            command.args([flag, port_zero]);
        }
    }
    let mut child = command
        .args(flags)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("rudder server starts");
    // The first line of a started master, or none when it ends (its output closes).
    let first = lines_of(child.stdout.take().unwrap()).recv_timeout(Duration::from_secs(30));
    let ready = first.ok().filter(|line| line.contains(" ready: "));
    let Some(ready) = ready else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(std::fs::read_to_string(&log).unwrap_or_default());
    };
    // "rudder server NAME ready: client ADDR peer ADDR id HEX"
    let words: Vec<&str> = ready.split_whitespace().collect();
    Ok(Master {
        client: words[5].to_string(),
        peer: words[7].to_string(),
        child,
    })
}

/// A join token for `role` (`rudder token create`) made with `flags`' credentials; tried
/// again while the master has not made `kube-system`, where tokens are kept.
pub fn join_token(dir: &Path, flags: &[String], role: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let made = run(dir, flags, &["token", "create", "--role", role]);
        match succeeded(&made) {
            Ok(token) => return token.trim().to_string(),
            Err(said) if said.contains("not found") && std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(said) => panic!("rudder token create --role {role}: {said}"),
        }
    }
}

/// A PKI directory in `dir/pki` and an admin certificate in `dir/admin.crt|key`.
pub fn pki(dir: &Path) {
    let made = rudder(dir, &["ca", "init", dir.join("pki").to_str().unwrap()]);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    issue(dir, "admin", Some("system:masters"), "admin");
}

/// `rudder ca issue` of a certificate for `user` (in `group`) from `dir/pki`, written as
/// `dir/<stem>.crt` and `.key` (a node's, for `system:node:NAME` in `system:nodes`).
pub fn issue(dir: &Path, user: &str, group: Option<&str>, stem: &str) -> (PathBuf, PathBuf) {
    let pki = dir.join("pki");
    let (cert, key) = (
        dir.join(format!("{stem}.crt")),
        dir.join(format!("{stem}.key")),
    );
    let mut args = vec!["ca", "issue", pki.to_str().unwrap(), user];
    if let Some(group) = group {
        args.extend(["--group", group]);
    }
    args.extend([
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ]);
    let issued = rudder(dir, &args);
    assert!(
        issued.status.success(),
        "{}",
        String::from_utf8_lossy(&issued.stderr)
    );
    (cert, key)
}

/// The TLS a client of the cluster in `dir` has with the certificate `dir/<stem>.crt`.
pub fn client_tls(dir: &Path, stem: &str) -> ClientTls {
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    ClientTls {
        ca_pem: read("pki/ca.crt"),
        identity: Some(Issued {
            cert_pem: read(&format!("{stem}.crt")),
            key_pem: read(&format!("{stem}.key")),
            // A client's own certificate: the server judges it.
            not_after: std::time::SystemTime::UNIX_EPOCH,
        }),
    }
}

/// `rudder ARGS` with no CLI config and no RUDDER_SERVER (only what the flags say).
pub fn rudder(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(rudder_binary_beside_tests())
        .args(args)
        .env("RUDDER_CONFIG", dir.join("no-config"))
        .env_remove("RUDDER_SERVER")
        .output()
        .unwrap()
}

/// The flags that make a verb talk to `server` as the admin [`pki`] made.
pub fn admin_flags<'a>(dir: &'a Path, server: &'a str) -> Vec<String> {
    let file = |name: &str| dir.join(name).display().to_string();
    vec![
        "--server".into(),
        server.into(),
        "--certificate-authority".into(),
        file("pki/ca.crt"),
        "--client-certificate".into(),
        file("admin.crt"),
        "--client-key".into(),
        file("admin.key"),
    ]
}

/// Standard output or error as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `rudder VERB... FLAGS...` ([`rudder`]: only what the flags say).
pub fn run(dir: &Path, flags: &[String], verb: &[&str]) -> std::process::Output {
    let mut args: Vec<&str> = verb.to_vec();
    args.extend(flags.iter().map(String::as_str));
    rudder(dir, &args)
}

/// Applies `manifest` (written as `dir/<name>.yaml`) with `flags`' credentials.
pub fn apply_as(dir: &Path, flags: &[String], name: &str, manifest: &str) -> std::process::Output {
    let file = dir.join(format!("{name}.yaml"));
    std::fs::write(&file, manifest).unwrap();
    run(dir, flags, &["apply", "-f", file.to_str().unwrap()])
}

/// Its standard output if the command succeeded, else what it said.
pub fn succeeded(output: &std::process::Output) -> Result<String, String> {
    if output.status.success() {
        Ok(text(&output.stdout))
    } else {
        Err(format!("{}{}", text(&output.stdout), text(&output.stderr)))
    }
}

/// The real kubectl.
pub const KUBECTL: &str = "/usr/bin/kubectl";

/// The real kubectl with `kubeconfig` (its cache beside it).
pub fn kubectl(kubeconfig: &Path, args: &[&str]) -> std::process::Output {
    let cache = kubeconfig.with_extension("cache");
    Command::new(KUBECTL)
        .env("KUBECONFIG", kubeconfig)
        .arg(format!("--cache-dir={}", cache.display()))
        .arg("--request-timeout=20s")
        .args(args)
        .output()
        .unwrap()
}

/// The kubeconfig `rudder config kubeconfig` writes for `flags`' credentials, as
/// `dir/<name>.kubeconfig`.
pub fn kubeconfig(dir: &Path, flags: &[String], name: &str) -> PathBuf {
    let written = run(dir, flags, &["config", "kubeconfig"]);
    assert!(written.status.success(), "{}", text(&written.stderr));
    let path = dir.join(format!("{name}.kubeconfig"));
    std::fs::write(&path, &written.stdout).unwrap();
    path
}
