//! Presenting a secret: the metrics endpoint refuses another family's token
//! as unknown whatever its state and writes nothing about it, and recording
//! a token's use never fails or delays an authentication.

use std::time::{Duration, Instant};

use chrono::TimeDelta;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use tonic::Code;

use tokend::grpc::proto::{
    AuthenticateTokenRequest, CreateTokenRequest, GetTokenRequest,
    RevokePersonalAccessTokenRequest, RevokeScrapeTokenRequest, Token, TokenKind,
};

use crate::backend_tests;
use crate::support::{Backend, TestResult, TestServer, authed, expect_error, scrape_request};

backend_tests!(
    the_metrics_endpoint_takes_another_familys_token_for_unknown_and_writes_nothing,
    authentication_succeeds_when_recording_its_use_fails,
);

/// `GET /api/metrics/prometheus` with a bearer token: (status, body).
pub async fn scrape_metrics(server: &TestServer, bearer: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(server.http_addr)
        .await
        .expect("connect");
    let request = format!(
        "GET /api/metrics/prometheus HTTP/1.1\r\nHost: tokend\r\nAuthorization: Bearer {bearer}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    (status, body.to_owned())
}

/// The `reason` of a refused scrape.
fn refusal_reason(status: u16, body: &str) -> String {
    assert_eq!(status, 401, "{body}");
    let problem: serde_json::Value = serde_json::from_str(body).expect("problem+json");
    problem["reason"].as_str().unwrap_or_default().to_owned()
}

async fn get(server: &TestServer, jwt: &str, id: i64) -> Token {
    server
        .client()
        .get_token(authed(GetTokenRequest { id }, jwt))
        .await
        .expect("GetToken")
        .into_inner()
        .token
        .expect("token")
}

/// Polls until the token's `last_used_time` is set (bounded), and returns it.
pub async fn wait_for_last_use(server: &TestServer, jwt: &str, id: i64) -> prost_types::Timestamp {
    let started = Instant::now();
    loop {
        if let Some(at) = get(server, jwt, id).await.last_used_time {
            return at;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "last_used_time of token {id} never written"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn the_metrics_endpoint_takes_another_familys_token_for_unknown_and_writes_nothing(
    backend: Backend,
) -> TestResult {
    let server = TestServer::start(backend).await;
    let admin = server.admin("acme");
    let mut client = server.client();
    let scrape = client
        .create_token(authed(scrape_request("prom"), &admin))
        .await?
        .into_inner();
    let soon = tokend::domain::Clock::now(server.clock.as_ref()).timestamp() + 30;
    let mut others = Vec::new();
    for (kind, name, extra) in [
        (TokenKind::PersonalAccess, "laptop", None),
        (TokenKind::PersonalAccess, "expiring", Some(soon)),
        (TokenKind::ServiceAccount, "deploy", None),
        (TokenKind::WorkspaceApiKey, "key", None),
    ] {
        let mut request = CreateTokenRequest {
            kind: kind as i32,
            name: name.into(),
            expire_time: extra.map(|seconds| prost_types::Timestamp { seconds, nanos: 0 }),
            ..CreateTokenRequest::default()
        };
        match kind {
            TokenKind::ServiceAccount => request.service_account_slug = "ci".into(),
            TokenKind::WorkspaceApiKey => request.workspace_id = "g-0123456789".into(),
            _ => {}
        }
        others.push(
            client
                .create_token(authed(request, &admin))
                .await?
                .into_inner(),
        );
    }

    // Active tokens of other families: unknown, and no last use recorded.
    for other in &others {
        let (status, body) = scrape_metrics(&server, &other.secret).await;
        assert_eq!(refusal_reason(status, &body), "TOKEN_UNKNOWN");
        let token = other.token.as_ref().expect("token");
        assert_eq!(get(&server, &admin, token.id).await.last_used_time, None);
    }
    // The same PAT revoked, and another expired: still unknown, never
    // TOKEN_REVOKED or TOKEN_EXPIRED (which would tell what it is).
    let pat = others[0].token.clone().expect("token");
    client
        .revoke_personal_access_token(authed(
            RevokePersonalAccessTokenRequest {
                token_id: pat.token_id.clone(),
                reason: String::new(),
            },
            &admin,
        ))
        .await?;
    let (status, body) = scrape_metrics(&server, &others[0].secret).await;
    assert_eq!(
        refusal_reason(status, &body),
        "TOKEN_UNKNOWN",
        "revoked PAT"
    );
    server.clock.advance(TimeDelta::seconds(31));
    let (status, body) = scrape_metrics(&server, &others[1].secret).await;
    assert_eq!(
        refusal_reason(status, &body),
        "TOKEN_UNKNOWN",
        "expired PAT"
    );

    // A scrape token is served and its use recorded; once that write is
    // visible, any write the refused scrapes had queued before it is too.
    let (status, body) = scrape_metrics(&server, &scrape.secret).await;
    assert_eq!(status, 200, "{body}");
    let scrape_token = scrape.token.expect("token");
    wait_for_last_use(&server, &admin, scrape_token.id).await;
    let admin = server.admin("acme");
    for other in &others {
        let token = other.token.as_ref().expect("token");
        assert_eq!(
            get(&server, &admin, token.id).await.last_used_time,
            None,
            "{} was written",
            token.name
        );
    }
    // Through AuthenticateToken every family is accepted as before.
    client
        .authenticate_token(authed(
            AuthenticateTokenRequest {
                secret: others[2].secret.clone(),
                ..Default::default()
            },
            &server.introspector(),
        ))
        .await?;
    // The scrape token's own state is still reported.
    client
        .revoke_scrape_token(authed(
            RevokeScrapeTokenRequest {
                id: scrape_token.id,
                reason: String::new(),
            },
            &admin,
        ))
        .await?;
    let (status, body) = scrape_metrics(&server, &scrape.secret).await;
    assert_eq!(refusal_reason(status, &body), "TOKEN_REVOKED");
    Ok(())
}

async fn admin_connection(server: &TestServer) -> DatabaseConnection {
    let mut options = sea_orm::ConnectOptions::new(server.db.url.clone());
    options.sqlx_logging(false).max_connections(1);
    Database::connect(options).await.expect("connect")
}

/// Makes every write of `last_used_at` fail, as on a read-only standby.
async fn refuse_last_used_writes(db: &DatabaseConnection, backend: Backend) {
    let statements: &[&str] = match backend {
        Backend::Sqlite => &[
            "CREATE TRIGGER refuse_last_used BEFORE UPDATE OF last_used_at ON tokens \
             BEGIN SELECT RAISE(ABORT, 'last_used_at is read-only here'); END",
        ],
        Backend::Postgres => &[
            "CREATE FUNCTION refuse_last_used() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'last_used_at is read-only here'; END $$",
            "CREATE TRIGGER refuse_last_used BEFORE UPDATE OF last_used_at ON tokens \
             FOR EACH ROW EXECUTE FUNCTION refuse_last_used()",
        ],
    };
    for statement in statements {
        db.execute_unprepared(statement).await.expect("trigger");
    }
}

async fn authentication_succeeds_when_recording_its_use_fails(backend: Backend) -> TestResult {
    let server = TestServer::start(backend).await;
    let admin = server.admin("acme");
    let mut client = server.client();
    let created = client
        .create_token(authed(scrape_request("prom"), &admin))
        .await?
        .into_inner();
    let id = created.token.expect("token").id;
    let db = admin_connection(&server).await;
    refuse_last_used_writes(&db, backend).await;

    let auth = AuthenticateTokenRequest {
        secret: created.secret.clone(),
        ..Default::default()
    };
    for round in 0..3 {
        let answer = client
            .authenticate_token(authed(auth.clone(), &server.introspector()))
            .await
            .map_err(|status| format!("round {round}: {status:?}"))?;
        assert_eq!(answer.into_inner().token.expect("token").id, id);
        let (status, body) = scrape_metrics(&server, &created.secret).await;
        assert_eq!(status, 200, "round {round}: {body}");
        // This round's write was tried and failed (touches queued together
        // make one write, so wait for each round's before the next).
        server.wait_for_failed_last_use_writes(round + 1).await;
        // Past the once-a-minute window: each round tries to write again.
        server.clock.advance(TimeDelta::seconds(61));
    }
    // The writes failed: nothing was recorded.
    let admin = server.admin("acme");
    assert_eq!(get(&server, &admin, id).await.last_used_time, None);

    // Revoking does not touch last_used_at, so it still works and takes
    // effect at once.
    let revoked_pat = client
        .create_token(authed(
            CreateTokenRequest {
                kind: TokenKind::PersonalAccess as i32,
                name: "pat".into(),
                ..CreateTokenRequest::default()
            },
            &admin,
        ))
        .await?
        .into_inner();
    client
        .revoke_personal_access_token(authed(
            RevokePersonalAccessTokenRequest {
                token_id: revoked_pat.token.expect("token").token_id,
                reason: String::new(),
            },
            &admin,
        ))
        .await?;
    expect_error(
        client
            .authenticate_token(authed(
                AuthenticateTokenRequest {
                    secret: revoked_pat.secret,
                    ..Default::default()
                },
                &server.introspector(),
            ))
            .await,
        Code::Unauthenticated,
        "TOKEN_REVOKED",
    );

    // Once writes work again, uses are recorded again.
    let drop = match backend {
        Backend::Sqlite => "DROP TRIGGER refuse_last_used",
        Backend::Postgres => "DROP TRIGGER refuse_last_used ON tokens",
    };
    db.execute_unprepared(drop).await?;
    client
        .authenticate_token(authed(auth, &server.introspector()))
        .await?;
    wait_for_last_use(&server, &admin, id).await;
    Ok(())
}

/// A writer holding SQLite's write lock (another process, a long
/// migration) does not delay authentication, though the server would wait
/// 30 s for the lock; the use is recorded once the lock is released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_sqlite_writer_does_not_delay_authentication() -> TestResult {
    let server = TestServer::start_with(Backend::Sqlite, &["--db-statement-timeout", "30s"]).await;
    let admin = server.admin("acme");
    let mut client = server.client();
    let created = client
        .create_token(authed(scrape_request("prom"), &admin))
        .await?
        .into_inner();
    let id = created.token.expect("token").id;
    let db = admin_connection(&server).await;
    db.execute_unprepared("BEGIN IMMEDIATE").await?;

    let auth = AuthenticateTokenRequest {
        secret: created.secret.clone(),
        ..Default::default()
    };
    let answer = tokio::time::timeout(
        Duration::from_secs(5),
        client.authenticate_token(authed(auth, &server.introspector())),
    )
    .await
    .map_err(|_| "authentication waited for the write lock")??;
    assert_eq!(answer.into_inner().token.expect("token").id, id);
    let (status, body) = tokio::time::timeout(
        Duration::from_secs(5),
        scrape_metrics(&server, &created.secret),
    )
    .await
    .map_err(|_| "the metrics endpoint waited for the write lock")?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(get(&server, &admin, id).await.last_used_time, None);

    db.execute_unprepared("ROLLBACK").await?;
    wait_for_last_use(&server, &admin, id).await;
    Ok(())
}
