//! Coalesced lookups by secret hash: the read behind every AuthenticateToken
//! and every scrape-token check of the metrics endpoint.
//!
//! At most [`BATCHES_IN_FLIGHT`] (one) lookup statement is in the database
//! at once. A lookup that finds the slot free and no one waiting sends its
//! own statement, from its own task: a lone call waits for no one and pays
//! no hand-off (there is no timer). Lookups that arrive while the slot is
//! busy queue; when the statement returns, the lookups waiting (at most
//! [`MAX_BATCH`]) become the next batch, answered by ONE statement. Under
//! load a batch grows to whatever arrived during a round trip.
//!
//! **Freshness.** A lookup's statement is sent after the lookup was queued,
//! hence after its call arrived, and it reads the database as of the moment
//! it starts: a PostgreSQL statement in autocommit takes its snapshot when it
//! starts, an SQLite statement opens its read transaction when it starts. So
//! a revoke that was committed (and acknowledged) before the call was sent is
//! seen by the call, on this replica or any other on the same database. No
//! result is reused across batches: nothing is cached.
//!
//! The statements: on PostgreSQL `secret_hash = ANY($1)` with the hashes as
//! one `bytea[]` parameter (one prepared statement for every batch size); on
//! SQLite `secret_hash IN (?, …)` with the list padded to the next power of
//! two by an empty blob (no stored hash is empty), so at most nine prepared
//! statements (1, 2, 4, … 256 parameters) are ever cached per connection.
//!
//! **Kept connections.** The statements run on connections the lookups keep
//! between statements (one per slot), not on one taken from the pool
//! and handed back each time: the pool pings a connection when it is handed
//! back (and before handing out one that sat idle), and each ping is a
//! round trip of its own (on SQLite, two more hops to the connection's worker
//! thread), which doubled or tripled the cost of every lookup. A kept
//! connection goes back to the pool after [`KEEP_FOR`] (so the pool's
//! lifetime and health rules still apply to it) and at once after a failed
//! statement; its next lookup then takes a fresh one from the pool.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use sea_orm::sea_query::{ArrayType, Expr, ExprTrait, PgFunc, Value};
use sea_orm::sqlx::pool::PoolConnection;
use sea_orm::sqlx::{Postgres, Sqlite};
use sea_orm::{
    ColumnTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait, FromQueryResult, QueryFilter,
    QueryResult, QueryTrait, Select,
};
use tokio::sync::oneshot;

use crate::domain::repository::StoreError;
use crate::domain::secret::TokenHash;
use crate::domain::token::Token;
use crate::store::StatementObserver;
use crate::store::classify;
use crate::store::entity::token;
use crate::store::queries::to_token;

/// Most lookups one statement answers; more wait for the next statement.
pub(crate) const MAX_BATCH: usize = 256;

/// Lookup statements in the database at once. One: while it is out, the
/// calls that arrive queue and are answered together by the next statement,
/// so under load a statement answers several calls (about 6 on SQLite and
/// 13 on PostgreSQL at 64 calls in flight in the benchmarks) and the round
/// trips, hand-offs to SQLite's worker thread and the database's own work per
/// statement are shared. Two slots answered fewer calls per statement and
/// measured 15-20 % fewer calls per second on both backends
/// (docs/benchmarks.md); a lone call is not slowed, it finds the slot free.
const BATCHES_IN_FLIGHT: usize = 1;

/// How long a kept connection serves lookups before it goes back to the
/// pool: long enough that handing back (one ping) costs nothing per call,
/// short enough that the pool's lifetime limit and a failover still reach
/// it within a minute.
const KEEP_FOR: Duration = Duration::from_secs(60);

/// What a lookup is answered with.
type Answer = Result<Option<Token>, StoreError>;

/// A row of a batch's answer, by its hash (its conversion may have failed).
type Found = ([u8; 32], Result<Token, Arc<StoreError>>);

/// One waiting lookup. The hash is raw bytes: it never leaves the store.
struct Lookup {
    hash: [u8; 32],
    reply: oneshot::Sender<Answer>,
}

/// The lookups of one store: cheap to clone, shared by the store's clones.
#[derive(Clone)]
pub(crate) struct LookupBatcher {
    shared: Arc<Shared>,
}

struct Shared {
    db: DatabaseConnection,
    /// Told of each statement, as the pool's statements are.
    observer: Option<StatementObserver>,
    state: Mutex<State>,
}

/// The lookups waiting for a slot, the statements in the database, and the
/// kept connections not in use.
struct State {
    waiting: Vec<Lookup>,
    in_flight: usize,
    idle: Vec<Kept>,
    /// Set when the store closes: no connection is kept any more.
    closed: bool,
}

/// A connection taken from the pool for lookups, and when it was taken.
struct Kept {
    connection: LookupConnection,
    since: Instant,
}

enum LookupConnection {
    Sqlite(PoolConnection<Sqlite>),
    Postgres(PoolConnection<Postgres>),
}

impl fmt::Debug for LookupBatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LookupBatcher")
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // The state is a queue and a count, consistent after every step: a
        // panic elsewhere while it was held leaves nothing half-done.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The next batch: the longest-waiting lookups, at most [`MAX_BATCH`].
fn take_batch(state: &mut State) -> Vec<Lookup> {
    let n = state.waiting.len().min(MAX_BATCH);
    state.waiting.drain(..n).collect()
}

impl LookupBatcher {
    /// Lookups on `db`. The queue needs no bound: each lookup belongs to a
    /// call that waits for its answer, so it never holds more than the calls
    /// in flight.
    /// `observer` is told of each statement (its SQL, duration, failure).
    pub(crate) fn new(
        db: DatabaseConnection,
        observer: Option<StatementObserver>,
    ) -> LookupBatcher {
        LookupBatcher {
            shared: Arc::new(Shared {
                db,
                observer,
                state: Mutex::new(State {
                    waiting: Vec::new(),
                    in_flight: 0,
                    idle: Vec::with_capacity(BATCHES_IN_FLIGHT),
                    closed: false,
                }),
            }),
        }
    }

    /// Hands the kept connections back to the pool and keeps none from
    /// now on, so that closing the pool does not wait for them.
    pub(crate) fn close(&self) {
        let mut state = self.shared.state();
        state.closed = true;
        state.idle.clear();
    }

    /// The token with this secret hash, in any organisation, read by a
    /// statement that starts after this call.
    pub(crate) async fn find(&self, hash: &TokenHash) -> Answer {
        let hash = *hash.as_bytes();
        let queued = {
            let mut state = self.shared.state();
            if state.in_flight < BATCHES_IN_FLIGHT && state.waiting.is_empty() {
                state.in_flight += 1;
                Err(state.idle.pop())
            } else {
                let (reply, answer) = oneshot::channel();
                state.waiting.push(Lookup { hash, reply });
                Ok(answer)
            }
        };
        match queued {
            // A free slot and no one waiting: this call's own statement, on
            // its own task (no hand-off to another task for a lone call).
            Err(kept) => {
                let mut slot = Slot {
                    shared: self.shared.clone(),
                    kept: None,
                };
                // Abandoned mid-statement, the connection is dropped with
                // the statement (back to the pool, which checks it), not kept.
                let (answer, kept) = lookup_one(&self.shared, kept, hash).await;
                slot.kept = kept;
                drop(slot);
                answer
            }
            Ok(answer) => answer.await.map_err(|_| stopped())?,
        }
    }
}

/// A statement slot held by a lone call, with the connection to keep once
/// its statement succeeded. Freed when dropped, also when the call is
/// abandoned mid-statement; if lookups queued meanwhile, the slot and the
/// connection pass to a task that answers them.
struct Slot {
    shared: Arc<Shared>,
    kept: Option<Kept>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let kept = self.kept.take();
        let mut state = self.shared.state();
        if state.waiting.is_empty() {
            release(&mut state, kept);
            return;
        }
        let batch = take_batch(&mut state);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                drop(state);
                runtime.spawn(answer_waiting(self.shared.clone(), batch, kept));
            }
            // No runtime (it is shutting down): the batch is dropped, and its
            // calls are told the lookups stopped.
            Err(_) => release(&mut state, kept),
        }
    }
}

/// Frees a slot, keeping its connection for the next lookup (unless the
/// store is closing: the pool waits for it).
fn release(state: &mut State, kept: Option<Kept>) {
    state.in_flight -= 1;
    if !state.closed {
        state.idle.extend(kept);
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable("the lookups have stopped (the server is shutting down)".into())
}

/// One slot's task: answers `batch`, then the lookups that queued
/// meanwhile, one statement per batch, until none wait.
async fn answer_waiting(shared: Arc<Shared>, mut batch: Vec<Lookup>, mut kept: Option<Kept>) {
    loop {
        kept = answer_batch(&shared, kept, &mut batch).await;
        let mut state = shared.state();
        if state.waiting.is_empty() {
            release(&mut state, kept);
            return;
        }
        batch = take_batch(&mut state);
    }
}

/// A lone call's lookup: the plain `secret_hash = ?` point lookup, the
/// cheapest statement for one hash on both backends. Also returns the
/// connection to keep, if any.
async fn lookup_one(shared: &Shared, kept: Option<Kept>, hash: [u8; 32]) -> (Answer, Option<Kept>) {
    let (rows, kept) = shared.select(kept, Shape::One, &[hash]).await;
    let answer = rows
        .map_err(classify)
        .and_then(|rows| rows.into_iter().next().map(to_token).transpose());
    (answer, kept)
}

/// Answers (and empties) `batch` with one statement on `kept` (or a
/// connection from the pool); returns the connection to keep, if any.
async fn answer_batch(
    shared: &Shared,
    kept: Option<Kept>,
    batch: &mut Vec<Lookup>,
) -> Option<Kept> {
    // Calls whose deadline passed have dropped their receiver: skip them.
    batch.retain(|lookup| !lookup.reply.is_closed());
    if batch.is_empty() {
        return kept;
    }
    let mut hashes: Vec<[u8; 32]> = batch.iter().map(|lookup| lookup.hash).collect();
    hashes.sort_unstable();
    hashes.dedup();
    let (rows, kept) = shared.select(kept, Shape::Many, &hashes).await;
    match rows {
        Ok(rows) => {
            let mut found: Vec<Found> = rows
                .into_iter()
                .filter_map(|row| {
                    let hash = <[u8; 32]>::try_from(row.secret_hash.as_slice()).ok()?;
                    Some((hash, to_token(row).map_err(Arc::new)))
                })
                .collect();
            found.sort_unstable_by_key(|(hash, _)| *hash);
            for lookup in batch.drain(..) {
                let answer = match found.binary_search_by(|(hash, _)| hash.cmp(&lookup.hash)) {
                    Ok(at) => match &found[at].1 {
                        Ok(token) => Ok(Some(token.clone())),
                        Err(error) => Err(shared_error(error)),
                    },
                    Err(_) => Ok(None),
                };
                // A call that gave up meanwhile is not waiting any more.
                let _ = lookup.reply.send(answer);
            }
        }
        Err(error) => {
            let error = Arc::new(classify(error));
            for lookup in batch.drain(..) {
                let _ = lookup.reply.send(Err(shared_error(&error)));
            }
        }
    }
    kept
}

/// Which statement a lookup sends.
#[derive(Clone, Copy)]
enum Shape {
    /// `secret_hash = ?`, for one hash.
    One,
    /// The batch statement, for any number of distinct hashes.
    Many,
}

impl Shared {
    /// The rows whose `secret_hash` is one of `hashes` (distinct,
    /// 1 ..= MAX_BATCH), read on `kept` or on a connection taken from the
    /// pool. Returns the connection to keep: none after a failure or once it
    /// was kept for [`KEEP_FOR`].
    async fn select(
        &self,
        kept: Option<Kept>,
        shape: Shape,
        hashes: &[[u8; 32]],
    ) -> (Result<Vec<token::Model>, DbErr>, Option<Kept>) {
        let mut kept = match kept {
            Some(kept) => kept,
            None => match self.take_connection().await {
                Ok(kept) => kept,
                Err(error) => return (Err(error), None),
            },
        };
        let backend = kept.connection.backend();
        let sql = statement_sql(backend, shape, hashes.len());
        let started = Instant::now();
        let rows = kept.connection.fetch(shape, sql, hashes).await;
        if let Some(observer) = &self.observer {
            observer(sql, started.elapsed(), rows.is_err());
        }
        let keep = rows.is_ok() && kept.since.elapsed() < KEEP_FOR;
        (rows, keep.then_some(kept))
    }

    /// A connection from the pool, to keep for a while.
    async fn take_connection(&self) -> Result<Kept, DbErr> {
        let backend = self.db.get_database_backend();
        let connection = if backend == DbBackend::Postgres {
            LookupConnection::Postgres(
                self.db
                    .get_postgres_connection_pool()
                    .acquire()
                    .await
                    .map_err(sqlx_error)?,
            )
        } else if backend == DbBackend::Sqlite {
            LookupConnection::Sqlite(
                self.db
                    .get_sqlite_connection_pool()
                    .acquire()
                    .await
                    .map_err(sqlx_error)?,
            )
        } else {
            return Err(DbErr::Custom("lookups need SQLite or PostgreSQL".into()));
        };
        Ok(Kept {
            connection,
            since: Instant::now(),
        })
    }
}

/// A driver error as sea-orm reports it, so `classify` sorts it the same
/// way (a pool timeout or a refused connection is an outage).
fn sqlx_error(error: sea_orm::sqlx::Error) -> DbErr {
    DbErr::Conn(sea_orm::RuntimeErr::SqlxError(Arc::new(error)))
}

impl LookupConnection {
    fn backend(&self) -> DbBackend {
        match self {
            LookupConnection::Sqlite(_) => DbBackend::Sqlite,
            LookupConnection::Postgres(_) => DbBackend::Postgres,
        }
    }

    /// Runs `sql` (a statement of [`statement_sql`] for `hashes.len()`)
    /// with `hashes` bound, as a prepared statement the connection keeps.
    async fn fetch(
        &mut self,
        shape: Shape,
        sql: &'static str,
        hashes: &[[u8; 32]],
    ) -> Result<Vec<token::Model>, DbErr> {
        use sea_orm::sqlx::query;
        let rows = match self {
            LookupConnection::Sqlite(connection) => {
                let width = hashes.len().next_power_of_two();
                // The padding: no stored hash is empty.
                let padded = hashes
                    .iter()
                    .map(|hash| hash.as_slice())
                    .chain(std::iter::repeat_n(&[][..], width - hashes.len()));
                let statement = padded.fold(query::<Sqlite>(sql), |statement, value| {
                    statement.bind(value)
                });
                answer_rows(statement.fetch_all(&mut **connection).await)?
            }
            LookupConnection::Postgres(connection) => {
                let statement = match shape {
                    // `= $1`: the one hash, as one bytea.
                    Shape::One => hashes
                        .iter()
                        .fold(query::<Postgres>(sql), |statement, hash| {
                            statement.bind(hash.as_slice())
                        }),
                    // `= ANY($1)`: every hash, as one bytea[].
                    Shape::Many => query::<Postgres>(sql).bind(
                        hashes
                            .iter()
                            .map(|hash| hash.as_slice())
                            .collect::<Vec<_>>(),
                    ),
                };
                answer_rows(statement.fetch_all(&mut **connection).await)?
            }
        };
        rows.iter()
            .map(|row| token::Model::from_query_result(row, ""))
            .collect()
    }
}

/// A driver's rows as sea-orm's, ready for the model.
fn answer_rows<Row>(rows: Result<Vec<Row>, sea_orm::sqlx::Error>) -> Result<Vec<QueryResult>, DbErr>
where
    QueryResult: From<Row>,
{
    Ok(rows
        .map_err(sqlx_error)?
        .into_iter()
        .map(QueryResult::from)
        .collect())
}

/// The SQL of a lookup of `count` hashes: built once per shape and width
/// from the same select sea-orm would run.
fn statement_sql(backend: DbBackend, shape: Shape, count: usize) -> &'static str {
    static ONE: [OnceLock<String>; 2] = [OnceLock::new(), OnceLock::new()];
    static POSTGRES_MANY: OnceLock<String> = OnceLock::new();
    static SQLITE_MANY: [OnceLock<String>; SQLITE_WIDTHS] =
        [const { OnceLock::new() }; SQLITE_WIDTHS];
    let postgres = backend == DbBackend::Postgres;
    let cell = match shape {
        Shape::One => &ONE[usize::from(postgres)],
        Shape::Many if postgres => &POSTGRES_MANY,
        Shape::Many => {
            let width = count.max(1).next_power_of_two();
            &SQLITE_MANY[width.trailing_zeros() as usize]
        }
    };
    cell.get_or_init(|| {
        let query = match shape {
            Shape::One => {
                token::Entity::find().filter(token::Column::SecretHash.eq(Vec::<u8>::new()))
            }
            Shape::Many => lookup_statement(backend, &vec![[0u8; 32]; count.max(1)]),
        };
        query.build(backend).sql
    })
}

/// Widths of the SQLite batch statements: 1, 2, 4, … [`MAX_BATCH`].
const SQLITE_WIDTHS: usize = MAX_BATCH.trailing_zeros() as usize + 1;

/// The batch select for `backend`, the SQL of [`statement_sql`]'s batch shape.
fn lookup_statement(backend: DbBackend, hashes: &[[u8; 32]]) -> Select<token::Entity> {
    let query = token::Entity::find();
    if backend == DbBackend::Postgres {
        let array = hashes
            .iter()
            .map(|hash| Value::Bytes(Some(hash.to_vec())))
            .collect();
        let array = Value::Array(ArrayType::Bytes, Some(Box::new(array)));
        query.filter(Expr::col(token::Column::SecretHash).eq(PgFunc::any(Expr::val(array))))
    } else {
        let width = hashes.len().next_power_of_two();
        let padded = hashes
            .iter()
            .map(|hash| hash.to_vec())
            .chain(std::iter::repeat_with(Vec::new))
            .take(width);
        query.filter(token::Column::SecretHash.is_in(padded))
    }
}

/// A copy of one batch's error for each of its calls, of the same class
/// (unavailable stays unavailable).
fn shared_error(error: &Arc<StoreError>) -> StoreError {
    let source = Box::new(SharedError(error.clone()));
    match error.as_ref() {
        StoreError::Unavailable(_) => StoreError::Unavailable(source),
        StoreError::Conflict => StoreError::Conflict,
        StoreError::Other(_) => StoreError::Other(source),
    }
}

/// The error of a batch's statement, shared by every call of the batch.
#[derive(Debug)]
struct SharedError(Arc<StoreError>);

impl fmt::Display for SharedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match std::error::Error::source(self.0.as_ref()) {
            Some(source) => write!(f, "{source}"),
            None => write!(f, "{}", self.0),
        }
    }
}

impl std::error::Error for SharedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(self.0.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::QueryTrait;

    use super::*;

    #[test]
    fn sqlite_lists_are_padded_to_a_power_of_two() {
        let statement = |n: usize| {
            let hashes: Vec<[u8; 32]> = (1..=n).map(|i| [i as u8; 32]).collect();
            lookup_statement(DbBackend::Sqlite, &hashes).build(DbBackend::Sqlite)
        };
        for (n, width) in [(1, 1), (3, 4), (4, 4), (5, 8), (200, 256), (256, 256)] {
            let built = statement(n);
            assert_eq!(built.sql.matches('?').count(), width, "{n} lookups");
            assert!(!built.sql.contains("LIMIT"), "{}", built.sql);
            // The padding is the empty blob, which no stored hash equals.
            let values = built.values.expect("bound values").0;
            assert_eq!(values.len(), width);
            let empty = Value::Bytes(Some(Vec::new()));
            assert_eq!(values.iter().filter(|v| **v == empty).count(), width - n);
        }
        assert_eq!(
            statement(3).sql,
            statement(4).sql,
            "one statement per width"
        );
    }

    #[test]
    fn postgres_binds_one_array_whatever_the_batch_size() {
        let one = lookup_statement(DbBackend::Postgres, &[[1u8; 32]]).build(DbBackend::Postgres);
        let three = lookup_statement(DbBackend::Postgres, &[[1u8; 32], [2u8; 32], [3u8; 32]])
            .build(DbBackend::Postgres);
        assert_eq!(one.sql, three.sql);
        assert!(one.sql.contains("= ANY($1)"), "{}", one.sql);
    }
}
