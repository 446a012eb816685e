//! Settings validation (`Settings::from_json`, `patched`, `layered`, `check`) and phone validation
//! (`PhoneSpec::parse`): never panic on any JSON; accepted settings survive a JSON round trip; an empty
//! patch changes nothing; layering a value over the defaults, or over itself, gives it back.
//!
//! Input: a JSON document. `[base, patch]` fuzzes `base.patched(patch)`; any other value is used as
//! settings, as a patch over the defaults, and (when it is an object) as a phone.

#![no_main]

use dialtone::domain::{Model, PhoneSpec, PhoneSpecInput, Settings};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn check_settings(s: &Settings) {
    let json = s.to_json();
    let again = Settings::from_json(json.clone()).unwrap_or_else(|e| {
        panic!(
            "to_json output refused at {}: {} ({json})",
            e.path, e.message
        )
    });
    assert_eq!(&again, s, "JSON round trip");
    assert_eq!(again.to_json(), json);
    assert_eq!(
        s.patched(&Value::Object(Default::default())).as_ref(),
        Ok(s),
        "empty patch"
    );
    assert_eq!(&Settings::default().layered(s), s, "over the defaults");
    assert_eq!(&s.layered(s), s, "over itself");
    let _ = s.check(None);
    for &m in Model::ALL {
        if let Err(e) = s.check(Some(m)) {
            assert!(!e.path.is_empty());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // serde_json refuses nesting deeper than 128, so the recursive merges below stay shallow.
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    if let Value::Array(pair) = &value {
        if let [base, patch] = pair.as_slice() {
            if let Ok(base) = Settings::from_json(base.clone()) {
                check_settings(&base);
                if let Ok(p) = base.patched(patch) {
                    check_settings(&p);
                }
            }
            return;
        }
    }
    match Settings::from_json(value.clone()) {
        Ok(s) => check_settings(&s),
        Err(e) => assert!(!e.message.is_empty()),
    }
    if let Ok(p) = Settings::default().patched(&value) {
        check_settings(&p);
    }
    if let Ok(input) = serde_json::from_value::<PhoneSpecInput>(value) {
        if let Ok(spec) = PhoneSpec::parse(input) {
            assert!(!spec.lines.is_empty());
            assert!(spec.lines.len() <= spec.model.line_keys());
            assert!(spec.settings.check(Some(spec.model)).is_ok());
            check_settings(&spec.settings);
        }
    }
});
