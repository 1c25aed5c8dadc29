//! The benchmark's verbs over the Kubernetes HTTP API (JSON over HTTP/1.1 with keep-alive,
//! what client-go speaks to a plain-HTTP server), to set beside the same run over gRPC.

use bytes::{Buf, Bytes, BytesMut};
use futures::StreamExt;
use http_body_util::{BodyExt, BodyStream, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

use super::api::{Additions, Page, Transport};

/// The API at one master's (or a balancer's) address.
pub struct Http {
    base: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Http {
    /// `endpoint`: `host:port`.
    pub fn new(endpoint: &str) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Self {
            base: format!("http://{endpoint}"),
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<Response<Incoming>, String> {
        let request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("content-type", content_type)
            .header("accept", "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|error| error.to_string())?;
        self.client
            .request(request)
            .await
            .map_err(|error| format!("{}: {error}", self.base))
    }

    /// Sends and reads the whole answer; a failure is the Status' message.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<(StatusCode, Bytes), String> {
        let response = self.send(method, path, "application/json", body).await?;
        read_whole(response).await
    }
}

/// A response's code and its whole body.
async fn read_whole(response: Response<Incoming>) -> Result<(StatusCode, Bytes), String> {
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|error| error.to_string())?
        .to_bytes();
    Ok((status, body))
}

fn failure(status: StatusCode, body: &[u8]) -> String {
    let answer: Value = serde_json::from_slice(body).unwrap_or_default();
    match answer["message"].as_str() {
        Some(message) => format!("{status}: {message}"),
        None => format!("{status}: {}", String::from_utf8_lossy(body)),
    }
}

fn pods(namespace: &str) -> String {
    format!("/api/v1/namespaces/{namespace}/pods")
}

impl Transport for Http {
    async fn create_namespace(&self, name: &str) -> Result<(), String> {
        let body = json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": name } });
        let (status, answer) = self
            .call(
                Method::POST,
                "/api/v1/namespaces",
                body.to_string().into_bytes(),
            )
            .await?;
        if status.is_success() || status == StatusCode::CONFLICT {
            Ok(())
        } else {
            Err(failure(status, &answer))
        }
    }

    async fn delete_namespace(&self, name: &str) -> Result<(), String> {
        let (status, answer) = self
            .call(
                Method::DELETE,
                &format!("/api/v1/namespaces/{name}"),
                Vec::new(),
            )
            .await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(failure(status, &answer))
        }
    }

    async fn create_pod(&self, namespace: &str, body: Vec<u8>) -> Result<(), String> {
        let (status, answer) = self.call(Method::POST, &pods(namespace), body).await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(failure(status, &answer))
        }
    }

    async fn list_pods(&self, namespace: &str, limit: i64, token: &str) -> Result<Page, String> {
        let query =
            serde_urlencoded::to_string([("limit", limit.to_string()), ("continue", token.into())])
                .map_err(|error| error.to_string())?;
        let path = format!("{}?{query}", pods(namespace));
        let (status, answer) = self.call(Method::GET, &path, Vec::new()).await?;
        if !status.is_success() {
            return Err(failure(status, &answer));
        }
        // Items are counted, not decoded, as the gRPC side counts its items' bytes.
        let list: List = serde_json::from_slice(&answer).map_err(|error| error.to_string())?;
        Ok(Page {
            items: list.items.len(),
            resource_version: list.metadata.resource_version,
            continue_token: list.metadata.continue_token,
        })
    }

    async fn watch_pods(&self, namespace: &str, version: &str) -> Result<Additions, String> {
        let path = format!("{}?watch=true&resourceVersion={version}", pods(namespace));
        let response = self
            .send(Method::GET, &path, "application/json", Vec::new())
            .await?;
        if !response.status().is_success() {
            let (status, body) = read_whole(response).await?;
            return Err(failure(status, &body));
        }
        let frames = BodyStream::new(response.into_body());
        let lines = futures::stream::unfold(
            (frames, BytesMut::new()),
            |(mut frames, mut pending)| async move {
                loop {
                    if let Some(end) = pending.iter().position(|b| *b == b'\n') {
                        let line = pending.split_to(end + 1);
                        return Some((added(&line[..end]), (frames, pending)));
                    }
                    match frames.next().await? {
                        Ok(frame) => {
                            if let Ok(mut data) = frame.into_data() {
                                while data.has_remaining() {
                                    let chunk = data.chunk();
                                    pending.extend_from_slice(chunk);
                                    let n = chunk.len();
                                    data.advance(n);
                                }
                            }
                        }
                        Err(error) => {
                            return Some((Err(error.to_string()), (frames, BytesMut::new())))
                        }
                    }
                }
            },
        );
        Ok(Box::pin(lines))
    }
}

#[derive(serde::Deserialize)]
struct List {
    metadata: ListMeta,
    items: Vec<serde::de::IgnoredAny>,
}

#[derive(serde::Deserialize)]
struct ListMeta {
    #[serde(default, rename = "resourceVersion")]
    resource_version: String,
    #[serde(default, rename = "continue")]
    continue_token: String,
}

/// The name of the pod a watch event line adds, if it adds one.
fn added(line: &[u8]) -> Result<Option<String>, String> {
    let event: Value = serde_json::from_slice(line).map_err(|error| error.to_string())?;
    match event["type"].as_str() {
        Some("ADDED") => Ok(event["object"]["metadata"]["name"]
            .as_str()
            .map(str::to_owned)),
        Some("ERROR") => Err(event["object"]["message"]
            .as_str()
            .unwrap_or("the watch ended with an error")
            .to_owned()),
        _ => Ok(None),
    }
}
