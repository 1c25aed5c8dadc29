//! The cluster DNS server over the wire (UDP and TCP on loopback port 0), answering from the
//! names it is given.

use std::net::SocketAddr;
use std::sync::Arc;

use hickory_proto::op::{Edns, Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use rudder_node::dns::{ClusterNames, DnsServer, SharedNames};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn kubia() -> Service {
    Service {
        metadata: ObjectMeta {
            namespace: Some("default".into()),
            name: Some("kubia-http".into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some("10.96.0.42".into()),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 8080,
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn query(name: &str, kind: RecordType, edns: bool) -> Vec<u8> {
    let mut message = Message::query();
    message.add_query(Query::query(Name::from_ascii(name).unwrap(), kind));
    if edns {
        message.edns = Some(Edns::new());
    }
    message.to_vec().unwrap()
}

async fn over_udp(server: SocketAddr, question: &[u8]) -> Message {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.send_to(question, server).await.unwrap();
    let mut buffer = [0u8; 4096];
    let (length, _) = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        socket.recv_from(&mut buffer),
    )
    .await
    .expect("an answer within 5 s")
    .unwrap();
    Message::from_vec(&buffer[..length]).unwrap()
}

async fn over_tcp(server: SocketAddr, question: &[u8]) -> Message {
    let mut stream = tokio::net::TcpStream::connect(server).await.unwrap();
    stream
        .write_all(&(question.len() as u16).to_be_bytes())
        .await
        .unwrap();
    stream.write_all(question).await.unwrap();
    let length = stream.read_u16().await.unwrap();
    let mut buffer = vec![0u8; usize::from(length)];
    stream.read_exact(&mut buffer).await.unwrap();
    Message::from_vec(&buffer).unwrap()
}

fn addresses(answer: &Message) -> Vec<String> {
    answer
        .answers
        .iter()
        .map(|record| match &record.data {
            RData::A(a) => a.0.to_string(),
            other => format!("{other}"),
        })
        .collect()
}

#[tokio::test]
async fn the_server_answers_cluster_names_over_udp_and_tcp_and_refuses_the_rest() {
    let names = SharedNames::default();
    let server = DnsServer::start("127.0.0.1:0".parse().unwrap(), names.clone(), None)
        .await
        .expect("the DNS server starts");
    let name = "kubia-http.default.svc.cluster.local.";

    // Before the node has seen the Services: SERVFAIL, so clients try again.
    let early = over_udp(server.addr, &query(name, RecordType::A, false)).await;
    assert_eq!(early.metadata.response_code, ResponseCode::ServFail);

    let service = kubia();
    let domain = Name::from_ascii("cluster.local.").unwrap();
    let current = ClusterNames::new(&domain, [(&service, Vec::new())], 1);
    *names.write().unwrap() = Some(Arc::new(current));

    for answer in [
        over_udp(server.addr, &query(name, RecordType::A, false)).await,
        over_tcp(server.addr, &query(name, RecordType::A, false)).await,
    ] {
        assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
        assert!(answer.metadata.authoritative);
        assert_eq!(addresses(&answer), ["10.96.0.42"]);
    }

    // EDNS asked, EDNS answered.
    let with_edns = over_udp(server.addr, &query(name, RecordType::A, true)).await;
    assert!(with_edns.edns.is_some(), "{with_edns:?}");

    let unknown = over_udp(
        server.addr,
        &query("nothing.default.svc.cluster.local.", RecordType::A, false),
    )
    .await;
    assert_eq!(unknown.metadata.response_code, ResponseCode::NXDomain);
    assert!(unknown.answers.is_empty());
    assert_eq!(
        unknown.authorities.first().map(|r| r.record_type()),
        Some(RecordType::SOA),
        "a negative answer carries the zone's SOA: {unknown:?}"
    );

    let outside = over_udp(server.addr, &query("example.com.", RecordType::A, false)).await;
    assert_eq!(outside.metadata.response_code, ResponseCode::Refused);

    // In reverse: the cluster IP names its Service; another address is not ours to answer.
    let reverse = over_udp(
        server.addr,
        &query("42.0.96.10.in-addr.arpa.", RecordType::PTR, false),
    )
    .await;
    assert_eq!(reverse.metadata.response_code, ResponseCode::NoError);
    let named: Vec<String> = reverse.answers.iter().map(|r| r.data.to_string()).collect();
    assert_eq!(
        named,
        ["kubia-http.default.svc.cluster.local."],
        "{reverse:?}"
    );
    let elsewhere = over_udp(
        server.addr,
        &query("1.0.0.127.in-addr.arpa.", RecordType::PTR, false),
    )
    .await;
    assert_eq!(elsewhere.metadata.response_code, ResponseCode::Refused);

    server.stop().await;
}

/// A resolver upstream of the cluster DNS: answers every A question with 192.0.2.7 (and
/// recursion available), on UDP at a free port of its own.
async fn fake_upstream() -> SocketAddr {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buffer = [0u8; 4096];
        while let Ok((length, from)) = socket.recv_from(&mut buffer).await {
            let Ok(question) = Message::from_vec(&buffer[..length]) else {
                continue;
            };
            let mut answer = Message::response(question.metadata.id, question.metadata.op_code);
            answer.metadata.recursion_available = true;
            for query in &question.queries {
                answer.add_query(query.clone());
                answer.add_answer(hickory_proto::rr::Record::from_rdata(
                    query.name().clone(),
                    60,
                    RData::A(hickory_proto::rr::rdata::A([192, 0, 2, 7].into())),
                ));
            }
            let _ = socket.send_to(&answer.to_vec().unwrap(), from).await;
        }
    });
    addr
}

#[tokio::test]
async fn names_outside_the_cluster_go_upstream_when_one_is_given() {
    let names = SharedNames::default();
    let service = kubia();
    let domain = Name::from_ascii("cluster.local.").unwrap();
    *names.write().unwrap() = Some(Arc::new(ClusterNames::new(
        &domain,
        [(&service, Vec::new())],
        1,
    )));
    let upstream = fake_upstream().await;
    let server = DnsServer::start("127.0.0.1:0".parse().unwrap(), names, Some(upstream))
        .await
        .expect("the DNS server starts");

    let outside = over_udp(server.addr, &query("example.com.", RecordType::A, false)).await;
    assert_eq!(outside.metadata.response_code, ResponseCode::NoError);
    assert_eq!(addresses(&outside), ["192.0.2.7"]);
    assert!(outside.metadata.recursion_available, "{outside:?}");
    assert!(!outside.metadata.authoritative, "not ours to vouch for");
    // Cluster names are still answered here, not upstream.
    let inside = over_tcp(
        server.addr,
        &query(
            "kubia-http.default.svc.cluster.local.",
            RecordType::A,
            false,
        ),
    )
    .await;
    assert_eq!(addresses(&inside), ["10.96.0.42"]);
    server.stop().await;

    // An upstream that does not answer: SERVFAIL, so the client tries its next server.
    let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let names = SharedNames::default();
    *names.write().unwrap() = Some(Arc::new(ClusterNames::new(&domain, [], 1)));
    let server = DnsServer::start(
        "127.0.0.1:0".parse().unwrap(),
        names,
        Some(silent.local_addr().unwrap()),
    )
    .await
    .unwrap();
    let failed = over_udp(server.addr, &query("example.com.", RecordType::A, false)).await;
    assert_eq!(failed.metadata.response_code, ResponseCode::ServFail);
    server.stop().await;
}
