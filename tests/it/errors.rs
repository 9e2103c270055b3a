//! Every reason of the error catalogue (docs/errors.md), provoked over the
//! wire and decoded with tonic-types: code, HTTP status, reason, domain,
//! request id, and the details that must accompany each.

use std::time::Duration;

use chrono::TimeDelta;
use tonic::{Code, Request};

use tokend::grpc::proto::{
    AuthenticateTokenRequest, CreateTokenRequest, GetTokenRequest, ListAuditEventsRequest,
    ListTokensRequest, RevokeScrapeTokenRequest, TokenKind,
};

use crate::support::scrape_request;
use crate::support::{
    Backend, TestDb, TestResult, TestServer, authed, details, expect_error, mint,
};

fn with_request_id<T>(mut request: Request<T>, id: &str) -> Request<T> {
    request
        .metadata_mut()
        .insert("x-request-id", id.parse().unwrap());
    request
}

fn ok<T>(result: Result<tonic::Response<T>, tonic::Status>) -> Result<(), tonic::Status> {
    result.map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reason_in_the_error_table_carries_its_details() -> TestResult {
    let server = TestServer::start_with(
        Backend::Sqlite,
        &["--rate-limit-per-second", "1", "--rate-limit-burst", "100"],
    )
    .await;
    let admin = server.admin("acme");
    let introspector = server.introspector();
    let mut client = server.client();
    client
        .create_token(authed(scrape_request("a"), &admin))
        .await?;
    let mut expiring = scrape_request("b");
    let now = tokend::domain::Clock::now(server.clock.as_ref()).timestamp();
    expiring.expire_time = Some(prost_types::Timestamp {
        seconds: now + 10,
        nanos: 0,
    });
    let expiring_secret = client
        .create_token(authed(expiring, &admin))
        .await?
        .into_inner()
        .secret;
    let revoked = client
        .create_token(authed(scrape_request("c"), &admin))
        .await?
        .into_inner();
    client
        .revoke_scrape_token(authed(
            RevokeScrapeTokenRequest {
                id: revoked.token.unwrap().id,
                reason: String::new(),
            },
            &admin,
        ))
        .await?;
    let expired_jwt = mint("acme", "old", &["admin"], &[], now - 7200, now - 3600);

    let auth = |secret: &str| AuthenticateTokenRequest {
        secret: secret.to_owned(),
        ..Default::default()
    };
    struct Row {
        reason: &'static str,
        code: Code,
        http: i32,
        result: Result<(), tonic::Status>,
    }
    let mut rows = vec![
        Row {
            reason: "INVALID_FIELD",
            code: Code::InvalidArgument,
            http: 400,
            result: ok(client
                .create_token(with_request_id(
                    authed(scrape_request(""), &admin),
                    "req-invalid",
                ))
                .await),
        },
        Row {
            reason: "JWT_MISSING",
            code: Code::Unauthenticated,
            http: 401,
            result: ok(client
                .list_tokens(with_request_id(
                    Request::new(ListTokensRequest::default()),
                    "req-jwt-missing",
                ))
                .await),
        },
        Row {
            reason: "JWT_INVALID",
            code: Code::Unauthenticated,
            http: 401,
            result: ok(client
                .list_tokens(with_request_id(
                    authed(ListTokensRequest::default(), "x.y.z"),
                    "req-jwt-invalid",
                ))
                .await),
        },
        Row {
            reason: "JWT_EXPIRED",
            code: Code::Unauthenticated,
            http: 401,
            result: ok(client
                .list_tokens(with_request_id(
                    authed(ListTokensRequest::default(), &expired_jwt),
                    "req-jwt-expired",
                ))
                .await),
        },
        Row {
            reason: "TOKEN_REVOKED",
            code: Code::Unauthenticated,
            http: 401,
            result: ok(client
                .authenticate_token(with_request_id(
                    authed(auth(&revoked.secret), &introspector),
                    "req-revoked",
                ))
                .await),
        },
        Row {
            reason: "TOKEN_UNKNOWN",
            code: Code::Unauthenticated,
            http: 401,
            result: ok(client
                .authenticate_token(with_request_id(
                    authed(
                        auth(
                            tokend::domain::TokenSecret::generate(
                                tokend::domain::TokenKind::Scrape,
                            )?
                            .expose(),
                        ),
                        &introspector,
                    ),
                    "req-unknown",
                ))
                .await),
        },
        Row {
            reason: "TOKEN_MALFORMED",
            code: Code::Unauthenticated,
            http: 401,
            result: ok(client
                .authenticate_token(with_request_id(
                    authed(auth("hunter2"), &introspector),
                    "req-malformed",
                ))
                .await),
        },
        Row {
            reason: "PERMISSION_DENIED",
            code: Code::PermissionDenied,
            http: 403,
            result: ok(client
                .list_audit_events(with_request_id(
                    authed(
                        ListAuditEventsRequest::default(),
                        &server.jwt("acme", "u", &[], &[]),
                    ),
                    "req-denied",
                ))
                .await),
        },
        Row {
            reason: "TOKEN_NOT_FOUND",
            code: Code::NotFound,
            http: 404,
            result: ok(client
                .get_token(with_request_id(
                    authed(GetTokenRequest { id: 4242 }, &admin),
                    "req-not-found",
                ))
                .await),
        },
    ];
    // An active name taken.
    let sa = CreateTokenRequest {
        kind: TokenKind::ServiceAccount as i32,
        name: "dup".into(),
        service_account_slug: "ci".into(),
        ..Default::default()
    };
    client.create_token(authed(sa.clone(), &admin)).await?;
    rows.push(Row {
        reason: "TOKEN_ALREADY_EXISTS",
        code: Code::AlreadyExists,
        http: 409,
        result: ok(client
            .create_token(with_request_id(authed(sa, &admin), "req-exists"))
            .await),
    });
    // A valid token lacking a required scope.
    let mut scoped = scrape_request("scoped");
    scoped.scopes = vec!["metrics:read".into()];
    let scoped_secret = client
        .create_token(authed(scoped, &admin))
        .await?
        .into_inner()
        .secret;
    let mut lacking = auth(&scoped_secret);
    lacking.required_scopes = vec!["metrics:read".into(), "metrics:write".into()];
    rows.push(Row {
        reason: "TOKEN_SCOPE_MISSING",
        code: Code::PermissionDenied,
        http: 403,
        result: ok(client
            .authenticate_token(with_request_id(
                authed(lacking, &introspector),
                "req-scope-missing",
            ))
            .await),
    });
    // Expiry through the clock.
    server.clock.advance(TimeDelta::seconds(11));
    let introspector = server.introspector();
    rows.push(Row {
        reason: "TOKEN_EXPIRED",
        code: Code::Unauthenticated,
        http: 401,
        result: ok(client
            .authenticate_token(with_request_id(
                authed(auth(&expiring_secret), &introspector),
                "req-expired",
            ))
            .await),
    });

    for (index, row) in rows.into_iter().enumerate() {
        let status = row.result.expect_err(row.reason);
        let decoded = details(&status);
        assert_eq!(decoded.code, row.code, "{}", row.reason);
        assert_eq!(decoded.reason, row.reason);
        assert_eq!(decoded.domain, "tokend");
        assert_eq!(decoded.problem.status, row.http, "{}", row.reason);
        assert!(decoded.problem.r#type.starts_with("urn:tokend:problem:"));
        assert!(!decoded.problem.title.is_empty());
        assert_eq!(
            decoded.problem.instance,
            format!("urn:tokend:request:{}", decoded.request_id)
        );
        #[allow(deprecated)]
        let legacy = decoded.problem.error.clone();
        assert_eq!(legacy, decoded.message);
        assert!(
            decoded.request_id.starts_with("req-"),
            "row {index}: caller's request id is kept"
        );
        assert_eq!(
            status
                .metadata()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok()),
            Some(decoded.request_id.as_str())
        );
        match row.reason {
            "INVALID_FIELD" => assert!(!decoded.field_violations.is_empty()),
            "TOKEN_NOT_FOUND" | "TOKEN_ALREADY_EXISTS" => assert!(decoded.resource_name.is_some()),
            "PERMISSION_DENIED" => assert_eq!(
                decoded.metadata.get("permission").map(String::as_str),
                Some("admin")
            ),
            "TOKEN_SCOPE_MISSING" => assert_eq!(
                decoded.metadata.get("missingScopes").map(String::as_str),
                Some("metrics:write")
            ),
            _ => {}
        }
        assert!(
            status.details().len() < 2048,
            "details stay small: {} bytes",
            status.details().len()
        );
    }

    // Over the rate limit: RESOURCE_EXHAUSTED with RetryInfo and QuotaFailure;
    // another caller is unaffected.
    let limited = server.jwt("acme", "flooder", &["admin"], &[]);
    let mut last = None;
    for _ in 0..200 {
        if let Err(status) = client
            .list_tokens(authed(ListTokensRequest::default(), &limited))
            .await
        {
            last = Some(status);
            break;
        }
    }
    let status = last.expect("the limiter refused a call");
    let decoded = details(&status);
    assert_eq!(decoded.code, Code::ResourceExhausted);
    assert_eq!(decoded.reason, "RATE_LIMITED");
    assert_eq!(decoded.problem.status, 429);
    let delay = decoded.retry_delay.expect("RetryInfo");
    assert!(
        delay > Duration::ZERO && delay <= Duration::from_secs(1),
        "{delay:?}"
    );
    assert_eq!(decoded.quota_subjects, vec!["acme/flooder".to_owned()]);
    client
        .list_tokens(authed(ListTokensRequest::default(), &admin))
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_echoed_or_made() -> TestResult {
    let server = TestServer::start(Backend::Sqlite).await;
    let admin = server.admin("acme");
    let mut client = server.client();
    let response = client
        .list_tokens(with_request_id(
            authed(ListTokensRequest::default(), &admin),
            "abc-123",
        ))
        .await?;
    assert_eq!(response.metadata().get("x-request-id").unwrap(), "abc-123");
    // Too long or non-printable: a fresh UUID v7 is made instead.
    let long = "x".repeat(129);
    for bad in [long.as_str(), "tab\there"] {
        let mut request = authed(GetTokenRequest { id: 0 }, &admin);
        request
            .metadata_mut()
            .insert("x-request-id", bad.parse().unwrap());
        let status = client.get_token(request).await.expect_err("invalid id");
        let decoded = details(&status);
        let made = uuid::Uuid::parse_str(&decoded.request_id)?;
        assert_eq!(made.get_version_num(), 7);
        assert_eq!(
            status.metadata().get("x-request-id").unwrap().to_str()?,
            decoded.request_id
        );
    }
    let response = client
        .list_tokens(authed(ListTokensRequest::default(), &admin))
        .await?;
    let made = response.metadata().get("x-request-id").unwrap().to_str()?;
    assert_eq!(uuid::Uuid::parse_str(made)?.get_version_num(), 7);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_internal_error_says_nothing_about_internals() -> TestResult {
    use sea_orm::ConnectionTrait;
    let server = TestServer::start(Backend::Sqlite).await;
    let admin = server.admin("acme");
    let mut client = server.client();
    let token = client
        .create_token(authed(scrape_request("x"), &admin))
        .await?
        .into_inner()
        .token
        .unwrap();
    // Corrupt the row behind tokend's back.
    let db = sea_orm::Database::connect(server.db.url.as_str()).await?;
    db.execute_unprepared(&format!(
        "UPDATE tokens SET kind = 'bogus' WHERE id = {}",
        token.id
    ))
    .await?;
    db.close().await?;
    let decoded = expect_error(
        client
            .get_token(authed(GetTokenRequest { id: token.id }, &admin))
            .await,
        Code::Internal,
        "INTERNAL",
    );
    assert_eq!(decoded.message, "internal error");
    assert_eq!(decoded.problem.status, 500);
    let text = format!("{:?}", decoded.problem);
    for leak in ["tokens", "kind", "bogus", "sqlite", "SELECT", "corrupt"] {
        assert!(!text.contains(leak), "{leak} leaked: {text}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_unavailable_is_unavailable_with_retry_info() -> TestResult {
    // A PostgreSQL URL on a port where nothing listens: the server starts,
    // stays NOT_SERVING, and refuses calls with DATABASE_UNAVAILABLE.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let mut db_inner = TestDb::new(Backend::Sqlite).await;
    db_inner.url = format!("postgres://postgres@{closed}/nowhere");
    let server = TestServer::spawn(
        std::sync::Arc::new(db_inner),
        &[
            "--db-connect-timeout",
            "200ms",
            "--db-acquire-timeout",
            "300ms",
        ],
    )
    .await;
    let admin = server.admin("acme");
    let decoded = expect_error(
        server
            .client()
            .list_tokens(authed(ListTokensRequest::default(), &admin))
            .await,
        Code::Unavailable,
        "DATABASE_UNAVAILABLE",
    );
    assert_eq!(decoded.problem.status, 503);
    assert!(decoded.retry_delay.is_some(), "RetryInfo present");
    assert_ne!(
        server.readiness().await,
        Some(tonic_health::pb::health_check_response::ServingStatus::Serving)
    );
    Ok(())
}
