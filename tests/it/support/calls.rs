//! Calls as tests make them: authenticated requests, whole listings, and
//! the agreement of an organisation's tokens and audit events.

use tonic::{Request, Status};

use super::servers::TestServer;

/// Wraps a message with a bearer JWT and an optional request id.
pub fn authed<T>(message: T, jwt: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {jwt}").parse().expect("ascii JWT"),
    );
    request
}

/// Every token of the caller's org, all pages.
pub async fn all_tokens(
    server: &TestServer,
    admin: &str,
) -> Result<Vec<tokend::grpc::proto::Token>, Status> {
    let (mut tokens, mut page_token) = (Vec::new(), String::new());
    loop {
        let request = tokend::grpc::proto::ListTokensRequest {
            show_revoked: true,
            page_size: 1000,
            page_token,
            ..Default::default()
        };
        let page = server
            .client()
            .list_tokens(authed(request, admin))
            .await?
            .into_inner();
        tokens.extend(page.tokens);
        if page.next_page_token.is_empty() {
            return Ok(tokens);
        }
        page_token = page.next_page_token;
    }
}

/// Every audit event of the caller's org, all pages.
pub async fn all_events(
    server: &TestServer,
    admin: &str,
) -> Result<Vec<tokend::grpc::proto::AuditEvent>, Status> {
    let (mut events, mut page_token) = (Vec::new(), String::new());
    loop {
        let request = tokend::grpc::proto::ListAuditEventsRequest {
            page_size: 1000,
            page_token,
            ..Default::default()
        };
        let page = server
            .client()
            .list_audit_events(authed(request, admin))
            .await?
            .into_inner();
        events.extend(page.audit_events);
        if page.next_page_token.is_empty() {
            return Ok(events);
        }
        page_token = page.next_page_token;
    }
}

/// The audit event types of a token kind: (created, revoked).
pub fn audit_event_types(kind: i32) -> (&'static str, &'static str) {
    use tokend::grpc::proto::TokenKind;
    match TokenKind::try_from(kind).unwrap_or(TokenKind::Unspecified) {
        TokenKind::Scrape => ("scrape_token_created", "scrape_token_revoked"),
        TokenKind::PersonalAccess => (
            "personal_access_token_created",
            "personal_access_token_revoked",
        ),
        TokenKind::ServiceAccount => (
            "service_account_token_created",
            "service_account_token_revoked",
        ),
        TokenKind::WorkspaceApiKey => ("workspace_api_key_created", "workspace_api_key_deleted"),
        TokenKind::Unspecified => panic!("a token without a kind"),
    }
}

/// Asserts the org's tokens and audit events agree (any token kind): each
/// token has its created event, a revoked one its revoked event, and no event lacks its
/// change. Returns the number of tokens.
pub async fn assert_tokens_and_events_agree(
    server: &TestServer,
    admin: &str,
) -> Result<usize, Status> {
    let all = all_tokens(server, admin).await?;
    let events = all_events(server, admin).await?;
    for token in &all {
        let of_token: Vec<&str> = events
            .iter()
            .filter(|e| e.token_id == token.token_id)
            .map(|e| e.event_type.as_str())
            .collect();
        let (created, revoked) = audit_event_types(token.kind);
        let expected: &[&str] = if token.revoke_time.is_some() {
            &[created, revoked]
        } else {
            &[created]
        };
        assert_eq!(
            of_token, expected,
            "token {} and its audit events agree",
            token.token_id
        );
    }
    assert_eq!(
        events.len(),
        all.len() + all.iter().filter(|t| t.revoke_time.is_some()).count(),
        "no event without its change"
    );
    Ok(all.len())
}

/// A CreateToken request for a scrape token named `name`: the simplest token,
/// used wherever a test needs one of no particular family.
pub fn scrape_request(name: &str) -> tokend::grpc::proto::CreateTokenRequest {
    tokend::grpc::proto::CreateTokenRequest {
        kind: tokend::grpc::proto::TokenKind::Scrape as i32,
        name: name.to_owned(),
        ..Default::default()
    }
}
