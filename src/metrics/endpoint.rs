//! `GET /api/metrics/prometheus`, authenticated by a scrape token of the
//! organisation whose token counts it shows. Failures are
//! `application/problem+json` documents.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::domain::error::TokenRejection;
use crate::identity::bearer_token;
use chrono::{DateTime, Utc};

use crate::domain::{AcceptedFamilies, Clock, ServiceError, Token, TokenKind, TokenLifecycle};
use crate::metrics::Metrics;
use crate::store::SeaStore;

/// The path Prometheus scrapes.
pub const METRICS_PATH: &str = "/api/metrics/prometheus";

/// What the handler needs.
#[derive(Clone, Debug)]
pub struct MetricsState {
    /// The core, to authenticate scrape tokens and count tokens.
    pub lifecycle: Arc<TokenLifecycle<SeaStore>>,
    /// The registry.
    pub metrics: Arc<Metrics>,
    /// Time.
    pub clock: Arc<dyn Clock>,
}

/// The router of the HTTP listener.
pub fn router(state: MetricsState) -> Router {
    Router::new()
        .route(METRICS_PATH, get(scrape))
        .with_state(state)
}

/// One refusal of the endpoint, as a problem+json document with the same
/// types, titles and reasons as the gRPC `Problem`.
#[derive(Clone, Copy, Debug)]
enum Refusal {
    Missing,
    Malformed,
    Unknown,
    Revoked,
    Expired,
    Unavailable,
    Internal,
}

impl Refusal {
    fn describe(self) -> (StatusCode, &'static str, &'static str, &'static str) {
        match self {
            Refusal::Missing => (
                StatusCode::UNAUTHORIZED,
                "TOKEN_MISSING",
                "Token missing",
                "a scrape token is required as a bearer token",
            ),
            Refusal::Malformed => (
                StatusCode::UNAUTHORIZED,
                "TOKEN_MALFORMED",
                "Token malformed",
                "the bearer token is not a tokend secret",
            ),
            Refusal::Unknown => (
                StatusCode::UNAUTHORIZED,
                "TOKEN_UNKNOWN",
                "Token unknown",
                "the token is not a known scrape token",
            ),
            Refusal::Revoked => (
                StatusCode::UNAUTHORIZED,
                "TOKEN_REVOKED",
                "Token revoked",
                "the scrape token has been revoked",
            ),
            Refusal::Expired => (
                StatusCode::UNAUTHORIZED,
                "TOKEN_EXPIRED",
                "Token expired",
                "the scrape token has expired",
            ),
            Refusal::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "DATABASE_UNAVAILABLE",
                "Database unavailable",
                "the database is unavailable",
            ),
            Refusal::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL",
                "Internal error",
                "internal error",
            ),
        }
    }
}

fn problem(refusal: Refusal, request_id: &str) -> Response {
    let (status, reason, title, detail) = refusal.describe();
    let body = serde_json::json!({
        "type": format!("urn:tokend:problem:{}", reason.to_ascii_lowercase().replace('_', "-")),
        "title": title,
        "status": status.as_u16(),
        "detail": detail,
        "instance": format!("urn:tokend:request:{request_id}"),
        "request_id": request_id,
        "reason": reason,
    });
    let mut response = (status, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/problem+json"),
    );
    if let Ok(value) = header::HeaderValue::from_str(request_id) {
        headers.insert("x-request-id", value);
    }
    if status == StatusCode::UNAUTHORIZED {
        headers.insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"tokend-metrics\""),
        );
    }
    response
}

async fn scrape(State(state): State<MetricsState>, headers: HeaderMap) -> Response {
    let request_id = uuid::Uuid::now_v7().to_string();
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token);
    let Some(presented) = presented else {
        return problem(Refusal::Missing, &request_id);
    };
    let now = state.clock.now();
    let scrape_only = AcceptedFamilies::Only(TokenKind::Scrape);
    let refusal = match state
        .lifecycle
        .authenticate_secret(now, presented, scrape_only)
        .await
    {
        Ok(token) if token.kind == TokenKind::Scrape => {
            return render(&state, &token, now, &request_id).await;
        }
        // Another family's token is not a scrape token: same answer as unknown.
        Ok(_) | Err(ServiceError::TokenRejected(TokenRejection::Unknown)) => Refusal::Unknown,
        Err(ServiceError::TokenRejected(TokenRejection::Revoked)) => Refusal::Revoked,
        Err(ServiceError::TokenRejected(TokenRejection::Expired)) => Refusal::Expired,
        Err(ServiceError::TokenRejected(TokenRejection::Malformed(_))) => Refusal::Malformed,
        Err(error @ ServiceError::Unavailable { .. }) => {
            tracing::warn!(request_id, error = %error, "metrics scrape: database unavailable");
            Refusal::Unavailable
        }
        Err(error) => {
            tracing::error!(request_id, error = %error, "metrics scrape failed");
            Refusal::Internal
        }
    };
    problem(refusal, &request_id)
}

/// The metrics body for an authenticated scrape token's organisation.
async fn render(
    state: &MetricsState,
    token: &Token,
    now: DateTime<Utc>,
    request_id: &str,
) -> Response {
    let counts = match state.lifecycle.token_counts(&token.org_id, now).await {
        Ok(counts) => counts,
        Err(error) => {
            tracing::warn!(request_id, error = %error, "metrics scrape: counting tokens failed");
            return problem(Refusal::Unavailable, request_id);
        }
    };
    if let Some((size, idle)) = state.lifecycle.repository().pool_status() {
        state.metrics.set_pool(size, idle);
    }
    match state.metrics.render(&counts) {
        Ok(text) => {
            let mut response = (StatusCode::OK, text).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        Err(error) => {
            tracing::error!(request_id, error = %error, "metrics rendering failed");
            problem(Refusal::Internal, request_id)
        }
    }
}
