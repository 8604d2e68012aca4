//! Test helpers: temp dirs, a private PostgreSQL, an HTTP server for the
//! router and a small JSON client.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use ugc_auth::{ControlConfig, ControlPlane};

pub const ADMIN: &str = "test-admin-token-0123456789";

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let mut r = [0u8; 8];
        getrandom::fill(&mut r).unwrap();
        let p = std::env::temp_dir().join(format!(
            "ugc-auth-{tag}-{}-{:x}",
            std::process::id(),
            u64::from_le_bytes(r)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn pg_bin() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!(
            "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin: \
             run scripts/install-deps.sh (apt-get install postgresql)"
        )
    })
}

/// A private PostgreSQL server on a free port, stopped on drop. Panics (the
/// test fails) if it cannot start: PostgreSQL tests never skip.
pub struct Postgres {
    dir: TempDir,
    bin: PathBuf,
    pub port: u16,
    as_postgres: bool,
}

impl Postgres {
    fn run(&self, prog: &str, args: &[&str]) -> std::process::Output {
        let exe = self.bin.join(prog);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        cmd.args(args)
            .output()
            .unwrap_or_else(|e| panic!("{prog}: {e}"))
    }

    pub fn start() -> Postgres {
        let bin = pg_bin();
        let dir = TempDir::new("pg");
        let as_postgres = is_root();
        if as_postgres {
            let st = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(st.success(), "chown postgres");
        }
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let pg = Postgres {
            dir,
            bin,
            port,
            as_postgres,
        };
        let data = pg.dir.path().join("data");
        let data_s = data.to_str().unwrap().to_owned();
        let out = pg.run(
            "initdb",
            &["-D", &data_s, "-A", "trust", "-U", "postgres", "-E", "UTF8"],
        );
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            port,
            pg.dir.path().display()
        );
        let log = pg.dir.path().join("log").to_str().unwrap().to_owned();
        let out = pg.run(
            "pg_ctl",
            &["-D", &data_s, "-l", &log, "-o", &opts, "-w", "start"],
        );
        assert!(
            out.status.success(),
            "pg_ctl start failed: {} {}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(pg.dir.path().join("log")).unwrap_or_default()
        );
        pg
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = self.run(
            "pg_ctl",
            &["-D", data.to_str().unwrap_or(""), "-m", "immediate", "stop"],
        );
    }
}

/// The database a test runs against.
pub enum Db {
    Sqlite,
    Postgres(Postgres),
}

impl Db {
    pub fn sqlite() -> Db {
        Db::Sqlite
    }
    pub fn postgres() -> Db {
        Db::Postgres(Postgres::start())
    }
    pub fn config(&self, dir: &TempDir) -> ControlConfig {
        let mut c = ControlConfig::new(dir.path());
        c.admin_token = Some(ADMIN.into());
        if let Db::Postgres(pg) = self {
            c.database_url = Some(pg.url());
        }
        c
    }
}

/// The router served on a local port.
pub struct Server {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn serve(cp: &ControlPlane) -> Server {
    let app = axum::Router::new().nest("/api/v1", cp.router());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(l, app).await.unwrap();
    });
    Server { addr, task }
}

/// A small JSON client.
#[derive(Clone)]
pub struct Api {
    base: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Api {
    pub fn new(s: &Server) -> Api {
        Api {
            base: format!("http://{}/api/v1", s.addr),
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// Sends `body` (raw) and returns status and JSON (Null if empty).
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &str,
    ) -> (u16, Value) {
        let mut b = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("content-type", "application/json");
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        let resp = self
            .client
            .request(b.body(Full::new(Bytes::from(body.to_owned()))).unwrap())
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let v = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        (status, v)
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> (u16, Value) {
        let b = if body.is_null() {
            String::new()
        } else {
            body.to_string()
        };
        self.raw(method, path, token, &b).await
    }
}
