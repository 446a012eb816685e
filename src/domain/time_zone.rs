//! `TimeZone`: the IANA zones dialtone supports, with the names and DST rules Cisco firmware needs.

use std::fmt;
use std::str::FromStr;

/// When daylight saving time starts and stops, in the terms of the 7940/7960 `dst_*` parameters.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DstRule {
    /// No daylight saving time.
    None,
    /// EU: last Sunday of March to last Sunday of October, 01:00 UTC.
    Eu,
    /// US/Canada: second Sunday of March to first Sunday of November, 02:00 local.
    Us,
    /// Southern Australia: first Sunday of October to first Sunday of April, 02:00 local.
    AuSouth,
    /// New Zealand: last Sunday of September to first Sunday of April, 02:00 local.
    Nz,
}

/// One supported zone.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ZoneInfo {
    /// IANA name, as written in the API (`Europe/London`).
    pub iana: &'static str,
    /// The name of the zone in `timeZone` of `SEP<MAC>.cnf.xml` (`GMT Standard/Daylight Time`).
    pub cisco_xml: &'static str,
    /// The abbreviation for `time_zone` in 7940/7960 `.cnf` files (`GMT`).
    pub cisco_cnf: &'static str,
    /// Standard offset from UTC, minutes.
    pub utc_offset_minutes: i32,
    /// The daylight saving rule.
    pub dst: DstRule,
}

const ZONES: &[ZoneInfo] = &[
    z("UTC", "Greenwich Standard Time", "GMT", 0, DstRule::None),
    z(
        "Europe/London",
        "GMT Standard/Daylight Time",
        "GMT",
        0,
        DstRule::Eu,
    ),
    z(
        "Europe/Dublin",
        "GMT Standard/Daylight Time",
        "GMT",
        0,
        DstRule::Eu,
    ),
    z(
        "Europe/Lisbon",
        "GMT Standard/Daylight Time",
        "GMT",
        0,
        DstRule::Eu,
    ),
    z(
        "Europe/Paris",
        "Romance Standard/Daylight Time",
        "CET",
        60,
        DstRule::Eu,
    ),
    z(
        "Europe/Brussels",
        "Romance Standard/Daylight Time",
        "CET",
        60,
        DstRule::Eu,
    ),
    z(
        "Europe/Madrid",
        "Romance Standard/Daylight Time",
        "CET",
        60,
        DstRule::Eu,
    ),
    z(
        "Europe/Berlin",
        "W. Europe Standard/Daylight Time",
        "CET",
        60,
        DstRule::Eu,
    ),
    z(
        "Europe/Amsterdam",
        "W. Europe Standard/Daylight Time",
        "CET",
        60,
        DstRule::Eu,
    ),
    z(
        "Europe/Rome",
        "W. Europe Standard/Daylight Time",
        "CET",
        60,
        DstRule::Eu,
    ),
    z(
        "Europe/Vienna",
        "W. Europe Standard/Daylight Time",
        "CET",
        60,
        DstRule::Eu,
    ),
    z(
        "Europe/Zurich",
        "W. Europe Standard/Daylight Time",
        "CET",
        60,
        DstRule::Eu,
    ),
    z(
        "Europe/Stockholm",
        "W. Europe Standard/Daylight Time",
        "CET",
        60,
        DstRule::Eu,
    ),
    z(
        "Europe/Warsaw",
        "Central European Standard/Daylight Time",
        "CET",
        60,
        DstRule::Eu,
    ),
    z(
        "Europe/Prague",
        "Central Europe Standard/Daylight Time",
        "CET",
        60,
        DstRule::Eu,
    ),
    z(
        "Europe/Athens",
        "GTB Standard/Daylight Time",
        "EET",
        120,
        DstRule::Eu,
    ),
    z(
        "Europe/Helsinki",
        "FLE Standard/Daylight Time",
        "EET",
        120,
        DstRule::Eu,
    ),
    z(
        "Europe/Moscow",
        "Russian Standard Time",
        "MSK",
        180,
        DstRule::None,
    ),
    z(
        "America/New_York",
        "Eastern Standard/Daylight Time",
        "EST",
        -300,
        DstRule::Us,
    ),
    z(
        "America/Toronto",
        "Eastern Standard/Daylight Time",
        "EST",
        -300,
        DstRule::Us,
    ),
    z(
        "America/Chicago",
        "Central Standard/Daylight Time",
        "CST",
        -360,
        DstRule::Us,
    ),
    z(
        "America/Denver",
        "Mountain Standard/Daylight Time",
        "MST",
        -420,
        DstRule::Us,
    ),
    z(
        "America/Phoenix",
        "US Mountain Standard Time",
        "MST",
        -420,
        DstRule::None,
    ),
    z(
        "America/Los_Angeles",
        "Pacific Standard/Daylight Time",
        "PST",
        -480,
        DstRule::Us,
    ),
    z(
        "America/Anchorage",
        "Alaskan Standard/Daylight Time",
        "AKST",
        -540,
        DstRule::Us,
    ),
    z(
        "Pacific/Honolulu",
        "Hawaiian Standard Time",
        "HST",
        -600,
        DstRule::None,
    ),
    z(
        "America/Sao_Paulo",
        "E. South America Standard Time",
        "BRT",
        -180,
        DstRule::None,
    ),
    z(
        "Asia/Dubai",
        "Arabian Standard Time",
        "GST",
        240,
        DstRule::None,
    ),
    z(
        "Asia/Kolkata",
        "India Standard Time",
        "IST",
        330,
        DstRule::None,
    ),
    z(
        "Asia/Singapore",
        "Singapore Standard Time",
        "SGT",
        480,
        DstRule::None,
    ),
    z(
        "Asia/Hong_Kong",
        "China Standard Time",
        "HKT",
        480,
        DstRule::None,
    ),
    z(
        "Asia/Tokyo",
        "Tokyo Standard Time",
        "JST",
        540,
        DstRule::None,
    ),
    z(
        "Australia/Sydney",
        "AUS Eastern Standard/Daylight Time",
        "AEST",
        600,
        DstRule::AuSouth,
    ),
    z(
        "Australia/Melbourne",
        "AUS Eastern Standard/Daylight Time",
        "AEST",
        600,
        DstRule::AuSouth,
    ),
    z(
        "Australia/Brisbane",
        "E. Australia Standard Time",
        "AEST",
        600,
        DstRule::None,
    ),
    z(
        "Australia/Perth",
        "W. Australia Standard Time",
        "AWST",
        480,
        DstRule::None,
    ),
    z(
        "Pacific/Auckland",
        "New Zealand Standard/Daylight Time",
        "NZST",
        720,
        DstRule::Nz,
    ),
    z(
        "Africa/Johannesburg",
        "South Africa Standard Time",
        "SAST",
        120,
        DstRule::None,
    ),
];

const fn z(
    iana: &'static str,
    cisco_xml: &'static str,
    cisco_cnf: &'static str,
    utc_offset_minutes: i32,
    dst: DstRule,
) -> ZoneInfo {
    ZoneInfo {
        iana,
        cisco_xml,
        cisco_cnf,
        utc_offset_minutes,
        dst,
    }
}

/// A supported time zone, named by its IANA identifier.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TimeZone(&'static ZoneInfo);

/// Why a string is not a supported time zone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported time zone; use an IANA name such as Europe/London or America/New_York (see the README for the list)")]
pub struct ParseTimeZoneError;

impl TimeZone {
    /// The zone's table entry.
    pub fn info(&self) -> &'static ZoneInfo {
        self.0
    }

    /// Every supported zone.
    pub fn all() -> impl Iterator<Item = TimeZone> {
        ZONES.iter().map(TimeZone)
    }
}

impl Default for TimeZone {
    fn default() -> Self {
        TimeZone(&ZONES[0])
    }
}

impl FromStr for TimeZone {
    type Err = ParseTimeZoneError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ZONES
            .iter()
            .find(|z| z.iana == s)
            .map(TimeZone)
            .ok_or(ParseTimeZoneError)
    }
}

impl fmt::Display for TimeZone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.iana)
    }
}

impl serde::Serialize for TimeZone {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.iana)
    }
}

impl<'de> serde::Deserialize<'de> for TimeZone {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_are_unique_and_parse() {
        let mut names: Vec<_> = ZONES.iter().map(|z| z.iana).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), ZONES.len());
        assert_eq!(
            "Europe/London"
                .parse::<TimeZone>()
                .unwrap()
                .info()
                .cisco_xml,
            "GMT Standard/Daylight Time"
        );
        assert!("Mars/Olympus".parse::<TimeZone>().is_err());
    }
}
