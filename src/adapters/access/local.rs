//! The `local` provider: a simulation of Azure RBAC role assignments, Entra directory role
//! assignments and group memberships, kept in SQLite, for demos and the quick start. It grants
//! nothing in Azure or Entra and says so loudly.
//!
//! It keeps ARM's semantics where Elevate depends on them: names are unique; one assignment per
//! (scope, principal, role), a second under another name answers `AlreadyAssigned` with the
//! existing id; deleting a missing assignment succeeds.

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use uuid::Uuid;

use crate::domain::ids::{PrincipalId, RoleDefinitionId};
use crate::domain::scope::{Scope, ScopeKind};
use crate::service::ports::{AccessError, AccessProvider, Assignment, AssignmentSpec, Grant, Listed, parse_marker};

use crate::adapters::store::sqlite::open_connection;

pub struct LocalAccessProvider {
    conn: Arc<Mutex<Connection>>,
}

fn err(e: impl std::fmt::Display) -> AccessError {
    AccessError::Transient(format!("simulated RBAC store: {e}"))
}

/// The id of a simulated assignment: ARM's shape for Azure RBAC, an evidently simulated one for
/// directory roles and groups (whose real ids Graph makes).
fn arm_id(scope: &Scope, name: Uuid) -> String {
    match scope.kind() {
        ScopeKind::Azure => format!("{}/providers/Microsoft.Authorization/roleAssignments/{name}", scope.as_str()),
        ScopeKind::Directory | ScopeKind::Group => format!("simulated:{}:{name}", scope.as_str()),
    }
}

type Row = (String, String, String, String, Option<String>);

fn to_assignment(row: Row) -> Result<Assignment, AccessError> {
    let (name, scope, principal, role, description) = row;
    let scope = Scope::parse(&scope).map_err(err)?;
    let name = Uuid::parse_str(&name).map_err(err)?;
    Ok(Assignment {
        id: arm_id(&scope, name),
        name,
        scope,
        principal_id: PrincipalId::parse(&principal).map_err(err)?,
        role_definition_id: RoleDefinitionId::parse(&role).map_err(err)?,
        description,
    })
}

impl LocalAccessProvider {
    pub fn open(path: &Path) -> Result<Self, AccessError> {
        let conn = open_connection(path).map_err(err)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS simulated_role_assignments (
                name TEXT PRIMARY KEY NOT NULL,
                scope_key TEXT NOT NULL,
                scope TEXT NOT NULL,
                principal_id TEXT NOT NULL,
                role_definition_id TEXT NOT NULL,
                description TEXT,
                UNIQUE (scope_key, principal_id, role_definition_id)
            ) STRICT;",
        )
        .map_err(err)?;
        tracing::warn!(
            "ELEVATE_PROVIDER=local: role assignments are SIMULATED in {}; nothing is granted in Azure",
            path.display()
        );
        Ok(Self { conn: Arc::new(Mutex::new(conn)) })
    }

    async fn with<T, F>(&self, work: F) -> Result<T, AccessError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, AccessError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let guard = conn.lock().map_err(|_| err("lock poisoned"))?;
            work(&guard)
        })
        .await
        .map_err(err)?
    }

    /// Adds an assignment as if someone had created it outside Elevate (tests, demos of drift):
    /// a fresh name and no description, so no marker. Returns its id.
    pub async fn seed_foreign(
        &self,
        scope: &Scope,
        principal: PrincipalId,
        role: RoleDefinitionId,
    ) -> Result<String, AccessError> {
        let name = Uuid::new_v4();
        let scope = scope.clone();
        self.with(move |c| {
            c.execute(
                "INSERT INTO simulated_role_assignments (name, scope_key, scope, principal_id, role_definition_id, description) VALUES (?1, ?2, ?3, ?4, ?5, NULL)",
                params![name.to_string(), scope.key(), scope.as_str(), principal.to_string(), role.to_string()],
            )
            .map_err(err)?;
            Ok(arm_id(&scope, name))
        })
        .await
    }

    /// Every simulated assignment (tests and demos).
    pub async fn all(&self) -> Result<Vec<Assignment>, AccessError> {
        self.with(|c| {
            let mut stmt = c
                .prepare("SELECT name, scope, principal_id, role_definition_id, description FROM simulated_role_assignments ORDER BY name")
                .map_err(err)?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))).map_err(err)?;
            rows.map(|r| to_assignment(r.map_err(err)?)).collect()
        })
        .await
    }
}

const SELECT: &str =
    "SELECT name, scope, principal_id, role_definition_id, description FROM simulated_role_assignments";

#[async_trait]
impl AccessProvider for LocalAccessProvider {
    async fn grant(&self, spec: &AssignmentSpec) -> Result<Assignment, AccessError> {
        let spec = spec.clone();
        self.with(move |c| {
            let existing: Option<Row> = c
                .query_row(
                    &format!("{SELECT} WHERE scope_key = ?1 AND principal_id = ?2 AND role_definition_id = ?3"),
                    params![spec.scope.key(), spec.principal_id.to_string(), spec.role_definition_id.to_string()],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
                )
                .optional()
                .map_err(err)?;
            if let Some(row) = existing {
                let found = to_assignment(row)?;
                if found.name == spec.name {
                    return Ok(found);
                }
                return Err(AccessError::AlreadyAssigned { existing_id: found.id });
            }
            c.execute(
                "INSERT INTO simulated_role_assignments (name, scope_key, scope, principal_id, role_definition_id, description) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    spec.name.to_string(),
                    spec.scope.key(),
                    spec.scope.as_str(),
                    spec.principal_id.to_string(),
                    spec.role_definition_id.to_string(),
                    spec.description
                ],
            )
            .map_err(|e| AccessError::Permanent(format!("simulated assignment name reused: {e}")))?;
            tracing::warn!(principal = %spec.principal_id, role = %spec.role_definition_id, scope = %spec.scope, "SIMULATED grant (ELEVATE_PROVIDER=local): nothing was granted in Azure");
            Ok(Assignment {
                id: arm_id(&spec.scope, spec.name),
                name: spec.name,
                scope: spec.scope,
                principal_id: spec.principal_id,
                role_definition_id: spec.role_definition_id,
                description: Some(spec.description),
            })
        })
        .await
    }

    async fn revoke(&self, grant: &Grant) -> Result<(), AccessError> {
        let (scope, name) = (grant.spec.scope.clone(), grant.spec.name);
        self.with(move |c| {
            let removed = c
                .execute(
                    "DELETE FROM simulated_role_assignments WHERE name = ?1 AND scope_key = ?2",
                    params![name.to_string(), scope.key()],
                )
                .map_err(err)?;
            if removed > 0 {
                tracing::warn!(assignment = %name, "SIMULATED revoke (ELEVATE_PROVIDER=local)");
            }
            Ok(())
        })
        .await
    }

    async fn inspect(&self, grant: &Grant) -> Result<Option<Assignment>, AccessError> {
        let (scope, name) = (grant.spec.scope.clone(), grant.spec.name);
        self.with(move |c| {
            let row: Option<Row> = c
                .query_row(
                    &format!("{SELECT} WHERE name = ?1 AND scope_key = ?2"),
                    params![name.to_string(), scope.key()],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
                )
                .optional()
                .map_err(err)?;
            row.map(to_assignment).transpose()
        })
        .await
    }

    async fn list_managed(&self, scope: &Scope) -> Result<Vec<Assignment>, AccessError> {
        Ok(self.list_all(scope).await?.into_iter().filter(|l| l.elevates).map(|l| l.assignment).collect())
    }

    /// Every simulated assignment at or below `scope`, of any kind, `elevates` when its
    /// description is Elevate's marker. The simulation holds Elevate's grants and whatever was
    /// put there behind Elevate's back (`seed_foreign`). One read: complete, or an error.
    async fn list_all(&self, scope: &Scope) -> Result<Vec<Listed>, AccessError> {
        let scope = scope.clone();
        Ok(self
            .all()
            .await?
            .into_iter()
            .filter(|a| scope.contains(&a.scope))
            .map(|assignment| Listed {
                elevates: assignment.description.as_deref().and_then(parse_marker).is_some(),
                assignment,
            })
            .collect())
    }

    fn kind(&self) -> &'static str {
        "local"
    }
}
