//! The in-memory snapshot the provisioning front end serves from: every tenant, network, phone and stored
//! file, immutable once built, so the request path never queries the database.

mod model;

pub use model::{LineView, PhoneView, Snapshot, StoredFile, TenantView};
