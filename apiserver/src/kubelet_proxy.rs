//! The `Kubelet` gRPC service on every master: each call goes on to the pod's node, as
//! kube-apiserver proxies logs and exec, so a client reaches pods through the masters alone
//! (`rudder logs`, `rudder exec`, `rudder attach`), and what guards the masters' port guards these too: each
//! call is authorized and audited as the HTTP API's are. The node's stream is handed back
//! as it comes; a client that hangs up ends it on the node.

use futures::StreamExt;
use rudder_proto::authn::Caller;
use rudder_proto::node::kubelet_server::Kubelet;
use rudder_proto::node::{
    Chunk, ExecInput, ExecOutput, LogsRequest, PortForwardInput, PortForwardOutput, StatsRequest,
    StatsResponse,
};
use tonic::{Request, Response, Status, Streaming};

use crate::audit::{AuditLog, Audited};
use crate::authz::rbac::{Action, ResourceAction};
use crate::authz::Authorizer;
use crate::pod_node::{from_node, node_client, pod_node, whole_pod_node, PodNode};
use crate::registry::Registry;
use crate::request_metrics::http_code_of;

/// How long a node may take to answer for its stats.
const STATS_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);

pub struct KubeletProxy {
    registry: Registry,
    authorizer: Authorizer,
    /// Where calls are recorded (exec and port-forward always, logs and stats with reads).
    audit: Option<AuditLog>,
}

/// What a call asks of which object: `create pods/exec` of `ns/name`, `get nodes/stats`.
struct Asked<'a> {
    verb: &'a str,
    resource: &'a str,
    subresource: &'a str,
    namespace: &'a str,
    name: &'a str,
    /// The gRPC method (`/rudder.node.Kubelet/Exec`), for the audit record.
    method: &'a str,
}

impl KubeletProxy {
    pub fn new(registry: Registry, authorizer: Authorizer, audit: Option<AuditLog>) -> Self {
        KubeletProxy {
            registry,
            authorizer,
            audit,
        }
    }

    /// Answers with `answer` if `caller` may do what `asked` says (as kube-apiserver
    /// authorizes `pods/log`, `pods/exec`, `pods/portforward` and `nodes/stats`), recorded
    /// in the audit log as the HTTP API's are.
    async fn proxied<T>(
        &self,
        caller: Option<Caller>,
        asked: Asked<'_>,
        answer: impl std::future::Future<Output = Result<T, Status>>,
    ) -> Result<T, Status> {
        let recording = self.audit.as_ref().and_then(|log| {
            log.pending(&Audited {
                verb: asked.verb,
                resource: asked.resource,
                subresource: asked.subresource,
                namespace: asked.namespace,
                name: asked.name,
                caller: caller.as_ref(),
                uri: asked.method,
                code: None,
                received: jiff::Timestamp::now(),
            })
        });
        let action = Action::Resource(ResourceAction {
            verb: asked.verb.into(),
            group: String::new(),
            resource: asked.resource.into(),
            subresource: asked.subresource.into(),
            namespace: asked.namespace.into(),
            name: asked.name.into(),
        });
        let answer = match self.authorizer.authorize(caller.as_ref(), &action).await {
            Ok(()) => answer.await,
            Err(denied) => Err(denied.into()),
        };
        if let Some(recording) = recording {
            recording.answered(match &answer {
                Ok(_) => 200,
                Err(status) => http_code_of(status),
            });
        }
        answer
    }
}

/// The two calls that take a container's stdin and give its output.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ExecOrAttach {
    Exec,
    Attach,
}

impl KubeletProxy {
    /// An exec or an attach, authorized as `create pods/exec` or `pods/attach`: the
    /// container checked, then the request and the client's inputs after it (its stdin and
    /// terminal sizes) go on to the pod's node.
    async fn exec_or_attach(
        &self,
        request: Request<Streaming<ExecInput>>,
        call: ExecOrAttach,
    ) -> Result<Response<Streaming<ExecOutput>>, Status> {
        let (subresource, method, what) = match call {
            ExecOrAttach::Exec => (
                "exec",
                "/rudder.node.Kubelet/Exec",
                "an exec starts with its request (the command and where to run it)",
            ),
            ExecOrAttach::Attach => (
                "attach",
                "/rudder.node.Kubelet/Attach",
                "an attach starts with its request (the pod and the container)",
            ),
        };
        let caller = request.extensions().get::<Caller>().cloned();
        let mut inputs = request.into_inner();
        let Some(mut start) = inputs.message().await?.and_then(ExecInput::into_start) else {
            return Err(Status::invalid_argument(what));
        };
        let (namespace, pod) = (start.namespace.clone(), start.pod.clone());
        let asked = Asked {
            verb: "create",
            resource: "pods",
            subresource,
            namespace: &namespace,
            name: &pod,
            method,
        };
        self.proxied(caller, asked, async {
            let PodNode {
                mut client,
                container,
                node,
            } = pod_node(
                &self.registry,
                &start.namespace,
                &start.pod,
                &start.container,
            )
            .await?;
            start.container = container;
            let rest = tokio_stream::StreamExt::map_while(inputs, Result::ok);
            let outbound = futures::stream::once(async { ExecInput::start(start) }).chain(rest);
            let answer = match call {
                ExecOrAttach::Exec => client.exec(outbound).await,
                ExecOrAttach::Attach => client.attach(outbound).await,
            };
            answer.map_err(|status| from_node(&node, status).into())
        })
        .await
    }
}

#[tonic::async_trait]
impl Kubelet for KubeletProxy {
    type LogsStream = Streaming<Chunk>;
    type ExecStream = Streaming<ExecOutput>;
    type AttachStream = Streaming<ExecOutput>;
    type PortForwardStream = Streaming<PortForwardOutput>;

    async fn stats(
        &self,
        request: Request<StatsRequest>,
    ) -> Result<Response<StatsResponse>, Status> {
        let node = request.get_ref().node.clone();
        let caller = request.extensions().get::<Caller>().cloned();
        let asked = Asked {
            verb: "get",
            resource: "nodes",
            subresource: "stats",
            namespace: "",
            name: &node,
            method: "/rudder.node.Kubelet/Stats",
        };
        self.proxied(caller, asked, async {
            let request = request.into_inner();
            let mut client = node_client(&self.registry, &node).await?;
            // A node that accepted the connection and then hangs must not hold the caller.
            let answer = tokio::time::timeout(STATS_WITHIN, client.stats(request))
                .await
                .map_err(|_| {
                    Status::deadline_exceeded(format!(
                        "node {node} did not answer for its stats within {} s",
                        STATS_WITHIN.as_secs()
                    ))
                })?;
            answer.map_err(|status| from_node(&node, status).into())
        })
        .await
    }

    async fn logs(
        &self,
        request: Request<LogsRequest>,
    ) -> Result<Response<Self::LogsStream>, Status> {
        let caller = request.extensions().get::<Caller>().cloned();
        let mut logs = request.into_inner();
        let (namespace, pod) = (logs.namespace.clone(), logs.pod.clone());
        let asked = Asked {
            verb: "get",
            resource: "pods",
            subresource: "log",
            namespace: &namespace,
            name: &pod,
            method: "/rudder.node.Kubelet/Logs",
        };
        self.proxied(caller, asked, async {
            let PodNode {
                mut client,
                container,
                node,
            } = pod_node(&self.registry, &logs.namespace, &logs.pod, &logs.container).await?;
            logs.container = container;
            let answer = client.logs(logs).await;
            answer.map_err(|status| from_node(&node, status).into())
        })
        .await
    }

    async fn exec(
        &self,
        request: Request<Streaming<ExecInput>>,
    ) -> Result<Response<Self::ExecStream>, Status> {
        self.exec_or_attach(request, ExecOrAttach::Exec).await
    }

    async fn attach(
        &self,
        request: Request<Streaming<ExecInput>>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        self.exec_or_attach(request, ExecOrAttach::Attach).await
    }

    async fn port_forward(
        &self,
        request: Request<Streaming<PortForwardInput>>,
    ) -> Result<Response<Self::PortForwardStream>, Status> {
        let caller = request.extensions().get::<Caller>().cloned();
        let mut inputs = request.into_inner();
        let Some(start) = inputs
            .message()
            .await?
            .and_then(PortForwardInput::into_start)
        else {
            return Err(Status::invalid_argument(
                "a port-forward starts with its request (the pod and the port)",
            ));
        };
        let (namespace, pod) = (start.namespace.clone(), start.pod.clone());
        let asked = Asked {
            verb: "create",
            resource: "pods",
            subresource: "portforward",
            namespace: &namespace,
            name: &pod,
            method: "/rudder.node.Kubelet/PortForward",
        };
        self.proxied(caller, asked, async {
            let (mut client, node) =
                whole_pod_node(&self.registry, &start.namespace, &start.pod).await?;
            let rest = tokio_stream::StreamExt::map_while(inputs, Result::ok);
            let outbound =
                futures::stream::once(async { PortForwardInput::start(start) }).chain(rest);
            let answer = client.port_forward(outbound).await;
            answer.map_err(|status| from_node(&node, status).into())
        })
        .await
    }
}
