//! Control characters and Unicode format characters (category Cf: bidi
//! overrides, zero-width characters, the BOM, tag characters) are refused
//! in every text field, one violation per field, and nothing is written;
//! `reason` allows newline and nothing else of the kind.

use tonic::Code;

use tokend::grpc::proto::{
    AuthenticateTokenRequest, CreateTokenRequest, DeleteWorkspaceApiKeyRequest,
    ListAuditEventsRequest, ListTokensRequest, RevokePersonalAccessTokenRequest,
    RevokeScrapeTokenRequest, RevokeServiceAccountTokenRequest, TokenKind,
};

use crate::backend_tests;
use crate::support::{
    Backend, TestResult, TestServer, all_events, all_tokens, authed, expect_error,
};

backend_tests!(control_and_format_characters_are_refused_in_every_text_field);

/// Right-to-left override, zero-width space, BOM, first-strong isolate,
/// soft hyphen, word joiner, a tag character, ESC, DEL, NEL (C1), CR.
const HOSTILE: [char; 11] = [
    '\u{202e}',
    '\u{200b}',
    '\u{feff}',
    '\u{2068}',
    '\u{ad}',
    '\u{2060}',
    '\u{e0041}',
    '\u{1b}',
    '\u{7f}',
    '\u{85}',
    '\r',
];

/// Asserts the call was refused with exactly these fields.
fn refused_on<T: std::fmt::Debug>(result: Result<T, tonic::Status>, fields: &[&str], what: &str) {
    let details = expect_error(result, Code::InvalidArgument, "INVALID_FIELD");
    let got: Vec<&str> = details
        .field_violations
        .iter()
        .map(|(field, _)| field.as_str())
        .collect();
    assert_eq!(got, fields, "{what}");
}

fn create(kind: TokenKind, name: &str) -> CreateTokenRequest {
    let mut request = CreateTokenRequest {
        kind: kind as i32,
        name: name.to_owned(),
        ..CreateTokenRequest::default()
    };
    match kind {
        TokenKind::ServiceAccount => request.service_account_slug = "ci".into(),
        TokenKind::WorkspaceApiKey => request.workspace_id = "g-0123456789".into(),
        TokenKind::Unspecified | TokenKind::Scrape | TokenKind::PersonalAccess => {}
    }
    request
}

async fn control_and_format_characters_are_refused_in_every_text_field(
    backend: Backend,
) -> TestResult {
    let server = TestServer::start(backend).await;
    let admin = server.admin("acme");
    let mut client = server.client();
    let mut made = Vec::new();
    for kind in [
        TokenKind::Scrape,
        TokenKind::PersonalAccess,
        TokenKind::ServiceAccount,
        TokenKind::WorkspaceApiKey,
    ] {
        made.push(
            client
                .create_token(authed(create(kind, "deploy"), &admin))
                .await?
                .into_inner(),
        );
    }
    let tokens_before = all_tokens(&server, &admin).await?;
    let events_before = all_events(&server, &admin).await?;
    let scrape = made[0].token.clone().expect("token");
    let pat = made[1].token.clone().expect("token");

    for c in HOSTILE {
        let what = |field: &str| format!("{field} with U+{:04X}", u32::from(c));
        let bad = |base: &str| format!("{base}{c}x");
        for kind in [
            TokenKind::Scrape,
            TokenKind::PersonalAccess,
            TokenKind::WorkspaceApiKey,
            TokenKind::ServiceAccount,
        ] {
            refused_on(
                client
                    .create_token(authed(create(kind, &bad("name")), &admin))
                    .await,
                &["name"],
                &what(&format!("{kind:?} name")),
            );
        }
        let mut request = create(TokenKind::ServiceAccount, "deploy-2");
        request.service_account_slug = bad("ci");
        refused_on(
            client.create_token(authed(request, &admin)).await,
            &["service_account_slug"],
            &what("service_account_slug"),
        );
        let mut request = create(TokenKind::WorkspaceApiKey, "key-2");
        request.workspace_id = bad("g-01234567");
        refused_on(
            client.create_token(authed(request, &admin)).await,
            &["workspace_id"],
            &what("workspace_id"),
        );
        let mut request = create(TokenKind::Scrape, "scoped");
        request.scopes = vec!["read".into(), bad("write")];
        refused_on(
            client.create_token(authed(request, &admin)).await,
            &["scopes[1]"],
            &what("scopes"),
        );

        // Revokes: a bad reason alone refuses the revoke of a real token.
        refused_on(
            client
                .revoke_scrape_token(authed(
                    RevokeScrapeTokenRequest {
                        id: scrape.id,
                        reason: bad("leaked"),
                    },
                    &admin,
                ))
                .await,
            &["reason"],
            &what("reason"),
        );
        refused_on(
            client
                .revoke_personal_access_token(authed(
                    RevokePersonalAccessTokenRequest {
                        token_id: pat.token_id.clone(),
                        reason: bad("line one\nline two"),
                    },
                    &admin,
                ))
                .await,
            &["reason"],
            &what("multi-line reason"),
        );
        refused_on(
            client
                .revoke_personal_access_token(authed(
                    RevokePersonalAccessTokenRequest {
                        token_id: bad(&pat.token_id),
                        reason: String::new(),
                    },
                    &admin,
                ))
                .await,
            &["token_id"],
            &what("token_id"),
        );
        refused_on(
            client
                .revoke_service_account_token(authed(
                    RevokeServiceAccountTokenRequest {
                        service_account_slug: bad("ci"),
                        token_slug: bad("deploy"),
                        reason: bad("r"),
                    },
                    &admin,
                ))
                .await,
            &["service_account_slug", "token_slug", "reason"],
            &what("service-account revoke"),
        );
        refused_on(
            client
                .delete_workspace_api_key(authed(
                    DeleteWorkspaceApiKeyRequest {
                        workspace_id: "g-0123456789".into(),
                        key_name: bad("deploy"),
                        reason: bad("r"),
                    },
                    &admin,
                ))
                .await,
            &["key_name", "reason"],
            &what("key_name and reason"),
        );

        // Filters and page tokens.
        refused_on(
            client
                .list_tokens(authed(
                    ListTokensRequest {
                        service_account_slug: bad("ci"),
                        workspace_id: bad("g-01234567"),
                        page_token: bad(""),
                        ..ListTokensRequest::default()
                    },
                    &admin,
                ))
                .await,
            &["service_account_slug", "workspace_id", "page_token"],
            &what("list filters"),
        );
        refused_on(
            client
                .list_audit_events(authed(
                    ListAuditEventsRequest {
                        event_type: bad("scrape_token_created"),
                        ..ListAuditEventsRequest::default()
                    },
                    &admin,
                ))
                .await,
            &["event_type"],
            &what("event_type"),
        );
        // A secret with such a character is no secret at all.
        let secret = format!("{}{c}", made[0].secret);
        expect_error(
            client
                .authenticate_token(authed(
                    AuthenticateTokenRequest {
                        secret,
                        ..Default::default()
                    },
                    &server.introspector(),
                ))
                .await,
            Code::Unauthenticated,
            "TOKEN_MALFORMED",
        );
    }

    assert_eq!(
        all_tokens(&server, &admin).await?,
        tokens_before,
        "nothing was created or revoked"
    );
    assert_eq!(all_events(&server, &admin).await?, events_before);

    // Newline is the one such character a reason may hold; names take
    // letters of every script, combining marks and emoji.
    let revoked = client
        .revoke_scrape_token(authed(
            RevokeScrapeTokenRequest {
                id: scrape.id,
                reason: "leaked\nin CI logs".into(),
            },
            &admin,
        ))
        .await?
        .into_inner()
        .token
        .expect("token");
    assert_eq!(revoked.revoke_reason, "leaked\nin CI logs");
    for name in [
        "Déploiement",
        "e\u{301}te\u{301}",
        "日本語のトークン",
        "🚀 release",
        "שלום",
    ] {
        client
            .create_token(authed(create(TokenKind::PersonalAccess, name), &admin))
            .await?;
    }
    Ok(())
}
