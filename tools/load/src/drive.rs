//! One run against a ready server: the callers' JWTs, the export for other
//! tools, idle figures, every workload with the server-counter cross-check,
//! pgbench, and the report.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::time::Duration;

use chrono::Utc;
use tokend::domain::TokenKind;
use tokend::identity::{HsSecret, MintRequest, mint_hs256};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Endpoint;

use crate::Res;
use crate::calls::Shared;
use crate::cli::{Args, Backend};
use crate::counters::{delta, server_counters};
use crate::pgbench::run_pgbench;
use crate::report::{Figures, markdown};
use crate::seed::{ADMIN, ORG, Seeded};
use crate::server::{Server, memory};
use crate::workloads::run_workload;

/// Hit secrets written by `--export` (`HIT_SECRETS`, space-separated).
const EXPORTED_HIT_SECRETS: usize = 256;

/// `Bearer <JWT>` signed with `secret`, valid for a day.
fn mint(
    secret: &str,
    org: &str,
    sub: &str,
    roles: &[&str],
    permissions: &[&str],
) -> Res<MetadataValue<Ascii>> {
    let now = Utc::now().timestamp();
    let jwt = mint_hs256(
        &HsSecret::new(secret)?,
        &MintRequest {
            sub: sub.to_owned(),
            org_id: org.to_owned(),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            permissions: permissions.iter().map(|p| (*p).to_owned()).collect(),
            iat: now,
            exp: now + 86_400,
            iss: None,
            aud: None,
        },
    )?;
    Ok(format!("Bearer {jwt}").parse()?)
}

/// Writes what h2load and a profiler need to `path`, as shell assignments.
fn export(
    path: &std::path::Path,
    server: &Server,
    seeded: &Seeded,
    gateway: &MetadataValue<Ascii>,
    admin: &MetadataValue<Ascii>,
) -> Res<()> {
    let hit = seeded
        .hits
        .first()
        .map(|(_, s)| s.as_str())
        .unwrap_or_default();
    let unknown = seeded
        .unknown
        .first()
        .map(String::as_str)
        .unwrap_or_default();
    // Distinct secrets spread over the hit pool, one per h2load client, so
    // that coalesced lookups are not flattered by a repeated secret.
    let step = (seeded.hits.len() / EXPORTED_HIT_SECRETS).max(1);
    let hits: Vec<&str> = seeded
        .hits
        .iter()
        .step_by(step)
        .take(EXPORTED_HIT_SECRETS)
        .map(|(_, s)| s.as_str())
        .collect();
    // The personal access tokens' revoke pool as REST URIs (the seed route
    // DELETE /api/v2/personal_access_tokens/{id}), one per line: h2load
    // revokes each once. The tool's own revoke-pat workload draws from the
    // same pool, so a run uses one or the other.
    let revoke_uris = path.with_extension("revoke-uris");
    let http = server.http.map(|a| a.to_string()).unwrap_or_default();
    let uris: String = seeded
        .revoke_pool(TokenKind::PersonalAccess)
        .iter()
        .map(|target| {
            format!(
                "http://{http}/api/v2/personal_access_tokens/{}\n",
                target.token_id
            )
        })
        .collect();
    std::fs::write(&revoke_uris, uris)?;
    std::fs::write(
        path,
        format!(
            "GRPC_ADDR={}\nHTTP_ADDR={}\nSERVER_PID={}\nHIT_SECRET={hit}\nHIT_SECRETS='{}'\nUNKNOWN_SECRET={unknown}\nMETRICS_SECRET={}\nGATEWAY_AUTH='{}'\nADMIN_AUTH='{}'\nREVOKE_URIS='{}'\n",
            server.grpc,
            server.http.map(|a| a.to_string()).unwrap_or_default(),
            server.pid.map(|p| p.to_string()).unwrap_or_default(),
            hits.join(" "),
            seeded.metrics_secret,
            gateway.to_str()?,
            admin.to_str()?,
            revoke_uris.display(),
        ),
    )?;
    Ok(())
}

/// Runs the workloads of `args` against `server` and returns the report and
/// whether the run is VALID.
pub(crate) async fn drive(
    args: &Args,
    url: &str,
    seeded: Seeded,
    server: &Server,
    startup: Option<Duration>,
) -> Res<(String, bool)> {
    let gateway = mint(
        &args.jwt_hs256_secret,
        "platform",
        "api-gateway",
        &[],
        &["tokens_introspect"],
    )?;
    let admin = mint(&args.jwt_hs256_secret, ORG, ADMIN, &["admin"], &[])?;
    if let Some(path) = &args.export {
        export(path, server, &seeded, &gateway, &admin)?;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = memory(server.pid);
    if let Some(ready) = startup {
        println!(
            "start-up to readiness: {:.0} ms",
            ready.as_secs_f64() * 1000.0
        );
    }
    if let Some((rss, _)) = idle {
        println!("idle RSS: {rss:.1} MiB");
    }
    if let Some(pause) = args.pause {
        println!(
            "pausing {pause:?} (server pid {:?}, grpc {})",
            server.pid, server.grpc
        );
        tokio::time::sleep(pause).await;
    }
    let endpoint = Endpoint::from_shared(format!("http://{}", server.grpc))?;
    let mut channels = Vec::new();
    for _ in 0..args.connections.max(1) {
        channels.push(endpoint.connect().await?);
    }
    let metrics_secret = seeded.metrics_secret.clone();
    let total_rows = seeded.total_rows;
    let hit_pool = seeded.hits.len();
    let shared = Arc::new(Shared {
        seeded,
        gateway,
        admin,
        cursor: AtomicUsize::new(0),
        exhausted: AtomicBool::new(false),
    });
    let mut rows = Vec::new();
    for &workload in &args.workloads {
        let before = match server.http {
            Some(http) => server_counters(http, &metrics_secret).await.ok(),
            None => None,
        };
        let mut measured = run_workload(workload, args, &shared, &channels).await?;
        measured.rss = memory(server.pid);
        if let (Some(before), Some(http)) = (before, server.http) {
            let after = server_counters(http, &metrics_secret).await?;
            let server_codes = delta(&before, &after, workload.method());
            measured.server_check = if server_codes == measured.all_codes {
                "server counters agree".to_owned()
            } else {
                format!(
                    "server counters {server_codes:?} vs client {:?}",
                    measured.all_codes
                )
            };
        }
        println!(
            "{:<15} {:>9.0} calls/s  p99 {:>7.2} ms  unexpected {}{}",
            workload.label(),
            measured.rps(),
            measured.quantile_ms(0.99),
            measured.unexpected_total(),
            measured
                .exhausted_after
                .map(|s| format!("  (pool exhausted after {s:.1} s)"))
                .unwrap_or_default()
        );
        rows.push((workload, measured));
    }
    let hwm = memory(server.pid).map(|(_, hwm)| hwm);
    let pgbench = if args.backend == Backend::Postgres && args.pgbench_seconds > 0 {
        println!("running pgbench ({} s per script)...", args.pgbench_seconds);
        run_pgbench(args, url, &shared.seeded).await?
    } else {
        Vec::new()
    };
    Ok(markdown(&Figures {
        args,
        rows: &rows,
        pgbench: &pgbench,
        total_rows,
        hit_pool,
        startup,
        idle,
        hwm,
    }))
}
