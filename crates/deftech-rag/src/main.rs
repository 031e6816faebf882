//! `deftech-rag`: ingest documents, ask questions, verify the audit trail, serve the HTTP API.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use deftech_rag::api::{Users, router};
use deftech_rag::client::HttpClient;
use deftech_rag::embed::{CohereEmbedder, Embedder, HashEmbedder, OpenAiEmbedder};
use deftech_rag::generate::{CohereChat, Generator, OpenAiChat};
use deftech_rag::rerank::CohereReranker;
use deftech_rag::sink::PostgresSink;
use deftech_rag::{Answer, Assistant, Label, Level, User, audit};

#[derive(Parser, Debug)]
#[command(
    name = "deftech-rag",
    version,
    about = "Retrieval-augmented answers with citations, under clearance, audited."
)]
struct Cli {
    #[command(flatten)]
    backends: Backends,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug)]
struct Backends {
    /// Data folder (vectors, keyword index, audit log).
    #[arg(
        long,
        global = true,
        env = "DEFTECH_RAG_DATA",
        default_value = "./rag-data"
    )]
    data: PathBuf,
    /// Embedding backend.
    #[arg(
        long,
        global = true,
        value_enum,
        env = "DEFTECH_RAG_EMBEDDER",
        default_value = "local"
    )]
    embedder: EmbedderKind,
    /// Folder of the local model (scripts/fetch-model puts it there).
    #[arg(long, global = true, env = "DEFTECH_MODEL_DIR")]
    model_dir: Option<PathBuf>,
    /// Embedding model name (cohere, openai).
    #[arg(
        long,
        global = true,
        env = "DEFTECH_RAG_EMBED_MODEL",
        default_value = "embed-english-v3.0"
    )]
    embed_model: String,
    /// Embedding dimension (cohere, openai, hash).
    #[arg(
        long,
        global = true,
        env = "DEFTECH_RAG_EMBED_DIM",
        default_value_t = 1024
    )]
    embed_dim: usize,
    /// Base URL of the embedding service (cohere: https://api.cohere.com; openai: without /v1).
    #[arg(long, global = true, env = "DEFTECH_RAG_EMBED_URL")]
    embed_url: Option<String>,
    /// Generator: extractive (no model), cohere (Chat v2) or openai (chat completions).
    #[arg(
        long,
        global = true,
        value_enum,
        env = "DEFTECH_RAG_GENERATOR",
        default_value = "extractive"
    )]
    generator: GeneratorKind,
    /// Chat model name.
    #[arg(
        long,
        global = true,
        env = "DEFTECH_RAG_CHAT_MODEL",
        default_value = "command-r-plus-08-2024"
    )]
    chat_model: String,
    /// Base URL of the chat service.
    #[arg(long, global = true, env = "DEFTECH_RAG_CHAT_URL")]
    chat_url: Option<String>,
    /// Rerank with Cohere's /v2/rerank using this model (e.g. rerank-v3.5).
    #[arg(long, global = true, env = "DEFTECH_RAG_RERANK_MODEL")]
    rerank_model: Option<String>,
    /// API key for Cohere.
    #[arg(long, global = true, env = "COHERE_API_KEY", hide_env_values = true)]
    cohere_api_key: Option<String>,
    /// API key for OpenAI-compatible services.
    #[arg(long, global = true, env = "OPENAI_API_KEY", hide_env_values = true)]
    openai_api_key: Option<String>,
    /// Also write audit records to PostgreSQL (libpq connection string).
    #[arg(
        long,
        global = true,
        env = "DEFTECH_RAG_AUDIT_POSTGRES",
        hide_env_values = true
    )]
    audit_postgres: Option<String>,
    /// Serve requests even when an audit record cannot be written (default: fail closed).
    #[arg(long, global = true)]
    audit_fail_open: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum EmbedderKind {
    /// all-MiniLM-L6-v2 in-process (offline).
    Local,
    /// Cohere /v2/embed.
    Cohere,
    /// OpenAI-compatible /v1/embeddings.
    Openai,
    /// Hashed word counts (no model; smoke tests only).
    Hash,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum GeneratorKind {
    Extractive,
    Cohere,
    Openai,
}

#[derive(Args, Debug, Clone)]
struct LabelArgs {
    /// Classification level.
    #[arg(long, value_enum, default_value = "unclassified")]
    classification: LevelArg,
    /// A compartment (repeat for several; readers need all).
    #[arg(long = "compartment")]
    compartments: Vec<String>,
    /// A releasability group (repeat; readers need one).
    #[arg(long = "group")]
    groups: Vec<String>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LevelArg {
    Unclassified,
    Cui,
    Confidential,
    Secret,
    TopSecret,
}

impl From<LevelArg> for Level {
    fn from(l: LevelArg) -> Level {
        match l {
            LevelArg::Unclassified => Level::Unclassified,
            LevelArg::Cui => Level::Cui,
            LevelArg::Confidential => Level::Confidential,
            LevelArg::Secret => Level::Secret,
            LevelArg::TopSecret => Level::TopSecret,
        }
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Ingests every supported file (txt, md, rst, html, pdf) under a folder.
    Ingest {
        /// The folder.
        dir: PathBuf,
        #[command(flatten)]
        label: LabelArgs,
    },
    /// Asks a question as a user.
    Ask {
        /// The question.
        question: String,
        /// Who asks (recorded in the audit trail).
        #[arg(long)]
        user: String,
        /// The user's clearance.
        #[arg(long, value_enum, default_value = "unclassified")]
        clearance: LevelArg,
        /// A compartment the user is read into (repeat).
        #[arg(long = "compartment")]
        compartments: Vec<String>,
        /// A releasability group of the user (repeat).
        #[arg(long = "group")]
        groups: Vec<String>,
        /// Print the answer as JSON.
        #[arg(long)]
        json: bool,
        /// Print the answer as it is generated.
        #[arg(long)]
        stream: bool,
    },
    /// Deletes a document by id.
    Delete {
        /// The document id (its path relative to the ingested folder).
        id: String,
    },
    /// The audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Serves the HTTP API (POST /v1/ask, POST /v1/documents).
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// The users file (bearer token digests and clearances).
        #[arg(long)]
        users: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum AuditCommand {
    /// Checks the hash chain of the audit log: names the first edited, removed, inserted or
    /// reordered record.
    Verify {
        /// The log (default: audit.log in the data folder).
        #[arg(long)]
        log: Option<PathBuf>,
    },
}

type AnyError = Box<dyn std::error::Error + Send + Sync>;

fn default_model_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default()
        .join(".cache/deftech/all-MiniLM-L6-v2")
}

fn embedder(b: &Backends) -> Result<Arc<dyn Embedder>, AnyError> {
    Ok(match b.embedder {
        EmbedderKind::Local => {
            let dir = b.model_dir.clone().unwrap_or_else(default_model_dir);
            if !dir.join("model.safetensors").exists() {
                return Err(format!(
                    "no model in {}: run scripts/fetch-model (or pass --model-dir / DEFTECH_MODEL_DIR)",
                    dir.display()
                )
                .into());
            }
            local_embedder(dir)?
        }
        EmbedderKind::Cohere => {
            let key = b
                .cohere_api_key
                .as_deref()
                .ok_or("--embedder cohere needs COHERE_API_KEY")?;
            let mut e = CohereEmbedder::new(key, &b.embed_model, b.embed_dim);
            if let Some(url) = &b.embed_url {
                e = e.with_client(HttpClient::new("cohere embed", url).bearer(key));
            }
            Arc::new(e)
        }
        EmbedderKind::Openai => {
            let url = b
                .embed_url
                .as_deref()
                .ok_or("--embedder openai needs --embed-url")?;
            let mut client = HttpClient::new("openai embed", url);
            if let Some(key) = &b.openai_api_key {
                client = client.bearer(key);
            }
            Arc::new(OpenAiEmbedder::new(client, &b.embed_model, b.embed_dim))
        }
        EmbedderKind::Hash => Arc::new(HashEmbedder::new(b.embed_dim)),
    })
}

#[cfg(feature = "local")]
fn local_embedder(dir: PathBuf) -> Result<Arc<dyn Embedder>, AnyError> {
    Ok(Arc::new(deftech_rag::embed::LocalEmbedder::open(dir)?))
}

#[cfg(not(feature = "local"))]
fn local_embedder(_dir: PathBuf) -> Result<Arc<dyn Embedder>, AnyError> {
    Err("this build has no local embedder (feature `local`)".into())
}

fn assistant(b: &Backends) -> Result<Assistant, AnyError> {
    let mut builder = Assistant::builder(&b.data)
        .embedder(embedder(b)?)
        .audit_fail_open(b.audit_fail_open);
    match b.generator {
        GeneratorKind::Extractive => {}
        GeneratorKind::Cohere => {
            let key = b
                .cohere_api_key
                .as_deref()
                .ok_or("--generator cohere needs COHERE_API_KEY")?;
            let mut g = CohereChat::new(key, &b.chat_model);
            if let Some(url) = &b.chat_url {
                g = g.with_client(
                    HttpClient::new("cohere chat", url)
                        .bearer(key)
                        .timeout(Duration::from_secs(180)),
                );
            }
            builder = builder.generator(Arc::new(g) as Arc<dyn Generator>);
        }
        GeneratorKind::Openai => {
            let url = b
                .chat_url
                .as_deref()
                .ok_or("--generator openai needs --chat-url")?;
            let mut client = HttpClient::new("openai chat", url).timeout(Duration::from_secs(180));
            if let Some(key) = &b.openai_api_key {
                client = client.bearer(key);
            }
            builder = builder.generator(Arc::new(OpenAiChat::new(client, &b.chat_model)));
        }
    }
    if let Some(model) = &b.rerank_model {
        let key = b
            .cohere_api_key
            .as_deref()
            .ok_or("--rerank-model needs COHERE_API_KEY")?;
        builder = builder.reranker(Arc::new(CohereReranker::new(key, model)));
    }
    if let Some(pg) = &b.audit_postgres {
        builder = builder.audit_sink(Arc::new(PostgresSink::connect(pg, "deftech_audit")?));
    }
    Ok(builder.build()?)
}

fn label(l: &LabelArgs) -> Label {
    Label {
        level: l.classification.into(),
        compartments: l.compartments.iter().cloned().collect(),
        groups: l.groups.iter().cloned().collect(),
    }
}

fn print_answer(out: &mut impl Write, a: &Answer, text_already: bool) -> std::io::Result<()> {
    if !text_already {
        writeln!(out, "{}", a.text)?;
    } else {
        writeln!(out)?;
    }
    let l = &a.classification;
    let mut marking = format!("{:?}", l.level).to_uppercase();
    for c in &l.compartments {
        marking.push_str(&format!("//{c}"));
    }
    if !l.groups.is_empty() {
        marking.push_str(&format!(
            "//REL TO {}",
            l.groups.iter().cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    writeln!(out, "\nClassification: {marking}")?;
    if !a.citations.is_empty() {
        writeln!(out, "\nSources:")?;
        let mut seen = BTreeSet::new();
        for c in &a.citations {
            if seen.insert(&c.chunk) {
                let location = if c.location.is_empty() {
                    String::new()
                } else {
                    format!(" — {}", c.location)
                };
                writeln!(
                    out,
                    "  [{}] {}{location} ({})",
                    c.number, c.title, c.document
                )?;
                writeln!(
                    out,
                    "      \"{}\"",
                    c.quote.split_whitespace().collect::<Vec<_>>().join(" ")
                )?;
            }
        }
    }
    let t = &a.timings;
    writeln!(
        out,
        "\n{} chunks retrieved; embed {:.1} ms, retrieve {:.1} ms, generate {:.1} ms, total {:.1} ms",
        a.retrieved.len(),
        t.embed.as_secs_f64() * 1e3,
        t.retrieve.as_secs_f64() * 1e3,
        t.generate.as_secs_f64() * 1e3,
        t.total.as_secs_f64() * 1e3
    )
}

fn run(cli: Cli) -> Result<(), AnyError> {
    let mut out = std::io::stdout().lock();
    match cli.command {
        Command::Ingest { dir, label: l } => {
            let a = assistant(&cli.backends)?;
            let started = std::time::Instant::now();
            let report = a.ingest_dir(&dir, &label(&l), |p| {
                let what = match p.outcome {
                    Ok(o) => format!("{o:?}").to_lowercase(),
                    Err(e) => format!("failed: {e}"),
                };
                tracing::info!("[{}/{}] {} {what}", p.done, p.total, p.id);
            })?;
            writeln!(
                out,
                "ingested {}: {} added, {} replaced, {} unchanged, {} failed; {} chunks in {:.1} s",
                dir.display(),
                report.added,
                report.replaced,
                report.unchanged,
                report.failed.len(),
                report.chunks,
                started.elapsed().as_secs_f64()
            )?;
            for (id, e) in &report.failed {
                writeln!(out, "  failed {id}: {e}")?;
            }
        }
        Command::Ask {
            question,
            user,
            clearance,
            compartments,
            groups,
            json,
            stream,
        } => {
            let a = assistant(&cli.backends)?;
            let user = User {
                id: user,
                roles: vec![],
                clearance: clearance.into(),
                compartments: compartments.into_iter().collect(),
                groups: groups.into_iter().collect(),
            };
            let answer = if stream && !json {
                let answer = a.ask_stream(&user, &question, |t| {
                    let mut o = std::io::stdout().lock();
                    let _ = o.write_all(t.as_bytes());
                    let _ = o.flush();
                })?;
                print_answer(&mut out, &answer, true)?;
                return Ok(());
            } else {
                a.ask(&user, &question)?
            };
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&answer)?)?;
            } else {
                print_answer(&mut out, &answer, false)?;
            }
        }
        Command::Delete { id } => {
            let a = assistant(&cli.backends)?;
            let deleted = a.delete_document(&id)?;
            writeln!(
                out,
                "{id}: {}",
                if deleted { "deleted" } else { "not stored" }
            )?;
        }
        Command::Audit {
            command: AuditCommand::Verify { log },
        } => {
            let log = log.unwrap_or_else(|| cli.backends.data.join("audit.log"));
            let summary = audit::verify(&log)?;
            writeln!(
                out,
                "{}: {} records, chain intact, last hash {}",
                log.display(),
                summary.records,
                summary.last_hash
            )?;
        }
        Command::Serve { listen, users } => {
            let users = Users::load(&users)?;
            let a = Arc::new(assistant(&cli.backends)?);
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind(&listen).await?;
                tracing::info!("listening on {}", listener.local_addr()?);
                axum::serve(listener, router(a, users))
                    .with_graceful_shutdown(async {
                        let _ = tokio::signal::ctrl_c().await;
                    })
                    .await
            })?;
        }
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tantivy=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            let _ = writeln!(std::io::stderr().lock(), "error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
