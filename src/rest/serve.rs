//! Serving the REST routes on the HTTP listener: every request is admitted
//! by the [`Admission`] the gRPC JWT check shares (schema ready, the
//! per-address failed-auth budget, the bearer JWT, the per-caller rate
//! limit), decoded into its RPC's request message, converted with the gRPC
//! face's conversions into the core's input, and answered in its route's
//! wire format. Errors become the face-neutral [`Problem`] and then the
//! route's envelope ([`envelope`](crate::rest::envelope)).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, to_bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, Response, header};
use prost::{Message, Name};
use serde_json::json;
use tracing::Instrument;

use crate::admission::Admission;
use crate::domain::audit::AuditContext;
use crate::domain::error::{FieldViolation, InvalidFields, MAX_ECHOED_VALUE_BYTES};
use crate::domain::problem::{METHOD_NOT_ALLOWED, Problem, ROUTE_NOT_FOUND};
use crate::domain::repository::TokenRepository;
use crate::domain::request::{AuthenticateInput, RevokeBySecretInput, RevokeInput};
use crate::domain::validation::MAX_REPORTED_VIOLATIONS;
use crate::domain::{Caller, Clock, ServiceError, TokenLifecycle};
use crate::grpc::{convert, proto};
use crate::metrics::Metrics;
use crate::request_id;
use crate::rest::RestApi;
use crate::rest::envelope::{APPLICATION_JSON, error_response, json_response, no_content};
use crate::rest::request::RequestDecodeError;
use crate::rest::routes::{MatchedRoute, RouteMatch, Rpc, WireFormat};

/// What the REST handlers need: the same parts as the gRPC face.
pub struct RestState<R> {
    /// Routes and the JSON mapping.
    pub api: Arc<RestApi>,
    /// The core.
    pub lifecycle: Arc<TokenLifecycle<R>>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// The operator figures (revocations, authentications).
    pub metrics: Arc<Metrics>,
    /// The admission the gRPC JWT check shares.
    pub admission: Arc<Admission>,
}

// By hand: a derive would ask `R: Clone`.
impl<R> Clone for RestState<R> {
    fn clone(&self) -> Self {
        RestState {
            api: self.api.clone(),
            lifecycle: self.lifecycle.clone(),
            clock: self.clock.clone(),
            metrics: self.metrics.clone(),
            admission: self.admission.clone(),
        }
    }
}

impl<R> std::fmt::Debug for RestState<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestState").finish_non_exhaustive()
    }
}

/// The handler of every path the metrics routes do not take (the router's
/// fallback): finds the route, or answers 404 / 405 with `Allow`.
pub async fn handle<R: TokenRepository>(
    State(state): State<RestState<R>>,
    request: Request,
) -> Response<Body> {
    let request_id = request_id::of_headers(request.headers());
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().map(str::to_owned);
    let api = state.api.clone();
    let matched = match api.routes().find(&method, &path) {
        RouteMatch::Found(matched) => matched,
        RouteMatch::NotFound => {
            let problem =
                Problem::new(ROUTE_NOT_FOUND, format!("no route for {path}"), &request_id);
            return error_response(WireFormat::ProtoJson, &problem);
        }
        RouteMatch::MethodNotAllowed { allowed } => {
            let problem = Problem::new(
                METHOD_NOT_ALLOWED,
                format!("{method} is not allowed on {path}"),
                &request_id,
            );
            let mut response = error_response(WireFormat::ProtoJson, &problem);
            let allow: Vec<&str> = allowed.iter().map(Method::as_str).collect();
            if let Ok(value) = HeaderValue::from_str(&allow.join(", ")) {
                response.headers_mut().insert(header::ALLOW, value);
            }
            return response;
        }
    };
    let rpc = matched.route().rpc();
    let format = rpc.wire_format();
    let span = tracing::info_span!(
        "rest",
        request_id = %request_id,
        rpc = rpc.method_name(),
        org = tracing::field::Empty,
        caller = tracing::field::Empty,
    );
    let started = Instant::now();
    let answer = async move {
        let peer: Option<IpAddr> = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(address)| address.ip());
        let authorization = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok());
        // Admission records the caller on this request's span.
        let caller = match state.admission.admit(authorization, peer).await {
            Ok(caller) => caller,
            Err(error) => return failure(format, &error, &request_id),
        };
        // The listener's body limit applies to the stream; past it this read
        // fails.
        let body = match to_bytes(request.into_body(), usize::MAX).await {
            Ok(body) => body,
            Err(_) => {
                let error = invalid("body", "the request body could not be read (too large?)");
                return failure(format, &error, &request_id);
            }
        };
        let call = Call {
            state: &state,
            caller,
            request_id: &request_id,
            matched: &matched,
            query: query.as_deref(),
            body: &body,
        };
        match call.dispatch(rpc).await {
            Ok(response) => response,
            Err(error) => failure(format, &error, &request_id),
        }
    };
    let response = answer.instrument(span.clone()).await;
    // As gRPC's "rpc finished": a successful AuthenticateToken (the hot
    // path) logs at debug, every other request at info.
    let status = response.status().as_u16();
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    span.in_scope(|| {
        if status < 300 && rpc == Rpc::AuthenticateToken {
            tracing::debug!(status, latency_ms, "rest request finished");
        } else {
            tracing::info!(status, latency_ms, "rest request finished");
        }
    });
    response
}

/// The envelope of a core error (logged once if it is the server's).
fn failure(format: WireFormat, error: &ServiceError, request_id: &str) -> Response<Body> {
    error_response(format, &Problem::logged(error, request_id))
}

fn invalid(location: &str, message: &str) -> ServiceError {
    ServiceError::InvalidArgument(InvalidFields::one(FieldViolation::new(
        location, message, "",
    )))
}

/// A bad request as the core's validation error: every bad value, each
/// once, at most [`MAX_REPORTED_VIOLATIONS`] listed; secrets not echoed.
fn decode_error(error: RequestDecodeError) -> ServiceError {
    match error {
        RequestDecodeError::MalformedBody(_)
        | RequestDecodeError::BodyNotObject
        | RequestDecodeError::BodyNotAllowed => invalid("body", &error.to_string()),
        RequestDecodeError::Fields(violations) => {
            let count = violations.len();
            let listed: Vec<FieldViolation> = violations
                .into_iter()
                .take(MAX_REPORTED_VIOLATIONS)
                .map(|v| {
                    let violation =
                        |echoed: &str| FieldViolation::new(&v.field, &v.message, echoed);
                    match &v.received {
                        // A secret is never echoed.
                        _ if v.field == "secret" => violation(""),
                        serde_json::Value::Null => violation(""),
                        serde_json::Value::String(text) => violation(text),
                        other => {
                            let text = other.to_string();
                            if text.len() <= MAX_ECHOED_VALUE_BYTES {
                                violation(&text).with_received_json(other.clone())
                            } else {
                                violation(&text)
                            }
                        }
                    }
                })
                .collect();
            let unlisted = count - listed.len();
            ServiceError::InvalidArgument(InvalidFields { listed, unlisted })
        }
        RequestDecodeError::Typed(error) => ServiceError::Internal(Box::new(error)),
    }
}

/// One admitted request.
struct Call<'a, R> {
    state: &'a RestState<R>,
    caller: Arc<Caller>,
    request_id: &'a str,
    matched: &'a MatchedRoute<'a>,
    query: Option<&'a str>,
    body: &'a [u8],
}

impl<R: TokenRepository> Call<'_, R> {
    fn decode<T: Message + Default + Name>(&self) -> Result<T, ServiceError> {
        self.matched
            .decode_as::<T>(self.query, self.body)
            .map_err(decode_error)
    }

    fn audit(&self) -> AuditContext {
        AuditContext {
            actor: self.caller.subject.clone(),
            request_id: self.request_id.to_owned(),
            now: self.state.clock.now(),
        }
    }

    /// 200 with `message` in the proto3 JSON mapping.
    fn message<T: Message + Name>(&self, message: &T) -> Result<Response<Body>, ServiceError> {
        let json = self
            .state
            .api
            .json()
            .to_json(message)
            .map_err(|e| ServiceError::Internal(Box::new(e)))?;
        let mut response = Response::new(Body::from(json));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(APPLICATION_JSON),
        );
        Ok(crate::rest::envelope::with_request_id(
            response,
            self.request_id,
        ))
    }

    /// Every RPC, matched exhaustively.
    async fn dispatch(&self, rpc: Rpc) -> Result<Response<Body>, ServiceError> {
        match rpc {
            Rpc::CreateToken => {
                let input = convert::create_token_input(self.decode()?);
                let (token, secret) = self
                    .state
                    .lifecycle
                    .create_token(&self.caller, &self.audit(), input)
                    .await?;
                self.message(&proto::CreateTokenResponse {
                    token: Some(convert::token(&token)),
                    secret: secret.expose().to_owned(),
                })
            }
            Rpc::GetToken => {
                let request: proto::GetTokenRequest = self.decode()?;
                let token = self
                    .state
                    .lifecycle
                    .get_token(&self.caller, request.id)
                    .await?;
                self.message(&proto::GetTokenResponse {
                    token: Some(convert::token(&token)),
                })
            }
            Rpc::ListTokens => {
                let input = convert::list_tokens_input(self.decode()?);
                let page = self
                    .state
                    .lifecycle
                    .list_tokens(&self.caller, self.state.clock.now(), input)
                    .await?;
                self.message(&proto::ListTokensResponse {
                    tokens: page.items.iter().map(convert::token).collect(),
                    next_page_token: page.next_page_token.unwrap_or_default(),
                })
            }
            Rpc::RevokeScrapeToken => {
                let request: proto::RevokeScrapeTokenRequest = self.decode()?;
                let input = RevokeInput::Scrape {
                    id: request.id,
                    reason: request.reason,
                };
                self.revoke(input).await?;
                Ok(no_content(self.request_id))
            }
            Rpc::RevokePersonalAccessToken => {
                let request: proto::RevokePersonalAccessTokenRequest = self.decode()?;
                let input = RevokeInput::PersonalAccess {
                    token_id: request.token_id,
                    reason: request.reason,
                };
                self.revoke(input).await?;
                Ok(no_content(self.request_id))
            }
            Rpc::RevokeServiceAccountToken => {
                let request: proto::RevokeServiceAccountTokenRequest = self.decode()?;
                let input = RevokeInput::ServiceAccount {
                    service_account_slug: request.service_account_slug,
                    token_slug: request.token_slug,
                    reason: request.reason,
                };
                self.revoke(input).await?;
                Ok(no_content(self.request_id))
            }
            Rpc::DeleteWorkspaceApiKey => {
                let request: proto::DeleteWorkspaceApiKeyRequest = self.decode()?;
                let input = RevokeInput::WorkspaceApiKey {
                    workspace_id: request.workspace_id,
                    key_name: request.key_name,
                    reason: request.reason,
                };
                let token = self.revoke(input).await?;
                let body = json!({
                    "keyName": token.name,
                    "workspaceId": token.workspace_id,
                });
                Ok(json_response(200, APPLICATION_JSON, &body, self.request_id))
            }
            Rpc::AuthenticateToken => {
                let request: proto::AuthenticateTokenRequest = self.decode()?;
                let input = AuthenticateInput {
                    secret: request.secret,
                    required_scopes: request.required_scopes,
                };
                let result = self
                    .state
                    .lifecycle
                    .authenticate_token(&self.caller, &self.audit(), input)
                    .await;
                self.state.metrics.record_authentication(&result);
                self.message(&proto::AuthenticateTokenResponse {
                    token: Some(convert::token(&result?)),
                })
            }
            Rpc::ListAuditEvents => {
                let input = convert::list_audit_events_input(self.decode()?);
                let page = self
                    .state
                    .lifecycle
                    .list_audit_events(&self.caller, input)
                    .await?;
                self.message(&proto::ListAuditEventsResponse {
                    audit_events: page.items.iter().map(convert::audit_event).collect(),
                    next_page_token: page.next_page_token.unwrap_or_default(),
                })
            }
            Rpc::RotateToken => {
                let input = convert::rotate_token_input(self.decode()?);
                let rotated = self
                    .state
                    .lifecycle
                    .rotate_token(&self.caller, &self.audit(), input)
                    .await?;
                self.message(&proto::RotateTokenResponse {
                    token: Some(convert::token(&rotated.token)),
                    secret: rotated.secret.expose().to_owned(),
                    previous: Some(convert::token(&rotated.previous)),
                })
            }
            Rpc::GetTokenPolicy => {
                let _request: proto::GetTokenPolicyRequest = self.decode()?;
                let policy = self.state.lifecycle.get_token_policy(&self.caller).await?;
                self.message(&proto::GetTokenPolicyResponse {
                    policy: Some(convert::token_policy(&policy)),
                })
            }
            Rpc::UpdateTokenPolicy => {
                let request: proto::UpdateTokenPolicyRequest = self.decode()?;
                let input = convert::token_policy_input(request.policy);
                let policy = self
                    .state
                    .lifecycle
                    .update_token_policy(&self.caller, &self.audit(), input)
                    .await?;
                self.message(&proto::UpdateTokenPolicyResponse {
                    policy: Some(convert::token_policy(&policy)),
                })
            }
            Rpc::RevokeTokenBySecret => {
                let request: proto::RevokeTokenBySecretRequest = self.decode()?;
                let input = RevokeBySecretInput {
                    secret: request.secret,
                    reason: request.reason,
                };
                let revoked = self
                    .state
                    .lifecycle
                    .revoke_token_by_secret(&self.caller, &self.audit(), input)
                    .await?;
                if revoked.newly_revoked {
                    self.state.metrics.record_revocation(revoked.token.kind);
                }
                self.message(&proto::RevokeTokenBySecretResponse {
                    token: Some(convert::token(&revoked.token)),
                })
            }
            Rpc::RevokeTokens => {
                let input = convert::revoke_tokens_input(self.decode()?);
                let outcome = self
                    .state
                    .lifecycle
                    .revoke_tokens(&self.caller, &self.audit(), input)
                    .await?;
                if !outcome.dry_run {
                    for token in &outcome.tokens {
                        self.state.metrics.record_revocation(token.kind);
                    }
                }
                self.message(&convert::revoke_tokens_response(&outcome))
            }
        }
    }

    async fn revoke(&self, input: RevokeInput) -> Result<proto::Token, ServiceError> {
        let revoked = self
            .state
            .lifecycle
            .revoke_token(&self.caller, &self.audit(), input)
            .await?;
        if revoked.newly_revoked {
            self.state.metrics.record_revocation(revoked.token.kind);
        }
        Ok(convert::token(&revoked.token))
    }
}
