//! What operators touch: health (liveness, readiness, Watch, shutdown),
//! reflection, the metrics endpoint, and SIGTERM on the real binary.

use std::time::Duration;

use tokio_stream::StreamExt;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

use tokend::grpc::proto::{
    AuthenticateTokenRequest, CreateTokenRequest, ListTokensRequest, RevokeScrapeTokenRequest,
    TokenKind,
};

use crate::support::{
    Backend, Binary, TestResult, TestServer, authed, health_status, mint_from_data_dir,
    serve_command, spawn_binary,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_needs_no_jwt_and_follows_readiness_and_shutdown() -> TestResult {
    let server = TestServer::start(Backend::Sqlite).await;
    assert_eq!(
        health_status(&server.channel, "").await,
        Some(ServingStatus::Serving)
    );
    assert_eq!(server.readiness().await, Some(ServingStatus::Serving));
    let unknown = server
        .health()
        .check(HealthCheckRequest {
            service: "nope".into(),
        })
        .await;
    assert_eq!(unknown.unwrap_err().code(), Code::NotFound);

    // Watch streams the change when shutdown begins.
    let mut readiness = server
        .health()
        .watch(HealthCheckRequest {
            service: "tokend.v1.TokenService".into(),
        })
        .await?
        .into_inner();
    let mut liveness = server
        .health()
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await?
        .into_inner();
    assert_eq!(
        readiness.next().await.unwrap()?.status,
        ServingStatus::Serving as i32
    );
    assert_eq!(
        liveness.next().await.unwrap()?.status,
        ServingStatus::Serving as i32
    );
    server.handle.as_ref().unwrap().begin_shutdown();
    let next = tokio::time::timeout(Duration::from_secs(5), readiness.next())
        .await?
        .unwrap()?;
    assert_eq!(next.status, ServingStatus::NotServing as i32);
    let next = tokio::time::timeout(Duration::from_secs(5), liveness.next())
        .await?
        .unwrap()?;
    assert_eq!(next.status, ServingStatus::NotServing as i32);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_watch_does_not_hold_shutdown_past_the_grace() -> TestResult {
    let server = TestServer::start_with(Backend::Sqlite, &["--shutdown-grace", "300ms"]).await;
    let mut watch = server
        .health()
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await?
        .into_inner();
    watch.next().await.unwrap()?;
    let started = std::time::Instant::now();
    server.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "shutdown took {:?}",
        started.elapsed()
    );
    drop(watch);
    Ok(())
}

async fn reflect(channel: tonic::transport::Channel, request: MessageRequest) -> MessageResponse {
    let mut client = ServerReflectionClient::new(channel);
    let outbound = tokio_stream::iter(vec![ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    }]);
    let mut inbound = client
        .server_reflection_info(outbound)
        .await
        .unwrap()
        .into_inner();
    inbound
        .next()
        .await
        .unwrap()
        .unwrap()
        .message_response
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_lists_services_and_resolves_every_detail_type() -> TestResult {
    let server = TestServer::start(Backend::Sqlite).await;
    let MessageResponse::ListServicesResponse(list) = reflect(
        server.channel.clone(),
        MessageRequest::ListServices(String::new()),
    )
    .await
    else {
        panic!("not a service list");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in ["tokend.v1.TokenService", "grpc.health.v1.Health"] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }
    for symbol in [
        "tokend.v1.TokenService",
        "tokend.v1.Problem",
        "tokend.v1.FieldError",
        "google.rpc.Status",
        "google.rpc.ErrorInfo",
        "google.rpc.RequestInfo",
        "google.rpc.BadRequest",
        "google.rpc.ResourceInfo",
        "google.rpc.RetryInfo",
        "google.rpc.QuotaFailure",
        "grpc.health.v1.Health",
        "google.protobuf.Timestamp",
    ] {
        match reflect(
            server.channel.clone(),
            MessageRequest::FileContainingSymbol(symbol.into()),
        )
        .await
        {
            MessageResponse::FileDescriptorResponse(files) => {
                assert!(!files.file_descriptor_proto.is_empty(), "{symbol}")
            }
            other => panic!("{symbol} not resolved: {other:?}"),
        }
    }
    // v1alpha answers too (grpcurl 1.8.6 speaks only v1alpha).
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient as AlphaClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest as AlphaRequest;
    let mut alpha = AlphaClient::new(server.channel.clone());
    let outbound = tokio_stream::iter(vec![
        tonic_reflection::pb::v1alpha::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(AlphaRequest::FileContainingSymbol(
                "tokend.v1.Problem".into(),
            )),
        },
    ]);
    let mut inbound = alpha.server_reflection_info(outbound).await?.into_inner();
    assert!(inbound.next().await.unwrap()?.message_response.is_some());
    Ok(())
}

async fn scrape(server: &TestServer, bearer: Option<&str>) -> (u16, String, String) {
    use tokio::io::AsyncWriteExt;
    // A minimal HTTP/1.1 client: the endpoint is plain text over TCP.
    let mut stream = tokio::net::TcpStream::connect(server.http_addr)
        .await
        .unwrap();
    let auth = bearer
        .map(|b| format!("Authorization: Bearer {b}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "GET /api/metrics/prometheus HTTP/1.1\r\nHost: tokend\r\n{auth}Connection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut response)
        .await
        .unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let content_type = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(str::to_owned)
        })
        .unwrap_or_default();
    (status, content_type, body.to_owned())
}

crate::backend_tests!(metrics_need_a_live_scrape_token_and_show_only_its_org);

async fn metrics_need_a_live_scrape_token_and_show_only_its_org(backend: Backend) -> TestResult {
    let server = TestServer::start(backend).await;
    let acme = server.admin("acme");
    let other = server.admin("other");
    let mut client = server.client();
    let create = |kind: TokenKind, name: &str| CreateTokenRequest {
        kind: kind as i32,
        name: name.into(),
        ..Default::default()
    };
    let scrape_token = client
        .create_token(authed(create(TokenKind::Scrape, "prom"), &acme))
        .await?
        .into_inner();
    let pat = client
        .create_token(authed(create(TokenKind::PersonalAccess, "mine"), &acme))
        .await?
        .into_inner();
    for i in 0..3 {
        client
            .create_token(authed(
                create(TokenKind::PersonalAccess, &format!("o{i}")),
                &other,
            ))
            .await?;
    }
    client
        .authenticate_token(authed(
            AuthenticateTokenRequest {
                secret: pat.secret.clone(),
                ..Default::default()
            },
            &server.introspector(),
        ))
        .await?;

    let (status, content_type, body) = scrape(&server, Some(&scrape_token.secret)).await;
    assert_eq!(status, 200, "{body}");
    assert!(content_type.starts_with("text/plain"));
    assert!(
        body.contains("tokend_tokens{kind=\"personal_access\",state=\"active\"} 1"),
        "only acme's tokens: {body}"
    );
    assert!(body.contains("tokend_tokens{kind=\"scrape\",state=\"active\"} 1"));
    assert!(!body.contains("other"), "no other org's name in the body");
    // Authentications of acme's tokens: the PAT, and this scrape.
    assert!(body.contains("tokend_org_authentications_total{result=\"ok\"} 2"));
    // Service-wide figures are the operators' (`/metrics`), not a tenant's.
    assert!(!body.contains("tokend_grpc_") && !body.contains("process_"));
    assert!(!body.contains("tokend_db_pool_connections"));

    for (name, bearer, reason) in [
        ("no token", None, "TOKEN_MISSING"),
        (
            "unknown",
            Some(
                tokend::domain::TokenSecret::generate(tokend::domain::TokenKind::Scrape)?
                    .expose()
                    .to_owned(),
            ),
            "TOKEN_UNKNOWN",
        ),
        (
            "not a scrape token",
            Some(pat.secret.clone()),
            "TOKEN_UNKNOWN",
        ),
        ("garbage", Some("hunter2".to_owned()), "TOKEN_MALFORMED"),
    ] {
        let (status, content_type, body) = scrape(&server, bearer.as_deref()).await;
        assert_eq!(status, 401, "{name}");
        assert_eq!(content_type, "application/problem+json", "{name}");
        let problem: serde_json::Value = serde_json::from_str(&body)?;
        assert_eq!(problem["status"], 401);
        assert_eq!(problem["reason"], reason, "{name}");
    }
    // Revoked: refused at once.
    client
        .revoke_scrape_token(authed(
            RevokeScrapeTokenRequest {
                id: scrape_token.token.unwrap().id,
                reason: String::new(),
            },
            &acme,
        ))
        .await?;
    let (status, _, body) = scrape(&server, Some(&scrape_token.secret)).await;
    assert_eq!(status, 401);
    assert!(body.contains("TOKEN_REVOKED"));
    Ok(())
}

/// The JSON objects of a binary's log.
async fn json_log(
    log: tokio::task::JoinHandle<Vec<String>>,
) -> Result<Vec<serde_json::Value>, tokio::task::JoinError> {
    Ok(log
        .await?
        .iter()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect())
}

/// Whether a failed call was refused before the server accepted it: the
/// connection was going away (UNAVAILABLE), the call was still queued in the
/// client when it closed (CANCELLED), or its stream was above the graceful
/// GOAWAY's last stream id (hyper reports that as an h2 GoAway NO_ERROR).
fn not_accepted(status: &tonic::Status) -> bool {
    match status.code() {
        Code::Unavailable | Code::Cancelled => true,
        Code::Internal => {
            let text = format!("{status:?}");
            text.contains("GoAway") && text.contains("NO_ERROR")
        }
        _ => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_answers_every_accepted_call_and_exits_zero() -> TestResult {
    let dir = tempfile::tempdir()?;
    let binary = spawn_binary(dir.path(), &["--shutdown-grace", "5s"], "info,tokend=debug").await;
    let channel = binary.ready_channel().await;
    let jwt = mint_from_data_dir(dir.path(), "acme", "load", &["admin"], &[]);
    let mut workers = Vec::new();
    for _ in 0..16 {
        let channel = channel.clone();
        let jwt = jwt.clone();
        workers.push(tokio::spawn(async move {
            let mut client =
                tokend::grpc::proto::token_service_client::TokenServiceClient::new(channel);
            let (mut ok, mut refused) = (0u32, 0u32);
            loop {
                match client
                    .list_tokens(authed(ListTokensRequest::default(), &jwt))
                    .await
                {
                    Ok(_) => ok += 1,
                    // Refused before being accepted: the connection is going
                    // away (GOAWAY, or queued in the client when it closed).
                    // The server's log below proves no accepted call was cut.
                    Err(status) if not_accepted(&status) => {
                        refused += 1;
                        break;
                    }
                    Err(status) => panic!("an accepted call was not answered: {status:?}"),
                }
            }
            (ok, refused)
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let Binary { mut child, log, .. } = binary;
    let pid = child.id().unwrap();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()?;
    assert!(killed.success());
    let exit = tokio::time::timeout(Duration::from_secs(10), child.wait()).await??;
    assert_eq!(exit.code(), Some(0), "exit status {exit:?}");
    let mut total_ok = 0;
    for worker in workers {
        let (ok, _) = worker.await?;
        total_ok += ok;
    }
    assert!(total_ok > 0, "calls were served before the signal");
    let log = json_log(log).await?;
    let count = |message: &str, code: Option<&str>| {
        log.iter()
            .filter(|v| {
                v["message"] == message
                    && v["span"]["method"] == "/tokend.v1.TokenService/ListTokens"
            })
            .filter(|v| code.is_none_or(|c| v["code"] == c))
            .count()
    };
    let started = count("rpc started", None);
    let finished = count("rpc finished", None);
    assert_eq!(
        started, finished,
        "every call the server accepted was answered"
    );
    assert_eq!(
        count("rpc finished", Some("Ok")),
        total_ok as usize,
        "every answer reached its client"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_setting_stops_start_up_with_one_line_naming_it() -> TestResult {
    let dir = tempfile::tempdir()?;
    for (args, needle) in [
        (vec!["--jwt-hs256-secret", "short"], "--jwt-hs256-secret"),
        (vec!["--database-url", "mysql://nope"], "--database-url"),
        (
            vec!["--jwt-jwks-file", "/nonexistent/jwks.json"],
            "--jwt-jwks-file",
        ),
        (vec!["--shutdown-grace", "soon"], "--shutdown-grace"),
    ] {
        let output = serve_command(dir.path()).args(&args).output().await?;
        assert!(!output.status.success(), "{args:?} must fail");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let error_line = stderr
            .lines()
            .find(|l| l.contains("error") || l.starts_with("tokend:"))
            .unwrap_or_default();
        assert!(error_line.contains(needle), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_at_trace_hold_no_secret_jwt_or_hash() -> TestResult {
    use sha2::Digest;
    let dir = tempfile::tempdir()?;
    let binary = spawn_binary(dir.path(), &[], "trace").await;
    let channel = binary.ready_channel().await;
    let secret_key = std::fs::read_to_string(dir.path().join("jwt-hs256.secret"))?;
    let jwt = mint_from_data_dir(
        dir.path(),
        "acme",
        "auditor",
        &["admin"],
        &["tokens_introspect", "tokens_revoke_leaked"],
    );
    let mut client = tokend::grpc::proto::token_service_client::TokenServiceClient::new(channel);
    let mut secrets = Vec::new();
    for kind in [TokenKind::Scrape, TokenKind::PersonalAccess] {
        let created = client
            .create_token(authed(
                CreateTokenRequest {
                    kind: kind as i32,
                    name: "logged".into(),
                    ..Default::default()
                },
                &jwt,
            ))
            .await?
            .into_inner();
        client
            .authenticate_token(authed(
                AuthenticateTokenRequest {
                    secret: created.secret.clone(),
                    ..Default::default()
                },
                &jwt,
            ))
            .await?;
        client
            .revoke_scrape_token(authed(
                RevokeScrapeTokenRequest {
                    id: created.token.unwrap().id,
                    reason: String::new(),
                },
                &jwt,
            ))
            .await
            .ok();
        let _ = client
            .authenticate_token(authed(
                AuthenticateTokenRequest {
                    secret: created.secret.clone(),
                    ..Default::default()
                },
                &jwt,
            ))
            .await;
        secrets.push(created.secret);
    }
    // A leaked secret revoked by the secret itself, a typo'd one refused,
    // and the revoked one presented (a use after revoke is reported).
    let leaked = client
        .create_token(authed(
            CreateTokenRequest {
                kind: TokenKind::PersonalAccess as i32,
                name: "leaked".into(),
                ..Default::default()
            },
            &jwt,
        ))
        .await?
        .into_inner()
        .secret;
    let by_secret = |secret: &str| {
        authed(
            tokend::grpc::proto::RevokeTokenBySecretRequest {
                secret: secret.to_owned(),
                reason: "leaked".into(),
            },
            &jwt,
        )
    };
    client.revoke_token_by_secret(by_secret(&leaked)).await?;
    let mut leaked_typo = leaked.clone();
    leaked_typo.pop();
    leaked_typo.push('Q');
    let _ = client.revoke_token_by_secret(by_secret(&leaked_typo)).await;
    let _ = client
        .authenticate_token(authed(
            AuthenticateTokenRequest {
                secret: leaked.clone(),
                ..Default::default()
            },
            &jwt,
        ))
        .await;
    secrets.push(leaked);

    // A typo'd secret and a bad JWT are not echoed either.
    let mut typo = secrets[0].clone();
    typo.pop();
    typo.push('Q');
    let _ = client
        .authenticate_token(authed(
            AuthenticateTokenRequest {
                secret: typo.clone(),
                ..Default::default()
            },
            &jwt,
        ))
        .await;
    let bad_jwt = format!("{jwt}x");
    let _ = client
        .list_tokens(authed(ListTokensRequest::default(), &bad_jwt))
        .await;

    std::process::Command::new("kill")
        .args(["-TERM", &binary.child.id().unwrap().to_string()])
        .status()?;
    let Binary { mut child, log, .. } = binary;
    child.wait().await?;
    let text: String = json_log(log)
        .await?
        .iter()
        .map(|v| format!("{v}\n"))
        .collect();
    assert!(
        text.contains("rpc finished"),
        "the log was captured at trace level"
    );
    let jwt_signature = jwt.rsplit('.').next().unwrap();
    let mut forbidden: Vec<(String, String)> = vec![
        ("JWT".into(), jwt_signature.to_owned()),
        ("signing key".into(), secret_key.trim().to_owned()),
        ("typo'd secret".into(), typo[8..].to_owned()),
        ("typo'd leaked secret".into(), leaked_typo[8..].to_owned()),
    ];
    for secret in &secrets {
        let hash = sha2::Sha256::digest(secret.as_bytes());
        forbidden.push(("secret".into(), secret[secret.len() - 30..].to_owned()));
        forbidden.push((
            "hash (hex)".into(),
            hash.iter().map(|b| format!("{b:02x}")).collect::<String>()[..24].to_owned(),
        ));
        forbidden.push((
            "hash (bytes)".into(),
            format!("{:?}", &hash[..6])
                .trim_matches(['[', ']'])
                .to_owned(),
        ));
    }
    for (what, needle) in forbidden {
        assert!(!text.contains(&needle), "{what} appears in the trace log");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_applies_migrations_and_exits() -> TestResult {
    use sea_orm::ConnectionTrait;
    let dir = tempfile::tempdir()?;
    for _ in 0..2 {
        // Twice: the second run finds nothing pending and still succeeds.
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_tokend"))
            .args(["migrate", "--data-dir"])
            .arg(dir.path())
            .env_remove("DATABASE_URL")
            .output()
            .await?;
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let url = format!("sqlite://{}", dir.path().join("tokend.db").display());
    let db = sea_orm::Database::connect(url.as_str()).await?;
    let tables = db
        .query_all_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Sqlite,
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name",
        ))
        .await?;
    let names: Vec<String> = tables
        .iter()
        .map(|row| row.try_get("", "name").unwrap())
        .collect();
    for table in ["audit_events", "seaql_migrations", "tokens"] {
        assert!(
            names.iter().any(|n| n == table),
            "{table} missing from {names:?}"
        );
    }
    db.close().await?;
    Ok(())
}
