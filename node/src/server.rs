//! The node's streaming endpoint (the kubelet port): `rudder logs` and `rudder exec` reach
//! a pod's containers here, through the runtime that runs them.

use std::io::SeekFrom;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use rudder_proto::node::kubelet_server::{Kubelet, KubeletServer};
use rudder_proto::node::{exec_output, Chunk, ExecOutput, ExecRequest, LogsRequest};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::runtime::{Runtime, RuntimeError};

/// How often a followed log is checked for more.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

pub struct NodeEndpoint {
    runtime: Arc<dyn Runtime>,
}

fn status(error: RuntimeError) -> Status {
    match error {
        RuntimeError::UnknownPod { .. } => Status::not_found(error.to_string()),
        other => Status::failed_precondition(other.to_string()),
    }
}

type Streamed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl Kubelet for NodeEndpoint {
    type LogsStream = Streamed<Chunk>;
    type ExecStream = Streamed<ExecOutput>;

    async fn logs(
        &self,
        request: Request<LogsRequest>,
    ) -> Result<Response<Self::LogsStream>, Status> {
        let request = request.into_inner();
        let path = self
            .runtime
            .log_file(
                &request.namespace,
                &request.pod,
                &request.container,
                request.previous,
            )
            .map_err(status)?;
        let mut file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| Status::not_found(format!("no log yet ({}): {e}", path.display())))?;
        let (tx, rx) = mpsc::channel(16);
        let runtime = self.runtime.clone();
        tokio::spawn(async move {
            let mut buffer = vec![0u8; 64 * 1024];
            let mut offset = 0u64;
            loop {
                match file.read(&mut buffer).await {
                    Ok(0) => {
                        let still_there = runtime
                            .log_file(&request.namespace, &request.pod, &request.container, false)
                            .is_ok_and(|current| current == path);
                        if !request.follow || !still_there || tx.is_closed() {
                            return;
                        }
                        tokio::time::sleep(FOLLOW_POLL).await;
                        // A file replaced underneath starts over.
                        let _ = file.seek(SeekFrom::Start(offset)).await;
                    }
                    Ok(n) => {
                        offset += n as u64;
                        let chunk = Chunk {
                            data: buffer[..n].to_vec(),
                        };
                        if tx.send(Ok(chunk)).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx
                            .send(Err(Status::internal(format!("reading the log: {e}"))))
                            .await;
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn exec(
        &self,
        request: Request<ExecRequest>,
    ) -> Result<Response<Self::ExecStream>, Status> {
        let request = request.into_inner();
        if request.command.is_empty() {
            return Err(Status::invalid_argument("exec needs a command"));
        }
        let command = self
            .runtime
            .exec_command(
                &request.namespace,
                &request.pod,
                &request.container,
                &request.command,
            )
            .map_err(status)?;
        let mut child = tokio::process::Command::from(command)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| Status::internal(format!("starting exec: {e}")))?;
        let (tx, rx) = mpsc::channel(16);
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        tokio::spawn(async move {
            let pump = |reader: Option<Box<dyn tokio::io::AsyncRead + Send + Unpin>>,
                        is_err: bool,
                        tx: mpsc::Sender<Result<ExecOutput, Status>>| async move {
                let Some(mut reader) = reader else { return };
                let mut buffer = vec![0u8; 16 * 1024];
                while let Ok(n) = reader.read(&mut buffer).await {
                    if n == 0 {
                        return;
                    }
                    let bytes = buffer[..n].to_vec();
                    let output = if is_err {
                        exec_output::Output::Stderr(bytes)
                    } else {
                        exec_output::Output::Stdout(bytes)
                    };
                    if tx
                        .send(Ok(ExecOutput {
                            output: Some(output),
                        }))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            };
            let out = pump(stdout.map(|s| Box::new(s) as _), false, tx.clone());
            let err = pump(stderr.map(|s| Box::new(s) as _), true, tx.clone());
            let finished = async {
                tokio::join!(out, err);
                child.wait().await
            };
            // A client that hangs up ends the command (kill_on_drop, when this task ends).
            let code = tokio::select! {
                status = finished => match status {
                    Ok(status) => status.code().unwrap_or(137),
                    Err(_) => 255,
                },
                () = tx.closed() => return,
            };
            let _ = tx
                .send(Ok(ExecOutput {
                    output: Some(exec_output::Output::ExitCode(code)),
                }))
                .await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// Binds the endpoint (port 0: any free port) and serves it in the background. Returns the
/// bound address.
pub async fn serve(runtime: Arc<dyn Runtime>, address: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    let bound = listener.local_addr()?;
    let service = KubeletServer::new(NodeEndpoint { runtime });
    tokio::spawn(async move {
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        if let Err(error) = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(incoming)
            .await
        {
            tracing::warn!(%error, "the node endpoint stopped");
        }
    });
    Ok(bound)
}
