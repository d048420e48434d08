//! The fault proxy in front of a real Garage server, through a real S3
//! client and raw HTTP.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};

use super::http::{copy_body, Body, Head};
use super::{Fault, FaultProxy, Plan, Rules};
use crate::garage::tests::{impatient, runtime};
use crate::garage::Garage;

fn key(name: &str) -> ObjectPath {
    ObjectPath::from(name)
}

/// Garage and a proxy in front of it.
fn proxied() -> (Garage, FaultProxy) {
    let garage = Garage::start().unwrap();
    let proxy = FaultProxy::start(garage.s3_addr()).unwrap();
    (garage, proxy)
}

/// Sends `request` on a new connection; everything answered until the
/// server closes it.
fn raw(proxy: &FaultProxy, request: &str) -> String {
    let mut stream = TcpStream::connect(proxy.addr()).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

#[test]
fn slow_down_is_answered_and_retried_by_the_s3_client() {
    let (garage, proxy) = proxied();
    proxy.set(Plan::Next {
        n: 1,
        fault: Fault::SlowDown,
    });
    let bucket = garage.bucket();
    let answer = raw(
        &proxy,
        &format!("GET /{bucket}/x HTTP/1.1\r\nHost: {}\r\n\r\n", proxy.addr()),
    );
    assert!(answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{answer}");
    assert!(answer.contains("Connection: close\r\n"), "{answer}");
    assert!(
        answer.ends_with("</Error>") && answer.contains("<Code>SlowDown</Code>"),
        "{answer}"
    );
    assert_eq!((proxy.seen(), proxy.faulted()), (1, 1));

    // object_store's default RetryConfig retries 503s.
    let store = garage.s3_builder().with_endpoint(proxy.url()).build().unwrap();
    proxy.set(Plan::Next {
        n: 2,
        fault: Fault::SlowDown,
    });
    let rt = runtime();
    rt.block_on(store.put(&key("retried"), PutPayload::from_static(b"retried")))
        .unwrap();
    assert_eq!(proxy.faulted(), 3);
    proxy.set(Plan::Every {
        k: 2,
        fault: Fault::SlowDown,
    });
    // The put passes, its get is faulted, the get's retry passes.
    rt.block_on(store.put(&key("second"), PutPayload::from_static(b"second")))
        .unwrap();
    let got = rt
        .block_on(async { store.get(&key("retried")).await?.bytes().await })
        .unwrap();
    assert_eq!(&got[..], b"retried");
    assert_eq!(proxy.faulted(), 4);
}

#[test]
fn dropped_connections_fail_requests_until_passed() {
    let (garage, proxy) = proxied();
    let rt = runtime();
    let direct = garage.s3_builder().build().unwrap();
    rt.block_on(direct.put(&key("k"), PutPayload::from_static(b"v")))
        .unwrap();

    proxy.set(Plan::Always(Fault::Drop));
    let store = impatient(garage.s3_builder().with_endpoint(proxy.url()), Duration::from_secs(5));
    let put = rt.block_on(store.put(&key("k2"), PutPayload::from_static(b"v2")));
    assert!(put.is_err(), "{put:?}");
    assert!(rt.block_on(store.get(&key("k"))).is_err());
    assert!(proxy.faulted() >= 2);
    assert!(
        rt.block_on(direct.head(&key("k2"))).is_err(),
        "a dropped put stored its object"
    );

    proxy.set(Plan::Pass);
    let got = rt
        .block_on(async { store.get(&key("k")).await?.bytes().await })
        .unwrap();
    assert_eq!(&got[..], b"v");

    // With its default retries, the client retries a dropped request.
    let patient = garage.s3_builder().with_endpoint(proxy.url()).build().unwrap();
    let faulted = proxy.faulted();
    proxy.set(Plan::Next {
        n: 1,
        fault: Fault::Drop,
    });
    let got = rt
        .block_on(async { patient.get(&key("k")).await?.bytes().await })
        .unwrap();
    assert_eq!(&got[..], b"v");
    proxy.set(Plan::Next {
        n: 1,
        fault: Fault::Drop,
    });
    rt.block_on(patient.put(&key("k3"), PutPayload::from_static(b"v3")))
        .unwrap();
    assert_eq!(proxy.faulted() - faulted, 2);
    assert_eq!(rt.block_on(direct.head(&key("k3"))).unwrap().size, 2);
}

#[test]
fn a_black_hole_makes_the_client_time_out() {
    let (garage, proxy) = proxied();
    proxy.set(Plan::Always(Fault::BlackHole));
    let store = impatient(garage.s3_builder().with_endpoint(proxy.url()), Duration::from_secs(1));
    let start = Instant::now();
    let got = runtime().block_on(store.get(&key("k")));
    assert!(got.is_err(), "{got:?}");
    assert!(start.elapsed() < Duration::from_secs(10), "{:?}", start.elapsed());
    assert_eq!(proxy.seen(), 1);
    // Dropping the proxy closes the connection it holds and joins its thread.
    drop(proxy);
}

#[test]
fn a_20_mib_multipart_upload_passes_on_kept_alive_connections() {
    let (garage, proxy) = proxied();
    let store = garage.s3_builder().with_endpoint(proxy.url()).build().unwrap();
    let data: Vec<u8> = (0..20u64 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let rt = runtime();
    rt.block_on(async {
        let mut upload = store.put_multipart(&key("big")).await.unwrap();
        for part in data.chunks(5 << 20) {
            upload.put_part(PutPayload::from(part.to_vec())).await.unwrap();
        }
        upload.complete().await.unwrap();
        assert_eq!(store.head(&key("big")).await.unwrap().size, 20 << 20);
        let got = store.get(&key("big")).await.unwrap().bytes().await.unwrap();
        assert!(got[..] == data[..], "the object differs");
    });
    // Create, 4 parts, complete, head, get.
    assert!(proxy.seen() >= 8, "{}", proxy.seen());
    assert!(proxy.connections() < proxy.seen(), "no connection was reused");
    assert_eq!(proxy.faulted(), 0);
}

#[test]
fn a_refused_chunked_upload_gets_the_servers_answer() {
    let (garage, proxy) = proxied();
    let bucket = garage.bucket();
    let host = proxy.addr();
    // Unsigned: refused, maybe before the server reads the body.
    let answer = raw(
        &proxy,
        &format!(
            "PUT /{bucket}/c HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
             5\r\nhello\r\n0\r\n\r\n"
        ),
    );
    assert!(answer.starts_with("HTTP/1.1 403 "), "{answer}");
    assert!(answer.contains("<Code>AccessDenied</Code>"), "{answer}");
}

/// A plain HTTP server for the proxy's framing: it answers each request
/// on a connection with the request's method and body size as sent
/// (framing included), chunked for a chunked request, with Content-Length
/// otherwise.
fn framing_server() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let stream = stream.unwrap();
            let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
            let mut writer = stream;
            while let Ok(Some(head)) = Head::read(&mut reader) {
                let mut body = Vec::new();
                copy_body(head.request_body().unwrap(), &mut reader, &mut body).unwrap();
                let text = format!("{} {}", head.method(), body.len());
                let answer = match head.request_body().unwrap() {
                    Body::Chunked => format!(
                        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{text}\r\n0\r\nX-T: 1\r\n\r\n",
                        text.len()
                    ),
                    _ => format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{text}", text.len()),
                };
                let answer = match head.method() {
                    "HEAD" => answer.replace("HEAD 0", ""),
                    _ => answer,
                };
                writer.write_all(answer.as_bytes()).unwrap();
            }
        }
    });
    addr
}

#[test]
fn chunked_sized_and_bodiless_messages_share_one_connection() {
    let proxy = FaultProxy::start(framing_server()).unwrap();
    let requests = "PUT /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n\
                    5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n\
                    POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc\
                    HEAD /c HTTP/1.1\r\nHost: h\r\n\r\n\
                    GET /d HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
    let answer = raw(&proxy, requests);
    let expected = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nPUT 46\r\n0\r\nX-T: 1\r\n\r\n\
                    HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nPOST 3\
                    HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n\
                    HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nGET 0";
    assert_eq!(answer, expected);
    assert_eq!((proxy.connections(), proxy.seen(), proxy.faulted()), (1, 4, 0));
}

#[test]
fn random_faults_follow_their_seed() {
    let draws = |seed| {
        let mut rules = Rules::new(Plan::Random {
            p: 0.25,
            seed,
            fault: Fault::Drop,
        });
        (0..400).map(|_| rules.decide().is_some()).collect::<Vec<bool>>()
    };
    assert_eq!(draws(7), draws(7));
    assert_ne!(draws(7), draws(8));
    let faulted = draws(7).iter().filter(|f| **f).count();
    assert!((60..140).contains(&faulted), "{faulted} of 400");

    let mut every = Rules::new(Plan::Every {
        k: 3,
        fault: Fault::SlowDown,
    });
    let pattern: Vec<bool> = (0..6).map(|_| every.decide().is_some()).collect();
    assert_eq!(pattern, [false, false, true, false, false, true]);
}

#[test]
fn random_slow_downs_are_retried_by_the_s3_client() {
    let (garage, proxy) = proxied();
    let store = garage.s3_builder().with_endpoint(proxy.url()).build().unwrap();
    proxy.set(Plan::Random {
        p: 0.3,
        seed: 13,
        fault: Fault::SlowDown,
    });
    let rt = runtime();
    for i in 0..10 {
        let name = format!("r{i}");
        rt.block_on(store.put(&key(&name), PutPayload::from(name.clone())))
            .unwrap();
        let got = rt
            .block_on(async { store.get(&key(&name)).await?.bytes().await })
            .unwrap();
        assert_eq!(&got[..], name.as_bytes());
    }
    assert!(proxy.faulted() > 0 && proxy.seen() >= 20 + proxy.faulted());
}
