//! Qdrant's collection snapshot endpoints over the configured snapshot store: create, list,
//! download (one tar file), delete, recover from a location, upload; plus the scheduled
//! snapshots and WAL archiving the configuration asks for.
//!
//! A snapshot's name is `<id>.snapshot`, where the id sorts by LSN. Snapshots live in the
//! store content-addressed and incrementally (see `deftech_vec::snapshots`); a download
//! assembles one self-contained tar file from it on the fly.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Multipart, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use deftech_vec::{ObjectStore, RestorePoint, SnapshotInfo, snapshots};
use serde_json::{Value, json};

use super::{ApiError, JsonBody, Shared, blocking, ok};

const SUFFIX: &str = ".snapshot";

/// `2026-11-25T22:41:07` (UTC, no zone: Qdrant's `creation_time` format).
pub(crate) fn iso_time(ms: u64) -> String {
    deftech_vec::time::Utc::from_unix_ms(ms).iso_seconds()
}

pub(crate) fn describe(info: &SnapshotInfo) -> Value {
    json!({
        "name": format!("{}{SUFFIX}", info.id),
        "creation_time": iso_time(info.created_at_ms),
        "size": info.bytes,
        "checksum": null,
    })
}

fn id_of(name: &str) -> Result<String, ApiError> {
    let id = name.strip_suffix(SUFFIX).unwrap_or(name);
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("Not found: snapshot {name:?}"),
        ));
    }
    Ok(id.to_owned())
}

pub(crate) fn store(s: &Shared) -> Result<Arc<dyn ObjectStore>, ApiError> {
    s.store.get().cloned().ok_or_else(|| {
        let why = s
            .store_error
            .get()
            .map_or("it is still opening", String::as_str);
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the snapshot store is not available: {why}"),
        )
    })
}

pub(crate) async fn create(
    State(s): State<Shared>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let t = Instant::now();
    let c = s.collection(&name)?;
    let store = store(&s)?;
    let info = blocking(move || c.snapshot(&*store)).await?;
    tracing::info!(
        collection = name,
        id = info.id,
        files = info.files,
        uploaded_bytes = info.uploaded_bytes,
        "snapshot created"
    );
    let mut d = describe(&info);
    d["uploaded_bytes"] = json!(info.uploaded_bytes);
    Ok(ok(d, t))
}

pub(crate) async fn list(
    State(s): State<Shared>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let t = Instant::now();
    s.collection(&name)?;
    let store = store(&s)?;
    let all = blocking(move || snapshots::list(&*store, &name)).await?;
    Ok(ok(all.iter().rev().map(describe).collect::<Vec<_>>(), t))
}

pub(crate) async fn delete(
    State(s): State<Shared>,
    Path((name, snapshot)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let t = Instant::now();
    let id = id_of(&snapshot)?;
    let store = store(&s)?;
    // The library checks that the snapshot exists (under the store's lock); that is a 404 here.
    blocking(move || snapshots::delete(&*store, &name, &id))
        .await
        .map_err(|mut e| {
            if e.status == StatusCode::BAD_REQUEST {
                e.status = StatusCode::NOT_FOUND;
                e.message = format!("Not found: {}", e.message);
            }
            e
        })?;
    Ok(ok(true, t))
}

/// A response body fed by a blocking writer through a channel.
struct ChannelBody(tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|o| o.map(|r| r.map(http_body::Frame::data)))
    }
}

struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    buf: Vec<u8>,
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= 1 << 20 {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            let chunk = Bytes::from(std::mem::take(&mut self.buf));
            self.tx.blocking_send(Ok(chunk)).map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away")
            })?;
        }
        Ok(())
    }
}

pub(crate) async fn download(
    State(s): State<Shared>,
    Path((name, snapshot)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let id = id_of(&snapshot)?;
    let store = store(&s)?;
    // Check first, so that a missing snapshot is a 404 rather than a broken stream.
    {
        let (store, name, id) = (store.clone(), name.clone(), id.clone());
        blocking(move || snapshots::describe(&*store, &name, &id))
            .await
            .map_err(|e| {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    format!("Not found: snapshot {snapshot}: {}", e.message),
                )
            })?;
    }
    let filename = format!("{id}{SUFFIX}");
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::task::spawn_blocking(move || {
        let mut w = ChannelWriter {
            tx: tx.clone(),
            buf: Vec::new(),
        };
        let r = snapshots::export(&*store, &name, &id, &mut w).and_then(|_| {
            w.flush().map_err(|e| deftech_vec::Error::Io {
                path: "download".into(),
                source: e,
            })
        });
        if let Err(e) = r {
            tracing::warn!(collection = name, id, "snapshot download failed: {e}");
            let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
        }
    });
    Ok((
        [
            ("content-type", "application/x-tar".to_owned()),
            (
                "content-disposition",
                format!("attachment; filename=\"{filename}\""),
            ),
        ],
        Body::new(ChannelBody(rx)),
    )
        .into_response())
}

/// Where the server keeps files being received.
fn incoming(s: &Shared) -> Result<PathBuf, ApiError> {
    let dir = s.config.data.join(".incoming");
    std::fs::create_dir_all(&dir).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{}: {e}", dir.display()),
        )
    })?;
    Ok(dir)
}

fn sha256_file(path: &std::path::Path) -> std::io::Result<String> {
    use sha2::Digest;
    let mut f = std::fs::File::open(path)?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Imports a tar file as collection `name`, checking `checksum` (SHA-256) first; a `received`
/// file (downloaded or uploaded into `.incoming`) is deleted afterwards, a file that was already
/// on the server is left alone.
async fn import_file(
    s: &Shared,
    name: String,
    file: PathBuf,
    checksum: Option<String>,
    received: bool,
) -> Result<(), ApiError> {
    use deftech_vec::Error as E;
    let db = s.db()?.clone();
    let r = tokio::task::spawn_blocking(move || {
        let result = (|| {
            if let Some(want) = checksum {
                let got = sha256_file(&file).map_err(|e| E::Io {
                    path: file.clone(),
                    source: e,
                })?;
                if !got.eq_ignore_ascii_case(&want) {
                    return Err(E::InvalidArgument {
                        field: "checksum",
                        reason: format!("the snapshot's SHA-256 is {got}, not {want}"),
                    });
                }
            }
            let f = std::fs::File::open(&file).map_err(|e| E::Io {
                path: file.clone(),
                source: e,
            })?;
            db.import_snapshot(&mut std::io::BufReader::new(f), &name)
                .map(|_| ())
        })();
        if received {
            let _ = std::fs::remove_file(&file);
        }
        result
    })
    .await
    .map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("import task failed: {e}"),
        )
    })?;
    r.map_err(|e| {
        // A damaged, truncated or foreign archive is the sender's problem, not a server fault.
        let bad_input = matches!(e, E::Corrupted { .. } | E::UnsupportedVersion { .. })
            || matches!(&e, E::Io { path, .. } if path.to_string_lossy().starts_with("tar "));
        let mut api = ApiError::from(e);
        if bad_input {
            api.status = StatusCode::BAD_REQUEST;
        }
        api
    })
}

/// Fetches `http://host[:port]/path` into `dest` (HTTP/1.0, so the body ends at close).
fn http_get(url: &str, api_key: Option<&str>, dest: &std::path::Path) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or("only http:// URLs can be fetched")?;
    let (hostport, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
    let addr = if hostport.contains(':') {
        hostport.to_owned()
    } else {
        format!("{hostport}:80")
    };
    let mut stream = std::net::TcpStream::connect(&addr).map_err(|e| format!("{addr}: {e}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(300))).ok();
    let key = api_key
        .map(|k| format!("api-key: {k}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {hostport}\r\n{key}Connection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut r = std::io::BufReader::new(stream);
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if r.read(&mut byte).map_err(|e| e.to_string())? == 0 {
            return Err("the connection closed before the response headers ended".into());
        }
        head.push(byte[0]);
        if head.len() > 64 << 10 {
            return Err("response headers over 64 KiB".into());
        }
    }
    let head = String::from_utf8_lossy(&head);
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if status != "200" {
        return Err(format!(
            "{url} answered {}",
            head.lines().next().unwrap_or("")
        ));
    }
    let mut out = std::fs::File::create(dest).map_err(|e| format!("{}: {e}", dest.display()))?;
    std::io::copy(&mut r, &mut out).map_err(|e| format!("reading {url}: {e}"))?;
    Ok(())
}

pub(crate) async fn recover(
    State(s): State<Shared>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let t = Instant::now();
    let location = body
        .get("location")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            ApiError::bad_request(
                "location: missing (a snapshot name, a file path, file:// or http:// URL)",
            )
        })?
        .to_owned();
    let checksum = body
        .get("checksum")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let api_key = body
        .get("api_key")
        .and_then(Value::as_str)
        .map(str::to_owned);
    if let Some(p) = body.get("priority").and_then(Value::as_str)
        && !["snapshot", "replica", "no_sync"].contains(&p)
    {
        return Err(ApiError::bad_request(format!(
            "priority: unknown value {p:?}"
        )));
    }
    if location.starts_with("https://") {
        return Err(ApiError::bad_request(
            "location: https:// URLs are not fetched by this server; download the snapshot and upload it \
             (POST /collections/{name}/snapshots/upload)",
        ));
    }
    // A snapshot of this collection in the store: restored straight from it.
    if !location.contains('/') && !location.contains(':') {
        let id = id_of(&location)?;
        let (db, store) = (s.db()?.clone(), store(&s)?);
        blocking(move || {
            db.restore(&*store, &name, &RestorePoint::Snapshot(id), &name)
                .map(|_| ())
        })
        .await?;
        return Ok(ok(true, t));
    }
    if location.starts_with("http://") {
        let file = incoming(&s)?.join(format!("recover-{}", uuid::Uuid::new_v4().simple()));
        let (url, dest) = (location.clone(), file.clone());
        tokio::task::spawn_blocking(move || http_get(&url, api_key.as_deref(), &dest))
            .await
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
            .map_err(|e| {
                let _ = std::fs::remove_file(&file);
                ApiError::bad_request(format!("location: {e}"))
            })?;
        import_file(&s, name, file, checksum, true).await?;
    } else {
        let path = PathBuf::from(location.strip_prefix("file://").unwrap_or(&location));
        if !path.is_file() {
            return Err(ApiError::bad_request(format!(
                "location: {} is not a file on this server",
                path.display()
            )));
        }
        import_file(&s, name, path, checksum, false).await?;
    }
    Ok(ok(true, t))
}

pub(crate) async fn upload(
    State(s): State<Shared>,
    Path(name): Path<String>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
    mut form: Multipart,
) -> Result<Response, ApiError> {
    let t = Instant::now();
    let file = incoming(&s)?.join(format!("upload-{}", uuid::Uuid::new_v4().simple()));
    let mut received = false;
    while let Some(mut field) = form
        .next_field()
        .await
        .map_err(|e| ApiError::bad_request(format!("multipart body: {e}")))?
    {
        if field.name() != Some("snapshot") {
            continue;
        }
        let mut out = tokio::fs::File::create(&file).await.map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("{}: {e}", file.display()),
            )
        })?;
        use tokio::io::AsyncWriteExt;
        loop {
            match field.chunk().await {
                Ok(Some(c)) => out
                    .write_all(&c)
                    .await
                    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?,
                Ok(None) => break,
                Err(e) => {
                    let _ = tokio::fs::remove_file(&file).await;
                    return Err(ApiError::bad_request(format!(
                        "snapshot: upload cut short: {e}"
                    )));
                }
            }
        }
        out.flush().await.ok();
        received = true;
        break;
    }
    if !received {
        return Err(ApiError::bad_request(
            "snapshot: missing multipart field `snapshot`",
        ));
    }
    import_file(&s, name, file, q.get("checksum").cloned(), true).await?;
    Ok(ok(true, t))
}

/// Scheduled snapshots (with retention) and WAL archiving, as configured; runs until the
/// server stops.
pub(crate) async fn background(s: Shared) {
    let cfg = s.config.snapshots.clone();
    if cfg.interval_secs == 0 && !cfg.wal_archive {
        return;
    }
    let tick = Duration::from_secs(cfg.interval_secs.clamp(1, 5));
    let mut last_snapshot = Instant::now();
    loop {
        tokio::time::sleep(tick).await;
        let (Some(db), Some(store)) = (s.db.get().cloned(), s.store.get().cloned()) else {
            continue;
        };
        if cfg.wal_archive {
            let names = db.list_collections();
            let mut a = s.archivers.lock().unwrap_or_else(|e| e.into_inner());
            // Restored or re-created collections need a new archiver: the old one stopped.
            a.retain(|n, arch| names.contains(n) && arch.is_running());
            for n in names {
                if !a.contains_key(&n)
                    && let Ok(c) = db.collection(&n)
                {
                    tracing::info!(collection = n, store = store.location(), "WAL archiving on");
                    let arch = c.start_wal_archiving(
                        store.clone(),
                        Duration::from_secs(cfg.wal_archive_interval_secs),
                    );
                    a.insert(n, arch);
                }
            }
        }
        if cfg.interval_secs > 0
            && last_snapshot.elapsed() >= Duration::from_secs(cfg.interval_secs)
        {
            last_snapshot = Instant::now();
            let keep = cfg.keep;
            let _ = tokio::task::spawn_blocking(move || {
                for n in db.list_collections() {
                    let Ok(c) = db.collection(&n) else { continue };
                    match c.snapshot(&*store) {
                        Ok(i) => tracing::info!(
                            collection = n,
                            id = i.id,
                            uploaded_bytes = i.uploaded_bytes,
                            "scheduled snapshot"
                        ),
                        Err(e) => tracing::error!(collection = n, "scheduled snapshot failed: {e}"),
                    }
                    if keep > 0
                        && let Err(e) = snapshots::prune(&*store, &n, keep)
                    {
                        tracing::warn!(collection = n, "snapshot retention failed: {e}");
                    }
                }
            })
            .await;
        }
    }
}
