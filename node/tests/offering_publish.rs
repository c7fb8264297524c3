//! `gatemesh offering publish` against a tiny registry on loopback: 5xx is
//! retried with backoff until the registry accepts; a 4xx is reported at
//! once; a registry that never answers well exhausts the attempts.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use node::offering::publish::{PublishError, RetryPolicy, publish};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A registry answering each POST with the next status of `script` (the
/// last one repeats); returns its URL, the request count and the bodies.
async fn registry(
    script: Vec<(u16, &'static str)>,
) -> (String, Arc<AtomicU32>, Arc<std::sync::Mutex<Vec<Vec<u8>>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!(
        "http://{}/v1/offerings",
        listener.local_addr().expect("addr")
    );
    let count = Arc::new(AtomicU32::new(0));
    let bodies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (count_task, bodies_task) = (count.clone(), bodies.clone());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let n = count_task.fetch_add(1, Ordering::SeqCst) as usize;
            let (status, body) = script[n.min(script.len() - 1)];
            let received = read_request(&mut socket).await;
            bodies_task.lock().expect("lock").push(received);
            let answer = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(answer.as_bytes()).await;
            let _ = socket.shutdown().await;
        }
    });
    (url, count, bodies)
}

/// Reads one HTTP/1.1 request with a content-length body; returns the body.
async fn read_request(socket: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let Ok(n) = socket.read(&mut buf).await else {
            return Vec::new();
        };
        if n == 0 {
            return Vec::new();
        }
        data.extend_from_slice(&buf[..n]);
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while data.len() < end + 4 + length {
                let Ok(n) = socket.read(&mut buf).await else {
                    break;
                };
                if n == 0 {
                    break;
                }
                data.extend_from_slice(&buf[..n]);
            }
            return data[end + 4..].to_vec();
        }
    }
}

fn fast_policy(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        first_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(40),
        timeout: Duration::from_secs(5),
    }
}

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

#[tokio::test]
async fn failures_are_retried_until_the_registry_accepts() {
    let (url, count, bodies) = registry(vec![
        (503, "restarting"),
        (502, "bad gateway"),
        (201, "{\"id\":\"listing-7\"}"),
    ])
    .await;
    let body = bytes::Bytes::from_static(br#"{"listing":"{}","signature":"0x00"}"#);
    let report = publish(&client(), &url, body.clone(), &fast_policy(5))
        .await
        .expect("accepted on the third attempt");
    assert_eq!(report.attempts, 3);
    assert_eq!(report.status, 201);
    assert_eq!(report.body, "{\"id\":\"listing-7\"}");
    assert_eq!(count.load(Ordering::SeqCst), 3);
    let bodies = bodies.lock().expect("lock");
    assert!(
        bodies.iter().all(|b| b.as_slice() == body.as_ref()),
        "every attempt sends the listing"
    );
}

#[tokio::test]
async fn a_rejection_is_reported_without_retrying() {
    let (url, count, _) = registry(vec![(422, "signature does not verify")]).await;
    let error = publish(
        &client(),
        &url,
        bytes::Bytes::from_static(b"{}"),
        &fast_policy(5),
    )
    .await
    .expect_err("rejected");
    match error {
        PublishError::Rejected {
            status,
            body,
            attempts,
        } => {
            assert_eq!((status, attempts), (422, 1));
            assert_eq!(body, "signature does not verify");
        }
        other => panic!("expected a rejection, got {other}"),
    }
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn attempts_are_bounded() {
    let (url, count, _) = registry(vec![(500, "down")]).await;
    let error = publish(
        &client(),
        &url,
        bytes::Bytes::from_static(b"{}"),
        &fast_policy(3),
    )
    .await
    .expect_err("never accepted");
    assert!(
        matches!(&error, PublishError::Exhausted { attempts: 3, last_error } if last_error.contains("500")),
        "{error}"
    );
    assert_eq!(count.load(Ordering::SeqCst), 3);
    // Connection refused is retried too, and bounded.
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let dead = format!("http://{}/", closed.local_addr().expect("addr"));
    drop(closed);
    let error = publish(
        &client(),
        &dead,
        bytes::Bytes::from_static(b"{}"),
        &fast_policy(2),
    )
    .await
    .expect_err("nobody listens");
    assert!(
        matches!(error, PublishError::Exhausted { attempts: 2, .. }),
        "{error}"
    );
}
