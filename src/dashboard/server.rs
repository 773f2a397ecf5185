//! The page and its live updates: `/` (the page, with the current state in it), `/state` (the
//! state as JSON), `/events` (server-sent events: the state again each second), and the page's
//! script and style.

use std::convert::Infallible;
use std::net::SocketAddr;

use axum::extract::State;
use axum::http::header;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::Router;
use futures::Stream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::page::{self, Published};
use crate::telemetry::DashboardMetrics;

#[derive(Clone)]
struct App {
    state: watch::Receiver<Published>,
    metrics: DashboardMetrics,
    shutdown: CancellationToken,
}

/// Serves the page on `listener` until `shutdown`.
pub fn serve(
    listener: tokio::net::TcpListener,
    state: watch::Receiver<Published>,
    metrics: DashboardMetrics,
    health: crate::util::health::Health,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/", get(index))
        .route("/state", get(state_json))
        .route("/events", get(events))
        .route("/app.js", get(script))
        .route("/style.css", get(style))
        .with_state(App {
            state,
            metrics,
            shutdown: shutdown.clone(),
        })
        .merge(crate::telemetry::health_routes(health));
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        if let Err(e) = served {
            tracing::error!("dashboard on {bound}: {e}");
        }
    });
    Ok(bound)
}

async fn index(State(app): State<App>) -> Html<String> {
    Html(page::render(&app.state.borrow()))
}

async fn state_json(State(app): State<App>) -> impl IntoResponse {
    let json = app.state.borrow().json.clone();
    (
        [(header::CONTENT_TYPE, "application/json")],
        json.to_string(),
    )
}

async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        page::SCRIPT,
    )
}

async fn style() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        page::STYLE,
    )
}

/// Counts a viewer for as long as its event stream lives.
struct Viewer(DashboardMetrics);

impl Drop for Viewer {
    fn drop(&mut self) {
        self.0.viewers.dec();
    }
}

async fn events(State(app): State<App>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    app.metrics.viewers.inc();
    let viewer = Viewer(app.metrics.clone());
    let mut rx = app.state.clone();
    // The current state first, then each new one.
    rx.mark_changed();
    let stream = futures::stream::unfold(
        (rx, app.shutdown.clone(), viewer),
        |(mut rx, shutdown, viewer)| async move {
            tokio::select! {
                _ = shutdown.cancelled() => None,
                changed = rx.changed() => {
                    changed.ok()?;
                    let json = rx.borrow_and_update().json.clone();
                    let event = Event::default().event("state").data(&*json);
                    Some((Ok(event), (rx, shutdown, viewer)))
                }
            }
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::default())
}
