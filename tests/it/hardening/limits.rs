//! Limits: a flood from one caller while another is served, rate-limiter
//! memory, a 64 KiB secret and messages over `--max-message-size`, and
//! SQLite busy.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tonic::{Code, Request, Status};

use tokend::admission::caller::CallerRateLimiter;
use tokend::domain::error::MAX_ECHOED_VALUE_BYTES;
use tokend::domain::secret::{MAX_SECRET_LEN, MalformedSecret};
use tokend::domain::{Caller, ManualClock, TokenSecret};
use tokend::grpc::proto::{AuthenticateTokenRequest, ListTokensRequest, RevokeScrapeTokenRequest};

use crate::support::scrape_request;
use crate::support::{
    Backend, TestResult, TestServer, all_tokens, assert_tokens_and_events_agree, authed, details,
    expect_error,
};

// ---------------------------------------------------------------------------
// A flood from one caller while another is served; limiter memory.
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_caller_is_limited_while_another_is_never_refused() -> TestResult {
    let server = TestServer::start_with(
        Backend::Sqlite,
        &["--rate-limit-per-second", "50", "--rate-limit-burst", "50"],
    )
    .await;
    let flooder = server.jwt("acme", "flooder", &["admin"], &[]);
    let quiet = server.jwt("acme", "quiet", &["admin"], &[]);
    let duration = Duration::from_millis(2000);
    let started = Instant::now();
    let mut floods = Vec::new();
    for _ in 0..3 {
        let mut client = server.client();
        let flooder = flooder.clone();
        floods.push(tokio::spawn(async move {
            let (mut admitted, mut limited) = (0u64, 0u64);
            while started.elapsed() < duration {
                match client
                    .list_tokens(authed(ListTokensRequest::default(), &flooder))
                    .await
                {
                    Ok(_) => admitted += 1,
                    Err(status) => {
                        let decoded = details(&status);
                        assert_eq!(
                            (decoded.code, decoded.reason.as_str()),
                            (Code::ResourceExhausted, "RATE_LIMITED")
                        );
                        assert_eq!(decoded.quota_subjects, vec!["acme/flooder".to_owned()]);
                        limited += 1;
                    }
                }
            }
            (admitted, limited)
        }));
    }
    // The quiet caller: 25 calls a second on the same connection.
    let mut client = server.client();
    let mut quiet_served = 0;
    while started.elapsed() < duration {
        client
            .list_tokens(authed(ListTokensRequest::default(), &quiet))
            .await
            .map_err(|s| format!("the quiet caller was refused: {s:?}"))?;
        quiet_served += 1;
        tokio::time::sleep(Duration::from_millis(40)).await;
        // The limiters run on the server's manual clock: it moves with the
        // quiet caller, never faster than real time, so the ceiling below
        // (from real elapsed time) still bounds the flood.
        server.clock.advance(chrono::TimeDelta::milliseconds(40));
    }
    let (mut admitted, mut limited) = (0, 0);
    for flood in floods {
        let (a, l) = flood.await?;
        admitted += a;
        limited += l;
    }
    let elapsed = started.elapsed().as_secs_f64();
    eprintln!(
        "flood over {elapsed:.2} s: {admitted} admitted, {limited} RATE_LIMITED; quiet caller served {quiet_served}"
    );
    assert!(limited > 0, "the flood was limited");
    // GCRA: at most the burst plus the rate over the elapsed time.
    let ceiling = 50.0 + 50.0 * elapsed + 5.0;
    assert!(
        (admitted as f64) <= ceiling,
        "{admitted} admitted > {ceiling}"
    );
    assert!(quiet_served >= 20, "the quiet caller kept going");
    Ok(())
}

fn caller(org: &str, subject: &str) -> Caller {
    Caller {
        org_id: org.to_owned(),
        subject: subject.to_owned(),
        roles: Default::default(),
        permissions: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limiter_state_of_ten_thousand_callers_is_dropped_once_idle() -> TestResult {
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let limiter = CallerRateLimiter::new(50, 50, clock.clone());
    for i in 0..10_000 {
        limiter
            .check(&caller("acme", &format!("caller-{i}")))
            .map_err(|e| format!("first call of caller {i}: {e}"))?;
    }
    // One caller that keeps spending its budget.
    let busy = caller("acme", "busy");
    let mut refused = 0;
    for _ in 0..60 {
        refused += usize::from(limiter.check(&busy).is_err());
    }
    assert!(refused >= 10, "the busy caller went over its burst");
    assert_eq!(limiter.tracked_callers(), 10_001);
    // One call costs 20 ms of a 50/s budget: after 100 ms every one-shot
    // caller's budget is full again, the busy caller's (1 s) is not.
    clock.advance(chrono::TimeDelta::milliseconds(100));
    limiter.forget_idle();
    assert_eq!(
        limiter.tracked_callers(),
        1,
        "only the busy caller is still tracked"
    );
    assert!(
        (0..50).any(|_| limiter.check(&busy).is_err()),
        "its limit was kept: no fresh burst"
    );
    // A dropped caller starts again with a full budget.
    limiter
        .check(&caller("acme", "caller-0"))
        .map_err(|e| e.to_string())?;
    // Off: nothing is tracked.
    let off = CallerRateLimiter::new(0, 0, clock);
    for i in 0..1000 {
        off.check(&caller("acme", &format!("c{i}")))
            .map_err(|e| e.to_string())?;
    }
    assert_eq!(off.tracked_callers(), 0);
    Ok(())
}

// ---------------------------------------------------------------------------
// A 64 KiB secret, and messages over --max-message-size.
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_secrets_are_malformed_and_oversized_messages_refused() -> TestResult {
    let server = TestServer::start(Backend::Sqlite).await;
    let introspector = server.introspector();
    let admin = server.admin("acme");
    let mut client = server.client();
    let authenticate = |secret: String| AuthenticateTokenRequest {
        secret,
        ..Default::default()
    };
    let too_long = MalformedSecret::TooLong.describe();
    // Just under the default 64 KiB message limit: refused by length alone
    // (TokenSecret::parse checks the length before prefix, body, checksum
    // or hash), even with a valid prefix.
    for secret in [
        "x".repeat(65_000),
        format!("tkd_pat_{}", "A".repeat(65_000)),
        "é".repeat(32_000),
        "x".repeat(MAX_SECRET_LEN + 1),
    ] {
        let decoded = expect_error(
            client
                .authenticate_token(authed(authenticate(secret), &introspector))
                .await,
            Code::Unauthenticated,
            "TOKEN_MALFORMED",
        );
        assert_eq!(decoded.message, too_long);
        assert!(
            decoded.field_violations.is_empty(),
            "the secret is not echoed"
        );
    }
    // Other garbage: malformed, never echoed, never UNKNOWN.
    let valid = TokenSecret::generate(tokend::domain::TokenKind::PersonalAccess)?
        .expose()
        .to_owned();
    for secret in [
        String::new(),
        " ".into(),
        "\0".into(),
        "tkd_pat_".into(),
        format!(" {valid}"),
        format!("{valid}\n"),
        valid.to_uppercase(),
        valid.replacen('a', "а", 1), // Cyrillic а
        format!("Bearer {valid}"),
    ] {
        let status = client
            .authenticate_token(authed(authenticate(secret.clone()), &introspector))
            .await
            .expect_err("refused");
        let decoded = expect_error(
            Err::<(), _>(status.clone()),
            Code::Unauthenticated,
            "TOKEN_MALFORMED",
        );
        if secret.len() > 8 {
            assert!(!status.message().contains(&secret[8..]), "not echoed");
            assert!(!format!("{:?}", decoded.problem).contains(&secret[8..]));
        }
    }
    // Exactly 64 KiB, with room for it in the message: still malformed.
    let roomy = TestServer::start_with(Backend::Sqlite, &["--max-message-size", "131072"]).await;
    let decoded = expect_error(
        roomy
            .client()
            .authenticate_token(authed(
                authenticate("x".repeat(64 * 1024)),
                &roomy.introspector(),
            ))
            .await,
        Code::Unauthenticated,
        "TOKEN_MALFORMED",
    );
    assert_eq!(decoded.message, too_long);
    // 64 KiB of secret plus its field header is over the default limit.
    let decoded = expect_error(
        client
            .authenticate_token(authed(authenticate("x".repeat(64 * 1024)), &introspector))
            .await,
        Code::OutOfRange,
        "REQUEST_REJECTED",
    );
    assert!(decoded.message.contains("too large"), "{}", decoded.message);
    // A 1 MiB name on CreateToken: refused, nothing written.
    expect_error(
        client
            .create_token(authed(scrape_request(&"n".repeat(1 << 20)), &admin))
            .await,
        Code::OutOfRange,
        "REQUEST_REJECTED",
    );
    // A lower limit is honoured: 1 KiB.
    let tight = TestServer::start_with(Backend::Sqlite, &["--max-message-size", "1024"]).await;
    let tight_admin = tight.admin("acme");
    expect_error(
        tight
            .client()
            .create_token(authed(scrape_request(&"n".repeat(2000)), &tight_admin))
            .await,
        Code::OutOfRange,
        "REQUEST_REJECTED",
    );
    // Under it, the same field is judged by validation, echoed ≤ 64 bytes.
    let decoded = expect_error(
        tight
            .client()
            .create_token(authed(scrape_request(&"n".repeat(900)), &tight_admin))
            .await,
        Code::InvalidArgument,
        "INVALID_FIELD",
    );
    assert!(
        decoded
            .problem
            .errors
            .iter()
            .all(|e| e.value.len() <= MAX_ECHOED_VALUE_BYTES)
    );
    // Without a JWT an oversized message is a JWT error: not decoded at all.
    expect_error(
        client
            .authenticate_token(Request::new(authenticate("x".repeat(100_000))))
            .await,
        Code::Unauthenticated,
        "JWT_MISSING",
    );
    for server in [&server, &tight] {
        assert_eq!(all_tokens(server, &server.admin("acme")).await?.len(), 0);
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// SQLite busy: many writers through two servers on one file.
// ---------------------------------------------------------------------------

/// OK, or UNAVAILABLE with DATABASE_UNAVAILABLE; never INTERNAL or a
/// driver's "database is locked". Returns whether it was OK.
fn ok_or_unavailable<T>(result: Result<T, Status>) -> bool {
    match result {
        Ok(_) => true,
        Err(status) => {
            let decoded = details(&status);
            assert_eq!(
                (decoded.code, decoded.reason.as_str()),
                (Code::Unavailable, "DATABASE_UNAVAILABLE"),
                "{status:?}"
            );
            assert!(!status.message().contains("locked"), "{status:?}");
            assert!(decoded.retry_delay.is_some(), "RetryInfo: {status:?}");
            false
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_busy_is_unavailable_never_internal() -> TestResult {
    // The default 5 s busy timeout, then 20 ms to make busy errors likely.
    for flags in [&[][..], &["--db-statement-timeout", "20ms"][..]] {
        let a = TestServer::start_with(Backend::Sqlite, flags).await;
        let b = TestServer::start_on(a.db.clone(), flags).await;
        let admin = a.admin("acme");
        let mut creates = Vec::new();
        for i in 0..64 {
            let mut client = if i % 2 == 0 { a.client() } else { b.client() };
            let admin = admin.clone();
            creates.push(tokio::spawn(async move {
                client
                    .create_token(authed(scrape_request(&format!("w{i}")), &admin))
                    .await
                    .map(|r| r.into_inner().token.expect("token"))
            }));
        }
        let mut created = Vec::new();
        let mut unavailable = 0;
        for call in creates {
            let result = call.await?;
            if let Ok(token) = &result {
                created.push(token.clone());
            }
            unavailable += usize::from(!ok_or_unavailable(result));
        }
        // Revoke each twice, concurrently, through both servers.
        let mut revokes = Vec::new();
        for (i, token) in created.iter().chain(created.iter()).enumerate() {
            let mut client = if i % 2 == 0 { b.client() } else { a.client() };
            let admin = admin.clone();
            let id = token.id;
            revokes.push(tokio::spawn(async move {
                client
                    .revoke_scrape_token(authed(
                        RevokeScrapeTokenRequest {
                            id,
                            reason: String::new(),
                        },
                        &admin,
                    ))
                    .await
            }));
        }
        for call in revokes {
            unavailable += usize::from(!ok_or_unavailable(call.await?));
        }
        eprintln!(
            "SQLite busy with {flags:?}: {} of 64 creates OK, {unavailable} UNAVAILABLE",
            created.len()
        );
        assert_tokens_and_events_agree(&a, &admin).await?;
        // Both replicas keep serving.
        for server in [&a, &b] {
            server
                .client()
                .list_tokens(authed(ListTokensRequest::default(), &admin))
                .await?;
        }
    }
    Ok(())
}
