//! Where audit records go: the hash-chained log file ([`crate::audit`]) and, when configured,
//! a PostgreSQL table that only accepts inserts.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde_json::Value;

use crate::audit::AuditLog;
use crate::error::{Error, Result};

/// A destination for audit records.
pub trait AuditSink: Send + Sync + std::fmt::Debug {
    /// Name, for errors.
    fn name(&self) -> String;
    /// Stores one record durably before returning.
    fn append(&self, event: &Value) -> Result<()>;
}

/// The hash-chained, fsynced log file.
#[derive(Debug)]
pub struct FileSink {
    log: Mutex<AuditLog>,
    name: String,
}

impl FileSink {
    /// Opens (or creates) the log at `path`.
    pub fn open(path: &Path) -> Result<FileSink> {
        Ok(FileSink {
            log: Mutex::new(AuditLog::open(path)?),
            name: path.display().to_string(),
        })
    }
}

impl AuditSink for FileSink {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn append(&self, event: &Value) -> Result<()> {
        self.log.lock().append(event.clone())?;
        Ok(())
    }
}

/// An append-only PostgreSQL table. The sink creates it if needed:
///
/// ```sql
/// CREATE TABLE deftech_audit (
///     seq bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(),
///     action text NOT NULL, user_id text, outcome text, event jsonb NOT NULL);
/// ```
///
/// with a trigger that rejects `UPDATE`, `DELETE` and `TRUNCATE`, so even the writing role
/// cannot rewrite history (grant the application role `INSERT` and `SELECT` only for defence
/// in depth).
pub struct PostgresSink {
    client: Mutex<postgres::Client>,
    table: String,
    target: String,
}

impl std::fmt::Debug for PostgresSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSink")
            .field("table", &self.table)
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

fn pg_error(target: &str, e: impl std::fmt::Display) -> Error {
    Error::Audit(format!("postgres {target}: {e}"))
}

impl PostgresSink {
    /// Connects with a libpq-style string (`host=… port=… user=… dbname=…`, no TLS: use it
    /// inside the VPC or through a local proxy) and prepares `table`.
    pub fn connect(params: &str, table: &str) -> Result<PostgresSink> {
        if table.is_empty() || !table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(Error::Invalid {
                field: "audit table",
                reason: format!("{table:?}: use letters, digits and underscores"),
            });
        }
        // The password, if any, stays out of error messages.
        let target: String = params
            .split_whitespace()
            .filter(|kv| !kv.starts_with("password"))
            .collect::<Vec<_>>()
            .join(" ");
        let mut client =
            postgres::Client::connect(params, postgres::NoTls).map_err(|e| pg_error(&target, e))?;
        client
            .batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS {table} (
                    seq bigserial PRIMARY KEY,
                    at timestamptz NOT NULL DEFAULT now(),
                    action text NOT NULL,
                    user_id text,
                    outcome text,
                    event jsonb NOT NULL);
                CREATE OR REPLACE FUNCTION {table}_append_only() RETURNS trigger AS $$
                BEGIN RAISE EXCEPTION '{table} is append-only'; END $$ LANGUAGE plpgsql;
                DROP TRIGGER IF EXISTS {table}_no_update ON {table};
                CREATE TRIGGER {table}_no_update BEFORE UPDATE OR DELETE ON {table}
                    FOR EACH ROW EXECUTE FUNCTION {table}_append_only();
                DROP TRIGGER IF EXISTS {table}_no_truncate ON {table};
                CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
                    FOR EACH STATEMENT EXECUTE FUNCTION {table}_append_only();"
            ))
            .map_err(|e| pg_error(&target, e))?;
        Ok(PostgresSink {
            client: Mutex::new(client),
            table: table.to_owned(),
            target,
        })
    }
}

impl AuditSink for PostgresSink {
    fn name(&self) -> String {
        format!("postgres {} {}", self.target, self.table)
    }
    fn append(&self, event: &Value) -> Result<()> {
        // PostgreSQL's jsonb has no NUL character: a question or title carrying one would make
        // the insert fail, so NULs are stored as U+FFFD.
        let event = &without_nul(event);
        let text = |k: &str| event.get(k).and_then(Value::as_str).map(str::to_owned);
        let user = event
            .get("user")
            .and_then(|u| u.get("id"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let json = serde_json::to_string(event).expect("JSON values serialize");
        self.client
            .lock()
            .execute(
                &format!(
                    "INSERT INTO {} (action, user_id, outcome, event) VALUES ($1, $2, $3, $4::text::jsonb)",
                    self.table
                ),
                &[&text("action").unwrap_or_default(), &user, &text("outcome"), &json],
            )
            .map_err(|e| pg_error(&self.target, e))?;
        Ok(())
    }
}

/// `v` with every NUL character in its strings (and keys) replaced by U+FFFD.
fn without_nul(v: &Value) -> Value {
    let clean = |s: &str| s.replace('\0', "\u{fffd}");
    match v {
        Value::String(s) => Value::String(clean(s)),
        Value::Array(a) => Value::Array(a.iter().map(without_nul).collect()),
        Value::Object(o) => {
            Value::Object(o.iter().map(|(k, v)| (clean(k), without_nul(v))).collect())
        }
        other => other.clone(),
    }
}

/// `t` as RFC 3339 UTC with milliseconds (`2026-11-26T01:02:03.456Z`).
pub fn rfc3339(t: SystemTime) -> String {
    let ms = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
    deftech_vec::time::Utc::from_unix_ms(ms).rfc3339_millis()
}
