//! # deftech-server
//!
//! A thin HTTP server over [`deftech_vec`] with Qdrant's REST API (paths, JSON bodies, the
//! `{"result", "status", "time"}` envelope), so existing Qdrant clients keep working; plus
//! API keys with roles, `/healthz`, `/readyz`, Prometheus `/metrics`, request limits and a
//! graceful shutdown that flushes.
//!
//! [`run`] serves until the given future completes; the `deftech` binary wires it to the
//! command line and to SIGTERM / Ctrl-C.

pub mod api;
pub mod auth;
pub mod config;
pub mod metrics;
pub mod snapshot_cli;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub use api::{AppState, router};
pub use config::ServerConfig;
use deftech_vec::Database;

/// A server that failed to start or stop cleanly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// Invalid configuration.
    #[error("configuration: {0}")]
    Config(String),
    /// The database could not be opened or flushed.
    #[error(transparent)]
    Engine(#[from] deftech_vec::Error),
    /// Binding or serving failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Called once the server listens (with the bound address, useful with port 0).
pub type OnListen = Box<dyn FnOnce(SocketAddr) + Send>;

/// Runs the server until `shutdown` completes, then stops accepting connections, lets
/// in-flight requests finish (up to `shutdown_grace_secs`), flushes every collection and
/// returns.
pub async fn run(
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_listen: Option<OnListen>,
) -> Result<(), ServerError> {
    config.validate().map_err(ServerError::Config)?;
    let addr = config.listen_addr().map_err(ServerError::Config)?;
    let grace = Duration::from_secs(config.shutdown_grace_secs);
    let state = Arc::new(AppState {
        db: OnceLock::new(),
        keys: auth::Keys::new(config.api_keys.clone()),
        metrics: metrics::Metrics::default(),
        store: OnceLock::new(),
        store_error: OnceLock::new(),
        archivers: Default::default(),
        config,
    });
    let app = router(state.clone());

    let handle = axum_server::Handle::new();
    let h = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down: no new connections, finishing requests in flight");
        h.graceful_shutdown(Some(grace));
    });

    // Open the database while already listening: /healthz answers, /readyz says when it is
    // ready (opening replays the WAL).
    let opener = {
        let state = state.clone();
        let data = state.config.data.clone();
        tokio::task::spawn_blocking(move || -> Result<(), ServerError> {
            let db = Database::open(&data)?;
            tracing::info!(data = %data.display(), collections = db.list_collections().len(), "database open");
            let _ = state.db.set(db);
            // An unreachable snapshot store does not keep the database from serving: the
            // snapshot endpoints answer 503 with the reason, which is also logged now.
            match state.config.snapshots.open_store(&data) {
                Ok(store) => {
                    tracing::info!(store = store.location(), "snapshot store open");
                    let _ = state.store.set(store);
                }
                Err(e) => {
                    tracing::error!("snapshot store unavailable: {e}");
                    let _ = state.store_error.set(e);
                }
            }
            Ok(())
        })
    };

    let listening = {
        let handle = handle.clone();
        async move {
            if let Some(addr) = handle.listening().await {
                tracing::info!(%addr, "listening");
                if let Some(f) = on_listen {
                    f(addr);
                }
            }
        }
    };
    tokio::spawn(listening);

    let scheduler = tokio::spawn(api::snapshots_background(state.clone()));
    let served = serve(addr, &state.config, app, handle).await;
    scheduler.abort();
    // Last WAL shipment of every collection, then stop archiving.
    let archivers = std::mem::take(&mut *state.archivers.lock().unwrap_or_else(|e| e.into_inner()));
    if !archivers.is_empty() {
        let _ = tokio::task::spawn_blocking(move || drop(archivers)).await;
    }
    let opened = opener
        .await
        .map_err(|e| ServerError::Config(format!("opening task failed: {e}")))?;
    // Flush and stop background work whatever happened while serving.
    if let Some(db) = state.db.get() {
        db.clone().close()?;
        tracing::info!("all collections flushed");
    }
    opened?;
    served
}

async fn serve(
    addr: SocketAddr,
    config: &ServerConfig,
    app: axum::Router,
    handle: axum_server::Handle<SocketAddr>,
) -> Result<(), ServerError> {
    let io = |context: String| move |source| ServerError::Io { context, source };
    match &config.tls {
        #[cfg(feature = "tls")]
        Some(tls) => {
            let rustls = axum_server::tls_rustls::RustlsConfig::from_pem_file(&tls.cert, &tls.key)
                .await
                .map_err(io(format!(
                    "TLS certificate {} / key {}",
                    tls.cert.display(),
                    tls.key.display()
                )))?;
            axum_server::bind_rustls(addr, rustls)
                .handle(handle)
                .serve(app.into_make_service())
                .await
                .map_err(io(format!("serving HTTPS on {addr}")))
        }
        #[cfg(not(feature = "tls"))]
        Some(_) => Err(ServerError::Config(
            "this build has no TLS support (feature `tls`)".into(),
        )),
        None => axum_server::bind(addr)
            .handle(handle)
            .serve(app.into_make_service())
            .await
            .map_err(io(format!("serving HTTP on {addr}"))),
    }
}
