//! `PhoneSpec`: a phone's validated, model-checked description (model, label, lines, overrides).

use serde::Deserialize;
use utoipa::ToSchema;

use super::text::is_short_plain_text;
use super::{FieldError, Model, Settings};

/// A line as it arrives in a request: plain strings, checked by [`PhoneSpec::parse`].
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LineInput {
    /// Extension / SIP user (`1001`).
    #[schema(example = "1001")]
    pub number: String,
    /// Digest user name (defaults to `number`).
    #[serde(default)]
    pub auth_name: Option<String>,
    /// Digest password; write-only. Omitted on a replace: the stored password of the same line is kept.
    #[serde(default)]
    pub password: Option<String>,
    /// Caller name sent in SIP (`Alice`).
    #[serde(default)]
    pub display_name: Option<String>,
    /// Text beside the line key.
    #[serde(default)]
    pub short_label: Option<String>,
}

/// A checked line.
#[derive(Clone, PartialEq, Eq)]
pub struct Line {
    /// SIP user.
    pub number: String,
    /// Digest user name.
    pub auth_name: String,
    /// Digest password; `None` keeps what is stored.
    pub password: Option<String>,
    /// Display name.
    pub display_name: Option<String>,
    /// Short label.
    pub short_label: Option<String>,
}

impl std::fmt::Debug for Line {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Line")
            .field("number", &self.number)
            .field("auth_name", &self.auth_name)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("display_name", &self.display_name)
            .field("short_label", &self.short_label)
            .finish()
    }
}

/// A phone as it arrives in a create/replace request.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PhoneSpecInput {
    /// Model number (`7960`).
    #[schema(example = "7960")]
    pub model: String,
    /// Top-right label on the phone (at most 11 characters on 7940/7960).
    #[serde(default)]
    pub label: Option<String>,
    /// Free text for operators.
    #[serde(default)]
    pub description: Option<String>,
    /// Whether the phone is provisioned (default true).
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Lines, 1 to the model's line-key count.
    pub lines: Vec<LineInput>,
    /// Per-phone settings overrides.
    #[serde(default)]
    #[schema(value_type = Option<Settings>)]
    pub settings: Option<serde_json::Value>,
}

/// A checked phone description.
#[derive(Clone, Debug, PartialEq)]
pub struct PhoneSpec {
    /// Model.
    pub model: Model,
    /// Label ("" when none).
    pub label: String,
    /// Description ("" when none).
    pub description: String,
    /// Provisioned or not.
    pub enabled: bool,
    /// Lines in key order.
    pub lines: Vec<Line>,
    /// Overrides.
    pub settings: Settings,
}

fn is_sip_user(s: &str) -> bool {
    (1..=32).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._+*#-".contains(&b))
}

fn is_password(s: &str, max: usize) -> bool {
    (1..=max).contains(&s.len()) && s.bytes().all(|b| (0x21..0x7f).contains(&b) && b != b'"')
}

impl PhoneSpec {
    /// Checks a request against the model's limits; returns every problem found, each with its path.
    pub fn parse(input: PhoneSpecInput) -> Result<PhoneSpec, Vec<FieldError>> {
        let mut errors = Vec::new();
        let model = match input.model.parse::<Model>() {
            Ok(m) => Some(m),
            Err(e) => {
                errors.push(FieldError::new("model", e.to_string()));
                None
            }
        };
        let label = input.label.unwrap_or_default();
        if let Some(m) = model {
            if !label.is_empty() && !is_short_plain_text(&label, m.max_label_len()) {
                errors.push(FieldError::new(
                    "label",
                    format!(
                        "at most {} printable characters without double quotes on a {m}",
                        m.max_label_len()
                    ),
                ));
            }
        }
        let description = input.description.unwrap_or_default();
        if description.chars().count() > 255 || description.chars().any(|c| c.is_control()) {
            errors.push(FieldError::new(
                "description",
                "at most 255 characters, no control characters",
            ));
        }
        let max_lines = model.map(|m| m.line_keys()).unwrap_or(usize::MAX);
        if input.lines.is_empty() {
            errors.push(FieldError::new("lines", "a phone needs at least one line"));
        } else if input.lines.len() > max_lines {
            let m = model.expect("max_lines is finite only with a model");
            errors.push(FieldError::new(
                "lines",
                format!(
                    "a {m} has {max_lines} line keys; got {} lines",
                    input.lines.len()
                ),
            ));
        }
        let max_pw = model.map(|m| m.max_password_len()).unwrap_or(64);
        let mut lines = Vec::with_capacity(input.lines.len());
        for (i, l) in input.lines.into_iter().enumerate() {
            let p = |f: &str| format!("lines[{i}].{f}");
            if !is_sip_user(&l.number) {
                errors.push(FieldError::new(
                    p("number"),
                    "1 to 32 of letters, digits and . _ + * # -",
                ));
            }
            let auth_name = l.auth_name.unwrap_or_else(|| l.number.clone());
            if !is_sip_user(&auth_name) {
                errors.push(FieldError::new(
                    p("auth_name"),
                    "1 to 32 of letters, digits and . _ + * # -",
                ));
            }
            if let Some(pw) = &l.password {
                if !is_password(pw, max_pw) {
                    errors.push(FieldError::new(
                        p("password"),
                        format!(
                            "1 to {max_pw} printable ASCII characters, no spaces or double quotes"
                        ),
                    ));
                }
            }
            for (field, value, max) in [
                ("display_name", &l.display_name, 32),
                ("short_label", &l.short_label, 12),
            ] {
                if let Some(v) = value {
                    if !is_short_plain_text(v, max) {
                        errors.push(FieldError::new(
                            p(field),
                            format!("1 to {max} printable characters without double quotes"),
                        ));
                    }
                }
            }
            lines.push(Line {
                number: l.number,
                auth_name,
                password: l.password,
                display_name: l.display_name,
                short_label: l.short_label,
            });
        }
        let settings = match input.settings {
            None | Some(serde_json::Value::Null) => Settings::default(),
            Some(v) => match Settings::from_json(v) {
                Ok(s) => {
                    if let Err(e) = s.check(model) {
                        errors.push(e.under("settings"));
                    }
                    s
                }
                Err(e) => {
                    errors.push(e.under("settings"));
                    Settings::default()
                }
            },
        };
        match (model, errors.is_empty()) {
            (Some(model), true) => Ok(PhoneSpec {
                model,
                label,
                description,
                enabled: input.enabled.unwrap_or(true),
                lines,
                settings,
            }),
            _ => Err(errors),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn input(v: serde_json::Value) -> PhoneSpecInput {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn the_spec_example_is_accepted() {
        let p = PhoneSpec::parse(input(json!({"model": "7960", "label": "Reception",
            "lines": [{"number": "1001", "auth_name": "1001", "password": "s3cret", "display_name": "Alice"}]})))
        .unwrap();
        assert_eq!(p.model, Model::M7960);
        assert_eq!(p.lines[0].auth_name, "1001");
        assert!(p.enabled);
    }

    #[test]
    fn limits_of_the_model_apply() {
        let three = json!([{"number": "1"}, {"number": "2"}, {"number": "3"}]);
        let errs = PhoneSpec::parse(input(json!({"model": "7940", "lines": three}))).unwrap_err();
        assert_eq!(errs[0].path, "lines");
        let errs = PhoneSpec::parse(input(
            json!({"model": "7940", "label": "Much too long a label", "lines": [{"number": "1"}]}),
        ))
        .unwrap_err();
        assert_eq!(errs[0].path, "label");
        let errs = PhoneSpec::parse(input(json!({"model": "7960",
            "lines": [{"number": "1", "password": "x".repeat(32)}]})))
        .unwrap_err();
        assert_eq!(errs[0].path, "lines[0].password");
        assert!(
            !errs[0].message.contains("xxxx"),
            "the message must not echo the password"
        );
        let errs = PhoneSpec::parse(input(json!({"model": "7950", "lines": [{"number": "1"}]})))
            .unwrap_err();
        assert_eq!(errs[0].path, "model");
        let errs = PhoneSpec::parse(input(json!({"model": "7960", "lines": [{"number": "1"}],
            "settings": {"sip": {"port": 0}}})))
        .unwrap_err();
        assert_eq!(errs[0].path, "settings.sip.port");
        let errs = PhoneSpec::parse(input(json!({"model": "7960", "lines": []}))).unwrap_err();
        assert_eq!(errs[0].path, "lines");
    }

    #[test]
    fn debug_output_redacts_passwords() {
        let p = PhoneSpec::parse(input(
            json!({"model": "7960", "lines": [{"number": "1", "password": "hunter2hunter2"}]}),
        ))
        .unwrap();
        assert!(!format!("{p:?}").contains("hunter2"));
    }
}
