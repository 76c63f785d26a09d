//! Reference data that more than one service speaks of: the sector
//! taxonomy, the revenue bands and the ISO 3166-1 country codes.
//!
//! The metrics service stores a company's sector and derives its revenue
//! band from its ARR; the benchmark service slices peers by both. Keeping
//! the tables here means the two can never disagree about an identifier.

use metrix_proto::common::v1::{RevenueBand, Sector};

/// One sector of the fixed taxonomy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SectorInfo {
    /// Stable identifier, such as `fintech`.
    pub id: &'static str,
    /// Human-readable name.
    pub display_name: &'static str,
    /// What belongs in the sector, in one sentence.
    pub description: &'static str,
}

impl SectorInfo {
    /// The contract's form.
    pub fn to_proto(&self) -> Sector {
        Sector {
            id: self.id.to_owned(),
            display_name: self.display_name.to_owned(),
            description: self.description.to_owned(),
        }
    }
}

/// The sector taxonomy, ordered by id.
pub const SECTORS: [SectorInfo; 18] = [
    SectorInfo {
        id: "ai_data",
        display_name: "AI & data",
        description: "Machine learning, data infrastructure, analytics and AI applications.",
    },
    SectorInfo {
        id: "climate_energy",
        display_name: "Climate & energy",
        description: "Renewable energy, carbon accounting, grid and sustainability software.",
    },
    SectorInfo {
        id: "consumer",
        display_name: "Consumer apps",
        description: "Social, productivity, lifestyle and other apps sold to individuals.",
    },
    SectorInfo {
        id: "cybersecurity",
        display_name: "Cybersecurity",
        description: "Identity, endpoint, network, cloud and application security.",
    },
    SectorInfo {
        id: "devtools",
        display_name: "Developer tools",
        description: "Tools and infrastructure for software developers and operators.",
    },
    SectorInfo {
        id: "ecommerce",
        display_name: "E-commerce & retail",
        description: "Online stores, direct-to-consumer brands and retail technology.",
    },
    SectorInfo {
        id: "edtech",
        display_name: "Education",
        description: "Learning platforms, school software and professional training.",
    },
    SectorInfo {
        id: "fintech",
        display_name: "Fintech",
        description: "Payments, banking, lending, accounting and financial infrastructure.",
    },
    SectorInfo {
        id: "gaming_media",
        display_name: "Gaming & media",
        description: "Games, streaming, publishing and creator tools.",
    },
    SectorInfo {
        id: "healthtech",
        display_name: "Health",
        description: "Digital health, care delivery, medical software and life-science tools.",
    },
    SectorInfo {
        id: "hr_work",
        display_name: "HR & future of work",
        description: "Recruiting, payroll, people management and collaboration software.",
    },
    SectorInfo {
        id: "insurtech",
        display_name: "Insurance",
        description: "Insurance products, distribution and claims technology.",
    },
    SectorInfo {
        id: "legal_govtech",
        display_name: "Legal & government",
        description: "Software for legal work, compliance and the public sector.",
    },
    SectorInfo {
        id: "logistics_mobility",
        display_name: "Logistics & mobility",
        description: "Supply chain, freight, fleet and transport technology.",
    },
    SectorInfo {
        id: "marketplaces",
        display_name: "Marketplaces",
        description: "Platforms matching buyers and sellers of goods or services.",
    },
    SectorInfo {
        id: "martech_sales",
        display_name: "Marketing & sales",
        description: "Marketing automation, advertising technology, CRM and sales tools.",
    },
    SectorInfo {
        id: "proptech",
        display_name: "Real estate & construction",
        description: "Property, construction and facilities software.",
    },
    SectorInfo {
        id: "vertical_saas",
        display_name: "Vertical SaaS",
        description: "Software for one industry not covered by another sector (restaurants, salons, farms…).",
    },
];

/// The sector with `id`, if it is in the taxonomy.
pub fn sector(id: &str) -> Option<&'static SectorInfo> {
    SECTORS.iter().find(|sector| sector.id == id)
}

/// One revenue band: ARR in `[min_arr_usd, max_arr_usd)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RevenueBandInfo {
    /// Stable identifier, such as `arr_1m_5m`.
    pub id: &'static str,
    /// Human-readable name.
    pub display_name: &'static str,
    /// Inclusive lower bound in US dollars.
    pub min_arr_usd: f64,
    /// Exclusive upper bound in US dollars; `None` means unbounded.
    pub max_arr_usd: Option<f64>,
}

impl RevenueBandInfo {
    /// Whether `arr` falls in the band.
    pub fn contains(&self, arr: f64) -> bool {
        arr >= self.min_arr_usd && self.max_arr_usd.is_none_or(|max| arr < max)
    }

    /// The contract's form (0 for an unbounded upper end).
    pub fn to_proto(&self) -> RevenueBand {
        RevenueBand {
            id: self.id.to_owned(),
            display_name: self.display_name.to_owned(),
            min_arr_usd: self.min_arr_usd,
            max_arr_usd: self.max_arr_usd.unwrap_or(0.0),
        }
    }
}

/// The default revenue bands, ascending and contiguous from zero.
pub const REVENUE_BANDS: [RevenueBandInfo; 5] = [
    RevenueBandInfo {
        id: "arr_0_1m",
        display_name: "Under $1M ARR",
        min_arr_usd: 0.0,
        max_arr_usd: Some(1_000_000.0),
    },
    RevenueBandInfo {
        id: "arr_1m_5m",
        display_name: "$1M–$5M ARR",
        min_arr_usd: 1_000_000.0,
        max_arr_usd: Some(5_000_000.0),
    },
    RevenueBandInfo {
        id: "arr_5m_10m",
        display_name: "$5M–$10M ARR",
        min_arr_usd: 5_000_000.0,
        max_arr_usd: Some(10_000_000.0),
    },
    RevenueBandInfo {
        id: "arr_10m_50m",
        display_name: "$10M–$50M ARR",
        min_arr_usd: 10_000_000.0,
        max_arr_usd: Some(50_000_000.0),
    },
    RevenueBandInfo {
        id: "arr_50m_plus",
        display_name: "$50M+ ARR",
        min_arr_usd: 50_000_000.0,
        max_arr_usd: None,
    },
];

/// The band of an ARR figure; `None` for a negative or non-finite one.
pub fn revenue_band_for(arr: f64) -> Option<&'static RevenueBandInfo> {
    if !arr.is_finite() {
        return None;
    }
    REVENUE_BANDS.iter().find(|band| band.contains(arr))
}

/// The band with `id`, if it is one of the bands.
pub fn revenue_band(id: &str) -> Option<&'static RevenueBandInfo> {
    REVENUE_BANDS.iter().find(|band| band.id == id)
}

/// The officially assigned ISO 3166-1 alpha-2 codes.
const COUNTRY_CODES: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ \
BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI \
FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT \
JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ \
MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS \
RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA \
UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW";

/// Whether `code` is an assigned ISO 3166-1 alpha-2 code (upper case).
pub fn is_country_code(code: &str) -> bool {
    code.len() == 2 && COUNTRY_CODES.split(' ').any(|known| known == code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sectors_are_ordered_and_unique() {
        assert!(SECTORS.windows(2).all(|pair| pair[0].id < pair[1].id));
        assert_eq!(sector("fintech").map(|found| found.display_name), Some("Fintech"));
        assert!(sector("FinTech").is_none());
    }

    #[test]
    fn bands_cover_every_arr_once() {
        assert!(
            REVENUE_BANDS
                .windows(2)
                .all(|pair| pair[0].max_arr_usd == Some(pair[1].min_arr_usd))
        );
        for (arr, expected) in [
            (0.0, "arr_0_1m"),
            (999_999.99, "arr_0_1m"),
            (1_000_000.0, "arr_1m_5m"),
            (7_500_000.0, "arr_5m_10m"),
            (49_999_999.0, "arr_10m_50m"),
            (50_000_000.0, "arr_50m_plus"),
            (4e12, "arr_50m_plus"),
        ] {
            assert_eq!(revenue_band_for(arr).map(|band| band.id), Some(expected), "{arr}");
        }
        assert!(revenue_band_for(-1.0).is_none());
        assert!(revenue_band_for(f64::NAN).is_none());
    }

    #[test]
    fn country_codes_are_the_assigned_ones() {
        assert_eq!(COUNTRY_CODES.split(' ').count(), 249);
        assert!(
            COUNTRY_CODES
                .split(' ')
                .collect::<Vec<_>>()
                .windows(2)
                .all(|pair| pair[0] < pair[1])
        );
        assert!(is_country_code("DE") && is_country_code("US") && is_country_code("SS"));
        assert!(!is_country_code("UK") && !is_country_code("de") && !is_country_code("D"));
    }
}
