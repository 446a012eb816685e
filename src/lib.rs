//! dialtone: multi-tenant provisioning of Cisco SIP desk phones.
//!
//! Layout (see ARCHITECTURE.md): `domain` (pure value types) ← `db` (the only SQL) ← `api` (REST, actix-web);
//! `auth` (JWT); `config` and `cli` wire processes together.

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
pub mod tftp;
