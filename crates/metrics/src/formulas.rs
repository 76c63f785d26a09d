//! CalculateKpi: a metric's value from its named inputs, with every input and
//! intermediate result shown so that the number can be checked by hand.
//!
//! The inputs are checked before anything is calculated, and every problem
//! is reported at once as a field violation naming `inputs[name]`: a missing,
//! unknown or non-finite input, a negative amount that cannot be negative, or
//! a denominator that is not greater than zero. Percentages are computed as
//! `numerator × 100 / denominator`, which is exact whenever the result is a
//! representable decimal of whole-dollar inputs (107,000,000 / 1,000,000 is
//! exactly 107). `docs/metrics.md` gives every formula with a worked example;
//! the tests below use the same numbers.

use std::collections::BTreeMap;

use metrix_core::error::FieldViolation;
use metrix_proto::metrics::v1::{CalculateKpiResponse, CalculationComponent, MetricUnit};

use crate::catalog::{self, MetricSpec};

/// One quantity used in a calculation: an input or an intermediate result.
#[derive(Debug, Clone, PartialEq)]
pub struct Component {
    /// The input name or the name of the intermediate result.
    pub name: String,
    /// The value of the quantity.
    pub value: f64,
    /// Unit of the value.
    pub unit: MetricUnit,
    /// Whether the quantity was derived from the inputs rather than given.
    pub derived: bool,
    /// One sentence on the quantity, for a derived one how it was derived.
    pub description: String,
}

impl Component {
    /// The contract's form of the component.
    pub fn into_proto(self) -> CalculationComponent {
        CalculationComponent {
            name: self.name,
            value: self.value,
            unit: self.unit as i32,
            derived: self.derived,
            description: self.description,
        }
    }
}

/// The result of a calculation.
#[derive(Debug, Clone, PartialEq)]
pub struct Calculation {
    /// Identifier of the calculated metric.
    pub metric_id: String,
    /// The calculated value in the metric's unit; always finite and within
    /// the metric's hard bounds.
    pub value: f64,
    /// Unit of the value.
    pub unit: MetricUnit,
    /// The formula applied, in words.
    pub formula: String,
    /// The inputs in formula order, then the intermediate results in the
    /// order they were calculated.
    pub components: Vec<Component>,
}

impl Calculation {
    /// The contract's form of the result.
    pub fn into_proto(self) -> CalculateKpiResponse {
        CalculateKpiResponse {
            metric_id: self.metric_id,
            value: self.value,
            unit: self.unit as i32,
            formula: self.formula,
            components: self.components.into_iter().map(Component::into_proto).collect(),
        }
    }
}

/// Why a calculation was refused: every bad field of the request, such as
/// `inputs[start_arr]` `is required`, in formula order and then unknown
/// inputs in name order.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("the calculation request is invalid")]
pub struct CalculationError {
    /// The field violations, never empty.
    pub violations: Vec<FieldViolation>,
}

impl CalculationError {
    /// A refusal with a single violation.
    fn single(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            violations: vec![FieldViolation::new(field, description)],
        }
    }

    /// The violations, for the status.
    pub fn into_field_violations(self) -> Vec<FieldViolation> {
        self.violations
    }
}

/// Calculates `metric_id` from `inputs`, or reports every bad field.
pub fn calculate(metric_id: &str, inputs: &BTreeMap<String, f64>) -> Result<Calculation, CalculationError> {
    if metric_id.is_empty() {
        return Err(CalculationError::single("metric_id", "is required"));
    }
    let Some(metric) = catalog::find(metric_id) else {
        return Err(CalculationError::single(
            "metric_id",
            format!(
                "{metric_id} is not a known metric; expected one of {}",
                catalog::metric_ids()
            ),
        ));
    };
    if !metric.is_calculated() {
        return Err(CalculationError::single(
            "metric_id",
            format!("{metric_id} is entered, not calculated"),
        ));
    }
    let mut reader = InputReader::new(metric, inputs);
    let outcome = apply_formula(metric, &mut reader);
    reader.report_unknown_inputs();
    let InputReader {
        violations, components, ..
    } = reader;
    let Some(value) = outcome.filter(|_| violations.is_empty()) else {
        return Err(CalculationError { violations });
    };
    if let Some(problem) = result_problem(metric, value) {
        return Err(CalculationError::single("inputs", problem));
    }
    Ok(Calculation {
        metric_id: metric.id.to_owned(),
        value,
        unit: metric.unit,
        formula: metric.formula.to_owned(),
        components,
    })
}

/// What is wrong with a calculated value, if anything: it is not finite or
/// lies outside the metric's hard bounds, so it could not be recorded.
fn result_problem(metric: &MetricSpec, value: f64) -> Option<String> {
    if !value.is_finite() {
        return Some(format!("are too large: {} would not be a finite number", metric.id));
    }
    if let Some(minimum) = metric.min_value.filter(|minimum| value < *minimum) {
        return Some(format!(
            "give {} = {value}, below its smallest valid value of {minimum}",
            metric.id
        ));
    }
    if let Some(maximum) = metric.max_value.filter(|maximum| value > *maximum) {
        return Some(format!(
            "give {} = {value}, above its largest valid value of {maximum}",
            metric.id
        ));
    }
    None
}

/// Reads a metric's inputs in formula order, recording each accepted input
/// as a component and each problem as a violation.
struct InputReader<'inputs> {
    /// The metric being calculated.
    metric: &'static MetricSpec,
    /// The request's inputs.
    inputs: &'inputs BTreeMap<String, f64>,
    /// Problems found so far.
    violations: Vec<FieldViolation>,
    /// Accepted inputs, then intermediate results.
    components: Vec<Component>,
}

impl<'inputs> InputReader<'inputs> {
    /// A reader of `inputs` for `metric`.
    fn new(metric: &'static MetricSpec, inputs: &'inputs BTreeMap<String, f64>) -> Self {
        Self {
            metric,
            inputs,
            violations: Vec::new(),
            components: Vec::new(),
        }
    }

    /// The input `name` if it is present and finite; any finite value is
    /// accepted.
    fn finite(&mut self, name: &'static str) -> Option<f64> {
        self.read(name, |_| None)
    }

    /// The input `name` if it is present, finite and not negative.
    fn non_negative(&mut self, name: &'static str) -> Option<f64> {
        self.read(name, |value| (value < 0.0).then(|| "must not be negative".to_owned()))
    }

    /// The input `name` if it is present, finite and at least `minimum`.
    fn at_least(&mut self, name: &'static str, minimum: f64) -> Option<f64> {
        self.read(name, |value| {
            (value < minimum).then(|| format!("must not be below {minimum}"))
        })
    }

    /// The denominator `name` if it is present, finite and greater than zero;
    /// `defines` names what it makes defined, for the message.
    fn denominator(&mut self, name: &'static str, defines: &str) -> Option<f64> {
        self.read(name, |value| {
            (value <= 0.0).then(|| format!("must be greater than zero so that {defines} is defined"))
        })
    }

    /// The input `name` if it is present, finite and accepted by `problem`,
    /// which describes what is wrong with a finite value.
    fn read(&mut self, name: &'static str, problem: impl FnOnce(f64) -> Option<String>) -> Option<f64> {
        let field = format!("inputs[{name}]");
        let Some(input) = self.metric.input(name) else {
            self.violations.push(FieldViolation::new(
                "metric_id".to_owned(),
                format!("{} has no input {name} in its definition", self.metric.id),
            ));
            return None;
        };
        let Some(value) = self.inputs.get(name).copied() else {
            self.violations
                .push(FieldViolation::new(field, "is required".to_owned()));
            return None;
        };
        if !value.is_finite() {
            self.violations
                .push(FieldViolation::new(field, "must be a finite number".to_owned()));
            return None;
        }
        if let Some(description) = problem(value) {
            self.violations.push(FieldViolation::new(field, description));
            return None;
        }
        // A percentage between 0 and 1 is almost always a fraction sent
        // where the 0–100 scale is meant (0.8 for 80 %), which would make
        // the result a hundred times off; it is refused, naming the scale.
        if input.unit == MetricUnit::Percent && value > 0.0 && value < 1.0 {
            let percent = (value * 100.0 * 1e6).round() / 1e6;
            self.violations.push(FieldViolation::new(
                field,
                format!(
                    "is {value}, which reads as a fraction: this input is a percentage on the 0–100 scale (send {percent} for {percent} %)"
                ),
            ));
            return None;
        }
        self.components.push(Component {
            name: name.to_owned(),
            value,
            unit: input.unit,
            derived: false,
            description: input.description.to_owned(),
        });
        Some(value)
    }

    /// Records a violation of input `name` found after the inputs were read.
    fn reject(&mut self, name: &'static str, description: impl Into<String>) {
        self.violations
            .push(FieldViolation::new(format!("inputs[{name}]"), description.into()));
    }

    /// Records an intermediate result and returns its value.
    fn derive(&mut self, name: &'static str, value: f64, unit: MetricUnit, description: impl Into<String>) -> f64 {
        self.components.push(Component {
            name: name.to_owned(),
            value,
            unit,
            derived: true,
            description: description.into(),
        });
        value
    }

    /// Records a violation for every input the formula does not have.
    fn report_unknown_inputs(&mut self) {
        for name in self.inputs.keys() {
            if self.metric.input(name).is_none() {
                self.violations.push(FieldViolation::new(
                    format!("inputs[{name}]"),
                    format!(
                        "is not an input of {}; expected {}",
                        self.metric.id,
                        self.metric.input_names()
                    ),
                ));
            }
        }
    }
}

/// `numerator / denominator × 100`, multiplying first so that whole-number
/// inputs give exact results, unless that would overflow.
fn percent_of(numerator: f64, denominator: f64) -> f64 {
    let scaled = numerator * 100.0;
    if scaled.is_finite() {
        scaled / denominator
    } else {
        numerator / denominator * 100.0
    }
}

/// Runs the formula of `metric`, or returns `None` when an input was refused.
fn apply_formula(metric: &MetricSpec, reader: &mut InputReader<'_>) -> Option<f64> {
    match metric.id {
        "arr" => annual_recurring_revenue(reader),
        "arr_growth_yoy" => arr_growth_year_over_year(reader),
        "burn_multiple" => burn_multiple(reader),
        "cac_payback_months" => cac_payback_months(reader),
        "gross_margin" => gross_margin(reader),
        "grr" => gross_revenue_retention(reader),
        "magic_number" => magic_number(reader),
        "mrr" => monthly_recurring_revenue(reader),
        "ndr" => net_dollar_retention(reader),
        "pipeline_coverage" => pipeline_coverage(reader),
        "rule_of_40" => rule_of_40(reader),
        other => {
            reader.violations.push(FieldViolation::new(
                "metric_id".to_owned(),
                format!("{other} has a formula in its definition but no calculation"),
            ));
            None
        }
    }
}

/// `12 × MRR`.
fn annual_recurring_revenue(reader: &mut InputReader<'_>) -> Option<f64> {
    let monthly_recurring_revenue = reader.non_negative("mrr")?;
    Some(monthly_recurring_revenue * 12.0)
}

/// `ARR / 12`.
fn monthly_recurring_revenue(reader: &mut InputReader<'_>) -> Option<f64> {
    let annual_recurring_revenue = reader.non_negative("arr")?;
    Some(annual_recurring_revenue / 12.0)
}

/// `(ARR − ARR one year earlier) / ARR one year earlier × 100`.
fn arr_growth_year_over_year(reader: &mut InputReader<'_>) -> Option<f64> {
    let arr_input = reader.non_negative("arr");
    let arr_year_ago_input = reader.denominator("arr_year_ago", "the growth rate");
    let (Some(arr), Some(arr_year_ago)) = (arr_input, arr_year_ago_input) else {
        return None;
    };
    let arr_change = reader.derive(
        "arr_change",
        arr - arr_year_ago,
        MetricUnit::Usd,
        "ARR minus ARR one year earlier.",
    );
    Some(percent_of(arr_change, arr_year_ago))
}

/// Checks that contraction and churn do not take away more than the
/// starting ARR, which would make retention negative.
fn check_losses_within_start(reader: &mut InputReader<'_>, start_arr: f64, contraction: f64, churn: f64) -> Option<()> {
    if contraction + churn > start_arr {
        reader.reject(
            "churn",
            format!(
                "must not exceed start_arr minus contraction ({}): customers cannot take away more ARR than they had",
                start_arr - contraction
            ),
        );
        return None;
    }
    Some(())
}

/// `(start ARR + expansion − contraction − churn) / start ARR × 100`.
fn net_dollar_retention(reader: &mut InputReader<'_>) -> Option<f64> {
    let start_arr_input = reader.denominator("start_arr", "net dollar retention");
    let expansion_input = reader.non_negative("expansion");
    let contraction_input = reader.non_negative("contraction");
    let churn_input = reader.non_negative("churn");
    let (Some(start_arr), Some(expansion), Some(contraction), Some(churn)) =
        (start_arr_input, expansion_input, contraction_input, churn_input)
    else {
        return None;
    };
    check_losses_within_start(reader, start_arr, contraction, churn)?;
    let net_retained_arr = reader.derive(
        "net_retained_arr",
        start_arr + expansion - contraction - churn,
        MetricUnit::Usd,
        "Start ARR plus expansion minus contraction and churn: what the starting customers pay at the end.",
    );
    Some(percent_of(net_retained_arr, start_arr))
}

/// `(start ARR − contraction − churn) / start ARR × 100`; at most 100 because
/// expansion is left out.
fn gross_revenue_retention(reader: &mut InputReader<'_>) -> Option<f64> {
    let start_arr_input = reader.denominator("start_arr", "gross revenue retention");
    let contraction_input = reader.non_negative("contraction");
    let churn_input = reader.non_negative("churn");
    let (Some(start_arr), Some(contraction), Some(churn)) = (start_arr_input, contraction_input, churn_input) else {
        return None;
    };
    check_losses_within_start(reader, start_arr, contraction, churn)?;
    let gross_retained_arr = reader.derive(
        "gross_retained_arr",
        start_arr - contraction - churn,
        MetricUnit::Usd,
        "Start ARR minus contraction and churn: what the starting customers pay at the end, expansion left out.",
    );
    Some(percent_of(gross_retained_arr, start_arr))
}

/// `(revenue − cost of revenue) / revenue × 100`.
fn gross_margin(reader: &mut InputReader<'_>) -> Option<f64> {
    let revenue_input = reader.denominator("revenue", "the gross margin");
    let cost_of_revenue_input = reader.non_negative("cost_of_revenue");
    let (Some(revenue), Some(cost_of_revenue)) = (revenue_input, cost_of_revenue_input) else {
        return None;
    };
    let gross_profit = reader.derive(
        "gross_profit",
        revenue - cost_of_revenue,
        MetricUnit::Usd,
        "Revenue minus cost of revenue.",
    );
    Some(percent_of(gross_profit, revenue))
}

/// `net new ARR / prior quarter's sales and marketing spend`.
fn magic_number(reader: &mut InputReader<'_>) -> Option<f64> {
    let net_new_arr_input = reader.finite("net_new_arr");
    let spend_input = reader.denominator("prior_quarter_sales_marketing_spend", "the magic number");
    let (Some(net_new_arr), Some(spend)) = (net_new_arr_input, spend_input) else {
        return None;
    };
    Some(net_new_arr / spend)
}

/// `CAC / (monthly ARPA × gross margin / 100)`.
fn cac_payback_months(reader: &mut InputReader<'_>) -> Option<f64> {
    let customer_acquisition_cost_input = reader.non_negative("cac");
    let monthly_arpa_input = reader.denominator("monthly_arpa", "the CAC payback period");
    let gross_margin_input = reader.read("gross_margin", |value| {
        if value <= 0.0 {
            Some("must be greater than zero so that the CAC payback period is defined".to_owned())
        } else if value > 100.0 {
            Some("must not exceed 100: gross margin is a percentage of revenue on the 0–100 scale".to_owned())
        } else {
            None
        }
    });
    let (Some(customer_acquisition_cost), Some(monthly_arpa), Some(gross_margin_percent)) =
        (customer_acquisition_cost_input, monthly_arpa_input, gross_margin_input)
    else {
        return None;
    };
    reader.derive(
        "gross_margin_fraction",
        gross_margin_percent / 100.0,
        MetricUnit::Ratio,
        "Gross margin divided by 100: the share of each revenue dollar kept as gross profit.",
    );
    let monthly_gross_profit_per_account = reader.derive(
        "monthly_gross_profit_per_account",
        monthly_arpa * gross_margin_percent / 100.0,
        MetricUnit::Usd,
        "Monthly ARPA times the gross margin fraction: the gross profit an account earns each month.",
    );
    Some(customer_acquisition_cost / monthly_gross_profit_per_account)
}

/// `max(net burn, 0) / net new ARR`: a company that generates cash burns
/// nothing, so its burn multiple is 0, the best value.
fn burn_multiple(reader: &mut InputReader<'_>) -> Option<f64> {
    let net_burn_input = reader.finite("net_burn");
    let net_new_arr_input = reader.denominator("net_new_arr", "the burn multiple");
    let (Some(net_burn), Some(net_new_arr)) = (net_burn_input, net_new_arr_input) else {
        return None;
    };
    let counted_net_burn = if net_burn > 0.0 {
        reader.derive(
            "counted_net_burn",
            net_burn,
            MetricUnit::Usd,
            "Net burn, counted as given because the company burned cash.",
        )
    } else {
        reader.derive(
            "counted_net_burn",
            0.0,
            MetricUnit::Usd,
            "Net burn is zero or negative (the company generated cash), so it counts as zero and the burn multiple \
             is 0.",
        )
    };
    Some(counted_net_burn / net_new_arr)
}

/// `pipeline / bookings target`.
fn pipeline_coverage(reader: &mut InputReader<'_>) -> Option<f64> {
    let pipeline_input = reader.non_negative("pipeline");
    let target_input = reader.denominator("target", "pipeline coverage");
    let (Some(pipeline), Some(target)) = (pipeline_input, target_input) else {
        return None;
    };
    Some(pipeline / target)
}

/// `revenue growth rate + free cash flow margin`.
fn rule_of_40(reader: &mut InputReader<'_>) -> Option<f64> {
    let revenue_growth_rate_input = reader.at_least("revenue_growth_rate", -100.0);
    let profit_margin_input = reader.finite("profit_margin");
    let (Some(revenue_growth_rate), Some(profit_margin)) = (revenue_growth_rate_input, profit_margin_input) else {
        return None;
    };
    Some(revenue_growth_rate + profit_margin)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn inputs(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
        pairs.iter().map(|(name, value)| ((*name).to_owned(), *value)).collect()
    }

    fn calculated(metric_id: &str, pairs: &[(&str, f64)]) -> Calculation {
        calculate(metric_id, &inputs(pairs)).expect("valid inputs")
    }

    fn refused(metric_id: &str, pairs: &[(&str, f64)]) -> Vec<FieldViolation> {
        calculate(metric_id, &inputs(pairs))
            .expect_err("invalid inputs")
            .violations
    }

    fn violation(field: &str, description: &str) -> FieldViolation {
        FieldViolation::new(field, description)
    }

    fn component<'calculation>(calculation: &'calculation Calculation, name: &str) -> &'calculation Component {
        calculation
            .components
            .iter()
            .find(|component| component.name == name)
            .expect("the component exists")
    }

    #[test]
    fn arr_is_twelve_times_mrr() {
        let calculation = calculated("arr", &[("mrr", 125_000.0)]);
        assert_eq!(calculation.value, 1_500_000.0);
        assert_eq!(calculation.unit, MetricUnit::Usd);
        assert_eq!(calculation.formula, "12 × MRR");
    }

    #[test]
    fn mrr_is_a_twelfth_of_arr() {
        assert_eq!(calculated("mrr", &[("arr", 1_500_000.0)]).value, 125_000.0);
    }

    #[test]
    fn arr_growth_compares_with_a_year_earlier() {
        let calculation = calculated("arr_growth_yoy", &[("arr", 3_000_000.0), ("arr_year_ago", 2_000_000.0)]);
        assert_eq!(calculation.value, 50.0);
        assert_eq!(component(&calculation, "arr_change").value, 1_000_000.0);
        assert_eq!(
            calculated("arr_growth_yoy", &[("arr", 1_500_000.0), ("arr_year_ago", 2_000_000.0)]).value,
            -25.0
        );
    }

    #[test]
    fn ndr_counts_expansion_contraction_and_churn() {
        let calculation = calculated(
            "ndr",
            &[
                ("start_arr", 1_000_000.0),
                ("expansion", 150_000.0),
                ("contraction", 30_000.0),
                ("churn", 50_000.0),
            ],
        );
        assert_eq!(calculation.value, 107.0);
        assert_eq!(calculation.unit, MetricUnit::Percent);
        let names: Vec<&str> = calculation
            .components
            .iter()
            .map(|component| component.name.as_str())
            .collect();
        assert_eq!(
            names,
            ["start_arr", "expansion", "contraction", "churn", "net_retained_arr"]
        );
        let derived: Vec<bool> = calculation
            .components
            .iter()
            .map(|component| component.derived)
            .collect();
        assert_eq!(derived, [false, false, false, false, true]);
        assert_eq!(component(&calculation, "net_retained_arr").value, 1_070_000.0);
    }

    #[test]
    fn grr_leaves_out_expansion() {
        let calculation = calculated(
            "grr",
            &[
                ("start_arr", 1_000_000.0),
                ("contraction", 30_000.0),
                ("churn", 50_000.0),
            ],
        );
        assert_eq!(calculation.value, 92.0);
        assert_eq!(component(&calculation, "gross_retained_arr").value, 920_000.0);
        assert_eq!(
            calculated(
                "grr",
                &[("start_arr", 1_000_000.0), ("contraction", 0.0), ("churn", 0.0)]
            )
            .value,
            100.0
        );
    }

    #[test]
    fn gross_margin_is_gross_profit_over_revenue() {
        let calculation = calculated(
            "gross_margin",
            &[("revenue", 500_000.0), ("cost_of_revenue", 125_000.0)],
        );
        assert_eq!(calculation.value, 75.0);
        assert_eq!(component(&calculation, "gross_profit").value, 375_000.0);
        assert_eq!(
            calculated(
                "gross_margin",
                &[("revenue", 100_000.0), ("cost_of_revenue", 150_000.0)]
            )
            .value,
            -50.0
        );
    }

    #[test]
    fn magic_number_divides_by_the_prior_quarter_spend() {
        let calculation = calculated(
            "magic_number",
            &[
                ("net_new_arr", 600_000.0),
                ("prior_quarter_sales_marketing_spend", 800_000.0),
            ],
        );
        assert_eq!(calculation.value, 0.75);
        assert_eq!(calculation.unit, MetricUnit::Ratio);
        let shrinking = calculated(
            "magic_number",
            &[
                ("net_new_arr", -200_000.0),
                ("prior_quarter_sales_marketing_spend", 800_000.0),
            ],
        );
        assert_eq!(shrinking.value, -0.25);
    }

    #[test]
    fn cac_payback_shows_the_gross_margin_conversion() {
        let calculation = calculated(
            "cac_payback_months",
            &[("cac", 12_000.0), ("monthly_arpa", 1_000.0), ("gross_margin", 80.0)],
        );
        assert_eq!(calculation.value, 15.0);
        assert_eq!(calculation.unit, MetricUnit::Months);
        assert_eq!(component(&calculation, "gross_margin_fraction").value, 0.8);
        assert_eq!(component(&calculation, "gross_margin_fraction").unit, MetricUnit::Ratio);
        let gross_profit = component(&calculation, "monthly_gross_profit_per_account");
        assert_eq!(gross_profit.value, 800.0);
        assert!(gross_profit.derived);
    }

    #[test]
    fn a_percentage_sent_as_a_fraction_is_refused_naming_the_scale() {
        let inputs = [("cac", 12_000.0), ("monthly_arpa", 1_000.0), ("gross_margin", 0.8)]
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value))
            .collect();
        let problems = calculate("cac_payback_months", &inputs)
            .expect_err("0.8 is a fraction, not a percentage")
            .into_field_violations();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].field, "inputs[gross_margin]");
        assert!(
            problems[0].description.contains("0–100 scale (send 80 for 80 %)"),
            "{problems:?}"
        );
    }

    #[test]
    fn burn_multiple_divides_burn_by_net_new_arr() {
        let calculation = calculated(
            "burn_multiple",
            &[("net_burn", 1_800_000.0), ("net_new_arr", 1_200_000.0)],
        );
        assert_eq!(calculation.value, 1.5);
        assert_eq!(component(&calculation, "counted_net_burn").value, 1_800_000.0);
    }

    #[test]
    fn a_cash_generative_company_has_a_burn_multiple_of_zero() {
        let calculation = calculated(
            "burn_multiple",
            &[("net_burn", -200_000.0), ("net_new_arr", 1_200_000.0)],
        );
        assert_eq!(calculation.value, 0.0);
        assert!(calculation.value.is_sign_positive());
        let counted = component(&calculation, "counted_net_burn");
        assert_eq!(counted.value, 0.0);
        assert!(counted.description.contains("generated cash"));
        assert_eq!(component(&calculation, "net_burn").value, -200_000.0);
    }

    #[test]
    fn burn_multiple_is_undefined_without_net_new_arr() {
        for net_new_arr in [0.0, -50_000.0] {
            assert_eq!(
                refused(
                    "burn_multiple",
                    &[("net_burn", 1_000_000.0), ("net_new_arr", net_new_arr)]
                ),
                [violation(
                    "inputs[net_new_arr]",
                    "must be greater than zero so that the burn multiple is defined"
                )]
            );
        }
    }

    #[test]
    fn pipeline_coverage_divides_pipeline_by_target() {
        let calculation = calculated(
            "pipeline_coverage",
            &[("pipeline", 3_000_000.0), ("target", 1_000_000.0)],
        );
        assert_eq!(calculation.value, 3.0);
    }

    #[test]
    fn rule_of_40_adds_growth_and_margin() {
        assert_eq!(
            calculated("rule_of_40", &[("revenue_growth_rate", 35.0), ("profit_margin", 10.0)]).value,
            45.0
        );
        assert_eq!(
            calculated("rule_of_40", &[("revenue_growth_rate", 60.0), ("profit_margin", -25.0)]).value,
            35.0
        );
        assert_eq!(
            refused(
                "rule_of_40",
                &[("revenue_growth_rate", -120.0), ("profit_margin", 10.0)]
            ),
            [violation("inputs[revenue_growth_rate]", "must not be below -100")]
        );
    }

    #[test]
    fn refuses_an_unknown_or_missing_metric() {
        let unknown = refused("ltv", &[]);
        assert_eq!(unknown.len(), 1);
        assert_eq!(unknown[0].field, "metric_id");
        assert!(
            unknown[0]
                .description
                .starts_with("ltv is not a known metric; expected one of arr, arr_growth_yoy,")
        );
        assert_eq!(refused("", &[]), [violation("metric_id", "is required")]);
    }

    #[test]
    fn refuses_a_metric_that_is_only_entered() {
        assert_eq!(
            refused("fcf_margin", &[("fcf", 1.0)]),
            [violation("metric_id", "fcf_margin is entered, not calculated")]
        );
    }

    #[test]
    fn reports_every_bad_input_at_once() {
        let violations = refused(
            "ndr",
            &[
                ("start_arr", 0.0),
                ("expansion", f64::NAN),
                ("churn", -5.0),
                ("churned_arr", 1.0),
                ("zz", 2.0),
            ],
        );
        let expected_inputs = "is not an input of ndr; expected start_arr, expansion, contraction, churn";
        assert_eq!(
            violations,
            [
                violation(
                    "inputs[start_arr]",
                    "must be greater than zero so that net dollar retention is defined"
                ),
                violation("inputs[expansion]", "must be a finite number"),
                violation("inputs[contraction]", "is required"),
                violation("inputs[churn]", "must not be negative"),
                violation("inputs[churned_arr]", expected_inputs),
                violation("inputs[zz]", expected_inputs),
            ]
        );
    }

    #[test]
    fn refuses_an_unknown_input_even_when_the_rest_is_valid() {
        assert_eq!(
            refused(
                "grr",
                &[
                    ("start_arr", 100.0),
                    ("expansion", 0.0),
                    ("contraction", 0.0),
                    ("churn", 0.0)
                ]
            ),
            [violation(
                "inputs[expansion]",
                "is not an input of grr; expected start_arr, contraction, churn"
            )]
        );
    }

    #[test]
    fn refuses_infinite_and_negative_amounts() {
        assert_eq!(
            refused("arr", &[("mrr", f64::INFINITY)]),
            [violation("inputs[mrr]", "must be a finite number")]
        );
        assert_eq!(
            refused("mrr", &[("arr", -1.0)]),
            [violation("inputs[arr]", "must not be negative")]
        );
        assert_eq!(
            refused("gross_margin", &[("revenue", 100.0), ("cost_of_revenue", -1.0)]),
            [violation("inputs[cost_of_revenue]", "must not be negative")]
        );
    }

    #[test]
    fn refuses_zero_denominators_by_name() {
        assert_eq!(
            refused("arr_growth_yoy", &[("arr", 100.0), ("arr_year_ago", 0.0)]),
            [violation(
                "inputs[arr_year_ago]",
                "must be greater than zero so that the growth rate is defined"
            )]
        );
        assert_eq!(
            refused(
                "magic_number",
                &[("net_new_arr", 100.0), ("prior_quarter_sales_marketing_spend", 0.0)]
            ),
            [violation(
                "inputs[prior_quarter_sales_marketing_spend]",
                "must be greater than zero so that the magic number is defined"
            )]
        );
        assert_eq!(
            refused("pipeline_coverage", &[("pipeline", 100.0), ("target", 0.0)]),
            [violation(
                "inputs[target]",
                "must be greater than zero so that pipeline coverage is defined"
            )]
        );
        assert_eq!(
            refused(
                "cac_payback_months",
                &[("cac", 100.0), ("monthly_arpa", 0.0), ("gross_margin", 0.0)]
            ),
            [
                violation(
                    "inputs[monthly_arpa]",
                    "must be greater than zero so that the CAC payback period is defined"
                ),
                violation(
                    "inputs[gross_margin]",
                    "must be greater than zero so that the CAC payback period is defined"
                ),
            ]
        );
    }

    #[test]
    fn refuses_a_gross_margin_input_above_100() {
        assert_eq!(
            refused(
                "cac_payback_months",
                &[("cac", 100.0), ("monthly_arpa", 10.0), ("gross_margin", 120.0)]
            ),
            [violation(
                "inputs[gross_margin]",
                "must not exceed 100: gross margin is a percentage of revenue on the 0–100 scale"
            )]
        );
    }

    #[test]
    fn refuses_losses_larger_than_the_starting_arr() {
        assert_eq!(
            refused("grr", &[("start_arr", 100.0), ("contraction", 60.0), ("churn", 50.0)]),
            [violation(
                "inputs[churn]",
                "must not exceed start_arr minus contraction (40): customers cannot take away more ARR than they had"
            )]
        );
        assert_eq!(
            calculated(
                "ndr",
                &[
                    ("start_arr", 100.0),
                    ("expansion", 0.0),
                    ("contraction", 60.0),
                    ("churn", 40.0)
                ]
            )
            .value,
            0.0
        );
    }

    #[test]
    fn refuses_results_outside_the_hard_bounds() {
        assert_eq!(
            refused("gross_margin", &[("revenue", 100.0), ("cost_of_revenue", 2_000.0)]),
            [violation(
                "inputs",
                "give gross_margin = -1900, below its smallest valid value of -1000"
            )]
        );
        assert_eq!(
            refused(
                "ndr",
                &[
                    ("start_arr", 100.0),
                    ("expansion", 1_000.0),
                    ("contraction", 0.0),
                    ("churn", 0.0)
                ]
            ),
            [violation(
                "inputs",
                "give ndr = 1100, above its largest valid value of 1000"
            )]
        );
        assert_eq!(
            refused("arr", &[("mrr", f64::MAX)]),
            [violation("inputs", "are too large: arr would not be a finite number")]
        );
    }

    #[test]
    fn every_calculated_metric_lists_its_inputs_first_in_formula_order() {
        for metric in catalog::all().iter().filter(|metric| metric.is_calculated()) {
            let pairs: Vec<(&str, f64)> = metric
                .inputs
                .iter()
                .map(|input| (input.name, if input.name == "start_arr" { 1_000.0 } else { 50.0 }))
                .collect();
            let calculation = calculated(metric.id, &pairs);
            let given: Vec<&str> = calculation
                .components
                .iter()
                .take_while(|component| !component.derived)
                .map(|component| component.name.as_str())
                .collect();
            let expected: Vec<&str> = metric.inputs.iter().map(|input| input.name).collect();
            assert_eq!(given, expected, "{}", metric.id);
            assert!(
                calculation.components[given.len()..]
                    .iter()
                    .all(|component| component.derived)
            );
            assert!(
                calculation
                    .components
                    .iter()
                    .all(|component| component.description.ends_with('.'))
            );
        }
    }

    #[test]
    fn converts_to_the_contract() {
        let response = calculated(
            "cac_payback_months",
            &[("cac", 12_000.0), ("monthly_arpa", 1_000.0), ("gross_margin", 80.0)],
        )
        .into_proto();
        assert_eq!(response.metric_id, "cac_payback_months");
        assert_eq!(response.value, 15.0);
        assert_eq!(response.unit, MetricUnit::Months as i32);
        assert_eq!(response.formula, "CAC / (monthly ARPA × gross margin / 100)");
        assert_eq!(response.components.len(), 5);
        assert_eq!(response.components[4].name, "monthly_gross_profit_per_account");
        assert!(response.components[4].derived);
        let error = calculate("ndr", &BTreeMap::new()).expect_err("inputs missing");
        let violations = error.into_field_violations();
        assert_eq!(violations.len(), 4);
        assert_eq!(violations[0], FieldViolation::new("inputs[start_arr]", "is required"));
    }

    proptest! {
        #[test]
        fn ndr_is_at_least_grr_when_expansion_is_not_negative(
            start_arr in 1.0_f64..1e12,
            expansion in 0.0_f64..1e12,
            contraction_share in 0.0_f64..=0.5,
            churn_share in 0.0_f64..=0.5,
        ) {
            let contraction = start_arr * contraction_share;
            let churn = start_arr * churn_share;
            let net_result = calculate("ndr", &inputs(&[
                ("start_arr", start_arr), ("expansion", expansion), ("contraction", contraction), ("churn", churn),
            ]));
            let gross = calculated("grr", &[("start_arr", start_arr), ("contraction", contraction), ("churn", churn)]);
            prop_assert!(gross.value <= 100.0 && gross.value >= 0.0);
            if let Ok(net) = net_result {
                prop_assert!(net.value >= gross.value, "ndr {} < grr {}", net.value, gross.value);
            }
        }

        #[test]
        fn results_are_finite_and_within_bounds_for_valid_inputs(
            metric_position in 0_usize..13,
            values in proptest::collection::vec(-1e15_f64..1e15, 4),
        ) {
            let metric = &catalog::all()[metric_position % catalog::all().len()];
            let pairs: Vec<(&str, f64)> = metric
                .inputs
                .iter()
                .zip(values.iter().map(|value| value.abs()))
                .map(|(input, value)| (input.name, value))
                .collect();
            if let Ok(calculation) = calculate(metric.id, &inputs(&pairs)) {
                prop_assert!(calculation.value.is_finite());
                prop_assert!(metric.min_value.is_none_or(|minimum| calculation.value >= minimum));
                prop_assert!(metric.max_value.is_none_or(|maximum| calculation.value <= maximum));
                prop_assert!(calculation.components.iter().all(|component| component.value.is_finite()));
            }
        }

        #[test]
        fn never_panics_on_arbitrary_inputs(
            metric_position in 0_usize..13,
            values in proptest::collection::vec(proptest::num::f64::ANY, 4),
        ) {
            let metric = &catalog::all()[metric_position % catalog::all().len()];
            let pairs: Vec<(&str, f64)> = metric.inputs.iter().zip(values).map(|(input, value)| (input.name, value)).collect();
            match calculate(metric.id, &inputs(&pairs)) {
                Ok(calculation) => prop_assert!(calculation.value.is_finite()),
                Err(error) => prop_assert!(!error.violations.is_empty()),
            }
        }
    }
}
