//! `pods/NAME/exec` and `pods/NAME/attach` over WebSocket, the way kubectl 1.31+ runs them
//! by default
//! (`v5.channel.k8s.io`; `v4.channel.k8s.io` too, the same frames without v5's close
//! signal). The API server starts the command on the pod's node and relays its output:
//! every binary message is a channel byte and data (0 stdin from the client, 1 stdout,
//! 2 stderr), and the last, on channel 3, is a `Status` saying how the command ended, before
//! a normal close. With `stdin` (`kubectl exec -i`) the client's channel-0 data goes to the
//! command's standard input, which ends at v5's close signal for channel 0 (`255 0`).
//!
//! With a terminal (`kubectl exec -t`), the node runs the command on one: its output, all on
//! channel 1, and the client's terminal size on channel 4 (`{"Width":W,"Height":H}`) as
//! the client's changes.
//!
//! An attach is relayed the same way: it joins the container's own process on its node
//! (`kubectl run -i -t`).

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::FromRequestParts;
use axum::response::Response;
use bytes::{BufMut, BytesMut};
use futures::{SinkExt, Stream, StreamExt};
use http::request::Parts;
use rudder_proto::node::{exec_output, ExecInput, ExecOutput, ExecRequest};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::error::ApiError;
use crate::pod_node::{from_node, pod_node, PodNode};
use crate::registry::Registry;

/// The channel protocols served, best first.
pub const PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
/// v5's signal: the client's next byte names a channel it closes.
const CLOSE: u8 = 255;

/// What an exec request asks for (pure).
#[derive(Debug, PartialEq, Eq)]
pub struct ExecOptions {
    pub command: Vec<String>,
    pub container: String,
    /// The client sends the command's standard input.
    pub stdin: bool,
    /// The command runs on a terminal, sized by the client.
    pub tty: bool,
}

/// The last value of query parameter `name`.
fn last<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .rev()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

/// Whether query parameter `name` is on (`true` or `1`).
fn on(pairs: &[(String, String)], name: &str) -> bool {
    matches!(last(pairs, name), Some("true" | "1"))
}

/// Reads an exec request's query, its `command` repeated once per argument.
pub fn exec_options(pairs: &[(String, String)]) -> Result<ExecOptions, ApiError> {
    let command: Vec<String> = pairs
        .iter()
        .filter(|(key, _)| key == "command")
        .map(|(_, value)| value.clone())
        .collect();
    if command.is_empty() {
        return Err(ApiError::bad_field(
            "command",
            "you must specify at least 1 command",
        ));
    }
    Ok(ExecOptions {
        command,
        ..attach_options(pairs)
    })
}

/// Reads an attach request's query: an exec's without a command.
pub fn attach_options(pairs: &[(String, String)]) -> ExecOptions {
    ExecOptions {
        command: Vec::new(),
        container: last(pairs, "container").unwrap_or_default().to_owned(),
        stdin: on(pairs, "stdin"),
        tty: on(pairs, "tty"),
    }
}

/// The `Status` that ends an exec on the error channel: success, or the exit code.
pub fn ending(exit_code: i32) -> Value {
    if exit_code == 0 {
        return json!({ "metadata": {}, "status": "Success" });
    }
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!("command terminated with non-zero exit code: exit status {exit_code}"),
        "reason": "NonZeroExitCode",
        "details": { "causes": [{ "reason": "ExitCode", "message": exit_code.to_string() }] },
    })
}

fn framed(channel: u8, data: &[u8]) -> Message {
    let mut frame = BytesMut::with_capacity(data.len() + 1);
    frame.put_u8(channel);
    frame.put_slice(data);
    Message::Binary(frame.freeze())
}

/// The query's pairs, in order (exec repeats `command`).
fn query_pairs(parts: &Parts) -> Result<Vec<(String, String)>, ApiError> {
    serde_urlencoded::from_str(parts.uri.query().unwrap_or_default())
        .map_err(|error| ApiError::bad_request(format!("the query string is not valid: {error}")))
}

/// The WebSocket upgrade of `verb`'s request, with a channel protocol both sides speak.
async fn websocket(parts: &mut Parts, verb: &str) -> Result<WebSocketUpgrade, ApiError> {
    // A browser's WebSocket always carries an Origin; the guard refused those already.
    let upgrade = WebSocketUpgrade::from_request_parts(parts, &())
        .await
        .map_err(|_| {
            ApiError::bad_request(format!(
                "{verb} is served over WebSocket (v5.channel.k8s.io, kubectl 1.31 and later); \
                 SPDY is not"
            ))
        })?
        .protocols(PROTOCOLS);
    if upgrade.selected_protocol().is_none() {
        return Err(ApiError::bad_request(format!(
            "no channel protocol in common: this server speaks {}",
            PROTOCOLS.join(", ")
        )));
    }
    Ok(upgrade)
}

/// Starts the command on the pod's node, then upgrades the connection and relays.
pub async fn exec(
    registry: &Registry,
    parts: Parts,
    namespace: &str,
    name: &str,
) -> Result<Response, ApiError> {
    let options = exec_options(&query_pairs(&parts)?)?;
    on_node(registry, parts, namespace, name, options, Call::Exec).await
}

/// `pods/NAME/attach`: the client joins the container's own process on its node: its output
/// from now on and, for a container made with `stdin: true` or `tty: true`, the client's
/// input typed at it and its terminal sized by the client's (`kubectl run -i -t`). Relayed
/// as an exec's output until the container stops or the client hangs up; no exit code is
/// sent (kubectl reads it from the pod).
pub async fn attach(
    registry: &Registry,
    parts: Parts,
    namespace: &str,
    name: &str,
) -> Result<Response, ApiError> {
    let options = attach_options(&query_pairs(&parts)?);
    on_node(registry, parts, namespace, name, options, Call::Attach).await
}

/// The node's two calls that take a client's input and give a container's output.
#[derive(Clone, Copy)]
enum Call {
    Exec,
    /// No command: the container's own process.
    Attach,
}

/// An exec or an attach started on the pod's node; then the connection is upgraded and
/// relayed.
async fn on_node(
    registry: &Registry,
    mut parts: Parts,
    namespace: &str,
    name: &str,
    options: ExecOptions,
    call: Call,
) -> Result<Response, ApiError> {
    let verb = match call {
        Call::Exec => "exec",
        Call::Attach => "attach",
    };
    let upgrade = websocket(&mut parts, verb).await?;
    let PodNode {
        mut client,
        container,
        node,
    } = pod_node(registry, namespace, name, &options.container).await?;
    let start = ExecInput::start(ExecRequest {
        namespace: namespace.to_owned(),
        pod: name.to_owned(),
        container,
        command: options.command,
        stdin: options.stdin,
        tty: options.tty,
    });
    // The client's stdin and terminal sizes, as they come over the socket; without either
    // the inputs end here.
    let (input, inputs) = mpsc::channel(16);
    let input = (options.stdin || options.tty).then_some(ClientInput {
        sender: input,
        stdin_open: options.stdin,
        tty: options.tty,
    });
    let outbound = futures::stream::once(async { start }).chain(ReceiverStream::new(inputs));
    let started = match call {
        Call::Exec => client.exec(outbound).await,
        Call::Attach => client.attach(outbound).await,
    };
    let output = started
        .map_err(|status| from_node(&node, status))?
        .into_inner();
    let stopped = registry.stopped();
    Ok(upgrade.on_upgrade(move |socket| async move {
        // A master that stops ends the relay (the node's command ends with its stream).
        tokio::select! {
            () = relay(socket, output, input, node) => {}
            () = stopped => {}
        }
    }))
}

/// What a client's binary message means for the command's input.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientFrame<'a> {
    Stdin(&'a [u8]),
    CloseStdin,
    /// The client's terminal is now this many columns wide and rows high.
    Resize {
        width: u32,
        height: u32,
    },
    /// Another channel, a resize that does not read as one, or nothing.
    Other,
}

/// A terminal size as kubectl sends it on the resize channel.
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TerminalSize {
    width: u32,
    height: u32,
}

/// Reads a client's binary message (pure).
pub fn client_frame(data: &[u8]) -> ClientFrame<'_> {
    match data {
        [STDIN, rest @ ..] => ClientFrame::Stdin(rest),
        [CLOSE, STDIN] => ClientFrame::CloseStdin,
        [RESIZE, rest @ ..] => match serde_json::from_slice::<TerminalSize>(rest) {
            Ok(size) => ClientFrame::Resize {
                width: size.width,
                height: size.height,
            },
            Err(_) => ClientFrame::Other,
        },
        _ => ClientFrame::Other,
    }
}

/// Where the client's input goes: the node's exec, with its stdin until the client closes
/// it, and its terminal's sizes while it runs on one.
struct ClientInput {
    sender: mpsc::Sender<ExecInput>,
    stdin_open: bool,
    tty: bool,
}

/// Relays the node's output to the socket, and the socket's stdin to the node. The two
/// directions run apart, so a command blocked writing output never stops its input (nor the
/// reverse): a `cat` of more than the buffers hold would otherwise stall both.
async fn relay(
    socket: WebSocket,
    output: impl Stream<Item = Result<ExecOutput, Status>> + Send,
    input: Option<ClientInput>,
    node: String,
) {
    let mut output = std::pin::pin!(output);
    let (mut sink, incoming) = socket.split();
    // Ends when the client hangs up (or sends a close): the node's command ends with it.
    let mut hung_up = tokio::spawn(forward_input(incoming, input));
    let exit_code = loop {
        tokio::select! {
            message = output.next() => match message.transpose() {
                Ok(Some(ExecOutput { output: Some(exec_output::Output::Stdout(data)) })) => {
                    if sink.send(framed(STDOUT, &data)).await.is_err() {
                        return;
                    }
                }
                Ok(Some(ExecOutput { output: Some(exec_output::Output::Stderr(data)) })) => {
                    if sink.send(framed(STDERR, &data)).await.is_err() {
                        return;
                    }
                }
                Ok(Some(ExecOutput { output: Some(exec_output::Output::ExitCode(code)) })) => {
                    break Some(code);
                }
                Ok(Some(ExecOutput { output: None })) => {}
                Ok(None) => break None,
                Err(status) => {
                    let failure = from_node(&node, status);
                    let _ = sink
                        .send(framed(ERROR, failure.status_object().to_string().as_bytes()))
                        .await;
                    break None;
                }
            },
            _ = &mut hung_up => return,
        }
    };
    hung_up.abort();
    if let Some(code) = exit_code {
        let _ = sink
            .send(framed(ERROR, ending(code).to_string().as_bytes()))
            .await;
    }
    let _ = sink
        .send(Message::Close(Some(CloseFrame {
            code: 1000,
            reason: "".into(),
        })))
        .await;
}

/// Passes the client's channel-0 data on as the command's stdin (until the client closes
/// it) and its resizes, until the client hangs up or closes.
async fn forward_input(
    mut incoming: futures::stream::SplitStream<WebSocket>,
    mut input: Option<ClientInput>,
) {
    loop {
        let message = match incoming.next().await {
            None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
            Some(Ok(Message::Binary(data))) => data,
            Some(Ok(_)) => continue,
        };
        let Some(to) = &mut input else { continue };
        let sent = match client_frame(&message) {
            ClientFrame::Stdin(data) if !data.is_empty() && to.stdin_open => {
                to.sender.send(ExecInput::stdin(data.to_vec())).await
            }
            ClientFrame::CloseStdin if to.stdin_open => {
                to.stdin_open = false;
                to.sender.send(ExecInput::close_stdin()).await
            }
            ClientFrame::Resize { width, height } => {
                to.sender.send(ExecInput::resize(width, height)).await
            }
            _ => Ok(()),
        };
        // A node that stopped reading leaves the rest unsent; without a terminal, the end
        // of stdin is the end of the inputs.
        if sent.is_err() || !(to.stdin_open || to.tty) {
            input = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_command_is_every_command_parameter_in_order() {
        let options = exec_options(&pairs(&[
            ("command", "sh"),
            ("command", "-c"),
            ("command", "echo hi"),
            ("container", "app"),
            ("stdout", "true"),
        ]))
        .unwrap();
        assert_eq!(options.command, ["sh", "-c", "echo hi"]);
        assert_eq!(options.container, "app");
        assert!(exec_options(&pairs(&[("stdout", "true")])).is_err());
        let interactive = exec_options(&pairs(&[("command", "cat"), ("stdin", "true")])).unwrap();
        assert!(interactive.stdin && !options.stdin);
        let terminal = exec_options(&pairs(&[("command", "sh"), ("tty", "true")])).unwrap();
        assert!(terminal.tty && !interactive.tty);
    }

    #[test]
    fn an_attach_names_its_container_and_whether_it_types_and_on_a_terminal() {
        let output_only = attach_options(&pairs(&[("stdout", "true")]));
        assert_eq!(
            output_only,
            ExecOptions {
                command: Vec::new(),
                container: String::new(),
                stdin: false,
                tty: false
            }
        );
        let named = pairs(&[("container", "app"), ("stdin", "true"), ("tty", "1")]);
        let interactive = attach_options(&named);
        assert_eq!(interactive.container, "app");
        assert!(interactive.stdin && interactive.tty);
    }

    #[test]
    fn client_frames_are_stdin_its_close_or_a_resize() {
        assert_eq!(client_frame(&[0, b'h', b'i']), ClientFrame::Stdin(b"hi"));
        assert_eq!(client_frame(&[255, 0]), ClientFrame::CloseStdin);
        assert_eq!(
            client_frame(b"\x04{\"Width\":132,\"Height\":43}"),
            ClientFrame::Resize {
                width: 132,
                height: 43
            }
        );
        assert_eq!(client_frame(&[4, b'{']), ClientFrame::Other);
        assert_eq!(client_frame(&[]), ClientFrame::Other);
    }

    #[test]
    fn the_ending_status_carries_the_exit_code_as_kubectl_reads_it() {
        assert_eq!(ending(0)["status"], "Success");
        let failed = ending(7);
        assert_eq!(failed["reason"], "NonZeroExitCode");
        assert_eq!(failed["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(failed["details"]["causes"][0]["message"], "7");
    }
}
