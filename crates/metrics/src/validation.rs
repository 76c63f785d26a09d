//! ValidateKpi: whether a KPI value would be accepted, what looks wrong with
//! it, how to fix it, and whether it agrees with the company's related
//! metrics for the same period.
//!
//! Errors make a value unacceptable: an unknown metric, a period outside the
//! grammar or at a granularity the metric does not allow, a non-finite value
//! or one outside the metric's hard bounds. Warnings flag values that are
//! valid but look wrong: outside the plausible range, or a percentage that
//! looks like a fraction. Cross-metric checks compare the value with related
//! metrics; a check whose related values are missing is reported as not
//! evaluated rather than failed. RecordKpis and ImportKpis use
//! [`validate_record`], which applies the errors only.

use std::collections::BTreeMap;

use metrix_core::error::FieldViolation;
use metrix_proto::metrics::v1 as proto;
use metrix_proto::metrics::v1::{MetricUnit, PeriodGranularity, ValidationStatus, ViolationSeverity};

use crate::catalog::{self, Measurement, MetricSpec};
use crate::period::Period;

/// The largest magnitude of a percentage that draws the "looks like a
/// fraction" warning: 1.5 is 150 % written as a fraction.
const FRACTION_LOOKALIKE_LIMIT: f64 = 1.5;

/// How far ARR may be from 12 × MRR, as a share of 12 × MRR, before the
/// check warns; it absorbs rounding and mid-month changes.
const ARR_MRR_RELATIVE_TOLERANCE: f64 = 0.02;

/// How many percentage points rule of 40 may differ from revenue growth plus
/// free cash flow margin before the check warns; it absorbs rounding.
const RULE_OF_40_TOLERANCE_POINTS: f64 = 1.0;

/// How many percentage points ARR growth may fall below NDR − 100 before the
/// check warns; it absorbs rounding.
const GROWTH_RETENTION_TOLERANCE_POINTS: f64 = 0.5;

/// The value ValidateKpi is asked about, as received: its texts are not
/// parsed yet, because the report speaks about them.
#[derive(Debug, Clone, PartialEq)]
pub struct KpiCandidate {
    /// Identifier of the metric, such as `ndr`.
    pub metric_id: String,
    /// The period text, such as `2026-Q3`.
    pub period: String,
    /// The value in the metric's unit.
    pub value: f64,
}

/// Values of other metrics for the same company and period, by metric id:
/// the stored values overlaid by the request's `related_values`.
pub type RelatedValues = BTreeMap<String, f64>;

/// A problem found with one field of the candidate.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    /// Path of the field, `kpi.metric_id`, `kpi.period` or `kpi.value`.
    pub field: String,
    /// What is wrong, in one lowercase sentence.
    pub description: String,
    /// Whether the value is refused or only looks implausible.
    pub severity: ViolationSeverity,
}

/// A proposed fix for a violation.
#[derive(Debug, Clone, PartialEq)]
pub struct SuggestedCorrection {
    /// Path of the field to change.
    pub field: String,
    /// The proposed value in canonical text form, such as `12.5` or `2026-Q3`.
    pub suggested_value: String,
    /// Why the change is proposed, in one sentence.
    pub description: String,
}

/// The outcome of one consistency check against related metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct CrossMetricCheck {
    /// Stable identifier of the check, such as `arr_equals_12_mrr`.
    pub check_id: String,
    /// The metrics involved, the validated one included.
    pub metric_ids: Vec<String>,
    /// VALID when the check passed or could not run.
    pub status: ValidationStatus,
    /// What was checked and found, or what is missing, in one or two
    /// sentences.
    pub description: String,
    /// The value the related metrics imply for the validated metric, when
    /// they imply a single one.
    pub expected_value: Option<f64>,
    /// Whether the check could run.
    pub evaluated: bool,
}

impl CrossMetricCheck {
    /// The contract's form of the check.
    pub fn into_proto(self) -> proto::CrossMetricCheck {
        proto::CrossMetricCheck {
            check_id: self.check_id,
            metric_ids: self.metric_ids,
            status: self.status as i32,
            description: self.description,
            expected_value: self.expected_value,
            evaluated: self.evaluated,
        }
    }
}

/// Everything ValidateKpi found about one candidate.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidationReport {
    /// The worst of the violations and checks; VALID when there is nothing
    /// to report.
    pub status: ValidationStatus,
    /// Problems with the candidate's own fields, errors and warnings.
    pub violations: Vec<Violation>,
    /// Proposed fixes, when one is apparent.
    pub suggested_corrections: Vec<SuggestedCorrection>,
    /// The cross-metric checks that apply to the candidate's metric.
    pub cross_metric_checks: Vec<CrossMetricCheck>,
}

impl ValidationReport {
    /// Whether the value would be refused: an error-level violation or a
    /// failed check that reveals an impossibility (status INVALID).
    pub fn has_errors(&self) -> bool {
        self.status == ValidationStatus::Invalid
    }

    /// The contract's form of the report.
    pub fn into_proto(self) -> proto::ValidateKpiResponse {
        proto::ValidateKpiResponse {
            status: self.status as i32,
            violations: self
                .violations
                .into_iter()
                .map(|violation| proto::Violation {
                    field: violation.field,
                    description: violation.description,
                    severity: violation.severity as i32,
                })
                .collect(),
            suggested_corrections: self
                .suggested_corrections
                .into_iter()
                .map(|correction| proto::SuggestedCorrection {
                    field: correction.field,
                    suggested_value: correction.suggested_value,
                    description: correction.description,
                })
                .collect(),
            cross_metric_checks: self
                .cross_metric_checks
                .into_iter()
                .map(CrossMetricCheck::into_proto)
                .collect(),
        }
    }
}

/// Validates `candidate`: its fields, then the cross-metric checks of its
/// metric against `related`.
pub fn validate(candidate: &KpiCandidate, related: &RelatedValues) -> ValidationReport {
    let findings = examine_fields(&candidate.metric_id, &candidate.period, candidate.value);
    let cross_metric_checks = match findings.metric {
        Some(metric) if candidate.value.is_finite() => run_cross_metric_checks(metric.id, candidate.value, related),
        _ => Vec::new(),
    };
    let violations: Vec<Violation> = findings
        .problems
        .into_iter()
        .map(|problem| Violation {
            field: format!("kpi.{}", problem.field),
            description: problem.description,
            severity: problem.severity,
        })
        .collect();
    let suggested_corrections = findings
        .corrections
        .into_iter()
        .map(|correction| SuggestedCorrection {
            field: format!("kpi.{}", correction.field),
            suggested_value: correction.suggested_value,
            description: correction.description,
        })
        .collect();
    let status = violations
        .iter()
        .map(|violation| status_of_severity(violation.severity))
        .chain(cross_metric_checks.iter().map(|check| check.status))
        .fold(ValidationStatus::Valid, worse_status);
    ValidationReport {
        status,
        violations,
        suggested_corrections,
        cross_metric_checks,
    }
}

/// The error-level checks of [`validate`] for a value about to be stored:
/// the parsed period and the metric when the value is acceptable, otherwise
/// every error, named `metric_id`, `period` or `value` for the caller to
/// place (`kpi_values[3].period`, with `Violations::nested`). Warnings and
/// cross-metric checks never refuse a value here.
pub fn validate_record(
    metric_id: &str,
    period: &str,
    value: f64,
) -> Result<(Period, &'static MetricSpec), Vec<FieldViolation>> {
    let findings = examine_fields(metric_id, period, value);
    let errors: Vec<FieldViolation> = findings
        .problems
        .into_iter()
        .filter(|problem| problem.severity == ViolationSeverity::Error)
        .map(|problem| FieldViolation::new(problem.field, problem.description))
        .collect();
    match (findings.metric, findings.period) {
        (Some(metric), Some(parsed_period)) if errors.is_empty() => Ok((parsed_period, metric)),
        _ => Err(errors),
    }
}

/// The identifiers of every cross-metric check, in the order they run.
pub fn cross_metric_check_ids() -> Vec<&'static str> {
    CHECKS.iter().map(|check| check.check_id).collect()
}

/// A problem with one field, before the field path is prefixed.
struct Problem {
    /// `metric_id`, `period` or `value`.
    field: &'static str,
    /// What is wrong.
    description: String,
    /// How serious it is.
    severity: ViolationSeverity,
}

/// A proposed fix, before the field path is prefixed.
struct Correction {
    /// `period` or `value`.
    field: &'static str,
    /// The canonical text of the proposed value.
    suggested_value: String,
    /// Why.
    description: String,
}

/// What the field checks found.
struct FieldFindings {
    /// The metric, when the identifier is known.
    metric: Option<&'static MetricSpec>,
    /// The period, when it parses and its granularity is allowed.
    period: Option<Period>,
    /// Errors and warnings in field order.
    problems: Vec<Problem>,
    /// Proposed fixes in field order.
    corrections: Vec<Correction>,
}

impl FieldFindings {
    /// Records an error of `field`.
    fn error(&mut self, field: &'static str, description: impl Into<String>) {
        self.problems.push(Problem {
            field,
            description: description.into(),
            severity: ViolationSeverity::Error,
        });
    }

    /// Records a warning on `field`.
    fn warning(&mut self, field: &'static str, description: impl Into<String>) {
        self.problems.push(Problem {
            field,
            description: description.into(),
            severity: ViolationSeverity::Warning,
        });
    }

    /// Records a proposed fix of `field`.
    fn suggest(&mut self, field: &'static str, suggested_value: String, description: impl Into<String>) {
        self.corrections.push(Correction {
            field,
            suggested_value,
            description: description.into(),
        });
    }
}

/// Checks the metric, the period and the value on their own.
fn examine_fields(metric_id: &str, period_text: &str, value: f64) -> FieldFindings {
    let mut findings = FieldFindings {
        metric: None,
        period: None,
        problems: Vec::new(),
        corrections: Vec::new(),
    };
    findings.metric = examine_metric_id(&mut findings, metric_id);
    findings.period = examine_period(&mut findings, period_text);
    examine_value(&mut findings, value);
    findings
}

/// The metric named `metric_id`, or an error.
fn examine_metric_id(findings: &mut FieldFindings, metric_id: &str) -> Option<&'static MetricSpec> {
    if metric_id.is_empty() {
        findings.error("metric_id", "is required");
        return None;
    }
    let metric = catalog::find(metric_id);
    if metric.is_none() {
        findings.error(
            "metric_id",
            format!(
                "{metric_id} is not a known metric; expected one of {}",
                catalog::metric_ids()
            ),
        );
    }
    metric
}

/// The period, when it parses and the metric (if known) allows its
/// granularity; otherwise an error and, when the intent is clear, a
/// suggested period.
fn examine_period(findings: &mut FieldFindings, period_text: &str) -> Option<Period> {
    let metric = findings.metric;
    let parsed = match Period::parse(period_text) {
        Ok(parsed) => parsed,
        Err(problem) => {
            findings.error("period", problem.to_string());
            let suggestion = Period::suggest(period_text).and_then(|suggested| match metric {
                Some(spec) => fit_to_metric(spec, suggested),
                None => Some(suggested),
            });
            if let Some(suggested) = suggestion {
                findings.suggest(
                    "period",
                    suggested.to_string(),
                    format!(
                        "Periods are written YYYY, YYYY-Qn or YYYY-MM, so {period_text:?} is most likely {suggested}."
                    ),
                );
            }
            return None;
        }
    };
    let Some(spec) = metric else {
        return Some(parsed);
    };
    if spec.allows(parsed.granularity()) {
        return Some(parsed);
    }
    findings.error(
        "period",
        format!(
            "is a {}, but {} is recorded by {} only",
            granularity_word(parsed.granularity()),
            spec.id,
            granularity_list(spec.allowed_granularities)
        ),
    );
    if let Some(suggested) = fit_to_metric(spec, parsed) {
        findings.suggest(
            "period",
            suggested.to_string(),
            format!(
                "{} is measured on the last day of its period, so the value for {parsed} is the value for \
                 {suggested}.",
                spec.display_name
            ),
        );
    }
    None
}

/// `period` itself when the metric allows its granularity; otherwise, for a
/// metric measured on the last day of the period, the period of its natural
/// granularity ending in the same month (which has the same value), if any.
fn fit_to_metric(metric: &MetricSpec, period: Period) -> Option<Period> {
    if metric.allows(period.granularity()) {
        return Some(period);
    }
    match metric.measurement {
        Measurement::AtPeriodEnd => period.with_same_end(metric.natural_granularity),
        Measurement::OverPeriod => None,
    }
}

/// Checks the value: finite, within the hard bounds, then plausible.
fn examine_value(findings: &mut FieldFindings, value: f64) {
    if !value.is_finite() {
        findings.error("value", "must be a finite number");
        return;
    }
    let Some(metric) = findings.metric else {
        return;
    };
    if let Some(minimum) = metric.min_value.filter(|minimum| value < *minimum) {
        if metric.id == "burn_multiple" {
            findings.error(
                "value",
                format!(
                    "must be at least {} for burn_multiple: a company that generates cash has a burn multiple of 0",
                    canonical_number(minimum)
                ),
            );
            findings.suggest(
                "value",
                canonical_number(minimum),
                "A company that generates cash burns nothing, so its burn multiple is 0.",
            );
            return;
        }
        findings.error(
            "value",
            format!("must be at least {} for {}", canonical_number(minimum), metric.id),
        );
        return;
    }
    if let Some(maximum) = metric.max_value.filter(|maximum| value > *maximum) {
        findings.error(
            "value",
            format!("must be at most {} for {}", canonical_number(maximum), metric.id),
        );
        return;
    }
    if metric.unit == MetricUnit::Percent && value != 0.0 && value.abs() <= FRACTION_LOOKALIKE_LIMIT {
        findings.warning(
            "value",
            format!(
                "looks like a fraction; {} is a percentage on the 0–100 scale",
                metric.id
            ),
        );
        findings.suggest(
            "value",
            fraction_as_percent_text(value),
            "The value looks like a fraction; percentages are on the 0–100 scale.",
        );
        return;
    }
    if let Some(plausible_minimum) = metric.plausible_min_value.filter(|minimum| value < *minimum) {
        findings.warning(
            "value",
            format!(
                "is below {}, the lowest plausible value for {}",
                canonical_number(plausible_minimum),
                metric.id
            ),
        );
    }
    if let Some(plausible_maximum) = metric.plausible_max_value.filter(|maximum| value > *maximum) {
        findings.warning(
            "value",
            format!(
                "is above {}, the highest plausible value for {}",
                canonical_number(plausible_maximum),
                metric.id
            ),
        );
    }
}

/// The word for a granularity in messages.
fn granularity_word(granularity: PeriodGranularity) -> &'static str {
    match granularity {
        PeriodGranularity::Unspecified => "period",
        PeriodGranularity::Month => "month",
        PeriodGranularity::Quarter => "quarter",
        PeriodGranularity::Year => "year",
    }
}

/// `month`, `quarter or year`, `month, quarter or year`.
fn granularity_list(granularities: &[PeriodGranularity]) -> String {
    let words: Vec<&str> = granularities
        .iter()
        .map(|granularity| granularity_word(*granularity))
        .collect();
    match words.split_last() {
        None => String::new(),
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

/// The shortest decimal text that reads back as `value`, without exponent or
/// trailing zeros (`12.5`, `100`, `0.0001`); negative zero is `0`.
pub fn canonical_number(value: f64) -> String {
    if value == 0.0 {
        return "0".to_owned();
    }
    value.to_string()
}

/// The canonical text of `value × 100`, computed by moving the decimal
/// point of the canonical text of `value` so that no binary rounding creeps
/// in (0.07 gives `7`, not `7.000000000000001`).
fn fraction_as_percent_text(value: f64) -> String {
    let text = canonical_number(value);
    let (sign, unsigned) = match text.strip_prefix('-') {
        Some(unsigned) => ("-", unsigned),
        None => ("", text.as_str()),
    };
    let (integer_digits, fraction_digits) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let mut digits = format!("{integer_digits}{fraction_digits}");
    let point_position = integer_digits.len() + 2;
    while digits.len() < point_position {
        digits.push('0');
    }
    let (new_integer, new_fraction) = digits.split_at(point_position);
    let integer_part = match new_integer.trim_start_matches('0') {
        "" => "0",
        trimmed => trimmed,
    };
    let fraction_part = new_fraction.trim_end_matches('0');
    if fraction_part.is_empty() {
        format!("{sign}{integer_part}")
    } else {
        format!("{sign}{integer_part}.{fraction_part}")
    }
}

/// The rank of a status for "worst of": VALID < WARNING < INVALID.
fn worse_status(left: ValidationStatus, right: ValidationStatus) -> ValidationStatus {
    if (right as i32) > (left as i32) { right } else { left }
}

/// The status a violation of `severity` implies.
fn status_of_severity(severity: ViolationSeverity) -> ValidationStatus {
    match severity {
        ViolationSeverity::Error => ValidationStatus::Invalid,
        ViolationSeverity::Warning => ValidationStatus::Warning,
        ViolationSeverity::Unspecified => ValidationStatus::Valid,
    }
}

/// The values a check looks at: the validated metric's and its related ones.
struct CheckValues<'values> {
    /// The validated metric.
    validated_metric_id: &'values str,
    /// The value of every metric of the check, the validated one included.
    values: BTreeMap<&'static str, f64>,
}

impl CheckValues<'_> {
    /// The value of `metric_id`; every metric of the check has one when the
    /// check runs, and 0 stands in for none so that a wrong id in a check
    /// shows as a failed test rather than a panic.
    fn of(&self, metric_id: &str) -> f64 {
        self.values.get(metric_id).copied().unwrap_or(0.0)
    }

    /// Whether `metric_id` is the validated metric.
    fn is_validated(&self, metric_id: &str) -> bool {
        self.validated_metric_id == metric_id
    }
}

/// What a check found.
struct CheckOutcome {
    /// VALID, WARNING or INVALID.
    status: ValidationStatus,
    /// What was found.
    description: String,
    /// The value implied for the validated metric.
    expected_value: Option<f64>,
}

/// One cross-metric check.
struct CheckDefinition {
    /// Stable identifier.
    check_id: &'static str,
    /// The metrics involved.
    metric_ids: &'static [&'static str],
    /// Runs the check once every metric has a value.
    evaluate: fn(&CheckValues<'_>) -> CheckOutcome,
}

/// Every cross-metric check, documented in `docs/metrics.md`.
const CHECKS: [CheckDefinition; 4] = [
    CheckDefinition {
        check_id: "arr_equals_12_mrr",
        metric_ids: &["arr", "mrr"],
        evaluate: check_arr_equals_12_mrr,
    },
    CheckDefinition {
        check_id: "ndr_at_least_grr",
        metric_ids: &["ndr", "grr"],
        evaluate: check_ndr_at_least_grr,
    },
    CheckDefinition {
        check_id: "arr_growth_at_least_ndr_minus_100",
        metric_ids: &["arr_growth_yoy", "ndr"],
        evaluate: check_arr_growth_at_least_ndr_minus_100,
    },
    CheckDefinition {
        check_id: "rule_of_40_components",
        metric_ids: &["rule_of_40", "revenue_growth_yoy", "fcf_margin"],
        evaluate: check_rule_of_40_components,
    },
];

/// Runs every check that involves `metric_id`.
fn run_cross_metric_checks(metric_id: &'static str, value: f64, related: &RelatedValues) -> Vec<CrossMetricCheck> {
    CHECKS
        .iter()
        .filter(|check| check.metric_ids.contains(&metric_id))
        .map(|check| run_check(check, metric_id, value, related))
        .collect()
}

/// Runs one check, or reports what it misses.
fn run_check(
    check: &CheckDefinition,
    metric_id: &'static str,
    value: f64,
    related: &RelatedValues,
) -> CrossMetricCheck {
    let mut values = BTreeMap::new();
    let mut missing = Vec::new();
    for involved in check.metric_ids {
        if *involved == metric_id {
            values.insert(*involved, value);
            continue;
        }
        match related
            .get(*involved)
            .copied()
            .filter(|related_value| related_value.is_finite())
        {
            Some(related_value) => {
                values.insert(*involved, related_value);
            }
            None => missing.push(*involved),
        }
    }
    let metric_ids = check.metric_ids.iter().map(|id| (*id).to_owned()).collect();
    if !missing.is_empty() {
        return CrossMetricCheck {
            check_id: check.check_id.to_owned(),
            metric_ids,
            status: ValidationStatus::Valid,
            description: format!(
                "Not evaluated: there is no {} value for the same company and period.",
                missing.join(" or ")
            ),
            expected_value: None,
            evaluated: false,
        };
    }
    let outcome = (check.evaluate)(&CheckValues {
        validated_metric_id: metric_id,
        values,
    });
    CrossMetricCheck {
        check_id: check.check_id.to_owned(),
        metric_ids,
        status: outcome.status,
        description: outcome.description,
        expected_value: outcome.expected_value,
        evaluated: true,
    }
}

/// ARR should be 12 × MRR, within 2 %.
fn check_arr_equals_12_mrr(values: &CheckValues<'_>) -> CheckOutcome {
    let arr = values.of("arr");
    let mrr = values.of("mrr");
    let implied_arr = mrr * 12.0;
    let expected_value = if values.is_validated("arr") {
        Some(implied_arr)
    } else {
        Some(arr / 12.0)
    };
    let difference = (arr - implied_arr).abs();
    if difference <= implied_arr * ARR_MRR_RELATIVE_TOLERANCE {
        return CheckOutcome {
            status: ValidationStatus::Valid,
            description: format!(
                "ARR ({}) is within 2 % of 12 × MRR ({}).",
                canonical_number(arr),
                canonical_number(implied_arr)
            ),
            expected_value,
        };
    }
    let description = if implied_arr > 0.0 {
        format!(
            "ARR ({}) differs from 12 × MRR ({}) by {:.1} %; the two should agree within 2 %.",
            canonical_number(arr),
            canonical_number(implied_arr),
            difference / implied_arr * 100.0
        )
    } else {
        format!("ARR is {} but MRR is 0; ARR should be 12 × MRR.", canonical_number(arr))
    };
    CheckOutcome {
        status: ValidationStatus::Warning,
        description,
        expected_value,
    }
}

/// NDR can never be below GRR: both start from the same ARR and NDR only
/// adds expansion, which is never negative.
fn check_ndr_at_least_grr(values: &CheckValues<'_>) -> CheckOutcome {
    let net = values.of("ndr");
    let gross = values.of("grr");
    if net >= gross {
        return CheckOutcome {
            status: ValidationStatus::Valid,
            description: format!(
                "NDR ({}) is at least GRR ({}), as it must be.",
                canonical_number(net),
                canonical_number(gross)
            ),
            expected_value: None,
        };
    }
    CheckOutcome {
        status: ValidationStatus::Invalid,
        description: format!(
            "NDR ({}) is below GRR ({}), which is impossible: both start from the same ARR and NDR only adds \
             expansion to what GRR keeps.",
            canonical_number(net),
            canonical_number(gross)
        ),
        expected_value: None,
    }
}

/// ARR at the end of the period is the starting customers' ARR (start × NDR)
/// plus new customers' ARR, so year-over-year ARR growth is at least
/// NDR − 100 when both cover the same twelve months.
fn check_arr_growth_at_least_ndr_minus_100(values: &CheckValues<'_>) -> CheckOutcome {
    let growth = values.of("arr_growth_yoy");
    let net_retention = values.of("ndr");
    let retention_growth = net_retention - 100.0;
    if growth >= retention_growth - GROWTH_RETENTION_TOLERANCE_POINTS {
        return CheckOutcome {
            status: ValidationStatus::Valid,
            description: format!(
                "ARR growth ({} %) is at least NDR − 100 ({} %), the growth from existing customers alone.",
                canonical_number(growth),
                canonical_number(retention_growth)
            ),
            expected_value: None,
        };
    }
    CheckOutcome {
        status: ValidationStatus::Warning,
        description: format!(
            "ARR growth ({} %) is below NDR − 100 ({} %): existing customers alone grew ARR more than that, so new \
             customers would have brought negative ARR; check that both cover the same twelve months.",
            canonical_number(growth),
            canonical_number(retention_growth)
        ),
        expected_value: None,
    }
}

/// Rule of 40 is revenue growth plus free cash flow margin, within one
/// point.
fn check_rule_of_40_components(values: &CheckValues<'_>) -> CheckOutcome {
    let rule_of_40 = values.of("rule_of_40");
    let revenue_growth = values.of("revenue_growth_yoy");
    let free_cash_flow_margin = values.of("fcf_margin");
    let implied_rule_of_40 = revenue_growth + free_cash_flow_margin;
    let expected_value = if values.is_validated("revenue_growth_yoy") {
        rule_of_40 - free_cash_flow_margin
    } else if values.is_validated("fcf_margin") {
        rule_of_40 - revenue_growth
    } else {
        implied_rule_of_40
    };
    if (rule_of_40 - implied_rule_of_40).abs() <= RULE_OF_40_TOLERANCE_POINTS {
        return CheckOutcome {
            status: ValidationStatus::Valid,
            description: format!(
                "Rule of 40 ({}) matches revenue growth ({}) plus free cash flow margin ({}).",
                canonical_number(rule_of_40),
                canonical_number(revenue_growth),
                canonical_number(free_cash_flow_margin)
            ),
            expected_value: Some(expected_value),
        };
    }
    CheckOutcome {
        status: ValidationStatus::Warning,
        description: format!(
            "Rule of 40 ({}) differs from revenue growth ({}) plus free cash flow margin ({}) = {} by more than one \
             point.",
            canonical_number(rule_of_40),
            canonical_number(revenue_growth),
            canonical_number(free_cash_flow_margin),
            canonical_number(implied_rule_of_40)
        ),
        expected_value: Some(expected_value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(metric_id: &str, period: &str, value: f64) -> KpiCandidate {
        KpiCandidate {
            metric_id: metric_id.to_owned(),
            period: period.to_owned(),
            value,
        }
    }

    fn related(pairs: &[(&str, f64)]) -> RelatedValues {
        pairs.iter().map(|(id, value)| ((*id).to_owned(), *value)).collect()
    }

    fn report(metric_id: &str, period: &str, value: f64) -> ValidationReport {
        validate(&candidate(metric_id, period, value), &RelatedValues::new())
    }

    fn fields_and_severities(report: &ValidationReport) -> Vec<(&str, ViolationSeverity)> {
        report
            .violations
            .iter()
            .map(|violation| (violation.field.as_str(), violation.severity))
            .collect()
    }

    fn suggestions(report: &ValidationReport) -> Vec<(&str, &str)> {
        report
            .suggested_corrections
            .iter()
            .map(|correction| (correction.field.as_str(), correction.suggested_value.as_str()))
            .collect()
    }

    fn check<'report>(report: &'report ValidationReport, check_id: &str) -> &'report CrossMetricCheck {
        report
            .cross_metric_checks
            .iter()
            .find(|check| check.check_id == check_id)
            .expect("the check ran")
    }

    #[test]
    fn a_plain_valid_value_is_valid() {
        let found = report("arr", "2026-Q3", 1_500_000.0);
        assert_eq!(found.status, ValidationStatus::Valid);
        assert!(found.violations.is_empty());
        assert!(found.suggested_corrections.is_empty());
        assert!(!found.has_errors());
    }

    #[test]
    fn an_unknown_metric_is_an_error_without_checks() {
        let found = report("ltv", "2026-Q3", 5.0);
        assert_eq!(found.status, ValidationStatus::Invalid);
        assert!(found.has_errors());
        assert_eq!(
            fields_and_severities(&found),
            [("kpi.metric_id", ViolationSeverity::Error)]
        );
        assert!(
            found.violations[0]
                .description
                .starts_with("ltv is not a known metric; expected one of arr,")
        );
        assert!(found.cross_metric_checks.is_empty());
        let missing = report("", "", 5.0);
        let descriptions: Vec<&str> = missing
            .violations
            .iter()
            .map(|violation| violation.description.as_str())
            .collect();
        assert_eq!(descriptions, ["is required", "is required"]);
        assert_eq!(missing.violations[1].field, "kpi.period");
    }

    #[test]
    fn a_sloppy_period_is_an_error_with_a_suggestion() {
        let found = report("arr", "2026Q3", 1_500_000.0);
        assert_eq!(
            fields_and_severities(&found),
            [("kpi.period", ViolationSeverity::Error)]
        );
        assert_eq!(
            found.violations[0].description,
            "must be a year (2026), a quarter (2026-Q3) or a month (2026-09)"
        );
        assert_eq!(suggestions(&found), [("kpi.period", "2026-Q3")]);
        assert_eq!(
            found.suggested_corrections[0].description,
            "Periods are written YYYY, YYYY-Qn or YYYY-MM, so \"2026Q3\" is most likely 2026-Q3."
        );
        assert!(suggestions(&report("arr", "next quarter", 1.0)).is_empty());
        assert_eq!(
            report("arr", "2026-13", 1.0).violations[0].description,
            "must have a month from 01 to 12, not 13"
        );
    }

    #[test]
    fn a_suggested_period_respects_the_metric_granularities() {
        assert_eq!(
            suggestions(&report("arr_growth_yoy", "2026-09-30", 20.0)),
            [("kpi.period", "2026-Q3")]
        );
        assert!(suggestions(&report("magic_number", "2026-09-30", 0.7)).is_empty());
        assert_eq!(
            suggestions(&report("magic_number", "Q3 2026", 0.7)),
            [("kpi.period", "2026-Q3")]
        );
    }

    #[test]
    fn a_granularity_the_metric_does_not_allow_is_an_error() {
        let found = report("magic_number", "2026-09", 0.7);
        assert_eq!(
            fields_and_severities(&found),
            [("kpi.period", ViolationSeverity::Error)]
        );
        assert_eq!(
            found.violations[0].description,
            "is a month, but magic_number is recorded by quarter only"
        );
        assert!(
            found.suggested_corrections.is_empty(),
            "a month's magic number is not its quarter's"
        );
        let growth = report("arr_growth_yoy", "2026-09", 20.0);
        assert_eq!(
            growth.violations[0].description,
            "is a month, but arr_growth_yoy is recorded by quarter or year only"
        );
        assert_eq!(suggestions(&growth), [("kpi.period", "2026-Q3")]);
        assert!(suggestions(&report("arr_growth_yoy", "2026-08", 20.0)).is_empty());
        assert_eq!(suggestions(&report("mrr", "2026", 100.0)), [("kpi.period", "2026-12")]);
    }

    #[test]
    fn a_non_finite_value_is_an_error() {
        for value in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let found = report("ndr", "2026-Q3", value);
            assert_eq!(fields_and_severities(&found), [("kpi.value", ViolationSeverity::Error)]);
            assert_eq!(found.violations[0].description, "must be a finite number");
            assert!(found.cross_metric_checks.is_empty());
        }
    }

    #[test]
    fn a_value_outside_the_hard_bounds_is_an_error() {
        let above = report("grr", "2026-Q3", 101.0);
        assert_eq!(fields_and_severities(&above), [("kpi.value", ViolationSeverity::Error)]);
        assert_eq!(above.violations[0].description, "must be at most 100 for grr");
        let below = report("arr", "2026-Q3", -1.0);
        assert_eq!(below.violations[0].description, "must be at least 0 for arr");
        assert!(below.suggested_corrections.is_empty());
    }

    #[test]
    fn a_negative_burn_multiple_suggests_zero() {
        let found = report("burn_multiple", "2026-Q3", -0.4);
        assert_eq!(fields_and_severities(&found), [("kpi.value", ViolationSeverity::Error)]);
        assert_eq!(
            found.violations[0].description,
            "must be at least 0 for burn_multiple: a company that generates cash has a burn multiple of 0"
        );
        assert_eq!(suggestions(&found), [("kpi.value", "0")]);
    }

    #[test]
    fn an_implausible_value_is_a_warning() {
        let high = report("ndr", "2026-Q3", 250.0);
        assert_eq!(high.status, ValidationStatus::Warning);
        assert!(!high.has_errors());
        assert_eq!(
            fields_and_severities(&high),
            [("kpi.value", ViolationSeverity::Warning)]
        );
        assert_eq!(
            high.violations[0].description,
            "is above 200, the highest plausible value for ndr"
        );
        let low = report("ndr", "2026-Q3", 30.0);
        assert_eq!(
            low.violations[0].description,
            "is below 50, the lowest plausible value for ndr"
        );
        assert_eq!(report("arr", "2026-Q3", 0.0).status, ValidationStatus::Valid);
    }

    #[test]
    fn a_percentage_that_looks_like_a_fraction_is_a_warning_with_a_suggestion() {
        let found = report("ndr", "2026-Q3", 1.05);
        assert_eq!(found.status, ValidationStatus::Warning);
        assert_eq!(
            fields_and_severities(&found),
            [("kpi.value", ViolationSeverity::Warning)]
        );
        assert_eq!(
            found.violations[0].description,
            "looks like a fraction; ndr is a percentage on the 0–100 scale"
        );
        assert_eq!(suggestions(&found), [("kpi.value", "105")]);
        assert_eq!(
            found.suggested_corrections[0].description,
            "The value looks like a fraction; percentages are on the 0–100 scale."
        );
        assert_eq!(
            suggestions(&report("gross_margin", "2026-Q3", 0.125)),
            [("kpi.value", "12.5")]
        );
        assert_eq!(
            suggestions(&report("gross_margin", "2026-Q3", 0.07)),
            [("kpi.value", "7")]
        );
        assert_eq!(
            suggestions(&report("arr_growth_yoy", "2026-Q3", -0.5)),
            [("kpi.value", "-50")]
        );
        assert_eq!(suggestions(&report("grr", "2026-Q3", 1.5)), [("kpi.value", "150")]);
        assert!(suggestions(&report("grr", "2026-Q3", 0.0)).is_empty());
        assert!(
            suggestions(&report("burn_multiple", "2026-Q3", 1.2)).is_empty(),
            "a ratio is not a percentage"
        );
    }

    #[test]
    fn every_problem_is_reported_together() {
        let found = report("magic_number", "2026-09", f64::NAN);
        assert_eq!(
            fields_and_severities(&found),
            [
                ("kpi.period", ViolationSeverity::Error),
                ("kpi.value", ViolationSeverity::Error)
            ]
        );
    }

    #[test]
    fn arr_is_checked_against_12_mrr() {
        let agreeing = validate(
            &candidate("arr", "2026-Q3", 1_510_000.0),
            &related(&[("mrr", 125_000.0)]),
        );
        let passed = check(&agreeing, "arr_equals_12_mrr");
        assert!(passed.evaluated);
        assert_eq!(passed.status, ValidationStatus::Valid);
        assert_eq!(passed.expected_value, Some(1_500_000.0));
        assert_eq!(passed.metric_ids, ["arr", "mrr"]);
        assert_eq!(agreeing.status, ValidationStatus::Valid);
        let disagreeing = validate(
            &candidate("arr", "2026-Q3", 1_400_000.0),
            &related(&[("mrr", 125_000.0)]),
        );
        let failed = check(&disagreeing, "arr_equals_12_mrr");
        assert_eq!(failed.status, ValidationStatus::Warning);
        assert_eq!(
            failed.description,
            "ARR (1400000) differs from 12 × MRR (1500000) by 6.7 %; the two should agree within 2 %."
        );
        assert_eq!(disagreeing.status, ValidationStatus::Warning);
        assert!(!disagreeing.has_errors());
        let from_mrr = validate(
            &candidate("mrr", "2026-09", 100_000.0),
            &related(&[("arr", 1_500_000.0)]),
        );
        assert_eq!(check(&from_mrr, "arr_equals_12_mrr").expected_value, Some(125_000.0));
        assert_eq!(check(&from_mrr, "arr_equals_12_mrr").status, ValidationStatus::Warning);
        let zero_mrr = validate(&candidate("arr", "2026-Q3", 10.0), &related(&[("mrr", 0.0)]));
        assert_eq!(
            check(&zero_mrr, "arr_equals_12_mrr").description,
            "ARR is 10 but MRR is 0; ARR should be 12 × MRR."
        );
    }

    #[test]
    fn a_check_without_its_related_values_is_not_evaluated() {
        let found = report("arr", "2026-Q3", 1_500_000.0);
        let skipped = check(&found, "arr_equals_12_mrr");
        assert!(!skipped.evaluated);
        assert_eq!(skipped.status, ValidationStatus::Valid);
        assert_eq!(skipped.expected_value, None);
        assert_eq!(
            skipped.description,
            "Not evaluated: there is no mrr value for the same company and period."
        );
        let rule = validate(
            &candidate("rule_of_40", "2026", 45.0),
            &related(&[("revenue_growth_yoy", f64::NAN)]),
        );
        assert_eq!(
            check(&rule, "rule_of_40_components").description,
            "Not evaluated: there is no revenue_growth_yoy or fcf_margin value for the same company and period."
        );
        assert!(report("gross_margin", "2026-Q3", 70.0).cross_metric_checks.is_empty());
    }

    #[test]
    fn ndr_below_grr_is_invalid() {
        let impossible = validate(&candidate("ndr", "2026-Q3", 90.0), &related(&[("grr", 92.0)]));
        assert_eq!(check(&impossible, "ndr_at_least_grr").status, ValidationStatus::Invalid);
        assert_eq!(impossible.status, ValidationStatus::Invalid);
        assert!(impossible.has_errors());
        assert!(impossible.violations.is_empty());
        let possible = validate(&candidate("grr", "2026-Q3", 92.0), &related(&[("ndr", 107.0)]));
        assert_eq!(check(&possible, "ndr_at_least_grr").status, ValidationStatus::Valid);
        assert_eq!(
            check(&possible, "ndr_at_least_grr").description,
            "NDR (107) is at least GRR (92), as it must be."
        );
        let equal = validate(&candidate("grr", "2026-Q3", 95.0), &related(&[("ndr", 95.0)]));
        assert_eq!(equal.status, ValidationStatus::Valid);
    }

    #[test]
    fn ndr_runs_both_of_its_checks() {
        let found = validate(
            &candidate("ndr", "2026-Q3", 130.0),
            &related(&[("grr", 90.0), ("arr_growth_yoy", 20.0)]),
        );
        let ids: Vec<&str> = found
            .cross_metric_checks
            .iter()
            .map(|check| check.check_id.as_str())
            .collect();
        assert_eq!(ids, ["ndr_at_least_grr", "arr_growth_at_least_ndr_minus_100"]);
        assert_eq!(
            check(&found, "arr_growth_at_least_ndr_minus_100").status,
            ValidationStatus::Warning
        );
        assert_eq!(found.status, ValidationStatus::Warning);
        let consistent = validate(
            &candidate("arr_growth_yoy", "2026-Q3", 50.0),
            &related(&[("ndr", 107.0)]),
        );
        assert_eq!(consistent.status, ValidationStatus::Valid);
        let within_tolerance = validate(
            &candidate("arr_growth_yoy", "2026-Q3", 6.6),
            &related(&[("ndr", 107.0)]),
        );
        assert_eq!(within_tolerance.status, ValidationStatus::Valid);
    }

    #[test]
    fn rule_of_40_is_checked_against_its_components() {
        let values = related(&[("revenue_growth_yoy", 35.0), ("fcf_margin", 10.0)]);
        let matching = validate(&candidate("rule_of_40", "2026", 45.0), &values);
        assert_eq!(
            check(&matching, "rule_of_40_components").status,
            ValidationStatus::Valid
        );
        assert_eq!(check(&matching, "rule_of_40_components").expected_value, Some(45.0));
        let off = validate(&candidate("rule_of_40", "2026", 50.0), &values);
        assert_eq!(check(&off, "rule_of_40_components").status, ValidationStatus::Warning);
        let margin = validate(
            &candidate("fcf_margin", "2026", -20.0),
            &related(&[("revenue_growth_yoy", 35.0), ("rule_of_40", 15.0)]),
        );
        assert_eq!(check(&margin, "rule_of_40_components").expected_value, Some(-20.0));
        assert_eq!(margin.status, ValidationStatus::Valid);
    }

    #[test]
    fn the_candidate_value_wins_over_a_related_value_of_its_own_metric() {
        let found = validate(
            &candidate("arr", "2026-Q3", 1_500_000.0),
            &related(&[("arr", 9.0), ("mrr", 125_000.0)]),
        );
        assert_eq!(check(&found, "arr_equals_12_mrr").status, ValidationStatus::Valid);
    }

    #[test]
    fn converts_to_the_contract() {
        let response = validate(&candidate("ndr", "2026Q3", 1.05), &related(&[("grr", 92.0)])).into_proto();
        assert_eq!(response.status, ValidationStatus::Invalid as i32);
        let fields: Vec<&str> = response
            .violations
            .iter()
            .map(|violation| violation.field.as_str())
            .collect();
        assert_eq!(fields, ["kpi.period", "kpi.value"]);
        assert_eq!(response.violations[1].severity, ViolationSeverity::Warning as i32);
        assert_eq!(response.suggested_corrections.len(), 2);
        assert_eq!(response.suggested_corrections[1].suggested_value, "105");
        let ndr_check = &response.cross_metric_checks[0];
        assert_eq!(ndr_check.check_id, "ndr_at_least_grr");
        assert_eq!(ndr_check.status, ValidationStatus::Invalid as i32);
        assert!(ndr_check.evaluated);
    }

    #[test]
    fn validate_record_accepts_warnings_and_refuses_errors() {
        let (period, metric) = validate_record("ndr", "2026-Q3", 250.0).expect("a warning does not refuse");
        assert_eq!(period.to_string(), "2026-Q3");
        assert_eq!(metric.id, "ndr");
        assert!(validate_record("ndr", "2026-Q3", 1.05).is_ok());
        assert_eq!(
            validate_record("magic_number", "2026-09", f64::NAN),
            Err(vec![
                FieldViolation::new("period", "is a month, but magic_number is recorded by quarter only"),
                FieldViolation::new("value", "must be a finite number"),
            ])
        );
        let unknown = validate_record("ltv", "2026-Q3", 1.0).expect_err("unknown metric");
        assert_eq!(unknown.len(), 1);
        assert_eq!(unknown[0].field, "metric_id");
        assert_eq!(
            validate_record("grr", "2026 Q3", 120.0),
            Err(vec![
                FieldViolation::new(
                    "period",
                    "must be a year (2026), a quarter (2026-Q3) or a month (2026-09)"
                ),
                FieldViolation::new("value", "must be at most 100 for grr"),
            ])
        );
    }

    #[test]
    fn related_metric_ids_are_exactly_the_check_partners() {
        for metric in catalog::all() {
            let mut partners: Vec<&str> = CHECKS
                .iter()
                .filter(|check| check.metric_ids.contains(&metric.id))
                .flat_map(|check| check.metric_ids.iter().copied())
                .filter(|id| *id != metric.id)
                .collect();
            partners.sort_unstable();
            partners.dedup();
            assert_eq!(partners, metric.related_metric_ids, "{}", metric.id);
        }
        for check in &CHECKS {
            assert!(
                check.metric_ids.iter().all(|id| catalog::find(id).is_some()),
                "{}",
                check.check_id
            );
        }
        assert_eq!(
            cross_metric_check_ids(),
            [
                "arr_equals_12_mrr",
                "ndr_at_least_grr",
                "arr_growth_at_least_ndr_minus_100",
                "rule_of_40_components"
            ]
        );
    }

    #[test]
    fn numbers_are_written_canonically() {
        assert_eq!(canonical_number(12.5), "12.5");
        assert_eq!(canonical_number(100.0), "100");
        assert_eq!(canonical_number(-0.0), "0");
        assert_eq!(canonical_number(1e21), "1000000000000000000000");
        assert_eq!(canonical_number(0.0001), "0.0001");
        assert_eq!(fraction_as_percent_text(0.0001), "0.01");
        assert_eq!(fraction_as_percent_text(1.0), "100");
        assert_eq!(fraction_as_percent_text(-1.2345), "-123.45");
        assert_eq!(fraction_as_percent_text(0.1 + 0.2), "30.000000000000004");
    }
}
