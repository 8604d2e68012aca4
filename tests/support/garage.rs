//! garage, a distributed S3 store (AGPL, run as an external server, never
//! linked; `scripts/install-deps.sh s3` installs it), as one node on
//! loopback for the tests: bucket `dvr`, an imported key that may use it,
//! region `garage`. Included with `#[path]` by the test crates that need
//! it (ugc-dvr's S3 tests, ugc-server's process tests).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The key id the tests use (imported, so fixed).
pub const GARAGE_KEY: &str = "GK0123456789abcdef01234567";
/// Its secret.
pub const GARAGE_SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// A running garage node; killed on drop.
pub struct Garage {
    child: Child,
    /// Its S3 API's port.
    pub port: u16,
}

impl Garage {
    /// Starts a node with its metadata and data below `dir`, the S3 API on
    /// `port` and RPC on `rpc` (free loopback ports), and makes bucket
    /// `dvr` for [`GARAGE_KEY`].
    pub fn start(dir: &Path, port: u16, rpc: u16) -> Garage {
        let bin = std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join(".cargo/bin/garage"))
            .filter(|p| p.exists())
            .expect("garage missing: run scripts/install-deps.sh s3");
        std::fs::create_dir_all(dir).expect("garage's directory");
        let conf = dir.join("garage.toml");
        std::fs::write(
            &conf,
            format!(
                "metadata_dir = \"{0}/meta\"\ndata_dir = \"{0}/data\"\ndb_engine = \"sqlite\"\n\
                 replication_factor = 1\nrpc_bind_addr = \"127.0.0.1:{rpc}\"\n\
                 rpc_public_addr = \"127.0.0.1:{rpc}\"\nrpc_secret = \"{1}\"\n\
                 [s3_api]\ns3_region = \"garage\"\napi_bind_addr = \"127.0.0.1:{port}\"\n\
                 root_domain = \".s3.garage.localhost\"\n",
                dir.display(),
                "7".repeat(64)
            ),
        )
        .expect("garage.toml");
        let log = dir.join("server.log");
        let child = Command::new(&bin)
            .arg("-c")
            .arg(&conf)
            .arg("server")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("garage's log"))
            .spawn()
            .expect("start garage");
        let garage = Garage { child, port };
        // The CLI talks to the node over RPC: retried until it is up.
        let cli = |args: &[&str]| -> String {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let out = Command::new(&bin)
                    .arg("-c")
                    .arg(&conf)
                    .args(args)
                    .output()
                    .expect("garage CLI");
                if out.status.success() {
                    return String::from_utf8_lossy(&out.stdout).into_owned();
                }
                assert!(
                    Instant::now() < deadline,
                    "garage {args:?}: {}\n{}",
                    String::from_utf8_lossy(&out.stderr),
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        };
        let id = cli(&["node", "id", "-q"]);
        let id = id.trim().split('@').next().unwrap_or_default().to_owned();
        cli(&["layout", "assign", "-z", "dc1", "-c", "1G", &id]);
        cli(&["layout", "apply", "--version", "1"]);
        cli(&["key", "import", "--yes", GARAGE_KEY, GARAGE_SECRET]);
        cli(&["bucket", "create", "dvr"]);
        cli(&[
            "bucket", "allow", "--read", "--write", "--owner", "dvr", "--key", GARAGE_KEY,
        ]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "garage's S3 API did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        garage
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
