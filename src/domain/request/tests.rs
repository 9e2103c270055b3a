//! The parse functions, one field rule and one promise at a time.

use chrono::{DateTime, Utc};

use super::*;
use crate::domain::error::{InvalidFields, TokenRejection};
use crate::domain::kind::TokenKind;
use crate::domain::pagination::{Cursor, PageTokenKey, encode};
use crate::domain::secret::TokenSecret;
use crate::domain::token::RevokeTarget;
use crate::domain::validation::{KindInput, TimestampInput};

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_767_225_600, 0).unwrap_or_default()
}

fn create(kind: KindInput, name: &str) -> CreateTokenInput {
    CreateTokenInput {
        kind,
        name: name.to_owned(),
        service_account_slug: String::new(),
        workspace_id: String::new(),
        scopes: Vec::new(),
        expire_time: None,
    }
}

fn locations(fields: &InvalidFields) -> Vec<&str> {
    fields.listed.iter().map(|v| v.location.as_str()).collect()
}

#[test]
fn a_create_without_a_kind_reports_every_bad_field_and_no_internal_error() {
    let mut input = create(KindInput::Unspecified, "");
    input.service_account_slug = "ci".to_owned();
    input.scopes = vec!["BAD".to_owned()];
    input.expire_time = Some(TimestampInput::Valid(now()));
    let refused = parse_create(input, now())
        .err()
        .unwrap_or_else(|| InvalidFields {
            listed: Vec::new(),
            unlisted: 0,
        });
    assert_eq!(
        locations(&refused),
        [
            "kind",
            "name",
            "service_account_slug",
            "scopes[0]",
            "expire_time"
        ]
    );
    let unknown = parse_create(create(KindInput::Unknown(9), "ok"), now());
    assert_eq!(
        unknown.map_err(|f| locations(&f).join(",")),
        Err("kind".to_owned())
    );
}

#[test]
fn a_valid_create_keeps_only_the_fields_of_its_kind() {
    let mut input = create(KindInput::Known(TokenKind::ServiceAccount), "deploy");
    input.service_account_slug = "ci".to_owned();
    input.scopes = vec!["read:tokens".to_owned()];
    let later = now() + chrono::TimeDelta::days(1);
    input.expire_time = Some(TimestampInput::Valid(later));
    let valid = parse_create(input, now()).map_err(|f| locations(&f).join(","));
    let Ok(valid) = valid else {
        panic!("refused: {valid:?}");
    };
    assert_eq!(valid.kind(), TokenKind::ServiceAccount);
    assert_eq!(valid.service_account_slug(), Some("ci"));
    assert_eq!(valid.workspace_id(), None);
    assert_eq!(valid.scopes(), ["read:tokens"]);
    assert_eq!(valid.expires_at(), Some(later));
    assert_eq!(valid.resource_name(), "serviceAccounts/ci/tokens/deploy");

    let mut key = create(KindInput::Known(TokenKind::WorkspaceApiKey), "ci key");
    key.workspace_id = "g-0123456789".to_owned();
    let key = parse_create(key, now()).map(|v| v.resource_name());
    assert_eq!(
        key.map_err(|f| f.count()),
        Ok("workspaces/g-0123456789/apiKeys/ci key".to_owned())
    );
    let pat = parse_create(
        create(KindInput::Known(TokenKind::PersonalAccess), "laptop"),
        now(),
    );
    assert_eq!(
        pat.map(|v| v.resource_name()).map_err(|f| f.count()),
        Ok("tokens/laptop".to_owned())
    );
}

#[test]
fn a_revoke_with_a_bad_token_id_is_refused_with_every_bad_field() {
    let refused = parse_revoke(RevokeInput::PersonalAccess {
        token_id: "not-a-uuid".to_owned(),
        reason: "bell\u{7}".to_owned(),
    });
    assert_eq!(
        refused.map_err(|f| locations(&f).join(",")),
        Err("token_id,reason".to_owned())
    );
    let uuid = "0190f5a2-7c1e-7d3a-9b8e-2f4d6c8a0b1e";
    let valid = parse_revoke(RevokeInput::PersonalAccess {
        token_id: uuid.to_owned(),
        reason: String::new(),
    });
    let Ok(valid) = valid else {
        panic!("refused: {valid:?}");
    };
    assert_eq!(valid.reason(), None);
    assert_eq!(
        valid.target().resource_name(),
        format!("personalAccessTokens/{uuid}")
    );
    assert!(matches!(
        valid.target(),
        RevokeTarget::PersonalAccess {
            owner_user_id: None,
            ..
        }
    ));
    assert_eq!(parse_get(0).map_err(|f| f.count()), Err(1));
    assert_eq!(parse_get(7).map(ValidGet::id).map_err(|f| f.count()), Ok(7));
}

#[test]
fn a_page_token_is_accepted_only_for_its_organisation_and_filters() {
    let key = PageTokenKey::from_bytes([7; PageTokenKey::LEN]);
    let list = |org: &str, show_revoked: bool, page_token: &str| {
        parse_list(
            ListTokensInput {
                kind: KindInput::Unspecified,
                service_account_slug: String::new(),
                workspace_id: String::new(),
                show_revoked,
                state: StateInput::Unspecified,
                owner_user_id: String::new(),
                name_prefix: String::new(),
                expire_before: None,
                last_used_before: None,
                page_size: 0,
                page_token: page_token.to_owned(),
            },
            org,
            &key,
            now(),
        )
    };
    let first = list("org-a", false, "").map_err(|f| f.count());
    let Ok(first) = first else {
        panic!("refused: {first:?}");
    };
    assert_eq!((first.limit(), first.after_id()), (100, None));
    let token = encode(&key, first.scope(), Cursor { after_id: 41 });
    assert_eq!(
        list("org-a", false, &token)
            .map(|v| v.after_id())
            .map_err(|f| f.count()),
        Ok(Some(41))
    );
    for (org, show_revoked) in [("org-b", false), ("org-a", true)] {
        assert_eq!(
            list(org, show_revoked, &token).map_err(|f| locations(&f).join(",")),
            Err("page_token".to_owned())
        );
    }
    let audit = parse_audit_query(
        ListAuditEventsInput {
            event_type: "no_such_event".to_owned(),
            page_size: 1001,
            page_token: token,
        },
        "org-a",
        &key,
    );
    assert_eq!(
        audit.map_err(|f| locations(&f).join(",")),
        Err("event_type,page_size,page_token".to_owned())
    );
}

#[test]
fn a_secret_of_an_excluded_family_is_unknown_before_any_read() {
    let secret = TokenSecret::generate(TokenKind::PersonalAccess)
        .map(|s| s.expose().to_owned())
        .unwrap_or_default();
    assert!(parse_presented_secret(&secret, AcceptedFamilies::Any).is_ok());
    assert_eq!(
        parse_presented_secret(&secret, AcceptedFamilies::Only(TokenKind::Scrape)),
        Err(TokenRejection::Unknown)
    );
    assert!(matches!(
        parse_presented_secret("tkd_pat_short", AcceptedFamilies::Any),
        Err(TokenRejection::Malformed(_))
    ));
}
