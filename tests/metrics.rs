//! The metrics endpoint over real TCP: bound on 127.0.0.1:0, scraped with plain HTTP/1.1
//! requests (OpenMetrics text ending in `# EOF`; 404 and 405 for other paths and methods; HEAD
//! without a body), shut down through its shutdown future.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use vaewatch::metrics::{Metrics, MetricsServer};
use vaewatch::telemetry::RejectReason;

async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    request(addr, "GET", path).await
}

async fn request(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap();
    (status, body)
}

#[tokio::test]
async fn scrape_health_and_readiness() {
    let metrics = Arc::new(Metrics::new());
    let server = MetricsServer::bind(SocketAddr::from(([127, 0, 0, 1], 0)), Arc::clone(&metrics))
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    assert_ne!(addr.port(), 0);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve(async {
        let _ = stopped.await;
    }));

    metrics.messages_consumed.add(3);
    metrics.dead_lettered(RejectReason::Oversize).inc();
    metrics.inference_seconds.observe(0.004);

    let (status, body) = get(addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        body.contains("\nvaewatch_messages_consumed_total 3\n"),
        "{body}"
    );
    assert!(body.contains("vaewatch_dead_lettered_total{reason=\"oversize\"} 1\n"));
    assert!(body.contains("vaewatch_inference_seconds_bucket{le=\"0.005\"} 1\n"));
    assert!(body.contains("vaewatch_inference_seconds_count 1\n"));
    assert!(body.ends_with("# EOF\n"), "{body}");
    assert_eq!(get(addr, "/metrics?name=x").await.0, 200);

    assert_eq!(get(addr, "/healthz").await, (200, "ok\n".to_string()));
    assert_eq!(get(addr, "/readyz").await.0, 503);
    metrics.set_ready(true);
    assert_eq!(get(addr, "/readyz").await, (200, "ready\n".to_string()));
    assert_eq!(get(addr, "/other").await.0, 404);
    assert_eq!(request(addr, "POST", "/metrics").await.0, 405);
    assert_eq!(
        request(addr, "HEAD", "/healthz").await,
        (200, String::new())
    );

    stop.send(()).unwrap();
    serving.await.unwrap();
    assert!(TcpStream::connect(addr).await.is_err());
}
