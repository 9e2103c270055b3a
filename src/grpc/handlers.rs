//! `tokend.v1.TokenService` over the domain core: each handler reads the
//! caller and request id, converts, calls the core and maps errors through
//! [`to_status`].

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::domain::audit::AuditContext;
use crate::domain::repository::TokenRepository;
use crate::domain::request::{AuthenticateInput, RevokeBySecretInput, RevokeInput};
use crate::domain::{Caller, Clock, ServiceError, TokenLifecycle};
use crate::grpc::auth::request_id_of;
use crate::grpc::convert;
use crate::grpc::proto;
use crate::grpc::proto::token_service_server::TokenService;
use crate::grpc::status::to_status;
use crate::metrics::Metrics;

/// The TokenService implementation, over any storage the core can use.
#[derive(Debug)]
pub struct TokenApi<R> {
    lifecycle: Arc<TokenLifecycle<R>>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
}

// Not derived: a derive would require `R: Clone`, and only the `Arc`s are
// cloned.
impl<R> Clone for TokenApi<R> {
    fn clone(&self) -> Self {
        TokenApi {
            lifecycle: self.lifecycle.clone(),
            clock: self.clock.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

impl<R: TokenRepository> TokenApi<R> {
    /// Serves `lifecycle` with time from `clock`.
    pub fn new(
        lifecycle: Arc<TokenLifecycle<R>>,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
    ) -> Self {
        TokenApi {
            lifecycle,
            clock,
            metrics,
        }
    }
}

/// What every handler needs from the request besides its message.
struct CallContext {
    caller: Arc<Caller>,
    request_id: String,
}

impl CallContext {
    fn of<T>(request: &Request<T>) -> Result<CallContext, Status> {
        let request_id = request_id_of(request);
        match request.extensions().get::<Arc<Caller>>() {
            Some(caller) => Ok(CallContext {
                caller: caller.clone(),
                request_id,
            }),
            // The JWT check always sets it; reaching this is a wiring bug.
            None => Err(to_status(
                &ServiceError::Internal("caller missing from request extensions".into()),
                &request_id,
            )),
        }
    }

    fn status(&self, error: ServiceError) -> Status {
        to_status(&error, &self.request_id)
    }

    fn audit(&self, clock: &dyn Clock) -> AuditContext {
        AuditContext {
            actor: self.caller.subject.clone(),
            request_id: self.request_id.clone(),
            now: clock.now(),
        }
    }
}

impl<R: TokenRepository> TokenApi<R> {
    async fn revoke(
        &self,
        context: &CallContext,
        input: RevokeInput,
    ) -> Result<proto::Token, Status> {
        let revoked = self
            .lifecycle
            .revoke_token(&context.caller, &context.audit(self.clock.as_ref()), input)
            .await
            .map_err(|e| context.status(e))?;
        if revoked.newly_revoked {
            self.metrics.record_revocation(revoked.token.kind);
        }
        Ok(convert::token(&revoked.token))
    }
}

#[tonic::async_trait]
impl<R: TokenRepository> TokenService for TokenApi<R> {
    async fn create_token(
        &self,
        request: Request<proto::CreateTokenRequest>,
    ) -> Result<Response<proto::CreateTokenResponse>, Status> {
        let context = CallContext::of(&request)?;
        let input = convert::create_token_input(request.into_inner());
        let (token, secret) = self
            .lifecycle
            .create_token(&context.caller, &context.audit(self.clock.as_ref()), input)
            .await
            .map_err(|e| context.status(e))?;
        Ok(Response::new(proto::CreateTokenResponse {
            token: Some(convert::token(&token)),
            secret: secret.expose().to_owned(),
        }))
    }

    async fn get_token(
        &self,
        request: Request<proto::GetTokenRequest>,
    ) -> Result<Response<proto::GetTokenResponse>, Status> {
        let context = CallContext::of(&request)?;
        let token = self
            .lifecycle
            .get_token(&context.caller, request.get_ref().id)
            .await
            .map_err(|e| context.status(e))?;
        Ok(Response::new(proto::GetTokenResponse {
            token: Some(convert::token(&token)),
        }))
    }

    async fn list_tokens(
        &self,
        request: Request<proto::ListTokensRequest>,
    ) -> Result<Response<proto::ListTokensResponse>, Status> {
        let context = CallContext::of(&request)?;
        let page = self
            .lifecycle
            .list_tokens(
                &context.caller,
                self.clock.now(),
                convert::list_tokens_input(request.into_inner()),
            )
            .await
            .map_err(|e| context.status(e))?;
        Ok(Response::new(proto::ListTokensResponse {
            tokens: page.items.iter().map(convert::token).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn revoke_scrape_token(
        &self,
        request: Request<proto::RevokeScrapeTokenRequest>,
    ) -> Result<Response<proto::RevokeScrapeTokenResponse>, Status> {
        let context = CallContext::of(&request)?;
        let message = request.into_inner();
        let input = RevokeInput::Scrape {
            id: message.id,
            reason: message.reason,
        };
        let token = self.revoke(&context, input).await?;
        Ok(Response::new(proto::RevokeScrapeTokenResponse {
            token: Some(token),
        }))
    }

    async fn revoke_personal_access_token(
        &self,
        request: Request<proto::RevokePersonalAccessTokenRequest>,
    ) -> Result<Response<proto::RevokePersonalAccessTokenResponse>, Status> {
        let context = CallContext::of(&request)?;
        let message = request.into_inner();
        let input = RevokeInput::PersonalAccess {
            token_id: message.token_id,
            reason: message.reason,
        };
        let token = self.revoke(&context, input).await?;
        Ok(Response::new(proto::RevokePersonalAccessTokenResponse {
            token: Some(token),
        }))
    }

    async fn revoke_service_account_token(
        &self,
        request: Request<proto::RevokeServiceAccountTokenRequest>,
    ) -> Result<Response<proto::RevokeServiceAccountTokenResponse>, Status> {
        let context = CallContext::of(&request)?;
        let message = request.into_inner();
        let input = RevokeInput::ServiceAccount {
            service_account_slug: message.service_account_slug,
            token_slug: message.token_slug,
            reason: message.reason,
        };
        let token = self.revoke(&context, input).await?;
        Ok(Response::new(proto::RevokeServiceAccountTokenResponse {
            token: Some(token),
        }))
    }

    async fn delete_workspace_api_key(
        &self,
        request: Request<proto::DeleteWorkspaceApiKeyRequest>,
    ) -> Result<Response<proto::DeleteWorkspaceApiKeyResponse>, Status> {
        let context = CallContext::of(&request)?;
        let message = request.into_inner();
        let input = RevokeInput::WorkspaceApiKey {
            workspace_id: message.workspace_id,
            key_name: message.key_name,
            reason: message.reason,
        };
        let token = self.revoke(&context, input).await?;
        Ok(Response::new(proto::DeleteWorkspaceApiKeyResponse {
            key_name: token.name.clone(),
            workspace_id: token.workspace_id.clone(),
            token: Some(token),
        }))
    }

    async fn authenticate_token(
        &self,
        request: Request<proto::AuthenticateTokenRequest>,
    ) -> Result<Response<proto::AuthenticateTokenResponse>, Status> {
        let context = CallContext::of(&request)?;
        let message = request.into_inner();
        let input = AuthenticateInput {
            secret: message.secret,
            required_scopes: message.required_scopes,
        };
        let result = self
            .lifecycle
            .authenticate_token(&context.caller, &context.audit(self.clock.as_ref()), input)
            .await;
        self.metrics.record_authentication(&result);
        let token = result.map_err(|e| context.status(e))?;
        Ok(Response::new(proto::AuthenticateTokenResponse {
            token: Some(convert::token(&token)),
        }))
    }

    async fn list_audit_events(
        &self,
        request: Request<proto::ListAuditEventsRequest>,
    ) -> Result<Response<proto::ListAuditEventsResponse>, Status> {
        let context = CallContext::of(&request)?;
        let page = self
            .lifecycle
            .list_audit_events(
                &context.caller,
                convert::list_audit_events_input(request.into_inner()),
            )
            .await
            .map_err(|e| context.status(e))?;
        Ok(Response::new(proto::ListAuditEventsResponse {
            audit_events: page.items.iter().map(convert::audit_event).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn rotate_token(
        &self,
        request: Request<proto::RotateTokenRequest>,
    ) -> Result<Response<proto::RotateTokenResponse>, Status> {
        let context = CallContext::of(&request)?;
        let input = convert::rotate_token_input(request.into_inner());
        let rotated = self
            .lifecycle
            .rotate_token(&context.caller, &context.audit(self.clock.as_ref()), input)
            .await
            .map_err(|e| context.status(e))?;
        Ok(Response::new(proto::RotateTokenResponse {
            token: Some(convert::token(&rotated.token)),
            secret: rotated.secret.expose().to_owned(),
            previous: Some(convert::token(&rotated.previous)),
        }))
    }

    async fn revoke_token_by_secret(
        &self,
        request: Request<proto::RevokeTokenBySecretRequest>,
    ) -> Result<Response<proto::RevokeTokenBySecretResponse>, Status> {
        let context = CallContext::of(&request)?;
        let message = request.into_inner();
        let input = RevokeBySecretInput {
            secret: message.secret,
            reason: message.reason,
        };
        let revoked = self
            .lifecycle
            .revoke_token_by_secret(&context.caller, &context.audit(self.clock.as_ref()), input)
            .await
            .map_err(|e| context.status(e))?;
        if revoked.newly_revoked {
            self.metrics.record_revocation(revoked.token.kind);
        }
        Ok(Response::new(proto::RevokeTokenBySecretResponse {
            token: Some(convert::token(&revoked.token)),
        }))
    }

    async fn revoke_tokens(
        &self,
        request: Request<proto::RevokeTokensRequest>,
    ) -> Result<Response<proto::RevokeTokensResponse>, Status> {
        let context = CallContext::of(&request)?;
        let input = convert::revoke_tokens_input(request.into_inner());
        let outcome = self
            .lifecycle
            .revoke_tokens(&context.caller, &context.audit(self.clock.as_ref()), input)
            .await
            .map_err(|e| context.status(e))?;
        if !outcome.dry_run {
            for token in &outcome.tokens {
                self.metrics.record_revocation(token.kind);
            }
        }
        Ok(Response::new(convert::revoke_tokens_response(&outcome)))
    }

    async fn get_token_policy(
        &self,
        request: Request<proto::GetTokenPolicyRequest>,
    ) -> Result<Response<proto::GetTokenPolicyResponse>, Status> {
        let context = CallContext::of(&request)?;
        let policy = self
            .lifecycle
            .get_token_policy(&context.caller)
            .await
            .map_err(|e| context.status(e))?;
        Ok(Response::new(proto::GetTokenPolicyResponse {
            policy: Some(convert::token_policy(&policy)),
        }))
    }

    async fn update_token_policy(
        &self,
        request: Request<proto::UpdateTokenPolicyRequest>,
    ) -> Result<Response<proto::UpdateTokenPolicyResponse>, Status> {
        let context = CallContext::of(&request)?;
        let input = convert::token_policy_input(request.into_inner().policy);
        let policy = self
            .lifecycle
            .update_token_policy(&context.caller, &context.audit(self.clock.as_ref()), input)
            .await
            .map_err(|e| context.status(e))?;
        Ok(Response::new(proto::UpdateTokenPolicyResponse {
            policy: Some(convert::token_policy(&policy)),
        }))
    }
}
