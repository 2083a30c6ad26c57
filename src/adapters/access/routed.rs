//! One access port over several providers, chosen by the scope's kind: Azure RBAC scopes go to
//! ARM, directory-role and group scopes to Microsoft Graph. The service sees one provider.
//!
//! Must never send a scope to a provider of another kind.

use std::sync::Arc;

use async_trait::async_trait;

use crate::domain::scope::{Scope, ScopeKind};
use crate::service::ports::{AccessError, AccessProvider, Assignment, AssignmentSpec, Grant, Listed};

pub struct RoutedAccess {
    azure: Arc<dyn AccessProvider>,
    /// Directory roles and groups (only called for rules of those kinds).
    graph: Arc<dyn AccessProvider>,
}

impl RoutedAccess {
    pub fn new(azure: Arc<dyn AccessProvider>, graph: Arc<dyn AccessProvider>) -> Self {
        Self { azure, graph }
    }

    fn for_scope(&self, scope: &Scope) -> &Arc<dyn AccessProvider> {
        match scope.kind() {
            ScopeKind::Azure => &self.azure,
            ScopeKind::Directory | ScopeKind::Group => &self.graph,
        }
    }
}

#[async_trait]
impl AccessProvider for RoutedAccess {
    async fn grant(&self, spec: &AssignmentSpec) -> Result<Assignment, AccessError> {
        self.for_scope(&spec.scope).grant(spec).await
    }

    async fn revoke(&self, grant: &Grant) -> Result<(), AccessError> {
        self.for_scope(&grant.spec.scope).revoke(grant).await
    }

    async fn inspect(&self, grant: &Grant) -> Result<Option<Assignment>, AccessError> {
        self.for_scope(&grant.spec.scope).inspect(grant).await
    }

    async fn list_managed(&self, scope: &Scope) -> Result<Vec<Assignment>, AccessError> {
        self.for_scope(scope).list_managed(scope).await
    }

    async fn list_all(&self, scope: &Scope) -> Result<Vec<Listed>, AccessError> {
        self.for_scope(scope).list_all(scope).await
    }

    /// The Azure provider's name (`arm`), with `+graph`.
    fn kind(&self) -> &'static str {
        match self.azure.kind() {
            "arm" => "arm+graph",
            kind => kind,
        }
    }
}
