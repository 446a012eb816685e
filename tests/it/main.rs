//! Integration tests: the real API on a real PostgreSQL. One binary; modules by resource.

mod audit;
mod cli;
mod concurrency;
mod creates;
mod dhcp;
mod errors;
mod files;
mod firmware;
mod helpers;
mod imports;
mod isolation;
mod networks;
mod openapi;
mod paging;
mod phones;
mod provisioning;
mod resync;
mod secrets;
mod snapshot;
mod templates;
mod tenants;
