//! Which key verifies a caller JWT, and which identities a JWT may carry,
//! through gRPC: a `kid` never falls back to the HS secret, and control or
//! Unicode format characters in `sub` or `org_id` make the JWT invalid.

use std::sync::Arc;

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use tonic::Code;

use tokend::grpc::proto::ListTokensRequest;

use crate::support::{Backend, HS_SECRET, TestDb, TestResult, TestServer, authed, expect_error};

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn jwt_with(header: &Value, claims: &Value, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let signature = sign(input.as_bytes());
    format!("{input}.{}", b64(&signature))
}

fn hmac(message: &[u8]) -> Vec<u8> {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, HS_SECRET.as_bytes());
    aws_lc_rs::hmac::sign(&key, message).as_ref().to_vec()
}

fn claims(server: &TestServer, sub: &str, org_id: &str) -> Value {
    let now = tokend::domain::Clock::now(server.clock.as_ref()).timestamp();
    json!({"sub": sub, "org_id": org_id, "roles": ["admin"], "iat": now, "exp": now + 600})
}

async fn list(server: &TestServer, jwt: &str) -> Result<(), tonic::Status> {
    server
        .client()
        .list_tokens(authed(ListTokensRequest::default(), jwt))
        .await
        .map(|_| ())
}

/// A server trusting both the HS secret and a JWKS holding one Ed25519 key
/// under `kid` "ed1".
async fn start_with_hs_and_jwks(
    backend: Backend,
) -> Result<(TestServer, Ed25519KeyPair), Box<dyn std::error::Error + Send + Sync>> {
    let key = Ed25519KeyPair::generate()?;
    let db = TestDb::new(backend).await;
    let path = db.dir.path().join("jwks.json");
    let jwks = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "kid": "ed1",
        "x": b64(key.public_key().as_ref())}]});
    std::fs::write(&path, jwks.to_string())?;
    let path = path.display().to_string();
    let server = TestServer::start_on(Arc::new(db), &["--jwt-jwks-file", &path]).await;
    Ok((server, key))
}

/// An attacker who learns (or guesses) the shared HS secret must not get
/// past a deployment that moved its callers to a JWKS by naming a `kid`
/// the key ring lacks: only a JWT without `kid` may use the HS secret.
async fn a_kid_outside_the_key_ring_never_falls_back_to_the_hs_secret(
    backend: Backend,
) -> TestResult {
    let (server, key) = start_with_hs_and_jwks(backend).await?;
    let good = claims(&server, "svc", "acme");
    // Both keys work as meant.
    list(
        &server,
        &jwt_with(&json!({"alg": "HS256", "typ": "JWT"}), &good, hmac),
    )
    .await?;
    let ed = |m: &[u8]| key.sign(m).as_ref().to_vec();
    list(
        &server,
        &jwt_with(&json!({"alg": "EdDSA", "kid": "ed1"}), &good, ed),
    )
    .await?;
    // Signed with the HS secret, but naming a kid: refused, whatever the kid.
    for kid in [
        json!("unknown"),
        json!(""),
        json!("ED1"),
        json!("ed1 "),
        json!("hs256"),
    ] {
        let jwt = jwt_with(
            &json!({"alg": "HS256", "typ": "JWT", "kid": kid}),
            &good,
            hmac,
        );
        let details = expect_error(
            list(&server, &jwt).await,
            Code::Unauthenticated,
            "JWT_INVALID",
        );
        assert_eq!(details.problem.status, 401, "kid {kid}");
    }
    // Naming the ring's key but signed with the HS secret: refused too.
    let jwt = jwt_with(&json!({"alg": "HS256", "kid": "ed1"}), &good, hmac);
    expect_error(
        list(&server, &jwt).await,
        Code::Unauthenticated,
        "JWT_INVALID",
    );

    // Without a JWKS at all, a kid still never selects the HS secret.
    let hs_only = TestServer::start(backend).await;
    let good = claims(&hs_only, "svc", "acme");
    list(&hs_only, &jwt_with(&json!({"alg": "HS256"}), &good, hmac)).await?;
    let jwt = jwt_with(&json!({"alg": "HS256", "kid": "default"}), &good, hmac);
    expect_error(
        list(&hs_only, &jwt).await,
        Code::Unauthenticated,
        "JWT_INVALID",
    );
    Ok(())
}

/// A `sub` or `org_id` holding a bidi override, a zero-width or another
/// format character, or a control character, could display as another
/// caller or tenant in logs and audit events: such a JWT is invalid, even
/// with a valid signature. Other non-ASCII text is fine.
async fn control_and_format_characters_in_sub_or_org_id_make_the_jwt_invalid(
    backend: Backend,
) -> TestResult {
    let server = TestServer::start(backend).await;
    let header = json!({"alg": "HS256", "typ": "JWT"});
    for bad in [
        "admin\u{202e}",         // RIGHT-TO-LEFT OVERRIDE
        "ad\u{200b}min",         // ZERO WIDTH SPACE
        "\u{feff}admin",         // ZERO WIDTH NO-BREAK SPACE (BOM)
        "ad\u{2066}min\u{2069}", // LEFT-TO-RIGHT ISOLATE ... POP DIRECTIONAL ISOLATE
        "ad\u{ad}min",           // SOFT HYPHEN
        "ad\u{200d}min",         // ZERO WIDTH JOINER
        "admin\u{e0001}",        // LANGUAGE TAG
        "ad\u{0}min",            // NUL
        "admin\u{1b}[2J",        // ESC
        "admin\u{85}",           // NEXT LINE (C1)
    ] {
        for (sub, org_id) in [(bad, "acme"), ("svc", bad)] {
            let jwt = jwt_with(&header, &claims(&server, sub, org_id), hmac);
            expect_error(
                list(&server, &jwt).await,
                Code::Unauthenticated,
                "JWT_INVALID",
            );
        }
    }
    for fine in ["Zoë", "用户", "o'brien", "a b", "\u{a0}nbsp"] {
        let jwt = jwt_with(&header, &claims(&server, fine, fine), hmac);
        list(&server, &jwt)
            .await
            .map_err(|s| format!("{fine:?}: {s:?}"))?;
    }
    Ok(())
}

crate::backend_tests!(
    a_kid_outside_the_key_ring_never_falls_back_to_the_hs_secret,
    control_and_format_characters_in_sub_or_org_id_make_the_jwt_invalid,
);
