//! `syncinfo.xml` (reference §1.9): after a SIP `NOTIFY` with `Event: check-sync`, a 7940/7960 fetches
//! it and reboots when `SYNC` differs from its `sync` parameter. `SYNC` is the tenant's 7940/7960 sync
//! stamp, the same number `SIPDefault.cnf` carries (see the provisioning module documentation).

/// Renders `syncinfo.xml` for a sync stamp.
pub fn syncinfo(sync: &str) -> String {
    format!(
        "<SYNCINFO>\n  <IMAGE VERSION=\"*\" SYNC=\"{}\"/>\n</SYNCINFO>\n",
        super::escape_xml(sync)
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn shape() {
        assert_eq!(
            super::syncinfo("12"),
            "<SYNCINFO>\n  <IMAGE VERSION=\"*\" SYNC=\"12\"/>\n</SYNCINFO>\n"
        );
    }
}
