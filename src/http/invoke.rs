//! Custom-handler payload mode: the timer trigger arrives as `POST /expiry-sweeper` with the
//! host's invocation JSON (azure-spec §1.5) and must be answered 2xx `application/json`
//! `{"Outputs":{},"Logs":[..],"ReturnValue":..}`. The payload is only a tick: we use our clock.

use serde::Serialize;
use warp::http::StatusCode;

use crate::service::SweepReport;

use super::error::ApiError;
use super::{HttpContext, Request, Response, json};

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InvocationResult {
    pub outputs: serde_json::Map<String, serde_json::Value>,
    pub logs: Vec<String>,
    pub return_value: SweepReport,
}

/// What we read from the timer payload, leniently: whether the tick is late.
fn is_past_due(payload: &serde_json::Value) -> bool {
    payload
        .get("Data")
        .and_then(|d| d.as_object())
        .into_iter()
        .flat_map(|d| d.values())
        .any(|binding| binding.get("IsPastDue").and_then(serde_json::Value::as_bool).unwrap_or(false))
}

pub async fn expiry_sweeper(ctx: &HttpContext, req: &Request) -> Result<Response, ApiError> {
    let payload: serde_json::Value = if req.body.is_empty() {
        serde_json::Value::Object(serde_json::Map::new())
    } else {
        serde_json::from_slice(&req.body).map_err(|e| {
            ApiError::new(StatusCode::BAD_REQUEST, "InvalidInvocation", format!("the invocation body is not JSON: {e}"))
        })?
    };
    if !payload.is_object() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "InvalidInvocation",
            "the invocation body must be a JSON object",
        ));
    }
    let invocation = req.header("x-azure-functions-invocationid").unwrap_or("-").chars().take(64).collect::<String>();
    let past_due = is_past_due(&payload);
    if past_due {
        tracing::warn!(invocation = %invocation, "timer tick is past due");
    }
    let report = ctx.service.sweep(ctx.clock.now()).await;
    let mut logs = vec![format!(
        "sweep: examined {}, expired {}, timed out {}, started {}, provisioned {}, failed {}",
        report.examined,
        report.expired,
        report.timed_out,
        report.started,
        report.provisioned,
        report.failures.len()
    )];
    logs.extend(report.failures.iter().map(|f| {
        format!(
            "sweep failure: activation {} ({}): {}",
            f.activation_id.map(|i| i.to_string()).unwrap_or_else(|| "-".into()),
            f.status.map(|s| s.as_str()).unwrap_or("-"),
            f.error
        )
    }));
    if report.deferred > 0 {
        logs.push(format!("sweep time budget spent: {} due activations left for the next tick", report.deferred));
    }
    if report.orphan_check {
        logs.push(format!(
            "orphan check: {} orphaned Elevate assignments found, {} revoked",
            report.orphans_found, report.orphans_revoked
        ));
    }
    if past_due {
        logs.push("timer was past due".into());
    }
    // Always 2xx: a failed revocation stays due and is retried on the next tick; a non-2xx
    // would only make the host log a failed run.
    json(StatusCode::OK, &InvocationResult { outputs: serde_json::Map::new(), logs, return_value: report })
}
