//! The real `elevate` binary as a child process: started with a given environment and arguments,
//! ready once it answers `GET /` (the Functions host's readiness rule), killed when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Process {
    pub child: Child,
    pub base: String,
    pub log: PathBuf,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_elevate"))
}

/// `elevate token --user <user> --mfa <extra>` in `dir`: a dev token from the key that an
/// Elevate started there by `start` uses (`.elevate/dev-issuer.pem`, created if missing).
pub fn token(dir: &Path, user: &str, extra: &[&str]) -> String {
    let out = Command::new(exe())
        .args(["token", "--user", user, "--mfa"])
        .args(extra)
        .current_dir(dir)
        .env_remove("ELEVATE_DEV_KEY")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Starts `elevate <args>` in `dir` with only PATH, the port and `env` set, and waits until it
/// answers `GET /` (30 s, the host's InitializationTimeout).
pub async fn start(dir: &Path, args: &[String], env: &[(&str, String)]) -> Process {
    start_exe(&exe(), dir, args, env).await
}

/// As `start`, with another build of the binary (the crash tests' `failpoints` build).
pub async fn start_exe(exe: &Path, dir: &Path, args: &[String], env: &[(&str, String)]) -> Process {
    let port = free_port();
    let log = dir.join(format!("elevate-{port}.log"));
    let mut command = Command::new(exe);
    command
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .env("FUNCTIONS_HTTPWORKER_PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    for (k, v) in env {
        command.env(k, v);
    }
    let child = command.spawn().unwrap();
    let mut process = Process { child, base: format!("http://127.0.0.1:{port}"), log };
    wait_ready(&mut process).await;
    process
}

pub async fn wait_ready(process: &mut Process) {
    let client = super::http_client();
    let started = Instant::now();
    loop {
        if let Ok(res) = client.get(format!("{}/", process.base)).send().await {
            assert!(res.status().is_success());
            return;
        }
        assert!(
            process.child.try_wait().unwrap().is_none(),
            "elevate exited: {}",
            std::fs::read_to_string(&process.log).unwrap()
        );
        assert!(started.elapsed() < Duration::from_secs(30), "not ready within the host's InitializationTimeout");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits up to `limit` for the process to exit on its own; `None` if it is still running.
pub async fn wait_exit(process: &mut Process, limit: Duration) -> Option<std::process::ExitStatus> {
    let started = Instant::now();
    loop {
        if let Some(status) = process.child.try_wait().unwrap() {
            return Some(status);
        }
        if started.elapsed() >= limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
