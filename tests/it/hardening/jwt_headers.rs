//! JWT header URLs (`jku`, `x5u`) are never fetched, embedded keys (`jwk`,
//! `x5c`) never trusted, and `typ` is not checked.

use std::time::Duration;

use tonic::Code;

use tokend::grpc::proto::ListTokensRequest;

use crate::support::{Backend, HS_SECRET, TestResult, TestServer, authed, expect_error};
/// An HS256 JWT with `header`, signed with `key`.
fn hs256_jwt(header: &serde_json::Value, claims: &serde_json::Value, key: &[u8]) -> String {
    use base64::Engine;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let signing_input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let signature = aws_lc_rs::hmac::sign(
        &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key),
        signing_input.as_bytes(),
    );
    format!("{signing_input}.{}", b64(signature.as_ref()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_header_urls_are_never_fetched_and_embedded_keys_never_trusted() -> TestResult {
    use serde_json::json;
    let server = TestServer::start(Backend::Sqlite).await;
    // Where jku / x5u point: counts every connection attempt.
    let trap = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/keys", trap.local_addr()?);
    let (hits_tx, mut hits) = tokio::sync::mpsc::unbounded_channel();
    let trap_task = tokio::spawn(async move {
        while let Ok((stream, _)) = trap.accept().await {
            let _ = hits_tx.send(());
            drop(stream);
        }
    });
    let now = tokend::domain::Clock::now(server.clock.as_ref()).timestamp();
    let claims = json!({"sub": "alice", "org_id": "acme", "roles": ["admin"], "exp": now + 600});
    let attacker_key = b"attacker-chosen-secret-0123456789abcdef";
    let list = |jwt: String| {
        let mut client = server.client();
        async move {
            client
                .list_tokens(authed(ListTokensRequest::default(), &jwt))
                .await
        }
    };
    // Signed with the configured key: the URL headers change nothing, and
    // `typ` is not checked (tokend's keys sign nothing but caller JWTs).
    for header in [
        json!({"alg": "HS256", "jku": url, "x5u": url}),
        json!({"alg": "HS256", "typ": "at+jwt"}),
        json!({"alg": "HS256", "typ": "definitely-not-a-jwt"}),
    ] {
        list(hs256_jwt(&header, &claims, HS_SECRET.as_bytes()))
            .await
            .map_err(|s| format!("{header}: {s:?}"))?;
    }
    // A `kid` names a key of the key ring, never the HS secret: even signed
    // with that secret, a token with a `kid` is refused.
    expect_error(
        list(hs256_jwt(
            &json!({"alg": "HS256", "kid": url, "jku": url}),
            &claims,
            HS_SECRET.as_bytes(),
        ))
        .await,
        Code::Unauthenticated,
        "JWT_INVALID",
    );
    // Signed with a key the token itself offers or points to: refused.
    use base64::Engine;
    let offered = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(attacker_key);
    for header in [
        json!({"alg": "HS256", "jwk": {"kty": "oct", "k": offered}, "jku": url, "x5u": url}),
        json!({"alg": "HS256", "jku": url}),
        json!({"alg": "HS256", "x5u": url, "x5c": ["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"]}),
    ] {
        expect_error(
            list(hs256_jwt(&header, &claims, attacker_key)).await,
            Code::Unauthenticated,
            "JWT_INVALID",
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        hits.try_recv().is_err(),
        "tokend fetched a URL from a JWT header"
    );
    trap_task.abort();
    Ok(())
}
