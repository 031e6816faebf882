//! `deftech`: the server binary.
//!
//! ```text
//! deftech serve [--config deftech.toml] [--data ./data] [--listen 127.0.0.1:6333]
//!               [--api-key KEY] [--read-only-key KEY] [--tls-cert C --tls-key K]
//!               [--allow-insecure-public]
//! deftech snapshot create [COLLECTION...]       [--config F] [--data D] [--store DIR]
//! deftech snapshot list [COLLECTION...]
//! deftech snapshot restore COLLECTION [--snapshot ID | --lsn N | --time T] [--as NAME]
//! deftech snapshot delete COLLECTION ID
//! ```
//!
//! Flags override the configuration file; `DEFTECH_*` environment variables stand in for flags.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use deftech_server::ServerConfig;
use deftech_server::auth::Role;
use deftech_server::config::{ApiKey, TlsConfig};

#[derive(Parser)]
#[command(
    name = "deftech",
    version,
    about = "deftech vector search server (Qdrant-compatible REST API)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the REST API.
    Serve(ServeArgs),
    /// Snapshots of a data folder (with the server stopped) in the configured store.
    Snapshot(SnapshotArgs),
}

#[derive(clap::Args)]
struct SnapshotArgs {
    #[command(subcommand)]
    action: SnapshotAction,
    /// TOML configuration file (its data folder and [snapshots] store).
    #[arg(long, env = "DEFTECH_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Database folder [default: ./data].
    #[arg(long, env = "DEFTECH_DATA", global = true)]
    data: Option<PathBuf>,
    /// A local snapshot folder instead of the configured store.
    #[arg(long, env = "DEFTECH_SNAPSHOT_DIR", global = true)]
    store: Option<PathBuf>,
    /// Log filter [default: info].
    #[arg(long, env = "DEFTECH_LOG", default_value = "info", global = true)]
    log: String,
}

#[derive(Subcommand)]
enum SnapshotAction {
    /// Snapshot collections (all by default): only files the store lacks are uploaded.
    Create {
        /// Collections to snapshot.
        collections: Vec<String>,
    },
    /// List snapshots (of every collection in the store by default).
    List {
        /// Collections to list.
        collections: Vec<String>,
    },
    /// Restore a collection: the newest snapshot, a given one, or a point in time (the newest
    /// snapshot before it plus the archived WAL up to it). Replaces an existing collection only
    /// once the whole restore has been verified.
    Restore {
        /// Collection (as named in the store).
        collection: String,
        /// Snapshot id (from `list`).
        #[arg(long, conflicts_with_all = ["lsn", "time"])]
        snapshot: Option<String>,
        /// Every write up to this LSN.
        #[arg(long, conflicts_with = "time")]
        lsn: Option<u64>,
        /// Every write up to this time: ms since 1970, or YYYY-MM-DDTHH:MM:SS (UTC).
        #[arg(long)]
        time: Option<String>,
        /// Restore under another name.
        #[arg(long = "as")]
        as_name: Option<String>,
    },
    /// Delete a snapshot and the files only it used.
    Delete {
        /// Collection.
        collection: String,
        /// Snapshot id.
        snapshot: String,
    },
}

fn snapshot_command(args: SnapshotArgs) -> ExitCode {
    use deftech_server::snapshot_cli::{Action, parse_time, run};
    let mut config = match &args.config {
        Some(path) => match ServerConfig::from_file(path) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("{e}");
                return ExitCode::from(2);
            }
        },
        None => ServerConfig::default(),
    };
    if let Some(d) = args.data {
        config.data = d;
    }
    if let Some(s) = args.store {
        config.snapshots.path = Some(s);
        config.snapshots.s3 = None;
    }
    let action = match args.action {
        SnapshotAction::Create { collections } => Action::Create(collections),
        SnapshotAction::List { collections } => Action::List(collections),
        SnapshotAction::Delete {
            collection,
            snapshot,
        } => Action::Delete {
            collection,
            id: snapshot,
        },
        SnapshotAction::Restore {
            collection,
            snapshot,
            lsn,
            time,
            as_name,
        } => {
            let point = match (snapshot, lsn, time) {
                (Some(id), _, _) => deftech_vec::RestorePoint::Snapshot(id),
                (_, Some(l), _) => deftech_vec::RestorePoint::Lsn(l),
                (_, _, Some(t)) => match parse_time(&t) {
                    Ok(ms) => deftech_vec::RestorePoint::Time(ms),
                    Err(e) => {
                        tracing::error!("{e}");
                        return ExitCode::from(2);
                    }
                },
                _ => deftech_vec::RestorePoint::Latest,
            };
            Action::Restore {
                from: collection,
                point,
                name: as_name,
            }
        }
    };
    match run(&config, action, &mut std::io::stdout()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

#[derive(clap::Args)]
struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, env = "DEFTECH_CONFIG")]
    config: Option<PathBuf>,
    /// Database folder [default: ./data].
    #[arg(long, env = "DEFTECH_DATA")]
    data: Option<PathBuf>,
    /// Listen address [default: 127.0.0.1:6333].
    #[arg(long, env = "DEFTECH_LISTEN")]
    listen: Option<String>,
    /// An admin API key (repeatable).
    #[arg(long = "api-key", env = "DEFTECH_API_KEY", value_delimiter = ',')]
    api_keys: Vec<String>,
    /// A read-write API key (repeatable).
    #[arg(
        long = "read-write-key",
        env = "DEFTECH_READ_WRITE_KEY",
        value_delimiter = ','
    )]
    read_write_keys: Vec<String>,
    /// A read-only API key (repeatable).
    #[arg(
        long = "read-only-key",
        env = "DEFTECH_READ_ONLY_KEY",
        value_delimiter = ','
    )]
    read_only_keys: Vec<String>,
    /// TLS certificate chain (PEM).
    #[arg(long, env = "DEFTECH_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "DEFTECH_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Allow listening on a non-loopback address without API keys.
    #[arg(long, env = "DEFTECH_ALLOW_INSECURE_PUBLIC")]
    allow_insecure_public: bool,
    /// Largest request body in bytes.
    #[arg(long, env = "DEFTECH_MAX_BODY_BYTES")]
    max_body_bytes: Option<usize>,
    /// Log filter (tracing's EnvFilter syntax) [default: info].
    #[arg(long, env = "DEFTECH_LOG", default_value = "info")]
    log: String,
}

fn config_from(args: &ServeArgs) -> Result<ServerConfig, String> {
    let mut c = match &args.config {
        Some(path) => ServerConfig::from_file(path)?,
        None => ServerConfig::default(),
    };
    if let Some(d) = &args.data {
        c.data = d.clone();
    }
    if let Some(l) = &args.listen {
        c.listen = l.clone();
    }
    for (keys, role) in [
        (&args.api_keys, Role::Admin),
        (&args.read_write_keys, Role::ReadWrite),
        (&args.read_only_keys, Role::ReadOnly),
    ] {
        c.api_keys
            .extend(keys.iter().filter(|k| !k.is_empty()).map(|k| ApiKey {
                key: k.clone(),
                role,
            }));
    }
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        c.tls = Some(TlsConfig {
            cert: cert.clone(),
            key: key.clone(),
        });
    }
    c.allow_insecure_public |= args.allow_insecure_public;
    if let Some(b) = args.max_body_bytes {
        c.limits.max_body_bytes = b;
    }
    Ok(c)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let args = match cli.command {
        Command::Serve(args) => args,
        Command::Snapshot(args) => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_new(&args.log)
                        .unwrap_or_else(|_| "info".into()),
                )
                .with_writer(std::io::stderr)
                .init();
            return snapshot_command(args);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&args.log).unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = match config_from(&args) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(deftech_server::run(config, shutdown_signal(), None)) {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}
