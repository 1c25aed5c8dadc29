//! The audit log: who did what, one JSON line per request, as Kubernetes' `audit.k8s.io/v1`
//! Events at the Metadata level (stage ResponseComplete: the user, the verb, the object,
//! the answer's code; never a body). Writes are always recorded, reads when asked
//! (`--audit-log-reads`). [`event`] is pure; [`AuditLog`] appends the lines to a file,
//! readable by its owner only, from a task of its own.

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rudder_proto::tls::Caller;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::object;

/// How many records may wait for the writer before requests wait for it.
const QUEUED: usize = 4096;

/// What one request was, for its record.
#[derive(Debug, Clone)]
pub struct Audited<'a> {
    /// The Kubernetes verb (`create`, `get`, `list`, `watch`, `update`, `patch`, `delete`).
    pub verb: &'a str,
    pub resource: &'a str,
    pub subresource: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
    /// Who asked, as the connection said (`None`: a caller the front door did not name).
    pub caller: Option<&'a Caller>,
    /// The HTTP path and query, or the gRPC method.
    pub uri: &'a str,
    pub code: u16,
    pub received: jiff::Timestamp,
}

/// Whether `verb` changes anything (recorded always).
pub fn is_write(verb: &str) -> bool {
    matches!(
        verb,
        "create" | "update" | "patch" | "delete" | "deletecollection"
    )
}

/// The record of `request`, answered at `now`, under `id`.
pub fn event(request: &Audited<'_>, id: &str, now: jiff::Timestamp) -> Value {
    let (username, groups) = match request.caller {
        Some(Caller::Authenticated(subject)) => (subject.user.clone(), subject.groups.clone()),
        // A plaintext master trusts every caller on loopback, unnamed.
        Some(Caller::Plaintext) => ("system:unsecured".to_string(), Vec::new()),
        Some(Caller::Anonymous) | None => ("system:anonymous".to_string(), Vec::new()),
    };
    let mut object_ref = json!({ "resource": request.resource });
    for (field, value) in [
        ("namespace", request.namespace),
        ("name", request.name),
        ("subresource", request.subresource),
    ] {
        if !value.is_empty() {
            object_ref[field] = json!(value);
        }
    }
    json!({
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Metadata",
        "auditID": id,
        "stage": "ResponseComplete",
        "requestURI": request.uri,
        "verb": request.verb,
        "user": { "username": username, "groups": groups },
        "objectRef": object_ref,
        "responseStatus": { "metadata": {}, "code": request.code },
        "requestReceivedTimestamp": precise(request.received),
        "stageTimestamp": precise(now),
    })
}

/// Audit timestamps carry microseconds (as Kubernetes' do), unlike objects'.
fn precise(at: jiff::Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// The log a master appends its records to. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AuditLog {
    lines: mpsc::Sender<String>,
    reads: bool,
}

impl AuditLog {
    /// Appends to `path` (made readable by its owner only), reads too when `reads`. The
    /// writer lives as long as a clone of the log does.
    pub fn open(path: &Path, reads: bool) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)?;
        let (lines, mut pending) = mpsc::channel::<String>(QUEUED);
        let shown = path.display().to_string();
        tokio::spawn(async move {
            let mut file = tokio::io::BufWriter::new(tokio::fs::File::from_std(file));
            while let Some(line) = pending.recv().await {
                let mut written = file.write_all(line.as_bytes()).await;
                // Everything queued goes in one write; the file is flushed when none waits.
                while let (Ok(()), Ok(more)) = (&written, pending.try_recv()) {
                    written = file.write_all(more.as_bytes()).await;
                }
                if let Err(error) = written.and(file.flush().await) {
                    tracing::error!(%error, path = %shown, "writing the audit log failed");
                }
            }
        });
        Ok(Self { lines, reads })
    }

    /// Records `request` if the log keeps its kind (writes always, reads when asked).
    pub async fn record(&self, request: &Audited<'_>) {
        if !self.reads && !is_write(request.verb) {
            return;
        }
        let id = uuid::Uuid::new_v4().to_string();
        let mut line = event(request, &id, jiff::Timestamp::now()).to_string();
        line.push('\n');
        // Waits when the writer is behind: a record is never dropped.
        let _ = self.lines.send(line).await;
    }
}

/// The name an object's body gives (creates name their object in the body, not the path).
pub fn name_in(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .map(|object| object::name(&object).to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rudder_proto::tls::Subject;

    fn request<'a>(verb: &'a str, caller: Option<&'a Caller>) -> Audited<'a> {
        Audited {
            verb,
            resource: "pods",
            subresource: "",
            namespace: "default",
            name: "web",
            caller,
            uri: "/api/v1/namespaces/default/pods/web",
            code: 200,
            received: "2026-12-06T07:00:00.5Z".parse().unwrap(),
        }
    }

    #[test]
    fn a_record_names_the_user_the_verb_the_object_and_the_code() {
        let alice = Caller::Authenticated(Subject {
            user: "alice".into(),
            groups: vec!["developers".into()],
        });
        let now = "2026-12-06T07:00:01Z".parse().unwrap();
        let record = event(&request("delete", Some(&alice)), "id-1", now);
        assert_eq!(record["apiVersion"], "audit.k8s.io/v1");
        assert_eq!(record["user"]["username"], "alice");
        assert_eq!(record["user"]["groups"], json!(["developers"]));
        assert_eq!(
            record["objectRef"],
            json!({ "resource": "pods", "namespace": "default", "name": "web" })
        );
        assert_eq!(record["responseStatus"]["code"], 200);
        assert_eq!(
            record["requestReceivedTimestamp"],
            "2026-12-06T07:00:00.500000Z"
        );
        assert_eq!(record["stageTimestamp"], "2026-12-06T07:00:01.000000Z");
        let unnamed = event(&request("get", Some(&Caller::Plaintext)), "id-2", now);
        assert_eq!(unnamed["user"]["username"], "system:unsecured");
    }

    #[test]
    fn writes_are_told_from_reads() {
        for verb in ["create", "update", "patch", "delete", "deletecollection"] {
            assert!(is_write(verb), "{verb}");
        }
        for verb in ["get", "list", "watch"] {
            assert!(!is_write(verb), "{verb}");
        }
        assert_eq!(name_in(br#"{"metadata":{"name":"db"}}"#), "db");
        assert_eq!(name_in(b"not json"), "");
    }

    #[tokio::test]
    async fn records_reach_the_file_in_order_and_reads_only_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(&path, false).unwrap();
        log.record(&request("get", None)).await;
        log.record(&request("create", None)).await;
        log.record(&request("delete", None)).await;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        let lines = loop {
            let text = std::fs::read_to_string(&path).unwrap();
            if text.lines().count() >= 2 || tokio::time::Instant::now() > deadline {
                break text;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        };
        let verbs: Vec<String> = lines
            .lines()
            .map(|line| serde_json::from_str::<Value>(line).unwrap()["verb"].to_string())
            .collect();
        assert_eq!(verbs, ["\"create\"", "\"delete\""]);
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }
}
