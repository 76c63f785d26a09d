//! The metric catalog: every metric Metrix knows, what it means, its unit and
//! periods, the values it may and plausibly takes, and how it is calculated.
//!
//! The catalog is a fixed table compiled into the service, ordered by id.
//! ListMetricDefinitions serves it, CalculateKpi ([`crate::formulas`]) and
//! ValidateKpi ([`crate::validation`]) read their rules from it, and the
//! benchmark service relies on its identifiers, so an identifier is never
//! renamed or reused. `docs/metrics.md` explains every entry.

use MetricUnit::{Percent, Ratio, Usd};
use PeriodGranularity::{Month, Quarter, Year};
use metrix_proto::common::v1::MetricDirection;
use metrix_proto::metrics::v1::{FormulaInput, MetricDefinition, MetricUnit, PeriodGranularity};

/// How a metric's value relates to the period it is recorded for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measurement {
    /// The value depends only on the last day of the period (ARR at the end
    /// of the quarter, retention over the twelve months ending with it), so
    /// periods of different lengths that end on the same day share the value.
    AtPeriodEnd,
    /// The value is measured over the whole period (a quarter's gross
    /// margin), so a value for a month says nothing about its quarter.
    OverPeriod,
}

/// One named input of a metric's formula.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InputSpec {
    /// Name of the input, a lower_snake_case key of `CalculateKpiRequest.inputs`.
    pub name: &'static str,
    /// One sentence on what the input is, including the values it may take.
    pub description: &'static str,
    /// Unit the input is expected in.
    pub unit: MetricUnit,
}

impl InputSpec {
    /// The contract's form of the input.
    pub fn to_proto(&self) -> FormulaInput {
        FormulaInput {
            name: self.name.to_owned(),
            description: self.description.to_owned(),
            unit: self.unit as i32,
        }
    }
}

/// The definition of one metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricSpec {
    /// Stable identifier, such as `ndr`.
    pub id: &'static str,
    /// Human-readable name, such as `Net dollar retention`.
    pub display_name: &'static str,
    /// One or two sentences on what the metric measures.
    pub description: &'static str,
    /// Unit of the metric's values.
    pub unit: MetricUnit,
    /// How the value relates to its period.
    pub measurement: Measurement,
    /// The granularity the metric is usually recorded at.
    pub natural_granularity: PeriodGranularity,
    /// Every granularity a value may be recorded at, natural one included,
    /// from shortest to longest.
    pub allowed_granularities: &'static [PeriodGranularity],
    /// Whether larger values are better or worse.
    pub direction: MetricDirection,
    /// Hard lower bound, inclusive; a smaller value is invalid.
    pub min_value: Option<f64>,
    /// Hard upper bound, inclusive; a larger value is invalid.
    pub max_value: Option<f64>,
    /// Lower end of the plausible range, inclusive; a smaller valid value
    /// draws a warning.
    pub plausible_min_value: Option<f64>,
    /// Upper end of the plausible range, inclusive; a larger valid value
    /// draws a warning.
    pub plausible_max_value: Option<f64>,
    /// The formula in words; empty when the metric is only entered.
    pub formula: &'static str,
    /// The formula's inputs in formula order; empty when the metric is only
    /// entered.
    pub inputs: &'static [InputSpec],
    /// Metrics checked against this one by ValidateKpi's cross-metric checks.
    pub related_metric_ids: &'static [&'static str],
}

impl MetricSpec {
    /// Whether CalculateKpi can calculate the metric from inputs.
    pub fn is_calculated(&self) -> bool {
        !self.inputs.is_empty()
    }

    /// Whether values may be recorded for periods of `granularity`.
    pub fn allows(&self, granularity: PeriodGranularity) -> bool {
        self.allowed_granularities.contains(&granularity)
    }

    /// The input named `name`, if the formula has one.
    pub fn input(&self, name: &str) -> Option<&'static InputSpec> {
        self.inputs.iter().find(|input| input.name == name)
    }

    /// The input names in formula order, joined by `, ` for messages.
    pub fn input_names(&self) -> String {
        let names: Vec<&str> = self.inputs.iter().map(|input| input.name).collect();
        names.join(", ")
    }

    /// The contract's form of the definition.
    pub fn to_proto(&self) -> MetricDefinition {
        MetricDefinition {
            metric_id: self.id.to_owned(),
            display_name: self.display_name.to_owned(),
            description: self.description.to_owned(),
            unit: self.unit as i32,
            period_granularity: self.natural_granularity as i32,
            allowed_granularities: self
                .allowed_granularities
                .iter()
                .map(|granularity| *granularity as i32)
                .collect(),
            direction: self.direction as i32,
            min_value: self.min_value,
            max_value: self.max_value,
            plausible_min_value: self.plausible_min_value,
            plausible_max_value: self.plausible_max_value,
            formula: self.formula.to_owned(),
            inputs: self.inputs.iter().map(InputSpec::to_proto).collect(),
            related_metric_ids: self.related_metric_ids.iter().map(|id| (*id).to_owned()).collect(),
        }
    }
}

/// The metric with identifier `metric_id`, if there is one.
pub fn find(metric_id: &str) -> Option<&'static MetricSpec> {
    CATALOG
        .binary_search_by(|spec| spec.id.cmp(metric_id))
        .ok()
        .and_then(|position| CATALOG.get(position))
}

/// Every metric, ordered by id.
pub fn all() -> &'static [MetricSpec] {
    &CATALOG
}

/// The metric identifiers in order, joined by `, ` for messages.
pub fn metric_ids() -> String {
    let ids: Vec<&str> = CATALOG.iter().map(|spec| spec.id).collect();
    ids.join(", ")
}

/// Month, quarter or year.
const ANY_GRANULARITY: &[PeriodGranularity] = &[Month, Quarter, Year];
/// Quarter or year.
const QUARTER_OR_YEAR: &[PeriodGranularity] = &[Quarter, Year];

/// The ARR the retention metrics start from.
const START_ARR_INPUT: InputSpec = InputSpec {
    name: "start_arr",
    description: "ARR of the customers at the start of the twelve months ending with the period, in US dollars; \
                  must be greater than zero.",
    unit: Usd,
};
/// The downgrades the retention metrics subtract.
const CONTRACTION_INPUT: InputSpec = InputSpec {
    name: "contraction",
    description: "ARR those customers took away by downgrading while staying customers, in US dollars; must not be \
                  negative.",
    unit: Usd,
};
/// The lost customers the retention metrics subtract.
const CHURN_INPUT: InputSpec = InputSpec {
    name: "churn",
    description: "ARR of those customers who left, in US dollars; must not be negative, and contraction plus churn \
                  must not exceed start_arr.",
    unit: Usd,
};

/// The catalog, ordered by id (a test checks the order `find` relies on).
static CATALOG: [MetricSpec; 13] = [
    MetricSpec {
        id: "arr",
        display_name: "Annual recurring revenue",
        description: "The annualised value of the recurring subscription revenue under contract on the last day of \
                      the period, in US dollars.",
        unit: Usd,
        measurement: Measurement::AtPeriodEnd,
        natural_granularity: Quarter,
        allowed_granularities: ANY_GRANULARITY,
        direction: MetricDirection::HigherIsBetter,
        min_value: Some(0.0),
        max_value: None,
        plausible_min_value: None,
        plausible_max_value: Some(12_000_000_000.0),
        formula: "12 × MRR",
        inputs: &[InputSpec {
            name: "mrr",
            description: "Monthly recurring revenue on the last day of the period, in US dollars; must not be \
                          negative.",
            unit: Usd,
        }],
        related_metric_ids: &["mrr"],
    },
    MetricSpec {
        id: "arr_growth_yoy",
        display_name: "ARR growth (year over year)",
        description: "How much ARR on the last day of the period grew against ARR twelve months earlier, in \
                      percent.",
        unit: Percent,
        measurement: Measurement::AtPeriodEnd,
        natural_granularity: Quarter,
        allowed_granularities: QUARTER_OR_YEAR,
        direction: MetricDirection::HigherIsBetter,
        min_value: Some(-100.0),
        max_value: None,
        plausible_min_value: Some(-80.0),
        plausible_max_value: Some(1000.0),
        formula: "(ARR − ARR one year earlier) / ARR one year earlier × 100",
        inputs: &[
            InputSpec {
                name: "arr",
                description: "ARR on the last day of the period, in US dollars; must not be negative.",
                unit: Usd,
            },
            InputSpec {
                name: "arr_year_ago",
                description: "ARR twelve months earlier, in US dollars; must be greater than zero.",
                unit: Usd,
            },
        ],
        related_metric_ids: &["ndr"],
    },
    MetricSpec {
        id: "burn_multiple",
        display_name: "Burn multiple",
        description: "Net cash burned for every dollar of net new ARR in the period; a company that generates cash \
                      has a burn multiple of 0.",
        unit: Ratio,
        measurement: Measurement::OverPeriod,
        natural_granularity: Quarter,
        allowed_granularities: QUARTER_OR_YEAR,
        direction: MetricDirection::LowerIsBetter,
        min_value: Some(0.0),
        max_value: None,
        plausible_min_value: None,
        plausible_max_value: Some(10.0),
        formula: "max(net burn, 0) / net new ARR",
        inputs: &[
            InputSpec {
                name: "net_burn",
                description: "Cash spent minus cash received in the period, in US dollars; negative when the \
                              company generated cash, which counts as zero burn.",
                unit: Usd,
            },
            InputSpec {
                name: "net_new_arr",
                description: "ARR on the last day of the period minus ARR on the last day of the period before, \
                              in US dollars; must be greater than zero.",
                unit: Usd,
            },
        ],
        related_metric_ids: &[],
    },
    MetricSpec {
        id: "cac_payback_months",
        display_name: "CAC payback period",
        description: "How many months of gross profit from a new customer it takes to earn back the cost of \
                      acquiring it.",
        unit: MetricUnit::Months,
        measurement: Measurement::OverPeriod,
        natural_granularity: Quarter,
        allowed_granularities: ANY_GRANULARITY,
        direction: MetricDirection::LowerIsBetter,
        min_value: Some(0.0),
        max_value: None,
        plausible_min_value: None,
        plausible_max_value: Some(60.0),
        formula: "CAC / (monthly ARPA × gross margin / 100)",
        inputs: &[
            InputSpec {
                name: "cac",
                description: "Sales and marketing spend of the period divided by the customers acquired in it, in \
                              US dollars; must not be negative.",
                unit: Usd,
            },
            InputSpec {
                name: "monthly_arpa",
                description: "Average monthly recurring revenue per account, in US dollars; must be greater than \
                              zero.",
                unit: Usd,
            },
            InputSpec {
                name: "gross_margin",
                description: "Gross margin on the 0–100 scale; must be greater than zero and at most 100.",
                unit: Percent,
            },
        ],
        related_metric_ids: &[],
    },
    MetricSpec {
        id: "fcf_margin",
        display_name: "Free cash flow margin",
        description: "Free cash flow (operating cash flow minus capital expenditure) of the period as a share of \
                      its revenue, in percent; negative while the company burns cash.",
        unit: Percent,
        measurement: Measurement::OverPeriod,
        natural_granularity: Year,
        allowed_granularities: QUARTER_OR_YEAR,
        direction: MetricDirection::HigherIsBetter,
        min_value: None,
        max_value: None,
        plausible_min_value: Some(-300.0),
        plausible_max_value: Some(70.0),
        formula: "",
        inputs: &[],
        related_metric_ids: &["revenue_growth_yoy", "rule_of_40"],
    },
    MetricSpec {
        id: "gross_margin",
        display_name: "Gross margin",
        description: "Revenue of the period minus its cost of revenue, as a share of revenue, in percent.",
        unit: Percent,
        measurement: Measurement::OverPeriod,
        natural_granularity: Quarter,
        allowed_granularities: ANY_GRANULARITY,
        direction: MetricDirection::HigherIsBetter,
        min_value: Some(-1000.0),
        max_value: Some(100.0),
        plausible_min_value: Some(0.0),
        plausible_max_value: Some(95.0),
        formula: "(revenue − cost of revenue) / revenue × 100",
        inputs: &[
            InputSpec {
                name: "revenue",
                description: "Revenue recognised in the period, in US dollars; must be greater than zero.",
                unit: Usd,
            },
            InputSpec {
                name: "cost_of_revenue",
                description: "Cost of delivering that revenue (hosting, support, services staff, payment fees), \
                              in US dollars; must not be negative.",
                unit: Usd,
            },
        ],
        related_metric_ids: &[],
    },
    MetricSpec {
        id: "grr",
        display_name: "Gross revenue retention",
        description: "The share of the ARR of the customers at the start of the twelve months ending with the \
                      period that those customers still pay at its end, not counting expansion; at most 100.",
        unit: Percent,
        measurement: Measurement::AtPeriodEnd,
        natural_granularity: Quarter,
        allowed_granularities: ANY_GRANULARITY,
        direction: MetricDirection::HigherIsBetter,
        min_value: Some(0.0),
        max_value: Some(100.0),
        plausible_min_value: Some(50.0),
        plausible_max_value: None,
        formula: "(start ARR − contraction − churn) / start ARR × 100",
        inputs: &[START_ARR_INPUT, CONTRACTION_INPUT, CHURN_INPUT],
        related_metric_ids: &["ndr"],
    },
    MetricSpec {
        id: "magic_number",
        display_name: "Magic number",
        description: "Net new ARR of the quarter for every dollar of sales and marketing spent in the quarter \
                      before.",
        unit: Ratio,
        measurement: Measurement::OverPeriod,
        natural_granularity: Quarter,
        allowed_granularities: &[Quarter],
        direction: MetricDirection::HigherIsBetter,
        min_value: None,
        max_value: None,
        plausible_min_value: Some(-1.0),
        plausible_max_value: Some(3.0),
        formula: "net new ARR of the quarter / sales and marketing spend of the previous quarter",
        inputs: &[
            InputSpec {
                name: "net_new_arr",
                description: "ARR on the last day of the quarter minus ARR on the last day of the quarter before, \
                              in US dollars; negative when ARR shrank.",
                unit: Usd,
            },
            InputSpec {
                name: "prior_quarter_sales_marketing_spend",
                description: "Sales and marketing spend of the quarter before, in US dollars; must be greater than \
                              zero.",
                unit: Usd,
            },
        ],
        related_metric_ids: &[],
    },
    MetricSpec {
        id: "mrr",
        display_name: "Monthly recurring revenue",
        description: "The monthly value of the recurring subscription revenue under contract on the last day of \
                      the period, in US dollars.",
        unit: Usd,
        measurement: Measurement::AtPeriodEnd,
        natural_granularity: Month,
        allowed_granularities: &[Month, Quarter],
        direction: MetricDirection::HigherIsBetter,
        min_value: Some(0.0),
        max_value: None,
        plausible_min_value: None,
        plausible_max_value: Some(1_000_000_000.0),
        formula: "ARR / 12",
        inputs: &[InputSpec {
            name: "arr",
            description: "Annual recurring revenue on the last day of the period, in US dollars; must not be \
                          negative.",
            unit: Usd,
        }],
        related_metric_ids: &["arr"],
    },
    MetricSpec {
        id: "ndr",
        display_name: "Net dollar retention",
        description: "The share of the ARR of the customers at the start of the twelve months ending with the \
                      period that those customers pay at its end, expansion included and new customers excluded.",
        unit: Percent,
        measurement: Measurement::AtPeriodEnd,
        natural_granularity: Quarter,
        allowed_granularities: ANY_GRANULARITY,
        direction: MetricDirection::HigherIsBetter,
        min_value: Some(0.0),
        max_value: Some(1000.0),
        plausible_min_value: Some(50.0),
        plausible_max_value: Some(200.0),
        formula: "(start ARR + expansion − contraction − churn) / start ARR × 100",
        inputs: &[
            START_ARR_INPUT,
            InputSpec {
                name: "expansion",
                description: "ARR those customers added through upgrades, seats, cross-sell and price increases, in \
                              US dollars; must not be negative.",
                unit: Usd,
            },
            CONTRACTION_INPUT,
            CHURN_INPUT,
        ],
        related_metric_ids: &["arr_growth_yoy", "grr"],
    },
    MetricSpec {
        id: "pipeline_coverage",
        display_name: "Pipeline coverage",
        description: "Qualified sales pipeline for the period as a multiple of the period's new bookings target.",
        unit: Ratio,
        measurement: Measurement::OverPeriod,
        natural_granularity: Quarter,
        allowed_granularities: ANY_GRANULARITY,
        direction: MetricDirection::HigherIsBetter,
        min_value: Some(0.0),
        max_value: None,
        plausible_min_value: None,
        plausible_max_value: Some(10.0),
        formula: "pipeline / bookings target",
        inputs: &[
            InputSpec {
                name: "pipeline",
                description: "Value of the qualified opportunities expected to close in the period, in US dollars; \
                              must not be negative.",
                unit: Usd,
            },
            InputSpec {
                name: "target",
                description: "New bookings target of the period, in US dollars; must be greater than zero.",
                unit: Usd,
            },
        ],
        related_metric_ids: &[],
    },
    MetricSpec {
        id: "revenue_growth_yoy",
        display_name: "Revenue growth (year over year)",
        description: "How much revenue of the period grew against revenue of the same period one year earlier, in \
                      percent.",
        unit: Percent,
        measurement: Measurement::OverPeriod,
        natural_granularity: Year,
        allowed_granularities: QUARTER_OR_YEAR,
        direction: MetricDirection::HigherIsBetter,
        min_value: Some(-100.0),
        max_value: None,
        plausible_min_value: Some(-80.0),
        plausible_max_value: Some(1000.0),
        formula: "",
        inputs: &[],
        related_metric_ids: &["fcf_margin", "rule_of_40"],
    },
    MetricSpec {
        id: "rule_of_40",
        display_name: "Rule of 40",
        description: "Year-over-year revenue growth plus free cash flow margin of the period, in percentage points; \
                      40 or more is considered healthy.",
        unit: Percent,
        measurement: Measurement::OverPeriod,
        natural_granularity: Year,
        allowed_granularities: QUARTER_OR_YEAR,
        direction: MetricDirection::HigherIsBetter,
        min_value: None,
        max_value: None,
        plausible_min_value: Some(-100.0),
        plausible_max_value: Some(200.0),
        formula: "revenue growth rate + free cash flow margin",
        inputs: &[
            InputSpec {
                name: "revenue_growth_rate",
                description: "Revenue growth of the period against the same period one year earlier, in percent; \
                              must not be below -100.",
                unit: Percent,
            },
            InputSpec {
                name: "profit_margin",
                description: "Free cash flow margin of the period (free cash flow divided by revenue × 100), in \
                              percent; negative while the company burns cash.",
                unit: Percent,
            },
        ],
        related_metric_ids: &["fcf_margin", "revenue_growth_yoy"],
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    /// The metrics the contract and the benchmark service name.
    const CONTRACT_METRIC_IDS: [&str; 11] = [
        "arr",
        "mrr",
        "arr_growth_yoy",
        "ndr",
        "grr",
        "gross_margin",
        "magic_number",
        "cac_payback_months",
        "burn_multiple",
        "pipeline_coverage",
        "rule_of_40",
    ];

    #[test]
    fn is_ordered_by_id_without_duplicates() {
        for pair in CATALOG.windows(2) {
            assert!(pair[0].id < pair[1].id, "{} before {}", pair[0].id, pair[1].id);
        }
        assert_eq!(all().len(), CATALOG.len());
    }

    #[test]
    fn holds_every_metric_of_the_contract() {
        for id in CONTRACT_METRIC_IDS {
            let spec = find(id).expect("a contract metric");
            assert_eq!(spec.id, id);
            assert!(spec.is_calculated(), "{id} has a formula");
        }
        assert!(find("nope").is_none());
        assert!(find("").is_none());
    }

    #[test]
    fn every_definition_is_coherent() {
        for spec in all() {
            assert!(
                spec.allows(spec.natural_granularity),
                "{} allows its natural granularity",
                spec.id
            );
            let ranks: Vec<i32> = spec
                .allowed_granularities
                .iter()
                .map(|granularity| *granularity as i32)
                .collect();
            assert!(
                ranks.windows(2).all(|pair| pair[0] < pair[1]),
                "{} granularities ordered",
                spec.id
            );
            assert_eq!(
                spec.formula.is_empty(),
                spec.inputs.is_empty(),
                "{} formula and inputs",
                spec.id
            );
            for (lower_bound, upper_bound) in [
                (spec.min_value, spec.max_value),
                (spec.plausible_min_value, spec.plausible_max_value),
                (spec.min_value, spec.plausible_min_value),
                (spec.plausible_max_value, spec.max_value),
            ] {
                if let (Some(lower), Some(upper)) = (lower_bound, upper_bound) {
                    assert!(lower < upper, "{} bounds ordered", spec.id);
                }
            }
            for related in spec.related_metric_ids {
                let other = find(related).expect("a related metric exists");
                assert!(
                    other.related_metric_ids.contains(&spec.id),
                    "{} and {related} relate both ways",
                    spec.id
                );
            }
            let mut names: Vec<&str> = spec.inputs.iter().map(|input| input.name).collect();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), spec.inputs.len(), "{} input names unique", spec.id);
            assert!(spec.description.ends_with('.'));
            assert!(spec.inputs.iter().all(|input| input.description.ends_with('.')));
        }
    }

    #[test]
    fn converts_to_the_contract() {
        let definition = find("ndr").expect("ndr exists").to_proto();
        assert_eq!(definition.metric_id, "ndr");
        assert_eq!(definition.unit, MetricUnit::Percent as i32);
        assert_eq!(definition.period_granularity, PeriodGranularity::Quarter as i32);
        assert_eq!(
            definition.allowed_granularities,
            [Month as i32, Quarter as i32, Year as i32]
        );
        assert_eq!(definition.direction, MetricDirection::HigherIsBetter as i32);
        assert_eq!(definition.min_value, Some(0.0));
        assert_eq!(definition.max_value, Some(1000.0));
        assert_eq!(definition.plausible_min_value, Some(50.0));
        assert_eq!(definition.plausible_max_value, Some(200.0));
        let input_names: Vec<&str> = definition.inputs.iter().map(|input| input.name.as_str()).collect();
        assert_eq!(input_names, ["start_arr", "expansion", "contraction", "churn"]);
        assert_eq!(definition.inputs[0].unit, MetricUnit::Usd as i32);
        assert_eq!(definition.related_metric_ids, ["arr_growth_yoy", "grr"]);
        let entered_only = find("fcf_margin").expect("fcf_margin exists").to_proto();
        assert!(entered_only.formula.is_empty());
        assert!(entered_only.inputs.is_empty());
        assert_eq!(entered_only.min_value, None);
    }
}
