//! A [`TokenRepository`] held in memory, for tests of the core that run in
//! milliseconds. It keeps the store's semantics (src/store/queries.rs and the
//! schema's unique indexes), so a rule the core relies on the store for is
//! exercised here too:
//!
//! - every organisation-scoped read and write matches `org_id`;
//! - an active name is unique per organisation and service account
//!   (service-account tokens) or workspace (workspace API keys), among
//!   tokens that are not revoked; `token_id` and the secret hash are unique
//!   everywhere: a clash is [`StoreError::Conflict`] and writes nothing;
//! - a create and an effective revoke each write their audit event in the
//!   same step (under one lock), so a revoke is race free: exactly one
//!   caller sees [`RevokeOutcome::Revoked`];
//! - an already revoked target answers [`RevokeOutcome::AlreadyRevoked`]
//!   with the most recently revoked token of that name and its original
//!   `revoked_at`;
//! - lists are keyset-paged by id, oldest first;
//! - a revocation scheduled by a rotation (`revoked_at` in the future)
//!   takes effect at that instant, and an explicit revoke brings it
//!   forward; a rotation checks the old row again under the lock, so of
//!   concurrent rotations exactly one wins.
//!
//! It also records which methods were called (to prove that a refused
//! request reached no storage) and can be told to fail the next calls.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::audit::{AuditContext, AuditEvent, AuditEventType};
use crate::domain::kind::TokenKind;
use crate::domain::pagination::PageTokenKey;
use crate::domain::policy::TokenPolicy;
use crate::domain::repository::{StoreError, TokenRepository};
use crate::domain::rotation::{RotateOutcome, Rotation};
use crate::domain::secret::TokenHash;
use crate::domain::token::{
    EXPIRING_SOON, NewToken, Revocation, RevokeOutcome, RevokeTarget, Token, TokenCounts,
    TokenFilter, TokenState, Visibility,
};

/// One method of [`TokenRepository`], as recorded by [`MemoryRepository`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RepositoryCall {
    /// [`TokenRepository::create_token`].
    CreateToken,
    /// [`TokenRepository::find_token`].
    FindToken,
    /// [`TokenRepository::list_tokens`].
    ListTokens,
    /// [`TokenRepository::revoke_token`].
    RevokeToken,
    /// [`TokenRepository::find_by_hash`].
    FindByHash,
    /// [`TokenRepository::touch_last_used`].
    TouchLastUsed,
    /// [`TokenRepository::list_audit_events`].
    ListAuditEvents,
    /// [`TokenRepository::count_tokens`].
    CountTokens,
    /// [`TokenRepository::ping`].
    Ping,
    /// [`TokenRepository::rotate_token`].
    RotateToken,
    /// [`TokenRepository::token_policy`].
    TokenPolicy,
    /// [`TokenRepository::replace_token_policy`].
    ReplaceTokenPolicy,
    /// [`TokenRepository::revoke_by_hash`].
    RevokeByHash,
    /// [`TokenRepository::revoke_active`].
    RevokeActive,
    /// [`TokenRepository::record_revoked_use`].
    RecordRevokedUse,
}

/// A token row: the token and the hash it is found by.
#[derive(Debug)]
struct Row {
    token: Token,
    hash: TokenHash,
    /// When a use of this revoked token was last recorded (the store's
    /// `revoked_use_recorded_at`).
    revoked_use_recorded_at: Option<DateTime<Utc>>,
}

/// Revokes `token` at `audit.now` by `revocation`.
fn mark_revoked(token: &mut Token, revocation: &Revocation, audit: &AuditContext) {
    token.revoked_at = Some(audit.now);
    token.revoked_by = Some(revocation.revoked_by.clone());
    token.revoke_reason = revocation.reason.clone();
    token.revoke_scheduled = false;
}

#[derive(Debug, Default)]
struct State {
    /// By id, ascending (ids only grow).
    rows: Vec<Row>,
    /// By id, ascending.
    events: Vec<AuditEvent>,
    last_token_id: i64,
    last_event_id: i64,
    calls: Vec<RepositoryCall>,
    /// Errors the next calls return, one each, before doing anything.
    failures: VecDeque<StoreError>,
    /// Token policies by organisation.
    policies: HashMap<String, TokenPolicy>,
}

impl State {
    /// Inserts `new` with the next id and writes its `*_created` event, as
    /// the store's insert does (the caller checked for a name clash).
    fn insert_new(&mut self, new: NewToken, audit: &AuditContext) -> Token {
        self.last_token_id += 1;
        let token = Token {
            id: self.last_token_id,
            token_id: new.token_id,
            kind: new.kind,
            org_id: new.org_id,
            name: new.name,
            owner_user_id: new.owner_user_id,
            service_account_slug: new.service_account_slug,
            workspace_id: new.workspace_id,
            scopes: new.scopes,
            created_at: new.created_at,
            expires_at: new.expires_at,
            revoked_at: None,
            last_used_at: None,
            created_by: new.created_by,
            revoked_by: None,
            revoke_reason: None,
            rotated_at: None,
            replaced_by: None,
            revoke_scheduled: false,
        };
        self.push_event(token.kind.created_event(), &token, audit, None);
        self.rows.push(Row {
            token: token.clone(),
            hash: new.secret_hash,
            revoked_use_recorded_at: None,
        });
        token
    }

    /// Records `call`; the next queued failure, if any.
    fn enter(&mut self, call: RepositoryCall) -> Result<(), StoreError> {
        self.calls.push(call);
        self.failures.pop_front().map_or(Ok(()), Err)
    }

    fn push_event(
        &mut self,
        event_type: AuditEventType,
        token: &Token,
        audit: &AuditContext,
        reason: Option<String>,
    ) {
        self.push_event_replaced(event_type, token, audit, reason, None);
    }

    fn push_event_replaced(
        &mut self,
        event_type: AuditEventType,
        token: &Token,
        audit: &AuditContext,
        reason: Option<String>,
        replaced_by: Option<Uuid>,
    ) {
        self.last_event_id += 1;
        self.events.push(AuditEvent {
            id: self.last_event_id,
            event_type,
            org_id: token.org_id.clone(),
            actor: audit.actor.clone(),
            token_id: token.token_id,
            token_numeric_id: token.id,
            token_kind: Some(token.kind),
            request_id: audit.request_id.clone(),
            occurred_at: audit.now,
            reason,
            replaced_by,
        });
    }

    /// Whether an active token of `new`'s organisation already holds its
    /// name, or its UUID or hash is taken anywhere (the unique indexes).
    fn clashes(&self, new: &NewToken) -> bool {
        self.rows.iter().any(|row| {
            let token = &row.token;
            if token.token_id == new.token_id || row.hash == new.secret_hash {
                return true;
            }
            let active_same_name = token.revoked_at.is_none()
                && token.org_id == new.org_id
                && token.kind == new.kind
                && token.name == new.name;
            active_same_name
                && match new.kind {
                    TokenKind::ServiceAccount => {
                        token.service_account_slug == new.service_account_slug
                    }
                    TokenKind::WorkspaceApiKey => token.workspace_id == new.workspace_id,
                    TokenKind::Scrape | TokenKind::PersonalAccess => false,
                }
        })
    }
}

/// Whether `token` is one of `org_id`'s tokens that `visibility` shows.
fn visible(token: &Token, org_id: &str, visibility: &Visibility) -> bool {
    token.org_id == org_id
        && match visibility {
            Visibility::WholeOrg => true,
            Visibility::OwnPersonalTokens { owner_user_id } => {
                token.kind == TokenKind::PersonalAccess && &token.owner_user_id == owner_user_id
            }
        }
}

/// Whether `token` is the one `target` names within `org_id`, revoked or not.
fn named_by(token: &Token, org_id: &str, target: &RevokeTarget) -> bool {
    if token.org_id != org_id || token.kind != target.kind() {
        return false;
    }
    match target {
        RevokeTarget::Scrape { id } => token.id == *id,
        RevokeTarget::PersonalAccess {
            token_id,
            owner_user_id,
        } => {
            token.token_id == *token_id
                && owner_user_id
                    .as_ref()
                    .is_none_or(|owner| &token.owner_user_id == owner)
        }
        RevokeTarget::ServiceAccount {
            service_account_slug,
            token_slug,
        } => {
            token.service_account_slug.as_ref() == Some(service_account_slug)
                && &token.name == token_slug
        }
        RevokeTarget::WorkspaceApiKey {
            workspace_id,
            key_name,
        } => token.workspace_id.as_ref() == Some(workspace_id) && &token.name == key_name,
    }
}

fn take<T>(items: impl Iterator<Item = T>, limit: u64) -> Vec<T> {
    items
        .take(usize::try_from(limit).unwrap_or(usize::MAX))
        .collect()
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// Token and audit storage in memory. Clones share the same data, so a
/// test can keep one while the core (or the last-use writer) holds another.
#[derive(Clone, Debug)]
pub struct MemoryRepository {
    state: Arc<Mutex<State>>,
    page_token_key: PageTokenKey,
}

impl Default for MemoryRepository {
    fn default() -> Self {
        MemoryRepository::new()
    }
}

impl MemoryRepository {
    /// An empty repository with a fixed page-token key.
    pub fn new() -> MemoryRepository {
        MemoryRepository {
            state: Arc::default(),
            page_token_key: PageTokenKey::from_bytes([0x5a; PageTokenKey::LEN]),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The page-token key, as `SeaStore::load_page_token_key` reads it from
    /// the database.
    pub fn load_page_token_key(&self) -> PageTokenKey {
        self.page_token_key.clone()
    }

    /// Makes the next call (of any method) fail with `error` before doing
    /// anything; several queued errors fail that many calls in turn.
    pub fn fail_next_with(&self, error: StoreError) {
        self.lock().failures.push_back(error);
    }

    /// The methods called so far, in order.
    pub fn calls(&self) -> Vec<RepositoryCall> {
        self.lock().calls.clone()
    }

    /// Forgets the calls recorded so far (after a test's set-up).
    pub fn clear_calls(&self) {
        self.lock().calls.clear();
    }

    /// Every token, by id, whatever its organisation or state.
    pub fn tokens(&self) -> Vec<Token> {
        self.lock()
            .rows
            .iter()
            .map(|row| row.token.clone())
            .collect()
    }

    /// Every audit event, by id, whatever its organisation.
    pub fn audit_events(&self) -> Vec<AuditEvent> {
        self.lock().events.clone()
    }
}

impl TokenRepository for MemoryRepository {
    async fn create_token(&self, new: NewToken, audit: &AuditContext) -> Result<Token, StoreError> {
        let mut state = self.lock();
        state.enter(RepositoryCall::CreateToken)?;
        if state.clashes(&new) {
            return Err(StoreError::Conflict);
        }
        let token = state.insert_new(new, audit);
        Ok(token)
    }

    async fn find_token(
        &self,
        org_id: &str,
        id: i64,
        visibility: &Visibility,
    ) -> Result<Option<Token>, StoreError> {
        let mut state = self.lock();
        state.enter(RepositoryCall::FindToken)?;
        Ok(state
            .rows
            .iter()
            .map(|row| &row.token)
            .find(|token| token.id == id && visible(token, org_id, visibility))
            .cloned())
    }

    async fn list_tokens(
        &self,
        org_id: &str,
        visibility: &Visibility,
        filter: &TokenFilter,
        after_id: Option<i64>,
        limit: u64,
    ) -> Result<Vec<Token>, StoreError> {
        let mut state = self.lock();
        state.enter(RepositoryCall::ListTokens)?;
        let matching = state
            .rows
            .iter()
            .map(|row| &row.token)
            .filter(|token| after_id.is_none_or(|after| token.id > after))
            .filter(|token| visible(token, org_id, visibility) && filter.matches(token))
            .cloned();
        Ok(take(matching, limit))
    }

    async fn revoke_token(
        &self,
        org_id: &str,
        target: &RevokeTarget,
        revocation: &Revocation,
        audit: &AuditContext,
    ) -> Result<RevokeOutcome, StoreError> {
        let mut state = self.lock();
        state.enter(RepositoryCall::RevokeToken)?;
        let active = state
            .rows
            .iter_mut()
            .map(|row| &mut row.token)
            .find(|token| token.revoked_at.is_none() && named_by(token, org_id, target));
        let mut revoked: Vec<Token> = Vec::new();
        if let Some(token) = active {
            token.revoked_at = Some(audit.now);
            token.revoked_by = Some(revocation.revoked_by.clone());
            token.revoke_reason = revocation.reason.clone();
            revoked.push(token.clone());
        } else {
            // As the store: a revocation scheduled by a rotation is brought
            // forward to now (every such token of that name).
            for row in state.rows.iter_mut() {
                let token = &mut row.token;
                if token.revoke_scheduled
                    && token.revoked_at.is_some_and(|at| at > audit.now)
                    && named_by(token, org_id, target)
                {
                    token.revoke_scheduled = false;
                    token.revoked_at = Some(audit.now);
                    token.revoked_by = Some(revocation.revoked_by.clone());
                    token.revoke_reason = revocation.reason.clone();
                    revoked.push(token.clone());
                }
            }
        }
        for token in &revoked {
            state.push_event(
                token.kind.revoked_event(),
                token,
                audit,
                revocation.reason.clone(),
            );
        }
        if let Some(token) = revoked.into_iter().max_by_key(|token| token.id) {
            return Ok(RevokeOutcome::Revoked(token));
        }
        // As the store: the most recently revoked token of that name (names
        // can be reused after a revoke) answers idempotently.
        let latest = state
            .rows
            .iter()
            .map(|row| &row.token)
            .filter(|token| named_by(token, org_id, target))
            .max_by_key(|token| (token.revoked_at, token.id))
            .cloned();
        Ok(latest.map_or(RevokeOutcome::NotFound, RevokeOutcome::AlreadyRevoked))
    }

    async fn find_by_hash(&self, hash: &TokenHash) -> Result<Option<Token>, StoreError> {
        let mut state = self.lock();
        state.enter(RepositoryCall::FindByHash)?;
        Ok(state
            .rows
            .iter()
            .find(|row| &row.hash == hash)
            .map(|row| row.token.clone()))
    }

    async fn touch_last_used(
        &self,
        id: i64,
        now: DateTime<Utc>,
        stale_before: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut state = self.lock();
        state.enter(RepositoryCall::TouchLastUsed)?;
        if let Some(row) = state.rows.iter_mut().find(|row| row.token.id == id)
            && row
                .token
                .last_used_at
                .is_none_or(|last| last < stale_before)
        {
            row.token.last_used_at = Some(now);
        }
        Ok(())
    }

    async fn list_audit_events(
        &self,
        org_id: &str,
        event_type: Option<AuditEventType>,
        after_id: Option<i64>,
        limit: u64,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        let mut state = self.lock();
        state.enter(RepositoryCall::ListAuditEvents)?;
        let matching = state
            .events
            .iter()
            .filter(|event| event.org_id == org_id)
            .filter(|event| event_type.is_none_or(|wanted| event.event_type == wanted))
            .filter(|event| after_id.is_none_or(|after| event.id > after))
            .cloned();
        Ok(take(matching, limit))
    }

    async fn count_tokens(
        &self,
        org_id: &str,
        now: DateTime<Utc>,
    ) -> Result<TokenCounts, StoreError> {
        let mut state = self.lock();
        state.enter(RepositoryCall::CountTokens)?;
        let mut counts = TokenCounts::default();
        for kind in TokenKind::ALL {
            let of_kind: Vec<&Token> = state
                .rows
                .iter()
                .map(|row| &row.token)
                .filter(|token| token.org_id == org_id && token.kind == kind)
                .collect();
            for token_state in TokenState::ALL {
                let n = of_kind
                    .iter()
                    .filter(|token| token.state_at(now) == token_state)
                    .count();
                counts.counts.push((kind, token_state, count(n)));
            }
            let expiring_soon = of_kind
                .iter()
                .filter(|token| {
                    !token.is_revoked_at(now)
                        && token
                            .expires_at
                            .is_some_and(|at| at > now && at <= now + EXPIRING_SOON)
                })
                .count();
            counts.expiring_soon.push((kind, count(expiring_soon)));
        }
        Ok(counts)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.lock().enter(RepositoryCall::Ping)
    }

    async fn rotate_token(
        &self,
        rotation: &Rotation,
        new: NewToken,
        audit: &AuditContext,
    ) -> Result<RotateOutcome, StoreError> {
        let mut state = self.lock();
        state.enter(RepositoryCall::RotateToken)?;
        let Some(index) = state.rows.iter().position(|row| {
            row.token.id == rotation.id
                && row.token.org_id == rotation.org_id
                && row.token.is_rotatable_at(rotation.rotated_at)
        }) else {
            return Ok(RotateOutcome::NotRotatable);
        };
        // As the store's transaction: the old row frees its name first, and
        // a clash of the new row undoes everything.
        let before = state.rows[index].token.clone();
        {
            let old = &mut state.rows[index].token;
            old.rotated_at = Some(rotation.rotated_at);
            old.replaced_by = Some(new.token_id);
            old.revoked_at = Some(rotation.revoke_at);
            old.revoked_by = Some(rotation.revoked_by.clone());
            old.revoke_reason = rotation.reason.clone();
            old.revoke_scheduled = rotation.revoke_at > rotation.rotated_at;
        }
        if state.clashes(&new) {
            state.rows[index].token = before;
            return Err(StoreError::Conflict);
        }
        let previous = state.rows[index].token.clone();
        state.push_event_replaced(
            AuditEventType::TokenRotated,
            &previous,
            audit,
            rotation.reason.clone(),
            Some(new.token_id),
        );
        let token = state.insert_new(new, audit);
        Ok(RotateOutcome::Rotated {
            token: Box::new(token),
            previous: Box::new(previous),
        })
    }

    async fn token_policy(&self, org_id: &str) -> Result<TokenPolicy, StoreError> {
        let mut state = self.lock();
        state.enter(RepositoryCall::TokenPolicy)?;
        Ok(state.policies.get(org_id).cloned().unwrap_or_default())
    }

    async fn replace_token_policy(
        &self,
        org_id: &str,
        policy: &TokenPolicy,
        audit: &AuditContext,
    ) -> Result<TokenPolicy, StoreError> {
        let mut state = self.lock();
        state.enter(RepositoryCall::ReplaceTokenPolicy)?;
        state.policies.insert(org_id.to_owned(), policy.clone());
        state.last_event_id += 1;
        let id = state.last_event_id;
        state.events.push(AuditEvent {
            id,
            event_type: AuditEventType::TokenPolicyUpdated,
            org_id: org_id.to_owned(),
            actor: audit.actor.clone(),
            token_id: Uuid::nil(),
            token_numeric_id: 0,
            token_kind: None,
            request_id: audit.request_id.clone(),
            occurred_at: audit.now,
            reason: None,
            replaced_by: None,
        });
        Ok(policy.clone())
    }

    async fn revoke_by_hash(
        &self,
        hash: &TokenHash,
        revocation: &Revocation,
        audit: &AuditContext,
    ) -> Result<RevokeOutcome, StoreError> {
        let mut state = self.lock();
        state.enter(RepositoryCall::RevokeByHash)?;
        let Some(row) = state.rows.iter_mut().find(|row| &row.hash == hash) else {
            return Ok(RevokeOutcome::NotFound);
        };
        if row.token.is_revoked_at(audit.now) {
            return Ok(RevokeOutcome::AlreadyRevoked(row.token.clone()));
        }
        mark_revoked(&mut row.token, revocation, audit);
        let token = row.token.clone();
        state.push_event(
            token.kind.revoked_event(),
            &token,
            audit,
            revocation.reason.clone(),
        );
        Ok(RevokeOutcome::Revoked(token))
    }

    async fn revoke_active(
        &self,
        org_id: &str,
        selected: &[Token],
        revocation: &Revocation,
        audit: &AuditContext,
    ) -> Result<Vec<Token>, StoreError> {
        let mut state = self.lock();
        state.enter(RepositoryCall::RevokeActive)?;
        let mut revoked = Vec::new();
        for row in &mut state.rows {
            let token = &mut row.token;
            // As the store: a compare-and-set on the `revoked_at` read.
            let unchanged = selected
                .iter()
                .any(|seen| seen.id == token.id && seen.revoked_at == token.revoked_at);
            if token.org_id == org_id
                && unchanged
                && !token.is_revoked_at(audit.now)
                && token.expires_at.is_none_or(|at| at > audit.now)
            {
                mark_revoked(token, revocation, audit);
                revoked.push(token.clone());
            }
        }
        for token in &revoked {
            state.push_event(
                token.kind.revoked_event(),
                token,
                audit,
                revocation.reason.clone(),
            );
        }
        Ok(revoked)
    }

    async fn record_revoked_use(
        &self,
        id: i64,
        audit: &AuditContext,
        recorded_before: DateTime<Utc>,
    ) -> Result<Option<Token>, StoreError> {
        let mut state = self.lock();
        state.enter(RepositoryCall::RecordRevokedUse)?;
        let Some(row) = state.rows.iter_mut().find(|row| row.token.id == id) else {
            return Ok(None);
        };
        if row
            .revoked_use_recorded_at
            .is_some_and(|at| at >= recorded_before)
        {
            return Ok(None);
        }
        row.revoked_use_recorded_at = Some(audit.now);
        let token = row.token.clone();
        state.push_event(AuditEventType::RevokedTokenUsed, &token, audit, None);
        Ok(Some(token))
    }
}
