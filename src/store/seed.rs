//! Bulk seeding for load tests: many tokens in few statements, through the
//! same entity the queries use, so a load tool needs no access to the tables.
//!
//! No RPC reaches this. It writes no audit events (the tokens did not come
//! through the API, so there is no caller to record), and it may give tokens
//! a history (used, revoked) that the API would only reach over time.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Query;
use sea_orm::sqlx::sqlite::SqliteSynchronous;
use sea_orm::{
    ActiveValue, ConnectOptions, ConnectionTrait, Database, DbBackend, EntityTrait, QueryTrait,
    TransactionTrait,
};

use crate::domain::repository::StoreError;
use crate::domain::token::{NewToken, Revocation};
use crate::store::entity::token;
use crate::store::queries::new_token_row;
use crate::store::{SeaStore, classify, create_private_sqlite_file, sqlite_options};

/// Rows per `INSERT`: 17 bound values each, well under SQLite's 32 766 and
/// PostgreSQL's 65 535 bind parameters per statement.
const ROWS_PER_STATEMENT: usize = 1_000;

/// Rows per transaction: large, so that each index page is written a few
/// times per load rather than once per statement.
const ROWS_PER_TRANSACTION: usize = 100_000;

/// How long the seeding connection waits for SQLite's write lock.
const SEED_BUSY_TIMEOUT: Duration = Duration::from_secs(60);

/// The history seeded tokens appear to have.
#[derive(Clone, Debug, Default)]
pub struct SeedHistory {
    /// Last successful authentication (`None`: never used).
    pub last_used_at: Option<DateTime<Utc>>,
    /// Set: the tokens are seeded as revoked.
    pub revoked: Option<SeededRevocation>,
}

/// A revocation in the seeded history.
#[derive(Clone, Debug)]
pub struct SeededRevocation {
    /// When.
    pub revoked_at: DateTime<Utc>,
    /// By whom and why.
    pub revocation: Revocation,
}

impl SeaStore {
    /// One connection tuned for a bulk load: no wait for the disk at commit
    /// and, on SQLite, a 1 GiB page cache. Only the load is meant to use it;
    /// a server's own pool (`connect_lazy`) is unaffected.
    pub async fn connect_for_seeding(url: &str) -> Result<SeaStore, StoreError> {
        create_private_sqlite_file(url)?;
        let mut options = ConnectOptions::new(url.to_owned());
        options
            .max_connections(1)
            .min_connections(1)
            // Statements carry hashes: never log them.
            .sqlx_logging(false)
            .set_application_name("tokend-seed");
        options.map_sqlx_sqlite_opts(|sqlite| {
            sqlite_options(sqlite, SEED_BUSY_TIMEOUT)
                .synchronous(SqliteSynchronous::Off)
                .pragma("cache_size", "-1048576")
        });
        options
            .map_sqlx_postgres_opts(|postgres| postgres.options([("synchronous_commit", "off")]));
        let db = Database::connect(options).await.map_err(classify)?;
        Ok(SeaStore::on(db))
    }

    /// Inserts `tokens` with `history`, `ROWS_PER_STATEMENT` rows per
    /// `INSERT` and one transaction per `ROWS_PER_TRANSACTION` rows.
    /// Returns the numeric id of each token, in input order.
    pub async fn seed_tokens(
        &self,
        tokens: Vec<NewToken>,
        history: &SeedHistory,
    ) -> Result<Vec<i64>, StoreError> {
        let mut ids = Vec::with_capacity(tokens.len());
        let mut tokens = tokens.into_iter();
        loop {
            let batch: Vec<NewToken> = tokens.by_ref().take(ROWS_PER_TRANSACTION).collect();
            if batch.is_empty() {
                return Ok(ids);
            }
            let txn = self.connection().begin().await.map_err(classify)?;
            let mut batch = batch.into_iter();
            loop {
                let statement: Vec<NewToken> = batch.by_ref().take(ROWS_PER_STATEMENT).collect();
                if statement.is_empty() {
                    break;
                }
                ids.extend(insert_returning_ids(&txn, statement, history).await?);
            }
            txn.commit().await.map_err(classify)?;
        }
    }

    /// What autovacuum and the checkpointer would do some time after a bulk
    /// load, done now: PostgreSQL `VACUUM (ANALYZE)` and `CHECKPOINT`, SQLite
    /// a truncating WAL checkpoint.
    pub async fn settle_after_seeding(&self) -> Result<(), StoreError> {
        let statements: &[&str] = match self.backend() {
            DbBackend::Postgres => &["VACUUM (ANALYZE) tokens", "CHECKPOINT"],
            DbBackend::Sqlite => &["PRAGMA wal_checkpoint(TRUNCATE)"],
            _ => &[],
        };
        for statement in statements {
            self.connection()
                .execute_unprepared(statement)
                .await
                .map_err(classify)?;
        }
        Ok(())
    }
}

/// The row `create_token` would insert, with `history` on top.
fn seed_row(new: NewToken, history: &SeedHistory) -> token::ActiveModel {
    let revoked = history.revoked.as_ref();
    token::ActiveModel {
        revoked_at: ActiveValue::Set(revoked.map(|r| r.revoked_at)),
        last_used_at: ActiveValue::Set(history.last_used_at),
        revoked_by: ActiveValue::Set(revoked.map(|r| r.revocation.revoked_by.clone())),
        revoke_reason: ActiveValue::Set(revoked.and_then(|r| r.revocation.reason.clone())),
        ..new_token_row(new)
    }
}

/// One multi-row `INSERT … RETURNING id, token_id`. Neither backend promises
/// to return rows in VALUES order, so ids are matched back by UUID.
async fn insert_returning_ids<C: ConnectionTrait>(
    db: &C,
    tokens: Vec<NewToken>,
    history: &SeedHistory,
) -> Result<Vec<i64>, StoreError> {
    let order: Vec<String> = tokens.iter().map(|t| t.token_id.to_string()).collect();
    let rows = tokens.into_iter().map(|new| seed_row(new, history));
    let mut statement = token::Entity::insert_many(rows).into_query();
    statement.returning(Query::returning().columns([token::Column::Id, token::Column::TokenId]));
    let mut by_uuid = HashMap::with_capacity(order.len());
    for row in db.query_all(&statement).await.map_err(classify)? {
        let id: i64 = row.try_get("", "id").map_err(classify)?;
        let uuid: String = row.try_get("", "token_id").map_err(classify)?;
        by_uuid.insert(uuid, id);
    }
    order
        .iter()
        .map(|uuid| {
            by_uuid
                .get(uuid)
                .copied()
                .ok_or_else(|| StoreError::Other("a seeded row returned no id".into()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// The seeding connection makes the SQLite file as private as the
    /// server's pool does: 0600 before SQLite opens it.
    #[tokio::test]
    async fn a_seeded_sqlite_file_is_private() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("seed.db");
        let store = SeaStore::connect_for_seeding(&format!("sqlite://{}", path.display())).await?;
        store.migrate().await?;
        let mode = std::fs::metadata(&path)?.permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{mode:o}");
        Ok(())
    }
}
