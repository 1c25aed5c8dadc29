//! The endpoint's `Attach` (server.rs): a connection to the container's shim (its attach
//! point, runtime/linux/shim_attach.rs) relayed both ways in attach_wire.rs' frames, or, for
//! a container made without stdin and tty, its log followed until it ends.

use std::sync::Arc;

use futures::StreamExt;
use rudder_proto::node::{exec_input, exec_output, Chunk, ExecInput, ExecOutput, LogsRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::calls::{status, Streamed, FOLLOW_POLL};
use crate::attach_wire::{self, Frame};
use crate::runtime::{ContainerState, Runtime, RuntimeError};

/// `Attach`: the container's shim joined, or (a container without one) its log followed
/// with `follow_log`, the endpoint's `Logs`.
pub(super) async fn attach<F>(
    runtime: Arc<dyn Runtime>,
    request: Request<Streaming<ExecInput>>,
    follow_log: impl FnOnce(LogsRequest) -> F,
) -> Result<Response<Streamed<ExecOutput>>, Status>
where
    F: std::future::Future<Output = Result<Response<Streamed<Chunk>>, Status>>,
{
    let mut inputs = request.into_inner();
    let Some(request) = inputs.message().await?.and_then(ExecInput::into_start) else {
        return Err(Status::invalid_argument(
            "an attach starts with its request (the pod and the container)",
        ));
    };
    if !request.command.is_empty() {
        return Err(Status::invalid_argument(
            "an attach joins the container's own process and runs no command; exec runs one",
        ));
    }
    let connecting = runtime.clone();
    let (namespace, pod, container) = (
        request.namespace.clone(),
        request.pod.clone(),
        request.container.clone(),
    );
    let connected =
        tokio::task::spawn_blocking(move || connecting.attach(&namespace, &pod, &container))
            .await
            .map_err(|e| Status::internal(format!("attaching: {e}")))?;
    let connected = match connected {
        Ok(connected) => connected,
        // Made without stdin and tty: its output from now on, and what the client types
        // goes nowhere (as containerd attaches to such a container).
        Err(RuntimeError::NotAttachable { .. }) => {
            let ended = container_ended(
                runtime.clone(),
                request.namespace.clone(),
                request.pod.clone(),
                request.container.clone(),
            );
            let log = LogsRequest {
                namespace: request.namespace,
                pod: request.pod,
                container: request.container,
                follow: true,
                tail_lines: Some(0),
                ..LogsRequest::default()
            };
            let chunks = follow_log(log).await?.into_inner();
            // What the client types goes nowhere; read, so its sender never waits.
            tokio::spawn(async move {
                let mut inputs = inputs;
                while let Ok(Some(_)) = inputs.message().await {}
            });
            // The follower reads to the log's end within two of its polls after the
            // container ended; then the attach ends, as the container did.
            let ended = async move {
                ended.await;
                tokio::time::sleep(2 * FOLLOW_POLL).await;
            };
            let output = chunks.take_until(Box::pin(ended)).map(|chunk| {
                chunk.map(|chunk| ExecOutput {
                    output: Some(exec_output::Output::Stdout(chunk.data)),
                })
            });
            return Ok(Response::new(Box::pin(output)));
        }
        Err(error) => return Err(status(error)),
    };
    let failed = |e: std::io::Error| Status::internal(format!("attaching: {e}"));
    connected.set_nonblocking(true).map_err(failed)?;
    let (reader, mut writer) = tokio::net::UnixStream::from_std(connected)
        .map_err(failed)?
        .into_split();
    let hello = Frame::Hello {
        stdin: request.stdin,
    };
    writer.write_all(&hello.encode()).await.map_err(failed)?;
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        // The socket stays whole until the output ends: a client whose input ended
        // (stdin closed) still gets the container's output.
        let feeding = async {
            feed_attach(inputs, &mut writer).await;
            std::future::pending::<()>().await
        };
        tokio::select! {
            () = pump_attach(reader, tx) => {}
            () = feeding => {}
        }
    });
    Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
}

/// Resolves once the container (empty: the pod's first) is no longer running the attempt
/// it runs now, checked every [`FOLLOW_POLL`]; at once if it runs none.
async fn container_ended(
    runtime: Arc<dyn Runtime>,
    namespace: String,
    pod: String,
    container: String,
) {
    let running = |runtime: &dyn Runtime| {
        let found = runtime
            .pods()
            .into_iter()
            .find(|p| p.namespace == namespace && p.name == pod)?;
        found
            .containers
            .into_iter()
            .chain(found.init_containers)
            .find(|c| container.is_empty() || c.name == container)
            .filter(|c| matches!(c.state, ContainerState::Running { .. }))
            .map(|c| c.id)
    };
    let Some(attempt) = running(&*runtime) else {
        return;
    };
    loop {
        tokio::time::sleep(FOLLOW_POLL).await;
        if running(&*runtime).as_ref() != Some(&attempt) {
            return;
        }
    }
}

/// Passes the container's output from its shim's attach point to the client, until the
/// container ends (the shim says `Ended`) or the client hangs up. A socket that closes
/// without `Ended` ends the stream with an error saying the attach was cut off.
async fn pump_attach(
    mut reader: tokio::net::unix::OwnedReadHalf,
    tx: mpsc::Sender<Result<ExecOutput, Status>>,
) {
    let mut decoder = attach_wire::Decoder::default();
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let read = tokio::select! {
            read = reader.read(&mut buffer) => read,
            () = tx.closed() => return,
        };
        let n = match read {
            Ok(0) => {
                // Closed without `Ended`: the shim cut this client off (or died).
                let cut_off = Status::aborted(
                    "the attach was cut off: it fell over 1 MiB behind the container's output \
                     (or took none of it for 10 s), the container ended before its last output \
                     reached you, or the container's shim is gone; attach again to follow it \
                     from now on",
                );
                let _ = tx.send(Err(cut_off)).await;
                return;
            }
            Ok(n) => n,
            Err(error) => {
                let _ = tx
                    .send(Err(Status::internal(format!("attaching: {error}"))))
                    .await;
                return;
            }
        };
        decoder.push(&buffer[..n]);
        loop {
            let output = match decoder.next_frame() {
                Ok(None) => break,
                Ok(Some(Frame::Stdout(data))) => exec_output::Output::Stdout(data),
                Ok(Some(Frame::Stderr(data))) => exec_output::Output::Stderr(data),
                // The container ended and everything it wrote came.
                Ok(Some(Frame::Ended)) => return,
                Ok(Some(_)) => continue,
                Err(error) => {
                    let _ = tx
                        .send(Err(Status::internal(format!("attaching: {error}"))))
                        .await;
                    return;
                }
            };
            let output = ExecOutput {
                output: Some(output),
            };
            if tx.send(Ok(output)).await.is_err() {
                return;
            }
        }
    }
}

/// Passes the client's stdin, its end and its terminal's sizes to the shim's attach point,
/// until the client's stream ends. (The shim ignores the stdin of a client that did not
/// say it has one, and the sizes of a container without a terminal.)
async fn feed_attach(
    mut inputs: Streaming<ExecInput>,
    writer: &mut tokio::net::unix::OwnedWriteHalf,
) {
    let clamp = |n: u32| u16::try_from(n).unwrap_or(u16::MAX);
    while let Ok(Some(input)) = inputs.message().await {
        let frame = match input.input {
            Some(exec_input::Input::Stdin(data)) => Frame::Stdin(data),
            Some(exec_input::Input::CloseStdin(_)) => Frame::CloseStdin,
            Some(exec_input::Input::Resize(size)) => Frame::Resize {
                width: clamp(size.width),
                height: clamp(size.height),
            },
            Some(exec_input::Input::Start(_)) | None => continue,
        };
        if writer.write_all(&frame.encode()).await.is_err() {
            return;
        }
    }
}
