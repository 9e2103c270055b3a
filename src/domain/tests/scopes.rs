//! AuthenticateToken's `required_scopes`, one test per row: a token that
//! authenticates but lacks a required scope is `ScopeMissing` naming the
//! missing ones; a revoked, expired or unknown token fails as such first;
//! bad `required_scopes` are bad fields, after the permission check.

use super::*;

/// What an AuthenticateToken call came to, in the terms of the table.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Authenticated,
    ScopeMissing(Vec<String>),
    Rejected(TokenRejection),
    InvalidFields(Vec<String>),
    PermissionDenied,
}

/// The state the token is in when it is presented.
#[derive(Clone, Copy)]
enum State {
    Active,
    Revoked,
    Expired,
    /// A well-formed secret that matches no token.
    Unknown,
}

/// The token holds `read` and `write`.
const HELD: [&str; 2] = ["read", "write"];

async fn authenticate(state: State, required: &[&str], introspect: bool) -> Outcome {
    let fx = Fixture::new();
    let who = admin(ACME);
    let mut input = create_input(TokenKind::PersonalAccess, "scoped");
    input.scopes = HELD.iter().map(|s| (*s).to_owned()).collect();
    input.expire_time = Some(TimestampInput::Valid(start_time() + TimeDelta::hours(1)));
    let (token, secret) = match fx.create(&who, input).await {
        Ok(made) => made,
        Err(error) => panic!("set-up: {error:?}"),
    };
    let presented = match state {
        State::Active => secret.expose().to_owned(),
        State::Revoked => {
            if let Err(error) = fx.revoke(&who, revoke_input(&token, "")).await {
                panic!("set-up: {error:?}");
            }
            secret.expose().to_owned()
        }
        State::Expired => {
            fx.clock.advance(TimeDelta::hours(2));
            secret.expose().to_owned()
        }
        State::Unknown => match TokenSecret::generate(TokenKind::PersonalAccess) {
            Ok(other) => other.expose().to_owned(),
            Err(error) => panic!("set-up: {error:?}"),
        },
    };
    let permissions: &[&str] = if introspect {
        &["tokens_introspect"]
    } else {
        &["user_app_keys"]
    };
    let gateway = caller(EVIL, "gateway", &[], permissions);
    let result = fx
        .core
        .authenticate_token(
            &gateway,
            &fx.audit(&gateway),
            AuthenticateInput {
                secret: presented,
                required_scopes: required.iter().map(|s| (*s).to_owned()).collect(),
            },
        )
        .await;
    match result {
        Ok(found) => {
            assert_eq!(found.id, token.id);
            Outcome::Authenticated
        }
        Err(ServiceError::ScopeMissing { missing }) => Outcome::ScopeMissing(missing),
        Err(ServiceError::TokenRejected(why)) => Outcome::Rejected(why),
        Err(ServiceError::PermissionDenied { .. }) => Outcome::PermissionDenied,
        Err(other @ ServiceError::InvalidArgument(_)) => {
            Outcome::InvalidFields(violations(Err::<(), _>(other)).unwrap_or_default())
        }
        Err(other) => panic!("unexpected {other:?}"),
    }
}

fn missing(scopes: &[&str]) -> Outcome {
    Outcome::ScopeMissing(scopes.iter().map(|s| (*s).to_owned()).collect())
}

macro_rules! rows {
    ($($name:ident: ($state:expr, $required:expr, $introspect:expr) => $outcome:expr;)*) => {
        $(
            #[tokio::test]
            async fn $name() {
                assert_eq!(authenticate($state, &$required, $introspect).await, $outcome);
            }
        )*
    };
}

rows! {
    no_scope_required: (State::Active, [], true) => Outcome::Authenticated;
    one_held_scope_required: (State::Active, ["read"], true) => Outcome::Authenticated;
    every_held_scope_required: (State::Active, ["write", "read"], true) => Outcome::Authenticated;
    a_held_scope_required_twice: (State::Active, ["read", "read"], true) => Outcome::Authenticated;
    one_scope_missing: (State::Active, ["admin"], true) => missing(&["admin"]);
    only_the_missing_ones_in_request_order_once_each: (State::Active, ["deploy", "read", "admin", "deploy"], true) => missing(&["deploy", "admin"]);
    scopes_match_exactly_not_by_prefix: (State::Active, ["rea", "read:all"], true) => missing(&["rea", "read:all"]);
    revoked_fails_as_revoked_first: (State::Revoked, ["admin"], true) => Outcome::Rejected(TokenRejection::Revoked);
    expired_fails_as_expired_first: (State::Expired, ["admin"], true) => Outcome::Rejected(TokenRejection::Expired);
    unknown_fails_as_unknown_first: (State::Unknown, ["admin"], true) => Outcome::Rejected(TokenRejection::Unknown);
    bad_required_scopes_are_bad_fields: (State::Active, ["read", "BAD"], true) => Outcome::InvalidFields(vec!["required_scopes[1]".to_owned()]);
    bad_required_scopes_of_a_revoked_token_are_bad_fields: (State::Revoked, ["BAD"], true) => Outcome::InvalidFields(vec!["required_scopes[0]".to_owned()]);
    the_permission_is_checked_before_required_scopes: (State::Active, ["BAD"], false) => Outcome::PermissionDenied;
}
