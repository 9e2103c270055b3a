//! Timestamps: only instants after 1970 and before the year 10000 are
//! accepted, and stored times compare in SQL as they do in time, whatever
//! their fraction of a second (SQLite keeps them as RFC 3339 text).

use chrono::{DateTime, TimeDelta, Timelike, Utc};
use tonic::Code;

use tokend::domain::Clock;
use tokend::grpc::proto::{AuthenticateTokenRequest, CreateTokenRequest, TokenKind};

use crate::backend_tests;
use crate::hardening::authentication::scrape_metrics;
use crate::support::{
    Backend, TestResult, TestServer, all_tokens, authed, expect_error, scrape_request,
};

backend_tests!(timestamps_outside_1970_to_9999_are_refused_and_stored_times_order_as_time);

fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.nanosecond()).expect("nanos"),
    }
}

fn pat(name: &str, expire_time: prost_types::Timestamp) -> CreateTokenRequest {
    CreateTokenRequest {
        kind: TokenKind::PersonalAccess as i32,
        name: name.to_owned(),
        expire_time: Some(expire_time),
        ..CreateTokenRequest::default()
    }
}

async fn timestamps_outside_1970_to_9999_are_refused_and_stored_times_order_as_time(
    backend: Backend,
) -> TestResult {
    let server = TestServer::start(backend).await;
    let admin = server.admin("acme");
    let mut client = server.client();
    let scrape = client
        .create_token(authed(scrape_request("prom"), &admin))
        .await?
        .into_inner();

    // 10000-01-01T00:00:00Z and later, and the epoch and earlier: refused on
    // expire_time, with the value echoed; nothing is written.
    const YEAR_10000: i64 = 253_402_300_800;
    for (seconds, nanos, echoed) in [
        (YEAR_10000, 0, "+10000-01-01T00:00:00+00:00"),
        (
            YEAR_10000 + 86_400 * 366,
            5,
            "+10001-01-01T00:00:00.000000005+00:00",
        ),
        (1_000_000_000_000, 0, "+33658-09-27T01:46:40+00:00"),
        (0, 0, "1970-01-01T00:00:00+00:00"),
        (-1, 999_999_999, "1969-12-31T23:59:59.999999999+00:00"),
    ] {
        let details = expect_error(
            client
                .create_token(authed(
                    pat("far", prost_types::Timestamp { seconds, nanos }),
                    &admin,
                ))
                .await,
            Code::InvalidArgument,
            "INVALID_FIELD",
        );
        assert_eq!(details.problem.errors.len(), 1, "{echoed}");
        let error = &details.problem.errors[0];
        assert_eq!(error.location, "expire_time", "{echoed}");
        assert_eq!(
            error.message,
            "must be after 1970-01-01T00:00:00Z and before 10000-01-01T00:00:00Z"
        );
        assert_eq!(error.value, echoed);
    }
    // Beyond what a timestamp can hold at all.
    for (seconds, nanos) in [(i64::MAX, 0), (1, -1), (1, 1_000_000_000)] {
        let details = expect_error(
            client
                .create_token(authed(
                    pat("broken", prost_types::Timestamp { seconds, nanos }),
                    &admin,
                ))
                .await,
            Code::InvalidArgument,
            "INVALID_FIELD",
        );
        assert_eq!(details.field_violations.len(), 1);
        assert_eq!(details.field_violations[0].0, "expire_time");
    }
    assert_eq!(
        all_tokens(&server, &admin).await?.len(),
        1,
        "nothing written"
    );

    // The last instant of 9999 is accepted, authenticates and counts as
    // active in SQL as well as in the core.
    let last = client
        .create_token(authed(
            pat(
                "last",
                prost_types::Timestamp {
                    seconds: YEAR_10000 - 1,
                    nanos: 999_999_999,
                },
            ),
            &admin,
        ))
        .await?
        .into_inner();

    // Expiries a whole second, a nanosecond, 123456 µs, 500 ms and 999999999
    // ns past one whole second: stored as text of different lengths.
    let now = server.clock.now();
    let base = DateTime::from_timestamp(now.timestamp() + 60, 0).expect("a time");
    let mut expiring = Vec::new();
    for (name, offset) in [
        ("whole", TimeDelta::zero()),
        ("nano", TimeDelta::nanoseconds(1)),
        ("micro", TimeDelta::microseconds(123_456)),
        ("half", TimeDelta::milliseconds(500)),
        ("almost", TimeDelta::nanoseconds(999_999_999)),
    ] {
        let created = client
            .create_token(authed(pat(name, timestamp(base + offset)), &admin))
            .await?
            .into_inner();
        expiring.push((name, offset, created.secret));
    }
    // Exactly at base + 500 ms: expiries at or before it are expired.
    server
        .clock
        .advance(base + TimeDelta::milliseconds(500) - now);
    let introspector = server.introspector();
    let mut expired_in_core = 0;
    for (name, offset, secret) in &expiring {
        let result = client
            .authenticate_token(authed(
                AuthenticateTokenRequest {
                    secret: secret.clone(),
                    ..Default::default()
                },
                &introspector,
            ))
            .await;
        if *offset <= TimeDelta::milliseconds(500) {
            expect_error(result, Code::Unauthenticated, "TOKEN_EXPIRED");
            expired_in_core += 1;
        } else {
            assert!(result.is_ok(), "{name}: {result:?}");
        }
    }
    assert_eq!(expired_in_core, 4);
    client
        .authenticate_token(authed(
            AuthenticateTokenRequest {
                secret: last.secret,
                ..Default::default()
            },
            &introspector,
        ))
        .await?;

    // The SQL count agrees with the core: 4 expired, "almost" and "last"
    // active.
    let (status, body) = scrape_metrics(&server, &scrape.secret).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("tokend_tokens{kind=\"personal_access\",state=\"expired\"} 4"),
        "{body}"
    );
    assert!(
        body.contains("tokend_tokens{kind=\"personal_access\",state=\"active\"} 2"),
        "{body}"
    );
    Ok(())
}
