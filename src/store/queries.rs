//! The queries behind [`TokenRepository`]. Every organisation-scoped statement
//! carries `org_id = ?` in its WHERE clause, so another organisation's rows
//! are never read, let alone changed.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Func};
use sea_orm::{
    ActiveModelTrait, ActiveValue, ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction,
    DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect, SqliteTransactionMode,
    TransactionOptions, TransactionTrait,
};
use uuid::Uuid;

use crate::domain::audit::{AuditContext, AuditEvent, AuditEventType};
use crate::domain::kind::TokenKind;
use crate::domain::policy::TokenPolicy;
use crate::domain::repository::{StoreError, TokenRepository};
use crate::domain::rotation::{RotateOutcome, Rotation};
use crate::domain::secret::TokenHash;
use crate::domain::token::{
    EXPIRING_SOON, NewToken, Revocation, RevokeOutcome, RevokeTarget, StateFilter, Token,
    TokenCounts, TokenFilter, TokenState, Visibility,
};
use crate::store::entity::{audit_event, token};
use crate::store::rotation::{not_revoked_condition, revoked_condition};
use crate::store::{SeaStore, classify};

pub(crate) fn corrupt(what: &str) -> StoreError {
    StoreError::Other(format!("corrupt row: {what}").into())
}

pub(crate) fn to_token(row: token::Model) -> Result<Token, StoreError> {
    Ok(Token {
        id: row.id,
        token_id: Uuid::try_parse(&row.token_id).map_err(|_| corrupt("tokens.token_id"))?,
        kind: TokenKind::from_db_str(&row.kind).ok_or_else(|| corrupt("tokens.kind"))?,
        org_id: row.org_id,
        name: row.name,
        owner_user_id: row.owner_user_id,
        service_account_slug: row.service_account_slug,
        workspace_id: row.workspace_id,
        scopes: row.scopes.split_whitespace().map(str::to_owned).collect(),
        created_at: row.created_at,
        expires_at: row.expires_at,
        revoked_at: row.revoked_at,
        last_used_at: row.last_used_at,
        created_by: row.created_by,
        revoked_by: row.revoked_by,
        revoke_reason: row.revoke_reason,
        rotated_at: row.rotated_at,
        replaced_by: row
            .replaced_by
            .map(|id| Uuid::try_parse(&id).map_err(|_| corrupt("tokens.replaced_by")))
            .transpose()?,
        revoke_scheduled: row.revoke_scheduled,
    })
}

fn to_audit_event(row: audit_event::Model) -> Result<AuditEvent, StoreError> {
    Ok(AuditEvent {
        id: row.id,
        event_type: AuditEventType::parse(&row.event_type)
            .ok_or_else(|| corrupt("audit_events.event_type"))?,
        org_id: row.org_id,
        actor: row.actor,
        token_id: Uuid::try_parse(&row.token_id).map_err(|_| corrupt("audit_events.token_id"))?,
        token_numeric_id: row.token_numeric_id,
        // Empty for an event about no token (`token_policy_updated`).
        token_kind: if row.token_kind.is_empty() {
            None
        } else {
            Some(
                TokenKind::from_db_str(&row.token_kind)
                    .ok_or_else(|| corrupt("audit_events.token_kind"))?,
            )
        },
        request_id: row.request_id,
        occurred_at: row.occurred_at,
        reason: row.reason,
        replaced_by: row
            .replaced_by
            .map(|id| Uuid::try_parse(&id).map_err(|_| corrupt("audit_events.replaced_by")))
            .transpose()?,
    })
}

/// The event row for `event_type` on `token`.
/// The row of a token just made: never used, not revoked.
pub(crate) fn new_token_row(new: NewToken) -> token::ActiveModel {
    token::ActiveModel {
        id: ActiveValue::NotSet,
        token_id: ActiveValue::Set(new.token_id.to_string()),
        kind: ActiveValue::Set(new.kind.as_str().to_owned()),
        org_id: ActiveValue::Set(new.org_id),
        name: ActiveValue::Set(new.name),
        owner_user_id: ActiveValue::Set(new.owner_user_id),
        service_account_slug: ActiveValue::Set(new.service_account_slug),
        workspace_id: ActiveValue::Set(new.workspace_id),
        scopes: ActiveValue::Set(new.scopes.join(" ")),
        secret_hash: ActiveValue::Set(new.secret_hash.as_bytes().to_vec()),
        created_at: ActiveValue::Set(new.created_at),
        expires_at: ActiveValue::Set(new.expires_at),
        revoked_at: ActiveValue::Set(None),
        last_used_at: ActiveValue::Set(None),
        created_by: ActiveValue::Set(new.created_by),
        revoked_by: ActiveValue::Set(None),
        revoke_reason: ActiveValue::Set(None),
        rotated_at: ActiveValue::Set(None),
        replaced_by: ActiveValue::Set(None),
        revoke_scheduled: ActiveValue::Set(false),
        revoked_use_recorded_at: ActiveValue::Set(None),
    }
}

pub(crate) fn audit_row(
    event_type: AuditEventType,
    token: &Token,
    audit: &AuditContext,
    reason: Option<String>,
) -> audit_event::ActiveModel {
    audit_event::ActiveModel {
        id: ActiveValue::NotSet,
        event_type: ActiveValue::Set(event_type.as_str().to_owned()),
        org_id: ActiveValue::Set(token.org_id.clone()),
        actor: ActiveValue::Set(audit.actor.clone()),
        token_id: ActiveValue::Set(token.token_id.to_string()),
        token_numeric_id: ActiveValue::Set(token.id),
        token_kind: ActiveValue::Set(token.kind.as_str().to_owned()),
        request_id: ActiveValue::Set(audit.request_id.clone()),
        occurred_at: ActiveValue::Set(audit.now),
        reason: ActiveValue::Set(reason),
        replaced_by: ActiveValue::Set(None),
    }
}

// Point lookups by a unique key use `.all()` rather than `.one()`: `.one()`
// adds `LIMIT ?` with a bound 1, and SQLite re-prepares a cached statement
// whose LIMIT is rebound, which cost ~30 % of AuthenticateToken's
// instructions (docs/benchmarks.md). A unique key returns at most one row.

/// The condition naming `target` within `org_id` (revoked or not).
pub(crate) fn target_condition(org_id: &str, target: &RevokeTarget) -> Condition {
    let base = Condition::all()
        .add(token::Column::OrgId.eq(org_id))
        .add(token::Column::Kind.eq(target.kind().as_str()));
    match target {
        RevokeTarget::Scrape { id } => base.add(token::Column::Id.eq(*id)),
        RevokeTarget::PersonalAccess {
            token_id,
            owner_user_id,
        } => {
            let condition = base.add(token::Column::TokenId.eq(token_id.to_string()));
            match owner_user_id {
                Some(owner) => condition.add(token::Column::OwnerUserId.eq(owner.as_str())),
                None => condition,
            }
        }
        RevokeTarget::ServiceAccount {
            service_account_slug,
            token_slug,
        } => base
            .add(token::Column::ServiceAccountSlug.eq(service_account_slug.as_str()))
            .add(token::Column::Name.eq(token_slug.as_str())),
        RevokeTarget::WorkspaceApiKey {
            workspace_id,
            key_name,
        } => base
            .add(token::Column::WorkspaceId.eq(workspace_id.as_str()))
            .add(token::Column::Name.eq(key_name.as_str())),
    }
}

fn visibility_condition(org_id: &str, visibility: &Visibility) -> Condition {
    let base = Condition::all().add(token::Column::OrgId.eq(org_id));
    match visibility {
        Visibility::WholeOrg => base,
        Visibility::OwnPersonalTokens { owner_user_id } => base
            .add(token::Column::Kind.eq(TokenKind::PersonalAccess.as_str()))
            .add(token::Column::OwnerUserId.eq(owner_user_id.as_str())),
    }
}

/// The rows of the states `state` admits at `now` (revoked wins over
/// expired, as in `Token::state_at`).
fn state_condition(state: StateFilter, now: DateTime<Utc>) -> Condition {
    let not_revoked = || not_revoked_condition(now);
    match state {
        StateFilter::NotRevoked => not_revoked(),
        StateFilter::Active => not_revoked().add(
            Condition::any()
                .add(token::Column::ExpiresAt.is_null())
                .add(token::Column::ExpiresAt.gt(now)),
        ),
        StateFilter::Expired => not_revoked().add(token::Column::ExpiresAt.lte(now)),
        StateFilter::Revoked => revoked_condition(now),
        StateFilter::Any => Condition::all(),
    }
}

/// `name` starts with `prefix`, exactly: `SUBSTR(name, 1, n) = prefix`
/// with both values bound. Not `LIKE`: SQLite's `LIKE` ignores ASCII case
/// and PostgreSQL's does not, and `%`, `_` and the escape character would
/// need escaping; not a range comparison either, as PostgreSQL orders text by
/// the database's collation. `SUBSTR` counts characters on both backends,
/// and `=` compares exactly, so both answer as the in-memory `starts_with`.
/// The organisation's rows are narrowed by the `org_id` index first.
fn name_prefix_condition(prefix: &str) -> Condition {
    // `integer`, not `bigint`: PostgreSQL has no SUBSTR(text, int, bigint).
    let chars = i32::try_from(prefix.chars().count()).unwrap_or(i32::MAX);
    let head = Func::cust(Alias::new("SUBSTR"))
        .arg(Expr::col(token::Column::Name))
        .arg(1)
        .arg(chars);
    Condition::all().add(ExprTrait::eq(Expr::expr(head), prefix))
}

/// What a revoke that matched no active token answers: the most recently
/// revoked token of that name (names can be reused after a revoke),
/// idempotently, or `NotFound`.
async fn latest_of_target(
    db: &impl ConnectionTrait,
    org_id: &str,
    target: &RevokeTarget,
) -> Result<RevokeOutcome, StoreError> {
    let existing = token::Entity::find()
        .filter(target_condition(org_id, target))
        .order_by_desc(token::Column::RevokedAt)
        .order_by_desc(token::Column::Id)
        .one(db)
        .await
        .map_err(classify)?;
    match existing {
        Some(row) => Ok(RevokeOutcome::AlreadyRevoked(to_token(row)?)),
        None => Ok(RevokeOutcome::NotFound),
    }
}

impl SeaStore {
    /// A write transaction. On SQLite it is `BEGIN IMMEDIATE`: it takes the
    /// write lock up front, so concurrent writers queue on the busy timeout
    /// instead of failing with `database is locked` when a read lock cannot be
    /// upgraded.
    pub(crate) async fn begin_write(&self) -> Result<DatabaseTransaction, StoreError> {
        self.connection()
            .begin_with_options(TransactionOptions {
                sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                ..TransactionOptions::default()
            })
            .await
            .map_err(classify)
    }
}

impl TokenRepository for SeaStore {
    async fn create_token(&self, new: NewToken, audit: &AuditContext) -> Result<Token, StoreError> {
        if self.backend() == DbBackend::Postgres {
            return self.create_in_one_statement(new, audit).await;
        }
        let txn = self.begin_write().await?;
        let row = new_token_row(new).insert(&txn).await.map_err(classify)?;
        let token = to_token(row)?;
        audit_row(token.kind.created_event(), &token, audit, None)
            .insert(&txn)
            .await
            .map_err(classify)?;
        txn.commit().await.map_err(classify)?;
        Ok(token)
    }

    async fn find_token(
        &self,
        org_id: &str,
        id: i64,
        visibility: &Visibility,
    ) -> Result<Option<Token>, StoreError> {
        token::Entity::find()
            .filter(visibility_condition(org_id, visibility))
            .filter(token::Column::Id.eq(id))
            .all(self.connection())
            .await
            .map_err(classify)?
            .into_iter()
            .next()
            .map(to_token)
            .transpose()
    }

    async fn list_tokens(
        &self,
        org_id: &str,
        visibility: &Visibility,
        filter: &TokenFilter,
        after_id: Option<i64>,
        limit: u64,
    ) -> Result<Vec<Token>, StoreError> {
        let mut query = token::Entity::find().filter(visibility_condition(org_id, visibility));
        if let Some(kind) = filter.kind {
            query = query.filter(token::Column::Kind.eq(kind.as_str()));
        }
        if let Some(slug) = &filter.service_account_slug {
            query = query.filter(token::Column::ServiceAccountSlug.eq(slug.as_str()));
        }
        if let Some(workspace) = &filter.workspace_id {
            query = query.filter(token::Column::WorkspaceId.eq(workspace.as_str()));
        }
        query = query.filter(state_condition(filter.state, filter.at));
        if let Some(owner) = &filter.owner_user_id {
            query = query.filter(token::Column::OwnerUserId.eq(owner.as_str()));
        }
        if let Some(prefix) = &filter.name_prefix {
            query = query.filter(name_prefix_condition(prefix));
        }
        if let Some(before) = filter.expire_before {
            // NULL (never expires) compares as unknown: not listed.
            query = query.filter(token::Column::ExpiresAt.lt(before));
        }
        if let Some(before) = filter.last_used_before {
            query = query.filter(
                Condition::any()
                    .add(token::Column::LastUsedAt.is_null())
                    .add(token::Column::LastUsedAt.lt(before)),
            );
        }
        if let Some(after) = after_id {
            query = query.filter(token::Column::Id.gt(after));
        }
        query
            .order_by_asc(token::Column::Id)
            .limit(limit)
            .all(self.connection())
            .await
            .map_err(classify)?
            .into_iter()
            .map(to_token)
            .collect()
    }

    async fn revoke_token(
        &self,
        org_id: &str,
        target: &RevokeTarget,
        revocation: &Revocation,
        audit: &AuditContext,
    ) -> Result<RevokeOutcome, StoreError> {
        if self.backend() == DbBackend::Postgres
            && let Some(token) = self
                .revoke_in_one_statement(org_id, target, revocation, audit)
                .await?
        {
            return Ok(RevokeOutcome::Revoked(token));
        }
        // On PostgreSQL only when no active token matched (already revoked,
        // a rotation's scheduled revocation to bring forward, or none): the
        // transaction below decides, and sees a revoke that a concurrent
        // caller committed first.
        let txn = self.begin_write().await?;
        // `revoked_at IS NULL` in the UPDATE itself makes concurrent revokes
        // race safely: PostgreSQL re-checks it after the first writer commits
        // and SQLite serialises writers, so exactly one caller sees a row and
        // writes the audit event.
        let updated = token::Entity::update_many()
            .col_expr(token::Column::RevokedAt, Expr::value(audit.now))
            .col_expr(
                token::Column::RevokedBy,
                Expr::value(revocation.revoked_by.clone()),
            )
            .col_expr(
                token::Column::RevokeReason,
                Expr::value(revocation.reason.clone()),
            )
            .filter(target_condition(org_id, target))
            .filter(token::Column::RevokedAt.is_null())
            .exec_with_returning(&txn)
            .await
            .map_err(classify)?;
        let updated = if updated.is_empty() {
            // A revocation a rotation scheduled (`revoked_at` still in the
            // future) is brought forward to now, with its event.
            self.revoke_scheduled(&txn, target_condition(org_id, target), revocation, audit)
                .await?
        } else {
            updated
        };
        let mut newest = None;
        for row in updated {
            let token = to_token(row)?;
            audit_row(
                token.kind.revoked_event(),
                &token,
                audit,
                revocation.reason.clone(),
            )
            .insert(&txn)
            .await
            .map_err(classify)?;
            if newest.as_ref().is_none_or(|t: &Token| t.id < token.id) {
                newest = Some(token);
            }
        }
        if let Some(token) = newest {
            txn.commit().await.map_err(classify)?;
            return Ok(RevokeOutcome::Revoked(token));
        }
        let outcome = latest_of_target(&txn, org_id, target).await?;
        txn.commit().await.map_err(classify)?;
        Ok(outcome)
    }

    async fn find_by_hash(&self, hash: &TokenHash) -> Result<Option<Token>, StoreError> {
        // Coalesced with concurrent lookups, never cached: lookup_batch.rs.
        self.lookups.find(hash).await
    }

    async fn touch_last_used(
        &self,
        id: i64,
        now: DateTime<Utc>,
        stale_before: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        token::Entity::update_many()
            .col_expr(token::Column::LastUsedAt, Expr::value(now))
            .filter(token::Column::Id.eq(id))
            .filter(
                Condition::any()
                    .add(token::Column::LastUsedAt.is_null())
                    .add(token::Column::LastUsedAt.lt(stale_before)),
            )
            .exec(self.connection())
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn list_audit_events(
        &self,
        org_id: &str,
        event_type: Option<AuditEventType>,
        after_id: Option<i64>,
        limit: u64,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        let mut query = audit_event::Entity::find().filter(audit_event::Column::OrgId.eq(org_id));
        if let Some(event_type) = event_type {
            query = query.filter(audit_event::Column::EventType.eq(event_type.as_str()));
        }
        if let Some(after) = after_id {
            query = query.filter(audit_event::Column::Id.gt(after));
        }
        query
            .order_by_asc(audit_event::Column::Id)
            .limit(limit)
            .all(self.connection())
            .await
            .map_err(classify)?
            .into_iter()
            .map(to_audit_event)
            .collect()
    }

    async fn count_tokens(
        &self,
        org_id: &str,
        now: DateTime<Utc>,
    ) -> Result<TokenCounts, StoreError> {
        // One statement, so every figure is read from the same snapshot (a
        // token revoked or created meanwhile is counted once, in one state).
        let count_when = |condition: Condition| Func::count(Expr::case(condition, 1));
        let live = || not_revoked_condition(now);
        let rows: Vec<(String, i64, i64, i64, i64)> = token::Entity::find()
            .select_only()
            .column(token::Column::Kind)
            .expr_as(
                count_when(
                    live().add(
                        Condition::any()
                            .add(token::Column::ExpiresAt.is_null())
                            .add(token::Column::ExpiresAt.gt(now)),
                    ),
                ),
                "active",
            )
            .expr_as(
                count_when(live().add(token::Column::ExpiresAt.lte(now))),
                "expired",
            )
            .expr_as(count_when(revoked_condition(now)), "revoked")
            .expr_as(
                count_when(
                    live()
                        .add(token::Column::ExpiresAt.gt(now))
                        .add(token::Column::ExpiresAt.lte(now + EXPIRING_SOON)),
                ),
                "expiring_soon",
            )
            .filter(token::Column::OrgId.eq(org_id))
            .group_by(token::Column::Kind)
            .into_tuple()
            .all(self.connection())
            .await
            .map_err(classify)?;
        let mut by_kind = std::collections::HashMap::with_capacity(rows.len());
        for (kind, active, expired, revoked, expiring_soon) in rows {
            let kind = TokenKind::from_db_str(&kind).ok_or_else(|| corrupt("tokens.kind"))?;
            let count = |n: i64| u64::try_from(n).unwrap_or(0);
            by_kind.insert(kind, [active, expired, revoked, expiring_soon].map(count));
        }
        let mut counts = TokenCounts::default();
        for kind in TokenKind::ALL {
            let [active, expired, revoked, expiring_soon] =
                by_kind.get(&kind).copied().unwrap_or_default();
            counts.counts.push((kind, TokenState::Active, active));
            counts.counts.push((kind, TokenState::Expired, expired));
            counts.counts.push((kind, TokenState::Revoked, revoked));
            counts.expiring_soon.push((kind, expiring_soon));
        }
        Ok(counts)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.ping_database().await
    }

    async fn rotate_token(
        &self,
        rotation: &Rotation,
        new: NewToken,
        audit: &AuditContext,
    ) -> Result<RotateOutcome, StoreError> {
        self.rotate(rotation, new, audit).await
    }

    async fn token_policy(&self, org_id: &str) -> Result<TokenPolicy, StoreError> {
        self.read_token_policy(org_id).await
    }

    async fn replace_token_policy(
        &self,
        org_id: &str,
        policy: &TokenPolicy,
        audit: &AuditContext,
    ) -> Result<TokenPolicy, StoreError> {
        self.write_token_policy(org_id, policy, audit).await
    }

    async fn revoke_by_hash(
        &self,
        hash: &TokenHash,
        revocation: &Revocation,
        audit: &AuditContext,
    ) -> Result<RevokeOutcome, StoreError> {
        self.revoke_secret_hash(hash, revocation, audit).await
    }

    async fn revoke_active(
        &self,
        org_id: &str,
        selected: &[Token],
        revocation: &Revocation,
        audit: &AuditContext,
    ) -> Result<Vec<Token>, StoreError> {
        self.revoke_unchanged(org_id, selected, revocation, audit)
            .await
    }

    async fn record_revoked_use(
        &self,
        id: i64,
        audit: &AuditContext,
        recorded_before: DateTime<Utc>,
    ) -> Result<Option<Token>, StoreError> {
        self.write_revoked_use(id, audit, recorded_before).await
    }
}
