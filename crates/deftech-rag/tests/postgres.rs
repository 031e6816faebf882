//! The PostgreSQL audit sink against a real PostgreSQL: the test starts a throwaway cluster
//! (initdb into a temporary folder, pg_ctl on a loopback port). `scripts/test` installs
//! PostgreSQL when it is missing and sets `DEFTECH_REQUIRE_POSTGRES=1`, so in CI a missing
//! server fails instead of skipping.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use deftech_rag::chunk::Format;
use deftech_rag::embed::HashEmbedder;
use deftech_rag::sink::PostgresSink;
use deftech_rag::{Assistant, Document, Label, Level, User};

struct Postgres {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    as_root: bool,
    _dir: tempfile::TempDir,
}

fn find_bin() -> Option<PathBuf> {
    let in_path = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p).find(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file())
    });
    in_path.or_else(|| {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| Some(e.ok()?.path().join("bin")))
            .filter(|d| d.join("initdb").is_file())
            .collect();
        dirs.sort();
        dirs.pop()
    })
}

impl Postgres {
    fn run(&self, program: &str, args: &[&str]) {
        let exe = self.bin.join(program);
        let mut cmd = if self.as_root {
            // PostgreSQL refuses to run as root.
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let out = cmd.args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn start() -> Option<Postgres> {
        let Some(bin) = find_bin() else {
            assert!(
                std::env::var_os("DEFTECH_REQUIRE_POSTGRES").is_none(),
                "PostgreSQL (initdb, pg_ctl) not found"
            );
            return None;
        };
        let as_root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        let dir = tempfile::tempdir().unwrap();
        if as_root {
            assert!(
                Command::new("chown")
                    .args(["-R", "postgres"])
                    .arg(dir.path())
                    .status()
                    .unwrap()
                    .success()
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pg = Postgres {
            bin,
            data: dir.path().join("data"),
            port,
            as_root,
            _dir: dir,
        };
        let data = pg.data.to_str().unwrap().to_owned();
        pg.run(
            "initdb",
            &["-D", &data, "-U", "postgres", "-A", "trust", "--no-sync"],
        );
        let sock = pg.data.parent().unwrap().to_str().unwrap().to_owned();
        let opts = format!("-c listen_addresses=127.0.0.1 -p {port} -k {sock} -c fsync=off");
        let log = format!("{sock}/pg.log");
        pg.run(
            "pg_ctl",
            &["-D", &data, "-w", "-l", &log, "-o", &opts, "start"],
        );
        Some(pg)
    }

    fn params(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            self.port
        )
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.data.to_str().unwrap().to_owned();
        self.run("pg_ctl", &["-D", &data, "-m", "immediate", "stop"]);
    }
}

fn count(client: &mut postgres::Client) -> i64 {
    client
        .query_one("SELECT count(*) FROM deftech_audit", &[])
        .unwrap()
        .get(0)
}

#[test]
fn audit_records_land_in_an_append_only_table() {
    let Some(pg) = Postgres::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let a = Assistant::builder(dir.path())
        .embedder(Arc::new(HashEmbedder::new(64)))
        .audit_sink(Arc::new(
            PostgresSink::connect(&pg.params(), "deftech_audit").unwrap(),
        ))
        .build()
        .unwrap();
    let text = "# Ops\n\nThe convoy leaves at dawn along the northern route.\n";
    a.ingest(&Document::new(
        "ops.md",
        "Ops",
        text,
        Format::Markdown,
        Label::new(Level::Secret),
    ))
    .unwrap();
    let user = User {
        id: "ana".into(),
        roles: vec!["analyst".into()],
        clearance: Level::Secret,
        compartments: Default::default(),
        groups: Default::default(),
    };
    assert!(a.ask(&user, "When does the convoy leave?").unwrap().found);
    // PostgreSQL's jsonb has no NUL: the record still lands (NUL stored as U+FFFD).
    a.ask(&user, "convoy\u{0} route").unwrap();
    drop(a);
    let file_records = deftech_rag::audit::verify(&dir.path().join("audit.log"))
        .unwrap()
        .records;

    let mut client = postgres::Client::connect(&pg.params(), postgres::NoTls).unwrap();
    assert_eq!(
        count(&mut client) as u64,
        file_records,
        "every record in both sinks"
    );
    let row = client
        .query_one("SELECT action, user_id, outcome, event->>'query', event->'user'->>'clearance' FROM deftech_audit WHERE action = 'ask' ORDER BY seq LIMIT 1", &[])
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "ask");
    assert_eq!(row.get::<_, Option<String>>(1).as_deref(), Some("ana"));
    assert_eq!(row.get::<_, Option<String>>(2).as_deref(), Some("answered"));
    assert_eq!(
        row.get::<_, Option<String>>(3).as_deref(),
        Some("When does the convoy leave?")
    );
    assert_eq!(row.get::<_, Option<String>>(4).as_deref(), Some("SECRET"));
    let nul: String = client
        .query_one("SELECT event->>'query' FROM deftech_audit WHERE action = 'ask' ORDER BY seq DESC LIMIT 1", &[])
        .unwrap()
        .get(0);
    assert_eq!(nul, "convoy\u{fffd} route");

    // History cannot be rewritten, even by the writing role.
    for sql in [
        "UPDATE deftech_audit SET outcome = 'x'",
        "DELETE FROM deftech_audit",
        "TRUNCATE deftech_audit",
    ] {
        let err = client.batch_execute(sql).unwrap_err();
        let msg = err
            .as_db_error()
            .map(|e| e.message().to_owned())
            .unwrap_or_default();
        assert!(msg.contains("append-only"), "{sql}: {err}");
    }
    assert_eq!(count(&mut client) as u64, file_records);

    // Reconnecting keeps the table and the trigger.
    drop(PostgresSink::connect(&pg.params(), "deftech_audit").unwrap());
    assert_eq!(count(&mut client) as u64, file_records);
    assert!(client.batch_execute("DELETE FROM deftech_audit").is_err());
}

#[test]
fn connection_errors_name_the_target_but_not_the_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = PostgresSink::connect(
        &format!("host=127.0.0.1 port={port} user=audit password=hunter2 connect_timeout=2"),
        "deftech_audit",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(&format!("port={port}")) && !err.contains("hunter2"),
        "{err}"
    );
    let err = PostgresSink::connect("host=127.0.0.1", "audit; DROP TABLE x")
        .unwrap_err()
        .to_string();
    assert!(err.contains("audit table"), "{err}");
}
