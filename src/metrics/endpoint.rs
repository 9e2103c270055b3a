//! The two metrics endpoints of the HTTP listener:
//!
//! - `GET /metrics`: the operator figures, without authentication (a
//!   NetworkPolicy keeps it inside the cluster);
//! - `GET /api/metrics/prometheus`: one organisation's figures, for a scrape
//!   token of that organisation.
//!
//! Refusals are `application/problem+json` documents with the same types,
//! titles and reasons as the gRPC `Problem`, plus the legacy `error`,
//! `details` and `requestId` members. A peer that keeps failing to
//! authenticate is throttled (429) before its secret reaches the database.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};

use crate::admission::failed_auth::FailedAuthLimiter;
use crate::domain::audit::AuditContext;
use crate::domain::error::TokenRejection;
use crate::domain::problem::{Problem, ProblemKind, TOKEN_MISSING, problem_kind};
use crate::domain::repository::TokenRepository;
use crate::domain::secret::MalformedSecret;
use crate::domain::{AcceptedFamilies, Clock, ServiceError, Token, TokenKind, TokenLifecycle};
use crate::identity::bearer_token;
use crate::metrics::{Metrics, OrgAuthentications, render_tenant};
use crate::request_id::{self, REQUEST_ID_HEADER};

/// The operators' path.
pub const OPERATOR_METRICS_PATH: &str = "/metrics";
/// The tenants' path (a scrape token's organisation).
pub const TENANT_METRICS_PATH: &str = "/api/metrics/prometheus";

/// The content type of the Prometheus text format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The database pool's figures, for the operator gauges: `(open, idle)`
/// connections, or `None` when the storage has no pool to report. The
/// server passes its store's; the endpoint knows no storage type.
#[derive(Clone)]
pub struct PoolStatusSource(Arc<dyn Fn() -> Option<(u32, usize)> + Send + Sync>);

impl PoolStatusSource {
    /// A source reading `status` at every scrape.
    pub fn new(status: impl Fn() -> Option<(u32, usize)> + Send + Sync + 'static) -> Self {
        PoolStatusSource(Arc::new(status))
    }

    /// A source with nothing to report.
    pub fn none() -> Self {
        PoolStatusSource::new(|| None)
    }

    fn read(&self) -> Option<(u32, usize)> {
        (self.0)()
    }
}

impl std::fmt::Debug for PoolStatusSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PoolStatusSource")
    }
}

/// What the handlers need.
pub struct MetricsState<R> {
    /// The core, to authenticate scrape tokens and count tokens.
    pub lifecycle: Arc<TokenLifecycle<R>>,
    /// The database pool's figures.
    pub pool: PoolStatusSource,
    /// The operator registry.
    pub metrics: Arc<Metrics>,
    /// Authentications of each organisation's tokens.
    pub org_authentications: Arc<OrgAuthentications>,
    /// The per-peer limit on failed authentications.
    pub failed_auth: Arc<FailedAuthLimiter>,
    /// Time.
    pub clock: Arc<dyn Clock>,
}

// By hand: a derive would ask `R: Clone`, and only the `Arc` is cloned.
impl<R> Clone for MetricsState<R> {
    fn clone(&self) -> Self {
        MetricsState {
            lifecycle: self.lifecycle.clone(),
            pool: self.pool.clone(),
            metrics: self.metrics.clone(),
            org_authentications: self.org_authentications.clone(),
            failed_auth: self.failed_auth.clone(),
            clock: self.clock.clone(),
        }
    }
}

impl<R> std::fmt::Debug for MetricsState<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsState")
            .field("pool", &self.pool)
            .field("failed_auth", &self.failed_auth)
            .finish_non_exhaustive()
    }
}

/// The metrics routes of the HTTP listener.
pub fn router<R: TokenRepository>(state: MetricsState<R>) -> Router {
    Router::new()
        .route(OPERATOR_METRICS_PATH, get(operator::<R>))
        .route(TENANT_METRICS_PATH, get(tenant::<R>))
        .with_state(state)
}

/// One refusal of an endpoint, as a problem+json document.
#[derive(Clone, Copy, Debug)]
enum Refusal {
    Missing,
    Malformed,
    Unknown,
    Revoked,
    Expired,
    Throttled(Duration),
    /// The database is unavailable: retry after the carried wait.
    Unavailable(Duration),
    Internal,
}

impl Refusal {
    /// Whether this is a failed authentication (a 401), the refusals that
    /// spend from the peer's failure budget.
    fn is_authentication_failure(self) -> bool {
        match self {
            Refusal::Missing
            | Refusal::Malformed
            | Refusal::Unknown
            | Refusal::Revoked
            | Refusal::Expired => true,
            Refusal::Throttled(_) | Refusal::Unavailable(_) | Refusal::Internal => false,
        }
    }

    /// The kind (type, title, status, reason: the gRPC face's, from the one
    /// face-neutral table; `TOKEN_MISSING` exists only here) and the detail.
    fn describe(self) -> (ProblemKind, &'static str) {
        let rejected = |why| problem_kind(&ServiceError::TokenRejected(why));
        match self {
            Refusal::Missing => (
                TOKEN_MISSING,
                "a scrape token is required as a bearer token",
            ),
            Refusal::Malformed => (
                rejected(TokenRejection::Malformed(MalformedSecret::BadBody)),
                "the bearer token is not a tokend secret",
            ),
            Refusal::Unknown => (
                rejected(TokenRejection::Unknown),
                "the token is not a known scrape token",
            ),
            Refusal::Revoked => (
                rejected(TokenRejection::Revoked),
                "the scrape token has been revoked",
            ),
            Refusal::Expired => (
                rejected(TokenRejection::Expired),
                "the scrape token has expired",
            ),
            Refusal::Throttled(wait) => (
                problem_kind(&ServiceError::RateLimited {
                    retry_after: wait,
                    subject: String::new(),
                }),
                "too many failed authentications from this address; retry later",
            ),
            Refusal::Unavailable(wait) => (
                problem_kind(&ServiceError::Unavailable {
                    retry_after: wait,
                    source: "unavailable".into(),
                }),
                "the database is unavailable; retry shortly",
            ),
            Refusal::Internal => (
                problem_kind(&ServiceError::Internal("internal".into())),
                "internal error",
            ),
        }
    }
}

fn with_request_id(mut response: Response, request_id: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

/// The refusal as the face-neutral problem, rendered as the problem+json
/// document every HTTP face shares.
fn problem(refusal: Refusal, request_id: &str) -> Response {
    let (kind, detail) = refusal.describe();
    let mut described = Problem::new(kind, detail, request_id);
    match refusal {
        Refusal::Throttled(wait) | Refusal::Unavailable(wait) => {
            described.retry_after = Some(wait);
        }
        Refusal::Missing
        | Refusal::Malformed
        | Refusal::Unknown
        | Refusal::Revoked
        | Refusal::Expired
        | Refusal::Internal => {}
    }
    let status =
        StatusCode::from_u16(kind.http_status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, described.document().to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    if refusal.is_authentication_failure() {
        headers.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"tokend-metrics\""),
        );
    }
    if let Some(seconds) = described.retry_after_seconds() {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    with_request_id(response, request_id)
}

/// The one place that chooses the metrics endpoint's answer to a core error.
fn refusal_of(error: &ServiceError) -> Refusal {
    match error {
        ServiceError::TokenRejected(TokenRejection::Unknown) => Refusal::Unknown,
        ServiceError::TokenRejected(TokenRejection::Revoked) => Refusal::Revoked,
        ServiceError::TokenRejected(TokenRejection::Expired) => Refusal::Expired,
        ServiceError::TokenRejected(TokenRejection::Malformed(_)) => Refusal::Malformed,
        ServiceError::RateLimited { retry_after, .. } => Refusal::Throttled(*retry_after),
        ServiceError::Unavailable { retry_after, .. } => Refusal::Unavailable(*retry_after),
        // None of these can answer a scrape (no JWT, no permission, no
        // named token and no required scope is involved): if one does, it is
        // a server fault.
        ServiceError::InvalidArgument(_)
        | ServiceError::Unauthenticated(_)
        | ServiceError::PermissionDenied { .. }
        | ServiceError::ScopeMissing { .. }
        | ServiceError::NotFound(_)
        | ServiceError::AlreadyExists(_)
        | ServiceError::NotRotatable(_)
        | ServiceError::Internal(_) => Refusal::Internal,
    }
}

/// Logs a core error that became a 503 or a 500 (a 401 or 429 is the
/// client's business and is not logged).
fn log_refusal(refusal: Refusal, error: &ServiceError, request_id: &str, what: &str) {
    match refusal {
        Refusal::Unavailable(_) => {
            tracing::warn!(request_id, error = %error, "metrics scrape: {what}: database unavailable");
        }
        Refusal::Internal => {
            tracing::error!(request_id, error = %error, "metrics scrape: {what} failed");
        }
        Refusal::Missing
        | Refusal::Malformed
        | Refusal::Unknown
        | Refusal::Revoked
        | Refusal::Expired
        | Refusal::Throttled(_) => {}
    }
}

fn prometheus_text(text: String, request_id: &str) -> Response {
    let mut response = (StatusCode::OK, text).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(PROMETHEUS_TEXT),
    );
    with_request_id(response, request_id)
}

async fn operator<R: TokenRepository>(
    State(state): State<MetricsState<R>>,
    headers: HeaderMap,
) -> Response {
    let request_id = request_id::of_headers(&headers);
    if let Some((size, idle)) = state.pool.read() {
        state.metrics.set_pool(size, idle);
    }
    match state.metrics.render() {
        Ok(text) => prometheus_text(text, &request_id),
        Err(error) => {
            tracing::error!(request_id, error = %error, "metrics rendering failed");
            problem(Refusal::Internal, &request_id)
        }
    }
}

async fn tenant<R: TokenRepository>(
    State(state): State<MetricsState<R>>,
    request: Request,
) -> Response {
    let headers = request.headers();
    let request_id = request_id::of_headers(headers);
    let peer: Option<IpAddr> = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| address.ip());
    // Admitted, the scrape has already spent one failure of its address's
    // budget, before the database is read: simultaneous bad scrapes cannot
    // all pass. It is given back unless the scrape fails authentication.
    let attempt = match peer.map(|peer| state.failed_auth.admit(peer)) {
        None => None,
        Some(Ok(attempt)) => Some(attempt),
        Some(Err(throttled)) => {
            tracing::debug!(request_id, peer = %throttled.peer, "metrics scrape throttled: too many failed authentications");
            return problem(Refusal::Throttled(throttled.retry_after), &request_id);
        }
    };
    let authenticated = authenticate(&state, headers, &request_id).await;
    let refusal = match authenticated {
        Ok((token, now)) => {
            if let Some(attempt) = attempt {
                attempt.refund();
            }
            return render(&state, &token, now, &request_id).await;
        }
        Err(refusal) => refusal,
    };
    match attempt {
        Some(attempt) if !refusal.is_authentication_failure() => attempt.refund(),
        // A failed authentication: the reserved failure stays spent.
        Some(_) | None => {}
    }
    problem(refusal, &request_id)
}

/// The scrape token presented as the bearer token, or why not.
async fn authenticate<R: TokenRepository>(
    state: &MetricsState<R>,
    headers: &HeaderMap,
    request_id: &str,
) -> Result<(Token, DateTime<Utc>), Refusal> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
        .ok_or(Refusal::Missing)?;
    let now = state.clock.now();
    let scrape_only = AcceptedFamilies::Only(TokenKind::Scrape);
    // A scraper has no identity beyond its token: a revoked token's
    // `revoked_token_used` event names no actor, only the request.
    let presenter = AuditContext {
        actor: String::new(),
        request_id: request_id.to_owned(),
        now,
    };
    match state
        .lifecycle
        .authenticate_secret(&presenter, presented, scrape_only)
        .await
    {
        Ok(token) => {
            // `scrape_only` answers another family's token as unknown.
            debug_assert_eq!(token.kind, TokenKind::Scrape);
            Ok((token, now))
        }
        Err(error) => {
            let refusal = refusal_of(&error);
            log_refusal(refusal, &error, request_id, "authentication");
            Err(refusal)
        }
    }
}

/// The figures of an authenticated scrape token's organisation.
async fn render<R: TokenRepository>(
    state: &MetricsState<R>,
    token: &Token,
    now: DateTime<Utc>,
    request_id: &str,
) -> Response {
    let counts = match state.lifecycle.token_counts(&token.org_id, now).await {
        Ok(counts) => counts,
        Err(error) => {
            let refusal = refusal_of(&error);
            log_refusal(refusal, &error, request_id, "counting tokens");
            return problem(refusal, request_id);
        }
    };
    match render_tenant(&counts, &state.org_authentications, &token.org_id) {
        Ok(text) => prometheus_text(text, request_id),
        Err(error) => {
            tracing::error!(request_id, error = %error, "metrics rendering failed");
            problem(Refusal::Internal, request_id)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_internal_error_is_a_500_without_retry_after_and_unavailable_carries_its_wait() {
        let internal = ServiceError::Internal("broken invariant".into());
        let response = problem(refusal_of(&internal), "req");
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(response.headers().get(header::RETRY_AFTER).is_none());

        let unavailable = ServiceError::Unavailable {
            retry_after: Duration::from_millis(2500),
            source: "down".into(),
        };
        let response = problem(refusal_of(&unavailable), "req");
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            response.headers().get(header::RETRY_AFTER),
            Some(&HeaderValue::from_static("3"))
        );
    }

    #[test]
    fn only_the_five_token_refusals_are_authentication_failures() {
        for refusal in [
            Refusal::Missing,
            Refusal::Malformed,
            Refusal::Unknown,
            Refusal::Revoked,
            Refusal::Expired,
        ] {
            assert!(refusal.is_authentication_failure(), "{refusal:?}");
        }
        for refusal in [
            Refusal::Throttled(Duration::from_secs(1)),
            Refusal::Unavailable(Duration::from_secs(1)),
            Refusal::Internal,
        ] {
            assert!(!refusal.is_authentication_failure(), "{refusal:?}");
        }
    }
}
