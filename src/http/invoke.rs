//! Custom-handler payload mode: the timer trigger arrives as `POST /expiry-sweeper` with the
//! host's invocation JSON (azure-spec §1.5) and must be answered 2xx `application/json`
//! `{"Outputs":{},"Logs":[..],"ReturnValue":..}`. The payload is only a tick: we use our clock.
//!
//! The queue triggers arrive as `POST /expiry` and `POST /deliver` with the message in `Data`
//! (the binding `msg`: the decoded text, or JSON the host already parsed) and `Metadata`
//! (`DequeueCount`, `Id`, …, azure-spec §6). 2xx deletes the message; anything else makes the
//! host retry it, and after `maxDequeueCount` (host.json) move it to `<queue>-poison`.

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

/// How many deliveries the host makes before it moves a message to the poison queue
/// (`extensions.queues.maxDequeueCount` in host.json).
pub const MAX_DEQUEUE_COUNT: u64 = 5;

/// A queue invocation, as the host sends it.
struct QueueInvocation {
    /// The message text (or JSON the host parsed from it).
    message: serde_json::Value,
    dequeue_count: u64,
    id: String,
}

fn queue_invocation(req: &Request) -> Result<QueueInvocation, ApiError> {
    let invalid = |why: &str| ApiError::new(StatusCode::BAD_REQUEST, "InvalidInvocation", why.to_owned());
    let payload: serde_json::Value =
        serde_json::from_slice(&req.body).map_err(|_| invalid("the invocation body is not JSON"))?;
    let data = payload.get("Data").and_then(serde_json::Value::as_object).ok_or_else(|| invalid("no `Data` object"))?;
    let raw = data.get("msg").or_else(|| data.values().next()).ok_or_else(|| invalid("`Data` holds no message"))?;
    // The host hands the decoded text as a string; it may hold JSON, or be JSON already.
    let message = match raw {
        serde_json::Value::String(text) => serde_json::from_str(text).unwrap_or_else(|_| raw.clone()),
        other => other.clone(),
    };
    let metadata = payload.get("Metadata");
    let field = |name: &str| metadata.and_then(|m| m.get(name));
    let dequeue_count = field("DequeueCount")
        .and_then(|v| v.as_u64().or_else(|| v.as_str().and_then(|s| s.trim_matches('"').parse().ok())))
        .unwrap_or(1);
    let id = field("Id").and_then(serde_json::Value::as_str).unwrap_or("-").chars().take(64).collect();
    Ok(QueueInvocation { message, dequeue_count, id })
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct QueueResult {
    outputs: serde_json::Map<String, serde_json::Value>,
    logs: Vec<String>,
    return_value: serde_json::Value,
}

/// Answers a queue invocation: 200 deletes the message, 500 has the host retry it. A failure on
/// the last delivery the host makes is logged as what it is: a message going to the poison queue.
fn queue_answer(
    queue: &str,
    invocation: &QueueInvocation,
    result: Result<String, String>,
) -> Result<Response, ApiError> {
    let (status, log) = match result {
        Ok(done) => (StatusCode::OK, done),
        Err(e) => {
            if invocation.dequeue_count >= MAX_DEQUEUE_COUNT {
                tracing::error!(queue, message = %invocation.id, dequeue_count = invocation.dequeue_count, error = %e,
                    "POISON: the last delivery of this message failed; the host moves it to the poison queue. The sweeper still does its work");
            } else {
                tracing::warn!(queue, message = %invocation.id, dequeue_count = invocation.dequeue_count, error = %e, "queue work failed; the host retries it");
            }
            (StatusCode::INTERNAL_SERVER_ERROR, format!("failed: {e}"))
        }
    };
    json(
        status,
        &QueueResult {
            outputs: serde_json::Map::new(),
            logs: vec![format!("{queue} message {} (delivery {}): {log}", invocation.id, invocation.dequeue_count)],
            return_value: serde_json::json!({ "result": log }),
        },
    )
}

/// `POST /expiry`: revoke one activation when its end comes.
pub async fn expiry(ctx: &HttpContext, req: &Request) -> Result<Response, ApiError> {
    let invocation = queue_invocation(req)?;
    let result = match serde_json::from_value::<crate::service::ExpiryMessage>(invocation.message.clone()) {
        Ok(message) => ctx
            .service
            .on_expiry(&message, ctx.clock.now())
            .await
            .map(|outcome| outcome.describe())
            .map_err(|e| e.to_string()),
        Err(e) => Err(format!("not an expiry message: {e}")),
    };
    queue_answer("expiry", &invocation, result)
}

/// `POST /deliver`: deliver the outbox now.
pub async fn deliver(ctx: &HttpContext, req: &Request) -> Result<Response, ApiError> {
    let invocation = queue_invocation(req)?;
    // A sink that fails keeps its notices in the outbox, retried with backoff by the next
    // delivery or sweep: the message has done its work either way.
    let result = match ctx.service.on_deliver(DELIVER_BUDGET).await {
        Some(report) => Ok(format!("delivered {}, retrying {}", report.delivered, report.retrying)),
        None => Ok("no notification sinks configured".to_owned()),
    };
    queue_answer("deliver", &invocation, result)
}

/// How long one `deliver` invocation spends starting deliveries.
const DELIVER_BUDGET: std::time::Duration = std::time::Duration::from_secs(60);

/// `POST /governance`: the hourly governance pass (timer). Always 2xx: what could not be read
/// is in the report and the logs, and the next tick tries again.
pub async fn governance(ctx: &HttpContext, req: &Request) -> Result<Response, ApiError> {
    if !req.body.is_empty() {
        serde_json::from_slice::<serde_json::Value>(&req.body).map_err(|e| {
            ApiError::new(StatusCode::BAD_REQUEST, "InvalidInvocation", format!("the invocation body is not JSON: {e}"))
        })?;
    }
    let (logs, report) = match ctx.service.governance(ctx.clock.now()).await {
        Ok(report) => {
            let mut logs = vec![format!(
                "governance: {} assignments listed, {} alerts open, {} opened, {} resolved",
                report.assignments_listed,
                report.open,
                report.opened.len(),
                report.resolved.len()
            )];
            logs.extend(report.failures.iter().map(|f| format!("governance could not read: {f}")));
            (logs, serde_json::to_value(&report).unwrap_or_default())
        }
        Err(e) => {
            tracing::error!(error = %e, "governance pass failed");
            (vec![format!("governance pass failed: {e}")], serde_json::json!({"error": e.to_string()}))
        }
    };
    json(StatusCode::OK, &QueueResult { outputs: serde_json::Map::new(), logs, return_value: report })
}

/// `POST /digest`: the weekly digest (timer). Always 2xx: what could not be read is in the
/// report and the logs (and then nothing was sent: a rerun that week sends it).
pub async fn digest(ctx: &HttpContext, req: &Request) -> Result<Response, ApiError> {
    if !req.body.is_empty() {
        serde_json::from_slice::<serde_json::Value>(&req.body).map_err(|e| {
            ApiError::new(StatusCode::BAD_REQUEST, "InvalidInvocation", format!("the invocation body is not JSON: {e}"))
        })?;
    }
    let (logs, report) = match ctx.service.digest(ctx.clock.now()).await {
        Ok(report) => {
            let mut logs = vec![format!(
                "digest {}: {} activations, {} denials, {} approvals waiting, {} open alerts, {} reviews due; {}",
                report.id,
                report.activations,
                report.denials,
                report.awaiting_approval,
                report.open_alerts,
                report.reviews_due.len(),
                report.not_queued.as_deref().unwrap_or("notice queued"),
            )];
            logs.extend(report.failures.iter().map(|f| format!("digest could not read: {f}")));
            (logs, serde_json::to_value(&report).unwrap_or_default())
        }
        Err(e) => {
            tracing::error!(error = %e, "digest failed");
            (
                vec![format!("digest failed: {e}")],
                serde_json::json!({"error": e.to_string(), "failures": [e.to_string()]}),
            )
        }
    };
    json(StatusCode::OK, &QueueResult { outputs: serde_json::Map::new(), logs, return_value: report })
}
