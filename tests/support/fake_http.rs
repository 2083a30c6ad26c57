//! A deliberately small HTTP/1.1 server for the fakes of Azure: one request per connection
//! (`Connection: close`), Content-Length bodies only, and full control over the connection, so a
//! fake can answer, stall, drop the connection or never answer at all.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Clone, Debug)]
pub struct FakeRequest {
    pub method: String,
    /// Path without the query, as sent (percent-encoded).
    pub path: String,
    /// Query parameters, decoded.
    pub query: Vec<(String, String)>,
    /// The query as sent (percent-encoded), without `?`.
    pub raw_query: String,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl FakeRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == &name.to_ascii_lowercase()).map(|(_, v)| v.as_str())
    }

    pub fn query(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

pub enum FakeReply {
    Respond {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Close the connection without answering.
    Drop,
    /// Keep the connection open and never answer.
    Hang,
}

impl FakeReply {
    pub fn json(status: u16, body: &serde_json::Value) -> Self {
        FakeReply::Respond {
            status,
            headers: vec![("Content-Type".into(), "application/json; charset=utf-8".into())],
            body: serde_json::to_vec(body).unwrap(),
        }
    }

    pub fn empty(status: u16) -> Self {
        FakeReply::Respond { status, headers: Vec::new(), body: Vec::new() }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        if let FakeReply::Respond { headers, .. } = &mut self {
            headers.push((name.into(), value.into()));
        }
        self
    }
}

pub type Handler = Arc<dyn Fn(FakeRequest) -> Pin<Box<dyn Future<Output = FakeReply> + Send>> + Send + Sync>;

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        411 => "Length Required",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// Serves `handler` on a loopback port until the returned task is aborted or the runtime ends.
pub async fn serve(handler: Handler) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { continue };
            // Answers go out at once: no Nagle wait for the client's delayed ACK.
            let _ = stream.set_nodelay(true);
            let handler = Arc::clone(&handler);
            tokio::spawn(async move {
                let Some(request) = read_request(&mut stream).await else {
                    let _ = stream
                        .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                        .await;
                    return;
                };
                match handler(request).await {
                    FakeReply::Respond { status, headers, body } => {
                        let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
                        for (k, v) in &headers {
                            head.push_str(&format!("{k}: {v}\r\n"));
                        }
                        head.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n", body.len()));
                        // One write: head and body in one segment where they fit.
                        let mut answer = head.into_bytes();
                        answer.extend_from_slice(&body);
                        let _ = stream.write_all(&answer).await;
                        let _ = stream.shutdown().await;
                    }
                    FakeReply::Drop => drop(stream),
                    FakeReply::Hang => {
                        std::future::pending::<()>().await;
                    }
                }
            });
        }
    });
    (addr, task)
}

async fn read_request(stream: &mut tokio::net::TcpStream) -> Option<FakeRequest> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buf.len() > 64 * 1024 {
            return None;
        }
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).ok()?;
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_owned();
    let target = request_line.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    if headers.iter().any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked")) {
        return None; // Azure clients send Content-Length; anything else is a bug worth seeing.
    }
    let length: usize = headers.iter().find(|(k, _)| k == "content-length").map_or(Some(0), |(_, v)| v.parse().ok())?;
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let raw_query = query.to_owned();
    let query = serde_urlencoded::from_str::<Vec<(String, String)>>(query).ok()?;
    Some(FakeRequest { method, path: path.to_owned(), query, raw_query, headers, body })
}
