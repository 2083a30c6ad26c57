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

/// Azurite's Queue service.
pub struct AzuriteQueues {
    /// The account's Queue endpoint, path-style: `http://127.0.0.1:<port>/devstoreaccount1`.
    pub base: String,
    /// Closing it stops the emulator, as for [`Azurite`].
    _stdin: Option<ChildStdin>,
    _child: Option<Child>,
}

static AZURITE_QUEUES: OnceLock<AzuriteQueues> = OnceLock::new();

/// The Queue service, started on first use (its own process: the Table service stays as it is).
pub fn azurite_queues() -> &'static AzuriteQueues {
    AZURITE_QUEUES.get_or_init(|| {
        if let Ok(base) = std::env::var("ELEVATE_TEST_AZURITE_QUEUE") {
            let base = base.trim_end_matches('/');
            return AzuriteQueues { base: format!("{base}/{DEV_STORAGE_ACCOUNT}"), _stdin: None, _child: None };
        }
        let (port, stdin, child) = launch(&queue_bin(), "queue");
        AzuriteQueues {
            base: format!("http://127.0.0.1:{port}/{DEV_STORAGE_ACCOUNT}"),
            _stdin: stdin,
            _child: Some(child),
        }
    })
}

impl AzuriteQueues {
    /// A client signing with the well-known development key.
    pub fn client(&self) -> QueueClient {
        self.client_with_key(DEV_STORAGE_KEY, RetryPolicy::default())
    }

    /// A client signing with `key` (base64), retrying as `retry` says.
    pub fn client_with_key(&self, key: &str, retry: RetryPolicy) -> QueueClient {
        let key = SharedKey::new(DEV_STORAGE_ACCOUNT, key, Arc::new(SystemClock)).unwrap();
        let azure = AzureClient::with_signer(Signer::SharedKey(key), retry).unwrap();
        QueueClient::new(azure, &self.base).unwrap()
    }
}

/// Azurite's Blob service.
pub struct AzuriteBlobs {
    /// The account's Blob endpoint, path-style: `http://127.0.0.1:<port>/devstoreaccount1`.
    pub base: String,
    /// Closing it stops the emulator, as for [`Azurite`].
    _stdin: Option<ChildStdin>,
    _child: Option<Child>,
}

static AZURITE_BLOBS: OnceLock<AzuriteBlobs> = OnceLock::new();

/// The Blob service, started on first use (its own process).
pub fn azurite_blobs() -> &'static AzuriteBlobs {
    AZURITE_BLOBS.get_or_init(|| {
        if let Ok(base) = std::env::var("ELEVATE_TEST_AZURITE_BLOB") {
            let base = base.trim_end_matches('/');
            return AzuriteBlobs { base: format!("{base}/{DEV_STORAGE_ACCOUNT}"), _stdin: None, _child: None };
        }
        let (port, stdin, child) = launch(&blob_bin(), "blob");
        AzuriteBlobs {
            base: format!("http://127.0.0.1:{port}/{DEV_STORAGE_ACCOUNT}"),
            _stdin: stdin,
            _child: Some(child),
        }
    })
}

impl AzuriteBlobs {
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
