//! The Markdown table a run prints, its summary lines, and the machine it
//! ran on.

use std::fmt::Write as _;
use std::time::Duration;

use crate::cli::{Args, Workload};
use crate::pgbench::PgbenchResult;
use crate::workloads::Measured;

/// Everything one run measured.
pub(crate) struct Figures<'a> {
    pub(crate) args: &'a Args,
    pub(crate) rows: &'a [(Workload, Measured)],
    pub(crate) pgbench: &'a [PgbenchResult],
    pub(crate) total_rows: usize,
    pub(crate) hit_pool: usize,
    /// Spawn to first SERVING, for a server started here.
    pub(crate) startup: Option<Duration>,
    /// (VmRSS, VmHWM) in MiB before the workloads.
    pub(crate) idle: Option<(f64, f64)>,
    /// VmHWM in MiB after the workloads.
    pub(crate) hwm: Option<f64>,
}

/// The report, and whether the run is VALID (no unexpected status).
pub(crate) fn markdown(figures: &Figures<'_>) -> (String, bool) {
    let Figures {
        args,
        rows,
        pgbench,
        total_rows,
        hit_pool,
        startup,
        idle,
        hwm,
    } = figures;
    let mut report = String::new();
    let health = rows
        .iter()
        .find(|(w, _)| *w == Workload::Health)
        .map(|(_, m)| m.rps());
    let _ = writeln!(
        report,
        "\n### {:?}, {} tokens ({} rows; hit pool {}), {} in flight, {} connections, {:?} warm-up + {:?}\n",
        args.backend,
        args.tokens,
        total_rows,
        hit_pool,
        args.concurrency,
        args.connections,
        args.warmup,
        args.duration
    );
    let _ = writeln!(
        report,
        "| workload | calls | calls/s | × health | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | expected non-OK | unexpected | RSS MiB | notes |"
    );
    let _ = writeln!(
        report,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---|"
    );
    let mut valid = true;
    for (workload, m) in rows.iter() {
        let ratio = health
            .filter(|h| *h > 0.0)
            .map_or("".to_owned(), |h| format!("{:.2}", m.rps() / h));
        let expected = if m.expected.is_empty() {
            "0".to_owned()
        } else {
            m.expected
                .iter()
                .map(|(c, n)| format!("{n} {c}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let unexpected = if m.unexpected.is_empty() {
            "0".to_owned()
        } else {
            valid = false;
            m.unexpected
                .iter()
                .map(|(c, (n, msg))| format!("**{n} {c}** ({msg})"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut notes = m.server_check.clone();
        if let Some(after) = m.exhausted_after {
            let _ = write!(
                notes,
                "; pool exhausted after {after:.1} s, rate over {:.1} s",
                m.seconds
            );
        }
        let _ = writeln!(
            report,
            "| {} | {} | {:.0} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} | {} | {} | {} | {} |",
            workload.label(),
            m.calls,
            m.rps(),
            ratio,
            m.quantile_ms(0.5),
            m.quantile_ms(0.9),
            m.quantile_ms(0.99),
            m.quantile_ms(0.999),
            m.max_ms(),
            expected,
            unexpected,
            m.rss.map_or("".to_owned(), |(rss, _)| format!("{rss:.0}")),
            notes
        );
    }
    for p in pgbench.iter() {
        let ratio = health
            .filter(|h| *h > 0.0)
            .map_or("".to_owned(), |h| format!("{:.2}", p.tps / h));
        let _ = writeln!(
            report,
            "| {} (-c {} -j 2 -T {}) | | {:.0} | {} | avg {:.2} | | | | | | | | {} |",
            p.name, args.concurrency, args.pgbench_seconds, p.tps, ratio, p.latency_ms, p.note
        );
    }
    let _ = writeln!(report);
    if let Some(ready) = startup {
        let _ = writeln!(
            report,
            "- start-up to readiness (existing database): {:.0} ms",
            ready.as_secs_f64() * 1000.0
        );
    }
    if let Some((rss, _)) = idle {
        let _ = writeln!(
            report,
            "- idle RSS: {rss:.1} MiB; peak RSS (VmHWM) over the run: {:.1} MiB",
            hwm.unwrap_or(0.0)
        );
    }
    let rps = |w: Workload| rows.iter().find(|(x, _)| *x == w).map(|(_, m)| m.rps());
    let by = |name: &str| {
        pgbench
            .iter()
            .find(|p| p.name.contains(name))
            .map(|p| p.tps)
    };
    if let (Some(hit), Some(id), Some(hash)) = (rps(Workload::AuthHit), by("by id"), by("by hash"))
    {
        let _ = writeln!(
            report,
            "- auth-hit / pgbench lookup: {:.2} (by id), {:.2} (by hash)",
            hit / id,
            hit / hash
        );
    }
    if let Some(revoke) = by("revoke") {
        let ratios: Vec<String> = [
            Workload::RevokeScrape,
            Workload::RevokePat,
            Workload::RevokeSat,
            Workload::RevokeWak,
        ]
        .iter()
        .filter_map(|w| rps(*w).map(|r| format!("{} {:.2}", w.label(), r / revoke)))
        .collect();
        let _ = writeln!(
            report,
            "- revoke / pgbench revoke txn: {}",
            ratios.join(", ")
        );
    }
    let _ = writeln!(
        report,
        "- run {}",
        if valid {
            "VALID: no unexpected status"
        } else {
            "INVALID: unexpected statuses above"
        }
    );
    (report, valid)
}

/// "N cores, CPU model, M GiB", from /proc.
pub(crate) fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_owned())
        })
        .and_then(|kib| kib.parse::<f64>().ok())
        .map(|kib| kib / 1024.0 / 1024.0)
        .unwrap_or(0.0);
    format!("{cores} cores, {cpu}, {mem:.1} GiB")
}
