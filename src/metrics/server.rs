//! The metrics and health endpoint: a minimal HTTP/1.1 server on a tokio `TcpListener`.
//! `GET /metrics` renders the registry (Prometheus text format), `GET /healthz` answers 200 while
//! the process runs, `GET /readyz` answers 200 once the daemon raised its ready flag and 503
//! before. One request per connection (`Connection: close`), which is what scrapers and probes do.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::Metrics;

/// Longest request head accepted, in bytes.
const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// Time a client has to send its request head, and to read the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; further clients wait in the listen backlog.
const MAX_CONNECTIONS: usize = 32;

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen for metrics on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot read the metrics listener's address: {0}")]
    LocalAddr(std::io::Error),
}

/// A bound, not yet serving, metrics endpoint.
#[derive(Debug)]
pub struct MetricsServer {
    listener: TcpListener,
    metrics: Arc<Metrics>,
}

impl MetricsServer {
    /// Binds `addr` (port 0 picks a free port; see [`MetricsServer::local_addr`]).
    pub async fn bind(addr: SocketAddr, metrics: Arc<Metrics>) -> Result<Self, ServerError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source })?;
        Ok(MetricsServer { listener, metrics })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> Result<SocketAddr, ServerError> {
        self.listener.local_addr().map_err(ServerError::LocalAddr)
    }

    /// Serves requests until `shutdown` completes. Connections in progress then finish on their
    /// own tasks (each is bounded by a 5 s timeout).
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        tokio::pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                () = &mut shutdown => return,
                accepted = self.listener.accept() => accepted,
            };
            let stream = match accepted {
                Ok((stream, _peer)) => stream,
                Err(error) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    tracing::warn!(%error, "metrics endpoint cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                return;
            };
            let metrics = Arc::clone(&self.metrics);
            tokio::spawn(async move {
                let _permit = permit;
                if let Err(error) = handle(stream, &metrics).await {
                    tracing::debug!(%error, "metrics request failed");
                }
            });
        }
    }
}

async fn handle(mut stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let head = match tokio::time::timeout(IO_TIMEOUT, read_head(&mut stream)).await {
        Ok(head) => head?,
        Err(_) => return Ok(()),
    };
    let response = match head {
        Some(head) => respond(&head, metrics),
        None => Response::text(400, "Bad Request", "request head too large or incomplete\n"),
    };
    let bytes = response.to_bytes();
    match tokio::time::timeout(IO_TIMEOUT, stream.write_all(&bytes)).await {
        Ok(result) => result?,
        Err(_) => return Ok(()),
    }
    stream.shutdown().await
}

/// Reads until the blank line that ends the head; `None` when it is too large or the client
/// closed the connection first.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<String>> {
    let mut buffer = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            buffer.truncate(end);
            return Ok(Some(String::from_utf8_lossy(&buffer).into_owned()));
        }
        if buffer.len() > MAX_REQUEST_BYTES {
            return Ok(None);
        }
    }
}

struct Response {
    status: u16,
    reason: &'static str,
    content_type: &'static str,
    body: String,
    head_only: bool,
}

impl Response {
    fn text(status: u16, reason: &'static str, body: &str) -> Self {
        Response {
            status,
            reason,
            content_type: "text/plain; charset=utf-8",
            body: body.to_string(),
            head_only: false,
        }
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.status,
            self.reason,
            self.content_type,
            self.body.len()
        );
        if self.status == 405 {
            out.push_str("Allow: GET, HEAD\r\n");
        }
        out.push_str("\r\n");
        if !self.head_only {
            out.push_str(&self.body);
        }
        out.into_bytes()
    }
}

/// Routes one request head to its response. Pure, so it is tested without sockets.
fn respond(head: &str, metrics: &Metrics) -> Response {
    let request_line = head.lines().next().unwrap_or_default();
    let mut parts = request_line.split_whitespace();
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Response::text(400, "Bad Request", "malformed request line\n");
    };
    if !version.starts_with("HTTP/1.") {
        return Response::text(505, "HTTP Version Not Supported", "HTTP/1.x only\n");
    }
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return Response::text(405, "Method Not Allowed", "use GET\n");
    }
    let path = target.split('?').next().unwrap_or(target);
    let mut response = match path {
        "/metrics" => Response {
            status: 200,
            reason: "OK",
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: metrics.render(),
            head_only: false,
        },
        "/healthz" => Response::text(200, "OK", "ok\n"),
        "/readyz" if metrics.is_ready() => Response::text(200, "OK", "ready\n"),
        "/readyz" => Response::text(503, "Service Unavailable", "not ready\n"),
        _ => Response::text(404, "Not Found", "try /metrics, /healthz or /readyz\n"),
    };
    response.head_only = head_only;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let metrics = Metrics::new();
        let cases = [
            ("GET /metrics HTTP/1.1\r\nHost: x", 200),
            ("GET /metrics?name=x HTTP/1.1", 200),
            ("HEAD /healthz HTTP/1.0", 200),
            ("GET /readyz HTTP/1.1", 503),
            ("GET /nope HTTP/1.1", 404),
            ("POST /metrics HTTP/1.1", 405),
            ("GET /metrics HTTP/2", 505),
            ("GET", 400),
            ("", 400),
        ];
        for (head, status) in cases {
            assert_eq!(respond(head, &metrics).status, status, "{head:?}");
        }
        metrics.set_ready(true);
        assert_eq!(respond("GET /readyz HTTP/1.1", &metrics).status, 200);
    }

    #[test]
    fn head_requests_get_headers_without_body() {
        let metrics = Metrics::new();
        let bytes = respond("HEAD /healthz HTTP/1.1", &metrics).to_bytes();
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(text.contains("Content-Length: 3\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
    }
}
