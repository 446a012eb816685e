//! dialtone: multi-tenant provisioning of Cisco SIP desk phones.
//!
//! Layout (see ARCHITECTURE.md): `domain` (pure value types) ← `db` (the only SQL) ← `api` (REST, actix-web);
//! `auth` (JWT); `config` and `cli` wire processes together.

pub mod domain;
