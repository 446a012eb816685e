//! The OpenAPI document's fixed parts (info, security scheme, tags) and the route table built from it.

use actix_web::dev::ResourceDef;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// Info, tags and the bearer scheme; paths and schemas are collected from the registered handlers.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "dialtone",
        description = "Multi-tenant provisioning of Cisco SIP desk phones. Errors are application/problem+json (RFC 9457).",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "tenants", description = "Tenants and their settings"),
        (name = "networks", description = "Source networks that identify a tenant's phones"),
        (name = "phones", description = "Phones and their lines"),
        (name = "files", description = "Stored files (firmware, ring tones) served byte for byte"),
        (name = "audit", description = "Who changed what"),
        (name = "health", description = "Liveness, readiness, metrics")
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// Every documented path with its methods, to tell 405 from 404.
pub struct RouteTable(Vec<(ResourceDef, Vec<&'static str>)>);

impl RouteTable {
    /// Builds the table from the generated document.
    pub fn new(doc: &utoipa::openapi::OpenApi) -> RouteTable {
        let routes = doc
            .paths
            .paths
            .iter()
            .map(|(path, item)| {
                let mut methods = Vec::new();
                for (name, op) in [
                    ("GET", &item.get),
                    ("POST", &item.post),
                    ("PUT", &item.put),
                    ("PATCH", &item.patch),
                    ("DELETE", &item.delete),
                    ("HEAD", &item.head),
                ] {
                    if op.is_some() {
                        methods.push(name);
                    }
                }
                (ResourceDef::new(path.as_str()), methods)
            })
            .collect();
        RouteTable(routes)
    }

    /// The methods documented for `path` (empty when the path is unknown).
    pub fn methods_for(&self, path: &str) -> Vec<&'static str> {
        self.0
            .iter()
            .filter(|(def, _)| def.is_match(path))
            .flat_map(|(_, m)| m.iter().copied())
            .collect()
    }
}
