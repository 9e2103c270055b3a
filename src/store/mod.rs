//! Storage with sea-orm: connection set-up, migrations, and the queries behind
//! [`TokenRepository`]. The only module that knows SQL exists.
//!
//! [`TokenRepository`]: crate::domain::repository::TokenRepository

mod bulk_revoke;
mod cte_writes;
pub(crate) mod entity;
mod lookup_batch;
pub mod migration;
mod policy;
mod queries;
mod revoked_use;
mod rotation;
mod seed;

pub use seed::{SeedHistory, SeededRevocation};

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sea_orm::sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr,
    TransactionTrait,
};
use sea_orm_migration::MigratorTrait;

use crate::domain::pagination::PageTokenKey;
use crate::domain::repository::StoreError;
use crate::store::lookup_batch::LookupBatcher;

/// Advisory lock key serialising migrations across replicas ("tokend" in ASCII).
const MIGRATION_LOCK_KEY: i64 = 0x746f_6b65_6e64;

/// Connection-pool settings (flags `--db-*`).
#[derive(Clone, Debug)]
pub struct DatabaseSettings {
    /// `sqlite://…` or `postgres://…`.
    pub url: String,
    /// Most connections in the pool.
    pub max_connections: u32,
    /// How long a call waits for a pooled connection before failing with
    /// UNAVAILABLE (sqlx's default of 30 s would hang clients).
    pub acquire_timeout: Duration,
    /// How long opening a connection may take.
    pub connect_timeout: Duration,
    /// PostgreSQL `statement_timeout` (SQLite: the busy timeout).
    pub statement_timeout: Duration,
    /// Idle connections are closed after this long.
    pub idle_timeout: Duration,
    /// Connections are recycled after this long.
    pub max_lifetime: Duration,
}

/// The sea-orm store.
#[derive(Clone, Debug)]
pub struct SeaStore {
    db: DatabaseConnection,
    /// Answers `find_by_hash`, many lookups per statement.
    lookups: LookupBatcher,
}

impl SeaStore {
    /// Builds the pool without connecting: the server starts (and reports
    /// NOT_SERVING) even while the database is down, and connects lazily.
    /// A missing SQLite file is created here, mode 0600, before SQLite
    /// would create it with the umask's mode (usually world-readable); its
    /// `-wal` and `-shm` files then take the same mode.
    pub async fn connect_lazy(settings: &DatabaseSettings) -> Result<SeaStore, StoreError> {
        create_private_sqlite_file(&settings.url)?;
        let mut options = ConnectOptions::new(settings.url.clone());
        options
            .max_connections(settings.max_connections)
            .min_connections(0)
            .acquire_timeout(settings.acquire_timeout)
            .connect_timeout(settings.connect_timeout)
            .idle_timeout(settings.idle_timeout)
            .max_lifetime(settings.max_lifetime)
            .connect_lazy(true)
            // sqlx pings every connection it hands out by default: a round
            // trip before every statement (on SQLite, a hop to the worker
            // thread and back). Only a connection idle long enough to have
            // been dropped by the server or a proxy is worth checking.
            .test_before_acquire_if_idle_for(PING_IF_IDLE_FOR)
            // Statements may carry hashes: never log them.
            .sqlx_logging(false);
        if settings.url.starts_with("postgres") {
            options
                .statement_timeout(settings.statement_timeout)
                .set_application_name("tokend");
        }
        let busy_timeout = settings.statement_timeout;
        options.map_sqlx_sqlite_opts(move |sqlite| {
            sqlite_options(sqlite, busy_timeout).synchronous(SqliteSynchronous::Normal)
        });
        let db = Database::connect(options).await.map_err(classify)?;
        Ok(SeaStore::on(db))
    }

    /// A store on `db`.
    fn on(db: DatabaseConnection) -> SeaStore {
        let lookups = LookupBatcher::new(db.clone(), None);
        SeaStore { db, lookups }
    }

    /// Applies pending migrations. On PostgreSQL they run in one transaction
    /// that first takes an advisory lock, so replicas (or init containers)
    /// starting together migrate one at a time and a failure leaves nothing
    /// half-applied. SQLite's file lock serialises writers by itself.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self.backend() {
            DbBackend::Postgres => {
                let txn = self.db.begin().await.map_err(classify)?;
                txn.execute_unprepared(&format!(
                    "SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})"
                ))
                .await
                .map_err(classify)?;
                migration::Migrator::up(&txn, None)
                    .await
                    .map_err(classify)?;
                txn.commit().await.map_err(classify)
            }
            _ => migration::Migrator::up(&self.db, None)
                .await
                .map_err(classify),
        }
    }

    /// Reads the page-token key that the migrations stored. Called once the
    /// migrations are applied; the core gets the key as a value.
    pub async fn load_page_token_key(&self) -> Result<PageTokenKey, StoreError> {
        use sea_orm::EntityTrait;
        let row = entity::page_token_key::Entity::find_by_id(1)
            .one(&self.db)
            .await
            .map_err(classify)?
            .ok_or_else(|| StoreError::Other("the page_token_key table has no key row".into()))?;
        PageTokenKey::from_slice(&row.secret).ok_or_else(|| {
            StoreError::Other(
                format!(
                    "the page-token key is {} bytes, not {}",
                    row.secret.len(),
                    PageTokenKey::LEN
                )
                .into(),
            )
        })
    }

    /// Closes the pool.
    pub async fn close(self) -> Result<(), StoreError> {
        // The pool's close waits for every connection to come back: the
        // lookups' kept ones first.
        self.lookups.close();
        self.db.close().await.map_err(classify)
    }

    /// The backend, for backend-specific SQL.
    pub fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    pub(crate) fn connection(&self) -> &DatabaseConnection {
        &self.db
    }
}

/// The file an SQLite URL opens, read the way sqlx reads it; `None` for an
/// in-memory database and for other URLs.
/// Makes the SQLite file of `url` (if it names one) with mode 0600 before
/// SQLite opens it, so the database and its `-wal`/`-shm` files are private.
pub(crate) fn create_private_sqlite_file(url: &str) -> Result<(), StoreError> {
    let Some(path) = sqlite_file(url) else {
        return Ok(());
    };
    crate::data_dir::create_private_file(&path).map_err(|error| {
        StoreError::Other(Box::new(std::io::Error::new(
            error.kind(),
            format!("cannot create the SQLite file {}: {error}", path.display()),
        )))
    })
}

/// The SQLite options every connection of tokend has: WAL, foreign keys,
/// and a wait of `busy_timeout` for the write lock. Each caller picks its
/// own `synchronous` level.
pub(crate) fn sqlite_options(
    sqlite: SqliteConnectOptions,
    busy_timeout: Duration,
) -> SqliteConnectOptions {
    sqlite
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(busy_timeout)
        .foreign_keys(true)
}

fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let (database, params) = rest.split_once('?').unwrap_or((rest, ""));
    let in_memory = database.is_empty()
        || database == ":memory:"
        || params.split('&').any(|param| param == "mode=memory");
    if in_memory {
        return None;
    }
    let options = SqliteConnectOptions::from_str(url).ok()?;
    Some(options.get_filename().to_owned())
}

/// Classifies a sea-orm error by what the caller should do: retry later
/// (connection trouble, timeouts, SQLite busy), report a conflict, or give up.
pub(crate) fn classify(error: DbErr) -> StoreError {
    if matches!(
        error.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    ) {
        return StoreError::Conflict;
    }
    let transient = match &error {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(runtime) | DbErr::Query(runtime) => is_transient(runtime),
        _ => false,
    };
    if transient {
        StoreError::Unavailable(Box::new(error))
    } else {
        StoreError::Other(Box::new(error))
    }
}

fn is_transient(error: &sea_orm::RuntimeErr) -> bool {
    use sea_orm::sqlx::Error as SqlxError;
    let sea_orm::RuntimeErr::SqlxError(sqlx_error) = error else {
        return false;
    };
    match sqlx_error.as_ref() {
        SqlxError::Io(_)
        | SqlxError::Tls(_)
        | SqlxError::Protocol(_)
        | SqlxError::PoolTimedOut
        | SqlxError::PoolClosed
        | SqlxError::WorkerCrashed => true,
        SqlxError::Database(db_error) => {
            let code = db_error.code().unwrap_or_default();
            // PostgreSQL: connection exceptions (08xxx), admin shutdown and
            // cannot-connect-now (57P0x), statement timeout (57014), too many
            // connections (53300), serialization failure and deadlock.
            code.starts_with("08")
                || code.starts_with("57P")
                || matches!(code.as_ref(), "57014" | "53300" | "40001" | "40P01")
                // SQLite: SQLITE_BUSY (5) and SQLITE_LOCKED (6), plain or extended.
                || code.parse::<i32>().is_ok_and(|c| matches!(c & 0xff, 5 | 6))
        }
        _ => false,
    }
}

impl SeaStore {
    /// A trivial query, for readiness.
    pub async fn ping_database(&self) -> Result<(), StoreError> {
        self.db
            .execute_unprepared("SELECT 1")
            .await
            .map(|_| ())
            .map_err(classify)
    }
}

/// A pooled connection idle at least this long is pinged before use.
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(10);

/// Told of each statement: its SQL text, duration and failure.
pub(crate) type StatementObserver = Arc<dyn Fn(&str, Duration, bool) + Send + Sync>;

impl SeaStore {
    /// Reports each statement's SQL text, duration (without the wait for a
    /// pooled connection) and failure to `observer`. Affects this store and
    /// its later clones: call it before cloning.
    pub fn observe_statements(
        &mut self,
        observer: impl Fn(&str, Duration, bool) + Send + Sync + 'static,
    ) {
        let observer: StatementObserver = Arc::new(observer);
        let pool_observer = observer.clone();
        self.db.set_metric_callback(move |info| {
            pool_observer(&info.statement.sql, info.elapsed, info.failed);
        });
        // The lookups run their statements on connections of their own,
        // outside sea-orm's callback: they report to the observer themselves.
        self.lookups = LookupBatcher::new(self.db.clone(), Some(observer));
    }

    /// (open connections, idle connections) of the pool.
    pub fn pool_status(&self) -> Option<(u32, usize)> {
        match self.db.get_database_backend() {
            DbBackend::Postgres => {
                let pool = self.db.get_postgres_connection_pool();
                Some((pool.size(), pool.num_idle()))
            }
            DbBackend::Sqlite => {
                let pool = self.db.get_sqlite_connection_pool();
                Some((pool.size(), pool.num_idle()))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pool's close waits for every connection it handed out: the
    /// lookups' kept one must come back first, or shutdown hangs.
    #[tokio::test]
    async fn closing_after_a_lookup_does_not_wait_for_the_kept_connection()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let url = format!("sqlite://{}", dir.path().join("close.db").display());
        let store = SeaStore::connect_for_seeding(&url).await?;
        store.migrate().await?;
        let hash =
            crate::domain::secret::TokenHash::from_slice(&[7u8; 32]).ok_or("a 32-byte hash")?;
        assert!(store.lookups.find(&hash).await?.is_none());
        tokio::time::timeout(Duration::from_secs(10), store.close()).await??;
        Ok(())
    }

    #[test]
    fn sqlite_urls_name_their_file_and_in_memory_ones_none() {
        let file = |url: &str| sqlite_file(url).map(|p| p.display().to_string());
        assert_eq!(
            file("sqlite:///tmp/x/tokend.db").as_deref(),
            Some("/tmp/x/tokend.db")
        );
        assert_eq!(
            file("sqlite://data/tokend.db?mode=rwc").as_deref(),
            Some("data/tokend.db")
        );
        assert_eq!(file("sqlite:tokend.db").as_deref(), Some("tokend.db"));
        assert_eq!(
            file("sqlite:///tmp/a%20b.db").as_deref(),
            Some("/tmp/a b.db")
        );
        assert_eq!(file("sqlite::memory:"), None);
        assert_eq!(file("sqlite://:memory:"), None);
        assert_eq!(file("sqlite://shared?mode=memory"), None);
        assert_eq!(file("postgres://postgres@localhost/tokend"), None);
    }
}
