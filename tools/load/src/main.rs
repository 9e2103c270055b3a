//! Load generator for tokend.
//!
//! Starts a release `tokend` (or targets a running one), seeds N tokens in
//! bulk through tokend's store, then drives a fixed number of gRPC calls in
//! flight for a fixed time after a warm-up, workload after workload, and
//! prints one Markdown table: throughput, p50/p90/p99/p99.9 (HDR histogram),
//! every non-OK status, the server's RSS, and ratios against
//! `grpc.health.v1.Health/Check` measured on the same server in the same run.
//! On PostgreSQL it also runs `pgbench -M prepared` with the equivalent point
//! lookup and revoke transaction on the same database.
//!
//! ```sh
//! cargo build --release --workspace      # tokend and this tool, side by side
//! target/release/tokend-load --backend sqlite --tokens 10000
//! target/release/tokend-load --backend postgres --tokens 1000000
//! target/release/tokend-load --help
//! ```
//!
//! A run with an unexpected status is INVALID: it says so and exits 1.
//! docs/benchmarks.md explains the workloads and records the figures.

#![allow(clippy::print_stdout)]

mod calls;
mod cli;
mod counters;
mod drive;
mod pgbench;
mod report;
mod seed;
mod server;
mod workloads;

use std::error::Error;
use std::io::Write as _;
use std::process::ExitCode;

use chrono::Utc;
use clap::Parser;
use sea_orm::{ConnectionTrait, Database};

use crate::cli::{Args, Backend};
use crate::server::{Server, run_tokend, start_server, wait_ready};

type BoxError = Box<dyn Error + Send + Sync>;
type Res<T> = Result<T, BoxError>;

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.client_threads.max(1))
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("load: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("load: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `sql` on the PostgreSQL server's `postgres` database.
async fn pg_admin(pg_server: &str, sql: &str) -> Res<()> {
    let admin = Database::connect(format!("{pg_server}/postgres")).await?;
    admin.execute_unprepared(sql).await?;
    admin.close().await?;
    Ok(())
}

/// Makes the data folder and the database, runs, then removes both (unless
/// `--keep`).
async fn run(args: Args) -> Res<bool> {
    let work = std::env::temp_dir().join(format!(
        "tokend-bench-{}-{}",
        std::process::id(),
        Utc::now().timestamp()
    ));
    std::fs::create_dir_all(&work)?;
    let data_dir = work.display().to_string();
    let mut pg_database: Option<String> = None;
    let url = match (&args.target, &args.database_url, args.backend) {
        (Some(_), Some(url), _) => url.clone(),
        (Some(_), None, _) => return Err("--target needs --database-url".into()),
        (None, _, Backend::Sqlite) => format!("sqlite://{}/tokend.db", work.display()),
        (None, _, Backend::Postgres) => {
            let name = format!(
                "tokend_bench_{}_{}",
                std::process::id(),
                Utc::now().timestamp()
            );
            pg_admin(&args.pg_server, &format!("CREATE DATABASE {name}")).await?;
            pg_database = Some(name.clone());
            format!("{}/{name}", args.pg_server)
        }
    };
    let outcome = run_with(&args, &url, &data_dir).await;
    if args.keep {
        println!("kept: data folder {data_dir}, database {url}");
    } else {
        let _ = std::fs::remove_dir_all(&work);
        if let Some(name) = pg_database {
            pg_admin(
                &args.pg_server,
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            )
            .await?;
        }
    }
    outcome
}

/// Migrates (unless `--target`), seeds, starts the server, drives it, stops
/// it, and prints the report.
async fn run_with(args: &Args, url: &str, data_dir: &str) -> Res<bool> {
    println!(
        "tokend load: backend {:?}, {} tokens, {} in flight over {} connections, warm-up {:?} + {:?} per workload; {}",
        args.backend,
        args.tokens,
        args.concurrency,
        args.connections,
        args.warmup,
        args.duration,
        report::machine()
    );
    if args.target.is_none() {
        run_tokend(&["migrate", "--database-url", url, "--data-dir", data_dir])?;
    }
    let seeded = seed::seed(url, args.tokens).await?;

    let (mut server, startup) = match args.target {
        None => {
            let (server, spawned) = start_server(args, url, data_dir)?;
            let ready = wait_ready(server.grpc, spawned).await?;
            (server, Some(ready))
        }
        Some(grpc) => (Server::running(args, grpc), None),
    };
    let result = drive::drive(args, url, seeded, &server, startup).await;
    if result.is_err()
        && let Ok(tail) = server.log_tail.lock()
    {
        eprintln!("last server log lines:\n{}", tail.join("\n"));
    }
    server.stop();
    let (report, valid) = result?;
    print!("{report}");
    let _ = std::io::stdout().flush();
    Ok(valid)
}
