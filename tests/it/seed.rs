//! Bulk seeding (`SeaStore::seed_tokens`), the load tool's only way into the
//! tables: seeded tokens must be indistinguishable, over the API, from tokens
//! with that history, and the returned ids must name them.

use std::collections::BTreeSet;

use chrono::{DateTime, TimeDelta, Utc};
use tonic::Code;

use tokend::domain::token::{NewToken, Revocation};
use tokend::domain::{TokenKind, TokenSecret};
use tokend::grpc::proto::AuthenticateTokenRequest;
use tokend::store::{SeaStore, SeedHistory, SeededRevocation};

use crate::support::{
    Backend, TestResult, TestServer, all_tokens, authed, expect_error, scrape_request,
};

const ORG: &str = "seeded";

/// `count` tokens of the four kinds in turn, with their secrets.
fn new_tokens(prefix: &str, count: usize, now: DateTime<Utc>) -> (Vec<NewToken>, Vec<TokenSecret>) {
    let mut tokens = Vec::with_capacity(count);
    let mut secrets = Vec::with_capacity(count);
    for i in 0..count {
        let kind = TokenKind::ALL[i % 4];
        let secret = TokenSecret::generate(kind).expect("random source");
        tokens.push(NewToken {
            token_id: uuid::Uuid::new_v4(),
            kind,
            org_id: ORG.to_owned(),
            name: format!("{prefix}-{i}"),
            owner_user_id: format!("user-{i}"),
            service_account_slug: (kind == TokenKind::ServiceAccount).then(|| format!("sa-{i}")),
            workspace_id: (kind == TokenKind::WorkspaceApiKey).then(|| format!("g-{i:010x}")),
            scopes: vec!["repo:read".to_owned()],
            secret_hash: secret.hash(),
            created_at: now - TimeDelta::days(1),
            expires_at: None,
            created_by: "seeder".to_owned(),
        });
        secrets.push(secret);
    }
    (tokens, secrets)
}

/// More rows than one INSERT holds: every returned id, across statements,
/// must be the id the API reports for that secret, with the seeded history.
async fn seeded_ids_name_the_tokens_the_api_authenticates(backend: Backend) -> TestResult {
    let server = TestServer::start(backend).await;
    let store = SeaStore::connect_for_seeding(&server.db.url).await?;
    let now = Utc::now();
    // Ahead of the clock, so authenticating does not touch last_used_at.
    let used = now + TimeDelta::days(1);
    let (tokens, secrets) = new_tokens("used", 2_500, now);
    let ids = store
        .seed_tokens(
            tokens,
            &SeedHistory {
                last_used_at: Some(used),
                revoked: None,
            },
        )
        .await?;
    store.settle_after_seeding().await?;
    store.close().await?;
    assert_eq!(ids.len(), 2_500);
    assert_eq!(
        ids.iter().collect::<BTreeSet<_>>().len(),
        2_500,
        "distinct ids"
    );

    let introspector = server.introspector();
    for i in [0, 1, 998, 999, 1_000, 1_001, 1_999, 2_000, 2_499] {
        let token = server
            .client()
            .authenticate_token(authed(
                AuthenticateTokenRequest {
                    secret: secrets[i].expose().to_owned(),
                    ..Default::default()
                },
                &introspector,
            ))
            .await?
            .into_inner()
            .token
            .expect("token");
        assert_eq!(token.id, ids[i], "id of seeded token {i}");
        assert_eq!(token.name, format!("used-{i}"));
        assert_eq!(token.org_id, ORG);
        assert_eq!(
            token.last_used_time.map(|t| t.seconds),
            Some(used.timestamp())
        );
        assert!(token.revoke_time.is_none());
    }
    server.shutdown().await;
    Ok(())
}

/// A revoked history refuses authentication and lists like an API revoke.
async fn seeded_revocations_refuse_authentication(backend: Backend) -> TestResult {
    let server = TestServer::start(backend).await;
    let store = SeaStore::connect_for_seeding(&server.db.url).await?;
    let now = Utc::now();
    let revoked_at = now - TimeDelta::hours(1);
    let (tokens, secrets) = new_tokens("revoked", 4, now);
    let ids = store
        .seed_tokens(
            tokens,
            &SeedHistory {
                last_used_at: None,
                revoked: Some(SeededRevocation {
                    revoked_at,
                    revocation: Revocation {
                        revoked_by: "seeder".to_owned(),
                        reason: Some("seeded as revoked".to_owned()),
                    },
                }),
            },
        )
        .await?;
    store.close().await?;

    let introspector = server.introspector();
    for secret in &secrets {
        expect_error(
            server
                .client()
                .authenticate_token(authed(
                    AuthenticateTokenRequest {
                        secret: secret.expose().to_owned(),
                        ..Default::default()
                    },
                    &introspector,
                ))
                .await,
            Code::Unauthenticated,
            "TOKEN_REVOKED",
        );
    }
    let listed = all_tokens(&server, &server.admin(ORG)).await?;
    assert_eq!(
        listed.iter().map(|t| t.id).collect::<Vec<_>>(),
        ids,
        "the listing (by id) is the seeded tokens in input order"
    );
    for token in &listed {
        assert_eq!(
            token.revoke_time.as_ref().map(|t| t.seconds),
            Some(revoked_at.timestamp())
        );
        assert_eq!(token.revoked_by, "seeder");
        assert_eq!(token.revoke_reason, "seeded as revoked");
        assert!(token.last_used_time.is_none());
    }
    server.shutdown().await;
    Ok(())
}

/// Seeded ids come from the table's own sequence: a token created through
/// the API afterwards gets a fresh id instead of colliding.
async fn tokens_created_after_seeding_get_fresh_ids(backend: Backend) -> TestResult {
    let server = TestServer::start(backend).await;
    let store = SeaStore::connect_for_seeding(&server.db.url).await?;
    let (tokens, _) = new_tokens("before", 10, Utc::now());
    let ids = store.seed_tokens(tokens, &SeedHistory::default()).await?;
    assert!(
        store
            .seed_tokens(Vec::new(), &SeedHistory::default())
            .await?
            .is_empty()
    );
    store.close().await?;

    let created = server
        .client()
        .create_token(authed(scrape_request("after-seeding"), &server.admin(ORG)))
        .await?
        .into_inner()
        .token
        .expect("token");
    assert!(
        ids.iter().all(|id| *id < created.id),
        "created id {} after seeded {ids:?}",
        created.id
    );
    server.shutdown().await;
    Ok(())
}

crate::backend_tests!(
    seeded_ids_name_the_tokens_the_api_authenticates,
    seeded_revocations_refuse_authentication,
    tokens_created_after_seeding_get_fresh_ids,
);
