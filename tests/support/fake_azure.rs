//! Strict fakes of Azure Resource Manager role assignments (api-version 2022-04-01) and the App
//! Service managed identity endpoint, from azure-spec §3–4. Shapes, status codes and messages are
//! Azure's; what Azure rejects, the fake rejects. Faults can be injected: 429 with `Retry-After`,
//! 5xx, latency, dropped connections, and a PUT that is stored but never answered (a crash
//! between the grant and its record).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use uuid::Uuid;

use super::fake_http::{FakeReply, FakeRequest, Handler, serve};

pub const API_VERSION: &str = "2022-04-01";
pub const MI_PATH: &str = "/msi/token";
pub const MI_HEADER: &str = "fake-identity-header-secret";
const PROVIDER: &str = "/providers/microsoft.authorization/roleassignments";

#[derive(Clone, Debug)]
pub struct Stored {
    pub name: Uuid,
    pub scope: String,
    pub principal_id: String,
    pub principal_type: Option<String>,
    pub role_definition_id: String,
    pub description: Option<String>,
}

impl Stored {
    pub fn role_guid(&self) -> String {
        self.role_definition_id.rsplit('/').next().unwrap().to_ascii_lowercase()
    }

    fn id(&self) -> String {
        format!("{}/providers/Microsoft.Authorization/roleAssignments/{}", self.scope, self.name)
    }

    fn wire(&self) -> Value {
        json!({
            "properties": {
                "roleDefinitionId": self.role_definition_id,
                "principalId": self.principal_id,
                "principalType": self.principal_type.clone().unwrap_or_else(|| "User".into()),
                "scope": self.scope,
                "condition": null, "conditionVersion": null,
                "createdOn": "2026-11-25T12:00:00.0000000Z", "updatedOn": "2026-11-25T12:00:00.0000000Z",
                "createdBy": null, "updatedBy": "6a1c0c8a-2b46-4f3c-9d4f-000000000000",
                "delegatedManagedIdentityResourceId": null,
                "description": self.description,
            },
            "id": self.id(),
            "type": "Microsoft.Authorization/roleAssignments",
            "name": self.name.to_string(),
        })
    }
}

/// What the next requests meet, in order.
#[derive(Clone, Debug)]
pub enum Fault {
    Throttle { retry_after_secs: u64 },
    Status(u16),
    Drop,
}

/// Shares of the ARM requests that meet each fault, drawn from a seeded generator in the order
/// requests arrive (`FakeAzure::set_random_faults`). Shares add up to at most 1.
#[derive(Clone, Copy, Debug, Default)]
pub struct RandomFaults {
    /// A 429 storm begins: this request and the next `storm - 1` answer 429 with `Retry-After`.
    pub throttle: f64,
    pub storm: usize,
    pub retry_after_secs: u64,
    /// 500 or 503 (even odds) in ARM's error envelope, nothing applied.
    pub server_error: f64,
    /// The connection dropped unanswered before anything is applied.
    pub drop: f64,
    /// A write (PUT, DELETE) applied, then its connection dropped unanswered.
    pub drop_after_apply: f64,
    /// Answered normally, after `slow_by`.
    pub slow: f64,
    pub slow_by: Duration,
}

/// How many ARM requests met each random fault.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RandomInjected {
    pub throttled: usize,
    pub storms: usize,
    pub server_errors: usize,
    pub dropped: usize,
    pub dropped_after_apply: usize,
    pub slow: usize,
}

/// What a random draw does to one request.
enum Drawn {
    Throttle(u64),
    Status(u16),
    Drop,
    DropAfterApply,
    Slow(Duration),
}

/// One request as the fake saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub status: u16,
    pub at: Instant,
    pub principal_type_sent: Option<bool>,
}

#[derive(Default)]
struct State {
    assignments: BTreeMap<Uuid, Stored>,
    faults: VecDeque<Fault>,
    /// Faults for requests whose path contains the key (a name), every time.
    targeted: HashMap<String, u16>,
    seen: Vec<Seen>,
    /// Principal object id (lowercase) → how many more PUTs answer PrincipalNotFound.
    replicating: HashMap<String, usize>,
    /// Role GUIDs Elevate's identity may not assign (the ABAC condition).
    forbidden_roles: HashSet<String>,
    /// Re-PUT of an identical assignment answers 409 with its own id (azure-cli#8599) instead of 200.
    reput_conflict: bool,
    /// DELETE answers 200 but the assignment stays (a read after it must catch this).
    sticky_deletes: bool,
    page_size: usize,
    /// List pages (by their offset, `$skiptoken`) that answer this status, every time.
    failing_pages: HashMap<usize, u16>,
    /// Every list page links a next one, even past the end (a server that never stops paging).
    endless_paging: bool,
    /// Subscription scope (lowercase) → the management groups above it, as ARM knows them: a
    /// list at or below the subscription also returns their assignments (inherited access).
    management_groups: HashMap<String, Vec<String>>,
    hang_next_put: Option<tokio::sync::oneshot::Sender<()>>,
    /// The next PUT is stored, then answered 201 with this body instead of the assignment.
    garble_next_put: Option<Value>,
    latency: Duration,
    in_flight: usize,
    max_in_flight: usize,
    mi_requests: Vec<FakeRequest>,
    /// Faults drawn at random for every ARM request, from a seeded generator.
    random: Option<(rand::rngs::StdRng, RandomFaults)>,
    /// Requests left in the current 429 storm.
    storm_left: usize,
    injected: RandomInjected,
}

pub struct FakeAzure {
    state: Mutex<State>,
    pub token: String,
    pub addr: Mutex<Option<SocketAddr>>,
    /// The token the managed-identity endpoint hands out for Microsoft Graph, once wired.
    graph_token: Mutex<Option<String>>,
}

fn arm_error(status: u16, code: &str, message: &str) -> FakeReply {
    FakeReply::json(status, &json!({"error": {"code": code, "message": message}}))
}

fn is_guid(s: &str) -> bool {
    s.len() == 36 && Uuid::try_parse(s).is_ok()
}

/// A scope ARM accepts: a subscription (and below) or a management group.
fn valid_scope(scope: &str) -> bool {
    let parts: Vec<&str> = scope.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        ["subscriptions", sub, rest @ ..] => is_guid(sub) && rest.len() % 2 == 0,
        ["providers", ns, "managementGroups", name] => {
            ns.eq_ignore_ascii_case("Microsoft.Management") && !name.is_empty()
        }
        _ => false,
    }
}

/// Whether `scope` is `prefix` or lies below it, ignoring ASCII case; neither has a trailing `/`.
fn continues(scope: &str, prefix: &str) -> bool {
    let (scope, prefix) = (scope.as_bytes(), prefix.as_bytes());
    scope.len() >= prefix.len()
        && scope[..prefix.len()].eq_ignore_ascii_case(prefix)
        && (scope.len() == prefix.len() || scope[prefix.len()] == b'/')
}

fn scope_key(scope: &str) -> String {
    scope.trim_end_matches('/').to_ascii_lowercase()
}

impl FakeAzure {
    pub async fn start() -> Arc<FakeAzure> {
        let fake = Arc::new(FakeAzure {
            state: Mutex::new(State { page_size: 100, ..State::default() }),
            token: format!("fake-arm-token-{}", Uuid::new_v4()),
            addr: Mutex::new(None),
            graph_token: Mutex::new(None),
        });
        let for_handler = Arc::clone(&fake);
        let handler: Handler = Arc::new(move |req| {
            let fake = Arc::clone(&for_handler);
            Box::pin(async move { fake.handle(req).await })
        });
        let (addr, _task) = serve(handler).await;
        *fake.addr.lock().unwrap() = Some(addr);
        fake
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr.lock().unwrap().unwrap())
    }

    pub fn identity_endpoint(&self) -> String {
        format!("{}{MI_PATH}", self.url())
    }

    // ---- test controls ----

    /// The managed identity also gets tokens for this (fake) Graph.
    pub fn wire_graph(&self, graph_token: &str) {
        *self.graph_token.lock().unwrap() = Some(graph_token.to_owned());
    }
    pub fn push_fault(&self, fault: Fault) {
        self.state.lock().unwrap().faults.push_back(fault);
    }
    pub fn fail_always(&self, path_contains: &str, status: u16) {
        self.state.lock().unwrap().targeted.insert(path_contains.to_ascii_lowercase(), status);
    }
    pub fn heal(&self, path_contains: &str) {
        self.state.lock().unwrap().targeted.remove(&path_contains.to_ascii_lowercase());
    }
    pub fn replicating(&self, principal: &str, answers: usize) {
        self.state.lock().unwrap().replicating.insert(principal.to_ascii_lowercase(), answers);
    }
    pub fn forbid_role(&self, guid: &str) {
        self.state.lock().unwrap().forbidden_roles.insert(guid.to_ascii_lowercase());
    }
    pub fn set_reput_conflict(&self, on: bool) {
        self.state.lock().unwrap().reput_conflict = on;
    }
    pub fn set_sticky_deletes(&self, on: bool) {
        self.state.lock().unwrap().sticky_deletes = on;
    }
    pub fn set_page_size(&self, n: usize) {
        self.state.lock().unwrap().page_size = n;
    }
    /// Faults at random from now on, drawn from a generator seeded with `seed`.
    pub fn set_random_faults(&self, seed: u64, faults: RandomFaults) {
        use rand::SeedableRng;
        let mut s = self.state.lock().unwrap();
        s.random = Some((rand::rngs::StdRng::seed_from_u64(seed), faults));
        s.storm_left = 0;
    }
    /// No more random faults (a storm in progress ends too).
    pub fn clear_random_faults(&self) {
        let mut s = self.state.lock().unwrap();
        s.random = None;
        s.storm_left = 0;
    }
    pub fn random_injected(&self) -> RandomInjected {
        self.state.lock().unwrap().injected
    }
    pub fn set_latency(&self, latency: Duration) {
        self.state.lock().unwrap().latency = latency;
    }
    /// The next PUT is stored, then never answered; the receiver fires once it is stored.
    pub fn hang_next_put(&self) -> tokio::sync::oneshot::Receiver<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.state.lock().unwrap().hang_next_put = Some(tx);
        rx
    }
    /// The next PUT is stored, then answered 201 with `body` (a truncated or foreign answer).
    pub fn garble_next_put(&self, body: Value) {
        self.state.lock().unwrap().garble_next_put = Some(body);
    }
    /// An assignment made outside Elevate (or anything else a test wants to exist).
    pub fn seed(&self, stored: Stored) {
        self.state.lock().unwrap().assignments.insert(stored.name, stored);
    }
    /// An assignment someone made outside Elevate: a fresh name, no description (no marker), the
    /// role as a subscription's role definition (the tenant's at a management group or the root
    /// `/`, which every list returns as above its scope). Returns its ARM id.
    pub fn assign_outside(&self, scope: &str, principal: &str, role_guid: &str) -> String {
        let subscription: Vec<&str> = scope.split('/').take(3).collect();
        let role_definition_id = if scope.to_ascii_lowercase().starts_with("/subscriptions/") {
            format!("{}/providers/Microsoft.Authorization/roleDefinitions/{role_guid}", subscription.join("/"))
        } else {
            format!("/providers/Microsoft.Authorization/roleDefinitions/{role_guid}")
        };
        let stored = Stored {
            name: Uuid::new_v4(),
            scope: scope.to_owned(),
            principal_id: principal.to_ascii_lowercase(),
            principal_type: Some("User".into()),
            role_definition_id,
            description: None,
        };
        let id = stored.id();
        self.seed(stored);
        id
    }
    /// Lists at or below `subscription` also return what is assigned at `management_group`.
    pub fn place_in_management_group(&self, subscription: &str, management_group: &str) {
        self.state
            .lock()
            .unwrap()
            .management_groups
            .entry(scope_key(subscription))
            .or_default()
            .push(scope_key(management_group));
    }
    /// The list page at `offset` (its `$skiptoken`; 0 is the first) answers `status`, every time.
    pub fn fail_list_page(&self, offset: usize, status: u16) {
        self.state.lock().unwrap().failing_pages.insert(offset, status);
    }
    pub fn set_endless_paging(&self, on: bool) {
        self.state.lock().unwrap().endless_paging = on;
    }
    pub fn assignments(&self) -> Vec<Stored> {
        self.state.lock().unwrap().assignments.values().cloned().collect()
    }
    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }
    pub fn max_in_flight(&self) -> usize {
        self.state.lock().unwrap().max_in_flight
    }
    pub fn mi_requests(&self) -> Vec<FakeRequest> {
        self.state.lock().unwrap().mi_requests.clone()
    }
    pub fn reset_log(&self) {
        let mut s = self.state.lock().unwrap();
        s.seen.clear();
        s.max_in_flight = 0;
    }

    // ---- the fake itself ----

    async fn handle(&self, req: FakeRequest) -> FakeReply {
        if req.path == MI_PATH {
            return self.managed_identity(req);
        }
        let latency = {
            let mut s = self.state.lock().unwrap();
            s.in_flight += 1;
            s.max_in_flight = s.max_in_flight.max(s.in_flight);
            s.latency
        };
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let drawn = self.draw(&req);
        if let Some(Drawn::Slow(by)) = drawn {
            tokio::time::sleep(by).await;
        }
        let principal_type_sent = (req.method == "PUT").then(|| {
            serde_json::from_slice::<Value>(&req.body).is_ok_and(|b| b["properties"]["principalType"].is_string())
        });
        let reply = match drawn {
            Some(Drawn::Throttle(secs)) => arm_error(
                429,
                "TooManyRequests",
                "The request is being throttled as the limit has been reached for operation type - Write.",
            )
            .with_header("Retry-After", &secs.to_string()),
            Some(Drawn::Status(status)) => {
                arm_error(status, "InternalServerError", "Encountered internal server error.")
            }
            Some(Drawn::Drop) => FakeReply::Drop,
            Some(Drawn::DropAfterApply) => {
                let _ = self.arm(&req);
                FakeReply::Drop
            }
            Some(Drawn::Slow(_)) | None => self.arm(&req),
        };
        let status = match &reply {
            FakeReply::Respond { status, .. } => *status,
            FakeReply::Drop | FakeReply::Hang => 0,
        };
        let mut s = self.state.lock().unwrap();
        s.in_flight -= 1;
        s.seen.push(Seen { method: req.method.clone(), status, at: Instant::now(), principal_type_sent });
        reply
    }

    /// The random fault `req` meets, if any (a storm in progress first).
    fn draw(&self, req: &FakeRequest) -> Option<Drawn> {
        use rand::Rng;
        let mut s = self.state.lock().unwrap();
        let s = &mut *s;
        let (rng, f) = s.random.as_mut()?;
        if s.storm_left > 0 {
            s.storm_left -= 1;
            s.injected.throttled += 1;
            return Some(Drawn::Throttle(f.retry_after_secs));
        }
        let draw: f64 = rng.r#gen();
        let write = matches!(req.method.as_str(), "PUT" | "DELETE");
        let mut edge = f.throttle;
        if draw < edge {
            s.storm_left = f.storm.saturating_sub(1);
            s.injected.storms += 1;
            s.injected.throttled += 1;
            return Some(Drawn::Throttle(f.retry_after_secs));
        }
        edge += f.server_error;
        if draw < edge {
            s.injected.server_errors += 1;
            return Some(Drawn::Status(if rng.gen_bool(0.5) { 500 } else { 503 }));
        }
        edge += f.drop;
        if draw < edge {
            s.injected.dropped += 1;
            return Some(Drawn::Drop);
        }
        edge += f.drop_after_apply;
        if draw < edge {
            // A read applies nothing: it goes through untouched.
            if !write {
                return None;
            }
            s.injected.dropped_after_apply += 1;
            return Some(Drawn::DropAfterApply);
        }
        edge += f.slow;
        if draw < edge {
            s.injected.slow += 1;
            return Some(Drawn::Slow(f.slow_by));
        }
        None
    }

    /// App Service managed identity, protocol 2019-08-01 (azure-spec §4.1).
    fn managed_identity(&self, req: FakeRequest) -> FakeReply {
        let mut s = self.state.lock().unwrap();
        s.mi_requests.push(req.clone());
        if req.method != "GET" {
            return FakeReply::empty(405);
        }
        if req.header("x-identity-header") != Some(MI_HEADER) {
            return FakeReply::json(
                401,
                &json!({"statusCode": 401, "message": "Unauthorized request. Missing or invalid X-IDENTITY-HEADER."}),
            );
        }
        if req.query("api-version") != Some("2019-08-01") {
            return FakeReply::json(400, &json!({"statusCode": 400, "message": "Unsupported api-version."}));
        }
        // One identity, one endpoint, a token per resource (azure-spec §4.2): ARM's, or Graph's
        // when a fake Graph has given its own (graph-spec §8).
        let resource = req.query("resource").unwrap_or_default().to_owned();
        let token = match resource.as_str() {
            "https://management.azure.com" => self.token.clone(),
            "https://graph.microsoft.com" => match self.graph_token.lock().unwrap().clone() {
                Some(token) => token,
                None => {
                    return FakeReply::json(
                        400,
                        &json!({"statusCode": 400, "message": "No fake Graph is wired to this identity."}),
                    );
                }
            },
            _ => {
                return FakeReply::json(
                    400,
                    &json!({"statusCode": 400, "message": "This fake issues tokens for ARM and Graph only."}),
                );
            }
        };
        #[expect(clippy::disallowed_methods, reason = "a token expiry is wall-clock time, as the real endpoint's")]
        let expires_on = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 3600;
        FakeReply::json(
            200,
            &json!({
                "access_token": token,
                "expires_on": expires_on.to_string(),
                "resource": resource,
                "token_type": "Bearer",
                "client_id": "5e29463d-71da-4fe0-8e69-999b57db23b0",
            }),
        )
    }

    fn arm(&self, req: &FakeRequest) -> FakeReply {
        match req.header("authorization") {
            None => {
                return arm_error(
                    401,
                    "AuthenticationFailed",
                    "Authentication failed. The 'Authorization' header is missing.",
                );
            }
            Some(v) if v != format!("Bearer {}", self.token) => {
                return arm_error(401, "InvalidAuthenticationToken", "The access token is invalid.");
            }
            Some(_) => {}
        }
        let mut s = self.state.lock().unwrap();
        if let Some(fault) = s.faults.pop_front() {
            return match fault {
                Fault::Throttle { retry_after_secs } => arm_error(
                    429,
                    "TooManyRequests",
                    "The request is being throttled as the limit has been reached for operation type - Write.",
                )
                .with_header("Retry-After", &retry_after_secs.to_string()),
                Fault::Status(status) => arm_error(status, "InternalServerError", "Encountered internal server error."),
                Fault::Drop => FakeReply::Drop,
            };
        }
        let lower_path = req.path.to_ascii_lowercase();
        if let Some((_, status)) = s.targeted.iter().find(|(k, _)| lower_path.contains(k.as_str())) {
            return arm_error(*status, "InternalServerError", "Encountered internal server error.");
        }
        let Some(api_version) = req.query("api-version") else {
            return arm_error(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            );
        };
        if api_version != API_VERSION {
            return arm_error(
                400,
                "InvalidApiVersionParameter",
                &format!("The api-version '{api_version}' is invalid. The supported versions are '{API_VERSION}'."),
            );
        }
        // Percent-decoding is not needed: Elevate's scopes are plain ASCII names.
        let Some(at) = lower_path.find(PROVIDER) else {
            return arm_error(
                400,
                "InvalidResourceType",
                "The resource type could not be found in the namespace 'Microsoft.Authorization'.",
            );
        };
        let scope = &req.path[..at];
        let rest = &req.path[at + PROVIDER.len()..];
        if !valid_scope(scope) {
            return arm_error(400, "InvalidScope", &format!("The scope '{scope}' is not valid."));
        }
        match (req.method.as_str(), rest) {
            ("GET", "") => self.list(&s, req, scope),
            (method, name) => {
                let name = name.trim_start_matches('/');
                let Some(name) = Uuid::try_parse(name).ok().filter(|_| name.len() == 36) else {
                    return arm_error(
                        400,
                        "InvalidRoleAssignmentId",
                        &format!(
                            "The role assignment ID '{name}' is not valid. The role assignment ID must be a GUID."
                        ),
                    );
                };
                match method {
                    "PUT" => self.put(&mut s, req, scope, name),
                    "GET" => match s.assignments.get(&name).filter(|a| scope_key(&a.scope) == scope_key(scope)) {
                        Some(a) => FakeReply::json(200, &a.wire()),
                        None => arm_error(404, "RoleAssignmentNotFound", "The role assignment does not exist."),
                    },
                    "DELETE" => {
                        let found =
                            s.assignments.get(&name).filter(|a| scope_key(&a.scope) == scope_key(scope)).cloned();
                        match found {
                            Some(a) => {
                                if !s.sticky_deletes {
                                    s.assignments.remove(&name);
                                }
                                FakeReply::json(200, &a.wire())
                            }
                            None => FakeReply::empty(204),
                        }
                    }
                    _ => arm_error(405, "MethodNotAllowed", "The method is not allowed."),
                }
            }
        }
    }

    fn put(&self, s: &mut State, req: &FakeRequest, scope: &str, name: Uuid) -> FakeReply {
        if !req.header("content-type").is_some_and(|c| c.starts_with("application/json")) {
            return arm_error(
                415,
                "UnsupportedMediaType",
                "The content media type is not supported. Content-Type must be 'application/json'.",
            );
        }
        let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
            return arm_error(
                400,
                "InvalidRequestContent",
                "The request content was invalid and could not be deserialized.",
            );
        };
        let props = &body["properties"];
        let Some(role) = props["roleDefinitionId"].as_str() else {
            return arm_error(
                400,
                "InvalidRequestContent",
                "The request content was invalid: 'roleDefinitionId' is required.",
            );
        };
        let Some(principal) = props["principalId"].as_str() else {
            return arm_error(
                400,
                "InvalidRequestContent",
                "The request content was invalid: 'principalId' is required.",
            );
        };
        let role_lower = role.to_ascii_lowercase();
        let role_ok = match role_lower.split_once("/providers/microsoft.authorization/roledefinitions/") {
            Some(("", guid)) => is_guid(guid),
            Some((prefix, guid)) => {
                // A subscription's role definition, for a scope in that same subscription.
                is_guid(guid) && prefix.starts_with("/subscriptions/") && scope_key(scope).starts_with(prefix)
            }
            None => false,
        };
        if !role_ok {
            return arm_error(
                400,
                "InvalidRoleDefinitionId",
                &format!("The role definition ID '{role}' is not valid."),
            );
        }
        if !is_guid(principal) {
            return arm_error(
                400,
                "InvalidPrincipalId",
                &format!("The Principal ID '{principal}' is not valid. Principal ID must be a GUID."),
            );
        }
        let principal_type = props["principalType"].as_str().map(str::to_owned);
        if let Some(t) = &principal_type
            && !["User", "Group", "ServicePrincipal", "ForeignGroup"].contains(&t.as_str())
        {
            return arm_error(400, "InvalidPrincipalType", &format!("The principal type '{t}' is not valid."));
        }
        let stored = Stored {
            name,
            scope: scope.to_owned(),
            principal_id: principal.to_ascii_lowercase(),
            principal_type,
            role_definition_id: role.to_owned(),
            description: props["description"].as_str().map(str::to_owned),
        };
        if let Some(left) = s.replicating.get_mut(&stored.principal_id)
            && *left > 0
        {
            *left -= 1;
            let hex = stored.principal_id.replace('-', "");
            return arm_error(
                400,
                "PrincipalNotFound",
                &format!(
                    "Principal {hex} does not exist in the directory 5b51c641-0711-41d2-ac58-d90390d94a00. Check that you have the correct principal ID. If you are creating this principal and then immediately assigning a role, this error might be related to a replication delay. In this case, set the role assignment principalType property to a value, such as ServicePrincipal, User, or Group.  See https://aka.ms/docs-principaltype"
                ),
            );
        }
        if s.forbidden_roles.contains(&stored.role_guid()) {
            return arm_error(
                403,
                "AuthorizationFailed",
                &format!(
                    "The client '5e29463d-71da-4fe0-8e69-999b57db23b0' with object id '6a1c0c8a-2b46-4f3c-9d4f-000000000000' does not have authorization or an ABAC condition not fulfilled to perform action 'Microsoft.Authorization/roleAssignments/write' over scope '{scope}/providers/Microsoft.Authorization/roleAssignments/{name}' or the scope is invalid. If access was recently granted, please refresh your credentials."
                ),
            );
        }
        if let Some(existing) = s.assignments.get(&name) {
            let same = scope_key(&existing.scope) == scope_key(scope)
                && existing.principal_id == stored.principal_id
                && existing.role_guid() == stored.role_guid();
            if !same {
                return arm_error(
                    400,
                    "RoleAssignmentUpdateNotPermitted",
                    "Tenant ID, application ID, principal ID, and scope are not allowed to be updated.",
                );
            }
            if s.reput_conflict {
                return exists(name);
            }
            return FakeReply::json(200, &existing.wire());
        }
        let duplicate = s.assignments.values().find(|a| {
            scope_key(&a.scope) == scope_key(scope)
                && a.principal_id == stored.principal_id
                && a.role_guid() == stored.role_guid()
        });
        if let Some(other) = duplicate {
            return exists(other.name);
        }
        let wire = stored.wire();
        s.assignments.insert(name, stored);
        if let Some(signal) = s.hang_next_put.take() {
            let _ = signal.send(());
            return FakeReply::Hang;
        }
        if let Some(body) = s.garble_next_put.take() {
            return FakeReply::json(201, &body);
        }
        FakeReply::json(201, &wire)
    }

    /// List at a scope: no filter = at, above and below; `atScope()` = at and above (azure-spec §3.1).
    fn list(&self, s: &State, req: &FakeRequest, scope: &str) -> FakeReply {
        let key = scope_key(scope);
        let filter = req.query("$filter");
        if filter.is_some_and(|f| f != "atScope()") {
            return arm_error(400, "UnsupportedFilter", "This fake supports no $filter but atScope().");
        }
        // The management groups above the listed scope's subscription (none unless placed).
        let subscription = key.split('/').take(3).collect::<Vec<_>>().join("/");
        let inherited = s.management_groups.get(&subscription).cloned().unwrap_or_default();
        // Every page filters the store again, up to one past the page (enough to know whether
        // another follows), and the filter allocates nothing: a benchmark lists 100,000
        // assignments in a thousand pages.
        let mut matching = s.assignments.values().filter(|a| {
            // The root `/` has the key "": every scope continues it, so it is above all.
            let at = a.scope.trim_end_matches('/');
            let above_or_at = continues(&key, at) || inherited.iter().any(|m| m.eq_ignore_ascii_case(at));
            let below = at.len() > key.len() && continues(at, &key);
            above_or_at || (filter.is_none() && below)
        });
        let skip: usize = req.query("$skiptoken").and_then(|t| t.parse().ok()).unwrap_or(0);
        if let Some(&status) = s.failing_pages.get(&skip) {
            return match status {
                404 => arm_error(404, "NotFound", "The skip token is no longer valid."),
                500..=599 => arm_error(status, "InternalServerError", "Encountered internal server error."),
                _ => arm_error(status, "BadRequest", "The request is not valid."),
            };
        }
        let page: Vec<Value> = matching.by_ref().skip(skip).take(s.page_size).map(|a| a.wire()).collect();
        let more = matching.next().is_some();
        let mut body = json!({ "value": page });
        if s.endless_paging || more {
            body["nextLink"] = json!(format!(
                "{}{}?api-version={API_VERSION}&%24skiptoken={}",
                self.url(),
                req.path,
                skip + s.page_size
            ));
        }
        FakeReply::json(200, &body)
    }
}

fn exists(name: Uuid) -> FakeReply {
    arm_error(
        409,
        "RoleAssignmentExists",
        &format!("The role assignment already exists. The ID of the existing role assignment is {}.", name.simple()),
    )
}
