//! Unit tests of the core against the in-memory repository: the permission
//! table, the validation table and the lifecycle rules of
//! docs/reference.md, each row its own test, in milliseconds. The
//! integration suite (tests/it) keeps what needs the wire, the databases,
//! concurrency and processes.
//!
//! Every test builds the core through [`new_lifecycle`] and names the core's
//! types through the imports below, so a change of constructor or module
//! layout is adapted here once.

mod bulk_revoke;
mod filters;
mod leaked;
mod permissions;
mod policy;
mod revoked_use;
mod rotation;
mod rules;
mod scopes;
mod validation;

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};

pub(super) use crate::domain::audit::{AuditContext, AuditEvent, AuditEventType};
pub(super) use crate::domain::caller::Caller;
pub(super) use crate::domain::clock::{Clock, ManualClock};
pub(super) use crate::domain::entropy::SeededEntropy;
pub(super) use crate::domain::error::{ServiceError, TokenRejection};
pub(super) use crate::domain::kind::TokenKind;
pub(super) use crate::domain::last_use::{LAST_USE_QUEUE_CAPACITY, LastUseRecorder, LastUseWriter};
pub(super) use crate::domain::lifecycle::{Revoked, TokenLifecycle};
pub(super) use crate::domain::memory::{MemoryRepository, RepositoryCall};
pub(super) use crate::domain::pagination::Page;
pub(super) use crate::domain::repository::StoreError;
pub(super) use crate::domain::request::{
    AcceptedFamilies, AuthenticateInput, CreateTokenInput, ListAuditEventsInput, ListTokensInput,
    RevokeInput, StateInput,
};
pub(super) use crate::domain::secret::TokenSecret;
pub(super) use crate::domain::token::{StateFilter, Token};
pub(super) use crate::domain::validation::{KindInput, TimestampInput};

/// The organisation most tests act in.
pub(super) const ACME: &str = "acme";
/// Another organisation.
pub(super) const EVIL: &str = "evil";
/// The service account and workspace tokens of those kinds are made in.
pub(super) const SERVICE_ACCOUNT: &str = "ci";
pub(super) const WORKSPACE: &str = "g-00000000aa";

/// The one place the tests build the core.
pub(super) fn new_lifecycle(
    repository: MemoryRepository,
    last_use: LastUseRecorder,
) -> TokenLifecycle<MemoryRepository> {
    TokenLifecycle::new(repository, last_use, Arc::new(SeededEntropy::new(7)))
}

/// 2026-01-01T00:00:00Z: where every test's clock starts.
pub(super) fn start_time() -> DateTime<Utc> {
    DateTime::UNIX_EPOCH + TimeDelta::days(20_454)
}

/// A caller of `org_id`.
pub(super) fn caller(org_id: &str, subject: &str, roles: &[&str], permissions: &[&str]) -> Caller {
    let set = |names: &[&str]| {
        names
            .iter()
            .map(|n| (*n).to_owned())
            .collect::<BTreeSet<_>>()
    };
    Caller {
        org_id: org_id.to_owned(),
        subject: subject.to_owned(),
        roles: set(roles),
        permissions: set(permissions),
    }
}

/// An `admin` of `org_id`.
pub(super) fn admin(org_id: &str) -> Caller {
    caller(org_id, "root", &["admin"], &[])
}

/// A user of `org_id` with `user_app_keys` only.
pub(super) fn user(org_id: &str, subject: &str) -> Caller {
    caller(org_id, subject, &[], &["user_app_keys"])
}

/// A valid CreateToken input of `kind` named `name`.
pub(super) fn create_input(kind: TokenKind, name: &str) -> CreateTokenInput {
    CreateTokenInput {
        kind: KindInput::Known(kind),
        name: name.to_owned(),
        service_account_slug: match kind {
            TokenKind::ServiceAccount => SERVICE_ACCOUNT.to_owned(),
            TokenKind::Scrape | TokenKind::PersonalAccess | TokenKind::WorkspaceApiKey => {
                String::new()
            }
        },
        workspace_id: match kind {
            TokenKind::WorkspaceApiKey => WORKSPACE.to_owned(),
            TokenKind::Scrape | TokenKind::PersonalAccess | TokenKind::ServiceAccount => {
                String::new()
            }
        },
        scopes: vec!["read".to_owned()],
        expire_time: None,
    }
}

/// ListTokens of everything visible, revoked included.
pub(super) fn list_all() -> ListTokensInput {
    ListTokensInput {
        kind: KindInput::Unspecified,
        service_account_slug: String::new(),
        workspace_id: String::new(),
        show_revoked: true,
        state: StateInput::Unspecified,
        owner_user_id: String::new(),
        name_prefix: String::new(),
        expire_before: None,
        last_used_before: None,
        page_size: 1000,
        page_token: String::new(),
    }
}

/// ListAuditEvents of every type.
pub(super) fn all_events() -> ListAuditEventsInput {
    ListAuditEventsInput {
        event_type: String::new(),
        page_size: 1000,
        page_token: String::new(),
    }
}

/// The revoke RPC of `token`'s family, naming it the way that RPC does.
pub(super) fn revoke_input(token: &Token, reason: &str) -> RevokeInput {
    let reason = reason.to_owned();
    match token.kind {
        TokenKind::Scrape => RevokeInput::Scrape {
            id: token.id,
            reason,
        },
        TokenKind::PersonalAccess => RevokeInput::PersonalAccess {
            token_id: token.token_id.to_string(),
            reason,
        },
        TokenKind::ServiceAccount => RevokeInput::ServiceAccount {
            service_account_slug: token.service_account_slug.clone().unwrap_or_default(),
            token_slug: token.name.clone(),
            reason,
        },
        TokenKind::WorkspaceApiKey => RevokeInput::WorkspaceApiKey {
            workspace_id: token.workspace_id.clone().unwrap_or_default(),
            key_name: token.name.clone(),
            reason,
        },
    }
}

/// The core over a fresh in-memory repository, with a manual clock.
pub(super) struct Fixture {
    /// What the core stores into (a clone sharing its data).
    pub repository: MemoryRepository,
    /// The core.
    pub core: TokenLifecycle<MemoryRepository>,
    /// The time every call is made at.
    pub clock: ManualClock,
    /// The background last-use writer, for the tests that run it.
    pub writer: Option<LastUseWriter>,
}

impl Fixture {
    /// A core with its page-token key installed, as once the schema is ready.
    pub fn new() -> Fixture {
        let fixture = Fixture::without_page_token_key();
        let key = fixture.repository.load_page_token_key();
        fixture.core.install_page_token_key(key);
        fixture
    }

    /// A core whose page-token key has not been loaded yet.
    pub fn without_page_token_key() -> Fixture {
        let repository = MemoryRepository::new();
        let (recorder, writer) = LastUseRecorder::new(LAST_USE_QUEUE_CAPACITY);
        Fixture {
            core: new_lifecycle(repository.clone(), recorder),
            repository,
            clock: ManualClock::new(start_time()),
            writer: Some(writer),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Whether every stored token is still unrevoked (a refused call changed
    /// nothing).
    pub fn no_token_revoked(&self) -> bool {
        self.repository
            .tokens()
            .iter()
            .all(|t| t.revoked_at.is_none())
    }

    /// The audit context of a call by `caller` now.
    pub fn audit(&self, caller: &Caller) -> AuditContext {
        AuditContext {
            actor: caller.subject.clone(),
            request_id: format!("req-{}", caller.subject),
            now: self.now(),
        }
    }

    /// The audit context of a scrape on the metrics endpoint now: no actor.
    pub fn scraper(&self) -> AuditContext {
        AuditContext {
            actor: String::new(),
            request_id: "req-scrape".to_owned(),
            now: self.now(),
        }
    }

    pub async fn create(
        &self,
        caller: &Caller,
        input: CreateTokenInput,
    ) -> Result<(Token, TokenSecret), ServiceError> {
        self.core
            .create_token(caller, &self.audit(caller), input)
            .await
    }

    /// Creates a token that the test needs to exist.
    pub async fn made(&self, caller: &Caller, kind: TokenKind, name: &str) -> (Token, TokenSecret) {
        match self.create(caller, create_input(kind, name)).await {
            Ok(made) => made,
            Err(error) => panic!("set-up: creating {kind:?} {name}: {error:?}"),
        }
    }

    pub async fn revoke(
        &self,
        caller: &Caller,
        input: RevokeInput,
    ) -> Result<Revoked, ServiceError> {
        self.core
            .revoke_token(caller, &self.audit(caller), input)
            .await
    }

    /// Every audit event of `org_id`, as its admin lists them.
    pub async fn all_events(&self, org_id: &str) -> Vec<AuditEvent> {
        match self
            .core
            .list_audit_events(&admin(org_id), all_events())
            .await
        {
            Ok(page) => page.items,
            Err(error) => panic!("listing: {error:?}"),
        }
    }
}

/// The locations of an INVALID_ARGUMENT's violations, or a description of
/// what came instead.
pub(super) fn violations<T: std::fmt::Debug>(
    result: Result<T, ServiceError>,
) -> Result<Vec<String>, String> {
    match result {
        Err(ServiceError::InvalidArgument(fields)) => Ok(fields
            .listed
            .into_iter()
            .map(|violation| violation.location)
            .collect()),
        other => Err(format!("{other:?}")),
    }
}
