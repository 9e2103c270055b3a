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
use crate::domain::{Clock, ServiceError, TokenKind, TokenLifecycle};
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

fn problem(status: StatusCode, reason: &str, detail: &str) -> Response {
    let body = serde_json::json!({
        "type": format!("urn:tokend:problem:{}", reason.to_ascii_lowercase().replace('_', "-")),
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail,
        "reason": reason,
    });
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/problem+json"),
    );
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"tokend-metrics\""),
        );
    }
    response
}

async fn scrape(State(state): State<MetricsState>, headers: HeaderMap) -> Response {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let Some(presented) = presented else {
        return problem(
            StatusCode::UNAUTHORIZED,
            "TOKEN_MISSING",
            "a scrape token is required as a bearer token",
        );
    };
    let now = state.clock.now();
    let token = match state.lifecycle.authenticate_secret(now, presented).await {
        Ok(token) if token.kind == TokenKind::Scrape => token,
        // Another family's token is not a scrape token: same answer as unknown.
        Ok(_) | Err(ServiceError::TokenRejected(TokenRejection::Unknown)) => {
            return problem(
                StatusCode::UNAUTHORIZED,
                "TOKEN_UNKNOWN",
                "the token is not a known scrape token",
            );
        }
        Err(ServiceError::TokenRejected(TokenRejection::Revoked)) => {
            return problem(
                StatusCode::UNAUTHORIZED,
                "TOKEN_REVOKED",
                "the scrape token has been revoked",
            );
        }
        Err(ServiceError::TokenRejected(TokenRejection::Expired)) => {
            return problem(
                StatusCode::UNAUTHORIZED,
                "TOKEN_EXPIRED",
                "the scrape token has expired",
            );
        }
        Err(ServiceError::TokenRejected(TokenRejection::Malformed(_))) => {
            return problem(
                StatusCode::UNAUTHORIZED,
                "TOKEN_MALFORMED",
                "the bearer token is not a tokend secret",
            );
        }
        Err(error @ ServiceError::Unavailable { .. }) => {
            tracing::warn!(error = %error, "metrics scrape: database unavailable");
            return problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "DATABASE_UNAVAILABLE",
                "the database is unavailable",
            );
        }
        Err(error) => {
            tracing::error!(error = %error, "metrics scrape failed");
            return problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL",
                "internal error",
            );
        }
    };
    let counts = match state.lifecycle.token_counts(&token.org_id, now).await {
        Ok(counts) => counts,
        Err(error) => {
            tracing::error!(error = %error, "metrics scrape: counting tokens failed");
            return problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "DATABASE_UNAVAILABLE",
                "the database is unavailable",
            );
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
            tracing::error!(error = %error, "metrics rendering failed");
            problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL",
                "internal error",
            )
        }
    }
}
