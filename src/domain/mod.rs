//! Domain types: pure values parsed once at the edge (parse, don't validate). No I/O, no framework code.

mod mac;
mod model;
mod network;
mod phone;
pub mod settings;
mod slug;
pub mod text;
mod time_zone;

/// A value that failed to parse: where (a dotted path such as `lines[0].password` or `settings.sip.port`)
/// and why. The message never repeats a secret.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// Dotted path to the offending value.
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldError {
    /// Builds an error for `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }

    /// The same error, one level deeper (`settings` + `sip.port` = `settings.sip.port`).
    pub fn under(mut self, prefix: &str) -> Self {
        self.path = if self.path.is_empty() || self.path == "." {
            prefix.to_owned()
        } else {
            format!("{prefix}.{}", self.path)
        };
        self
    }
}

pub use mac::{MacAddress, ParseMacError};
pub use model::{Family, Model, ParseModelError};
pub use network::{canonical_ip, ParsePrefixError, Prefix};
pub use phone::{Line, LineInput, PhoneSpec, PhoneSpecInput};
pub use settings::Settings;
pub use slug::{ParseSlugError, TenantSlug};
pub use time_zone::{DstRule, TimeZone, ZoneInfo};
