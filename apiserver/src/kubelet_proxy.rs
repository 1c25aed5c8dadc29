//! The `Kubelet` gRPC service on every master: each call goes on to the pod's node, as
//! kube-apiserver proxies logs and exec, so a client reaches pods through the masters alone
//! (`rudder logs`, `rudder exec`), and what guards the masters' port guards these too. The
//! node's stream is handed back as it comes; a client that hangs up ends it on the node.

use futures::StreamExt;
use rudder_proto::authn::Caller;
use rudder_proto::node::kubelet_server::Kubelet;
use rudder_proto::node::{
    Chunk, ExecInput, ExecOutput, LogsRequest, PortForwardInput, PortForwardOutput, StatsRequest,
    StatsResponse,
};
use tonic::{Request, Response, Status, Streaming};

use crate::authz::rbac::{Action, ResourceAction};
use crate::authz::Authorizer;
use crate::pod_node::{from_node, node_client, pod_node, whole_pod_node, PodNode};
use crate::registry::Registry;

/// How long a node may take to answer for its stats.
const STATS_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);

pub struct KubeletProxy {
    registry: Registry,
    authorizer: Authorizer,
}

impl KubeletProxy {
    pub fn new(registry: Registry, authorizer: Authorizer) -> Self {
        KubeletProxy {
            registry,
            authorizer,
        }
    }

    /// Refuses the call unless its caller may `verb` the `resource/subresource` named
    /// (as kube-apiserver authorizes `pods/log`, `pods/exec`, `pods/portforward` and
    /// `nodes/stats`).
    async fn authorize(
        &self,
        caller: Option<&Caller>,
        (verb, resource, subresource): (&str, &str, &str),
        namespace: &str,
        name: &str,
    ) -> Result<(), Status> {
        let action = Action::Resource(ResourceAction {
            verb: verb.into(),
            group: String::new(),
            resource: resource.into(),
            subresource: subresource.into(),
            namespace: namespace.into(),
            name: name.into(),
        });
        Ok(self.authorizer.authorize(caller, &action).await?)
    }
}

#[tonic::async_trait]
impl Kubelet for KubeletProxy {
    type LogsStream = Streaming<Chunk>;
    type ExecStream = Streaming<ExecOutput>;
    type PortForwardStream = Streaming<PortForwardOutput>;

    async fn stats(
        &self,
        request: Request<StatsRequest>,
    ) -> Result<Response<StatsResponse>, Status> {
        let node = request.get_ref().node.clone();
        let caller = request.extensions().get::<Caller>();
        self.authorize(caller, ("get", "nodes", "stats"), "", &node)
            .await?;
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
    }

    async fn logs(
        &self,
        request: Request<LogsRequest>,
    ) -> Result<Response<Self::LogsStream>, Status> {
        let (namespace, pod) = (&request.get_ref().namespace, &request.get_ref().pod);
        let caller = request.extensions().get::<Caller>();
        self.authorize(caller, ("get", "pods", "log"), namespace, pod)
            .await?;
        let mut logs = request.into_inner();
        let PodNode {
            mut client,
            container,
            node,
        } = pod_node(&self.registry, &logs.namespace, &logs.pod, &logs.container).await?;
        logs.container = container;
        let answer = client.logs(logs).await;
        answer.map_err(|status| from_node(&node, status).into())
    }

    async fn exec(
        &self,
        request: Request<Streaming<ExecInput>>,
    ) -> Result<Response<Self::ExecStream>, Status> {
        let caller = request.extensions().get::<Caller>().cloned();
        let mut inputs = request.into_inner();
        let Some(mut start) = inputs.message().await?.and_then(ExecInput::into_start) else {
            return Err(Status::invalid_argument(
                "an exec starts with its request (the command and where to run it)",
            ));
        };
        self.authorize(
            caller.as_ref(),
            ("create", "pods", "exec"),
            &start.namespace,
            &start.pod,
        )
        .await?;
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
        // The rest of the client's inputs (its stdin) follow the request to the node.
        let rest = tokio_stream::StreamExt::map_while(inputs, Result::ok);
        let outbound = futures::stream::once(async { ExecInput::start(start) }).chain(rest);
        let answer = client.exec(outbound).await;
        answer.map_err(|status| from_node(&node, status).into())
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
        self.authorize(
            caller.as_ref(),
            ("create", "pods", "portforward"),
            &start.namespace,
            &start.pod,
        )
        .await?;
        let (mut client, node) =
            whole_pod_node(&self.registry, &start.namespace, &start.pod).await?;
        let rest = tokio_stream::StreamExt::map_while(inputs, Result::ok);
        let outbound = futures::stream::once(async { PortForwardInput::start(start) }).chain(rest);
        let answer = client.port_forward(outbound).await;
        answer.map_err(|status| from_node(&node, status).into())
    }
}
