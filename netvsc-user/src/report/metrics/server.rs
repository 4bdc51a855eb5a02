//! The HTTP side of `--metrics-listen`: `GET /metrics` (OpenMetrics text, what Prometheus
//! scrapes) and `GET /healthz` (200 once the agent is ready, 503 while it starts or stops: what a
//! Kubernetes startup/readiness probe asks). hyper's HTTP/1 server on the agent's runtime.

use std::convert::Infallible;
use std::net::SocketAddr;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tracing::{debug, info};

use super::Metrics;
use crate::report::health::{Health, Phase};
use crate::usage::UsageError;

const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A bound listening socket: bound before the agent creates anything, so that an address in use
/// ends the start cleanly.
pub struct MetricsListener {
    listener: std::net::TcpListener,
    pub addr: SocketAddr,
}

/// Binds `addr` (port 0 picks a free port; [`MetricsListener::addr`] says which).
pub fn bind(addr: SocketAddr) -> Result<MetricsListener, UsageError> {
    let bad = |err: std::io::Error| UsageError::MetricsListen { addr: addr.to_string(), why: err.to_string() };
    let listener = std::net::TcpListener::bind(addr).map_err(bad)?;
    listener.set_nonblocking(true).map_err(bad)?;
    let addr = listener.local_addr().map_err(bad)?;
    Ok(MetricsListener { listener, addr })
}

/// Serves scrapes and probes until the runtime ends. Must be called inside the tokio runtime.
pub fn serve(listener: MetricsListener, metrics: Metrics, health: Health) -> std::io::Result<()> {
    let addr = listener.addr;
    let listener = tokio::net::TcpListener::from_std(listener.listener)?;
    info!(%addr, "metrics at http://{addr}/metrics, health at /healthz");
    tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else { continue };
            let (metrics, health) = (metrics.clone(), health.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let response = respond(request.method(), request.uri().path(), &metrics, &health);
                    async move { Ok::<_, Infallible>(response) }
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    // A client that never finishes its request does not hold a task for ever.
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service);
                if let Err(err) = connection.await {
                    debug!(%peer, error = %err, "metrics connection ended with an error");
                }
            });
        }
    });
    Ok(())
}

fn respond(method: &Method, path: &str, metrics: &Metrics, health: &Health) -> Response<Full<Bytes>> {
    if method != Method::GET && method != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n".into());
    }
    match path {
        "/metrics" => {
            let mut response = Response::new(Full::new(Bytes::from(metrics.encode())));
            response
                .headers_mut()
                .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static(OPENMETRICS));
            response
        }
        "/healthz" => {
            let phase = health.phase();
            let status = if phase == Phase::Ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
            plain(status, format!("{}\n", phase.as_str()))
        }
        _ => plain(StatusCode::NOT_FOUND, "not found: try /metrics or /healthz\n".into()),
    }
}

fn plain(status: StatusCode, text: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = status;
    response.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("text/plain"));
    response
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt as _;

    use super::*;

    async fn get(path: &str, health: &Health) -> (StatusCode, String, String) {
        let response = respond(&Method::GET, path, &Metrics::new(), health);
        let status = response.status();
        let kind = response.headers()[hyper::header::CONTENT_TYPE].to_str().unwrap().to_owned();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, kind, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn healthz_is_ok_only_while_ready() {
        let health = Health::default();
        assert_eq!(get("/healthz", &health).await.0, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(get("/healthz", &health).await.2, "starting\n");
        health.enter(Phase::Ready, "test");
        assert_eq!(get("/healthz", &health).await.0, StatusCode::OK);
        health.enter(Phase::Stopping, "test");
        let (status, _, body) = get("/healthz", &health).await;
        assert_eq!((status, body.as_str()), (StatusCode::SERVICE_UNAVAILABLE, "stopping\n"));
    }

    #[tokio::test]
    async fn metrics_are_openmetrics_text_and_other_requests_are_refused() {
        let health = Health::default();
        let (status, kind, body) = get("/metrics", &health).await;
        assert_eq!((status, kind.as_str()), (StatusCode::OK, OPENMETRICS));
        assert!(body.contains("# TYPE netvsc_watch_ebpf_ring_drops counter"), "{body}");
        assert_eq!(get("/", &health).await.0, StatusCode::NOT_FOUND);
        let post = respond(&Method::POST, "/metrics", &Metrics::new(), &health);
        assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
    }
}
