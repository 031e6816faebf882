//! The Qdrant-compatible REST API: routes, the `{"result", "status", "time"}` envelope, the one
//! function that maps engine errors to HTTP statuses, authentication and metrics middleware.

mod collections;
pub(crate) mod convert;
mod points;
mod service;
mod snapshots;

pub(crate) use snapshots::{background as snapshots_background, iso_time};

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, MatchedPath, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use deftech_vec::{Collection, Database};
use serde::Serialize;
use serde_json::{Value, json};

use crate::auth::{Denied, Keys, Role};
use crate::config::ServerConfig;
use crate::metrics::Metrics;

/// Shared server state.
pub struct AppState {
    /// Set once the database has been opened (WAL replayed).
    pub db: OnceLock<Database>,
    pub config: ServerConfig,
    pub keys: Keys,
    pub metrics: Metrics,
    /// The snapshot store, once opened.
    pub store: OnceLock<Arc<dyn deftech_vec::ObjectStore>>,
    /// Why the snapshot store could not be opened.
    pub store_error: OnceLock<String>,
    /// WAL archivers per collection (with `snapshots.wal_archive`).
    pub archivers: std::sync::Mutex<std::collections::HashMap<String, deftech_vec::WalArchiver>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("ready", &self.db.get().is_some())
            .finish_non_exhaustive()
    }
}

pub type Shared = Arc<AppState>;

impl AppState {
    pub(crate) fn db(&self) -> Result<&Database, ApiError> {
        self.db.get().ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the database is still opening",
            )
        })
    }

    pub(crate) fn collection(&self, name: &str) -> Result<Collection, ApiError> {
        Ok(self.db()?.collection(name)?)
    }
}

/// An error response: `{"status": {"error": "..."}, "time": ...}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

/// The one place engine errors become HTTP statuses.
pub fn status_of(e: &deftech_vec::Error) -> StatusCode {
    use deftech_vec::Error as E;
    match e {
        E::CollectionNotFound(_) | E::CollectionDropped(_) | E::PointNotFound(_) => {
            StatusCode::NOT_FOUND
        }
        E::CollectionExists(_) => StatusCode::CONFLICT,
        E::InvalidName { .. }
        | E::DimensionMismatch { .. }
        | E::NonFiniteVector { .. }
        | E::InvalidPayload { .. }
        | E::InvalidFilter(_)
        | E::InvalidArgument { .. } => StatusCode::BAD_REQUEST,
        E::InUse { .. } | E::ReadOnly { .. } => StatusCode::SERVICE_UNAVAILABLE,
        e if e.is_storage_full() => StatusCode::INSUFFICIENT_STORAGE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<deftech_vec::Error> for ApiError {
    fn from(e: deftech_vec::Error) -> Self {
        let status = status_of(&e);
        if status.is_server_error() {
            tracing::error!("request failed: {e}");
        }
        let message = match &e {
            deftech_vec::Error::PointNotFound(_) | deftech_vec::Error::CollectionNotFound(_) => {
                format!("Not found: {e}")
            }
            _ => e.to_string(),
        };
        ApiError::new(status, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"status": {"error": self.message}, "time": 0.0});
        (self.status, axum::Json(body)).into_response()
    }
}

/// The success envelope.
pub(crate) fn ok(result: impl Serialize, started: Instant) -> Response {
    let body = json!({"result": result, "status": "ok", "time": started.elapsed().as_secs_f64()});
    axum::Json(body).into_response()
}

/// A JSON request body; errors (bad JSON, over the size limit) come back in the envelope.
pub(crate) struct JsonBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            let status = e.status();
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    status,
                    "request body is over the server's max_body_bytes limit",
                )
            } else {
                ApiError::new(status, format!("cannot read the request body: {e}"))
            }
        })?;
        if bytes.is_empty() {
            return Ok(JsonBody(Value::Object(Default::default())));
        }
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
    }
}

/// Runs an engine call off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, deftech_vec::Error> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(ApiError::from),
        Err(e) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("request task failed: {e}"),
        )),
    }
}

/// POST routes that only read.
const READ_POSTS: [&str; 7] = [
    "/collections/{name}/points",
    "/collections/{name}/points/search",
    "/collections/{name}/points/search/batch",
    "/collections/{name}/points/query",
    "/collections/{name}/points/query/batch",
    "/collections/{name}/points/scroll",
    "/collections/{name}/points/count",
];

const ADMIN_SNAPSHOT_ROUTES: [&str; 3] = [
    "/collections/{name}/snapshots/recover",
    "/collections/{name}/snapshots/upload",
    "/collections/{name}/snapshots/{snapshot}",
];

const PUBLIC: [&str; 4] = ["/", "/healthz", "/livez", "/readyz"];

/// The role a route needs.
pub(crate) fn required_role(method: &Method, route: &str) -> Option<Role> {
    if PUBLIC.contains(&route) {
        return None;
    }
    Some(match *method {
        Method::GET | Method::HEAD => Role::ReadOnly,
        Method::POST if READ_POSTS.contains(&route) => Role::ReadOnly,
        Method::PUT | Method::DELETE | Method::PATCH if route == "/collections/{name}" => {
            Role::Admin
        }
        // Replacing a collection from a snapshot, or deleting a snapshot.
        _ if ADMIN_SNAPSHOT_ROUTES.contains(&route) => Role::Admin,
        _ => Role::ReadWrite,
    })
}

async fn authenticate(State(s): State<Shared>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    if let Some(need) = required_role(req.method(), &route) {
        match s.keys.check(req.headers(), need) {
            Ok(()) => {}
            Err(Denied::Unauthenticated) => {
                return ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "missing or invalid API key (api-key header or Authorization: Bearer)",
                )
                .into_response();
            }
            Err(Denied::Forbidden { have, need }) => {
                return ApiError::new(
                    StatusCode::FORBIDDEN,
                    format!(
                        "this API key is {}; {} {route} needs {}",
                        have.name(),
                        req.method(),
                        need.name()
                    ),
                )
                .into_response();
            }
        }
    }
    next.run(req).await
}

async fn track(State(s): State<Shared>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().as_str().to_owned();
    let start = Instant::now();
    let resp = next.run(req).await;
    s.metrics
        .observe(&route, &method, resp.status().as_u16(), start.elapsed());
    resp
}

async fn not_found(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no route for {method} {}", uri.path()),
    )
}

/// The whole API.
pub fn router(state: Shared) -> Router {
    let max_body = state.config.limits.max_body_bytes;
    Router::new()
        .route("/", get(service::root))
        .route("/healthz", get(service::healthz))
        .route("/livez", get(service::healthz))
        .route("/readyz", get(service::readyz))
        .route("/metrics", get(service::metrics))
        .route("/collections", get(collections::list))
        .route(
            "/collections/{name}",
            get(collections::info)
                .put(collections::create)
                .patch(collections::update)
                .delete(collections::drop),
        )
        .route("/collections/{name}/exists", get(collections::exists))
        .route("/collections/{name}/index", put(collections::create_index))
        .route(
            "/collections/{name}/index/{field}",
            delete(collections::delete_index),
        )
        .route(
            "/collections/{name}/points",
            put(points::upsert).post(points::retrieve),
        )
        .route("/collections/{name}/points/{id}", get(points::get_one))
        .route("/collections/{name}/points/delete", post(points::delete))
        .route(
            "/collections/{name}/points/payload",
            post(points::set_payload).put(points::overwrite_payload),
        )
        .route(
            "/collections/{name}/points/payload/delete",
            post(points::delete_payload),
        )
        .route(
            "/collections/{name}/points/payload/clear",
            post(points::clear_payload),
        )
        .route("/collections/{name}/points/search", post(points::search))
        .route(
            "/collections/{name}/points/search/batch",
            post(points::search_batch),
        )
        .route("/collections/{name}/points/query", post(points::query))
        .route(
            "/collections/{name}/points/query/batch",
            post(points::query_batch),
        )
        .route("/collections/{name}/points/scroll", post(points::scroll))
        .route("/collections/{name}/points/count", post(points::count))
        .route(
            "/collections/{name}/snapshots",
            get(snapshots::list).post(snapshots::create),
        )
        .route(
            "/collections/{name}/snapshots/recover",
            put(snapshots::recover),
        )
        .route(
            "/collections/{name}/snapshots/upload",
            post(snapshots::upload).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route(
            "/collections/{name}/snapshots/{snapshot}",
            get(snapshots::download).delete(snapshots::delete),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .route_layer(middleware::from_fn_with_state(state.clone(), track))
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_per_route() {
        assert_eq!(required_role(&Method::GET, "/healthz"), None);
        assert_eq!(
            required_role(&Method::GET, "/collections/{name}"),
            Some(Role::ReadOnly)
        );
        assert_eq!(
            required_role(&Method::POST, "/collections/{name}/points/search"),
            Some(Role::ReadOnly)
        );
        assert_eq!(
            required_role(&Method::PUT, "/collections/{name}/points"),
            Some(Role::ReadWrite)
        );
        assert_eq!(
            required_role(&Method::POST, "/collections/{name}/points/delete"),
            Some(Role::ReadWrite)
        );
        assert_eq!(
            required_role(&Method::PUT, "/collections/{name}"),
            Some(Role::Admin)
        );
        assert_eq!(
            required_role(&Method::DELETE, "/collections/{name}"),
            Some(Role::Admin)
        );
    }
}
