//! Test harness, by concern: databases, in-process servers, the real
//! binary, caller JWTs, calls and listings, and error-detail decoding.
//! Everything is re-exported here, so tests `use crate::support::…`.

mod binary;
mod calls;
mod databases;
mod details;
mod jwts;
mod servers;

pub use binary::*;
pub use calls::*;
pub use databases::*;
pub use details::*;
pub use jwts::*;
pub use servers::*;

pub type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// Declares backend-parametrised tests: each `async fn name(backend:
/// Backend) -> TestResult` in the calling module runs once per backend.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() -> $crate::support::TestResult {
                    super::$name($crate::support::Backend::Sqlite).await
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() -> $crate::support::TestResult {
                    if !$crate::support::postgres_available() {
                        return Ok(());
                    }
                    super::$name($crate::support::Backend::Postgres).await
                }
            )*
        }
    };
}
