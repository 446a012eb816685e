//! CSV phone import parser: never panics on any body; every row gives either a phone whose MAC is
//! canonical and whose lines fit the model, or at least one error with a message.
//!
//! NEEDS `dialtone::api::parse_import_csv`, a public wrapper around the private `csv_rows` of
//! `src/api/imports.rs` (see RELIABILITY.md, "Fuzzing"):
//!
//! ```ignore
//! // src/api/imports.rs
//! /// The rows of a CSV import body: the header is checked, then each data row is parsed (public for
//! /// the fuzz targets).
//! pub fn parse_import_csv(
//!     body: &[u8],
//! ) -> Result<Vec<Result<(MacAddress, PhoneSpec), Vec<FieldError>>>, ApiError> {
//!     csv_rows(body)
//! }
//! // src/api/mod.rs
//! pub use imports::parse_import_csv;
//! ```
//!
//! Until then the target is built only with `--features import-csv`.

#![no_main]

use dialtone::api::parse_import_csv;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let rows = match parse_import_csv(data) {
        Ok(rows) => rows,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    // One result per record: never more records than line breaks plus one.
    let breaks = data.iter().filter(|&&b| b == b'\n' || b == b'\r').count();
    assert!(rows.len() <= breaks + 1, "{} rows", rows.len());
    for row in rows {
        match row {
            Ok((mac, spec)) => {
                let shown = mac.to_string();
                assert_eq!(shown.parse(), Ok(mac));
                assert!(!spec.lines.is_empty());
                assert!(spec.lines.len() <= spec.model.line_keys());
                assert!(spec.settings.check(Some(spec.model)).is_ok());
            }
            Err(errors) => {
                assert!(!errors.is_empty(), "a refused row names why");
                assert!(errors.iter().all(|e| !e.message.is_empty()));
            }
        }
    }
});
