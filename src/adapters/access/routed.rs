//! One access port over several providers, chosen by the scope's kind: Azure RBAC scopes go to
//! ARM, directory-role and group scopes to Microsoft Graph. The service sees one provider.
//!
//! Must never send a scope to a provider of another kind: a scope whose kind has no provider is
//! refused before any call.

use std::sync::Arc;

use async_trait::async_trait;

use crate::domain::scope::{Scope, ScopeKind};
use crate::service::ports::{AccessError, AccessProvider, Assignment, AssignmentSpec, Grant};

pub struct RoutedAccess {
    azure: Arc<dyn AccessProvider>,
    /// Directory roles and groups; `None` when the deployment grants none.
    graph: Option<Arc<dyn AccessProvider>>,
}

impl RoutedAccess {
    pub fn new(azure: Arc<dyn AccessProvider>, graph: Option<Arc<dyn AccessProvider>>) -> Self {
        Self { azure, graph }
    }

    fn for_scope(&self, scope: &Scope) -> Result<&Arc<dyn AccessProvider>, AccessError> {
        match scope.kind() {
            ScopeKind::Azure => Ok(&self.azure),
            ScopeKind::Directory | ScopeKind::Group => self.graph.as_ref().ok_or_else(|| {
                AccessError::Permanent(format!(
                    "`{scope}` needs Microsoft Graph, and no Graph provider is configured (ELEVATE_GRAPH_ENDPOINT)"
                ))
            }),
        }
    }
}

#[async_trait]
impl AccessProvider for RoutedAccess {
    async fn grant(&self, spec: &AssignmentSpec) -> Result<Assignment, AccessError> {
        self.for_scope(&spec.scope)?.grant(spec).await
    }

    async fn revoke(&self, grant: &Grant) -> Result<(), AccessError> {
        self.for_scope(&grant.spec.scope)?.revoke(grant).await
    }

    async fn inspect(&self, grant: &Grant) -> Result<Option<Assignment>, AccessError> {
        self.for_scope(&grant.spec.scope)?.inspect(grant).await
    }

    async fn list_managed(&self, scope: &Scope) -> Result<Vec<Assignment>, AccessError> {
        self.for_scope(scope)?.list_managed(scope).await
    }

    /// The Azure provider's name (`arm`), with `+graph` when Graph is wired too.
    fn kind(&self) -> &'static str {
        match (self.azure.kind(), self.graph.is_some()) {
            ("arm", true) => "arm+graph",
            (kind, _) => kind,
        }
    }
}
