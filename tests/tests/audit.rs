//! The audit log (`--audit-log-path`): each write through either front end — the CLI's
//! gRPC, kubectl's HTTP — is one Kubernetes audit Event naming the certificate's user and
//! group, the verb, the object and the code; reads only with `--audit-log-reads`; an exec
//! through the masters' gRPC Kubelet service as well.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rudder_tests::secure::{admin_flags, pki, rudder, start, Master};
use serde_json::Value;

fn audit_flags(dir: &Path, reads: bool) -> Vec<String> {
    let mut flags = vec![
        "--audit-log-path".to_string(),
        dir.join("audit.log").display().to_string(),
    ];
    if reads {
        flags.push("--audit-log-reads".into());
    }
    flags
}

/// Runs `rudder VERB <admin flags> REST...` against `master`; fails the test unless it
/// succeeds.
fn as_admin(dir: &Path, master: &Master, verb: &str, rest: &[&str]) {
    let flags = admin_flags(dir, &master.client);
    let mut args = vec![verb];
    args.extend(flags.iter().map(String::as_str));
    args.extend(rest);
    let done = rudder(dir, &args);
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
}

/// The records in `dir/audit.log` once one matches `last`, within 10 s.
fn records_until(dir: &Path, last: impl Fn(&Value) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(dir.join("audit.log")).unwrap_or_default();
        // Whole lines only: the writer may be half-way through the last one.
        let whole = &text[..text.rfind('\n').map_or(0, |end| end + 1)];
        let records: Vec<Value> = whole
            .lines()
            .map(|line| serde_json::from_str(line).expect("each line is JSON"))
            .collect();
        if records.iter().any(&last) {
            return records;
        }
        assert!(Instant::now() < deadline, "no such record in: {text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn about(record: &Value, verb: &str, name: &str) -> bool {
    record["verb"] == verb && record["objectRef"]["name"] == name
}

#[test]
fn writes_are_recorded_with_who_made_them_and_reads_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    pki(d);
    let master = start(d, "m1", None, &audit_flags(d, false));
    as_admin(d, &master, "create", &["namespace", "audited"]);
    as_admin(d, &master, "get", &["namespace", "audited"]);
    // Deleted over HTTP by kubectl where there is one, else over gRPC.
    let flags = admin_flags(d, &master.client);
    let mut args = vec!["config", "kubeconfig"];
    args.extend(flags.iter().map(String::as_str));
    let kubeconfig = rudder(d, &args);
    let by_kubectl = Path::new("/usr/bin/kubectl").exists() && kubeconfig.status.success();
    if by_kubectl {
        std::fs::write(d.join("kubeconfig"), &kubeconfig.stdout).unwrap();
        let deleted = Command::new("/usr/bin/kubectl")
            .env("KUBECONFIG", d.join("kubeconfig"))
            .arg(format!("--cache-dir={}", d.join("kube-cache").display()))
            .args(["delete", "namespace", "audited", "--wait=false"])
            .output()
            .unwrap();
        assert!(
            deleted.status.success(),
            "{}",
            String::from_utf8_lossy(&deleted.stderr)
        );
    } else {
        as_admin(d, &master, "delete", &["namespace", "audited"]);
    }

    let records = records_until(d, |r| about(r, "delete", "audited"));
    let created = records
        .iter()
        .find(|r| about(r, "create", "audited"))
        .expect("the create is recorded");
    assert_eq!(created["apiVersion"], "audit.k8s.io/v1");
    assert_eq!(created["user"]["username"], "admin");
    assert_eq!(
        created["user"]["groups"],
        serde_json::json!(["system:masters", "system:authenticated"])
    );
    assert_eq!(created["objectRef"]["resource"], "namespaces");
    assert_eq!(created["responseStatus"]["code"], 201);
    let deleted = records
        .iter()
        .find(|r| about(r, "delete", "audited"))
        .unwrap();
    assert_eq!(deleted["responseStatus"]["code"], 200);
    if by_kubectl {
        assert_eq!(
            deleted["requestURI"], "/api/v1/namespaces/audited",
            "{deleted}"
        );
    }
    assert!(
        !records.iter().any(|r| r["verb"] == "get"),
        "reads are not recorded by default: {records:?}"
    );
    // An exec through the gRPC Kubelet service is recorded too, with its answer (no such
    // pod here), as HTTP's are.
    let flags = admin_flags(d, &master.client);
    let mut exec = vec!["exec"];
    exec.extend(flags.iter().map(String::as_str));
    exec.extend(["nosuch", "--", "true"]);
    assert!(!rudder(d, &exec).status.success());
    let records = records_until(d, |r| about(r, "create", "nosuch"));
    let exec = records
        .iter()
        .find(|r| about(r, "create", "nosuch"))
        .unwrap();
    assert_eq!(exec["objectRef"]["subresource"], "exec", "{exec}");
    assert_eq!(exec["requestURI"], "/rudder.node.Kubelet/Exec", "{exec}");
    assert_eq!(exec["responseStatus"]["code"], 404, "{exec}");
    drop(master);

    // With --audit-log-reads, a get is recorded too.
    let reads = tempfile::tempdir().unwrap();
    let r = reads.path();
    pki(r);
    let master = start(r, "m1", None, &audit_flags(r, true));
    as_admin(r, &master, "get", &["namespace", "default"]);
    let records = records_until(r, |record| about(record, "get", "default"));
    assert!(records.iter().any(|record| about(record, "get", "default")));
    drop(master);
}
