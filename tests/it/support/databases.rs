//! Databases: one fresh database per test, an SQLite file in a temporary
//! folder or a PostgreSQL database made and dropped for it.

use tempfile::TempDir;

/// The environment variable naming a PostgreSQL server for the suite.
pub const PG_URL_VAR: &str = "TOKEND_TEST_DATABASE_URL";

/// Which database a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Whether PostgreSQL tests should run. Under `CI=true` a missing
/// `TOKEND_TEST_DATABASE_URL` is a failure, never a silent skip.
pub fn postgres_available() -> bool {
    match std::env::var(PG_URL_VAR) {
        Ok(url) if !url.is_empty() => true,
        _ => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!(
                    "{PG_URL_VAR} must be set when CI=true: PostgreSQL tests may not be skipped"
                );
            }
            eprintln!("skipping PostgreSQL variant: {PG_URL_VAR} is not set");
            false
        }
    }
}

/// A fresh database for one test: an SQLite file in a temporary folder, or a
/// new PostgreSQL database dropped when the test ends.
#[derive(Debug)]
pub struct TestDb {
    pub url: String,
    pub dir: TempDir,
    pg_name: Option<String>,
}

fn pg_admin_url() -> String {
    std::env::var(PG_URL_VAR).unwrap_or_default()
}

/// `postgres://user@host:port/db?x` → the same URL naming `database`.
pub fn pg_url_with_database(admin: &str, database: &str) -> String {
    let (base, query) = match admin.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (admin, String::new()),
    };
    let authority_end = base
        .find("://")
        .map(|i| i + 3)
        .and_then(|start| base[start..].find('/').map(|j| start + j))
        .unwrap_or(base.len());
    format!("{}/{database}{query}", &base[..authority_end])
}

async fn pg_admin_exec(sql: &str) -> Result<(), sea_orm::DbErr> {
    use sea_orm::ConnectionTrait;
    let mut options = sea_orm::ConnectOptions::new(pg_admin_url());
    options.sqlx_logging(false).max_connections(1);
    let db = sea_orm::Database::connect(options).await?;
    db.execute_unprepared(sql).await?;
    db.close().await
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        match backend {
            Backend::Sqlite => TestDb {
                url: format!("sqlite://{}", dir.path().join("tokend.db").display()),
                dir,
                pg_name: None,
            },
            Backend::Postgres => {
                let name = format!("tokend_test_{}", uuid::Uuid::new_v4().simple());
                pg_admin_exec(&format!("CREATE DATABASE {name}"))
                    .await
                    .expect("create test database");
                TestDb {
                    url: pg_url_with_database(&pg_admin_url(), &name),
                    dir,
                    pg_name: Some(name),
                }
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(name) = self.pg_name.take() {
            // Drop runs outside async context: a short-lived runtime on its
            // own thread removes the database.
            let _ = std::thread::spawn(move || {
                if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    let _ = runtime.block_on(pg_admin_exec(&format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )));
                }
            })
            .join();
        }
    }
}
