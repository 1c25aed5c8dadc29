//! Limits are flags, and going over one gives a clear error (real processes, etcd API).

use rudder_proto::etcdserverpb::watch_request::RequestUnion;
use rudder_proto::etcdserverpb::{PutRequest, WatchCreateRequest, WatchRequest};
use rudder_tests::{kv, rudder_binary_beside_tests, watch, ProcessCluster};
use tokio_stream::wrappers::ReceiverStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn going_over_a_limit_gets_an_error_that_names_it() {
    let flags: Vec<String> = [
        "--max-watchers-per-stream=2",
        "--max-request-bytes=1000",
        "--max-grpc-message-bytes=8192",
    ]
    .map(String::from)
    .to_vec();
    let cluster =
        ProcessCluster::start_rudder(&rudder_binary_beside_tests(), 1, &flags).expect("a member");
    let addr = &cluster.members[0].client_addr;
    let mut client = kv(addr).await.unwrap();

    let too_large = PutRequest {
        key: b"k".to_vec(),
        value: vec![b'x'; 2000],
        ..Default::default()
    };
    let error = client.put(too_large).await.unwrap_err();
    assert!(
        error.message().contains("request is too large")
            && error.message().contains("--max-request-bytes"),
        "{error:?}"
    );

    let over_grpc = PutRequest {
        key: b"k".to_vec(),
        value: vec![b'x'; 20_000],
        ..Default::default()
    };
    let error = client.put(over_grpc).await.unwrap_err();
    assert_eq!(error.code(), tonic::Code::OutOfRange, "{error:?}");

    let (sender, receiver) = tokio::sync::mpsc::channel(8);
    let mut responses = watch(addr)
        .await
        .unwrap()
        .watch(ReceiverStream::new(receiver))
        .await
        .unwrap()
        .into_inner();
    for n in 0..3 {
        let create = WatchCreateRequest {
            key: format!("w{n}").into_bytes(),
            ..Default::default()
        };
        sender
            .send(WatchRequest {
                request_union: Some(RequestUnion::CreateRequest(create)),
            })
            .await
            .unwrap();
        let response = responses
            .message()
            .await
            .unwrap()
            .expect("a created response");
        assert!(response.created);
        if n < 2 {
            assert!(!response.canceled, "watch {n} is within the limit");
        } else {
            assert!(response.canceled, "the third watch is refused");
            assert!(
                response.cancel_reason.contains("--max-watchers-per-stream"),
                "{}",
                response.cancel_reason
            );
        }
    }
    // Nothing was written by the refused requests.
    let range = rudder_proto::etcdserverpb::RangeRequest {
        key: b"k".to_vec(),
        ..Default::default()
    };
    assert_eq!(client.range(range).await.unwrap().into_inner().count, 0);
}
