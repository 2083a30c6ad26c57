//! The portal in real headless Chromium (Debian `chromium`, driven by playwright-core, as in
//! `browser.rs`): a requester signs in and activates from My roles by keyboard only, bad input
//! comes back next to its field, an approver approves from Approvals, the requester deactivates,
//! an auditor filters and exports the trail. axe-core scans every page for WCAG 2.0/2.1 A and AA
//! violations (`tests/js/portal.mjs`). Screenshots go to `test-artifacts/portal/`.

use std::path::PathBuf;

use serde_json::{Value, json};

use crate::support::*;

fn chromium() -> PathBuf {
    PathBuf::from(std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()))
}

/// Every page state the script visits, scanned with axe-core and kept as a screenshot.
const PAGES: [&str; 20] = [
    "01-sign-in",
    "02-roles",
    "03-roles-checked",
    "04-access-active",
    "05-roles-error-duration",
    "06-roles-error-scope",
    "07-roles-error-justification",
    "08-access-pending",
    "09-approvals",
    "10-approval-page",
    "11-approval-approved",
    "12-approvals-decided",
    "13-access-deactivated",
    "14-audit",
    "15-audit-approved",
    "16-policy",
    "17-reviews",
    "18-review-campaign",
    "19-review-error",
    "20-review-decided",
];

/// The test policy with a review of `prod-one` by Bob, started by the first governance pass.
fn policy() -> String {
    format!(
        "{}reviews:\n  - id: quarterly\n    rules: [prod-one]\n    reviewers: [user:{BOB}]\n    startsAt: 2026-11-25T12:00:00Z\n    durationDays: 14\n",
        test_policy()
    )
}

#[tokio::test]
async fn people_request_approve_end_and_audit_access_in_the_portal_in_a_browser() {
    assert!(
        chromium().exists(),
        "headless Chromium is needed at {} (Debian package `chromium`; .ci/run installs it)",
        chromium().display()
    );
    let app = spawn_app_with(&policy()).await;
    let (status, pass) = app.send(reqwest::Method::POST, None, "/governance", Some(timer_payload(false, true))).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{pass}");
    assert_eq!(pass["ReturnValue"]["reviews"]["started"], json!(["quarterly-20261125"]), "{pass}");
    let artifacts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("test-artifacts/portal");
    let _ = std::fs::remove_dir_all(&artifacts);
    std::fs::create_dir_all(&artifacts).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("scenario.json");
    let results = dir.path().join("results.json");
    let approval = "Checked INC-7 with the on-call lead";
    std::fs::write(
        &scenario,
        serde_json::to_vec_pretty(&json!({
            "base": app.base,
            "artifacts": artifacts,
            "results": results,
            "alice": ALICE,
            "bob": BOB,
            "sub1": SUB1,
            "sub2": SUB2,
            "approval": approval,
        }))
        .unwrap(),
    )
    .unwrap();

    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/js/portal.mjs");
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("node").arg(script).arg(&scenario).output().expect("node is needed")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "portal browser run failed:\n{stdout}\n{stderr}");
    println!("{stderr}{stdout}");
    let results: Value = serde_json::from_slice(&std::fs::read(&results).unwrap()).unwrap();
    assert_eq!(results["scanned"], json!(PAGES), "{results}");

    // What the browser did is what the server holds: two requests, nothing from the bad input.
    let self_id = results["selfId"].as_str().unwrap();
    let prod_id = results["prodId"].as_str().unwrap();
    assert_eq!(results["itemsAfterBadInput"], 1, "{results}");
    let (status, mine) = app.get(&app.token(ALICE), "/api/activations?mine=true").await;
    assert_eq!(status, reqwest::StatusCode::OK, "{mine}");
    let mut ids: Vec<&str> = mine["value"].as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    let mut expected = vec![self_id, prod_id];
    expected.sort_unstable();
    assert_eq!(ids, expected, "{mine}");

    let own = app.activation(self_id).await;
    assert_eq!(
        (own["status"].as_str(), own["ruleId"].as_str(), own["scope"].as_str()),
        (Some("Active"), Some("self-reader"), Some(SUB1)),
        "{own}"
    );
    let prod = app.activation(prod_id).await;
    assert_eq!(prod["status"], "Deactivated", "{prod}");
    assert_eq!(prod["justification"], "INC-7: deploy the hotfix", "{prod}");
    let audit = app.audit_for(prod_id).await;
    let actions: Vec<&str> = audit.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions.first(), Some(&"Requested"), "{actions:?}");
    assert_eq!(actions.last(), Some(&"Deactivated"), "{actions:?}");
    let approved = audit.iter().find(|e| e["action"] == "Approved").expect("an Approved event");
    assert_eq!(approved["actor"]["id"], BOB);
    assert_eq!(approved["justification"], approval);
    let deactivated = audit.iter().find(|e| e["action"] == "Deactivated").unwrap();
    assert_eq!(deactivated["actor"]["id"], ALICE);

    // The CSV export of `action=Approved`: the header and Bob's one approval.
    assert_eq!(results["csvLines"], 2, "{results}");
    let header = results["csv"][0].as_str().unwrap();
    assert!(header.starts_with("\"at\",\"action\",\"activationId\",\"principalId\",\"actor\""), "{header}");
    let line = results["csv"][1].as_str().unwrap();
    assert!(line.contains(&format!("\"Approved\",\"{prod_id}\",\"{ALICE}\",\"{BOB}\"")), "{line}");

    // Bob's review decision, made on the page, is what the server holds.
    let (_, campaign) = app.get(&app.token(BOB), "/api/reviews/quarterly-20261125").await;
    let decision = &campaign["items"][0]["decisions"][0];
    assert_eq!((decision["verdict"].as_str(), decision["by"].as_str()), (Some("remove"), Some(BOB)), "{campaign}");
    assert_eq!(decision["justification"], "Not needed since the migration");

    for page in PAGES {
        let png = artifacts.join(format!("{page}.png"));
        assert!(std::fs::metadata(&png).is_ok_and(|m| m.len() > 10_000), "{} missing or blank", png.display());
    }
}
