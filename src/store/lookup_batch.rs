//! Coalesced lookups by secret hash: the read behind every AuthenticateToken
//! and every scrape-token check of the metrics endpoint.
//!
//! One task per store owns the lookups. It takes every lookup that is
//! waiting (at most [`MAX_BATCH`]) and answers them all with ONE statement;
//! with [`BATCHES_IN_FLIGHT`] statements in the database, lookups that
//! arrive queue until one returns, and the queue is the next batch. There
//! is no timer: a lone lookup finds a free slot and goes straight to the
//! database, so batching adds no latency when there is nothing to batch, and
//! under load a batch grows to whatever arrived during a round trip.
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
use std::sync::Arc;

use sea_orm::sea_query::{ArrayType, Expr, ExprTrait, PgFunc, Value};
use sea_orm::{
    ColumnTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait, QueryFilter, Select,
};
use tokio::sync::{Semaphore, mpsc, oneshot};

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

/// The request side of the lookup task: cheap to clone, one per store clone.
#[derive(Clone)]
pub(crate) struct LookupBatcher {
    queue: mpsc::UnboundedSender<Lookup>,
}

impl fmt::Debug for LookupBatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LookupBatcher")
    }
}

impl LookupBatcher {
    /// Starts the task that answers lookups on `db`. It ends when the last
    /// clone of the returned batcher is dropped. The queue needs no bound:
    /// each lookup belongs to a call that waits for its answer, so the queue
    /// never holds more than the calls in flight.
    pub(crate) fn spawn(db: DatabaseConnection) -> LookupBatcher {
        let (queue, arrivals) = mpsc::unbounded_channel();
        tokio::spawn(answer_batches(db, arrivals));
        LookupBatcher { queue }
    }

    /// The token with this secret hash, in any organisation, read by a
    /// statement that starts after this call.
    pub(crate) async fn find(&self, hash: &TokenHash) -> Answer {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Lookup {
                hash: *hash.as_bytes(),
                reply,
            })
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable("the lookup task has stopped (the server is shutting down)".into())
}

/// The lookup task: one statement per batch, at most [`BATCHES_IN_FLIGHT`]
/// batches in the database at once. A batch is taken only when a slot is
/// free, so lookups queue while the slots are busy and the queue is the
/// next batch.
async fn answer_batches(db: DatabaseConnection, mut arrivals: mpsc::UnboundedReceiver<Lookup>) {
    let slots = Arc::new(Semaphore::new(BATCHES_IN_FLIGHT));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut batch = Vec::with_capacity(MAX_BATCH);
        if arrivals.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return;
        }
        let db = db.clone();
        tokio::spawn(async move {
            answer_batch(&db, &mut batch).await;
            drop(slot);
        });
    }
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
