//! The HTTP API, served with axum:
//!
//! - `POST /v1/ask` `{"question": "…", "stream": false}` → the [`Answer`] as JSON; with
//!   `"stream": true`, server-sent events: `text` events (`{"text": "…"}`) as the answer is
//!   generated, then one `answer` event (the whole [`Answer`]), or an `error` event;
//! - `POST /v1/documents` `{"id", "title", "text", "format", "source", "classification":
//!   {"level", "compartments", "groups"}}` → `{"outcome", "chunks"}` (writer roles only);
//! - `DELETE /v1/documents/{id}` → `{"deleted": bool}` (writer roles only);
//! - `GET /healthz`.
//!
//! The caller's identity comes only from the bearer token (`Authorization: Bearer …`), looked
//! up in the users file; request bodies cannot name a user (unknown fields are refused). A
//! missing or unknown token is a 401 and an audited denial.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::access::{Label, Level, User};
use crate::assistant::{Answer, Assistant};
use crate::chunk::Format;
use crate::error::Error;
use crate::ingest::{Document, html_to_markdown, rst_to_markdown};

/// One entry of the users file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserEntry {
    /// SHA-256 (hex) of the bearer token; the file never holds the token itself.
    token_sha256: String,
    id: String,
    #[serde(default)]
    roles: Vec<String>,
    clearance: Level,
    #[serde(default)]
    compartments: BTreeSet<String>,
    #[serde(default)]
    groups: BTreeSet<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    #[serde(rename = "user", default)]
    users: Vec<UserEntry>,
}

/// The users the API knows, by the SHA-256 of their bearer token.
#[derive(Clone, Debug, Default)]
pub struct Users {
    entries: Vec<([u8; 32], User)>,
}

impl Users {
    /// Reads a TOML users file:
    ///
    /// ```toml
    /// [[user]]
    /// token_sha256 = "<hex of sha256(token)>"   # printf %s "$TOKEN" | sha256sum
    /// id = "alice"
    /// roles = ["analyst"]            # "admin" or "ingest" may write documents
    /// clearance = "SECRET"           # UNCLASSIFIED, CUI, CONFIDENTIAL, SECRET, TOP_SECRET
    /// compartments = ["SI"]
    /// groups = ["USA"]
    /// ```
    pub fn load(path: &Path) -> crate::Result<Users> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        Users::parse(&text).map_err(|reason| Error::Invalid {
            field: "users file",
            reason: format!("{}: {reason}", path.display()),
        })
    }

    /// Parses the users file's text.
    pub fn parse(text: &str) -> Result<Users, String> {
        let file: UsersFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut users = Users::default();
        for u in file.users {
            let mut digest = [0u8; 32];
            let hex = u.token_sha256.trim();
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("user {}: token_sha256 must be 64 hex digits", u.id));
            }
            for (i, d) in digest.iter_mut().enumerate() {
                *d = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex checked");
            }
            users.entries.push((
                digest,
                User {
                    id: u.id,
                    roles: u.roles,
                    clearance: u.clearance,
                    compartments: u.compartments,
                    groups: u.groups,
                },
            ));
        }
        Ok(users)
    }

    /// Adds a user with a token (tests, embedding applications).
    pub fn add(&mut self, token: &str, user: User) {
        self.entries
            .push((Sha256::digest(token.as_bytes()).into(), user));
    }

    /// The user holding `token`. Compares digests in constant time, over every entry.
    pub fn find(&self, token: &str) -> Option<&User> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for (d, u) in &self.entries {
            let diff = d.iter().zip(&digest).fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if diff == 0 {
                found = Some(u);
            }
        }
        found
    }
}

#[derive(Clone, Debug)]
struct AppState {
    assistant: Arc<Assistant>,
    users: Arc<Users>,
}

/// The router over `assistant`, authenticating with `users`.
pub fn router(assistant: Arc<Assistant>, users: Users) -> Router {
    Router::new()
        .route("/v1/ask", post(ask))
        .route("/v1/documents", post(put_document))
        .route("/v1/documents/{id}", delete(delete_document))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(AppState {
            assistant,
            users: Arc::new(users),
        })
}

/// An error response: `{"error": "…"}` with the matching status.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"error": self.1}))).into_response()
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        let status = match &e {
            Error::Invalid { .. } | Error::Extract { .. } => StatusCode::BAD_REQUEST,
            Error::Denied(_) => StatusCode::FORBIDDEN,
            Error::Backend { .. } | Error::Dimension { .. } => StatusCode::BAD_GATEWAY,
            Error::Audit(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
}

/// Authenticates the request; a failure is audited.
async fn identify(state: &AppState, headers: &HeaderMap, action: &str) -> Result<User, ApiError> {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    if let Some(user) = token.and_then(|t| state.users.find(t)) {
        return Ok(user.clone());
    }
    let reason = if token.is_some() {
        "unknown bearer token"
    } else {
        "no bearer token (Authorization: Bearer …)"
    };
    let assistant = state.assistant.clone();
    let action = action.to_owned();
    let audited =
        tokio::task::spawn_blocking(move || assistant.audit_denial(None, &action, reason))
            .await
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    match audited {
        Ok(()) => Err(ApiError(StatusCode::UNAUTHORIZED, reason.into())),
        Err(e) => Err(e.into()),
    }
}

fn body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("invalid request body: {e}"),
        )
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AskRequest {
    question: String,
    #[serde(default)]
    stream: bool,
}

async fn ask(
    State(state): State<AppState>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let user = identify(&state, &headers, "ask").await?;
    let req: AskRequest = body(&bytes)?;
    let assistant = state.assistant.clone();
    if !req.stream {
        let answer = tokio::task::spawn_blocking(move || assistant.ask(&user, &req.question))
            .await
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
        return Ok(Json(answer).into_response());
    }
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
    tokio::task::spawn_blocking(move || {
        let text_tx = tx.clone();
        let result: crate::Result<Answer> = assistant.ask_stream(&user, &req.question, |t| {
            let _ = text_tx.send(
                Event::default()
                    .event("text")
                    .data(json!({"text": t}).to_string()),
            );
        });
        let last = match result {
            Ok(answer) => Event::default()
                .event("answer")
                .data(serde_json::to_string(&answer).expect("answers serialize")),
            Err(e) => Event::default()
                .event("error")
                .data(json!({"error": e.to_string()}).to_string()),
        };
        let _ = tx.send(last);
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|e| (Ok::<_, Infallible>(e), rx))
    });
    Ok(Sse::new(stream).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DocumentRequest {
    id: String,
    #[serde(default)]
    title: Option<String>,
    text: String,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    source: Option<String>,
    classification: Label,
}

async fn put_document(
    State(state): State<AppState>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let user = identify(&state, &headers, "ingest").await?;
    let req: DocumentRequest = body(&bytes)?;
    let (text, format, html_title) = match req.format.as_deref().unwrap_or("markdown") {
        "markdown" | "md" => (req.text, Format::Markdown, None),
        "plain" | "text" => (req.text, Format::Plain, None),
        "rst" => (rst_to_markdown(&req.text), Format::Markdown, None),
        "html" => {
            let (t, title) = html_to_markdown(&req.text);
            (t, Format::Markdown, title)
        }
        other => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!("invalid format {other:?}: use markdown, plain, rst or html"),
            ));
        }
    };
    let mut doc = Document::new(
        req.id.clone(),
        req.title.or(html_title).unwrap_or_else(|| req.id.clone()),
        text,
        format,
        req.classification,
    );
    if let Some(source) = req.source {
        doc.meta.source = source;
    }
    let assistant = state.assistant.clone();
    let (outcome, chunks) = tokio::task::spawn_blocking(move || assistant.ingest_as(&user, &doc))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    Ok(Json(json!({"id": req.id, "outcome": outcome, "chunks": chunks})).into_response())
}

async fn delete_document(
    State(state): State<AppState>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, ApiError> {
    let user = identify(&state, &headers, "delete").await?;
    let assistant = state.assistant.clone();
    let deleted = tokio::task::spawn_blocking(move || assistant.delete_document_as(&user, &id))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    Ok(Json(json!({"deleted": deleted})).into_response())
}
