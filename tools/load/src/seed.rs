//! The seeded tokens and the pools the workloads draw from, written through
//! tokend's store (`SeaStore::seed_tokens`, one call per pool).

use std::collections::HashMap;
use std::time::Instant;

use chrono::{DateTime, Utc};
use tokend::domain::token::{NewToken, Revocation};
use tokend::domain::{TokenKind, TokenSecret};
use tokend::store::{SeaStore, SeedHistory, SeededRevocation};

use crate::Res;

/// The organisation of every seeded token but one.
pub(crate) const ORG: &str = "bench";
/// A one-token organisation: its scrape token reads the metrics endpoint,
/// whose per-org token counts then stay cheap.
const METRICS_ORG: &str = "bench-metrics";
/// Creator of the seeded tokens, and the admin the revoke and create calls
/// act as.
pub(crate) const ADMIN: &str = "bench-admin";
/// Well-formed secrets that were never stored, for the miss workloads.
const UNKNOWN_SECRETS: usize = 20_000;

/// What a revoke call needs to name one token.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    pub(crate) id: i64,
    pub(crate) token_id: String,
    pub(crate) slug_or_workspace: String,
    pub(crate) name: String,
}

/// The seeded tokens the workloads draw from. Ids are contiguous per pool:
/// hits first, then revoked, the four revoke pools, the never-used pool and
/// the pgbench revoke pool.
#[derive(Default)]
pub(crate) struct Seeded {
    /// (id, secret) of active tokens used recently.
    pub(crate) hits: Vec<(i64, String)>,
    pub(crate) revoked: Vec<String>,
    /// Never-used tokens: authenticating one also writes `last_used_at`.
    pub(crate) cold: Vec<String>,
    pub(crate) revoke: HashMap<TokenKind, Vec<Target>>,
    pub(crate) unknown: Vec<String>,
    /// First and last id of the scrape tokens pgbench revokes.
    pub(crate) pgbench_revoke: (i64, i64),
    /// First and last id of the hit pool.
    pub(crate) hit_ids: (i64, i64),
    pub(crate) metrics_secret: String,
    pub(crate) total_rows: usize,
}

impl Seeded {
    /// The single-use pool of a revoke workload.
    pub(crate) fn revoke_pool(&self, kind: TokenKind) -> &[Target] {
        self.revoke
            .get(&kind)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Pool {
    Hit,
    Revoked,
    Revoke(TokenKind),
    Cold,
    PgbenchRevoke,
    Metrics,
}

/// The pools of `n` tokens, in id order: 55 % hits, 5 % revoked, 5 % per
/// revoke RPC, 10 % never used, 10 % for pgbench, one metrics token.
fn layout(n: usize) -> Vec<(Pool, usize)> {
    let pct = |p: usize| (n * p / 100).max(1);
    let revoked = pct(5);
    let per_kind = pct(5);
    let cold = pct(10);
    let pgbench = pct(10);
    let fixed = revoked + 4 * per_kind + cold + pgbench;
    let hits = n.saturating_sub(fixed).max(1);
    vec![
        (Pool::Hit, hits),
        (Pool::Revoked, revoked),
        (Pool::Revoke(TokenKind::Scrape), per_kind),
        (Pool::Revoke(TokenKind::PersonalAccess), per_kind),
        (Pool::Revoke(TokenKind::ServiceAccount), per_kind),
        (Pool::Revoke(TokenKind::WorkspaceApiKey), per_kind),
        (Pool::Cold, cold),
        (Pool::PgbenchRevoke, pgbench),
        (Pool::Metrics, 1),
    ]
}

/// The token of row `row` (1-based over the whole seed; on a fresh database
/// also its id), of `kind`, in `pool`.
fn new_token(
    pool: Pool,
    kind: TokenKind,
    row: usize,
    secret: &TokenSecret,
    now: DateTime<Utc>,
) -> NewToken {
    let (slug, workspace, name, owner) = match kind {
        TokenKind::Scrape => (None, None, format!("scrape-{row}"), ADMIN.to_owned()),
        TokenKind::PersonalAccess => (
            None,
            None,
            format!("pat-{row}"),
            format!("user-{}", row % 1000),
        ),
        TokenKind::ServiceAccount => (
            Some(format!("sa-{}", row % 1000)),
            None,
            format!("t{row}"),
            ADMIN.to_owned(),
        ),
        TokenKind::WorkspaceApiKey => (
            None,
            Some(format!("g-{:010x}", row % 1000)),
            format!("key-{row}"),
            ADMIN.to_owned(),
        ),
    };
    NewToken {
        token_id: uuid::Uuid::new_v4(),
        kind,
        org_id: if pool == Pool::Metrics {
            METRICS_ORG
        } else {
            ORG
        }
        .to_owned(),
        name,
        owner_user_id: owner,
        service_account_slug: slug,
        workspace_id: workspace,
        scopes: vec!["repo:read".to_owned(), "metrics:read".to_owned()],
        secret_hash: secret.hash(),
        created_at: now - chrono::Duration::days(1),
        expires_at: None,
        created_by: ADMIN.to_owned(),
    }
}

/// The seeded history of `pool`.
fn history(pool: Pool, now: DateTime<Utc>) -> SeedHistory {
    let created = now - chrono::Duration::days(1);
    // "Used recently" so that the once-a-minute last_used_at touch does not
    // fire during the auth-hit/auth-mix workloads (it is measured on its own
    // by auth-first-use, whose tokens were never used).
    let recently = now + chrono::Duration::days(365);
    let revoked = match pool {
        Pool::Revoked => Some(SeededRevocation {
            revoked_at: created,
            revocation: Revocation {
                revoked_by: ADMIN.to_owned(),
                reason: Some("seeded as revoked".to_owned()),
            },
        }),
        Pool::Hit | Pool::Revoke(_) | Pool::Cold | Pool::PgbenchRevoke | Pool::Metrics => None,
    };
    SeedHistory {
        last_used_at: (pool != Pool::Cold).then_some(recently),
        revoked,
    }
}

/// First and last of `ids`, which pgbench's scripts address as a range.
fn id_range(ids: &[i64]) -> Res<(i64, i64)> {
    let (Some(first), Some(last)) = (ids.iter().min(), ids.iter().max()) else {
        return Ok((0, -1));
    };
    if usize::try_from(last - first + 1)? != ids.len() {
        return Err(format!(
            "seeded ids {first}..={last} are not contiguous for {} tokens: seed a database nothing else writes to",
            ids.len()
        )
        .into());
    }
    Ok((*first, *last))
}

/// Seeds `n` tokens into the migrated database at `url`.
pub(crate) async fn seed(url: &str, n: usize) -> Res<Seeded> {
    let store = SeaStore::connect_for_seeding(url).await?;
    let mut seeded = Seeded::default();
    let now = Utc::now();
    let mut row = 0;
    let started = Instant::now();
    for (pool, count) in layout(n) {
        let mut tokens = Vec::with_capacity(count);
        let mut secrets = Vec::with_capacity(count);
        for i in 0..count {
            row += 1;
            let kind = match pool {
                Pool::Revoke(kind) => kind,
                Pool::PgbenchRevoke | Pool::Metrics => TokenKind::Scrape,
                Pool::Hit | Pool::Revoked | Pool::Cold => TokenKind::ALL[i % 4],
            };
            let secret = TokenSecret::generate(kind)?;
            tokens.push(new_token(pool, kind, row, &secret, now));
            secrets.push(secret.expose().to_owned());
        }
        // What a revoke call names, kept before the tokens move into the store.
        let mut targets: Vec<Target> = match pool {
            Pool::Revoke(_) => tokens
                .iter()
                .map(|t| Target {
                    id: 0,
                    token_id: t.token_id.to_string(),
                    slug_or_workspace: t
                        .service_account_slug
                        .clone()
                        .or_else(|| t.workspace_id.clone())
                        .unwrap_or_default(),
                    name: t.name.clone(),
                })
                .collect(),
            Pool::Hit | Pool::Revoked | Pool::Cold | Pool::PgbenchRevoke | Pool::Metrics => {
                Vec::new()
            }
        };
        let ids = store.seed_tokens(tokens, &history(pool, now)).await?;
        match pool {
            Pool::Hit => {
                seeded.hit_ids = id_range(&ids)?;
                seeded.hits = ids.into_iter().zip(secrets).collect();
            }
            Pool::Revoked => seeded.revoked = secrets,
            Pool::Cold => seeded.cold = secrets,
            Pool::Metrics => seeded.metrics_secret = secrets.into_iter().next().unwrap_or_default(),
            Pool::Revoke(kind) => {
                for (target, id) in targets.iter_mut().zip(ids) {
                    target.id = id;
                }
                seeded.revoke.insert(kind, targets);
            }
            Pool::PgbenchRevoke => seeded.pgbench_revoke = id_range(&ids)?,
        }
    }
    store.settle_after_seeding().await?;
    store.close().await?;
    seeded.total_rows = row;
    for i in 0..UNKNOWN_SECRETS {
        let kind = TokenKind::ALL[i % 4];
        seeded
            .unknown
            .push(TokenSecret::generate(kind)?.expose().to_owned());
    }
    println!(
        "seeded {} tokens in {:.1} s",
        seeded.total_rows,
        started.elapsed().as_secs_f64()
    );
    Ok(seeded)
}
