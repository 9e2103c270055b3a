//! The REST face, in progress: what the HTTP routes of `TokenService` are
//! and how a request becomes the RPC's request message. The routes are read
//! from the `google.api.http` option of each RPC in the descriptor set
//! ([`routes`], their path templates in [`path_template`]); messages travel in the proto3 JSON mapping ([`json`]); a
//! matched request decodes into its message ([`request`]). Nothing here
//! answers a request yet: handlers, the error bodies of each wire format and
//! the wiring into the HTTP listener come next.

pub mod google_api;
pub mod json;
pub mod path_template;
pub mod request;
pub mod routes;

use prost_reflect::DescriptorError;

use crate::rest::json::ProtoJson;
use crate::rest::routes::{RouteTable, RouteTableError};

/// Why the REST face cannot start.
#[derive(Debug, thiserror::Error)]
pub enum RestLoadError {
    /// The descriptor set compiled into the binary does not decode.
    #[error("the REST face cannot read the descriptor set: {0}")]
    Descriptors(#[from] DescriptorError),
    /// A `google.api.http` rule that cannot be served.
    #[error("the REST face cannot build its routes: {0}")]
    Routes(#[from] RouteTableError),
}

/// What the REST face reads from the descriptor set, parsed once at
/// start-up.
#[derive(Clone, Debug)]
pub struct RestApi {
    json: ProtoJson,
    routes: RouteTable,
}

impl RestApi {
    /// Reads the descriptor set and builds the route table from it.
    pub fn load() -> Result<RestApi, RestLoadError> {
        let json = ProtoJson::load()?;
        let routes = RouteTable::from_pool(json.pool())?;
        Ok(RestApi { json, routes })
    }

    /// The proto3 JSON mapping.
    pub fn json(&self) -> &ProtoJson {
        &self.json
    }

    /// The routes.
    pub fn routes(&self) -> &RouteTable {
        &self.routes
    }
}
