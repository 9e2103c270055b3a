//! The REST face: the HTTP routes of `TokenService` on the HTTP listener.
//! The routes are read from the `google.api.http` option of each RPC in the
//! descriptor set ([`routes`], their path templates in [`path_template`]);
//! messages travel in the proto3 JSON mapping ([`json`]); a matched request
//! decodes into its message ([`request`]); [`serve`] admits, decodes, calls
//! the core and answers; [`envelope`] gives each wire format its error body,
//! built from the face-neutral problem the gRPC details are built from.

pub mod envelope;
pub mod google_api;
pub mod json;
pub mod path_template;
pub mod request;
pub mod routes;
pub mod serve;

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
