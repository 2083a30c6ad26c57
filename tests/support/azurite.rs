//! The real Azurite emulator (npm `azurite`, pinned in tests/js/package.json): its Table service
//! and, started separately on first use, its Queue and Blob services. Each is started once per test process
//! on a free loopback port with in-memory persistence, and stopped when the test process ends.
//! Each user gets its own table or queue, so tests share one emulator safely.
//!
//! `ELEVATE_TEST_AZURITE=http://127.0.0.1:<port>` uses a Table service already running instead,
//! `ELEVATE_TEST_AZURITE_QUEUE=http://127.0.0.1:<port>` a Queue service,
//! `ELEVATE_TEST_AZURITE_BLOB=http://127.0.0.1:<port>` a Blob service.

use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use elevate::adapters::azure::{AzureClient, RetryPolicy, SharedKey, Signer};
use elevate::adapters::queue::{QueueClient, QueueName};
use elevate::clock::SystemClock;
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

pub fn queue_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/js/node_modules/.bin/azurite-queue")
}

pub fn blob_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/js/node_modules/.bin/azurite-blob")
}

/// The emulator, started on first use.
pub fn azurite() -> &'static Azurite {
    AZURITE.get_or_init(|| {
        if let Ok(base) = std::env::var("ELEVATE_TEST_AZURITE") {
            return Azurite { base: base.trim_end_matches('/').to_owned(), _stdin: None, _child: None };
        }
        let (port, stdin, child) = launch(&bin(), "table");
        Azurite { base: format!("http://127.0.0.1:{port}"), _stdin: stdin, _child: Some(child) }
    })
}

/// Starts one Azurite service (`table`, `queue`) from `bin` on a free loopback port; returns the
/// port once it accepts connections.
fn launch(bin: &std::path::Path, service: &str) -> (u16, Option<ChildStdin>, Child) {
    assert!(
        bin.exists(),
        "Azurite is not installed at {}: run ./scripts/test, or `npm ci --prefix tests/js`",
        bin.display()
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    // The shell starts Azurite, then blocks reading its stdin; when this test process exits
    // (however it exits), the pipe closes, `read` returns and Azurite is killed.
    let script = format!(
        "'{}' --{service}Host 127.0.0.1 --{service}Port {port} --inMemoryPersistence --disableTelemetry --silent & pid=$!; read _; kill $pid",
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
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "Azurite's {service} service did not start on port {port} within 60 s"
        );
        assert!(child.try_wait().unwrap().is_none(), "Azurite's {service} service exited at start");
        #[expect(clippy::disallowed_methods, reason = "polling a child process at start, outside any runtime")]
        std::thread::sleep(Duration::from_millis(100));
    }
    (port, stdin, child)
}

/// One more Azurite service (Queue, Blob) in its own process, the Table service left as it is.
pub struct AzuriteService {
    /// The account's endpoint, path-style: `http://127.0.0.1:<port>/devstoreaccount1`.
    pub base: String,
    /// Closing it stops the emulator, as for [`Azurite`].
    _stdin: Option<ChildStdin>,
    _child: Option<Child>,
}

pub type AzuriteQueues = AzuriteService;
pub type AzuriteBlobs = AzuriteService;

/// The service `service` from `bin`, started on first use, or the one `variable` names.
fn service(
    cell: &'static OnceLock<AzuriteService>,
    variable: &str,
    bin: PathBuf,
    service: &str,
) -> &'static AzuriteService {
    cell.get_or_init(|| {
        if let Ok(base) = std::env::var(variable) {
            let base = base.trim_end_matches('/');
            return AzuriteService { base: format!("{base}/{DEV_STORAGE_ACCOUNT}"), _stdin: None, _child: None };
        }
        let (port, stdin, child) = launch(&bin, service);
        AzuriteService {
            base: format!("http://127.0.0.1:{port}/{DEV_STORAGE_ACCOUNT}"),
            _stdin: stdin,
            _child: Some(child),
        }
    })
}

static AZURITE_QUEUES: OnceLock<AzuriteService> = OnceLock::new();
static AZURITE_BLOBS: OnceLock<AzuriteService> = OnceLock::new();

/// The Queue service (`ELEVATE_TEST_AZURITE_QUEUE` to use one already running).
pub fn azurite_queues() -> &'static AzuriteQueues {
    service(&AZURITE_QUEUES, "ELEVATE_TEST_AZURITE_QUEUE", queue_bin(), "queue")
}

/// The Blob service (`ELEVATE_TEST_AZURITE_BLOB` to use one already running).
pub fn azurite_blobs() -> &'static AzuriteBlobs {
    service(&AZURITE_BLOBS, "ELEVATE_TEST_AZURITE_BLOB", blob_bin(), "blob")
}

impl AzuriteService {
    /// A queue client signing with the well-known development key.
    pub fn client(&self) -> QueueClient {
        self.client_with_key(DEV_STORAGE_KEY, RetryPolicy::default())
    }

    /// A queue client signing with `key` (base64), retrying as `retry` says.
    pub fn client_with_key(&self, key: &str, retry: RetryPolicy) -> QueueClient {
        let key = SharedKey::new(DEV_STORAGE_ACCOUNT, key, Arc::new(SystemClock)).unwrap();
        let azure = AzureClient::with_signer(Signer::SharedKey(key), retry).unwrap();
        QueueClient::new(azure, &self.base).unwrap()
    }

    /// A client for `container`, signing with the well-known development key.
    pub fn archive(&self, container: &str) -> elevate::adapters::blob::BlobArchive {
        let key = SharedKey::new(DEV_STORAGE_ACCOUNT, DEV_STORAGE_KEY, Arc::new(SystemClock)).unwrap();
        let azure = AzureClient::with_signer(Signer::SharedKey(key), RetryPolicy::default()).unwrap();
        elevate::adapters::blob::BlobArchive::new(azure, &self.base, container).unwrap()
    }
}

/// A blob container name no other test uses.
pub fn fresh_container() -> String {
    format!("c{}", uuid::Uuid::new_v4().simple())
}

/// A queue name no other test uses.
pub fn fresh_queue() -> QueueName {
    QueueName::parse(&format!("q{}", uuid::Uuid::new_v4().simple())).unwrap()
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

/// A Table service of one test's own, persisted to a directory of its own (not in memory), so it
/// can be killed (SIGKILL) and started again on the same port with the same data: Azurite stopped
/// and restarted mid-run. Dropping it kills the emulator and removes the directory.
///
/// Azurite keeps its tables in LokiJS, which writes them to disk every five seconds: a kill loses
/// what it acknowledged since the last save, which real Table Storage never does. So a test kills
/// it only once [`PrivateAzurite::wait_saved`] has seen the last writes saved.
pub struct PrivateAzurite {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    port: u16,
    dir: tempfile::TempDir,
    running: Option<Running>,
}

/// A running emulator, under a wrapper shell as for [`Azurite`]: when its stdin closes (this test
/// process ending, however it ends) the shell kills Azurite.
struct Running {
    /// Azurite's own process (node), which [`PrivateAzurite::kill`] sends SIGKILL.
    pid: String,
    stdin: ChildStdin,
    wrapper: Child,
}

impl Running {
    /// Closes the wrapper's stdin, so it kills Azurite (if it still runs), and reaps the wrapper.
    fn stop(self) {
        let Running { stdin, mut wrapper, .. } = self;
        drop(stdin);
        let _ = wrapper.wait();
    }
}

impl PrivateAzurite {
    /// Starts it on a free loopback port with a fresh data directory.
    pub fn start() -> PrivateAzurite {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut azurite = PrivateAzurite {
            base: format!("http://127.0.0.1:{port}"),
            port,
            dir: tempfile::tempdir().unwrap(),
            running: None,
        };
        azurite.restart();
        azurite
    }

    /// Kills the emulator with SIGKILL (no shutdown, no last save); returns once its port refuses
    /// connections.
    pub fn kill(&mut self) {
        let running = self.running.take().expect("Azurite is not running");
        let killed = Command::new("kill").args(["-KILL", &running.pid]).status().unwrap();
        assert!(killed.success(), "cannot kill Azurite (pid {})", running.pid);
        running.stop();
        self.wait_for(|up| !up, "stop");
    }

    /// Starts the emulator (again) on the same port and data directory; returns once it accepts
    /// connections.
    pub fn restart(&mut self) {
        assert!(self.running.is_none(), "Azurite is already running");
        assert!(
            bin().exists(),
            "Azurite is not installed at {}: run ./scripts/test, or `npm ci --prefix tests/js`",
            bin().display()
        );
        // Persisted to `--location` (never `--inMemoryPersistence`), so a restart finds the data.
        let script = format!(
            "'{}' --tableHost 127.0.0.1 --tablePort {} --location '{}' --disableTelemetry --silent >/dev/null 2>&1 & pid=$!; echo $pid; read _; kill -9 $pid",
            bin().display(),
            self.port,
            self.dir.path().display()
        );
        let mut wrapper = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start Azurite");
        let stdin = wrapper.stdin.take().unwrap();
        let mut pid = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(wrapper.stdout.take().unwrap()), &mut pid).unwrap();
        let pid = pid.trim().to_owned();
        assert!(!pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()), "no pid from Azurite's wrapper: `{pid}`");
        self.running = Some(Running { pid, stdin, wrapper });
        self.wait_for(|up| up, "start");
    }

    /// Polls the port until `done(accepting)`, for at most 60 s.
    fn wait_for(&mut self, done: impl Fn(bool) -> bool, what: &str) {
        let started = Instant::now();
        while !done(std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()) {
            if started.elapsed() > Duration::from_secs(60) {
                if let Some(running) = self.running.take() {
                    running.stop();
                }
                panic!("Azurite's table service did not {what} on port {} within 60 s", self.port);
            }
            #[expect(clippy::disallowed_methods, reason = "polling a child process, outside any runtime's work")]
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The file Azurite saves its tables to.
    fn saved_file(&self) -> PathBuf {
        self.dir.path().join("__azurite_db_table__.json")
    }

    /// When the tables were last saved to disk.
    pub fn saved_at(&self) -> Option<std::time::SystemTime> {
        std::fs::metadata(self.saved_file()).and_then(|m| m.modified()).ok()
    }

    /// Waits until Azurite has saved what it acknowledged before this call: its next autosave
    /// (at most five seconds away), or five and a half seconds when nothing was left to save.
    pub async fn wait_saved(&self) {
        let before = self.saved_at();
        let started = Instant::now();
        while self.saved_at() == before && started.elapsed() < Duration::from_millis(5_500) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // A save under way when the file's time changed: let it finish writing.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(self.saved_file().exists(), "Azurite saved nothing to {}", self.saved_file().display());
    }

    /// Settings for a fresh table of its own on this emulator.
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
}

impl Drop for PrivateAzurite {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            running.stop();
        }
    }
}
