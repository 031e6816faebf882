//! Service endpoints: version (`/`), health, readiness, metrics.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{ApiError, Shared};

/// The Qdrant API version this server speaks (clients check the major and minor numbers).
pub const QDRANT_API_VERSION: &str = "1.20.0";

pub(crate) async fn root() -> Response {
    axum::Json(json!({
        "title": "deftech - vector search engine (Qdrant-compatible REST API)",
        "version": QDRANT_API_VERSION,
        "deftech_version": env!("CARGO_PKG_VERSION"),
    }))
    .into_response()
}

pub(crate) async fn healthz() -> &'static str {
    "healthz check passed"
}

pub(crate) async fn readyz(State(s): State<Shared>) -> Response {
    if s.db.get().is_some() {
        "all shards are ready".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "opening collections").into_response()
    }
}

pub(crate) async fn metrics(State(s): State<Shared>) -> Result<Response, ApiError> {
    let state = s.clone();
    let text = tokio::task::spawn_blocking(move || state.metrics.render(state.db.get()))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(([("content-type", "text/plain; version=0.0.4")], text).into_response())
}
