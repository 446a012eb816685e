//! The in-memory snapshot the provisioning front end serves from: every tenant, network, phone and stored
//! file, immutable once built, so the request path never queries the database; and the refresher that
//! keeps it equal to the database.

mod model;
pub mod refresher;
pub mod templates;

pub use model::{phone_settings, DigestSum, LineView, PhoneView, Snapshot, StoredFile, TenantView};
pub use refresher::{RefresherSettings, SnapshotHandle};
pub use templates::{CompiledTemplate, TemplateId, Templates};
