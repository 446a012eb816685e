//! Firmware checks: whether the loads a tenant or phone pins are in the file store, and the images each
//! stored `.loads` manifest lists. Pure: reads the snapshot's file index only.

use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::Model;
use crate::snapshot::Snapshot;

/// Extensions of the files a `.loads` manifest names.
const IMAGE_EXTENSIONS: &[&str] = &[
    ".sbn", ".sebn", ".sb2", ".bin", ".zz", ".jar", ".tar", ".loads",
];

/// The state of one pinned load.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct LoadStatus {
    /// The model the load is for; absent for the `OS79XX.TXT` image.
    pub model: Option<String>,
    /// The load name as configured.
    pub load: String,
    /// Files that are stored.
    pub present: Vec<String>,
    /// Files that phones will ask for and get "file not found".
    pub missing: Vec<String>,
}

impl LoadStatus {
    /// A warning sentence, when something is missing.
    pub fn warning(&self) -> Option<String> {
        if self.missing.is_empty() {
            return None;
        }
        let what = match &self.model {
            Some(m) => format!("the {m} load {}", self.load),
            None => format!("the OS79XX.TXT image {}", self.load),
        };
        Some(format!(
            "{what} is missing from the file store: {}",
            self.missing.join(", ")
        ))
    }
}

/// The image names a `.loads` manifest lists (its signed header is binary; the list is plain text).
pub fn manifest_images(content: &[u8], own_name: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for token in content.split(|b| !(b.is_ascii_alphanumeric() || b"._-".contains(b))) {
        let Ok(t) = std::str::from_utf8(token) else {
            continue;
        };
        let lower = t.to_ascii_lowercase();
        if t.len() > 4
            && t.len() <= 128
            && IMAGE_EXTENSIONS.iter().any(|e| lower.ends_with(e))
            && t != own_name
            && !out.iter().any(|o| o == t)
        {
            out.push(t.to_owned());
        }
    }
    out
}

/// Checks a load pinned for `model` (`None`: the `OS79XX.TXT` image) for tenant `tenant`.
pub fn check_load(snap: &Snapshot, tenant: usize, model: Option<Model>, load: &str) -> LoadStatus {
    let mut present = Vec::new();
    let mut missing = Vec::new();
    match model {
        None => {
            // The dual-boot image named in OS79XX.TXT: phones fetch the signed or the unsigned loader.
            let candidates = [
                format!("{load}.sbn"),
                format!("{load}.bin"),
                format!("{load}.loads"),
            ];
            match candidates.iter().find(|c| snap.file(tenant, c).is_some()) {
                Some(c) => present.push(c.clone()),
                None => missing.push(format!("{load}.sbn or {load}.bin")),
            }
        }
        Some(_) => {
            let manifest = format!("{load}.loads");
            match snap.file(tenant, &manifest) {
                None => missing.push(manifest),
                Some(file) => {
                    present.push(manifest.clone());
                    for image in manifest_images(&file.bytes, &manifest) {
                        if snap.file(tenant, &image).is_some() {
                            present.push(image);
                        } else {
                            missing.push(image);
                        }
                    }
                }
            }
        }
    }
    LoadStatus {
        model: model.map(|m| m.to_string()),
        load: load.to_owned(),
        present,
        missing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{StoredFile, TenantView};
    use std::collections::HashMap;

    fn snap(files: &[(&str, &[u8])]) -> Snapshot {
        let tenant = TenantView {
            id: uuid::Uuid::nil(),
            slug: "acme".parse().unwrap(),
            enabled: true,
            settings: Default::default(),
            files: HashMap::new(),
            templates: Default::default(),
        };
        let global = files
            .iter()
            .map(|(n, c)| (n.to_string(), StoredFile::new(c.to_vec())))
            .collect();
        Snapshot::build(1, vec![tenant], vec![], vec![], global)
    }

    #[test]
    fn a_manifest_lists_its_images() {
        let content = b"\x00\x01\xffsigned-by-cisco\x00jar42sip.9-4-2ES26.sbn\ncnu42.9-4-2ES26.sbn\napps42.9-4-2ES26.sbn\x00SIP42.9-4-2SR3-1S.loads";
        assert_eq!(
            manifest_images(content, "SIP42.9-4-2SR3-1S.loads"),
            [
                "jar42sip.9-4-2ES26.sbn",
                "cnu42.9-4-2ES26.sbn",
                "apps42.9-4-2ES26.sbn"
            ]
        );
    }

    #[test]
    fn missing_manifests_and_images_are_reported() {
        let s = snap(&[
            (
                "SIP42.9-4-2SR3-1S.loads",
                b"jar42sip.9-4-2ES26.sbn cnu42.9-4-2ES26.sbn",
            ),
            ("jar42sip.9-4-2ES26.sbn", b"x"),
        ]);
        let st = check_load(&s, 0, Some(Model::M7942), "SIP42.9-4-2SR3-1S");
        assert_eq!(st.missing, ["cnu42.9-4-2ES26.sbn"]);
        assert!(st.warning().unwrap().contains("cnu42"));
        let st = check_load(&s, 0, Some(Model::M7960), "P0S3-8-12-00");
        assert_eq!(st.missing, ["P0S3-8-12-00.loads"]);
        let st = check_load(&s, 0, None, "P003-8-12-00");
        assert_eq!(st.missing, ["P003-8-12-00.sbn or P003-8-12-00.bin"]);
        let s = snap(&[("P003-8-12-00.bin", b"x")]);
        assert!(check_load(&s, 0, None, "P003-8-12-00").missing.is_empty());
    }
}
