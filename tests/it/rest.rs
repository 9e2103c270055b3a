//! The REST face through raw HTTP: the four seed endpoints in their
//! families' formats (success and every error row that applies: a bad
//! field, no or a bad JWT, a missing permission, not found, rate limited,
//! database unavailable), the `/v1/` routes round trip, unknown paths and
//! wrong methods.

use std::net::SocketAddr;

use serde_json::{Value, json};
use tokend::grpc::proto::{CreateTokenRequest, TokenKind};

use crate::http_client::{HttpResponse, send};
use crate::support::*;

const WORKSPACE: &str = "g-0123456789";

/// One request with `Connection: close`.
async fn call(
    to: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> HttpResponse {
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: tokend\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    match body {
        Some(body) => {
            request.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ));
        }
        None => request.push_str("\r\n"),
    }
    send(None, to, request.as_bytes()).await
}

/// The four seed families, each with a revoke path for a token it names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    Scrape,
    PersonalAccess,
    ServiceAccount,
    Workspace,
}

const FAMILIES: [Family; 4] = [
    Family::Scrape,
    Family::PersonalAccess,
    Family::ServiceAccount,
    Family::Workspace,
];

impl Family {
    fn create(self, name: &str) -> CreateTokenRequest {
        let (kind, slug, workspace) = match self {
            Family::Scrape => (TokenKind::Scrape, "", ""),
            Family::PersonalAccess => (TokenKind::PersonalAccess, "", ""),
            Family::ServiceAccount => (TokenKind::ServiceAccount, "ci", ""),
            Family::Workspace => (TokenKind::WorkspaceApiKey, "", WORKSPACE),
        };
        CreateTokenRequest {
            kind: kind as i32,
            name: name.to_owned(),
            service_account_slug: slug.to_owned(),
            workspace_id: workspace.to_owned(),
            ..Default::default()
        }
    }

    /// The revoke path of a created token.
    fn path(self, token: &tokend::grpc::proto::Token) -> String {
        match self {
            Family::Scrape => format!("/api/integrations/prometheus-tokens/{}", token.id),
            Family::PersonalAccess => {
                format!("/api/v2/personal_access_tokens/{}", token.token_id)
            }
            Family::ServiceAccount => format!(
                "/service-accounts/{}/tokens/{}",
                token.service_account_slug, token.name
            ),
            Family::Workspace => {
                format!("/workspaces/{}/apikeys/{}", token.workspace_id, token.name)
            }
        }
    }

    /// A path naming no token.
    fn missing_path(self) -> String {
        match self {
            Family::Scrape => "/api/integrations/prometheus-tokens/987654".to_owned(),
            Family::PersonalAccess => {
                "/api/v2/personal_access_tokens/0192f0c5-6c1e-7b7a-9d1e-3f5a2b6c7d8e".to_owned()
            }
            Family::ServiceAccount => "/service-accounts/ci/tokens/nobody".to_owned(),
            Family::Workspace => format!("/workspaces/{WORKSPACE}/apikeys/nobody"),
        }
    }
}

/// The request id echoed, and the content type.
fn assert_common(response: &HttpResponse, request_id: &str, content_type: Option<&str>) {
    assert_eq!(
        response.header("x-request-id"),
        Some(request_id),
        "{response:?}"
    );
    assert_eq!(
        response.header("content-type"),
        content_type,
        "{response:?}"
    );
}

/// Checks one error response in `family`'s envelope: status, content type,
/// every body member, headers.
fn assert_error(
    family: Family,
    response: &HttpResponse,
    status: u16,
    reason: &str,
    request_id: &str,
    bad_field: Option<(&str, Value)>,
) {
    assert_eq!(response.status, status, "{family:?} {reason}: {response:?}");
    let body = response.json();
    let type_uri = format!(
        "urn:tokend:problem:{}",
        reason.to_ascii_lowercase().replace('_', "-")
    );
    let instance = format!("urn:tokend:request:{request_id}");
    match family {
        Family::Scrape => {
            assert_common(response, request_id, Some("application/problem+json"));
            assert_eq!(body["type"], type_uri.as_str());
            assert!(body["title"].as_str().is_some_and(|t| !t.is_empty()));
            assert_eq!(body["status"], status);
            let detail = body["detail"].as_str().expect("detail");
            assert!(!detail.is_empty());
            assert_eq!(body["instance"], instance.as_str());
            assert_eq!(body["error"], detail, "legacy error = detail");
            assert_eq!(body["requestId"], request_id);
            let details = body["details"].as_object().expect("details object");
            match &bad_field {
                Some((field, _)) => {
                    assert!(details.contains_key(*field), "{body}");
                }
                None => assert!(details.is_empty(), "{body}"),
            }
        }
        Family::PersonalAccess => {
            assert_common(response, request_id, Some("application/json"));
            let errors = body["errors"].as_array().expect("errors");
            assert_eq!(body.as_object().map(|o| o.len()), Some(1), "{body}");
            assert_eq!(errors.len(), 1, "{body}");
            let text = errors[0].as_str().expect("a string");
            match &bad_field {
                Some((field, _)) => assert!(text.starts_with(&format!("{field}: ")), "{body}"),
                None => assert!(!text.is_empty()),
            }
        }
        Family::ServiceAccount => {
            assert_common(response, request_id, Some("application/problem+json"));
            assert_eq!(body["type"], type_uri.as_str());
            assert!(body["title"].as_str().is_some_and(|t| !t.is_empty()));
            assert_eq!(body["status"], status);
            assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()));
            assert_eq!(body["instance"], instance.as_str());
            let errors = body["errors"].as_array().expect("errors");
            match &bad_field {
                Some((field, value)) => {
                    assert_eq!(errors.len(), 1, "{body}");
                    assert_eq!(errors[0]["location"], *field);
                    assert!(errors[0]["message"].as_str().is_some_and(|m| !m.is_empty()));
                    assert_eq!(&errors[0]["value"], value, "{body}");
                }
                None => assert!(errors.is_empty(), "{body}"),
            }
        }
        Family::Workspace => {
            assert_common(response, request_id, Some("application/json"));
            let error_type = match status {
                400 => "ValidationException",
                401 => "UnauthorizedException",
                403 => "AccessDeniedException",
                404 => "ResourceNotFoundException",
                409 => "ConflictException",
                429 => "ThrottlingException",
                _ => "InternalServerException",
            };
            assert_eq!(response.header("x-amzn-errortype"), Some(error_type));
            assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
            match status {
                400 => {
                    assert_eq!(body["reason"], "FIELD_VALIDATION_FAILED");
                    let (field, _) = bad_field.as_ref().expect("a bad field");
                    assert_eq!(body["fieldList"][0]["name"], *field, "{body}");
                    assert!(body["fieldList"][0]["message"].is_string());
                }
                404 => {
                    assert_eq!(body["resourceId"], "nobody");
                    assert_eq!(body["resourceType"], "API_KEY");
                }
                _ => {}
            }
        }
    }
    match status {
        429 | 503 => {
            let seconds: u64 = response
                .header("retry-after")
                .expect("Retry-After")
                .parse()
                .expect("whole seconds");
            assert!(seconds >= 1);
        }
        _ => assert!(response.header("retry-after").is_none()),
    }
}

async fn revoke_seed_endpoints_in_their_formats(backend: Backend) -> TestResult {
    let server = TestServer::start(backend).await;
    let admin = server.admin("acme");
    let bearer = format!("Bearer {admin}");
    let mut client = server.client();
    for family in FAMILIES {
        let created = client
            .create_token(authed(family.create("deploy"), &admin))
            .await?
            .into_inner()
            .token
            .expect("token");
        let path = family.path(&created);
        let request_id = format!("rest-ok-{family:?}");
        let response = call(
            server.http_addr,
            "DELETE",
            &format!("{path}?reason=rotated"),
            &[("authorization", &bearer), ("x-request-id", &request_id)],
            None,
        )
        .await;
        assert_eq!(response.header("x-request-id"), Some(request_id.as_str()));
        match family {
            Family::Workspace => {
                assert_eq!(response.status, 200, "{response:?}");
                assert_eq!(response.header("content-type"), Some("application/json"));
                assert_eq!(
                    response.json(),
                    json!({"keyName": "deploy", "workspaceId": WORKSPACE})
                );
            }
            Family::Scrape | Family::PersonalAccess | Family::ServiceAccount => {
                assert_eq!(response.status, 204, "{family:?}: {response:?}");
                assert!(response.body.is_empty(), "{response:?}");
            }
        }
        // The core did it: revoked, with the reason and the request id in
        // the audit trail.
        let got = client
            .get_token(authed(
                tokend::grpc::proto::GetTokenRequest { id: created.id },
                &admin,
            ))
            .await?
            .into_inner()
            .token
            .expect("token");
        assert!(got.revoke_time.is_some(), "{family:?} revoked");
        assert_eq!(got.revoke_reason, "rotated");
        let events = all_events(&server, &admin).await?;
        assert!(
            events.iter().any(|e| e.request_id == request_id),
            "{family:?}: an audit event with the request id"
        );
        // Idempotent, as the gRPC twin.
        let again = call(
            server.http_addr,
            "DELETE",
            &path,
            &[("authorization", &bearer)],
            Some(r#"{"reason": "again"}"#),
        )
        .await;
        assert_eq!(again.status, response.status, "{again:?}");
    }
    Ok(())
}

/// One error row: its name, the target, the Authorization header, the
/// status, reason and the bad field with the value it must echo.
type ErrorRow<'a> = (
    &'a str,
    String,
    Option<String>,
    u16,
    &'a str,
    Option<(&'a str, Value)>,
);

async fn seed_endpoint_errors_in_their_family_envelopes(backend: Backend) -> TestResult {
    let server = TestServer::start(backend).await;
    let admin = server.admin("acme");
    let mut client = server.client();
    let bad_reason = "x".repeat(600);
    let echoed = format!("{}…", "x".repeat(61));
    for family in FAMILIES {
        let created = client
            .create_token(authed(family.create("deploy"), &admin))
            .await?
            .into_inner()
            .token
            .expect("token");
        let path = family.path(&created);
        let rows: Vec<ErrorRow> = vec![
            (
                "bad field",
                format!("{path}?reason={bad_reason}"),
                Some(format!("Bearer {admin}")),
                400,
                "INVALID_FIELD",
                Some(("reason", Value::String(echoed.clone()))),
            ),
            ("no JWT", path.clone(), None, 401, "JWT_MISSING", None),
            (
                "bad JWT",
                path.clone(),
                Some("Bearer not.a.jwt".to_owned()),
                401,
                "JWT_INVALID",
                None,
            ),
            (
                "permission",
                path.clone(),
                Some(format!("Bearer {}", server.jwt("acme", "u", &[], &[]))),
                403,
                "PERMISSION_DENIED",
                None,
            ),
            (
                "not found",
                family.missing_path(),
                Some(format!("Bearer {admin}")),
                404,
                "TOKEN_NOT_FOUND",
                None,
            ),
        ];
        for (row, target, authorization, status, reason, bad_field) in rows {
            let request_id = format!("rest-{family:?}-{}", row.replace(' ', "-"));
            let mut headers = vec![("x-request-id", request_id.as_str())];
            if let Some(authorization) = &authorization {
                headers.push(("authorization", authorization.as_str()));
            }
            let response = call(server.http_addr, "DELETE", &target, &headers, None).await;
            assert_error(family, &response, status, reason, &request_id, bad_field);
            if status == 401 {
                assert_eq!(response.header("www-authenticate"), Some("Bearer"));
            }
        }
        // Nothing was changed by the refused calls.
        let got = client
            .get_token(authed(
                tokend::grpc::proto::GetTokenRequest { id: created.id },
                &admin,
            ))
            .await?
            .into_inner()
            .token
            .expect("token");
        assert!(got.revoke_time.is_none(), "{family:?} still active");
    }
    Ok(())
}

async fn undecodable_values_are_invalid_field_in_each_format(backend: Backend) -> TestResult {
    let server = TestServer::start(backend).await;
    let admin = server.admin("acme");
    let bearer = format!("Bearer {admin}");
    let mut client = server.client();
    for family in FAMILIES {
        let created = client
            .create_token(authed(family.create("deploy"), &admin))
            .await?
            .into_inner()
            .token
            .expect("token");
        // A number where the proto has a string: the JSON value is echoed as
        // received (a number) where the format has a `value`.
        let request_id = format!("rest-decode-{family:?}");
        let response = call(
            server.http_addr,
            "DELETE",
            &family.path(&created),
            &[("authorization", &bearer), ("x-request-id", &request_id)],
            Some(r#"{"reason": 5}"#),
        )
        .await;
        assert_error(
            family,
            &response,
            400,
            "INVALID_FIELD",
            &request_id,
            Some(("reason", json!(5))),
        );
    }
    // A path value of the wrong type.
    let response = call(
        server.http_addr,
        "DELETE",
        "/api/integrations/prometheus-tokens/abc",
        &[
            ("authorization", &bearer),
            ("x-request-id", "rest-decode-id"),
        ],
        None,
    )
    .await;
    assert_error(
        Family::Scrape,
        &response,
        400,
        "INVALID_FIELD",
        "rest-decode-id",
        Some(("id", json!("abc"))),
    );
    assert_eq!(response.json()["errors"][0]["value"], "abc");
    Ok(())
}

async fn rate_limited_seed_calls_carry_retry_after(backend: Backend) -> TestResult {
    let server = TestServer::start_with(
        backend,
        &["--rate-limit-per-second", "1", "--rate-limit-burst", "1"],
    )
    .await;
    for family in FAMILIES {
        // Each family its own caller, so each has a fresh budget.
        let jwt = server.jwt("acme", &format!("admin-{family:?}"), &["admin"], &[]);
        let bearer = format!("Bearer {jwt}");
        let path = family.missing_path();
        let first = call(
            server.http_addr,
            "DELETE",
            &path,
            &[("authorization", &bearer)],
            None,
        )
        .await;
        assert_eq!(first.status, 404, "{first:?}");
        let request_id = format!("rest-throttled-{family:?}");
        let second = call(
            server.http_addr,
            "DELETE",
            &path,
            &[("authorization", &bearer), ("x-request-id", &request_id)],
            None,
        )
        .await;
        assert_error(family, &second, 429, "RATE_LIMITED", &request_id, None);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_unavailable_is_503_with_retry_after_in_every_format() -> TestResult {
    // A PostgreSQL URL on a port where nothing listens: the server starts,
    // never migrates, and refuses calls with DATABASE_UNAVAILABLE.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let mut db = TestDb::new(Backend::Sqlite).await;
    db.url = format!("postgres://postgres@{closed}/nowhere");
    let server = TestServer::spawn(
        std::sync::Arc::new(db),
        &[
            "--db-connect-timeout",
            "200ms",
            "--db-acquire-timeout",
            "300ms",
        ],
    )
    .await;
    let bearer = format!("Bearer {}", server.admin("acme"));
    for family in FAMILIES {
        let request_id = format!("rest-down-{family:?}");
        let response = call(
            server.http_addr,
            "DELETE",
            &family.missing_path(),
            &[("authorization", &bearer), ("x-request-id", &request_id)],
            None,
        )
        .await;
        assert_error(
            family,
            &response,
            503,
            "DATABASE_UNAVAILABLE",
            &request_id,
            None,
        );
    }
    let response = call(
        server.http_addr,
        "GET",
        "/v1/tokens",
        &[("authorization", &bearer)],
        None,
    )
    .await;
    assert_eq!(response.status, 503);
    assert_eq!(response.json()["reason"], "DATABASE_UNAVAILABLE");
    assert!(response.header("retry-after").is_some());
    Ok(())
}

async fn failed_authentications_spend_the_shared_per_address_budget(
    backend: Backend,
) -> TestResult {
    let server = TestServer::start_with(
        backend,
        &[
            "--auth-failures-per-minute",
            "1",
            "--auth-failure-burst",
            "2",
        ],
    )
    .await;
    let path = Family::Scrape.missing_path();
    for _ in 0..2 {
        let refused = call(
            server.http_addr,
            "DELETE",
            &path,
            &[("authorization", "Bearer not.a.jwt")],
            None,
        )
        .await;
        assert_eq!(refused.status, 401, "{refused:?}");
    }
    // Over the budget: refused before the JWT is looked at, good or not.
    let bearer = format!("Bearer {}", server.admin("acme"));
    let throttled = call(
        server.http_addr,
        "DELETE",
        &path,
        &[
            ("authorization", &bearer),
            ("x-request-id", "rest-peer-throttled"),
        ],
        None,
    )
    .await;
    assert_error(
        Family::Scrape,
        &throttled,
        429,
        "RATE_LIMITED",
        "rest-peer-throttled",
        None,
    );
    // The same budget as gRPC's interceptor.
    let grpc = server
        .client()
        .list_tokens(authed(
            tokend::grpc::proto::ListTokensRequest::default(),
            &server.admin("acme"),
        ))
        .await;
    expect_error(grpc, tonic::Code::ResourceExhausted, "RATE_LIMITED");
    Ok(())
}

async fn v1_round_trip_create_get_list_authenticate_revoke(backend: Backend) -> TestResult {
    let server = TestServer::start(backend).await;
    let admin = format!("Bearer {}", server.admin("acme"));
    let introspector = format!("Bearer {}", server.introspector());
    let to = server.http_addr;

    let created = call(
        to,
        "POST",
        "/v1/tokens",
        &[("authorization", &admin)],
        Some(r#"{"kind": "TOKEN_KIND_SCRAPE", "name": "grafana", "scopes": ["metrics:read"]}"#),
    )
    .await;
    assert_eq!(created.status, 200, "{created:?}");
    assert_eq!(created.header("content-type"), Some("application/json"));
    let created = created.json();
    let secret = created["secret"].as_str().expect("secret").to_owned();
    let id = created["token"]["id"]
        .as_str()
        .expect("int64 as a string")
        .to_owned();
    assert_eq!(created["token"]["kind"], "TOKEN_KIND_SCRAPE");
    assert_eq!(created["token"]["orgId"], "acme");

    let got = call(
        to,
        "GET",
        &format!("/v1/tokens/{id}"),
        &[("authorization", &admin)],
        None,
    )
    .await;
    assert_eq!(got.status, 200, "{got:?}");
    assert_eq!(got.json()["token"]["name"], "grafana");

    let listed = call(
        to,
        "GET",
        "/v1/tokens?kind=TOKEN_KIND_SCRAPE&pageSize=10",
        &[("authorization", &admin)],
        None,
    )
    .await;
    assert_eq!(listed.status, 200, "{listed:?}");
    assert_eq!(listed.json()["tokens"][0]["id"], id.as_str());

    let authenticated = call(
        to,
        "POST",
        "/v1/tokens:authenticate",
        &[("authorization", &introspector)],
        Some(&json!({"secret": secret, "requiredScopes": ["metrics:read"]}).to_string()),
    )
    .await;
    assert_eq!(authenticated.status, 200, "{authenticated:?}");
    assert_eq!(authenticated.json()["token"]["id"], id.as_str());

    let revoked = call(
        to,
        "DELETE",
        &format!("/api/integrations/prometheus-tokens/{id}"),
        &[("authorization", &admin)],
        None,
    )
    .await;
    assert_eq!(revoked.status, 204, "{revoked:?}");

    let refused = call(
        to,
        "POST",
        "/v1/tokens:authenticate",
        &[
            ("authorization", &introspector),
            ("x-request-id", "rest-v1-revoked"),
        ],
        Some(&json!({ "secret": secret }).to_string()),
    )
    .await;
    assert_eq!(refused.status, 401, "{refused:?}");
    assert_eq!(
        refused.header("content-type"),
        Some("application/problem+json")
    );
    let problem = refused.json();
    assert_eq!(problem["type"], "urn:tokend:problem:token-revoked");
    assert_eq!(problem["title"], "Token revoked");
    assert_eq!(problem["status"], 401);
    assert_eq!(problem["detail"], "the token has been revoked");
    assert_eq!(problem["error"], "the token has been revoked");
    assert_eq!(problem["instance"], "urn:tokend:request:rest-v1-revoked");
    assert_eq!(problem["requestId"], "rest-v1-revoked");
    assert_eq!(problem["errors"], json!([]));
    assert_eq!(problem["details"], json!({}));

    // A bad field on /v1/: every Problem field, the secret never echoed.
    let bad = call(
        to,
        "POST",
        "/v1/tokens:authenticate",
        &[("authorization", &introspector)],
        Some(r#"{"secret": 5}"#),
    )
    .await;
    assert_eq!(bad.status, 400, "{bad:?}");
    let problem = bad.json();
    assert_eq!(problem["reason"], "INVALID_FIELD");
    assert_eq!(problem["errors"][0]["location"], "secret");
    assert_eq!(problem["errors"][0]["value"], "");
    assert!(problem["details"]["secret"].is_string());
    Ok(())
}

async fn unknown_paths_and_wrong_methods(backend: Backend) -> TestResult {
    let server = TestServer::start_with(backend, &["--http-max-body-size", "256"]).await;
    let admin = format!("Bearer {}", server.admin("acme"));
    let to = server.http_addr;

    let missing = call(
        to,
        "GET",
        "/v2/nothing",
        &[("x-request-id", "rest-404")],
        None,
    )
    .await;
    assert_eq!(missing.status, 404, "{missing:?}");
    assert_eq!(
        missing.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(missing.header("x-request-id"), Some("rest-404"));
    assert_eq!(missing.json()["type"], "urn:tokend:problem:route-not-found");
    assert_eq!(missing.json()["requestId"], "rest-404");

    let wrong = call(to, "PUT", "/v1/tokens", &[], None).await;
    assert_eq!(wrong.status, 405, "{wrong:?}");
    let allow = wrong.header("allow").expect("Allow");
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    assert_eq!(
        wrong.header("content-type"),
        Some("application/problem+json")
    );

    let rotate = call(
        to,
        "POST",
        "/v1/tokens/999999:rotate",
        &[("authorization", &admin)],
        Some("{}"),
    )
    .await;
    assert_eq!(rotate.status, 404, "{rotate:?}");
    assert_eq!(rotate.json()["reason"], "TOKEN_NOT_FOUND");

    // The listener's body limit holds on the REST routes.
    let big = json!({"kind": "TOKEN_KIND_SCRAPE", "name": "x".repeat(300)}).to_string();
    let too_large = call(
        to,
        "POST",
        "/v1/tokens",
        &[("authorization", &admin)],
        Some(&big),
    )
    .await;
    assert_eq!(too_large.status, 413, "{too_large:?}");

    // The metrics paths are still the metrics endpoint's.
    let metrics = call(to, "GET", "/metrics", &[], None).await;
    assert_eq!(metrics.status, 200);
    Ok(())
}

/// The lifecycle RPCs over `/v1/`: policy, rotation, bulk and leaked-secret
/// revokes, each answering its response message in JSON, and a rotation
/// that cannot happen in problem+json.
async fn v1_lifecycle_policy_rotate_bulk_and_leaked(backend: Backend) -> TestResult {
    let server = TestServer::start(backend).await;
    let admin = format!("Bearer {}", server.admin("acme"));
    let desk = format!(
        "Bearer {}",
        server.jwt("platform", "incident-desk", &[], &["tokens_revoke_leaked"])
    );
    let to = server.http_addr;

    let policy = call(
        to,
        "PUT",
        "/v1/tokenPolicy",
        &[("authorization", &admin)],
        Some(r#"{"policy": {"kinds": [{"kind": "TOKEN_KIND_SCRAPE", "defaultLifetime": "86400s", "maxLifetime": "604800s"}]}}"#),
    )
    .await;
    assert_eq!(policy.status, 200, "{policy:?}");
    let got = call(
        to,
        "GET",
        "/v1/tokenPolicy",
        &[("authorization", &admin)],
        None,
    )
    .await;
    assert_eq!(got.status, 200, "{got:?}");
    assert_eq!(
        got.json()["policy"]["kinds"][0]["defaultLifetime"],
        "86400s"
    );

    let created = call(
        to,
        "POST",
        "/v1/tokens",
        &[("authorization", &admin)],
        Some(r#"{"kind": "TOKEN_KIND_SCRAPE", "name": "rotating"}"#),
    )
    .await
    .json();
    assert!(created["token"]["expireTime"].is_string(), "{created}");
    let id = created["token"]["id"].as_str().expect("id").to_owned();

    let rotated = call(
        to,
        "POST",
        &format!("/v1/tokens/{id}:rotate"),
        &[("authorization", &admin)],
        Some(r#"{"overlap": "60s", "reason": "scheduled"}"#),
    )
    .await;
    assert_eq!(rotated.status, 200, "{rotated:?}");
    let rotated = rotated.json();
    let new_token_id = rotated["token"]["tokenId"].as_str().expect("tokenId");
    assert_eq!(rotated["previous"]["replacedBy"], new_token_id);
    assert!(rotated["previous"]["rotateTime"].is_string(), "{rotated}");
    let new_secret = rotated["secret"].as_str().expect("secret").to_owned();

    let again = call(
        to,
        "POST",
        &format!("/v1/tokens/{id}:rotate"),
        &[("authorization", &admin)],
        Some("{}"),
    )
    .await;
    assert_eq!(again.status, 409, "{again:?}");
    assert_eq!(
        again.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(again.json()["reason"], "TOKEN_NOT_ROTATABLE");

    let leaked = call(
        to,
        "POST",
        "/v1/tokens:revokeBySecret",
        &[("authorization", &desk)],
        Some(&json!({"secret": new_secret, "reason": "leaked"}).to_string()),
    )
    .await;
    assert_eq!(leaked.status, 200, "{leaked:?}");
    assert_eq!(leaked.json()["token"]["tokenId"], new_token_id);
    assert!(leaked.json()["token"]["revokeTime"].is_string());

    for name in ["a", "b"] {
        let made = call(
            to,
            "POST",
            "/v1/tokens",
            &[("authorization", &admin)],
            Some(&json!({"kind": "TOKEN_KIND_PERSONAL_ACCESS", "name": name}).to_string()),
        )
        .await;
        assert_eq!(made.status, 200, "{made:?}");
    }
    let dry = call(
        to,
        "POST",
        "/v1/tokens:batchRevoke",
        &[("authorization", &admin)],
        Some(r#"{"kind": "TOKEN_KIND_PERSONAL_ACCESS", "dryRun": true}"#),
    )
    .await;
    assert_eq!(dry.status, 200, "{dry:?}");
    assert_eq!(dry.json()["revokedCount"], 2);
    let bulk = call(
        to,
        "POST",
        "/v1/tokens:batchRevoke",
        &[("authorization", &admin)],
        Some(r#"{"kind": "TOKEN_KIND_PERSONAL_ACCESS", "reason": "offboarding"}"#),
    )
    .await;
    assert_eq!(bulk.status, 200, "{bulk:?}");
    assert_eq!(bulk.json()["revokedCount"], 2);
    assert_eq!(bulk.json()["tokenIds"].as_array().map(Vec::len), Some(2));
    let none = call(
        to,
        "POST",
        "/v1/tokens:batchRevoke",
        &[("authorization", &admin)],
        Some("{}"),
    )
    .await;
    assert_eq!(none.status, 400, "{none:?}");
    assert_eq!(none.json()["errors"][0]["location"], "kind");
    Ok(())
}

crate::backend_tests!(
    revoke_seed_endpoints_in_their_formats,
    seed_endpoint_errors_in_their_family_envelopes,
    undecodable_values_are_invalid_field_in_each_format,
    rate_limited_seed_calls_carry_retry_after,
    failed_authentications_spend_the_shared_per_address_budget,
    v1_round_trip_create_get_list_authenticate_revoke,
    unknown_paths_and_wrong_methods,
    v1_lifecycle_policy_rotate_bulk_and_leaked,
);
