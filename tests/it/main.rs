//! Integration tests: the real API on a real PostgreSQL. One binary; modules by resource.

mod audit;
mod cli;
mod concurrency;
mod errors;
mod files;
mod helpers;
mod imports;
mod isolation;
mod networks;
mod openapi;
mod phones;
mod provisioning;
mod snapshot;
mod tenants;
