//! `Model`: the supported Cisco phone models, their families and their hardware limits.

use std::fmt;
use std::str::FromStr;

/// How a model is provisioned.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Family {
    /// 7940/7960 on SIP firmware up to 8.12: flat `SIPDefault.cnf` / `SIP<MAC>.cnf` plus `OS79XX.TXT`.
    Sip79xx,
    /// 7906/7911/794x/796x/797x on SIP 8.x/9.x: `SEP<MAC>.cnf.xml`.
    Sip79x1,
    /// 8941/8945/8961/9951/9971 on SIP 9.x: `SEP<MAC>.cnf.xml`.
    Sip89xx99xx,
}

macro_rules! models {
    ($( $variant:ident = $name:literal, $lines:literal, $family:ident, $device_type:literal, $display:literal; )*) => {
        /// A supported phone model.
        #[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, PartialOrd, Ord)]
        pub enum Model { $( #[doc = $display] $variant, )* }

        impl Model {
            /// Every supported model, in catalogue order.
            pub const ALL: &'static [Model] = &[$(Model::$variant,)*];

            /// The model number as written in the API (`"7960"`).
            pub fn as_str(self) -> &'static str { match self { $(Model::$variant => $name,)* } }

            /// How many line keys the model has: the maximum number of lines.
            pub fn line_keys(self) -> usize { match self { $(Model::$variant => $lines,)* } }

            /// The provisioning family.
            pub fn family(self) -> Family { match self { $(Model::$variant => Family::$family,)* } }

            /// The device-type number used in `loadInformationNNN` elements.
            pub fn device_type(self) -> u32 { match self { $(Model::$variant => $device_type,)* } }

            /// The human name used in `model="…"` attributes (`"IP Phone 7960"`).
            pub fn display_name(self) -> &'static str { match self { $(Model::$variant => $display,)* } }
        }
    };
}

models! {
    M7906 = "7906", 1, Sip79x1, 369, "IP Phone 7906";
    M7911 = "7911", 1, Sip79x1, 307, "IP Phone 7911";
    M7940 = "7940", 2, Sip79xx, 8, "IP Phone 7940";
    M7941 = "7941", 2, Sip79x1, 115, "IP Phone 7941";
    M7942 = "7942", 2, Sip79x1, 434, "IP Phone 7942";
    M7945 = "7945", 2, Sip79x1, 435, "IP Phone 7945";
    M7960 = "7960", 6, Sip79xx, 7, "IP Phone 7960";
    M7961 = "7961", 6, Sip79x1, 30018, "IP Phone 7961";
    M7962 = "7962", 6, Sip79x1, 404, "IP Phone 7962";
    M7965 = "7965", 6, Sip79x1, 436, "IP Phone 7965";
    M7970 = "7970", 8, Sip79x1, 30006, "IP Phone 7970";
    M7971 = "7971", 8, Sip79x1, 119, "IP Phone 7971";
    M7975 = "7975", 8, Sip79x1, 437, "IP Phone 7975";
    M8941 = "8941", 4, Sip89xx99xx, 586, "IP Phone 8941";
    M8945 = "8945", 4, Sip89xx99xx, 585, "IP Phone 8945";
    M8961 = "8961", 5, Sip89xx99xx, 540, "IP Phone 8961";
    M9951 = "9951", 5, Sip89xx99xx, 537, "IP Phone 9951";
    M9971 = "9971", 6, Sip89xx99xx, 493, "IP Phone 9971";
}

impl Model {
    /// The longest phone label the model displays.
    pub fn max_label_len(self) -> usize {
        match self.family() {
            // `phone_label` on 7940/7960 SIP: at most 11 characters.
            Family::Sip79xx => 11,
            // `phoneLabel` in SEP<MAC>.cnf.xml: at most 12.
            _ => 12,
        }
    }

    /// The longest SIP digest password the model stores.
    pub fn max_password_len(self) -> usize {
        match self.family() {
            Family::Sip79xx => 31,
            _ => 64,
        }
    }
}

/// Why a string is not a supported model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported model; supported: 7906, 7911, 7940, 7941, 7942, 7945, 7960, 7961, 7962, 7965, 7970, 7971, 7975, 8941, 8945, 8961, 9951, 9971")]
pub struct ParseModelError;

impl FromStr for Model {
    type Err = ParseModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let s = s.strip_prefix("CP-").unwrap_or(s);
        let s = s.strip_suffix('G').unwrap_or(s);
        Model::ALL
            .iter()
            .copied()
            .find(|m| m.as_str() == s)
            .ok_or(ParseModelError)
    }
}

impl fmt::Display for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Model {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Model {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_round_trip_and_carry_their_limits() {
        for m in Model::ALL {
            assert_eq!(m.as_str().parse::<Model>().unwrap(), *m);
        }
        assert_eq!("CP-7960G".parse::<Model>().unwrap(), Model::M7960);
        assert_eq!(Model::M7940.line_keys(), 2);
        assert_eq!(Model::M7960.line_keys(), 6);
        assert_eq!(Model::M7960.device_type(), 7);
        assert_eq!(Model::M7940.family(), Family::Sip79xx);
        assert!("7950".parse::<Model>().is_err());
    }
}
