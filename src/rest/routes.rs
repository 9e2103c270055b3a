//! The REST routes of `TokenService`, read from the `google.api.http` option
//! of each RPC in the descriptor set. The proto is the one place a route is
//! written: the table cannot drift from it, and an RPC without a rule, or a
//! rule this module cannot serve, stops the table from loading.

use http::Method;
use prost_reflect::{DescriptorPool, MessageDescriptor, MethodDescriptor};

use crate::rest::google_api::HttpRule;
use crate::rest::google_api::http_rule::Pattern;
pub use crate::rest::path_template::{PathParam, PathTemplate, TemplateError};

const SERVICE: &str = "tokend.v1.TokenService";
const HTTP_EXTENSION: &str = "google.api.http";

/// The RPCs of `TokenService`, one variant each, so that the code serving a
/// route matches on it exhaustively. An RPC in the proto without a variant
/// here (or the reverse) stops the route table from loading.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rpc {
    /// `CreateToken`.
    CreateToken,
    /// `GetToken`.
    GetToken,
    /// `ListTokens`.
    ListTokens,
    /// `RevokeScrapeToken`.
    RevokeScrapeToken,
    /// `RevokePersonalAccessToken`.
    RevokePersonalAccessToken,
    /// `RevokeServiceAccountToken`.
    RevokeServiceAccountToken,
    /// `DeleteWorkspaceApiKey`.
    DeleteWorkspaceApiKey,
    /// `AuthenticateToken`.
    AuthenticateToken,
    /// `ListAuditEvents`.
    ListAuditEvents,
    /// `RotateToken`.
    RotateToken,
    /// `RevokeTokenBySecret`.
    RevokeTokenBySecret,
    /// `RevokeTokens`.
    RevokeTokens,
    /// `GetTokenPolicy`.
    GetTokenPolicy,
    /// `UpdateTokenPolicy`.
    UpdateTokenPolicy,
}

impl Rpc {
    /// Every RPC, in the proto's order.
    pub const ALL: [Rpc; 14] = [
        Rpc::CreateToken,
        Rpc::GetToken,
        Rpc::ListTokens,
        Rpc::RevokeScrapeToken,
        Rpc::RevokePersonalAccessToken,
        Rpc::RevokeServiceAccountToken,
        Rpc::DeleteWorkspaceApiKey,
        Rpc::AuthenticateToken,
        Rpc::ListAuditEvents,
        Rpc::RotateToken,
        Rpc::RevokeTokenBySecret,
        Rpc::RevokeTokens,
        Rpc::GetTokenPolicy,
        Rpc::UpdateTokenPolicy,
    ];

    /// The RPC's name in the proto.
    pub fn method_name(self) -> &'static str {
        match self {
            Rpc::CreateToken => "CreateToken",
            Rpc::GetToken => "GetToken",
            Rpc::ListTokens => "ListTokens",
            Rpc::RevokeScrapeToken => "RevokeScrapeToken",
            Rpc::RevokePersonalAccessToken => "RevokePersonalAccessToken",
            Rpc::RevokeServiceAccountToken => "RevokeServiceAccountToken",
            Rpc::DeleteWorkspaceApiKey => "DeleteWorkspaceApiKey",
            Rpc::AuthenticateToken => "AuthenticateToken",
            Rpc::ListAuditEvents => "ListAuditEvents",
            Rpc::RotateToken => "RotateToken",
            Rpc::RevokeTokenBySecret => "RevokeTokenBySecret",
            Rpc::RevokeTokens => "RevokeTokens",
            Rpc::GetTokenPolicy => "GetTokenPolicy",
            Rpc::UpdateTokenPolicy => "UpdateTokenPolicy",
        }
    }

    fn from_method_name(name: &str) -> Option<Rpc> {
        Rpc::ALL.into_iter().find(|rpc| rpc.method_name() == name)
    }

    /// The wire format the RPC's REST route answers in.
    pub fn wire_format(self) -> WireFormat {
        match self {
            Rpc::RevokeScrapeToken => WireFormat::ScrapeTokens,
            Rpc::RevokePersonalAccessToken => WireFormat::PersonalAccessTokens,
            Rpc::RevokeServiceAccountToken => WireFormat::ServiceAccountTokens,
            Rpc::DeleteWorkspaceApiKey => WireFormat::WorkspaceApiKeys,
            Rpc::CreateToken
            | Rpc::GetToken
            | Rpc::ListTokens
            | Rpc::AuthenticateToken
            | Rpc::ListAuditEvents
            | Rpc::RotateToken
            | Rpc::RevokeTokenBySecret
            | Rpc::RevokeTokens
            | Rpc::GetTokenPolicy
            | Rpc::UpdateTokenPolicy => WireFormat::ProtoJson,
        }
    }
}

/// How a route's answers look: the proto3 JSON mapping for the `/v1/`
/// routes, or the format of the REST API whose clients a revoke route keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WireFormat {
    /// The RPC's response message in the proto3 JSON mapping; errors are
    /// `application/problem+json` with every `tokend.v1.Problem` field.
    ProtoJson,
    /// `DELETE /api/integrations/prometheus-tokens/{id}`: 204 without a
    /// body; errors are `application/problem+json` with the legacy `error`,
    /// `details` and `requestId` members.
    ScrapeTokens,
    /// `DELETE /api/v2/personal_access_tokens/{token_id}`: 204 without a
    /// body; errors are `{"errors": ["…"]}`.
    PersonalAccessTokens,
    /// `DELETE /service-accounts/{service_account_slug}/tokens/{token_slug}`:
    /// 204 without a body; errors are `application/problem+json` with
    /// `errors` as `[{location, message, value}]`.
    ServiceAccountTokens,
    /// `DELETE /workspaces/{workspace_id}/apikeys/{key_name}`: 200 with
    /// `{"keyName", "workspaceId"}`; errors are AWS REST-JSON
    /// (`x-amzn-ErrorType`).
    WorkspaceApiKeys,
}

/// Where the fields that the path does not bind come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyRule {
    /// No `body` in the rule: from the query string. The revoke routes of
    /// the other wire formats also take them from a JSON body, as their
    /// existing clients send `reason` either way.
    None,
    /// `body: "*"`: from the JSON body; the query string carries nothing.
    Whole,
}

/// One HTTP route of an RPC.
#[derive(Clone, Debug)]
pub struct Route {
    rpc: Rpc,
    method: Method,
    template: PathTemplate,
    body: BodyRule,
    input: MessageDescriptor,
}

impl Route {
    /// The RPC the route calls.
    pub fn rpc(&self) -> Rpc {
        self.rpc
    }

    /// Its HTTP method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// Its path template.
    pub fn template(&self) -> &PathTemplate {
        &self.template
    }

    /// Where the fields the path does not bind come from.
    pub fn body(&self) -> BodyRule {
        self.body
    }

    /// The RPC's request message.
    pub fn input(&self) -> &MessageDescriptor {
        &self.input
    }

    fn from_rule(
        rpc: Rpc,
        method: &MethodDescriptor,
        rule: &HttpRule,
    ) -> Result<Route, RouteTableError> {
        let unsupported = |reason| RouteTableError::UnsupportedRule { rpc, reason };
        let (http_method, template) = match &rule.pattern {
            Some(Pattern::Get(path)) => (Method::GET, path),
            Some(Pattern::Put(path)) => (Method::PUT, path),
            Some(Pattern::Post(path)) => (Method::POST, path),
            Some(Pattern::Delete(path)) => (Method::DELETE, path),
            Some(Pattern::Patch(path)) => (Method::PATCH, path),
            Some(Pattern::Custom(_)) => return Err(unsupported("custom patterns")),
            None => return Err(unsupported("a rule without a pattern")),
        };
        if !rule.response_body.is_empty() {
            return Err(unsupported("`response_body`"));
        }
        let body = match rule.body.as_str() {
            "" => BodyRule::None,
            "*" => BodyRule::Whole,
            _ => return Err(unsupported("a `body` naming one field (only \"*\")")),
        };
        if body == BodyRule::Whole && (http_method == Method::GET || http_method == Method::DELETE)
        {
            return Err(unsupported("a body on GET or DELETE"));
        }
        let input = method.input();
        let template =
            PathTemplate::parse(template, &input).map_err(|source| RouteTableError::Template {
                rpc,
                template: template.clone(),
                source,
            })?;
        Ok(Route {
            rpc,
            method: http_method,
            template,
            body,
            input,
        })
    }
}

/// Why the route table cannot be built from the descriptor set.
#[derive(Debug, thiserror::Error)]
pub enum RouteTableError {
    /// The descriptor set has no `tokend.v1.TokenService`.
    #[error("the descriptor set has no service {SERVICE}")]
    MissingService,
    /// The descriptor set lacks `google/api/annotations.proto`.
    #[error("the descriptor set has no extension {HTTP_EXTENSION}")]
    MissingHttpExtension,
    /// An RPC of the proto that [`Rpc`] does not name.
    #[error("RPC {0} of {SERVICE} has no variant in rest::Rpc")]
    UnknownRpc(String),
    /// An [`Rpc`] that the proto does not have.
    #[error("RPC {0:?} is not in {SERVICE}")]
    MissingRpc(Rpc),
    /// An RPC without a `google.api.http` option.
    #[error("RPC {0:?} has no google.api.http option")]
    MissingRule(Rpc),
    /// A `google.api.http` option that does not decode as an `HttpRule`.
    #[error("RPC {0:?}: its google.api.http option is not an HttpRule")]
    BadRule(Rpc),
    /// A rule that uses what this module does not serve.
    #[error("RPC {rpc:?}: {reason} not supported")]
    UnsupportedRule {
        /// The RPC.
        rpc: Rpc,
        /// What is not supported.
        reason: &'static str,
    },
    /// A path template that cannot be served.
    #[error("RPC {rpc:?}: path `{template}` {source}")]
    Template {
        /// The RPC.
        rpc: Rpc,
        /// The template as written.
        template: String,
        /// What is wrong with it.
        source: TemplateError,
    },
    /// Two routes that some request would match both.
    #[error("RPCs {first:?} and {second:?} both answer {method} {template}")]
    Conflict {
        /// The first RPC.
        first: Rpc,
        /// The second RPC.
        second: Rpc,
        /// The HTTP method of both.
        method: Method,
        /// The template of the second.
        template: String,
    },
}

/// What a request's method and path select.
#[derive(Debug)]
pub enum RouteMatch<'t> {
    /// A route, with its path variables.
    Found(MatchedRoute<'t>),
    /// The path is a route's, the method is not (HTTP 405 with `Allow`).
    MethodNotAllowed {
        /// The methods that the path has routes for.
        allowed: Vec<Method>,
    },
    /// No route has this path.
    NotFound,
}

/// A route and the path variables of the request that matched it.
#[derive(Debug)]
pub struct MatchedRoute<'t> {
    route: &'t Route,
    path_params: Vec<PathParam>,
}

impl<'t> MatchedRoute<'t> {
    /// The route.
    pub fn route(&self) -> &'t Route {
        self.route
    }

    /// The path variables, in the template's order.
    pub fn path_params(&self) -> &[PathParam] {
        &self.path_params
    }
}

/// Every REST route of `TokenService`.
#[derive(Clone, Debug)]
pub struct RouteTable {
    /// Routes with a verb first, so that `/v1/tokens/{id}:rotate` is tried
    /// before `/v1/tokens/{id}` could take `7:rotate` as an id.
    routes: Vec<Route>,
}

impl RouteTable {
    /// Reads the `google.api.http` rule (and its `additional_bindings`) of
    /// every RPC of `TokenService` in `pool`.
    pub fn from_pool(pool: &DescriptorPool) -> Result<RouteTable, RouteTableError> {
        let service = pool
            .get_service_by_name(SERVICE)
            .ok_or(RouteTableError::MissingService)?;
        let extension = pool
            .get_extension_by_name(HTTP_EXTENSION)
            .ok_or(RouteTableError::MissingHttpExtension)?;
        let mut routes = Vec::new();
        let mut seen = Vec::new();
        for method in service.methods() {
            let rpc = Rpc::from_method_name(method.name())
                .ok_or_else(|| RouteTableError::UnknownRpc(method.name().to_owned()))?;
            seen.push(rpc);
            let options = method.options();
            if !options.has_extension(&extension) {
                return Err(RouteTableError::MissingRule(rpc));
            }
            let rule: HttpRule = options
                .get_extension(&extension)
                .as_message()
                .and_then(|rule| rule.transcode_to().ok())
                .ok_or(RouteTableError::BadRule(rpc))?;
            routes.push(Route::from_rule(rpc, &method, &rule)?);
            for binding in &rule.additional_bindings {
                if !binding.additional_bindings.is_empty() {
                    return Err(RouteTableError::UnsupportedRule {
                        rpc,
                        reason: "nested `additional_bindings`",
                    });
                }
                routes.push(Route::from_rule(rpc, &method, binding)?);
            }
        }
        if let Some(missing) = Rpc::ALL.into_iter().find(|rpc| !seen.contains(rpc)) {
            return Err(RouteTableError::MissingRpc(missing));
        }
        RouteTable::from_routes(routes)
    }

    fn from_routes(mut routes: Vec<Route>) -> Result<RouteTable, RouteTableError> {
        for (index, first) in routes.iter().enumerate() {
            for second in &routes[index + 1..] {
                if first.method == second.method && first.template.overlaps(&second.template) {
                    return Err(RouteTableError::Conflict {
                        first: first.rpc,
                        second: second.rpc,
                        method: second.method.clone(),
                        template: second.template.text.clone(),
                    });
                }
            }
        }
        routes.sort_by_key(|route| route.template.verb.is_none());
        Ok(RouteTable { routes })
    }

    /// Every route.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The route for `method` and `path` (the request URI's path, still
    /// percent-encoded, without the query).
    pub fn find(&self, method: &Method, path: &str) -> RouteMatch<'_> {
        let mut allowed = Vec::new();
        for route in &self.routes {
            if let Some(path_params) = route.template.bind(path) {
                if route.method == *method {
                    return RouteMatch::Found(MatchedRoute { route, path_params });
                }
                if !allowed.contains(&route.method) {
                    allowed.push(route.method.clone());
                }
            }
        }
        if allowed.is_empty() {
            RouteMatch::NotFound
        } else {
            RouteMatch::MethodNotAllowed { allowed }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::rest::json::ProtoJson;

    pub(crate) fn table() -> RouteTable {
        let json = ProtoJson::load().expect("descriptor set");
        RouteTable::from_pool(json.pool()).expect("every RPC has a servable rule")
    }

    fn descriptor(name: &str) -> MessageDescriptor {
        let json = ProtoJson::load().expect("descriptor set");
        json.pool()
            .get_message_by_name(&format!("tokend.v1.{name}"))
            .expect("message")
    }

    /// The routes of the contract, written out once: a change to an
    /// annotation in the proto fails here, in review, not in a client.
    const CONTRACT: [(Rpc, &str, &str, BodyRule); 14] = [
        (Rpc::CreateToken, "POST", "/v1/tokens", BodyRule::Whole),
        (Rpc::GetToken, "GET", "/v1/tokens/{id}", BodyRule::None),
        (Rpc::ListTokens, "GET", "/v1/tokens", BodyRule::None),
        (
            Rpc::RevokeScrapeToken,
            "DELETE",
            "/api/integrations/prometheus-tokens/{id}",
            BodyRule::None,
        ),
        (
            Rpc::RevokePersonalAccessToken,
            "DELETE",
            "/api/v2/personal_access_tokens/{token_id}",
            BodyRule::None,
        ),
        (
            Rpc::RevokeServiceAccountToken,
            "DELETE",
            "/service-accounts/{service_account_slug}/tokens/{token_slug}",
            BodyRule::None,
        ),
        (
            Rpc::DeleteWorkspaceApiKey,
            "DELETE",
            "/workspaces/{workspace_id}/apikeys/{key_name}",
            BodyRule::None,
        ),
        (
            Rpc::AuthenticateToken,
            "POST",
            "/v1/tokens:authenticate",
            BodyRule::Whole,
        ),
        (
            Rpc::ListAuditEvents,
            "GET",
            "/v1/auditEvents",
            BodyRule::None,
        ),
        (
            Rpc::RotateToken,
            "POST",
            "/v1/tokens/{id}:rotate",
            BodyRule::Whole,
        ),
        (
            Rpc::RevokeTokenBySecret,
            "POST",
            "/v1/tokens:revokeBySecret",
            BodyRule::Whole,
        ),
        (
            Rpc::RevokeTokens,
            "POST",
            "/v1/tokens:batchRevoke",
            BodyRule::Whole,
        ),
        (
            Rpc::GetTokenPolicy,
            "GET",
            "/v1/tokenPolicy",
            BodyRule::None,
        ),
        (
            Rpc::UpdateTokenPolicy,
            "PUT",
            "/v1/tokenPolicy",
            BodyRule::Whole,
        ),
    ];

    #[test]
    fn the_table_holds_the_contracts_routes_from_the_annotations() {
        let table = table();
        let mut found: Vec<(Rpc, String, String, BodyRule)> = table
            .routes()
            .iter()
            .map(|route| {
                (
                    route.rpc(),
                    route.method().to_string(),
                    route.template().as_str().to_owned(),
                    route.body(),
                )
            })
            .collect();
        found.sort_by_key(|(rpc, ..)| Rpc::ALL.iter().position(|r| r == rpc));
        let expected: Vec<(Rpc, String, String, BodyRule)> = CONTRACT
            .iter()
            .map(|(rpc, method, path, body)| {
                (*rpc, (*method).to_owned(), (*path).to_owned(), *body)
            })
            .collect();
        assert_eq!(found, expected);
    }

    #[test]
    fn json_routes_live_under_v1_and_the_revokes_keep_their_own_paths() {
        for route in table().routes() {
            let under_v1 = route.template().as_str().starts_with("/v1/");
            assert_eq!(
                under_v1,
                route.rpc().wire_format() == WireFormat::ProtoJson,
                "{:?} {}",
                route.rpc(),
                route.template().as_str()
            );
            assert_eq!(
                route.input().name(),
                format!("{}Request", route.rpc().method_name())
            );
        }
    }

    #[test]
    fn the_reference_lists_every_route() {
        let reference =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/reference.md"))
                .expect("docs/reference.md");
        for route in table().routes() {
            let row = format!("`{} {}`", route.method(), route.template().as_str());
            assert!(
                reference.contains(&row),
                "docs/reference.md does not list {row}"
            );
        }
    }

    fn found(table: &RouteTable, method: Method, path: &str) -> (Rpc, Vec<(String, String)>) {
        match table.find(&method, path) {
            RouteMatch::Found(matched) => (
                matched.route().rpc(),
                matched
                    .path_params()
                    .iter()
                    .map(|p| (p.field().name().to_owned(), p.raw().to_owned()))
                    .collect(),
            ),
            other => panic!("{method} {path}: {other:?}"),
        }
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[test]
    fn requests_find_their_route_and_path_variables() {
        let table = table();
        assert_eq!(
            found(&table, Method::GET, "/v1/tokens/42"),
            (Rpc::GetToken, pairs(&[("id", "42")]))
        );
        assert_eq!(
            found(&table, Method::GET, "/v1/tokens"),
            (Rpc::ListTokens, vec![])
        );
        assert_eq!(
            found(&table, Method::POST, "/v1/tokens"),
            (Rpc::CreateToken, vec![])
        );
        assert_eq!(
            found(&table, Method::POST, "/v1/tokens:authenticate"),
            (Rpc::AuthenticateToken, vec![])
        );
        assert_eq!(
            found(&table, Method::GET, "/v1/auditEvents"),
            (Rpc::ListAuditEvents, vec![])
        );
        assert_eq!(
            found(
                &table,
                Method::DELETE,
                "/api/integrations/prometheus-tokens/7"
            ),
            (Rpc::RevokeScrapeToken, pairs(&[("id", "7")]))
        );
        assert_eq!(
            found(
                &table,
                Method::DELETE,
                "/api/v2/personal_access_tokens/0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
            ),
            (
                Rpc::RevokePersonalAccessToken,
                pairs(&[("token_id", "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")])
            )
        );
        assert_eq!(
            found(
                &table,
                Method::DELETE,
                "/service-accounts/builder/tokens/ci-deploy"
            ),
            (
                Rpc::RevokeServiceAccountToken,
                pairs(&[
                    ("service_account_slug", "builder"),
                    ("token_slug", "ci-deploy")
                ])
            )
        );
        // Values stay percent-encoded until decoding; a `:` is part of a
        // value when the template has no verb.
        assert_eq!(
            found(
                &table,
                Method::DELETE,
                "/workspaces/g-0123456789/apikeys/deploy%20key:2"
            ),
            (
                Rpc::DeleteWorkspaceApiKey,
                pairs(&[
                    ("workspace_id", "g-0123456789"),
                    ("key_name", "deploy%20key:2")
                ])
            )
        );
    }

    #[test]
    fn other_paths_and_methods_find_nothing() {
        let table = table();
        for path in [
            "/v1/tokens/",
            "/v1/tokens//",
            "/v1/tokens/1/extra",
            "/v1/nope",
            "v1/tokens",
            "",
            "/",
            "/v1/tokens:nope",
            "/v1/tokens:authenticate/x",
            "/V1/tokens",
            "/api/integrations/prometheus-tokens",
        ] {
            assert!(
                matches!(table.find(&Method::GET, path), RouteMatch::NotFound),
                "{path}"
            );
        }
        match table.find(&Method::PUT, "/v1/tokens") {
            RouteMatch::MethodNotAllowed { allowed } => {
                assert_eq!(allowed.len(), 2);
                assert!(allowed.contains(&Method::GET) && allowed.contains(&Method::POST));
            }
            other => panic!("{other:?}"),
        }
        match table.find(&Method::GET, "/v1/tokens:authenticate") {
            RouteMatch::MethodNotAllowed { allowed } => assert_eq!(allowed, vec![Method::POST]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn templates_parse_or_say_what_is_wrong() {
        let get = descriptor("GetTokenRequest");
        let create = descriptor("CreateTokenRequest");
        let rotate = PathTemplate::parse("/v1/tokens/{id}:rotate", &get).unwrap();
        assert_eq!(rotate.verb.as_deref(), Some("rotate"));
        assert_eq!(rotate.bind("/v1/tokens/3:rotate").unwrap()[0].raw(), "3");
        assert!(rotate.bind("/v1/tokens/3").is_none());
        let cases: [(&str, &MessageDescriptor, TemplateError); 11] = [
            ("v1/tokens", &get, TemplateError::NotAbsolute),
            ("/v1//tokens", &get, TemplateError::EmptySegment),
            ("/v1/tokens/", &get, TemplateError::EmptySegment),
            ("/v1/*", &get, TemplateError::UnsupportedSegment("*".into())),
            (
                "/v1/{id=*}",
                &get,
                TemplateError::UnsupportedSegment("{id=*}".into()),
            ),
            (
                "/v1/{a.b}",
                &get,
                TemplateError::UnsupportedSegment("{a.b}".into()),
            ),
            ("/v1/tokens:", &get, TemplateError::BadVerb(String::new())),
            (
                "/v1/{nope}",
                &get,
                TemplateError::UnknownField {
                    field: "nope".into(),
                    message: "tokend.v1.GetTokenRequest".into(),
                },
            ),
            (
                "/v1/{expire_time}",
                &create,
                TemplateError::NotBindable("expire_time".into()),
            ),
            (
                "/v1/{scopes}",
                &create,
                TemplateError::NotBindable("scopes".into()),
            ),
            (
                "/v1/{name}/{name}",
                &create,
                TemplateError::BoundTwice("name".into()),
            ),
        ];
        for (text, input, expected) in cases {
            assert_eq!(PathTemplate::parse(text, input), Err(expected), "{text}");
        }
    }

    /// A route outside the proto, with no body, for rules no RPC uses yet.
    pub(crate) fn route_for(
        rpc: Rpc,
        method: Method,
        template: &str,
        input: &MessageDescriptor,
    ) -> Route {
        Route {
            rpc,
            method,
            template: PathTemplate::parse(template, input).unwrap(),
            body: BodyRule::None,
            input: input.clone(),
        }
    }

    pub(crate) fn table_of(routes: Vec<Route>) -> RouteTable {
        RouteTable::from_routes(routes).unwrap()
    }

    fn route(rpc: Rpc, method: Method, template: &str) -> Route {
        let input = descriptor(&format!("{}Request", rpc.method_name()));
        route_for(rpc, method, template, &input)
    }

    #[test]
    fn two_routes_that_one_request_could_match_are_refused() {
        let conflict = RouteTable::from_routes(vec![
            route(Rpc::GetToken, Method::GET, "/v1/tokens/{id}"),
            route(Rpc::ListTokens, Method::GET, "/v1/tokens/mine"),
        ]);
        assert!(matches!(
            conflict,
            Err(RouteTableError::Conflict {
                first: Rpc::GetToken,
                second: Rpc::ListTokens,
                ..
            })
        ));
        // Another method, another verb or another length do not overlap, and
        // the verb route is tried first.
        let table = RouteTable::from_routes(vec![
            route(Rpc::GetToken, Method::GET, "/v1/tokens/{id}"),
            route(Rpc::ListTokens, Method::POST, "/v1/tokens/mine"),
            route(
                Rpc::RevokeScrapeToken,
                Method::GET,
                "/v1/tokens/{id}:revoke",
            ),
            route(Rpc::ListAuditEvents, Method::GET, "/v1/tokens"),
        ])
        .unwrap();
        assert_eq!(
            found(&table, Method::GET, "/v1/tokens/5:revoke"),
            (Rpc::RevokeScrapeToken, pairs(&[("id", "5")]))
        );
    }
}
