//! The real Azurite Table Storage emulator (npm `azurite`, pinned in tests/js/package.json),
//! started once per test process on a free loopback port with in-memory persistence, and stopped
//! when the test process ends. Each user gets its own table, so tests share one emulator safely.
//!
//! `ELEVATE_TEST_AZURITE=http://127.0.0.1:<port>` uses an emulator already running instead.

use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use elevate::config::{DEV_STORAGE_ACCOUNT, DEV_STORAGE_KEY, StorageKey, TablesAuth, TablesSetting};

pub struct Azurite {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// Closing it stops the emulator: the wrapper shell waits on its stdin, then kills it.
    _stdin: Option<ChildStdin>,
    /// The wrapper shell, reaped by the system when the test process exits.
    _child: Option<Child>,
}

static AZURITE: OnceLock<Azurite> = OnceLock::new();

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/js/node_modules/.bin/azurite-table")
}

/// The emulator, started on first use.
pub fn azurite() -> &'static Azurite {
    AZURITE.get_or_init(|| {
        if let Ok(base) = std::env::var("ELEVATE_TEST_AZURITE") {
            return Azurite { base: base.trim_end_matches('/').to_owned(), _stdin: None, _child: None };
        }
        let bin = bin();
        assert!(
            bin.exists(),
            "Azurite is not installed at {}: run ./scripts/test, or `npm ci --prefix tests/js`",
            bin.display()
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        // The shell starts Azurite, then blocks reading its stdin; when this test process exits
        // (however it exits), the pipe closes, `read` returns and Azurite is killed.
        let script = format!(
            "'{}' --tableHost 127.0.0.1 --tablePort {port} --inMemoryPersistence --disableTelemetry --silent & pid=$!; read _; kill $pid",
            bin.display()
        );
        let mut child = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start Azurite");
        let stdin = child.stdin.take();
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(60), "Azurite did not start on port {port} within 60 s");
            assert!(child.try_wait().unwrap().is_none(), "Azurite exited at start");
            #[expect(clippy::disallowed_methods, reason = "polling a child process at start, outside any runtime")]
            std::thread::sleep(Duration::from_millis(100));
        }
        Azurite { base: format!("http://127.0.0.1:{port}"), _stdin: stdin, _child: Some(child) }
    })
}

impl Azurite {
    /// Settings for a fresh table of its own.
    pub fn tables(&self, local_file: PathBuf) -> TablesSetting {
        TablesSetting {
            endpoint: format!("{}/{DEV_STORAGE_ACCOUNT}", self.base),
            table: fresh_table(),
            auth: TablesAuth::SharedKey {
                account: DEV_STORAGE_ACCOUNT.into(),
                key: StorageKey::new(DEV_STORAGE_KEY.into()),
            },
            local_file,
        }
    }

    /// The connection string a process would be given.
    pub fn connection_string(&self) -> String {
        format!(
            "DefaultEndpointsProtocol=http;AccountName={DEV_STORAGE_ACCOUNT};AccountKey={DEV_STORAGE_KEY};TableEndpoint={}/{DEV_STORAGE_ACCOUNT};",
            self.base
        )
    }
}

/// A table name no other test uses.
pub fn fresh_table() -> String {
    format!("t{}", uuid::Uuid::new_v4().simple())
}
