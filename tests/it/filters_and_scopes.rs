//! AuthenticateToken's `required_scopes` over gRPC, on both backends: the
//! refusal's code, reason and `missingScopes` metadata, and a revoked,
//! expired or unknown token failing as such first.

use tonic::Code;

use tokend::domain::Clock;

use tokend::grpc::proto::{
    AuthenticateTokenRequest, CreateTokenRequest, RevokeScrapeTokenRequest, TokenKind,
};

use crate::backend_tests;
use crate::support::*;

backend_tests!(required_scopes_are_enforced_with_the_missing_ones_in_the_details);

fn required(secret: &str, scopes: &[&str]) -> AuthenticateTokenRequest {
    AuthenticateTokenRequest {
        secret: secret.to_owned(),
        required_scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
    }
}

async fn required_scopes_are_enforced_with_the_missing_ones_in_the_details(
    backend: Backend,
) -> TestResult {
    let server = TestServer::start(backend).await;
    let admin = server.admin("acme");
    let gateway = server.introspector();
    let mut client = server.client();
    let expire = server.clock.now() + chrono::TimeDelta::hours(1);
    let made = |name: &str| CreateTokenRequest {
        kind: TokenKind::Scrape as i32,
        name: name.to_owned(),
        scopes: vec!["metrics:read".to_owned(), "logs:read".to_owned()],
        expire_time: Some(prost_types::Timestamp {
            seconds: expire.timestamp(),
            nanos: 0,
        }),
        ..Default::default()
    };
    let active = client
        .create_token(authed(made("active"), &admin))
        .await?
        .into_inner();
    let revoked = client
        .create_token(authed(made("revoked"), &admin))
        .await?
        .into_inner();
    let revoked_id = revoked.token.as_ref().map(|t| t.id).unwrap_or_default();
    client
        .revoke_scrape_token(authed(
            RevokeScrapeTokenRequest {
                id: revoked_id,
                reason: String::new(),
            },
            &admin,
        ))
        .await?;

    // Every required scope held (in any order, repeated): OK.
    let ok = client
        .authenticate_token(authed(
            required(&active.secret, &["logs:read", "metrics:read", "logs:read"]),
            &gateway,
        ))
        .await?
        .into_inner();
    assert_eq!(ok.token.map(|t| t.name), Some("active".to_owned()));

    // Missing ones: PERMISSION_DENIED / TOKEN_SCOPE_MISSING, named in
    // request order, once each, in ErrorInfo and the Problem.
    let refused = expect_error(
        client
            .authenticate_token(authed(
                required(
                    &active.secret,
                    &["tokens:write", "metrics:read", "admin", "tokens:write"],
                ),
                &gateway,
            ))
            .await,
        Code::PermissionDenied,
        "TOKEN_SCOPE_MISSING",
    );
    assert_eq!(
        refused.metadata.get("missingScopes").map(String::as_str),
        Some("tokens:write,admin")
    );
    assert_eq!(refused.problem.status, 403);
    assert_eq!(
        refused.problem.r#type,
        "urn:tokend:problem:token-scope-missing"
    );

    // Revoked, expired, unknown: fail as such, whatever the scopes.
    expect_error(
        client
            .authenticate_token(authed(required(&revoked.secret, &["admin"]), &gateway))
            .await,
        Code::Unauthenticated,
        "TOKEN_REVOKED",
    );
    let unknown = tokend::domain::TokenSecret::generate(tokend::domain::TokenKind::Scrape)?;
    expect_error(
        client
            .authenticate_token(authed(required(unknown.expose(), &["admin"]), &gateway))
            .await,
        Code::Unauthenticated,
        "TOKEN_UNKNOWN",
    );
    // Bad required_scopes: INVALID_FIELD on each bad entry.
    let bad = expect_error(
        client
            .authenticate_token(authed(
                required(&active.secret, &["ok", "NOT OK"]),
                &gateway,
            ))
            .await,
        Code::InvalidArgument,
        "INVALID_FIELD",
    );
    let locations: Vec<&str> = bad
        .field_violations
        .iter()
        .map(|(f, _)| f.as_str())
        .collect();
    assert_eq!(locations, ["required_scopes[1]"]);
    // Expired (a fresh JWT: the old one expired with the clock move).
    server.clock.advance(chrono::TimeDelta::hours(2));
    let gateway = server.introspector();
    expect_error(
        client
            .authenticate_token(authed(required(&active.secret, &["admin"]), &gateway))
            .await,
        Code::Unauthenticated,
        "TOKEN_EXPIRED",
    );

    Ok(())
}
