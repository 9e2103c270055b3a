//! The PostgreSQL baseline: `pgbench -M prepared` with tokend's point
//! lookups and revoke transaction, on the same database at the same
//! concurrency. The scripts are SQL against the tables on purpose: they are
//! what tokend is compared with.

use std::fmt::Write as _;
use std::process::Command;

use sea_orm::{ConnectOptions, ConnectionTrait, Database, DbBackend, Statement};

use crate::Res;
use crate::cli::Args;
use crate::seed::{ORG, Seeded};

/// One script's figures.
pub(crate) struct PgbenchResult {
    pub(crate) name: &'static str,
    pub(crate) tps: f64,
    pub(crate) latency_ms: f64,
    pub(crate) note: String,
}

fn pgbench(
    url: &str,
    name: &'static str,
    script: &str,
    clients: usize,
    seconds: u32,
    defines: &[&str],
) -> Res<PgbenchResult> {
    let path = std::env::temp_dir().join(format!("tokend-bench-{}-{name}.sql", std::process::id()));
    std::fs::write(&path, script)?;
    let mut command = Command::new("pgbench");
    command.args([
        "-n",
        "-M",
        "prepared",
        "-c",
        &clients.to_string(),
        "-j",
        "2",
        "-T",
        &seconds.to_string(),
        "-f",
    ]);
    command.arg(&path);
    for define in defines {
        command.args(["-D", define]);
    }
    command.arg(url);
    let output = command.output()?;
    let _ = std::fs::remove_file(&path);
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        return Err(format!(
            "pgbench {name}: {}{}",
            text,
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    let find = |prefix: &str| -> Option<f64> {
        let line = text.lines().find(|l| l.starts_with(prefix))?;
        line.split_once(" = ")?
            .1
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    let failed = text
        .lines()
        .find(|l| l.starts_with("number of failed transactions"))
        .unwrap_or_default()
        .to_owned();
    Ok(PgbenchResult {
        name,
        tps: find("tps").ok_or_else(|| format!("pgbench {name}: no tps in {text}"))?,
        latency_ms: find("latency average").unwrap_or(0.0),
        note: failed,
    })
}

/// Runs the three scripts (lookup by id, lookup by hash, revoke txn) for
/// `--pgbench-seconds` each on the seeded database at `url`.
pub(crate) async fn run_pgbench(
    args: &Args,
    url: &str,
    seeded: &Seeded,
) -> Res<Vec<PgbenchResult>> {
    let mut options = ConnectOptions::new(url.to_owned());
    options.max_connections(1).sqlx_logging(false);
    let db = Database::connect(options).await?;
    let (lo, hi) = seeded.hit_ids;
    db.execute_unprepared(&format!(
        "CREATE TABLE bench_hashes (i bigint PRIMARY KEY, h bytea NOT NULL); \
         INSERT INTO bench_hashes SELECT id, secret_hash FROM tokens WHERE id BETWEEN {lo} AND {hi}; \
         ANALYZE bench_hashes"
    ))
    .await?;
    let seconds = args.pgbench_seconds;
    let c = args.concurrency;
    let mut results = Vec::new();
    let by_id = format!("\\set id random({lo}, {hi})\nSELECT * FROM tokens WHERE id = :id;\n");
    results.push(pgbench(
        url,
        "pgbench lookup by id",
        &by_id,
        c,
        seconds,
        &[],
    )?);
    let by_hash = format!(
        "\\set i random({lo}, {hi})\nSELECT t.* FROM tokens t WHERE t.secret_hash = (SELECT h FROM bench_hashes WHERE i = :i) LIMIT 1;\n"
    );
    results.push(pgbench(
        url,
        "pgbench lookup by hash",
        &by_hash,
        c,
        seconds,
        &[],
    )?);
    let (rlo, rhi) = seeded.pgbench_revoke;
    let revoke = format!(
        "\\set n :n + 1\n\\set id {rlo} + :client_id + {c} * (:n - 1)\nBEGIN;\n\
         UPDATE tokens SET revoked_at = now(), revoked_by = 'pgbench', revoke_reason = 'load test' \
         WHERE org_id = '{ORG}' AND kind = 'scrape' AND id = :id AND revoked_at IS NULL RETURNING *;\n\
         INSERT INTO audit_events (event_type, org_id, actor, token_id, token_numeric_id, token_kind, request_id, occurred_at, reason) \
         VALUES ('scrape_token_revoked', '{ORG}', 'pgbench', '00000000-0000-4000-8000-000000000000', :id, 'scrape', 'pgbench', now(), 'load test');\n\
         COMMIT;\n"
    );
    let mut result = pgbench(url, "pgbench revoke txn", &revoke, c, seconds, &["n=0"])?;
    let revoked = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            format!("SELECT count(*)::bigint AS n FROM tokens WHERE id BETWEEN {rlo} AND {rhi} AND revoked_by = 'pgbench'"),
        ))
        .await?
        .map(|row| row.try_get::<i64>("", "n"))
        .transpose()?
        .unwrap_or(0);
    db.close().await?;
    let pool = rhi - rlo + 1;
    let _ = write!(result.note, "; {revoked} of the {pool} pool revoked");
    if revoked + c as i64 >= pool {
        let _ = write!(
            result.note,
            " (EXHAUSTED: later transactions updated no row)"
        );
    }
    Ok(results.into_iter().chain(std::iter::once(result)).collect())
}
