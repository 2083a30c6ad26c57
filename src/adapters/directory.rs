//! The directory port on Microsoft Graph: transitive group membership now
//! (`POST /users/{id}/checkMemberGroups`, at most 20 groups a call, graph-spec §5) and display
//! names (`GET /users/{id}?$select=id,displayName`, cached for an hour: display only).
//!
//! Must never widen access on a failure: an unknown user belongs to no group, and any other
//! failure is an error the service turns into "not now" (a refusal or a retry), never a yes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use azure_core::credentials::TokenCredential;
use azure_core::http::{Method, Url};
use serde::Deserialize;
use serde_json::json;

use crate::adapters::access::transient;
use crate::adapters::azure::{AzureClient, Reply, RetryPolicy};
use crate::domain::ids::{DisplayName, PrincipalId};
use crate::service::ports::{AccessError, Directory};

/// Group ids one `checkMemberGroups` call takes (graph-spec §5).
const CHECK_BATCH: usize = 20;
/// How long a display name is reused.
const NAME_TTL: Duration = Duration::from_secs(3600);
/// Names remembered at most; the cache starts over beyond this.
const NAME_CACHE: usize = 10_000;

pub struct GraphDirectory {
    client: AzureClient,
    /// `{endpoint}/v1.0`, no trailing slash.
    base: String,
    names: Mutex<HashMap<PrincipalId, (tokio::time::Instant, Option<DisplayName>)>>,
}

#[derive(Deserialize)]
struct Ids {
    value: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct User {
    display_name: Option<String>,
}

/// A non-success answer, as the port's error.
fn refusal(reply: &Reply, what: &str) -> AccessError {
    let detail: String = String::from_utf8_lossy(&reply.body).chars().take(300).collect();
    match reply.status {
        403 => AccessError::Forbidden {
            role: "(directory read)".into(),
            scope: "directory".into(),
            message: format!(
                "{what}: Graph refused Elevate's identity (User.Read.All and GroupMember.Read.All are needed): {detail}"
            ),
        },
        401 | 408 | 429 | 500..=599 => AccessError::Transient(format!("{what}: Graph answered {}", reply.status)),
        status => AccessError::Permanent(format!("{what}: Graph answered {status}: {detail}")),
    }
}

impl GraphDirectory {
    /// `endpoint` is Graph's base URL (`https://graph.microsoft.com`), already checked by
    /// configuration (https, or plain http on loopback only).
    pub fn new(endpoint: &str, credential: Arc<dyn TokenCredential>, retry: RetryPolicy) -> Result<Self, AccessError> {
        let url = crate::endpoint::parse(endpoint)
            .map_err(|e| AccessError::Permanent(format!("Graph endpoint `{endpoint}` {e}")))?;
        let client =
            AzureClient::new(credential, crate::adapters::access::graph::TOKEN_SCOPE, retry).map_err(transient)?;
        Ok(Self { client, base: format!("{}/v1.0", crate::endpoint::display(&url)), names: Mutex::new(HashMap::new()) })
    }

    fn url(&self, path: &str) -> Result<Url, AccessError> {
        Url::parse(&format!("{}{path}", self.base)).map_err(|e| AccessError::Permanent(format!("a Graph URL: {e}")))
    }
}

#[async_trait]
impl Directory for GraphDirectory {
    async fn member_of(&self, principal: PrincipalId, groups: &[PrincipalId]) -> Result<Vec<PrincipalId>, AccessError> {
        let what = "check group membership";
        let url = self.url(&format!("/users/{principal}/checkMemberGroups"))?;
        let mut found = Vec::new();
        for batch in groups.chunks(CHECK_BATCH) {
            let ids: Vec<String> = batch.iter().map(ToString::to_string).collect();
            let reply = self
                .client
                .send(Method::Post, &url, Some(&json!({ "groupIds": ids })), what)
                .await
                .map_err(transient)?;
            match reply.status {
                200 => {
                    let answer: Ids = serde_json::from_slice(&reply.body)
                        .map_err(|e| AccessError::Permanent(format!("{what}: unreadable answer: {e}")))?;
                    // Only what was asked counts: anything else in the answer is ignored.
                    found.extend(
                        batch.iter().filter(|g| answer.value.iter().any(|v| v.eq_ignore_ascii_case(&g.to_string()))),
                    );
                }
                // A user the directory does not know belongs to no group.
                404 => return Ok(Vec::new()),
                _ => return Err(refusal(&reply, what)),
            }
        }
        Ok(found)
    }

    async fn display_name(&self, principal: PrincipalId) -> Result<Option<DisplayName>, AccessError> {
        let now = tokio::time::Instant::now();
        if let Ok(names) = self.names.lock()
            && let Some((at, name)) = names.get(&principal)
            && now.duration_since(*at) < NAME_TTL
        {
            return Ok(name.clone());
        }
        let what = "read a user's name";
        let url = self.url(&format!("/users/{principal}?$select=id,displayName"))?;
        let reply = self.client.send(Method::Get, &url, None, what).await.map_err(transient)?;
        let name = match reply.status {
            200 => serde_json::from_slice::<User>(&reply.body)
                .map_err(|e| AccessError::Permanent(format!("{what}: unreadable answer: {e}")))?
                .display_name
                .and_then(|n| DisplayName::parse(&n).ok()),
            404 => None,
            _ => return Err(refusal(&reply, what)),
        };
        if let Ok(mut names) = self.names.lock() {
            if names.len() >= NAME_CACHE {
                names.clear();
            }
            names.insert(principal, (now, name.clone()));
        }
        Ok(name)
    }
}
