//! On both backends, over gRPC: AuthenticateToken's `required_scopes` (the
//! refusal's code, reason and `missingScopes` metadata, and a revoked,
//! expired or unknown token failing as such first), and every ListTokens
//! filter against a reference the test computes from the whole listing.

use tonic::Code;

use tokend::domain::Clock;

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use prost_types::Timestamp;

use tokend::grpc::proto::{
    AuthenticateTokenRequest, CreateTokenRequest, ListTokensRequest, RevokeScrapeTokenRequest,
    RevokeServiceAccountTokenRequest, Token, TokenKind, TokenState,
};

use crate::backend_tests;
use crate::support::*;

backend_tests!(
    required_scopes_are_enforced_with_the_missing_ones_in_the_details,
    every_list_filter_agrees_with_a_reference,
);

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
    let expire = server.clock.now() + TimeDelta::hours(1);
    let made = |name: &str| CreateTokenRequest {
        kind: TokenKind::Scrape as i32,
        name: name.to_owned(),
        scopes: vec!["metrics:read".to_owned(), "logs:read".to_owned()],
        expire_time: Some(Timestamp {
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
    server.clock.advance(TimeDelta::hours(2));
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

fn timestamp(at: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

fn instant(at: &Option<Timestamp>) -> Option<DateTime<Utc>> {
    at.as_ref()
        .and_then(|t| DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0)))
}

/// What the contract says `request` lists at `now`, computed from every
/// token (oldest first).
fn reference(all: &[Token], request: &ListTokensRequest, now: DateTime<Utc>) -> Vec<String> {
    let state = TokenState::try_from(request.state).unwrap_or(TokenState::Unspecified);
    all.iter()
        .filter(|t| {
            let revoked = t.revoke_time.is_some();
            let expired = !revoked && instant(&t.expire_time).is_some_and(|at| at <= now);
            let state_ok = match (state, request.show_revoked) {
                (TokenState::Any, _) | (TokenState::Unspecified, true) => true,
                (TokenState::Unspecified, false) => !revoked,
                (TokenState::Active, _) => !revoked && !expired,
                (TokenState::Expired, _) => expired,
                (TokenState::Revoked, _) => revoked,
            };
            let owner_ok =
                request.owner_user_id.is_empty() || t.owner_user_id == request.owner_user_id;
            let prefix_ok = t.name.starts_with(&request.name_prefix);
            let expire_ok = instant(&request.expire_before)
                .is_none_or(|before| instant(&t.expire_time).is_some_and(|at| at < before));
            let used_ok = instant(&request.last_used_before)
                .is_none_or(|before| instant(&t.last_used_time).is_none_or(|at| at < before));
            state_ok && owner_ok && prefix_ok && expire_ok && used_ok
        })
        .map(|t| t.name.clone())
        .collect()
}

/// Every page of `request`, two tokens a page.
async fn listed(
    server: &TestServer,
    jwt: &str,
    mut request: ListTokensRequest,
) -> Result<Vec<String>, tonic::Status> {
    request.page_size = 2;
    let mut names = Vec::new();
    loop {
        let page = server
            .client()
            .list_tokens(authed(request.clone(), jwt))
            .await?
            .into_inner();
        names.extend(page.tokens.into_iter().map(|t| t.name));
        if page.next_page_token.is_empty() {
            return Ok(names);
        }
        request.page_token = page.next_page_token;
    }
}

async fn every_list_filter_agrees_with_a_reference(backend: Backend) -> TestResult {
    let server = TestServer::start(backend).await;
    let start = server.clock.now();
    let admin = server.admin("acme");
    let alice = server.jwt("acme", "alice", &[], &["user_app_keys"]);
    let gateway = server.introspector();
    let mut client = server.client();
    let create = |kind: TokenKind, name: &str, expires: Option<TimeDelta>| CreateTokenRequest {
        kind: kind as i32,
        name: name.to_owned(),
        service_account_slug: if kind == TokenKind::ServiceAccount {
            "ci".into()
        } else {
            String::new()
        },
        workspace_id: if kind == TokenKind::WorkspaceApiKey {
            "g-0123456789".into()
        } else {
            String::new()
        },
        expire_time: expires.map(|d| Timestamp {
            seconds: (start + d).timestamp(),
            nanos: 0,
        }),
        ..Default::default()
    };
    client
        .create_token(authed(
            create(
                TokenKind::Scrape,
                "grafana-prod",
                Some(TimeDelta::minutes(20)),
            ),
            &admin,
        ))
        .await?;
    let dev = client
        .create_token(authed(
            create(TokenKind::Scrape, "grafana_dev", None),
            &admin,
        ))
        .await?
        .into_inner();
    let x = client
        .create_token(authed(
            create(
                TokenKind::PersonalAccess,
                "Grafana-x",
                Some(TimeDelta::minutes(5)),
            ),
            &alice,
        ))
        .await?
        .into_inner();
    client
        .create_token(authed(
            create(TokenKind::ServiceAccount, "deploy", None),
            &admin,
        ))
        .await?;
    client
        .revoke_service_account_token(authed(
            RevokeServiceAccountTokenRequest {
                service_account_slug: "ci".into(),
                token_slug: "deploy".into(),
                reason: String::new(),
            },
            &admin,
        ))
        .await?;
    client
        .create_token(authed(
            create(
                TokenKind::WorkspaceApiKey,
                "graf%",
                Some(TimeDelta::days(2)),
            ),
            &admin,
        ))
        .await?;
    client
        .create_token(authed(create(TokenKind::Scrape, "a%b_c", None), &admin))
        .await?;

    // Uses at start and at start + 2 min, written by the background writer.
    let authenticate = |secret: &str| AuthenticateTokenRequest {
        secret: secret.to_owned(),
        ..Default::default()
    };
    client
        .authenticate_token(authed(authenticate(&dev.secret), &gateway))
        .await?;
    server.clock.advance(TimeDelta::minutes(2));
    client
        .authenticate_token(authed(authenticate(&x.secret), &gateway))
        .await?;
    let mut all = Vec::new();
    for _ in 0..250 {
        all = all_tokens(&server, &admin).await?;
        if all.iter().filter(|t| t.last_used_time.is_some()).count() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        all.iter().filter(|t| t.last_used_time.is_some()).count(),
        2,
        "both uses written"
    );
    let used_at = |name: &str| {
        all.iter()
            .find(|t| t.name == name)
            .and_then(|t| instant(&t.last_used_time))
            .unwrap()
    };
    let (dev_used, x_used) = (used_at("grafana_dev"), used_at("Grafana-x"));

    // Listed at start + 10 min: Grafana-x has expired.
    server.clock.advance(TimeDelta::minutes(8));
    let now = server.clock.now();
    let admin = server.admin("acme");
    let at = |d: TimeDelta| Some(timestamp(start + d));
    let state = |s: TokenState| ListTokensRequest {
        state: s as i32,
        ..Default::default()
    };
    let cases: Vec<(&str, ListTokensRequest)> = vec![
        ("default", ListTokensRequest::default()),
        (
            "show_revoked",
            ListTokensRequest {
                show_revoked: true,
                ..Default::default()
            },
        ),
        ("active", state(TokenState::Active)),
        ("expired", state(TokenState::Expired)),
        ("revoked", state(TokenState::Revoked)),
        ("any", state(TokenState::Any)),
        (
            "any and show_revoked",
            ListTokensRequest {
                show_revoked: true,
                ..state(TokenState::Any)
            },
        ),
        (
            "owner",
            ListTokensRequest {
                owner_user_id: "alice".into(),
                ..Default::default()
            },
        ),
        (
            "owner, any",
            ListTokensRequest {
                owner_user_id: "admin-user".into(),
                ..state(TokenState::Any)
            },
        ),
        (
            "prefix",
            ListTokensRequest {
                name_prefix: "graf".into(),
                ..Default::default()
            },
        ),
        (
            "prefix case",
            ListTokensRequest {
                name_prefix: "Graf".into(),
                ..Default::default()
            },
        ),
        (
            "prefix percent",
            ListTokensRequest {
                name_prefix: "graf%".into(),
                ..Default::default()
            },
        ),
        (
            "prefix underscore",
            ListTokensRequest {
                name_prefix: "grafana_".into(),
                ..Default::default()
            },
        ),
        (
            "prefix wildcards literal",
            ListTokensRequest {
                name_prefix: "a%b_".into(),
                ..Default::default()
            },
        ),
        (
            "prefix percent alone",
            ListTokensRequest {
                name_prefix: "%".into(),
                ..Default::default()
            },
        ),
        (
            "expire_before strict",
            ListTokensRequest {
                expire_before: at(TimeDelta::minutes(20)),
                ..Default::default()
            },
        ),
        (
            "expire_before after",
            ListTokensRequest {
                expire_before: at(TimeDelta::minutes(20) + TimeDelta::seconds(1)),
                ..state(TokenState::Any)
            },
        ),
        (
            "last_used_before never used",
            ListTokensRequest {
                last_used_before: Some(timestamp(dev_used - TimeDelta::seconds(1))),
                ..Default::default()
            },
        ),
        (
            "last_used_before strict",
            ListTokensRequest {
                last_used_before: Some(timestamp(x_used)),
                ..Default::default()
            },
        ),
        (
            "last_used_before after",
            ListTokensRequest {
                last_used_before: Some(timestamp(x_used + TimeDelta::seconds(1))),
                ..state(TokenState::Any)
            },
        ),
        (
            "everything",
            ListTokensRequest {
                owner_user_id: "admin-user".into(),
                name_prefix: "graf".into(),
                expire_before: at(TimeDelta::days(3)),
                last_used_before: Some(timestamp(now)),
                ..state(TokenState::Active)
            },
        ),
    ];
    for (what, request) in cases {
        let expected = reference(&all, &request, now);
        let got = listed(&server, &admin, request).await?;
        assert_eq!(got, expected, "{what}");
    }
    // The reference is not vacuous: these lists are what the contract says.
    let names = |r: ListTokensRequest| reference(&all, &r, now);
    assert_eq!(names(state(TokenState::Expired)), ["Grafana-x"]);
    assert_eq!(
        names(ListTokensRequest {
            name_prefix: "graf".into(),
            ..Default::default()
        }),
        ["grafana-prod", "grafana_dev", "graf%"]
    );
    assert_eq!(
        names(ListTokensRequest {
            last_used_before: Some(timestamp(x_used)),
            ..Default::default()
        }),
        ["grafana-prod", "grafana_dev", "graf%", "a%b_c"]
    );

    // Bad filters: INVALID_FIELD, one violation each.
    let bad = expect_error(
        client
            .list_tokens(authed(
                ListTokensRequest {
                    state: 42,
                    name_prefix: "x\u{202e}".into(),
                    expire_before: Some(Timestamp {
                        seconds: 0,
                        nanos: 0,
                    }),
                    last_used_before: Some(Timestamp {
                        seconds: 253_402_300_800,
                        nanos: 0,
                    }),
                    ..Default::default()
                },
                &admin,
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
    assert_eq!(
        locations,
        ["state", "name_prefix", "expire_before", "last_used_before"]
    );
    Ok(())
}
