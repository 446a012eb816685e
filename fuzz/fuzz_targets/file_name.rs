//! Requested-name normaliser and classifier (`dialtone::provisioning::name`): never panic; a normalised
//! name is safe (no `..`/`.`/empty component, no backslash, no control byte, no leading or trailing `/`),
//! normalising is idempotent, and a per-device class carries the MAC spelled in the name.

#![no_main]

use dialtone::provisioning::name::{classify, normalise, Class, MAX_NAME_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // TFTP and HTTP hand the core UTF-8 names; lossy decoding keeps non-UTF-8 inputs useful.
    let raw = String::from_utf8_lossy(data);
    // The classifier must not panic on un-normalised names either.
    let _ = classify(&raw);
    let Ok(name) = normalise(&raw) else {
        return;
    };
    assert!(!name.is_empty());
    assert!(name.len() <= raw.len() && name.len() <= MAX_NAME_LEN);
    assert!(!name.starts_with('/') && !name.ends_with('/'), "{name:?}");
    assert!(!name.contains('\\'), "{name:?}");
    assert!(
        !name.bytes().any(|b| b < 0x20 || b == 0x7f),
        "control byte in {name:?}"
    );
    for part in name.split('/') {
        assert!(
            !part.is_empty() && part != "." && part != "..",
            "component {part:?} in {name:?}"
        );
    }
    assert_eq!(normalise(&name).as_deref(), Ok(name.as_str()), "idempotent");

    match classify(&name) {
        Class::Device { mac, .. } => {
            let last = name.rsplit('/').next().unwrap();
            let hex = mac.to_string();
            assert!(
                last.to_ascii_uppercase().contains(&hex),
                "{name:?} classified with MAC {hex}"
            );
        }
        Class::TenantWide { kind, .. } => {
            // Tenant-wide names have no directory part and match in any letter case.
            assert!(!name.contains('/'), "{name:?}");
            for other in [name.to_ascii_lowercase(), name.to_ascii_uppercase()] {
                assert!(
                    matches!(classify(&other), Class::TenantWide { kind: k, .. } if k == kind),
                    "{name:?} vs {other:?}"
                );
            }
        }
        Class::KnownAbsent | Class::Other => {}
    }
});
