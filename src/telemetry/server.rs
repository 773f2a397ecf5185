//! A service's HTTP endpoints: `/metrics` (Prometheus), `/healthz` (the process answers) and
//! `/readyz` (every readiness probe says ready: 200, else 503; the body says each probe's
//! answer).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::util::health::Health;

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serves `registry` at `http://<addr>/metrics`, and `health` at `/healthz` and `/readyz`, until
/// `shutdown`. Returns the address bound (the port chosen when `addr`'s is 0) once it listens.
pub async fn serve(
    addr: SocketAddr,
    registry: Registry,
    health: Health,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .with_state(Arc::new(registry))
        .merge(health_routes(health));
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        if let Err(e) = served {
            tracing::error!("metrics endpoint on {bound}: {e}");
        }
    });
    tracing::info!("metrics at http://{bound}/metrics, health at /healthz and /readyz");
    Ok(bound)
}

/// `/healthz` and `/readyz` over `health`.
pub fn health_routes<S: Clone + Send + Sync + 'static>(health: Health) -> Router<S> {
    Router::new()
        .route("/healthz", get(|| async { "ok: alive\n" }))
        .route("/readyz", get(ready))
        .with_state(health)
}

async fn ready(State(health): State<Health>) -> impl IntoResponse {
    let answers = tokio::task::spawn_blocking(move || health.check())
        .await
        .unwrap_or_else(|e| vec![("probes", Err(format!("a probe failed: {e}")))]);
    let status = match Health::ready(&answers) {
        true => StatusCode::OK,
        false => StatusCode::SERVICE_UNAVAILABLE,
    };
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        Health::report(&answers),
    )
}

async fn metrics(State(registry): State<Arc<Registry>>) -> impl IntoResponse {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &registry) {
        Ok(()) => (StatusCode::OK, [(header::CONTENT_TYPE, CONTENT_TYPE)], text),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain")],
            e.to_string(),
        ),
    }
}
