//! The audit log: who did what, one JSON line per request, as Kubernetes' `audit.k8s.io/v1`
//! Events at the Metadata level (stage ResponseComplete: the user, the verb, the object,
//! the answer's code; never a body). Writes are always recorded, reads when asked
//! (`--audit-log-reads`). [`event`] is pure; [`AuditLog`] appends the lines to a file,
//! readable by its owner only, from a task of its own.

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rudder_proto::authn::Caller;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};

use crate::kinds;

/// How many records may wait for the writer before requests wait for it.
const QUEUED: usize = 4096;

/// Subresources recorded even when reads are not: a shell in a container, a port opened
/// into a pod.
const ALWAYS_RECORDED: [&str; 3] = ["exec", "attach", "portforward"];

/// What one request was, for its record.
#[derive(Debug, Clone)]
pub struct Audited<'a> {
    /// The Kubernetes verb (`create`, `get`, `list`, `watch`, `update`, `patch`, `delete`).
    pub verb: &'a str,
    pub resource: &'a str,
    pub subresource: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
    /// Who asked, as the front door said (`None`: a caller it did not name).
    pub caller: Option<&'a Caller>,
    /// The HTTP path and query, or the gRPC method.
    pub uri: &'a str,
    /// The answer's code; `None`: the client went away first (the request may still have
    /// been applied).
    pub code: Option<u16>,
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
    let user = match request.caller {
        Some(Caller::Authenticated(subject)) => {
            let mut groups = subject.groups.clone();
            groups.push("system:authenticated".into());
            let mut user = json!({ "username": subject.user, "groups": groups });
            if !subject.uid.is_empty() {
                user["uid"] = json!(subject.uid);
            }
            user
        }
        // A plaintext master trusts every caller on loopback, unnamed.
        Some(Caller::Plaintext) => json!({ "username": "system:unsecured", "groups": [] }),
        Some(Caller::Anonymous) | None => json!({
            "username": "system:anonymous", "groups": ["system:unauthenticated"],
        }),
    };
    let mut object_ref = json!({ "resource": request.resource });
    if let Some(info) = kinds::KINDS.iter().find(|k| k.resource == request.resource) {
        object_ref["apiGroup"] = json!(info.group);
        object_ref["apiVersion"] = json!(info.version);
    }
    for (field, value) in [
        ("namespace", request.namespace),
        ("name", request.name),
        ("subresource", request.subresource),
    ] {
        if !value.is_empty() {
            object_ref[field] = json!(value);
        }
    }
    let mut record = json!({
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Metadata",
        "auditID": id,
        "stage": "ResponseComplete",
        "requestURI": request.uri,
        "verb": request.verb,
        "user": user,
        "objectRef": object_ref,
        "requestReceivedTimestamp": precise(request.received),
        "stageTimestamp": precise(now),
    });
    match request.code {
        Some(code) => record["responseStatus"] = json!({ "metadata": {}, "code": code }),
        None => {
            record["annotations"] = json!({
                "rudder.io/outcome": "the client went away before the answer; the request \
                                      may or may not have been applied",
            });
        }
    }
    record
}

/// Audit timestamps carry microseconds (as Kubernetes' do), unlike objects'.
fn precise(at: jiff::Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

enum Message {
    Line(String),
    /// Answered once everything before it is in the file.
    Flush(oneshot::Sender<()>),
}

/// The log a master appends its records to. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AuditLog {
    lines: mpsc::Sender<Message>,
    reads: bool,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Message")
    }
}

impl AuditLog {
    /// Appends to `path` (made readable by its owner only), reads too when `reads`. The
    /// writer lives as long as a clone of the log does; [`AuditLog::flush`] before exit.
    pub fn open(path: &Path, reads: bool) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)?;
        let (lines, pending) = mpsc::channel(QUEUED);
        tokio::spawn(write(file, pending, path.display().to_string()));
        Ok(Self { lines, reads })
    }

    /// Whether requests of `verb` on `subresource` are recorded.
    pub fn keeps(&self, verb: &str, subresource: &str) -> bool {
        self.reads || is_write(verb) || ALWAYS_RECORDED.contains(&subresource)
    }

    /// Records `request` if the log keeps its kind. Never waits: a record the full queue
    /// cannot take goes in as soon as it can (never dropped).
    pub fn record(&self, request: &Audited<'_>) {
        if !self.keeps(request.verb, request.subresource) {
            return;
        }
        let id = uuid::Uuid::new_v4().to_string();
        let mut line = event(request, &id, jiff::Timestamp::now()).to_string();
        line.push('\n');
        if let Err(mpsc::error::TrySendError::Full(message)) =
            self.lines.try_send(Message::Line(line))
        {
            let lines = self.lines.clone();
            tokio::spawn(async move {
                let _ = lines.send(message).await;
            });
        }
    }

    /// Waits until every record made so far is in the file.
    pub async fn flush(&self) {
        let (done, flushed) = oneshot::channel();
        if self.lines.send(Message::Flush(done)).await.is_ok() {
            let _ = flushed.await;
        }
    }

    /// A record of `request` made when it is answered ([`Pending::answered`]), or, if it is
    /// abandoned first (the client went away; a write may still apply), when dropped.
    pub fn pending(&self, request: &Audited<'_>) -> Option<Pending> {
        self.keeps(request.verb, request.subresource)
            .then(|| Pending {
                log: self.clone(),
                verb: request.verb.to_string(),
                resource: request.resource.to_string(),
                subresource: request.subresource.to_string(),
                namespace: request.namespace.to_string(),
                name: request.name.to_string(),
                caller: request.caller.cloned(),
                uri: request.uri.to_string(),
                received: request.received,
                recorded: false,
            })
    }
}

/// The writer: lines in order; everything queued goes in one write, flushed when none waits.
async fn write(file: std::fs::File, mut pending: mpsc::Receiver<Message>, shown: String) {
    let mut file = tokio::io::BufWriter::new(tokio::fs::File::from_std(file));
    while let Some(first) = pending.recv().await {
        let mut next = Some(first);
        let mut acknowledged = Vec::new();
        let mut written = Ok(());
        while let Some(message) = next.take() {
            match message {
                Message::Line(line) => {
                    if written.is_ok() {
                        written = file.write_all(line.as_bytes()).await;
                    }
                }
                Message::Flush(done) => acknowledged.push(done),
            }
            next = pending.try_recv().ok();
        }
        if let Err(error) = written.and(file.flush().await) {
            tracing::error!(%error, path = %shown, "writing the audit log failed");
        }
        for done in acknowledged {
            let _ = done.send(());
        }
    }
}

/// A request's record, made once (see [`AuditLog::pending`]).
pub struct Pending {
    log: AuditLog,
    verb: String,
    resource: String,
    subresource: String,
    namespace: String,
    name: String,
    caller: Option<Caller>,
    uri: String,
    received: jiff::Timestamp,
    recorded: bool,
}

impl Pending {
    pub fn answered(mut self, code: u16) {
        self.record(Some(code));
    }

    fn record(&mut self, code: Option<u16>) {
        if std::mem::replace(&mut self.recorded, true) {
            return;
        }
        self.log.record(&Audited {
            verb: &self.verb,
            resource: &self.resource,
            subresource: &self.subresource,
            namespace: &self.namespace,
            name: &self.name,
            caller: self.caller.as_ref(),
            uri: &self.uri,
            code,
            received: self.received,
        });
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.record(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rudder_proto::authn::Subject;

    fn request<'a>(verb: &'a str, caller: Option<&'a Caller>) -> Audited<'a> {
        Audited {
            verb,
            resource: "pods",
            subresource: "",
            namespace: "default",
            name: "web",
            caller,
            uri: "/api/v1/namespaces/default/pods/web",
            code: Some(200),
            received: "2026-12-06T07:00:00.5Z".parse().unwrap(),
        }
    }

    #[test]
    fn a_record_names_the_user_the_verb_the_object_and_the_code() {
        let alice = Caller::Authenticated(Subject {
            user: "alice".into(),
            uid: "1001".into(),
            groups: vec!["developers".into()],
            ..Subject::default()
        });
        let now = "2026-12-06T07:00:01Z".parse().unwrap();
        let record = event(&request("delete", Some(&alice)), "id-1", now);
        assert_eq!(record["apiVersion"], "audit.k8s.io/v1");
        assert_eq!(record["user"]["username"], "alice");
        assert_eq!(record["user"]["uid"], "1001");
        assert_eq!(
            record["user"]["groups"],
            json!(["developers", "system:authenticated"])
        );
        assert_eq!(
            record["objectRef"],
            json!({ "resource": "pods", "namespace": "default", "name": "web",
                    "apiGroup": "", "apiVersion": "v1" })
        );
        assert_eq!(record["responseStatus"]["code"], 200);
        assert_eq!(
            record["requestReceivedTimestamp"],
            "2026-12-06T07:00:00.500000Z"
        );
        assert_eq!(record["stageTimestamp"], "2026-12-06T07:00:01.000000Z");
        let unnamed = event(&request("get", Some(&Caller::Plaintext)), "id-2", now);
        assert_eq!(unnamed["user"]["username"], "system:unsecured");
        let mut abandoned = request("create", Some(&alice));
        abandoned.code = None;
        let record = event(&abandoned, "id-3", now);
        assert!(record.get("responseStatus").is_none());
        assert!(record["annotations"]["rudder.io/outcome"]
            .as_str()
            .unwrap()
            .contains("may or may not have been applied"));
    }

    #[test]
    fn writes_are_told_from_reads() {
        for verb in ["create", "update", "patch", "delete", "deletecollection"] {
            assert!(is_write(verb), "{verb}");
        }
        for verb in ["get", "list", "watch"] {
            assert!(!is_write(verb), "{verb}");
        }
    }

    #[tokio::test]
    async fn records_reach_the_file_in_order_and_reads_only_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(&path, false).unwrap();
        log.record(&request("get", None));
        log.record(&request("create", None));
        let mut exec = request("get", None);
        exec.subresource = "exec";
        log.record(&exec);
        // A request abandoned before its answer is recorded when dropped.
        drop(log.pending(&request("delete", None)));
        log.pending(&request("patch", None)).unwrap().answered(200);
        log.flush().await;
        let text = std::fs::read_to_string(&path).unwrap();
        let records: Vec<Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        let verbs: Vec<&str> = records
            .iter()
            .map(|r| r["verb"].as_str().unwrap())
            .collect();
        assert_eq!(verbs, ["create", "get", "delete", "patch"]);
        assert_eq!(records[1]["objectRef"]["subresource"], "exec");
        assert!(records[2].get("responseStatus").is_none());
        assert_eq!(records[3]["responseStatus"]["code"], 200);
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }
}
