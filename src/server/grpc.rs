//! The gRPC listener: TokenService behind its JWT check, health,
//! reflection (v1 and v1alpha), the request-context layer and the limits.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::pb::health_server::{Health, HealthServer};

use crate::admission::Admission;
use crate::config::{GrpcLimits, StartupError};
use crate::domain::{Clock, TokenLifecycle};
use crate::grpc::auth::AuthInterceptor;
use crate::grpc::call_metrics::RpcObserver;
use crate::grpc::handlers::TokenApi;
use crate::grpc::proto;
use crate::grpc::proto::token_service_server::TokenServiceServer;
use crate::grpc::request_context::RequestContextLayer;
use crate::metrics::{Metrics, ServedMethods};
use crate::store::SeaStore;

/// The gRPC services and the `method` label values, built together: a
/// service is routed and its methods (read from the descriptors that
/// describe it) become label values in one step, so the label set is
/// exactly what is served.
#[derive(Default)]
struct GrpcServices {
    routes: tonic::service::RoutesBuilder,
    methods: ServedMethods,
}

impl GrpcServices {
    fn add<S>(&mut self, service: S, file_descriptor_set: &[u8]) -> Result<(), StartupError>
    where
        S: tower::Service<http::Request<tonic::body::Body>, Error = std::convert::Infallible>
            + tonic::server::NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Response: axum::response::IntoResponse,
        S::Future: Send + 'static,
    {
        self.methods
            .add_service(S::NAME, file_descriptor_set)
            .map_err(|e| StartupError::part("gRPC services", e))?;
        self.routes.add_service(service);
        Ok(())
    }
}

/// What TokenService's handlers and JWT check need.
pub(super) struct TokenServiceParts {
    pub lifecycle: Arc<TokenLifecycle<SeaStore>>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    pub admission: Arc<Admission>,
}

/// The gRPC server on `listener`, serving until `stopped` resolves.
pub(super) fn serve<H: Health>(
    listener: TcpListener,
    limits: GrpcLimits,
    health: HealthServer<H>,
    token_service: TokenServiceParts,
    stopped: impl Future<Output = ()> + Send + 'static,
) -> Result<impl Future<Output = Result<(), tonic::transport::Error>> + Send, StartupError> {
    let metrics = token_service.metrics.clone();
    let mut services = GrpcServices::default();
    services.add(health, tonic_health::pb::FILE_DESCRIPTOR_SET)?;
    add_reflection(&mut services)?;
    let api = TokenApi::new(
        token_service.lifecycle,
        token_service.clock.clone(),
        token_service.metrics,
    );
    let authenticated = AuthInterceptor::new(token_service.admission)
        .around(TokenServiceServer::new(api).max_decoding_message_size(limits.max_message_size));
    services.add(authenticated, proto::FILE_DESCRIPTOR_SET)?;
    let GrpcServices { routes, methods } = services;
    Ok(Server::builder()
        .timeout(limits.request_timeout)
        .concurrency_limit_per_connection(limits.max_concurrent_requests)
        .load_shed(true)
        .max_connection_age(limits.max_connection_age)
        .http2_keepalive_interval(Some(limits.keepalive_interval))
        .http2_keepalive_timeout(Some(limits.keepalive_timeout))
        .layer(RequestContextLayer::new(RpcObserver::new(metrics, methods)))
        .add_routes(routes.routes())
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            stopped,
        ))
}

/// Both reflection versions serve the same files (grpcurl 1.8.6 speaks only
/// v1alpha).
fn add_reflection(services: &mut GrpcServices) -> Result<(), StartupError> {
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let v1 = reflection()
        .build_v1()
        .map_err(|e| StartupError::part("reflection", e))?;
    let v1alpha = reflection()
        .build_v1alpha()
        .map_err(|e| StartupError::part("reflection", e))?;
    services.add(v1, tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)?;
    services.add(v1alpha, tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET)
}
