//! One call of a workload, with its check: what it sends, which status it
//! expects, and what a right answer looks like.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokend::domain::TokenKind;
use tokend::grpc::proto;
use tokend::grpc::proto::token_service_client::TokenServiceClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;
use tonic::{Code, Request};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::cli::Workload;
use crate::seed::{Seeded, Target};
use crate::server::READINESS;

/// What every worker shares: the pools, the callers' JWTs, and the cursor
/// of the current single-use pool.
pub(crate) struct Shared {
    pub(crate) seeded: Seeded,
    /// `Bearer …` of the API gateway (`tokens_introspect`).
    pub(crate) gateway: MetadataValue<Ascii>,
    /// `Bearer …` of an admin of the seeded org.
    pub(crate) admin: MetadataValue<Ascii>,
    pub(crate) cursor: AtomicUsize,
    pub(crate) exhausted: AtomicBool,
}

/// How one call went.
pub(crate) enum Outcome {
    Ok,
    /// A non-OK status the workload asked for (unknown/revoked secrets).
    Expected(Code),
    Unexpected(Code, String),
    /// The workload's pool of single-use tokens ran out.
    Exhausted,
}

fn check<T>(
    result: Result<tonic::Response<T>, tonic::Status>,
    expected: Code,
    verify: impl FnOnce(&T) -> Result<(), String>,
) -> Outcome {
    match result {
        Ok(response) => {
            if expected != Code::Ok {
                return Outcome::Unexpected(Code::Ok, "OK where an error was expected".into());
            }
            match verify(response.get_ref()) {
                Ok(()) => Outcome::Ok,
                Err(why) => Outcome::Unexpected(Code::Ok, why),
            }
        }
        Err(status) if status.code() == expected => Outcome::Expected(status.code()),
        Err(status) => Outcome::Unexpected(status.code(), status.message().to_owned()),
    }
}

/// xorshift64*: cheap, per worker, and the same draws in every run.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % (n.max(1) as u64)) as usize
    }
}

fn with_auth<T>(message: T, auth: &MetadataValue<Ascii>) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert("authorization", auth.clone());
    request
}

/// One worker's clients, on one of the shared connections.
pub(crate) struct Clients {
    pub(crate) tokens: TokenServiceClient<Channel>,
    pub(crate) health: HealthClient<Channel>,
}

/// Makes one call of `workload` and checks its answer. `worker` and `seq`
/// make created names unique.
pub(crate) async fn one_call(
    workload: Workload,
    shared: &Shared,
    clients: &mut Clients,
    rng: &mut Rng,
    worker: usize,
    seq: u64,
) -> Outcome {
    let s = &shared.seeded;
    let authenticate = |secret: &str| {
        with_auth(
            proto::AuthenticateTokenRequest {
                secret: secret.to_owned(),
                ..Default::default()
            },
            &shared.gateway,
        )
    };
    match workload {
        Workload::Health => {
            let result = clients
                .health
                .check(HealthCheckRequest {
                    service: READINESS.to_owned(),
                })
                .await;
            check(result, Code::Ok, |r| {
                (r.status == ServingStatus::Serving as i32)
                    .then_some(())
                    .ok_or_else(|| "not SERVING".to_owned())
            })
        }
        Workload::AuthHit => {
            let (id, secret) = &s.hits[rng.below(s.hits.len())];
            let result = clients
                .tokens
                .authenticate_token(authenticate(secret))
                .await;
            check(result, Code::Ok, |r| {
                (r.token.as_ref().map(|t| t.id) == Some(*id))
                    .then_some(())
                    .ok_or_else(|| "wrong token returned".to_owned())
            })
        }
        Workload::AuthMiss => {
            let secret = &s.unknown[rng.below(s.unknown.len())];
            let result = clients
                .tokens
                .authenticate_token(authenticate(secret))
                .await;
            check(result, Code::Unauthenticated, |_| Ok(()))
        }
        Workload::AuthMix => {
            let roll = rng.below(100);
            let (secret, expected) = if roll < 80 {
                (&s.hits[rng.below(s.hits.len())].1, Code::Ok)
            } else if roll < 90 {
                (
                    &s.revoked[rng.below(s.revoked.len())],
                    Code::Unauthenticated,
                )
            } else {
                (
                    &s.unknown[rng.below(s.unknown.len())],
                    Code::Unauthenticated,
                )
            };
            let result = clients
                .tokens
                .authenticate_token(authenticate(secret))
                .await;
            check(result, expected, |_| Ok(()))
        }
        Workload::AuthFirstUse => {
            let Some(i) = next_single_use(shared, s.cold.len()) else {
                return Outcome::Exhausted;
            };
            let result = clients
                .tokens
                .authenticate_token(authenticate(&s.cold[i]))
                .await;
            check(result, Code::Ok, |_| Ok(()))
        }
        Workload::RevokeScrape => revoke(TokenKind::Scrape, shared, clients).await,
        Workload::RevokePat => revoke(TokenKind::PersonalAccess, shared, clients).await,
        Workload::RevokeSat => revoke(TokenKind::ServiceAccount, shared, clients).await,
        Workload::RevokeWak => revoke(TokenKind::WorkspaceApiKey, shared, clients).await,
        Workload::Create => create(shared, clients, worker, seq).await,
    }
}

/// The next index of a single-use pool of `len`, if any is left.
fn next_single_use(shared: &Shared, len: usize) -> Option<usize> {
    let i = shared.cursor.fetch_add(1, Ordering::Relaxed);
    (i < len).then_some(i)
}

/// Revokes the next active token of `kind`'s pool with that kind's RPC.
async fn revoke(kind: TokenKind, shared: &Shared, clients: &mut Clients) -> Outcome {
    let pool = shared.seeded.revoke_pool(kind);
    let Some(i) = next_single_use(shared, pool.len()) else {
        return Outcome::Exhausted;
    };
    let t: &Target = &pool[i];
    let reason = "load test".to_owned();
    let revoked = |token: Option<&proto::Token>| -> Result<(), String> {
        match token {
            Some(token) if token.id == t.id && token.revoke_time.is_some() => Ok(()),
            _ => Err("revoke returned the wrong token or no revoke_time".to_owned()),
        }
    };
    let admin = &shared.admin;
    match kind {
        TokenKind::Scrape => {
            let request = proto::RevokeScrapeTokenRequest { id: t.id, reason };
            let result = clients
                .tokens
                .revoke_scrape_token(with_auth(request, admin))
                .await;
            check(result, Code::Ok, |r| revoked(r.token.as_ref()))
        }
        TokenKind::PersonalAccess => {
            let request = proto::RevokePersonalAccessTokenRequest {
                token_id: t.token_id.clone(),
                reason,
            };
            let result = clients
                .tokens
                .revoke_personal_access_token(with_auth(request, admin))
                .await;
            check(result, Code::Ok, |r| revoked(r.token.as_ref()))
        }
        TokenKind::ServiceAccount => {
            let request = proto::RevokeServiceAccountTokenRequest {
                service_account_slug: t.slug_or_workspace.clone(),
                token_slug: t.name.clone(),
                reason,
            };
            let result = clients
                .tokens
                .revoke_service_account_token(with_auth(request, admin))
                .await;
            check(result, Code::Ok, |r| revoked(r.token.as_ref()))
        }
        TokenKind::WorkspaceApiKey => {
            let request = proto::DeleteWorkspaceApiKeyRequest {
                workspace_id: t.slug_or_workspace.clone(),
                key_name: t.name.clone(),
                reason,
            };
            let result = clients
                .tokens
                .delete_workspace_api_key(with_auth(request, admin))
                .await;
            check(result, Code::Ok, |r| revoked(r.token.as_ref()))
        }
    }
}

/// Creates a token; the four kinds in turn across workers and calls.
async fn create(shared: &Shared, clients: &mut Clients, worker: usize, seq: u64) -> Outcome {
    let kind = TokenKind::ALL[(seq as usize + worker) % 4];
    let mut request = proto::CreateTokenRequest {
        name: format!("c{worker}-{seq}"),
        scopes: vec!["repo:read".to_owned()],
        ..Default::default()
    };
    match kind {
        TokenKind::Scrape => request.set_kind(proto::TokenKind::Scrape),
        TokenKind::PersonalAccess => request.set_kind(proto::TokenKind::PersonalAccess),
        TokenKind::ServiceAccount => {
            request.set_kind(proto::TokenKind::ServiceAccount);
            request.service_account_slug = "bench-sa".to_owned();
        }
        TokenKind::WorkspaceApiKey => {
            request.set_kind(proto::TokenKind::WorkspaceApiKey);
            request.workspace_id = "g-00000000ff".to_owned();
        }
    }
    let result = clients
        .tokens
        .create_token(with_auth(request, &shared.admin))
        .await;
    check(result, Code::Ok, |r| {
        (!r.secret.is_empty() && r.token.is_some())
            .then_some(())
            .ok_or_else(|| "no secret or token".to_owned())
    })
}
