//! The README's walkthrough, run exactly as written against the real binary started as the
//! README's first command starts it (standalone, defaults, the shipped policy).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn walkthrough() -> String {
    let readme = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let block =
        readme.split("<!-- walkthrough:start -->").nth(1).unwrap().split("<!-- walkthrough:end -->").next().unwrap();
    block.trim().trim_start_matches("```bash").trim_end_matches("```").to_owned()
}

#[tokio::test]
async fn the_readme_walkthrough_works_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    std::fs::copy(repo.join("policy.yaml"), dir.path().join("policy.yaml")).unwrap();
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_elevate"));
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut server = Command::new(&exe)
        .arg("serve")
        .current_dir(dir.path())
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .env_remove("ELEVATE_POLICY_FILE")
        .env_remove("ELEVATE_STORE")
        .env_remove("ELEVATE_AUTH_MODE")
        .env_remove("ELEVATE_PROVIDER")
        .env_remove("ELEVATE_DEV_KEY")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    // The support client installs the TLS provider reqwest needs (this test may run alone).
    let client = crate::support::http_client();
    while client.get(format!("http://127.0.0.1:{port}/")).send().await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(30), "Elevate did not start");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let script = walkthrough().replace("7071", &port.to_string());
    let path = format!("{}:{}", exe.parent().unwrap().display(), std::env::var("PATH").unwrap_or_default());
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(dir.path())
        .env("PATH", path)
        .output()
        .unwrap();
    let _ = server.kill();
    let _ = server.wait();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "walkthrough failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    let expect = [
        (0, r#""ruleId":"dev-reader""#),
        (1, r#""status":"Active""#),
        (2, r#""status":"PendingApproval""#),
        (3, r#""code":"SelfApprovalForbidden""#),
        (4, r#""status":"PendingApproval""#),
        (5, r#""status":"Active""#),
        (6, r#""ruleId":"prod-contributor""#),
        (7, r#""status":"Deactivated""#),
        (8, r#""action":"Deactivated""#),
    ];
    assert_eq!(lines.len(), expect.len(), "{stdout}");
    for (line, needle) in expect {
        assert!(lines[line].contains(needle), "step output {line} lacks {needle}: {}", lines[line]);
    }
    for action in ["Requested", "Approved", "Provisioned", "Deactivated"] {
        assert!(lines[8].contains(&format!(r#""action":"{action}""#)), "audit lacks {action}");
    }
}
