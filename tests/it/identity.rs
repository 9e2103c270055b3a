//! Caller identity: JWT verification with every supported algorithm (keys
//! made here, tokens signed by aws-lc-rs directly, not by the verifying
//! library), forged and confused JWTs, key rotation, the permission table and
//! cross-org confinement.

use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use tonic::Code;

use tokend::grpc::proto::{
    AuthenticateTokenRequest, CreateTokenRequest, DeleteWorkspaceApiKeyRequest, GetTokenRequest,
    ListAuditEventsRequest, ListTokensRequest, RevokePersonalAccessTokenRequest,
    RevokeScrapeTokenRequest, RevokeServiceAccountTokenRequest, TokenKind,
};

use crate::support::{Backend, HS_SECRET, TestResult, TestServer, authed, expect_error};

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A signing key of one algorithm, made in the test.
enum TestKey {
    Rsa(aws_lc_rs::rsa::KeyPair, &'static str),
    Ec(EcdsaKeyPair, &'static str),
    Ed(Ed25519KeyPair),
}

impl TestKey {
    fn rsa(alg: &'static str) -> TestKey {
        TestKey::Rsa(
            aws_lc_rs::rsa::KeyPair::generate(KeySize::Rsa2048).unwrap(),
            alg,
        )
    }
    fn ec(alg: &'static str) -> TestKey {
        let curve = if alg == "ES256" {
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING
        } else {
            &signature::ECDSA_P384_SHA384_FIXED_SIGNING
        };
        TestKey::Ec(EcdsaKeyPair::generate(curve).unwrap(), alg)
    }
    fn ed() -> TestKey {
        TestKey::Ed(Ed25519KeyPair::generate().unwrap())
    }

    fn alg(&self) -> &'static str {
        match self {
            TestKey::Rsa(_, alg) | TestKey::Ec(_, alg) => alg,
            TestKey::Ed(_) => "EdDSA",
        }
    }

    fn jwk(&self, kid: &str) -> Value {
        match self {
            TestKey::Rsa(key, alg) => {
                let public = key.public_key();
                json!({"kty": "RSA", "kid": kid, "alg": alg, "use": "sig",
                    "n": b64(public.modulus().big_endian_without_leading_zero()),
                    "e": b64(public.exponent().big_endian_without_leading_zero())})
            }
            TestKey::Ec(key, alg) => {
                let point = key.public_key().as_ref();
                let half = (point.len() - 1) / 2;
                let crv = if *alg == "ES256" { "P-256" } else { "P-384" };
                json!({"kty": "EC", "kid": kid, "alg": alg, "crv": crv,
                    "x": b64(&point[1..=half]), "y": b64(&point[1 + half..])})
            }
            TestKey::Ed(key) => {
                json!({"kty": "OKP", "kid": kid, "alg": "EdDSA", "crv": "Ed25519",
                    "x": b64(key.public_key().as_ref())})
            }
        }
    }

    fn sign(&self, message: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match self {
            TestKey::Rsa(key, alg) => {
                let padding: &'static dyn signature::RsaEncoding = match *alg {
                    "RS256" => &signature::RSA_PKCS1_SHA256,
                    "RS384" => &signature::RSA_PKCS1_SHA384,
                    "RS512" => &signature::RSA_PKCS1_SHA512,
                    _ => &signature::RSA_PSS_SHA256,
                };
                let mut out = vec![0; key.public_modulus_len()];
                key.sign(padding, &rng, message, &mut out).unwrap();
                out
            }
            TestKey::Ec(key, _) => key.sign(&rng, message).unwrap().as_ref().to_vec(),
            TestKey::Ed(key) => key.sign(message).as_ref().to_vec(),
        }
    }
}

/// Assembles a JWT from raw JSON and a signer.
fn jwt_with(header: &Value, claims: &Value, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let signing_input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let signature = sign(signing_input.as_bytes());
    format!("{signing_input}.{}", b64(&signature))
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
    aws_lc_rs::hmac::sign(&key, message).as_ref().to_vec()
}

fn claims(server: &TestServer) -> Value {
    let now = tokend::domain::Clock::now(server.clock.as_ref()).timestamp();
    json!({"sub": "svc", "org_id": "acme", "roles": ["admin"], "exp": now + 600, "iat": now})
}

fn write_jwks(path: &std::path::Path, keys: &[(&str, &TestKey)]) {
    let set = json!({"keys": keys.iter().map(|(kid, key)| key.jwk(kid)).collect::<Vec<_>>()});
    // Write then rename, as a Kubernetes Secret update would swap the file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, set.to_string()).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

async fn call_list(server: &TestServer, jwt: &str) -> Result<(), tonic::Status> {
    server
        .client()
        .list_tokens(authed(ListTokensRequest::default(), jwt))
        .await
        .map(|_| ())
}

async fn start_with_jwks(
    keys: &[(&str, &TestKey)],
    extra: &[&str],
) -> (TestServer, std::path::PathBuf) {
    let db = std::sync::Arc::new(crate::support::TestDb::new(Backend::Sqlite).await);
    let path = db.dir.path().join("jwks.json");
    write_jwks(&path, keys);
    let path_text = path.display().to_string();
    let mut args = vec![
        "--jwt-jwks-file",
        path_text.as_str(),
        "--jwt-jwks-reload-interval",
        "50ms",
    ];
    args.extend_from_slice(extra);
    let server = TestServer::start_on(db, &args).await;
    (server, path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_supported_algorithm_verifies_with_keys_from_the_jwks() -> TestResult {
    let keys: Vec<(String, TestKey)> = vec![
        ("rs256".into(), TestKey::rsa("RS256")),
        ("rs384".into(), TestKey::rsa("RS384")),
        ("rs512".into(), TestKey::rsa("RS512")),
        ("ps256".into(), TestKey::rsa("PS256")),
        ("es256".into(), TestKey::ec("ES256")),
        ("es384".into(), TestKey::ec("ES384")),
        ("eddsa".into(), TestKey::ed()),
    ];
    let refs: Vec<(&str, &TestKey)> = keys.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let (server, _) = start_with_jwks(&refs, &[]).await;
    for (kid, key) in &keys {
        let jwt = jwt_with(
            &json!({"alg": key.alg(), "typ": "JWT", "kid": kid}),
            &claims(&server),
            |m| key.sign(m),
        );
        call_list(&server, &jwt)
            .await
            .map_err(|s| format!("{kid}: {s:?}"))?;
        // The same key under a header claiming another algorithm fails.
        let lying = jwt_with(
            &json!({"alg": "HS256", "kid": kid}),
            &claims(&server),
            |m| key.sign(m),
        );
        expect_error(
            call_list(&server, &lying).await,
            Code::Unauthenticated,
            "JWT_INVALID",
        );
    }
    // HS256/384/512 from the configured secret.
    for alg in ["HS256", "HS384", "HS512"] {
        let key = match alg {
            "HS256" => aws_lc_rs::hmac::HMAC_SHA256,
            "HS384" => aws_lc_rs::hmac::HMAC_SHA384,
            _ => aws_lc_rs::hmac::HMAC_SHA512,
        };
        let jwt = jwt_with(&json!({"alg": alg, "typ": "JWT"}), &claims(&server), |m| {
            aws_lc_rs::hmac::sign(&aws_lc_rs::hmac::Key::new(key, HS_SECRET.as_bytes()), m)
                .as_ref()
                .to_vec()
        });
        call_list(&server, &jwt)
            .await
            .map_err(|s| format!("{alg}: {s:?}"))?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_attacks_are_unauthenticated_with_the_right_reason() -> TestResult {
    let rsa = TestKey::rsa("RS256");
    let (server, _) = start_with_jwks(&[("rsa1", &rsa)], &[]).await;
    let good = claims(&server);
    let hs = |claims: &Value| {
        jwt_with(&json!({"alg": "HS256", "typ": "JWT"}), claims, |m| {
            hmac_sha256(HS_SECRET.as_bytes(), m)
        })
    };
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = good.clone();
        f(&mut c);
        hs(&c)
    };
    let now = good["exp"].as_i64().unwrap() - 600;
    // The RSA public key as a PEM-ish byte string an attacker might use as
    // an HMAC secret (algorithm confusion).
    let public_der = match &rsa {
        TestKey::Rsa(key, _) => key.public_key().as_ref().to_vec(),
        _ => unreachable!(),
    };
    let valid_hs = hs(&good);
    let mut tampered = valid_hs.clone();
    tampered.pop();
    tampered.push(if valid_hs.ends_with('A') { 'B' } else { 'A' });
    let segments: Vec<&str> = valid_hs.split('.').collect();
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(br#"{"alg":"none","typ":"JWT"}"#),
                b64(good.to_string().as_bytes())
            ),
            "JWT_INVALID",
        ),
        (
            "HS256 with the RSA public key",
            jwt_with(&json!({"alg": "HS256", "kid": "rsa1"}), &good, |m| {
                hmac_sha256(&public_der, m)
            }),
            "JWT_INVALID",
        ),
        (
            "unknown kid",
            jwt_with(&json!({"alg": "RS256", "kid": "nope"}), &good, |m| {
                rsa.sign(m)
            }),
            "JWT_INVALID",
        ),
        (
            "kid with ../",
            jwt_with(
                &json!({"alg": "RS256", "kid": "../../etc/passwd"}),
                &good,
                |m| rsa.sign(m),
            ),
            "JWT_INVALID",
        ),
        (
            "kid with quotes",
            jwt_with(
                &json!({"alg": "RS256", "kid": "rsa1\" OR \"1\"=\"1"}),
                &good,
                |m| rsa.sign(m),
            ),
            "JWT_INVALID",
        ),
        (
            "jku header ignored",
            jwt_with(
                &json!({"alg": "RS256", "kid": "evil", "jku": "http://127.0.0.1:1/jwks"}),
                &good,
                |m| rsa.sign(m),
            ),
            "JWT_INVALID",
        ),
        ("bad signature", tampered, "JWT_INVALID"),
        (
            "two segments",
            format!("{}.{}", segments[0], segments[1]),
            "JWT_INVALID",
        ),
        ("four segments", format!("{valid_hs}.e30"), "JWT_INVALID"),
        (
            "expired beyond leeway",
            with(&|c| c["exp"] = json!(now - 61)),
            "JWT_EXPIRED",
        ),
        (
            "nbf in the future",
            with(&|c| c["nbf"] = json!(now + 61)),
            "JWT_INVALID",
        ),
        (
            "missing sub",
            with(&|c| {
                c.as_object_mut().unwrap().remove("sub");
            }),
            "JWT_INVALID",
        ),
        (
            "missing org_id",
            with(&|c| {
                c.as_object_mut().unwrap().remove("org_id");
            }),
            "JWT_INVALID",
        ),
        (
            "missing exp",
            with(&|c| {
                c.as_object_mut().unwrap().remove("exp");
            }),
            "JWT_INVALID",
        ),
        (
            "org_id as a number",
            with(&|c| c["org_id"] = json!(42)),
            "JWT_INVALID",
        ),
        (
            "org_id as an array",
            with(&|c| c["org_id"] = json!(["acme"])),
            "JWT_INVALID",
        ),
        (
            "roles as a string",
            with(&|c| c["roles"] = json!("admin")),
            "JWT_INVALID",
        ),
        (
            "empty org_id",
            with(&|c| c["org_id"] = json!("")),
            "JWT_INVALID",
        ),
        ("garbage", "not a jwt".to_owned(), "JWT_INVALID"),
        (
            "oversized (10 KiB)",
            with(&|c| c["pad"] = json!("x".repeat(10 * 1024))),
            "JWT_INVALID",
        ),
    ];
    for (name, jwt, reason) in cases {
        let details = expect_error(
            call_list(&server, &jwt).await,
            Code::Unauthenticated,
            reason,
        );
        assert_eq!(details.problem.status, 401, "{name}");
    }
    // Within the leeway still works; no authorization at all is JWT_MISSING.
    call_list(&server, &with(&|c| c["exp"] = json!(now - 59))).await?;
    call_list(&server, &with(&|c| c["nbf"] = json!(now + 59))).await?;
    expect_error(
        server
            .client()
            .list_tokens(ListTokensRequest::default())
            .await,
        Code::Unauthenticated,
        "JWT_MISSING",
    );
    // A 1 MiB JWT is refused (by the HTTP/2 header limit or by tokend) and
    // the server keeps serving.
    let huge = with(&|c| c["pad"] = json!("x".repeat(1024 * 1024)));
    assert!(call_list(&server, &huge).await.is_err());
    // The oversized header may cost that connection; a new one is served.
    let fresh = tonic::transport::Endpoint::from_shared(format!("http://{}", server.grpc_addr))?
        .connect()
        .await?;
    tokend::grpc::proto::token_service_client::TokenServiceClient::new(fresh)
        .list_tokens(authed(ListTokensRequest::default(), &valid_hs))
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuer_and_audience_are_required_when_configured() -> TestResult {
    let server = TestServer::start_with(
        Backend::Sqlite,
        &[
            "--jwt-issuer",
            "https://idp.example",
            "--jwt-audience",
            "tokend",
        ],
    )
    .await;
    let base = claims(&server);
    let hs = |f: &dyn Fn(&mut Value)| {
        let mut c = base.clone();
        f(&mut c);
        jwt_with(&json!({"alg": "HS256"}), &c, |m| {
            hmac_sha256(HS_SECRET.as_bytes(), m)
        })
    };
    call_list(
        &server,
        &hs(&|c| {
            c["iss"] = json!("https://idp.example");
            c["aud"] = json!("tokend");
        }),
    )
    .await?;
    call_list(
        &server,
        &hs(&|c| {
            c["iss"] = json!("https://idp.example");
            c["aud"] = json!(["other", "tokend"]);
        }),
    )
    .await?;
    for (name, jwt) in [
        ("missing iss", hs(&|c| c["aud"] = json!("tokend"))),
        (
            "missing aud",
            hs(&|c| c["iss"] = json!("https://idp.example")),
        ),
        (
            "wrong iss",
            hs(&|c| {
                c["iss"] = json!("https://evil.example");
                c["aud"] = json!("tokend");
            }),
        ),
        (
            "wrong aud",
            hs(&|c| {
                c["iss"] = json!("https://idp.example");
                c["aud"] = json!("other");
            }),
        ),
    ] {
        let details = expect_error(
            call_list(&server, &jwt).await,
            Code::Unauthenticated,
            "JWT_INVALID",
        );
        assert_eq!(details.problem.status, 401, "{name}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_rotation_takes_effect_without_restart_and_a_broken_file_keeps_the_keys() -> TestResult
{
    let old = TestKey::ec("ES256");
    let new = TestKey::ed();
    let (server, path) = start_with_jwks(&[("old", &old)], &[]).await;
    let sign_old = jwt_with(
        &json!({"alg": "ES256", "kid": "old"}),
        &claims(&server),
        |m| old.sign(m),
    );
    let sign_new = jwt_with(
        &json!({"alg": "EdDSA", "kid": "new"}),
        &claims(&server),
        |m| new.sign(m),
    );
    call_list(&server, &sign_old).await?;
    expect_error(
        call_list(&server, &sign_new).await,
        Code::Unauthenticated,
        "JWT_INVALID",
    );

    write_jwks(&path, &[("new", &new)]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while call_list(&server, &sign_new).await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "rotated key not picked up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    expect_error(
        call_list(&server, &sign_old).await,
        Code::Unauthenticated,
        "JWT_INVALID",
    );

    std::fs::write(&path, "{ this is not json")?;
    // Several reload intervals pass; the last good keys stay in force.
    tokio::time::sleep(Duration::from_millis(300)).await;
    call_list(&server, &sign_new).await?;
    Ok(())
}

/// One row of the permission table.
#[derive(Clone, Copy, Debug)]
enum Rpc {
    CreateScrape,
    CreatePersonal,
    CreateServiceAccount,
    CreateWorkspace,
    GetOwnPersonal,
    GetOthersToken,
    ListTokens,
    RevokeScrape,
    RevokeOwnPersonal,
    RevokeOthersPersonal,
    RevokeServiceAccount,
    DeleteWorkspace,
    Authenticate,
    ListAudit,
}

/// Runs `rpc` as `jwt` (sub `alice`) against fresh tokens; the code it
/// ends with. A PERMISSION_DENIED must carry its details.
async fn attempt(server: &TestServer, rpc: Rpc, jwt: &str) -> Result<Code, tonic::Status> {
    let admin = server.admin("acme");
    let bob = server.jwt("acme", "bob", &[], &["user_app_keys"]);
    let alice_own = server.jwt("acme", "alice", &[], &["user_app_keys"]);
    let mut client = server.client();
    let create = |kind: TokenKind, name: &str| {
        let mut request = CreateTokenRequest {
            kind: kind as i32,
            name: name.into(),
            ..Default::default()
        };
        if kind == TokenKind::ServiceAccount {
            request.service_account_slug = "ci".into();
        }
        if kind == TokenKind::WorkspaceApiKey {
            request.workspace_id = "g-00000000aa".into();
        }
        request
    };
    let name = uuid::Uuid::new_v4().simple().to_string();
    let result: Result<(), tonic::Status> = match rpc {
        Rpc::CreateScrape => client
            .create_token(authed(create(TokenKind::Scrape, &name), jwt))
            .await
            .map(|_| ()),
        Rpc::CreatePersonal => client
            .create_token(authed(create(TokenKind::PersonalAccess, &name), jwt))
            .await
            .map(|_| ()),
        Rpc::CreateServiceAccount => client
            .create_token(authed(create(TokenKind::ServiceAccount, &name), jwt))
            .await
            .map(|_| ()),
        Rpc::CreateWorkspace => client
            .create_token(authed(create(TokenKind::WorkspaceApiKey, &name), jwt))
            .await
            .map(|_| ()),
        Rpc::GetOwnPersonal | Rpc::RevokeOwnPersonal => {
            let token = client
                .create_token(authed(create(TokenKind::PersonalAccess, &name), &alice_own))
                .await?
                .into_inner()
                .token
                .unwrap();
            if matches!(rpc, Rpc::GetOwnPersonal) {
                client
                    .get_token(authed(GetTokenRequest { id: token.id }, jwt))
                    .await
                    .map(|_| ())
            } else {
                client
                    .revoke_personal_access_token(authed(
                        RevokePersonalAccessTokenRequest {
                            token_id: token.token_id,
                            reason: String::new(),
                        },
                        jwt,
                    ))
                    .await
                    .map(|_| ())
            }
        }
        Rpc::GetOthersToken => {
            let token = client
                .create_token(authed(create(TokenKind::PersonalAccess, &name), &bob))
                .await?
                .into_inner()
                .token
                .unwrap();
            client
                .get_token(authed(GetTokenRequest { id: token.id }, jwt))
                .await
                .map(|_| ())
        }
        Rpc::RevokeOthersPersonal => {
            let token = client
                .create_token(authed(create(TokenKind::PersonalAccess, &name), &bob))
                .await?
                .into_inner()
                .token
                .unwrap();
            client
                .revoke_personal_access_token(authed(
                    RevokePersonalAccessTokenRequest {
                        token_id: token.token_id,
                        reason: String::new(),
                    },
                    jwt,
                ))
                .await
                .map(|_| ())
        }
        Rpc::ListTokens => client
            .list_tokens(authed(ListTokensRequest::default(), jwt))
            .await
            .map(|_| ()),
        Rpc::RevokeScrape => {
            let token = client
                .create_token(authed(create(TokenKind::Scrape, &name), &admin))
                .await?
                .into_inner()
                .token
                .unwrap();
            client
                .revoke_scrape_token(authed(
                    RevokeScrapeTokenRequest {
                        id: token.id,
                        reason: String::new(),
                    },
                    jwt,
                ))
                .await
                .map(|_| ())
        }
        Rpc::RevokeServiceAccount => {
            client
                .create_token(authed(create(TokenKind::ServiceAccount, &name), &admin))
                .await?;
            client
                .revoke_service_account_token(authed(
                    RevokeServiceAccountTokenRequest {
                        service_account_slug: "ci".into(),
                        token_slug: name.clone(),
                        reason: String::new(),
                    },
                    jwt,
                ))
                .await
                .map(|_| ())
        }
        Rpc::DeleteWorkspace => {
            client
                .create_token(authed(create(TokenKind::WorkspaceApiKey, &name), &admin))
                .await?;
            client
                .delete_workspace_api_key(authed(
                    DeleteWorkspaceApiKeyRequest {
                        workspace_id: "g-00000000aa".into(),
                        key_name: name.clone(),
                        reason: String::new(),
                    },
                    jwt,
                ))
                .await
                .map(|_| ())
        }
        Rpc::Authenticate => {
            let secret = client
                .create_token(authed(create(TokenKind::Scrape, &name), &admin))
                .await?
                .into_inner()
                .secret;
            client
                .authenticate_token(authed(
                    AuthenticateTokenRequest {
                        secret,
                        ..Default::default()
                    },
                    jwt,
                ))
                .await
                .map(|_| ())
        }
        Rpc::ListAudit => client
            .list_audit_events(authed(ListAuditEventsRequest::default(), jwt))
            .await
            .map(|_| ()),
    };
    match result {
        Ok(()) => Ok(Code::Ok),
        Err(status) => {
            let details = crate::support::details(&status);
            if status.code() == Code::PermissionDenied {
                assert_eq!(details.reason, "PERMISSION_DENIED");
                assert!(details.metadata.contains_key("permission"), "{details:?}");
                assert_eq!(details.problem.status, 403);
            }
            Ok(status.code())
        }
    }
}

/// The permission table over the wire, on both databases: every RPC at
/// least once, the JWT's `roles`, `permissions` and `scope` claims, the
/// PERMISSION_DENIED details, and the rows the SQL decides (another user's
/// personal token is NOT_FOUND through the owner condition of the query).
/// Every cell of the table is a unit test of the core
/// (`src/domain/tests/permissions.rs`); this keeps a few per RPC. A
/// mismatch does not stop the other rows: all are reported together.
async fn the_permission_table_holds_over_the_wire(backend: Backend) -> TestResult {
    use Code::{NotFound as NF, Ok as OK, PermissionDenied as PD};
    let server = TestServer::start(backend).await;
    // (RPC, caller's role or permission, expected); callers are `alice` of `acme`.
    let rows: [(Rpc, &str, Code); 19] = [
        (Rpc::CreateScrape, "admin", OK),
        (Rpc::CreateScrape, "user_app_keys", PD),
        (Rpc::CreatePersonal, "user_app_keys", OK),
        (Rpc::CreateServiceAccount, "admin", OK),
        (Rpc::CreateWorkspace, "workspace_api_keys_write", PD),
        (Rpc::GetOwnPersonal, "user_app_keys", OK),
        (Rpc::GetOthersToken, "user_app_keys", NF),
        (Rpc::GetOthersToken, "org_app_keys_read", OK),
        (Rpc::ListTokens, "org_app_keys_read", OK),
        (Rpc::ListTokens, "", PD),
        (Rpc::RevokeScrape, "admin", OK),
        (Rpc::RevokeOwnPersonal, "user_app_keys", OK),
        (Rpc::RevokeOthersPersonal, "user_app_keys", NF),
        (Rpc::RevokeOthersPersonal, "org_app_keys_write", OK),
        (
            Rpc::RevokeServiceAccount,
            "service_account_tokens_write",
            OK,
        ),
        (Rpc::DeleteWorkspace, "workspace_api_keys_write", OK),
        // tokens_introspect is a platform permission: admin does not imply it.
        (Rpc::Authenticate, "admin", PD),
        (Rpc::Authenticate, "tokens_introspect", OK),
        (Rpc::ListAudit, "", PD),
    ];
    let mut mismatches = Vec::new();
    for (rpc, grant, want) in rows {
        let jwt = match grant {
            "admin" => server.jwt("acme", "alice", &["admin"], &[]),
            "" => server.jwt("acme", "alice", &[], &[]),
            permission => server.jwt("acme", "alice", &[], &[permission]),
        };
        let got = attempt(&server, rpc, &jwt).await?;
        if got != want {
            mismatches.push(format!("{rpc:?} as {grant:?}: got {got:?}, want {want:?}"));
        }
    }
    // OAuth `scope` counts the same as `permissions`.
    let now = tokend::domain::Clock::now(server.clock.as_ref()).timestamp();
    let scoped = jwt_with(
        &json!({"alg": "HS256"}),
        &json!({"sub": "alice", "org_id": "acme", "exp": now + 60, "scope": "openid workspace_api_keys_write"}),
        |m| hmac_sha256(HS_SECRET.as_bytes(), m),
    );
    let got = attempt(&server, Rpc::DeleteWorkspace, &scoped).await?;
    if got != OK {
        mismatches.push(format!("DeleteWorkspace with a scope: got {got:?}"));
    }
    assert!(mismatches.is_empty(), "{mismatches:#?}");
    Ok(())
}

crate::backend_tests!(
    the_permission_table_holds_over_the_wire,
    another_orgs_admin_gets_not_found_everywhere_and_changes_nothing,
);

async fn another_orgs_admin_gets_not_found_everywhere_and_changes_nothing(
    backend: Backend,
) -> TestResult {
    let server = TestServer::start(backend).await;
    let owner = server.admin("acme");
    let intruder = server.admin("evil");
    let mut client = server.client();
    let mut tokens = Vec::new();
    for kind in [
        TokenKind::Scrape,
        TokenKind::PersonalAccess,
        TokenKind::ServiceAccount,
        TokenKind::WorkspaceApiKey,
    ] {
        let mut request = CreateTokenRequest {
            kind: kind as i32,
            name: "shared-name".into(),
            ..Default::default()
        };
        if kind == TokenKind::ServiceAccount {
            request.service_account_slug = "ci".into();
        }
        if kind == TokenKind::WorkspaceApiKey {
            request.workspace_id = "g-00000000aa".into();
        }
        tokens.push(
            client
                .create_token(authed(request, &owner))
                .await?
                .into_inner(),
        );
    }
    for response in &tokens {
        let token = response.token.clone().unwrap();
        expect_error(
            client
                .get_token(authed(GetTokenRequest { id: token.id }, &intruder))
                .await,
            Code::NotFound,
            "TOKEN_NOT_FOUND",
        );
        let revoke = crate::lifecycle::revoke(&server, &intruder, &token, "attack").await;
        let details = expect_error(revoke, Code::NotFound, "TOKEN_NOT_FOUND");
        assert_eq!(details.problem.status, 404);
    }
    // A token id that exists nowhere gets the very same answer.
    let missing = expect_error(
        client
            .get_token(authed(GetTokenRequest { id: 987_654 }, &intruder))
            .await,
        Code::NotFound,
        "TOKEN_NOT_FOUND",
    );
    let foreign = expect_error(
        client
            .get_token(authed(
                GetTokenRequest {
                    id: tokens[0].token.clone().unwrap().id,
                },
                &intruder,
            ))
            .await,
        Code::NotFound,
        "TOKEN_NOT_FOUND",
    );
    assert_eq!(
        missing.message.replace("987654", "N"),
        foreign
            .message
            .replace(&tokens[0].token.clone().unwrap().id.to_string(), "N")
    );
    let listed = client
        .list_tokens(authed(
            ListTokensRequest {
                show_revoked: true,
                ..Default::default()
            },
            &intruder,
        ))
        .await?
        .into_inner();
    assert!(listed.tokens.is_empty());
    let events = client
        .list_audit_events(authed(ListAuditEventsRequest::default(), &intruder))
        .await?
        .into_inner();
    assert!(events.audit_events.is_empty());
    // Nothing changed: every token still authenticates, no revoke event.
    for response in &tokens {
        client
            .authenticate_token(authed(
                AuthenticateTokenRequest {
                    secret: response.secret.clone(),
                    ..Default::default()
                },
                &server.introspector(),
            ))
            .await?;
    }
    let events = client
        .list_audit_events(authed(ListAuditEventsRequest::default(), &owner))
        .await?
        .into_inner();
    assert_eq!(events.audit_events.len(), 4);
    assert!(
        events
            .audit_events
            .iter()
            .all(|e| e.event_type.ends_with("_created"))
    );
    Ok(())
}
