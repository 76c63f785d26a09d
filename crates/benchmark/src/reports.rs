//! Reports: a company against its peers, metric by metric, with a chart and
//! a reading per metric and a summary of strengths and weaknesses; and their
//! renderings as HTML (charts inline), Markdown and CSV.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::peers::MetricInfo;
use crate::ranking::{MetricRank, Overall, RankStatus};
use crate::stats::{Direction, Quartile};

/// A kind of report: which metrics it covers, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Template {
    /// Stable identifier.
    pub id: &'static str,
    /// Human-readable name.
    pub display_name: &'static str,
    /// What the report is for.
    pub description: &'static str,
    /// The metrics, in section order.
    pub metric_ids: &'static [&'static str],
}

/// The report templates, ordered by id.
pub const TEMPLATES: [Template; 4] = [
    Template {
        id: "capital_efficiency",
        display_name: "Capital efficiency review",
        description: "How efficiently the company turns spend into durable revenue: burn, payback, margins and sales efficiency.",
        metric_ids: &[
            "burn_multiple",
            "cac_payback_months",
            "magic_number",
            "gross_margin",
            "fcf_margin",
        ],
    },
    Template {
        id: "full_review",
        display_name: "Full benchmark review",
        description: "Every benchmarked metric against peers in the same revenue band: growth, retention, efficiency and margins.",
        metric_ids: &[
            "arr_growth_yoy",
            "revenue_growth_yoy",
            "ndr",
            "grr",
            "gross_margin",
            "burn_multiple",
            "magic_number",
            "cac_payback_months",
            "pipeline_coverage",
            "rule_of_40",
            "fcf_margin",
        ],
    },
    Template {
        id: "retention",
        display_name: "Retention review",
        description: "How well the company keeps and expands its revenue from existing customers.",
        metric_ids: &["ndr", "grr"],
    },
    Template {
        id: "saas_growth",
        display_name: "SaaS growth review",
        description: "Growth and the engines behind it: ARR growth, expansion, sales efficiency, pipeline and the rule of 40.",
        metric_ids: &[
            "arr_growth_yoy",
            "ndr",
            "magic_number",
            "pipeline_coverage",
            "rule_of_40",
        ],
    },
];

/// The template with `id`.
pub fn template(id: &str) -> Option<&'static Template> {
    TEMPLATES.iter().find(|template| template.id == id)
}

/// How a metric reads in a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Assessment {
    /// Top quartile.
    Strength,
    /// A middle quartile.
    Neutral,
    /// Bottom quartile.
    Weakness,
    /// Not ranked.
    NotRanked,
}

/// One metric of a report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Section {
    /// The metric's name.
    pub metric_display_name: String,
    /// The unit symbol of its values.
    pub unit: String,
    /// How the company ranks.
    pub ranking: MetricRank,
    /// The chart, a standalone SVG document; empty when not ranked.
    pub chart_svg: String,
    /// Strength, weakness or neither.
    pub assessment: Assessment,
    /// One or two sentences.
    pub reading: String,
}

/// A strength or weakness of the summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// The metric.
    pub metric_id: String,
    /// The finding in one sentence.
    pub text: String,
}

/// The content of a report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportBody {
    /// One section per metric of the template.
    pub sections: Vec<Section>,
    /// Strengths, best first.
    pub strengths: Vec<Finding>,
    /// Weaknesses, worst first.
    pub weaknesses: Vec<Finding>,
    /// The score across metrics.
    pub overall: Overall,
}

/// Builds the content of a report from the rankings of its metrics (in
/// template order).
pub fn build(rankings: Vec<(MetricInfo, MetricRank)>, overall: Overall) -> ReportBody {
    let sections: Vec<Section> = rankings
        .into_iter()
        .map(|(metric, ranking)| {
            let assessment = assessment(&ranking);
            Section {
                chart_svg: chart_svg(&metric, &ranking),
                reading: reading(&metric, &ranking),
                metric_display_name: metric.display_name,
                unit: metric.unit,
                assessment,
                ranking,
            }
        })
        .collect();
    let mut strengths: Vec<&Section> = sections
        .iter()
        .filter(|section| section.assessment == Assessment::Strength)
        .collect();
    strengths.sort_by(|left, right| score_of(right).total_cmp(&score_of(left)));
    let mut weaknesses: Vec<&Section> = sections
        .iter()
        .filter(|section| section.assessment == Assessment::Weakness)
        .collect();
    weaknesses.sort_by(|left, right| score_of(left).total_cmp(&score_of(right)));
    let finding = |section: &&Section| Finding {
        metric_id: section.ranking.metric_id.clone(),
        text: finding_text(section),
    };
    ReportBody {
        strengths: strengths.iter().map(finding).collect(),
        weaknesses: weaknesses.iter().map(finding).collect(),
        sections,
        overall,
    }
}

fn score_of(section: &Section) -> f64 {
    section.ranking.score.unwrap_or(50.0)
}

fn assessment(ranking: &MetricRank) -> Assessment {
    match (ranking.status, ranking.quartile) {
        (RankStatus::Ranked, Some(Quartile::Top)) => Assessment::Strength,
        (RankStatus::Ranked, Some(Quartile::Bottom)) => Assessment::Weakness,
        (RankStatus::Ranked, Some(_)) => Assessment::Neutral,
        _ => Assessment::NotRanked,
    }
}

/// A value in its unit, for readers: `$2.4M`, `112.0 %`, `14.2 months`, `1.8×`.
pub fn format_value(value: f64, unit: &str) -> String {
    match unit {
        "$" => {
            let magnitude = value.abs();
            let sign = if value < 0.0 { "-" } else { "" };
            if magnitude >= 1e9 {
                format!("{sign}${:.1}B", magnitude / 1e9)
            } else if magnitude >= 1e6 {
                format!("{sign}${:.1}M", magnitude / 1e6)
            } else if magnitude >= 1e3 {
                format!("{sign}${:.0}K", magnitude / 1e3)
            } else {
                format!("{sign}${magnitude:.0}")
            }
        }
        "%" => format!("{value:.1} %"),
        "months" => format!("{value:.1} months"),
        "×" => format!("{value:.2}×"),
        _ => format!("{value:.2}"),
    }
}

fn reading(metric: &MetricInfo, ranking: &MetricRank) -> String {
    let name = &metric.display_name;
    match (ranking.status, ranking.value) {
        (RankStatus::NoCompanyValue, _) | (_, None) => {
            format!("No {name} value was recorded for this period, so it is not ranked.")
        }
        (RankStatus::PeersSuppressed, Some(value)) => format!(
            "{name} of {} is not ranked: {}.",
            format_value(value, &metric.unit),
            ranking.peers.suppression_reason()
        ),
        (RankStatus::Ranked, Some(value)) => {
            let formatted = format_value(value, &metric.unit);
            let position = match (ranking.peers.p50, metric.direction) {
                (Some(median), _) if value == median => "at the median of peers".to_owned(),
                (Some(median), Direction::HigherIsBetter) if value > median => "above the median of peers".to_owned(),
                (Some(median), Direction::LowerIsBetter) if value < median => {
                    "better (lower) than the median of peers".to_owned()
                }
                (Some(_), Direction::HigherIsBetter) => "below the median of peers".to_owned(),
                (Some(_), Direction::LowerIsBetter) => "worse (higher) than the median of peers".to_owned(),
                (None, _) => "compared with peers".to_owned(),
            };
            let median = ranking
                .peers
                .p50
                .map(|median| format!(" ({})", format_value(median, &metric.unit)))
                .unwrap_or_default();
            let score = ranking
                .score
                .map(|score| format!(" It scores {score:.0} of 100 against {} peers.", ranking.peers.n))
                .unwrap_or_default();
            format!("{name} of {formatted} is {position}{median}.{score}")
        }
    }
}

fn finding_text(section: &Section) -> String {
    let ranking = &section.ranking;
    let value = ranking
        .value
        .map(|value| format_value(value, &section.unit))
        .unwrap_or_default();
    match section.assessment {
        Assessment::Strength => format!(
            "{} of {value} is in the top quartile of peers (score {:.0}).",
            section.metric_display_name,
            ranking.score.unwrap_or_default()
        ),
        _ => format!(
            "{} of {value} is in the bottom quartile of peers (score {:.0}).",
            section.metric_display_name,
            ranking.score.unwrap_or_default()
        ),
    }
}

/// Escapes text for HTML and SVG.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}

/// The chart of one ranked metric: the peers' P10–P90 and P25–P75 ranges,
/// their median, and the company's value, on a linear axis. A standalone
/// SVG document without scripts or external references.
pub fn chart_svg(metric: &MetricInfo, ranking: &MetricRank) -> String {
    let (RankStatus::Ranked, Some(value)) = (ranking.status, ranking.value) else {
        return String::new();
    };
    let peers = &ranking.peers;
    let (Some(p25), Some(p50), Some(p75)) = (peers.p25, peers.p50, peers.p75) else {
        return String::new();
    };
    let low_tail = peers.p10.or(peers.min).unwrap_or(p25);
    let high_tail = peers.p90.or(peers.max).unwrap_or(p75);
    let mut axis_min = low_tail.min(value);
    let mut axis_max = high_tail.max(value);
    if axis_max - axis_min <= f64::EPSILON * axis_max.abs().max(1.0) {
        axis_min -= 1.0;
        axis_max += 1.0;
    }
    let padding = (axis_max - axis_min) * 0.08;
    let (axis_min, axis_max) = (axis_min - padding, axis_max + padding);
    const WIDTH: f64 = 560.0;
    const LEFT: f64 = 20.0;
    const RIGHT: f64 = 540.0;
    let x = |figure: f64| LEFT + (figure - axis_min) / (axis_max - axis_min) * (RIGHT - LEFT);
    let label = |figure: f64| escape(&format_value(figure, &metric.unit));
    let tails_label = if peers.p10.is_some() { "P10–P90" } else { "min–max" };
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="110" viewBox="0 0 {WIDTH} 110" role="img" aria-label="{title}">"##,
        title = escape(&format!("{} against peers", metric.display_name))
    );
    let _ = write!(
        svg,
        r##"<title>{}</title><rect x="0" y="0" width="{WIDTH}" height="110" fill="#ffffff"/>"##,
        escape(&format!(
            "{}: {} against peers (median {})",
            metric.display_name,
            format_value(value, &metric.unit),
            format_value(p50, &metric.unit)
        ))
    );
    let _ = write!(
        svg,
        r##"<rect x="{:.1}" y="40" width="{:.1}" height="16" fill="#dbe4f0"><title>{tails_label}</title></rect>"##,
        x(low_tail),
        (x(high_tail) - x(low_tail)).max(1.0)
    );
    let _ = write!(
        svg,
        r##"<rect x="{:.1}" y="36" width="{:.1}" height="24" fill="#7d9cc4"><title>P25–P75</title></rect>"##,
        x(p25),
        (x(p75) - x(p25)).max(1.0)
    );
    let _ = write!(
        svg,
        r##"<line x1="{0:.1}" y1="32" x2="{0:.1}" y2="64" stroke="#1f3b63" stroke-width="3"><title>median</title></line>"##,
        x(p50)
    );
    let marker_colour = match ranking.quartile {
        Some(Quartile::Top) => "#1a7f37",
        Some(Quartile::Bottom) => "#c62828",
        _ => "#e08a00",
    };
    let _ = write!(
        svg,
        r##"<circle cx="{:.1}" cy="48" r="7" fill="{marker_colour}" stroke="#ffffff" stroke-width="2"><title>company</title></circle>"##,
        x(value)
    );
    let _ = write!(
        svg,
        r##"<text x="{:.1}" y="22" font-family="sans-serif" font-size="12" text-anchor="middle" fill="#222222">{}</text>"##,
        x(value).clamp(60.0, WIDTH - 60.0),
        escape(&format!("you: {}", format_value(value, &metric.unit)))
    );
    let _ = write!(
        svg,
        r##"<text x="{:.1}" y="82" font-family="sans-serif" font-size="11" text-anchor="middle" fill="#1f3b63">{}</text>"##,
        x(p50).clamp(60.0, WIDTH - 60.0),
        format_args!("median {}", label(p50))
    );
    let _ = write!(
        svg,
        r##"<text x="{LEFT}" y="102" font-family="sans-serif" font-size="10" fill="#555555">{tails_label} {} to {}; P25–P75 {} to {}; n = {}</text>"##,
        label(low_tail),
        label(high_tail),
        label(p25),
        label(p75),
        peers.n
    );
    svg.push_str("</svg>");
    svg
}

/// What a rendered report says about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportHeading {
    /// The report id.
    pub report_id: String,
    /// The template's name.
    pub template_name: String,
    /// The company id.
    pub company_id: String,
    /// The period compared.
    pub period: String,
    /// The revenue band's name.
    pub revenue_band: String,
    /// The sector's name, or "all sectors".
    pub sector: String,
    /// The source's name.
    pub source: String,
    /// When the report was generated, RFC 3339.
    pub generated_at: String,
}

fn quartile_name(quartile: Option<Quartile>) -> &'static str {
    match quartile {
        Some(Quartile::Top) => "top",
        Some(Quartile::UpperMiddle) => "upper middle",
        Some(Quartile::LowerMiddle) => "lower middle",
        Some(Quartile::Bottom) => "bottom",
        Some(Quartile::Unspecified) | None => "—",
    }
}

fn optional(value: Option<f64>, unit: &str) -> String {
    value
        .map(|value| format_value(value, unit))
        .unwrap_or_else(|| "—".to_owned())
}

fn optional_number(value: Option<f64>, decimals: usize) -> String {
    value
        .map(|value| format!("{value:.decimals$}"))
        .unwrap_or_else(|| "—".to_owned())
}

/// The report as a self-contained HTML page with the charts inline.
pub fn render_html(heading: &ReportHeading, body: &ReportBody) -> String {
    let mut html = String::new();
    let title = escape(&format!("{} — {}", heading.template_name, heading.period));
    let _ = write!(
        html,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <style>body{{font-family:system-ui,sans-serif;max-width:760px;margin:2rem auto;padding:0 1rem;color:#222}}\
         table{{border-collapse:collapse;margin:.5rem 0 1rem}}td,th{{border:1px solid #ccd;padding:.25rem .5rem;text-align:right}}\
         th:first-child,td:first-child{{text-align:left}}section{{margin:1.5rem 0;border-top:1px solid #ddd}}\
         .strength{{color:#1a7f37}}.weakness{{color:#c62828}}</style></head><body>\n"
    );
    let _ = write!(
        html,
        "<h1>{title}</h1>\n<p>Company <code>{}</code> against peers in {}, {}; source: {}. Report <code>{}</code>, generated {}.</p>\n",
        escape(&heading.company_id),
        escape(&heading.revenue_band),
        escape(&heading.sector),
        escape(&heading.source),
        escape(&heading.report_id),
        escape(&heading.generated_at)
    );
    match body.overall.score {
        Some(score) => {
            let _ = writeln!(
                html,
                "<p><strong>Overall score: {score:.0} of 100</strong> ({} quartile), across {} of {} metrics.</p>",
                quartile_name(body.overall.quartile),
                body.overall.ranked_metric_count,
                body.overall.metric_count
            );
        }
        None => html.push_str("<p><strong>No metric could be ranked.</strong></p>\n"),
    }
    for (heading_text, class, findings) in [
        ("Strengths", "strength", &body.strengths),
        ("Weaknesses", "weakness", &body.weaknesses),
    ] {
        if findings.is_empty() {
            continue;
        }
        let _ = write!(html, "<h2>{heading_text}</h2><ul class=\"{class}\">");
        for finding in findings {
            let _ = write!(html, "<li>{}</li>", escape(&finding.text));
        }
        html.push_str("</ul>\n");
    }
    for section in &body.sections {
        let ranking = &section.ranking;
        let _ = write!(
            html,
            "<section><h2>{}</h2><p>{}</p>{}",
            escape(&section.metric_display_name),
            escape(&section.reading),
            section.chart_svg
        );
        let _ = write!(
            html,
            "<table><tr><th>value</th><th>percentile rank</th><th>score</th><th>quartile</th><th>z-score</th><th>robust score</th><th>peers (n)</th></tr>\
             <tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr></table>",
            optional(ranking.value, &section.unit),
            optional_number(ranking.percentile_rank, 1),
            optional_number(ranking.score, 1),
            quartile_name(ranking.quartile),
            optional_number(ranking.z_score, 2),
            optional_number(ranking.robust_score, 2),
            ranking.peers.n
        );
        let peers = &ranking.peers;
        let _ = writeln!(
            html,
            "<table><tr><th>peers</th><th>P10</th><th>P25</th><th>median</th><th>P75</th><th>P90</th><th>mean</th></tr>\
             <tr><td>figures</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr></table></section>",
            optional(peers.p10, &section.unit),
            optional(peers.p25, &section.unit),
            optional(peers.p50, &section.unit),
            optional(peers.p75, &section.unit),
            optional(peers.p90, &section.unit),
            optional(peers.mean, &section.unit)
        );
    }
    html.push_str("<p><small>Percentile ranks are exact over anonymised peers (outliers beyond 1.5 × IQR excluded); slices with fewer companies than the anonymity threshold are not reported.</small></p>\n</body></html>\n");
    html
}

/// Escapes a Markdown table cell.
fn markdown_cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// The report as Markdown, one table per section; charts are omitted.
pub fn render_markdown(heading: &ReportHeading, body: &ReportBody) -> String {
    let mut markdown = String::new();
    let _ = writeln!(markdown, "# {} — {}\n", heading.template_name, heading.period);
    let _ = writeln!(
        markdown,
        "Company `{}` against peers in {}, {}; source: {}. Report `{}`, generated {}.\n",
        heading.company_id,
        heading.revenue_band,
        heading.sector,
        heading.source,
        heading.report_id,
        heading.generated_at
    );
    match body.overall.score {
        Some(score) => {
            let _ = writeln!(
                markdown,
                "**Overall score: {score:.0} of 100** ({} quartile), across {} of {} metrics.\n",
                quartile_name(body.overall.quartile),
                body.overall.ranked_metric_count,
                body.overall.metric_count
            );
        }
        None => markdown.push_str("**No metric could be ranked.**\n\n"),
    }
    for (title, findings) in [("Strengths", &body.strengths), ("Weaknesses", &body.weaknesses)] {
        if findings.is_empty() {
            continue;
        }
        let _ = writeln!(markdown, "## {title}\n");
        for finding in findings {
            let _ = writeln!(markdown, "- {}", finding.text);
        }
        markdown.push('\n');
    }
    for section in &body.sections {
        let ranking = &section.ranking;
        let peers = &ranking.peers;
        let _ = writeln!(markdown, "## {}\n\n{}\n", section.metric_display_name, section.reading);
        markdown.push_str("| value | percentile rank | score | quartile | P10 | P25 | median | P75 | P90 | n |\n");
        markdown.push_str("|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|\n");
        let _ = writeln!(
            markdown,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            markdown_cell(&optional(ranking.value, &section.unit)),
            optional_number(ranking.percentile_rank, 1),
            optional_number(ranking.score, 1),
            quartile_name(ranking.quartile),
            markdown_cell(&optional(peers.p10, &section.unit)),
            markdown_cell(&optional(peers.p25, &section.unit)),
            markdown_cell(&optional(peers.p50, &section.unit)),
            markdown_cell(&optional(peers.p75, &section.unit)),
            markdown_cell(&optional(peers.p90, &section.unit)),
            peers.n
        );
    }
    markdown
}

/// The report as CSV, one row per metric with its value, ranking figures
/// and peer percentiles (plain numbers, empty when unset).
pub fn render_csv(body: &ReportBody) -> Result<String, csv::Error> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record([
        "metric_id",
        "metric_name",
        "status",
        "value",
        "percentile_rank",
        "score",
        "quartile",
        "z_score",
        "robust_score",
        "outlier",
        "assessment",
        "peer_n",
        "peer_mean",
        "peer_p10",
        "peer_p25",
        "peer_p50",
        "peer_p75",
        "peer_p90",
    ])?;
    let number = |value: Option<f64>| value.map(|value| value.to_string()).unwrap_or_default();
    for section in &body.sections {
        let ranking = &section.ranking;
        let peers = &ranking.peers;
        writer.write_record([
            ranking.metric_id.clone(),
            section.metric_display_name.clone(),
            format!("{:?}", ranking.status).to_lowercase(),
            number(ranking.value),
            number(ranking.percentile_rank),
            number(ranking.score),
            ranking
                .quartile
                .map(|quartile| quartile_name(Some(quartile)).replace(' ', "_"))
                .unwrap_or_default(),
            number(ranking.z_score),
            number(ranking.robust_score),
            ranking.outlier.to_string(),
            format!("{:?}", section.assessment).to_lowercase(),
            peers.n.to_string(),
            number(peers.mean),
            number(peers.p10),
            number(peers.p25),
            number(peers.p50),
            number(peers.p75),
            number(peers.p90),
        ])?;
    }
    let bytes = writer.into_inner().map_err(|error| error.into_error())?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_ordered_and_unique() {
        assert!(TEMPLATES.windows(2).all(|pair| pair[0].id < pair[1].id));
        assert_eq!(template("retention").map(|found| found.metric_ids.len()), Some(2));
        assert!(template("nope").is_none());
    }

    #[test]
    fn values_read_in_their_units() {
        assert_eq!(format_value(2_400_000.0, "$"), "$2.4M");
        assert_eq!(format_value(-12_600.0, "$"), "-$13K");
        assert_eq!(format_value(112.04, "%"), "112.0 %");
        assert_eq!(format_value(14.25, "months"), "14.2 months");
        assert_eq!(format_value(1.8, "×"), "1.80×");
    }

    #[test]
    fn text_is_escaped_for_html() {
        assert_eq!(escape("<b>\"R&D\"</b>"), "&lt;b&gt;&quot;R&amp;D&quot;&lt;/b&gt;");
    }
}
