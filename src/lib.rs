//! dialtone: multi-tenant provisioning of Cisco SIP desk phones (REST API, TFTP, HTTP :6970).
//!
//! Module map (ARCHITECTURE.md has the picture and the dependency rule):
//! - [`domain`]: pure value types parsed once at the edge (MAC, slug, prefix, model, settings, phone).
//! - [`db`]: the only SQL: pool, migrations, one file per aggregate, snapshot loader, private PostgreSQL.
//! - [`auth`]: JWT verification and signing, roles and scopes.
//! - [`api`]: the REST API (actix-web handlers, problem+json errors, OpenAPI).
//! - [`snapshot`]: the immutable in-memory model phones are served from, and its refresher.
//! - [`provisioning`]: the pure core, (snapshot, source, name) → bytes or a miss.
//! - [`tftp`]: the TFTP engine; [`frontend`]: TFTP/HTTP :6970 glue, fetch events, admin listener.
//! - [`resync`]: SIP NOTIFY check-sync; [`bench`]: the boot-storm load generator; [`ops`]: operator CLI client.
//! - [`app`], [`cli`], [`config`], [`metrics`]: process wiring, commands, settings, HTTP metrics.

pub mod api;
pub mod app;
pub mod auth;
pub mod bench;
pub mod cli;
pub mod config;
pub mod db;
pub mod domain;
pub mod frontend;
pub mod metrics;
pub mod ops;
pub mod provisioning;
pub mod resync;
pub mod snapshot;
pub mod sockopt;
pub mod tftp;
