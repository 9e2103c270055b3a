//! Coalesced lookups by secret hash: the read behind every AuthenticateToken
//! and every scrape-token check of the metrics endpoint.
//!
//! At most [`BATCHES_IN_FLIGHT`] lookup statements are in the database at
//! once. A lookup that finds a free slot and no one waiting sends its own
//! statement, from its own task: a lone call waits for no one and pays no
//! hand-off (there is no timer). Lookups that arrive while the slots are
//! busy queue; when a statement returns, the lookups waiting (at most
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

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use sea_orm::sea_query::{ArrayType, Expr, ExprTrait, PgFunc, Value};
use sea_orm::{
    ColumnTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait, QueryFilter, Select,
};
use tokio::sync::oneshot;

use crate::domain::repository::StoreError;
use crate::domain::secret::TokenHash;
use crate::domain::token::Token;
use crate::store::classify;
use crate::store::entity::token;
use crate::store::queries::to_token;

/// Most lookups one statement answers; more wait for the next statement.
pub(crate) const MAX_BATCH: usize = 256;

/// Lookup statements in the database at once. Two, not one: while one
/// batch is on its way to or from the database (on SQLite, a hop to a
/// connection's worker thread), the next can already be answered, so the two
/// cores are not left waiting on one round trip; more would only split the
/// batches.
const BATCHES_IN_FLIGHT: usize = 2;

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
    state: Mutex<State>,
}

/// The lookups waiting for a slot, and the statements in the database.
struct State {
    waiting: Vec<Lookup>,
    in_flight: usize,
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
    pub(crate) fn new(db: DatabaseConnection) -> LookupBatcher {
        LookupBatcher {
            shared: Arc::new(Shared {
                db,
                state: Mutex::new(State {
                    waiting: Vec::new(),
                    in_flight: 0,
                }),
            }),
        }
    }

    /// The token with this secret hash, in any organisation, read by a
    /// statement that starts after this call.
    pub(crate) async fn find(&self, hash: &TokenHash) -> Answer {
        let hash = *hash.as_bytes();
        let queued = {
            let mut state = self.shared.state();
            if state.in_flight < BATCHES_IN_FLIGHT && state.waiting.is_empty() {
                state.in_flight += 1;
                None
            } else {
                let (reply, answer) = oneshot::channel();
                state.waiting.push(Lookup { hash, reply });
                Some(answer)
            }
        };
        match queued {
            // A free slot and no one waiting: this call's own statement, on
            // its own task (no hand-off to another task for a lone call).
            None => {
                let slot = Slot(self.shared.clone());
                let answer = lookup_one(&self.shared.db, hash).await;
                drop(slot);
                answer
            }
            Some(answer) => answer.await.map_err(|_| stopped())?,
        }
    }
}

/// A statement slot held by a lone call. Freed when dropped, also when the
/// call is abandoned mid-statement; if lookups queued meanwhile, the slot
/// passes to a task that answers them.
struct Slot(Arc<Shared>);

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = self.0.state();
        if state.waiting.is_empty() {
            state.in_flight -= 1;
            return;
        }
        let batch = take_batch(&mut state);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                drop(state);
                runtime.spawn(answer_waiting(self.0.clone(), batch));
            }
            // No runtime (it is shutting down): the batch is dropped, and its
            // calls are told the lookups stopped.
            Err(_) => state.in_flight -= 1,
        }
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable("the lookups have stopped (the server is shutting down)".into())
}

/// One slot's task: answers `batch`, then the lookups that queued
/// meanwhile, one statement per batch, until none wait.
async fn answer_waiting(shared: Arc<Shared>, mut batch: Vec<Lookup>) {
    loop {
        answer_batch(&shared.db, &mut batch).await;
        let mut state = shared.state();
        if state.waiting.is_empty() {
            state.in_flight -= 1;
            return;
        }
        batch = take_batch(&mut state);
    }
}

/// A lone call's lookup: the plain `secret_hash = ?` point lookup, the
/// cheapest statement for one hash on both backends.
async fn lookup_one(db: &DatabaseConnection, hash: [u8; 32]) -> Answer {
    token::Entity::find()
        .filter(token::Column::SecretHash.eq(hash.to_vec()))
        .all(db)
        .await
        .map_err(classify)?
        .into_iter()
        .next()
        .map(to_token)
        .transpose()
}

/// Answers (and empties) `batch` with one statement.
async fn answer_batch(db: &DatabaseConnection, batch: &mut Vec<Lookup>) {
    // Calls whose deadline passed have dropped their receiver: skip them.
    batch.retain(|lookup| !lookup.reply.is_closed());
    if batch.is_empty() {
        return;
    }
    let mut hashes: Vec<[u8; 32]> = batch.iter().map(|lookup| lookup.hash).collect();
    hashes.sort_unstable();
    hashes.dedup();
    match select_by_hashes(db, &hashes).await {
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
                        Err(error) => Err(shared(error)),
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
                let _ = lookup.reply.send(Err(shared(&error)));
            }
        }
    }
}

/// The rows whose `secret_hash` is one of `hashes` (distinct, 1 ..= MAX_BATCH).
async fn select_by_hashes(
    db: &DatabaseConnection,
    hashes: &[[u8; 32]],
) -> Result<Vec<token::Model>, DbErr> {
    lookup_statement(db.get_database_backend(), hashes)
        .all(db)
        .await
}

/// The select of [`select_by_hashes`] for `backend`.
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
fn shared(error: &Arc<StoreError>) -> StoreError {
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
