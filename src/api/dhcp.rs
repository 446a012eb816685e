//! `/v1/tenants/{tenant}/dhcp-config`: DHCPv4 snippets (ISC dhcpd, Kea, dnsmasq) that point a tenant's
//! phones at the provisioning server with option 66 (`tftp-server-name`) and option 150 (Cisco's TFTP
//! server list).
//!
//! Only IPv4 networks get a snippet: DHCPv4 options do not apply to IPv6 networks, which the text formats
//! list in a comment and Kea's JSON (which has no comments) leaves out. Only the IPv4 entries of
//! `provisioning_addresses` are used.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};

use actix_web::{get, web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::tenants::load_tenant;
use super::{ApiError, AppState, Problem};
use crate::auth::{Access, Principal};
use crate::db::{self, networks::Network};
use crate::domain::canonical_ip;

pub(super) fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(dhcp_config);
}

/// `?format=isc|kea|dnsmasq` of `dhcp-config`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DhcpParams {
    /// `isc` (default, ISC dhcpd `dhcpd.conf`), `kea` (Kea DHCPv4 JSON) or `dnsmasq`.
    pub format: Option<String>,
}

/// Kea DHCPv4 configuration fragment: merge `option-def` and `subnet4` into the server's `Dhcp4`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeaConfig {
    /// The `Dhcp4` object of `kea-dhcp4.conf`.
    #[serde(rename = "Dhcp4")]
    pub dhcp4: KeaDhcp4,
}

/// The `Dhcp4` part of a Kea fragment.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeaDhcp4 {
    /// The definition of option 150 (`cisco-tftp-servers`, an array of IPv4 addresses in space `dhcp4`).
    #[serde(rename = "option-def")]
    pub option_def: Vec<KeaOptionDef>,
    /// One subnet per IPv4 network of the tenant.
    pub subnet4: Vec<KeaSubnet4>,
}

/// A Kea option definition.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeaOptionDef {
    /// Option name.
    #[schema(example = "cisco-tftp-servers")]
    pub name: String,
    /// Option code.
    #[schema(example = 150)]
    pub code: u8,
    /// Kea option type.
    #[serde(rename = "type")]
    #[schema(example = "ipv4-address")]
    pub type_: String,
    /// Whether the option holds an array of `type`.
    pub array: bool,
    /// Option space.
    #[schema(example = "dhcp4")]
    pub space: String,
}

/// A Kea `subnet4` entry.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeaSubnet4 {
    /// Subnet id: 1, 2, … in the order of the networks' addresses; renumber when merging with other
    /// subnets of the server (Kea requires unique ids).
    pub id: u32,
    /// The network (`10.20.0.0/16`).
    #[schema(example = "10.20.0.0/16")]
    pub subnet: String,
    /// Options 66 and 150.
    #[serde(rename = "option-data")]
    pub option_data: Vec<KeaOptionData>,
}

/// A Kea `option-data` entry.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeaOptionData {
    /// `tftp-server-name` (option 66) or `cisco-tftp-servers` (option 150).
    #[schema(example = "cisco-tftp-servers")]
    pub name: String,
    /// The value: one address for option 66, a comma-separated list for option 150.
    #[schema(example = "192.0.2.10, 192.0.2.11")]
    pub data: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Isc,
    Kea,
    Dnsmasq,
}

impl Format {
    fn parse(s: Option<&str>) -> Result<Format, ApiError> {
        match s {
            None | Some("isc") => Ok(Format::Isc),
            Some("kea") => Ok(Format::Kea),
            Some("dnsmasq") => Ok(Format::Dnsmasq),
            Some(_) => Err(ApiError::invalid("format", "isc, kea or dnsmasq")),
        }
    }
}

/// One IPv4 network, numbered from 1 in address order.
struct V4Net {
    n: u32,
    address: Ipv4Addr,
    len: u8,
    description: String,
}

impl V4Net {
    fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::MAX.checked_shl(32 - u32::from(self.len)).unwrap_or(0))
    }
}

/// What the snippets are made of.
struct Input<'a> {
    slug: &'a str,
    /// IPv4 networks, numbered.
    v4: Vec<V4Net>,
    /// IPv6 networks (skipped).
    v6: Vec<String>,
    /// IPv4 provisioning addresses, at least one.
    servers: Vec<Ipv4Addr>,
}

impl Input<'_> {
    fn new<'a>(slug: &'a str, mut networks: Vec<Network>, servers: Vec<Ipv4Addr>) -> Input<'a> {
        networks.sort_by_key(|n| (n.cidr.first_address(), n.cidr.len()));
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for net in networks {
            match net.cidr.first_address() {
                IpAddr::V4(address) => v4.push(V4Net {
                    n: v4.len() as u32 + 1,
                    address,
                    len: net.cidr.len(),
                    description: one_line(&net.description),
                }),
                IpAddr::V6(_) => v6.push(net.cidr.to_string()),
            }
        }
        Input {
            slug,
            v4,
            v6,
            servers,
        }
    }

    fn first(&self) -> String {
        self.servers[0].to_string()
    }

    fn list(&self, sep: &str) -> String {
        self.servers
            .iter()
            .map(Ipv4Addr::to_string)
            .collect::<Vec<_>>()
            .join(sep)
    }

    /// The comment lines (`# …`) that open a text snippet.
    fn header(&self, what: &str) -> String {
        let mut s = format!(
            "# {what} for the phones of tenant {}, generated by dialtone.\n\
             # Option 66 (tftp-server-name) and option 150 (cisco-tftp-servers) point at {}.\n",
            self.slug,
            self.list(", ")
        );
        if self.v4.is_empty() {
            s.push_str("# The tenant has no IPv4 networks.\n");
        }
        for net in &self.v6 {
            let _ = writeln!(
                s,
                "# IPv6 network {net} skipped: DHCPv4 options do not apply to it."
            );
        }
        s
    }

    fn isc(&self) -> String {
        let mut s = self.header("ISC dhcpd configuration");
        s.push_str("option cisco-tftp-servers code 150 = array of ip-address;\n");
        for net in &self.v4 {
            let _ = write!(
                s,
                "\n# {}/{}{}\nsubnet {} netmask {} {{\n  option tftp-server-name \"{}\";\n  option cisco-tftp-servers {};\n}}\n",
                net.address,
                net.len,
                suffix(&net.description),
                net.address,
                net.netmask(),
                self.first(),
                self.list(", "),
            );
        }
        s
    }

    fn dnsmasq(&self) -> String {
        let mut s = self.header("dnsmasq configuration");
        for net in &self.v4 {
            let tag = format!("dialtone-{}-{}", self.slug, net.n);
            let _ = write!(
                s,
                "\n# {}/{}{}\ndhcp-range=set:{tag},{},static,{}\ndhcp-option=tag:{tag},66,\"{}\"\ndhcp-option=tag:{tag},150,{}\n",
                net.address,
                net.len,
                suffix(&net.description),
                net.address,
                net.netmask(),
                self.first(),
                self.list(","),
            );
        }
        s
    }

    fn kea(&self) -> KeaConfig {
        KeaConfig {
            dhcp4: KeaDhcp4 {
                option_def: vec![KeaOptionDef {
                    name: "cisco-tftp-servers".into(),
                    code: 150,
                    type_: "ipv4-address".into(),
                    array: true,
                    space: "dhcp4".into(),
                }],
                subnet4: self
                    .v4
                    .iter()
                    .map(|net| KeaSubnet4 {
                        id: net.n,
                        subnet: format!("{}/{}", net.address, net.len),
                        option_data: vec![
                            KeaOptionData {
                                name: "tftp-server-name".into(),
                                data: self.first(),
                            },
                            KeaOptionData {
                                name: "cisco-tftp-servers".into(),
                                data: self.list(", "),
                            },
                        ],
                    })
                    .collect(),
            },
        }
    }
}

/// A description fit for a one-line comment.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_owned()
}

fn suffix(description: &str) -> String {
    if description.is_empty() {
        String::new()
    } else {
        format!(" {description}")
    }
}

/// DHCPv4 configuration snippets for a tenant's networks.
///
/// For each IPv4 network of the tenant (in address order), option 66 (`tftp-server-name`, the first
/// IPv4 address of the `provisioning_addresses` setting) and option 150 (`cisco-tftp-servers`, all of
/// its IPv4 addresses). IPv6 networks are skipped, since DHCPv4 options do not apply to them (the text
/// formats name them in a comment).
///
/// - `isc` (text/plain): an `option cisco-tftp-servers code 150 = array of ip-address;` declaration,
///   then one `subnet A netmask M { option tftp-server-name "…"; option cisco-tftp-servers a, b; }`
///   per network, for `dhcpd.conf` (declare the option only once when merging several tenants).
/// - `dnsmasq` (text/plain): per network `dhcp-range=set:dialtone-<slug>-<n>,A,static,M` and
///   `dhcp-option=tag:dialtone-<slug>-<n>,66,"…"` / `…,150,a,b` lines (`n` counts from 1 in address
///   order). A `static` range serves only hosts with a `dhcp-host` entry; put the `set:` tag on your own
///   `dhcp-range` instead to cover dynamic leases.
/// - `kea` (application/json): `{"Dhcp4": {"option-def": [{"name": "cisco-tftp-servers", "code": 150,
///   "type": "ipv4-address", "array": true, "space": "dhcp4"}], "subnet4": [{"id": N, "subnet":
///   "A/len", "option-data": [{"name": "tftp-server-name", "data": "…"}, {"name": "cisco-tftp-servers",
///   "data": "a, b"}]}]}}`, to merge into `kea-dhcp4.conf` (subnet ids count from 1; renumber them if
///   the server has other subnets).
///
/// 409 when no IPv4 provisioning address is configured.
#[utoipa::path(tag = "networks", params(("tenant" = String, Path, description = "tenant slug"), DhcpParams), security(("bearer" = [])), responses(
    (status = 200, description = "the snippet: text for isc and dnsmasq, JSON for kea", content(
        (String = "text/plain", example = "option cisco-tftp-servers code 150 = array of ip-address;\n\nsubnet 10.20.0.0 netmask 255.255.0.0 {\n  option tftp-server-name \"192.0.2.10\";\n  option cisco-tftp-servers 192.0.2.10, 192.0.2.11;\n}\n"),
        (KeaConfig = "application/json")
    )),
    (status = 401, description = "no valid token", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "outside the token's scope", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "no such tenant", body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "no (IPv4) provisioning address is configured (`provisioning_addresses`)", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "unknown format", body = Problem, content_type = "application/problem+json"),
    (status = 503, description = "the database is unavailable; retry", body = Problem, content_type = "application/problem+json"),
    (status = 400, description = "malformed request (query string, body or characters that cannot be stored)", body = Problem, content_type = "application/problem+json")
))]
#[get("/tenants/{tenant}/dhcp-config")]
pub async fn dhcp_config(
    state: web::Data<AppState>,
    p: Principal,
    path: web::Path<String>,
    q: web::Query<DhcpParams>,
) -> Result<HttpResponse, ApiError> {
    if !p.may(&path, Access::Read) {
        return Err(ApiError::Forbidden);
    }
    let format = Format::parse(q.format.as_deref())?;
    let client = state.pool.get().await.map_err(db::DbError::from)?;
    let tenant = load_tenant(&client, &p, &path, Access::Read, false).await?;
    let servers: Vec<Ipv4Addr> = state
        .provisioning_addresses
        .iter()
        .filter_map(|a| match canonical_ip(*a) {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(_) => None,
        })
        .collect();
    if servers.is_empty() {
        return Err(ApiError::Conflict(
            if state.provisioning_addresses.is_empty() {
                "no provisioning address is configured: set provisioning_addresses \
             (DIALTONE_PROVISIONING_ADDRESSES) to the address(es) phones should use as TFTP server"
                    .into()
            } else {
                "provisioning_addresses (DIALTONE_PROVISIONING_ADDRESSES) must include an IPv4 address: \
             DHCPv4 options 66 and 150 carry IPv4 addresses"
                .into()
            },
        ));
    }
    let mut networks = Vec::new();
    let mut after = None;
    loop {
        let batch = db::networks::list(&client, tenant.id, after, 1000).await?;
        let done = batch.len() < 1000;
        after = batch.last().map(|n| n.id);
        networks.extend(batch);
        if done {
            break;
        }
    }
    let input = Input::new(tenant.slug.as_str(), networks, servers);
    Ok(match format {
        Format::Isc => HttpResponse::Ok()
            .content_type("text/plain; charset=utf-8")
            .body(input.isc()),
        Format::Dnsmasq => HttpResponse::Ok()
            .content_type("text/plain; charset=utf-8")
            .body(input.dnsmasq()),
        Format::Kea => HttpResponse::Ok().json(input.kea()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(cidr: &str, description: &str) -> Network {
        Network {
            id: uuid::Uuid::new_v4(),
            cidr: cidr.parse().unwrap(),
            description: description.into(),
            created_at: time::OffsetDateTime::UNIX_EPOCH,
            revision: 1,
        }
    }

    fn input() -> Input<'static> {
        Input::new(
            "acme",
            vec![
                net("198.51.100.0/24", "branch"),
                net("2001:db8::/48", ""),
                net("10.20.0.0/16", "HQ\nsecond line"),
                net("203.0.113.7/32", ""),
            ],
            vec!["192.0.2.10".parse().unwrap(), "192.0.2.11".parse().unwrap()],
        )
    }

    #[test]
    fn netmasks() {
        let i = input();
        let masks: Vec<String> = i.v4.iter().map(|n| n.netmask().to_string()).collect();
        assert_eq!(masks, ["255.255.0.0", "255.255.255.0", "255.255.255.255"]);
        let zero = V4Net {
            n: 1,
            address: Ipv4Addr::UNSPECIFIED,
            len: 0,
            description: String::new(),
        };
        assert_eq!(zero.netmask(), Ipv4Addr::UNSPECIFIED);
    }

    #[test]
    fn isc_and_dnsmasq_text() {
        let i = input();
        let isc = i.isc();
        assert!(isc.contains("# 10.20.0.0/16 HQ second line\nsubnet 10.20.0.0 netmask 255.255.0.0 {\n  option tftp-server-name \"192.0.2.10\";\n  option cisco-tftp-servers 192.0.2.10, 192.0.2.11;\n}\n"), "{isc}");
        assert!(
            isc.contains("# IPv6 network 2001:db8::/48 skipped"),
            "{isc}"
        );
        assert_eq!(isc.matches("code 150").count(), 1);
        let d = i.dnsmasq();
        assert!(
            d.contains("dhcp-range=set:dialtone-acme-2,198.51.100.0,static,255.255.255.0\n"),
            "{d}"
        );
        assert!(
            d.contains("dhcp-option=tag:dialtone-acme-3,150,192.0.2.10,192.0.2.11\n"),
            "{d}"
        );
        assert!(
            d.contains("dhcp-option=tag:dialtone-acme-1,66,\"192.0.2.10\"\n"),
            "{d}"
        );
    }

    #[test]
    fn kea_json() {
        let v = serde_json::to_value(input().kea()).unwrap();
        assert_eq!(v["Dhcp4"]["option-def"][0]["code"], 150);
        assert_eq!(v["Dhcp4"]["subnet4"][2]["id"], 3);
        assert_eq!(v["Dhcp4"]["subnet4"][2]["subnet"], "203.0.113.7/32");
        assert_eq!(
            v["Dhcp4"]["subnet4"][0]["option-data"][1]["data"],
            "192.0.2.10, 192.0.2.11"
        );
    }

    #[test]
    fn formats() {
        assert_eq!(Format::parse(None).unwrap(), Format::Isc);
        assert_eq!(Format::parse(Some("kea")).unwrap(), Format::Kea);
        assert!(Format::parse(Some("ISC")).is_err());
    }
}
