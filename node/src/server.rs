//! The node's streaming endpoint (the kubelet port): logs, exec (on a terminal.rs terminal
//! with `-t`), attach (to the container's shim: server/attach.rs) and port-forward reach a
//! pod's containers here (through the API server), by the runtime that runs them;
//! `GET /metrics` serves the node process' Prometheus figures. In a cluster with TLS only masters may call it (mTLS, with the node's certificate).

use std::io::SeekFrom;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rudder_proto::masters_only::accepted_from_masters;
use rudder_proto::metrics::{Metrics, CONTENT_TYPE};
use rudder_proto::node::kubelet_server::{Kubelet, KubeletServer};
use rudder_proto::node::{
    exec_input, exec_output, port_forward_input, Chunk, ContainerStats, ExecInput, ExecOutput,
    LogsRequest, PodStats, PortForwardInput, PortForwardOutput, StatsRequest, StatsResponse,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::log_format;
use crate::runtime::Runtime;
use crate::terminal::Terminal;

mod attach;
mod calls;

use calls::{status, Streamed, FOLLOW_POLL};

/// Longer than any line of the CRI format (a piece and its header).
const MAX_FILE_LINE: usize = log_format::MAX_PIECE + 256;

pub struct NodeEndpoint {
    runtime: Arc<dyn Runtime>,
    /// This node's name: `Stats` for another is refused.
    node: String,
}

#[tonic::async_trait]
impl Kubelet for NodeEndpoint {
    type LogsStream = Streamed<Chunk>;
    type ExecStream = Streamed<ExecOutput>;
    type AttachStream = Streamed<ExecOutput>;
    type PortForwardStream = Streamed<PortForwardOutput>;

    async fn stats(
        &self,
        request: Request<StatsRequest>,
    ) -> Result<Response<StatsResponse>, Status> {
        let asked = request.into_inner().node;
        if !asked.is_empty() && asked != self.node {
            return Err(Status::not_found(format!(
                "this endpoint is node {}'s, not {asked}'s",
                self.node
            )));
        }
        let runtime = self.runtime.clone();
        let usage = tokio::task::spawn_blocking(move || runtime.usage())
            .await
            .map_err(|error| Status::internal(format!("reading usage: {error}")))?
            .map_err(status)?;
        let timestamp_nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos() as u64);
        Ok(Response::new(StatsResponse {
            timestamp_nanos,
            node_cpu_nanos: usage.cpu_nanos,
            node_memory_bytes: usage.memory_bytes,
            pods: usage
                .pods
                .into_iter()
                .map(|pod| PodStats {
                    namespace: pod.namespace,
                    name: pod.name,
                    uid: pod.uid,
                    containers: pod
                        .containers
                        .into_iter()
                        .map(|container| ContainerStats {
                            name: container.name,
                            id: container.id,
                            cpu_nanos: container.cpu_nanos,
                            memory_bytes: container.memory_bytes,
                        })
                        .collect(),
                })
                .collect(),
        }))
    }

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
        let mut offset = match request.tail_lines {
            Some(lines) if lines >= 0 => tail_start(&mut file, lines as u64)
                .await
                .map_err(|e| Status::internal(format!("reading the log: {e}")))?,
            _ => 0,
        };
        file.seek(SeekFrom::Start(offset))
            .await
            .map_err(|e| Status::internal(format!("reading the log: {e}")))?;
        let mut allowed = request
            .limit_bytes
            .filter(|limit| *limit > 0)
            .map_or(u64::MAX, |limit| limit as u64);
        let mut reader = log_format::Reader::new(log_view(&request)?);
        let (tx, rx) = mpsc::channel(16);
        let runtime = self.runtime.clone();
        tokio::spawn(async move {
            let mut buffer = vec![0u8; 64 * 1024];
            // The file's last line while it is not whole yet (the shim writes whole lines,
            // but a read may come between).
            let mut partial = Vec::new();
            loop {
                if allowed == 0 {
                    return;
                }
                match file.read(&mut buffer).await {
                    Ok(0) => {
                        let still_there = runtime
                            .log_file(&request.namespace, &request.pod, &request.container, false)
                            .is_ok_and(|current| current == path);
                        if !request.follow || !still_there || tx.is_closed() {
                            // A last line without its newline (being written, or a file
                            // from before the format).
                            let mut shown = Vec::new();
                            if !partial.is_empty() {
                                reader.show(&partial, &mut shown);
                            }
                            shown.truncate(usize::try_from(allowed).unwrap_or(usize::MAX));
                            if !shown.is_empty() {
                                let _ = tx.send(Ok(Chunk { data: shown })).await;
                            }
                            return;
                        }
                        tokio::time::sleep(FOLLOW_POLL).await;
                        // A file replaced underneath starts over.
                        let _ = file.seek(SeekFrom::Start(offset)).await;
                    }
                    Ok(n) => {
                        offset += n as u64;
                        partial.extend_from_slice(&buffer[..n]);
                        let mut shown = Vec::new();
                        let mut start = 0;
                        while let Some(at) = partial[start..].iter().position(|b| *b == b'\n') {
                            reader.show(&partial[start..start + at], &mut shown);
                            start += at + 1;
                        }
                        partial.drain(..start);
                        // No line of the format is this long: a file from before it,
                        // without newlines, shown as it comes instead of held.
                        if partial.len() > MAX_FILE_LINE {
                            shown.append(&mut partial);
                        }
                        shown.truncate(usize::try_from(allowed).unwrap_or(usize::MAX));
                        allowed -= shown.len() as u64;
                        if !shown.is_empty() && tx.send(Ok(Chunk { data: shown })).await.is_err() {
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
        request: Request<Streaming<ExecInput>>,
    ) -> Result<Response<Self::ExecStream>, Status> {
        let mut inputs = request.into_inner();
        let Some(request) = inputs.message().await?.and_then(ExecInput::into_start) else {
            return Err(Status::invalid_argument(
                "an exec starts with its request (the command and where to run it)",
            ));
        };
        if request.command.is_empty() {
            return Err(Status::invalid_argument("exec needs a command"));
        }
        let mut command = self
            .runtime
            .exec_command(
                &request.namespace,
                &request.pod,
                &request.container,
                &request.command,
                request.tty,
            )
            .map_err(status)?;
        if request.tty {
            return Ok(exec_on_terminal(command, inputs));
        }
        if request.stdin {
            command.stdin(std::process::Stdio::piped());
        }
        let mut child = tokio::process::Command::from(command)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| Status::internal(format!("starting exec: {e}")))?;
        // The client's inputs are read while the command takes them, else held open until
        // it ends (dropping them early could reset the call).
        let mut held_inputs = None;
        match child.stdin.take() {
            Some(stdin) => drop(tokio::spawn(feed_stdin(inputs, stdin))),
            None => held_inputs = Some(inputs),
        }
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
            send_exit_code(finished, &tx).await;
            drop(held_inputs);
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn attach(
        &self,
        request: Request<Streaming<ExecInput>>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        let follow_log = |log| self.logs(Request::new(log));
        attach::attach(self.runtime.clone(), request, follow_log).await
    }

    async fn port_forward(
        &self,
        request: Request<Streaming<PortForwardInput>>,
    ) -> Result<Response<Self::PortForwardStream>, Status> {
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
        let port = u16::try_from(start.port)
            .ok()
            .filter(|port| *port > 0)
            .ok_or_else(|| {
                Status::invalid_argument(format!("port {} is not 1 to 65535", start.port))
            })?;
        let runtime = self.runtime.clone();
        let connection = tokio::task::spawn_blocking(move || {
            runtime.connect_to_pod(&start.namespace, &start.pod, port)
        })
        .await
        .map_err(|e| Status::internal(format!("connecting: {e}")))?
        .map_err(status)?;
        connection
            .set_nonblocking(true)
            .map_err(|e| Status::internal(format!("connecting: {e}")))?;
        let connection = tokio::net::TcpStream::from_std(connection)
            .map_err(|e| Status::internal(format!("connecting: {e}")))?;
        let (reader, writer) = connection.into_split();
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            // Ends with the connection's reading half, or when the client hangs up (which
            // drops the writing half too, closing the connection).
            tokio::select! {
                () = pump_connection(reader, tx.clone()) => {}
                () = tx.closed() => {}
            }
        });
        tokio::spawn(feed_connection(inputs, writer));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// Passes what the pod's connection sends to the client until it ends (the stream then
/// ends cleanly) or fails (the stream ends with the error).
async fn pump_connection(
    mut reader: impl AsyncRead + Unpin,
    tx: mpsc::Sender<Result<PortForwardOutput, Status>>,
) {
    let mut buffer = vec![0u8; 32 * 1024];
    loop {
        let sent = match reader.read(&mut buffer).await {
            Ok(0) => return,
            Ok(n) => Ok(PortForwardOutput {
                data: buffer[..n].to_vec(),
            }),
            Err(e) => Err(Status::unavailable(format!("reading from the pod: {e}"))),
        };
        let failed = sent.is_err();
        if tx.send(sent).await.is_err() || failed {
            return;
        }
    }
}

/// Writes the client's data to the pod's connection; the client's `close_write` (or the end
/// of its stream) shuts the connection's writing half, as a TCP client's FIN would.
async fn feed_connection(
    mut inputs: Streaming<PortForwardInput>,
    mut writer: tokio::net::tcp::OwnedWriteHalf,
) {
    while let Ok(Some(input)) = inputs.message().await {
        match input.input {
            Some(port_forward_input::Input::Data(data)) => {
                if writer.write_all(&data).await.is_err() {
                    return;
                }
            }
            Some(port_forward_input::Input::CloseWrite(_)) => break,
            Some(port_forward_input::Input::Start(_)) | None => {}
        }
    }
    let _ = writer.shutdown().await;
}

/// How a log request wants the log shown: with times, and from when (the later of
/// `since_seconds` ago and `since_time`).
fn log_view(request: &LogsRequest) -> Result<log_format::View, Status> {
    let mut since = None;
    if let Some(seconds) = request.since_seconds {
        let ago = jiff::SignedDuration::from_secs(seconds.max(0));
        since = jiff::Timestamp::now().checked_sub(ago).ok();
    }
    if !request.since_time.is_empty() {
        let time: jiff::Timestamp = request.since_time.parse().map_err(|e| {
            Status::invalid_argument(format!(
                "since_time {:?} is not an RFC 3339 time: {e}",
                request.since_time
            ))
        })?;
        since = since.max(Some(time));
    }
    Ok(log_format::View {
        timestamps: request.timestamps,
        since,
    })
}

/// How long a terminal's command waits for the client to say its terminal's size (kubectl
/// says it as soon as it is connected): a command that reads its size at once (`stty size`,
/// `ls`) sees the client's, not 80×24.
const FIRST_SIZE_WAIT: Duration = Duration::from_millis(300);
/// How long a terminal is still read once its command has exited (for what it wrote last;
/// a job it left behind may hold the terminal open for ever).
const TERMINAL_DRAIN: Duration = Duration::from_millis(500);

/// Runs an exec's command on a terminal: what it writes comes back as stdout, the client's
/// stdin is typed at it, and the client's resizes size it.
fn exec_on_terminal(
    command: std::process::Command,
    inputs: Streaming<ExecInput>,
) -> Response<Streamed<ExecOutput>> {
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(run_on_terminal(command, inputs, tx));
    Response::new(Box::pin(ReceiverStream::new(rx)))
}

async fn run_on_terminal(
    mut command: std::process::Command,
    mut inputs: Streaming<ExecInput>,
    tx: mpsc::Sender<Result<ExecOutput, Status>>,
) {
    let (mut width, mut height) = crate::terminal::DEFAULT_SIZE;
    let mut typed_early = None;
    let clamp = |n: u32| u16::try_from(n).unwrap_or(u16::MAX);
    match tokio::time::timeout(FIRST_SIZE_WAIT, inputs.message()).await {
        Ok(Ok(Some(ExecInput {
            input: Some(exec_input::Input::Resize(size)),
        }))) => (width, height) = (clamp(size.width), clamp(size.height)),
        Ok(Ok(Some(ExecInput {
            input: Some(exec_input::Input::Stdin(data)),
        }))) => typed_early = Some(data),
        _ => {}
    }
    let failed = |e: std::io::Error| Status::internal(format!("starting exec on a terminal: {e}"));
    let spawned = Terminal::open(width, height).and_then(|(terminal, command_side)| {
        command
            .stdin(command_side.try_clone()?)
            .stdout(command_side.try_clone()?)
            .stderr(command_side);
        // The command's side is closed here once spawned (the Command holding it is a
        // temporary): the terminal then ends when the command's processes are gone.
        let child = tokio::process::Command::from(command)
            .kill_on_drop(true)
            .spawn()?;
        Ok((terminal, child))
    });
    let (terminal, mut child) = match spawned {
        Ok(spawned) => spawned,
        Err(e) => {
            let _ = tx.send(Err(failed(e))).await;
            return;
        }
    };
    let terminal = Arc::new(terminal);
    if let Some(data) = typed_early {
        let _ = terminal.write_all(&data).await;
    }
    tokio::spawn(feed_terminal(inputs, terminal.clone()));
    let mut pump = std::pin::pin!(pump_terminal(terminal, tx.clone()));
    let status = tokio::select! {
        status = child.wait() => {
            let _ = tokio::time::timeout(TERMINAL_DRAIN, &mut pump).await;
            status
        }
        () = &mut pump => child.wait().await,
    };
    // A client that hung up: the command is killed as `child` goes (and its shim's death
    // kills what it runs in the container).
    if tx.is_closed() {
        return;
    }
    let code = match status {
        Ok(status) => status.code().unwrap_or(137),
        Err(_) => 255,
    };
    let _ = tx
        .send(Ok(ExecOutput {
            output: Some(exec_output::Output::ExitCode(code)),
        }))
        .await;
}

/// Passes what the command writes on its terminal to the client, until the terminal ends
/// or the client hangs up.
async fn pump_terminal(terminal: Arc<Terminal>, tx: mpsc::Sender<Result<ExecOutput, Status>>) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let read = tokio::select! {
            read = terminal.read(&mut buffer) => read,
            () = tx.closed() => return,
        };
        let Ok(n @ 1..) = read else { return };
        let output = ExecOutput {
            output: Some(exec_output::Output::Stdout(buffer[..n].to_vec())),
        };
        if tx.send(Ok(output)).await.is_err() {
            return;
        }
    }
}

/// Sends the command's exit code once `finished` (its output pumped, then its exit) is
/// done. A client that hangs up first ends the wait, and the command with it (its shim is
/// killed when its `Child` is dropped, and the command dies with its shim).
async fn send_exit_code(
    finished: impl std::future::Future<Output = std::io::Result<std::process::ExitStatus>>,
    tx: &mpsc::Sender<Result<ExecOutput, Status>>,
) {
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
}

/// Types the client's stdin at the terminal and sizes it as the client's changes, until
/// the client's stream ends.
async fn feed_terminal(mut inputs: Streaming<ExecInput>, terminal: Arc<Terminal>) {
    while let Ok(Some(input)) = inputs.message().await {
        match input.input {
            Some(exec_input::Input::Stdin(data)) => {
                if terminal.write_all(&data).await.is_err() {
                    return;
                }
            }
            Some(exec_input::Input::Resize(size)) => {
                let _ = terminal.resize(size.width, size.height);
            }
            // A terminal's input has no end of its own (^D is the user's to type).
            Some(exec_input::Input::CloseStdin(_) | exec_input::Input::Start(_)) | None => {}
        }
    }
}

/// Writes the client's stdin inputs to the command until the client closes it (or its
/// stream, or the command its input); then the command reads the end of its input.
async fn feed_stdin(mut inputs: Streaming<ExecInput>, mut stdin: tokio::process::ChildStdin) {
    while let Ok(Some(input)) = inputs.message().await {
        match input.input {
            Some(exec_input::Input::Stdin(data)) => {
                if stdin.write_all(&data).await.is_err() {
                    return;
                }
            }
            Some(exec_input::Input::CloseStdin(_)) => return,
            Some(exec_input::Input::Start(_) | exec_input::Input::Resize(_)) | None => {}
        }
    }
}

/// Where the last `lines` lines of `file` start (a last line without its newline counts),
/// read backwards a block at a time.
async fn tail_start(file: &mut tokio::fs::File, lines: u64) -> std::io::Result<u64> {
    const BLOCK: u64 = 64 * 1024;
    let length = file.metadata().await?.len();
    if lines == 0 {
        return Ok(length);
    }
    let mut end = length;
    // Newlines to pass: one per wanted line, the file's final one not counting.
    let mut wanted = lines;
    let mut last_byte_seen = false;
    let mut block = vec![0u8; BLOCK as usize];
    while end > 0 {
        let start = end.saturating_sub(BLOCK);
        let size = (end - start) as usize;
        file.seek(SeekFrom::Start(start)).await?;
        file.read_exact(&mut block[..size]).await?;
        for (index, byte) in block[..size].iter().enumerate().rev() {
            let at = start + index as u64;
            if !last_byte_seen {
                last_byte_seen = true;
                if *byte == b'\n' {
                    continue;
                }
            }
            if *byte == b'\n' {
                wanted -= 1;
                if wanted == 0 {
                    return Ok(at + 1);
                }
            }
        }
        end = start;
    }
    // Fewer lines than asked for: all of them.
    Ok(0)
}

/// Binds the endpoint (port 0: any free port) and serves it in the background: over `tls`
/// to masters only (`rudder_proto::masters_only`), or in plaintext for a cluster without
/// TLS. Returns the bound address.
pub async fn serve(
    runtime: Arc<dyn Runtime>,
    node: &str,
    address: SocketAddr,
    metrics: Metrics,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    let bound = listener.local_addr()?;
    let service = KubeletServer::new(NodeEndpoint {
        runtime,
        node: node.to_owned(),
    });
    // `GET /metrics` beside the gRPC service, over HTTP/1.1 as Prometheus scrapes.
    let scrape = axum::routing::get(move || async move {
        (
            [(http::header::CONTENT_TYPE, CONTENT_TYPE)],
            metrics.encode(),
        )
    });
    let routes = tonic::service::Routes::new(service)
        .into_axum_router()
        .route("/metrics", scrape);
    tokio::spawn(async move {
        let server = tonic::transport::Server::builder()
            .accept_http1(true)
            .add_routes(routes.into());
        let served = match tls {
            Some(tls) => {
                let incoming = accepted_from_masters(listener, tls, "kubelet");
                server.serve_with_incoming(incoming).await
            }
            None => {
                let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
                server.serve_with_incoming(incoming).await
            }
        };
        if let Err(error) = served {
            tracing::warn!(%error, "the node endpoint stopped");
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn tail_of(text: &str, lines: u64) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(&path, text).unwrap();
        let mut file = tokio::fs::File::open(&path).await.unwrap();
        let start = tail_start(&mut file, lines).await.unwrap() as usize;
        text[start..].to_owned()
    }

    #[tokio::test]
    async fn the_tail_is_the_last_lines_with_or_without_a_final_newline() {
        assert_eq!(tail_of("a\nb\nc\n", 2).await, "b\nc\n");
        assert_eq!(tail_of("a\nb\nc\n", 1).await, "c\n");
        assert_eq!(tail_of("a\nb", 1).await, "b");
        assert_eq!(tail_of("a\nb\n", 5).await, "a\nb\n");
        assert_eq!(tail_of("a\nb\n", 0).await, "");
        assert_eq!(tail_of("", 3).await, "");
        let long: String = (0..20_000).map(|i| format!("line {i}\n")).collect();
        assert_eq!(tail_of(&long, 2).await, "line 19998\nline 19999\n");
    }
}
