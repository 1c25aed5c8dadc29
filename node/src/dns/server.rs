//! The DNS server's shell: hickory's UDP and TCP server on one address, answering every
//! question from the latest [`ClusterNames`] ([`records`](super::records) decides, this
//! file only speaks the protocol), and passing the ones outside the cluster to the upstream
//! resolver when there is one ([`upstream`](super::upstream)).

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hickory_proto::op::{Edns, Header, HeaderCounts, Metadata, OpCode, Query, ResponseCode};
use hickory_proto::rr::Record;
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use hickory_server::Server;

use super::records::{Answer, ClusterNames};
use super::upstream;

/// The names the server answers from, replaced whole on every change; `None` until the
/// node has seen every Service once (questions meanwhile get SERVFAIL, and clients retry).
pub type SharedNames = Arc<RwLock<Option<Arc<ClusterNames>>>>;

/// The largest UDP answer given to a client that offers more.
const MAX_UDP_PAYLOAD: u16 = 1232;

/// How many questions may be with the upstream resolver at once (CoreDNS' forward plugin
/// allows 1,000); past that they get SERVFAIL at once rather than a socket each.
const MAX_FORWARDS: usize = 1000;

/// How long an idle TCP client may keep its connection.
const TCP_IDLE: Duration = Duration::from_secs(5);

/// Answers questions from [`SharedNames`], forwarding the rest to `upstream` if any.
pub struct Handler {
    names: SharedNames,
    upstream: Option<SocketAddr>,
    forwards: Arc<tokio::sync::Semaphore>,
}

impl Handler {
    pub fn new(names: SharedNames, upstream: Option<SocketAddr>) -> Self {
        Self {
            names,
            upstream,
            forwards: Arc::new(tokio::sync::Semaphore::new(MAX_FORWARDS)),
        }
    }

    fn current(&self) -> Option<Arc<ClusterNames>> {
        self.names
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

/// What a question gets, before it is written as a message.
struct Reply {
    code: ResponseCode,
    answers: Vec<Record>,
    additionals: Vec<Record>,
    authorities: Vec<Record>,
    /// Answered by the upstream resolver: whether it offers recursion.
    forwarded: Option<bool>,
}

impl Reply {
    fn empty(code: ResponseCode) -> Self {
        Self {
            code,
            answers: Vec::new(),
            additionals: Vec::new(),
            authorities: Vec::new(),
            forwarded: None,
        }
    }

    /// The cluster's own answer; negative ones carry the zone's SOA.
    fn ours(answer: Answer, names: &ClusterNames) -> Self {
        let negative = |code| Self {
            authorities: vec![names.soa().clone()],
            ..Self::empty(code)
        };
        match answer {
            Answer::Records {
                answers,
                additionals,
            } => Self {
                answers,
                additionals,
                ..Self::empty(ResponseCode::NoError)
            },
            Answer::NoData => negative(ResponseCode::NoError),
            Answer::NxDomain => negative(ResponseCode::NXDomain),
            Answer::Refused => Self::empty(ResponseCode::Refused),
        }
    }
}

impl Handler {
    /// `query` asked of `upstream`, at most [`MAX_FORWARDS`] at once; SERVFAIL when busy
    /// or when the upstream fails.
    async fn forward(&self, upstream: SocketAddr, query: &Query, recursion_desired: bool) -> Reply {
        let answer = match self.forwards.clone().try_acquire_owned() {
            Ok(_permit) => upstream::forward(upstream, query, recursion_desired).await,
            Err(_) => Err(upstream::ForwardError::Busy),
        };
        match answer {
            Ok(answer) => Reply {
                code: answer.metadata.response_code,
                answers: answer.answers,
                additionals: answer.additionals,
                authorities: answer.authorities,
                forwarded: Some(answer.metadata.recursion_available),
            },
            Err(error) => {
                tracing::debug!(%error, "forwarding a DNS question");
                Reply {
                    forwarded: Some(false),
                    ..Reply::empty(ResponseCode::ServFail)
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.recursion_available = false;
        let builder = MessageResponseBuilder::from_message_request(request);
        // EDNS asked, EDNS answered (RFC 6891), at the size the client offered, up to the
        // size that is safe from fragmentation (DNS flag day 2020).
        let edns = request.edns.as_ref().map(|asked| {
            let mut edns = Edns::new();
            edns.set_max_payload(asked.max_payload().clamp(512, MAX_UDP_PAYLOAD));
            edns.set_version(0);
            edns
        });
        let mut builder = builder;
        if let Some(edns) = &edns {
            builder.edns(edns);
        }
        let reply = if request.metadata.op_code != OpCode::Query {
            Reply::empty(ResponseCode::NotImp)
        } else {
            match (request.request_info(), self.current()) {
                (Err(_), _) => Reply::empty(ResponseCode::FormErr),
                (Ok(_), None) => Reply::empty(ResponseCode::ServFail),
                (Ok(info), Some(names)) => {
                    match names.answer(info.query.name(), info.query.query_type()) {
                        Answer::Refused => match self.upstream {
                            None => Reply::empty(ResponseCode::Refused),
                            Some(upstream) => {
                                self.forward(
                                    upstream,
                                    info.query.original(),
                                    request.metadata.recursion_desired,
                                )
                                .await
                            }
                        },
                        answer => Reply::ours(answer, &names),
                    }
                }
            }
        };
        let Reply {
            code,
            answers,
            additionals,
            authorities: soa,
            forwarded,
        } = reply;
        if let Some(recursion_available) = forwarded {
            // The upstream's answer, not ours: it recursed.
            metadata.recursion_available = recursion_available;
        }
        metadata.response_code = code;
        metadata.authoritative =
            forwarded.is_none() && matches!(code, ResponseCode::NoError | ResponseCode::NXDomain);
        let none: Vec<Record> = Vec::new();
        let message = builder.build(
            metadata,
            answers.iter(),
            none.iter(),
            soa.iter(),
            additionals.iter(),
        );
        match response_handle.send_response(message).await {
            Ok(info) => info,
            Err(error) => {
                tracing::debug!(%error, "sending a DNS answer");
                metadata.response_code = ResponseCode::ServFail;
                ResponseInfo::from(Header {
                    metadata,
                    counts: HeaderCounts::default(),
                })
            }
        }
    }
}

/// A running DNS server; stops when dropped.
pub struct DnsServer {
    pub addr: SocketAddr,
    server: Option<Server<Handler>>,
}

impl DnsServer {
    /// Serves `names` on UDP and TCP `addr` (port 0: any free port, the same for both);
    /// other names go to `upstream` when given, else are refused.
    pub async fn start(
        addr: SocketAddr,
        names: SharedNames,
        upstream: Option<SocketAddr>,
    ) -> std::io::Result<Self> {
        let (udp, tcp) = bind_both(addr).await?;
        let addr = udp.local_addr()?;
        let mut server = Server::new(Handler::new(names, upstream));
        server.register_socket(udp);
        server.register_listener(tcp, TCP_IDLE, 32);
        Ok(Self {
            addr,
            server: Some(server),
        })
    }

    /// Stops answering; returns once the sockets are closed.
    pub async fn stop(mut self) {
        if let Some(mut server) = self.server.take() {
            if let Err(error) = server.shutdown_gracefully().await {
                tracing::debug!(%error, "stopping the DNS server");
            }
        }
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        if let Some(server) = &self.server {
            server.shutdown_token().cancel();
        }
    }
}

/// A UDP socket and a TCP listener on the same address; with port 0, on the same free
/// port (tried a few times: the port UDP got may be taken for TCP).
async fn bind_both(
    addr: SocketAddr,
) -> std::io::Result<(tokio::net::UdpSocket, tokio::net::TcpListener)> {
    let mut last = None;
    for _ in 0..8 {
        let udp = tokio::net::UdpSocket::bind(addr).await?;
        let bound = udp.local_addr()?;
        match tokio::net::TcpListener::bind(bound).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(error) if addr.port() == 0 => last = Some(error),
            Err(error) => return Err(error),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free port for both UDP and TCP")))
}
