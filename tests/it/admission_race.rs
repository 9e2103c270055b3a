//! The failed-authentication budget holds against concurrent requests: a
//! request reserves one failure before anything is looked up, so a burst of
//! simultaneous bad scrapes from one address reaches the database at most
//! `burst` times.

use std::net::SocketAddr;

use tokio::task::JoinSet;

use crate::http_client::{SECOND_PEER, get, get_from};
use crate::support::{Backend, TestResult, TestServer};

const BURST: usize = 3;
const CONCURRENT: usize = 24;

/// Statements the store has run, by the operator figures.
async fn statements(http: SocketAddr) -> f64 {
    let text = get(http, "/metrics", &[]).await.body;
    crate::http_client::samples(&text)
        .into_iter()
        .filter(|(name, _, _)| name == "tokend_db_statements_total")
        .map(|(_, _, value)| value)
        .sum()
}

fn fake_bearer() -> String {
    let fake =
        tokend::domain::TokenSecret::generate(tokend::domain::TokenKind::Scrape).expect("a secret");
    format!("Bearer {}", fake.expose())
}

crate::backend_tests!(
    concurrent_bad_scrapes_from_one_address_reach_the_database_at_most_burst_times
);

async fn concurrent_bad_scrapes_from_one_address_reach_the_database_at_most_burst_times(
    backend: Backend,
) -> TestResult {
    let server = TestServer::start_with(
        backend,
        &[
            "--auth-failures-per-minute",
            "1",
            "--auth-failure-burst",
            "3",
            "--health-check-interval",
            "1h",
        ],
    )
    .await;
    let path = "/api/metrics/prometheus";

    // What one failed scrape costs the database, from another address.
    let before = statements(server.http_addr).await;
    let response = get_from(
        Some(SECOND_PEER),
        server.http_addr,
        path,
        &[("Authorization", &fake_bearer())],
    )
    .await;
    assert_eq!(response.status, 401, "{}", response.body);
    let per_failure = statements(server.http_addr).await - before;
    assert!(per_failure >= 1.0, "an unknown secret is looked up");

    let before = statements(server.http_addr).await;
    let mut scrapes = JoinSet::new();
    for _ in 0..CONCURRENT {
        let http = server.http_addr;
        let bearer = fake_bearer();
        scrapes.spawn(async move { get(http, path, &[("Authorization", &bearer)]).await.status });
    }
    let mut unauthorized = 0;
    let mut throttled = 0;
    while let Some(status) = scrapes.join_next().await {
        match status? {
            401 => unauthorized += 1,
            429 => throttled += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(
        unauthorized <= BURST,
        "{unauthorized} scrapes were looked up"
    );
    assert_eq!(unauthorized + throttled, CONCURRENT);
    let spent = statements(server.http_addr).await - before;
    assert!(
        spent <= per_failure * BURST as f64,
        "{spent} statements for at most {BURST} lookups of {per_failure}"
    );
    Ok(())
}
