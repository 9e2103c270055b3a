//! Enumeration: another org's id and a missing id look the same.

use std::time::{Duration, Instant};

use tonic::{Code, Status};

use tokend::grpc::proto::{
    CreateTokenRequest, GetTokenRequest, RevokePersonalAccessTokenRequest,
    RevokeScrapeTokenRequest, TokenKind,
};

use crate::backend_tests;
use crate::support::scrape_request;
use crate::support::{Backend, TestResult, TestServer, all_tokens, authed, details};

backend_tests!(foreign_and_missing_ids_are_indistinguishable);

/// The parts of an error a prober sees, with the probed identifier and the
/// per-request ids taken out.
fn probe_view(status: &Status, probed: &str) -> String {
    let mut decoded = details(status);
    assert!(
        decoded.message.contains(probed),
        "the message names what was asked for: {}",
        decoded.message
    );
    decoded.request_id.clear();
    decoded.problem.request_id.clear();
    decoded.problem.instance.clear();
    format!("{decoded:?}").replace(probed, "<id>")
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Times `rounds` calls each of `foreign` and `missing`, interleaved (so
/// that noise hits both alike); returns the medians.
async fn medians<F, Fut>(rounds: usize, mut call: F) -> (Duration, Duration)
where
    F: FnMut(bool) -> Fut,
    Fut: Future<Output = ()>,
{
    let (mut foreign, mut missing) = (Vec::new(), Vec::new());
    for round in 0..rounds + 20 {
        for probe_foreign in [round % 2 == 0, round % 2 != 0] {
            let started = Instant::now();
            call(probe_foreign).await;
            let elapsed = started.elapsed();
            // The first 20 rounds warm caches and connections up.
            if round >= 20 {
                if probe_foreign {
                    foreign.push(elapsed);
                } else {
                    missing.push(elapsed);
                }
            }
        }
    }
    (median(foreign), median(missing))
}

fn within_factor(what: &str, (foreign, missing): (Duration, Duration), factor: f64) {
    eprintln!("{what}: median foreign {foreign:?}, missing {missing:?}");
    let (low, high) = if foreign < missing {
        (foreign, missing)
    } else {
        (missing, foreign)
    };
    assert!(
        high.as_secs_f64() <= low.as_secs_f64() * factor,
        "{what}: medians differ by more than {factor}×: foreign {foreign:?}, missing {missing:?}"
    );
}

async fn foreign_and_missing_ids_are_indistinguishable(backend: Backend) -> TestResult {
    let server = TestServer::start(backend).await;
    let owner = server.admin("acme");
    let prober = server.admin("evil");
    let mut client = server.client();
    // Ten tokens so that the foreign id (10) and the missing one (97) have
    // the same number of digits: the answers are then the same length too.
    let mut last = None;
    for i in 0..10 {
        last = client
            .create_token(authed(scrape_request(&format!("t{i}")), &owner))
            .await?
            .into_inner()
            .token;
    }
    let foreign_id = last.expect("token").id;
    let missing_id = 97;
    assert_eq!(foreign_id.to_string().len(), missing_id.to_string().len());
    let pat = client
        .create_token(authed(
            CreateTokenRequest {
                kind: TokenKind::PersonalAccess as i32,
                name: "laptop".into(),
                ..Default::default()
            },
            &owner,
        ))
        .await?
        .into_inner()
        .token
        .expect("token");
    let missing_uuid = uuid::Uuid::now_v7().to_string();

    let get = |id: i64| {
        let mut client = client.clone();
        let prober = prober.clone();
        async move {
            client
                .get_token(authed(GetTokenRequest { id }, &prober))
                .await
        }
    };
    let revoke = |id: i64| {
        let mut client = client.clone();
        let prober = prober.clone();
        async move {
            client
                .revoke_scrape_token(authed(
                    RevokeScrapeTokenRequest {
                        id,
                        reason: "probe".into(),
                    },
                    &prober,
                ))
                .await
        }
    };
    let revoke_pat = |token_id: String| {
        let mut client = client.clone();
        let prober = prober.clone();
        async move {
            client
                .revoke_personal_access_token(authed(
                    RevokePersonalAccessTokenRequest {
                        token_id,
                        reason: "probe".into(),
                    },
                    &prober,
                ))
                .await
        }
    };

    // Same code, reason, message shape, details (but the id), same size.
    let pairs: Vec<(&str, Status, Status, String, String)> = vec![
        (
            "GetToken",
            get(foreign_id).await.expect_err("foreign"),
            get(missing_id).await.expect_err("missing"),
            foreign_id.to_string(),
            missing_id.to_string(),
        ),
        (
            "RevokeScrapeToken",
            revoke(foreign_id).await.expect_err("foreign"),
            revoke(missing_id).await.expect_err("missing"),
            foreign_id.to_string(),
            missing_id.to_string(),
        ),
        (
            "RevokePersonalAccessToken",
            revoke_pat(pat.token_id.clone()).await.expect_err("foreign"),
            revoke_pat(missing_uuid.clone()).await.expect_err("missing"),
            pat.token_id.clone(),
            missing_uuid.clone(),
        ),
    ];
    for (rpc, foreign, missing, foreign_probe, missing_probe) in pairs {
        assert_eq!(foreign.code(), Code::NotFound, "{rpc}");
        assert_eq!(
            probe_view(&foreign, &foreign_probe),
            probe_view(&missing, &missing_probe),
            "{rpc}: another org's token and a missing one answer alike"
        );
        assert_eq!(
            foreign.details().len(),
            missing.details().len(),
            "{rpc}: details of equal size"
        );
        assert_eq!(
            foreign.message().len(),
            missing.message().len(),
            "{rpc}: messages of equal size"
        );
    }

    // Latency: medians over 200 calls each within 3× (generous: the box is
    // shared and noisy; a timing oracle worth having is far larger).
    within_factor(
        "GetToken",
        medians(200, |foreign| {
            let call = get(if foreign { foreign_id } else { missing_id });
            async move {
                assert_eq!(call.await.expect_err("not found").code(), Code::NotFound);
            }
        })
        .await,
        3.0,
    );
    within_factor(
        "RevokeScrapeToken",
        medians(200, |foreign| {
            let call = revoke(if foreign { foreign_id } else { missing_id });
            async move {
                assert_eq!(call.await.expect_err("not found").code(), Code::NotFound);
            }
        })
        .await,
        3.0,
    );
    // Nothing was changed by all that probing.
    let tokens = all_tokens(&server, &owner).await?;
    assert!(tokens.iter().all(|t| t.revoke_time.is_none()));
    Ok(())
}
