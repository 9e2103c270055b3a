//! Conversion between proto messages and domain types. Requests become the
//! core's raw inputs (the core validates); domain values become messages.

use chrono::{DateTime, TimeDelta, Utc};
use prost_types::Timestamp;

use crate::domain::audit::AuditEvent;
use crate::domain::bulk_revoke::BulkRevoked;
use crate::domain::kind::TokenKind;
use crate::domain::policy::{KindPolicy, TokenPolicy};
use crate::domain::request::{
    CreateTokenInput, KindPolicyInput, ListAuditEventsInput, ListTokensInput, RevokeTokensInput,
    RotateInput, StateInput, TokenPolicyInput,
};
use crate::domain::token::{StateFilter, Token};
use crate::domain::validation::{DurationInput, KindInput, TimestampInput};
use crate::grpc::proto;

/// Proto enum number → the core's view of a `kind` field.
pub fn kind_input(value: i32) -> KindInput {
    match proto::TokenKind::try_from(value) {
        Ok(proto::TokenKind::Unspecified) => KindInput::Unspecified,
        Ok(proto::TokenKind::Scrape) => KindInput::Known(TokenKind::Scrape),
        Ok(proto::TokenKind::PersonalAccess) => KindInput::Known(TokenKind::PersonalAccess),
        Ok(proto::TokenKind::ServiceAccount) => KindInput::Known(TokenKind::ServiceAccount),
        Ok(proto::TokenKind::WorkspaceApiKey) => KindInput::Known(TokenKind::WorkspaceApiKey),
        Err(_) => KindInput::Unknown(value),
    }
}

/// Proto enum number → the core's view of ListTokens' `state`.
pub fn state_input(value: i32) -> StateInput {
    match proto::TokenState::try_from(value) {
        Ok(proto::TokenState::Unspecified) => StateInput::Unspecified,
        Ok(proto::TokenState::Active) => StateInput::Known(StateFilter::Active),
        Ok(proto::TokenState::Expired) => StateInput::Known(StateFilter::Expired),
        Ok(proto::TokenState::Revoked) => StateInput::Known(StateFilter::Revoked),
        Ok(proto::TokenState::Any) => StateInput::Known(StateFilter::Any),
        Err(_) => StateInput::Unknown(value),
    }
}

/// Domain kind → proto enum.
pub fn kind_to_proto(kind: TokenKind) -> proto::TokenKind {
    match kind {
        TokenKind::Scrape => proto::TokenKind::Scrape,
        TokenKind::PersonalAccess => proto::TokenKind::PersonalAccess,
        TokenKind::ServiceAccount => proto::TokenKind::ServiceAccount,
        TokenKind::WorkspaceApiKey => proto::TokenKind::WorkspaceApiKey,
    }
}

/// A proto timestamp → the core's view (out-of-range values are reported by
/// validation, not here).
pub fn timestamp_input(value: &Timestamp) -> TimestampInput {
    let nanos = u32::try_from(value.nanos)
        .ok()
        .filter(|n| *n < 1_000_000_000);
    match nanos.and_then(|n| DateTime::<Utc>::from_timestamp(value.seconds, n)) {
        Some(at) => TimestampInput::Valid(at),
        None => TimestampInput::OutOfRange,
    }
}

/// A domain instant → proto timestamp.
pub fn timestamp(at: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// CreateTokenRequest → core input.
pub fn create_token_input(request: proto::CreateTokenRequest) -> CreateTokenInput {
    CreateTokenInput {
        kind: kind_input(request.kind),
        name: request.name,
        service_account_slug: request.service_account_slug,
        workspace_id: request.workspace_id,
        scopes: request.scopes,
        expire_time: request.expire_time.as_ref().map(timestamp_input),
    }
}

/// ListTokensRequest → core input.
pub fn list_tokens_input(request: proto::ListTokensRequest) -> ListTokensInput {
    ListTokensInput {
        kind: kind_input(request.kind),
        service_account_slug: request.service_account_slug,
        workspace_id: request.workspace_id,
        show_revoked: request.show_revoked,
        state: state_input(request.state),
        owner_user_id: request.owner_user_id,
        name_prefix: request.name_prefix,
        expire_before: request.expire_before.as_ref().map(timestamp_input),
        last_used_before: request.last_used_before.as_ref().map(timestamp_input),
        page_size: request.page_size,
        page_token: request.page_token,
    }
}

/// ListAuditEventsRequest → core input.
pub fn list_audit_events_input(request: proto::ListAuditEventsRequest) -> ListAuditEventsInput {
    ListAuditEventsInput {
        event_type: request.event_type,
        page_size: request.page_size,
        page_token: request.page_token,
    }
}

/// RevokeTokensRequest → core input.
pub fn revoke_tokens_input(request: proto::RevokeTokensRequest) -> RevokeTokensInput {
    RevokeTokensInput {
        kind: kind_input(request.kind),
        owner_user_id: request.owner_user_id,
        service_account_slug: request.service_account_slug,
        workspace_id: request.workspace_id,
        reason: request.reason,
        dry_run: request.dry_run,
    }
}

/// What a RevokeTokens call did → proto. At most 1000 tokens, so the count
/// always fits.
pub fn revoke_tokens_response(outcome: &BulkRevoked) -> proto::RevokeTokensResponse {
    proto::RevokeTokensResponse {
        revoked_count: i32::try_from(outcome.tokens.len()).unwrap_or(i32::MAX),
        token_ids: outcome
            .tokens
            .iter()
            .map(|token| token.token_id.to_string())
            .collect(),
        more: outcome.more,
    }
}

/// A domain token → proto (never a secret: the domain token has none).
pub fn token(token: &Token) -> proto::Token {
    proto::Token {
        id: token.id,
        token_id: token.token_id.to_string(),
        kind: kind_to_proto(token.kind) as i32,
        org_id: token.org_id.clone(),
        name: token.name.clone(),
        owner_user_id: token.owner_user_id.clone(),
        service_account_slug: token.service_account_slug.clone().unwrap_or_default(),
        workspace_id: token.workspace_id.clone().unwrap_or_default(),
        scopes: token.scopes.clone(),
        create_time: Some(timestamp(token.created_at)),
        expire_time: token.expires_at.map(timestamp),
        revoke_time: token.revoked_at.map(timestamp),
        last_used_time: token.last_used_at.map(timestamp),
        created_by: token.created_by.clone(),
        revoked_by: token.revoked_by.clone().unwrap_or_default(),
        revoke_reason: token.revoke_reason.clone().unwrap_or_default(),
        replaced_by: token
            .replaced_by
            .map(|id| id.to_string())
            .unwrap_or_default(),
        rotate_time: token.rotated_at.map(timestamp),
    }
}

/// A domain audit event → proto.
pub fn audit_event(event: &AuditEvent) -> proto::AuditEvent {
    proto::AuditEvent {
        id: event.id,
        event_type: event.event_type.as_str().to_owned(),
        org_id: event.org_id.clone(),
        actor: event.actor.clone(),
        token_id: event.token_id.to_string(),
        request_id: event.request_id.clone(),
        occur_time: Some(timestamp(event.occurred_at)),
        reason: event.reason.clone().unwrap_or_default(),
        token_kind: event
            .token_kind
            .map_or(proto::TokenKind::Unspecified, kind_to_proto) as i32,
        token_numeric_id: event.token_numeric_id,
        replaced_by: event
            .replaced_by
            .map(|id| id.to_string())
            .unwrap_or_default(),
    }
}

/// A proto duration → the core's view: seconds and nanos must agree in
/// sign and nanos stay within ±999,999,999 (the type's own rule).
pub fn duration_input(value: &prost_types::Duration) -> DurationInput {
    let consistent = value.nanos.unsigned_abs() < 1_000_000_000
        && !(value.seconds > 0 && value.nanos < 0)
        && !(value.seconds < 0 && value.nanos > 0);
    let span = TimeDelta::try_seconds(value.seconds)
        .and_then(|seconds| seconds.checked_add(&TimeDelta::nanoseconds(i64::from(value.nanos))));
    match span {
        Some(span) if consistent => DurationInput::Valid(span),
        Some(_) | None => DurationInput::OutOfRange,
    }
}

/// A domain span → proto duration (spans here are at most ten years).
pub fn duration(span: TimeDelta) -> prost_types::Duration {
    prost_types::Duration {
        seconds: span.num_seconds(),
        nanos: span.subsec_nanos(),
    }
}

/// RotateTokenRequest → core input.
pub fn rotate_token_input(request: proto::RotateTokenRequest) -> RotateInput {
    RotateInput {
        id: request.id,
        overlap: request.overlap.as_ref().map(duration_input),
        reason: request.reason,
    }
}

/// A proto policy → core input (an absent policy is the empty one).
pub fn token_policy_input(policy: Option<proto::TokenPolicy>) -> TokenPolicyInput {
    TokenPolicyInput {
        kinds: policy
            .map(|policy| policy.kinds)
            .unwrap_or_default()
            .into_iter()
            .map(|entry| KindPolicyInput {
                kind: kind_input(entry.kind),
                max_lifetime: entry.max_lifetime.as_ref().map(duration_input),
                default_lifetime: entry.default_lifetime.as_ref().map(duration_input),
            })
            .collect(),
    }
}

/// A domain policy → proto.
pub fn token_policy(policy: &TokenPolicy) -> proto::TokenPolicy {
    proto::TokenPolicy {
        kinds: policy
            .kinds()
            .iter()
            .map(|entry: &KindPolicy| proto::KindPolicy {
                kind: kind_to_proto(entry.kind) as i32,
                max_lifetime: entry.max_lifetime.map(duration),
                default_lifetime: entry.default_lifetime.map(duration),
            })
            .collect(),
    }
}
