//! Page tokens are bound by a keyed MAC to their listing and filters, with a
//! key that every replica on the database shares: an edited, forged or
//! reused token is `INVALID_FIELD` on `page_token`, on every replica.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use tonic::Code;

use tokend::grpc::proto::{ListAuditEventsRequest, ListTokensRequest, TokenKind};

use crate::backend_tests;
use crate::support::{Backend, TestResult, TestServer, authed, expect_error, scrape_request};

backend_tests!(page_tokens_are_keyed_bound_to_their_filters_and_shared_by_replicas);

fn page(page_token: &str) -> ListTokensRequest {
    ListTokensRequest {
        page_size: 2,
        page_token: page_token.to_owned(),
        ..ListTokensRequest::default()
    }
}

/// Asserts the call was refused for its `page_token` alone.
fn refused<T: std::fmt::Debug>(result: Result<T, tonic::Status>, what: &str) {
    let details = expect_error(result, Code::InvalidArgument, "INVALID_FIELD");
    let fields: Vec<&str> = details
        .field_violations
        .iter()
        .map(|(field, _)| field.as_str())
        .collect();
    assert_eq!(fields, ["page_token"], "{what}");
}

/// A token in the format of earlier releases: `v1.<id>.<16 hex digits of
/// the unkeyed SHA-256 of the scope>`, the scope spelt through `Debug`.
fn forged_with_the_unkeyed_scheme(org: &str, after_id: i64) -> String {
    let scope = format!(
        "tokens|{org}|TokenFilter {{ kind: None, service_account_slug: None, workspace_id: None, show_revoked: false }}"
    );
    let digest = Sha256::digest(scope.as_bytes());
    let print: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    URL_SAFE_NO_PAD.encode(format!("v1.{after_id}.{print}"))
}

async fn page_tokens_are_keyed_bound_to_their_filters_and_shared_by_replicas(
    backend: Backend,
) -> TestResult {
    let a = TestServer::start(backend).await;
    let b = TestServer::start_on(a.db.clone(), &[]).await;
    let admin = a.admin("acme");
    let (mut on_a, mut on_b) = (a.client(), b.client());
    let mut ids = Vec::new();
    for i in 0..7 {
        let created = on_a
            .create_token(authed(scrape_request(&format!("t{i}")), &admin))
            .await?
            .into_inner();
        ids.push(created.token.expect("token").id);
    }

    let first = on_a
        .list_tokens(authed(page(""), &admin))
        .await?
        .into_inner();
    assert_eq!(
        first.tokens.iter().map(|t| t.id).collect::<Vec<_>>(),
        ids[..2]
    );
    let token = first.next_page_token;

    // Both replicas accept the token and continue where the first page
    // ended: the key is shared through the database.
    for (replica, client) in [("a", &mut on_a), ("b", &mut on_b)] {
        let second = client
            .list_tokens(authed(page(&token), &admin))
            .await?
            .into_inner();
        assert_eq!(
            second.tokens.iter().map(|t| t.id).collect::<Vec<_>>(),
            ids[2..4],
            "replica {replica}"
        );
        // And a token made by this replica is accepted by the other.
        let third_on_a = on_a_or_b_list(&a, &b, replica, &second.next_page_token, &admin).await?;
        assert_eq!(third_on_a, ids[4..6], "replica {replica}'s token elsewhere");
    }

    // Any edited byte makes the token invalid, on both replicas.
    let raw = URL_SAFE_NO_PAD.decode(&token)?;
    for at in 0..raw.len() {
        let mut edited = raw.clone();
        edited[at] ^= 0x01;
        let edited = URL_SAFE_NO_PAD.encode(edited);
        refused(
            on_a.list_tokens(authed(page(&edited), &admin)).await,
            &format!("byte {at} edited, replica a"),
        );
        refused(
            on_b.list_tokens(authed(page(&edited), &admin)).await,
            &format!("byte {at} edited, replica b"),
        );
    }

    // A token forged with the unkeyed scheme of earlier releases, for a
    // cursor the server never handed out.
    for after_id in [ids[1], ids[4]] {
        let forged = forged_with_the_unkeyed_scheme("acme", after_id);
        refused(
            on_a.list_tokens(authed(page(&forged), &admin)).await,
            "forged with the unkeyed scheme",
        );
    }
    // A token of the right shape whose tag was made without the key.
    let mut guessed = vec![2u8];
    guessed.extend_from_slice(&ids[4].to_be_bytes());
    guessed.extend_from_slice(&[0u8; 32]);
    refused(
        on_a.list_tokens(authed(page(&URL_SAFE_NO_PAD.encode(guessed)), &admin))
            .await,
        "a tag made without the key",
    );

    // Reused with other filters, by another org, or on another listing.
    let other_filters = [
        ListTokensRequest {
            show_revoked: true,
            ..page(&token)
        },
        ListTokensRequest {
            kind: TokenKind::Scrape as i32,
            ..page(&token)
        },
        ListTokensRequest {
            kind: TokenKind::ServiceAccount as i32,
            service_account_slug: "ci".into(),
            ..page(&token)
        },
        ListTokensRequest {
            kind: TokenKind::WorkspaceApiKey as i32,
            workspace_id: "g-0123456789".into(),
            ..page(&token)
        },
    ];
    for request in other_filters {
        let what = format!("reused with {request:?}");
        refused(on_b.list_tokens(authed(request, &admin)).await, &what);
    }
    refused(
        on_b.list_tokens(authed(page(&token), &a.admin("other")))
            .await,
        "another org",
    );
    let audit_request = |page_token: &str, event_type: &str| ListAuditEventsRequest {
        event_type: event_type.to_owned(),
        page_size: 2,
        page_token: page_token.to_owned(),
    };
    refused(
        on_b.list_audit_events(authed(audit_request(&token, ""), &admin))
            .await,
        "a ListTokens token on ListAuditEvents",
    );
    let audit_token = on_a
        .list_audit_events(authed(audit_request("", ""), &admin))
        .await?
        .into_inner()
        .next_page_token;
    assert!(!audit_token.is_empty());
    on_b.list_audit_events(authed(audit_request(&audit_token, ""), &admin))
        .await?;
    refused(
        on_b.list_audit_events(authed(
            audit_request(&audit_token, "scrape_token_created"),
            &admin,
        ))
        .await,
        "an audit token with another event type",
    );
    refused(
        on_b.list_tokens(authed(page(&audit_token), &admin)).await,
        "a ListAuditEvents token on ListTokens",
    );
    Ok(())
}

/// Lists the page after `page_token` on the replica that did NOT make it.
async fn on_a_or_b_list(
    a: &TestServer,
    b: &TestServer,
    made_by: &str,
    page_token: &str,
    jwt: &str,
) -> Result<Vec<i64>, tonic::Status> {
    let other = if made_by == "a" { b } else { a };
    Ok(other
        .client()
        .list_tokens(authed(page(page_token), jwt))
        .await?
        .into_inner()
        .tokens
        .iter()
        .map(|t| t.id)
        .collect())
}
