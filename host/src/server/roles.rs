//! Which role each route needs: one table, read by the authentication
//! middleware for every request and by the OpenAPI document.

use axum::http::Method;

use crate::access::Role;

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Need {
    /// No token: liveness and the console's page and files (which hold
    /// no data).
    Public,
    /// Any role: reading snapshots, jobs and hypervisors.
    Read,
    /// Admin or auditor: the audit log.
    Audit,
    /// Admin or operator (within its scope, checked by the handler):
    /// starting and cancelling jobs (a verify: any operator), running a
    /// backup policy (every VM it selects within the scope).
    Run,
    /// Admin: tokens, adding and removing backup policies, tagging VMs.
    Admin,
}

impl Need {
    /// The roles that pass.
    pub(super) fn roles(self) -> &'static [Role] {
        match self {
            Need::Public | Need::Read => &[Role::Admin, Role::Operator, Role::Auditor],
            Need::Audit => &[Role::Admin, Role::Auditor],
            Need::Run => &[Role::Admin, Role::Operator],
            Need::Admin => &[Role::Admin],
        }
    }

    pub(super) fn allows(self, role: Role) -> bool {
        self.roles().contains(&role)
    }
}

/// Every route: method, path pattern (`{x}` one segment), need.
pub(super) const ROUTES: &[(&str, &str, Need)] = &[
    ("GET", "/", Need::Public),
    ("GET", "/ui/{file}", Need::Public),
    ("GET", "/health", Need::Public),
    ("GET", "/openapi.json", Need::Read),
    ("GET", "/metrics", Need::Read),
    ("GET", "/snapshots", Need::Read),
    ("GET", "/snapshots/{id}", Need::Read),
    ("GET", "/snapshots/{id}/items", Need::Read),
    ("GET", "/snapshots/{id}/children", Need::Read),
    ("GET", "/find", Need::Read),
    ("GET", "/hypervisors", Need::Read),
    ("GET", "/jobs", Need::Read),
    ("POST", "/jobs", Need::Run),
    ("GET", "/jobs/{id}", Need::Read),
    ("DELETE", "/jobs/{id}", Need::Run),
    ("GET", "/jobs/{id}/events", Need::Read),
    ("GET", "/policies", Need::Read),
    ("POST", "/policies", Need::Admin),
    ("GET", "/policies/{id}", Need::Read),
    ("DELETE", "/policies/{id}", Need::Admin),
    ("POST", "/policies/{id}/run", Need::Run),
    ("GET", "/tags", Need::Read),
    ("POST", "/tags/{hv}/{vm}", Need::Admin),
    ("GET", "/audit", Need::Audit),
    ("GET", "/tokens", Need::Admin),
    ("POST", "/tokens", Need::Admin),
    ("DELETE", "/tokens/{id}", Need::Admin),
];

fn matches(pattern: &str, path: &str) -> bool {
    let (mut p, mut q) = (pattern.split('/'), path.split('/'));
    loop {
        match (p.next(), q.next()) {
            (None, None) => return true,
            (Some(a), Some(b)) if a.starts_with('{') && a.ends_with('}') && !b.is_empty() => {}
            (Some(a), Some(b)) if a == b => {}
            _ => return false,
        }
    }
}

/// What a request needs; `None` for no route of the table (the router
/// answers 404 or 405 to an authenticated request).
pub(super) fn need(method: &Method, path: &str) -> Option<Need> {
    // HEAD is GET without a body.
    let method = if method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    ROUTES
        .iter()
        .find(|(m, p, _)| *m == method && matches(p, path))
        .map(|(_, _, n)| *n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_found() {
        assert_eq!(need(&Method::GET, "/health"), Some(Need::Public));
        assert_eq!(need(&Method::POST, "/jobs"), Some(Need::Run));
        assert_eq!(need(&Method::DELETE, "/jobs/ab12"), Some(Need::Run));
        assert_eq!(need(&Method::GET, "/jobs/ab12/events"), Some(Need::Read));
        assert_eq!(need(&Method::DELETE, "/tokens/x"), Some(Need::Admin));
        assert_eq!(need(&Method::POST, "/policies"), Some(Need::Admin));
        assert_eq!(need(&Method::POST, "/policies/p/run"), Some(Need::Run));
        assert_eq!(need(&Method::GET, "/policies/p"), Some(Need::Read));
        assert_eq!(need(&Method::GET, "/jobs//events"), None);
        assert_eq!(need(&Method::PUT, "/jobs"), None);
        assert!(!Need::Audit.allows(Role::Operator));
        assert!(!Need::Run.allows(Role::Auditor));
    }

    /// Every route of the table is in the OpenAPI document with its roles,
    /// and every operation of the document is in the table.
    #[test]
    fn the_openapi_document_names_each_routes_roles() {
        let doc = super::super::openapi::document();
        let mut n = 0;
        for (path, ops) in doc["paths"].as_object().unwrap() {
            for (m, op) in ops.as_object().unwrap() {
                let need = need(
                    &m.to_uppercase().parse().unwrap(),
                    &path.replace("{id}", "x"),
                )
                .unwrap_or_else(|| panic!("{m} {path} is not in the route table"));
                let roles: Vec<&str> = need.roles().iter().map(|r| r.as_str()).collect();
                assert_eq!(op["x-roles"], serde_json::json!(roles), "{m} {path}");
                n += 1;
            }
        }
        assert_eq!(n, ROUTES.len());
    }
}
