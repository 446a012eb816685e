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
        (name = "templates", description = "Per-tenant template overrides of rendered files (MiniJinja). Ids: SIPDefault.cnf, SIPMAC.cnf (7940/7960 SIP<MAC>.cnf), SEPMAC.cnf.xml (full SEP<MAC>.cnf.xml, every model but 7940/7960), SEPMAC-loader.cnf.xml (7940/7960 loader SEP<MAC>.cnf.xml), XMLDefault.cnf.xml, dialplan.xml, RINGLIST.DAT, RINGLIST.XML (also Ringlist.xml, DistinctiveRingList.xml), syncinfo.xml, OS79XX.TXT. Variables: tenant.slug; settings (effective settings with defaults: sip.{registrar, port, transport, transport_code, backup_proxy, backup_proxy_port, outbound_proxy, outbound_proxy_port, register_expires, nat_enabled, nat_address, preferred_codec, start_media_port, end_media_port}, time.{ntp_server, time_zone.{iana, cisco_xml, cisco_cnf, utc_offset_minutes}, dst_auto_adjust, dst.{start_month, start_week_of_month, start_day_of_week, start_time, stop_month, stop_week_of_month, stop_day_of_week, stop_time} or none, date_format, time_24h, date_template}, voicemail_number, dial_plan[].{pattern, cisco_pattern, timeout}, ring_list[].{name, file}, firmware.{os79xx, loads}, urls.{directory, services, logo}, extra.{sip_cnf, vendor_config}); models[].{model, name, device_type, family, line_keys, load}; per-device files: phone.{mac, model, model_name, device_type, family, line_keys, max_label_len, label, enabled, lines[].{position, number, auth_name, password, display_name, short_label}} and load; SIPDefault.cnf and syncinfo.xml: sync; every file: version_stamp. Printed values are XML-escaped in XML files; in .cnf files double quotes and control characters are dropped; none prints nothing; |safe prints as is. See the README, Template overrides."),
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
