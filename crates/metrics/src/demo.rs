//! Demo data for `metrix seed-demo`: hundreds of companies across sectors
//! and revenue bands, each with eight quarters of KPIs drawn from plausible
//! distributions and consistent with the documented formulas, so that a
//! newcomer sees a living platform and the benchmark service has peers.
//!
//! Generation is deterministic for a seed. Every demo company lives in an
//! organisation of its own (`demo-org-NNN`), as real peers do, and every
//! value carries the source DEMO.

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

use metrix_core::reference::{REVENUE_BANDS, SECTORS};
use metrix_core::time::{civil_date, now_micros};
use metrix_proto::metrics::v1::{BusinessModel, KpiSource};

use crate::app::{MetricsState, peer_key};
use crate::error::MetricsError;
use crate::events::NewEvent;
use crate::period::Period;
use crate::store::{CompanyRow, NewKpi};

/// The seed `metrix dev` and `metrix seed-demo` use by default.
pub const DEFAULT_SEED: u64 = 2026;
/// How many companies they create by default.
pub const DEFAULT_COMPANIES: usize = 300;
/// How many quarters of history each company gets.
pub const QUARTERS: u8 = 8;
/// Who recorded the demo values.
const RECORDED_BY: &str = "metrix seed-demo";

/// What a seeding run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DemoSummary {
    /// Companies created.
    pub companies: usize,
    /// KPI values recorded.
    pub kpi_values: usize,
    /// Product events stored.
    pub events: usize,
    /// Whether demo data was there already (and nothing was added).
    pub already_seeded: bool,
}

/// One generated company with its values.
#[derive(Debug, Clone)]
pub struct DemoCompany {
    /// The organisation it belongs to.
    pub organization_id: String,
    /// Its display name.
    pub name: String,
    /// A sector of the taxonomy.
    pub sector_id: &'static str,
    /// Its business model.
    pub business_model: BusinessModel,
    /// Its country.
    pub country_code: &'static str,
    /// Its founding year.
    pub founding_year: i32,
    /// Its KPI values (metric, period, value).
    pub values: Vec<(&'static str, Period, f64)>,
}

/// Pauses between seeding transactions. SQLite has one writer at a time and
/// its busy handler is not fair, so a seeder that starts its next
/// transaction at once could keep the users' writes waiting.
async fn yield_to_writers() {
    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
}

/// Draws from a normal distribution (Box–Muller).
fn normal(rng: &mut StdRng, mean: f64, standard_deviation: f64) -> f64 {
    let uniform_1: f64 = rng.random_range(f64::EPSILON..1.0);
    let uniform_2: f64 = rng.random_range(0.0..1.0);
    let standard = (-2.0 * uniform_1.ln()).sqrt() * (2.0 * std::f64::consts::PI * uniform_2).cos();
    mean + standard_deviation * standard
}

/// Rounds to `decimals` places, as people report KPIs.
fn round_to(value: f64, decimals: i32) -> f64 {
    let factor = 10f64.powi(decimals);
    (value * factor).round() / factor
}

/// Picks an item by weight.
fn weighted<T: Copy>(rng: &mut StdRng, items: &[(T, u32)]) -> T {
    let total: u32 = items.iter().map(|(_, weight)| weight).sum();
    let mut ticket = rng.random_range(0..total);
    for (item, weight) in items {
        if ticket < *weight {
            return *item;
        }
        ticket -= weight;
    }
    items[items.len() - 1].0
}

/// The last `count` completed quarters before the quarter of `now_micros`,
/// oldest first.
pub fn completed_quarters(now_micros: i64, count: u8) -> Vec<Period> {
    let (year, month, _) = civil_date(now_micros);
    #[allow(
        clippy::expect_used,
        reason = "the year is clamped to the grammar's range and the quarter is 1 to 4"
    )]
    let current = Period::from_quarter(year.clamp(1901, 2100) as u16, ((month - 1) / 3 + 1) as u8)
        .expect("the current quarter of a plausible clock is a valid period");
    let mut quarters = Vec::with_capacity(usize::from(count));
    let mut cursor = current;
    for _ in 0..count {
        match cursor.previous() {
            Some(previous) => {
                quarters.push(previous);
                cursor = previous;
            }
            None => break,
        }
    }
    quarters.reverse();
    quarters
}

/// Generates `count` companies with `QUARTERS` quarters each, ending with
/// the last quarter completed before `now_micros`.
pub fn generate(seed: u64, count: usize, now_micros: i64) -> Vec<DemoCompany> {
    let mut rng = StdRng::seed_from_u64(seed);
    let quarters = completed_quarters(now_micros, QUARTERS);
    let (current_year, _, _) = civil_date(now_micros);
    let prefixes = [
        "Acme", "Blue", "Bright", "Cloud", "Copper", "Delta", "Echo", "Flux", "Granite", "Harbor", "Iris", "Juniper",
        "Kite", "Lumen", "Maple", "Nimbus", "Orbit", "Pioneer", "Quartz", "River", "Summit", "Tidal", "Umbra",
        "Vector", "Willow", "Zenith",
    ];
    let suffixes = [
        "Labs",
        "Systems",
        "Analytics",
        "Works",
        "Health",
        "Pay",
        "Logic",
        "Data",
        "Cloud",
        "AI",
        "Stack",
        "Flow",
    ];
    let countries: [(&str, u32); 10] = [
        ("US", 40),
        ("GB", 10),
        ("DE", 10),
        ("FR", 7),
        ("NL", 5),
        ("SE", 4),
        ("IN", 8),
        ("CA", 6),
        ("IL", 5),
        ("BR", 5),
    ];
    let models: [(BusinessModel, u32); 6] = [
        (BusinessModel::B2bSaas, 55),
        (BusinessModel::UsageBased, 12),
        (BusinessModel::Marketplace, 10),
        (BusinessModel::B2cSubscription, 10),
        (BusinessModel::Transactional, 8),
        (BusinessModel::Ecommerce, 5),
    ];
    // Share of companies per revenue band, from early to late stage.
    let band_weights: [u32; 5] = [30, 30, 15, 17, 8];
    let mut companies = Vec::with_capacity(count);
    for index in 0..count {
        let band_index = weighted(
            &mut rng,
            &band_weights
                .iter()
                .enumerate()
                .map(|(band, weight)| (band, *weight))
                .collect::<Vec<_>>(),
        );
        let band = &REVENUE_BANDS[band_index];
        // Log-uniform within the band; the open top band stops at $300M.
        let low = band.min_arr_usd.max(150_000.0);
        let high = band.max_arr_usd.unwrap_or(300_000_000.0);
        let latest_arr = (low.ln() + rng.random_range(0.0..1.0) * (high.ln() - low.ln())).exp();
        // Smaller companies grow faster, with more spread.
        let (growth_mean, growth_spread, fcf_mean) = match band_index {
            0 => (150.0, 70.0, -80.0),
            1 => (90.0, 40.0, -45.0),
            2 => (60.0, 25.0, -25.0),
            3 => (40.0, 18.0, -10.0),
            _ => (25.0, 10.0, 8.0),
        };
        let annual_growth = normal(&mut rng, growth_mean, growth_spread).clamp(-20.0, 400.0) / 100.0;
        let quarterly_growth = (1.0 + annual_growth).powf(0.25) - 1.0;
        let business_model = weighted(&mut rng, &models);
        let margin_mean = match business_model {
            BusinessModel::B2bSaas | BusinessModel::B2cSubscription => 76.0,
            BusinessModel::UsageBased => 68.0,
            BusinessModel::Marketplace | BusinessModel::Transactional => 58.0,
            _ => 42.0,
        };
        let ndr_mean = [96.0, 103.0, 108.0, 112.0, 116.0][band_index];
        let mut arr_by_quarter = Vec::with_capacity(quarters.len());
        let mut arr = latest_arr;
        for _ in 0..quarters.len() {
            arr_by_quarter.push(arr);
            let noise = normal(&mut rng, 0.0, 0.02);
            arr /= (1.0 + quarterly_growth + noise).max(0.7);
        }
        arr_by_quarter.reverse();

        let mut values = Vec::new();
        for (quarter_index, quarter) in quarters.iter().enumerate() {
            let arr = round_to(arr_by_quarter[quarter_index], 0);
            values.push(("arr", *quarter, arr));
            if let Some(last_month) = quarter.with_same_end(metrix_proto::metrics::v1::PeriodGranularity::Month) {
                values.push(("mrr", last_month, round_to(arr / 12.0, 0)));
            }
            let ndr = normal(&mut rng, ndr_mean, 9.0).clamp(60.0, 180.0);
            let grr = normal(&mut rng, 89.0, 5.0).clamp(55.0, 100.0).min(ndr);
            values.push(("ndr", *quarter, round_to(ndr, 1)));
            values.push(("grr", *quarter, round_to(grr, 1)));
            let gross_margin = normal(&mut rng, margin_mean, 7.0).clamp(5.0, 95.0);
            values.push(("gross_margin", *quarter, round_to(gross_margin, 1)));
            let burn_multiple = (normal(&mut rng, 0.45, 0.5)).exp().clamp(0.2, 9.0)
                * (1.0 + 0.3 * (4 - band_index.min(4)) as f64 / 4.0);
            values.push(("burn_multiple", *quarter, round_to(burn_multiple, 2)));
            values.push((
                "cac_payback_months",
                *quarter,
                round_to(normal(&mut rng, 19.0, 7.0).clamp(3.0, 60.0), 1),
            ));
            values.push((
                "magic_number",
                *quarter,
                round_to(normal(&mut rng, 0.8, 0.3).clamp(0.05, 3.0), 2),
            ));
            values.push((
                "pipeline_coverage",
                *quarter,
                round_to(normal(&mut rng, 3.1, 0.7).clamp(0.5, 8.0), 2),
            ));
            // Growth is known once a year-ago quarter exists in the history.
            if quarter_index >= 4 {
                let year_ago = arr_by_quarter[quarter_index - 4];
                let arr_growth = (arr_by_quarter[quarter_index] - year_ago) / year_ago * 100.0;
                let revenue_growth = arr_growth + normal(&mut rng, 0.0, 3.0);
                let fcf_margin = normal(&mut rng, fcf_mean, 15.0).clamp(-250.0, 45.0);
                values.push(("arr_growth_yoy", *quarter, round_to(arr_growth, 1)));
                values.push(("revenue_growth_yoy", *quarter, round_to(revenue_growth, 1)));
                values.push(("fcf_margin", *quarter, round_to(fcf_margin, 1)));
                values.push((
                    "rule_of_40",
                    *quarter,
                    round_to(round_to(revenue_growth, 1) + round_to(fcf_margin, 1), 1),
                ));
            }
        }
        let age = match band_index {
            0 => rng.random_range(1..=4),
            1 => rng.random_range(2..=6),
            2 => rng.random_range(3..=8),
            3 => rng.random_range(4..=11),
            _ => rng.random_range(6..=16),
        };
        companies.push(DemoCompany {
            organization_id: format!("demo-org-{index:03}"),
            name: format!(
                "{} {}",
                prefixes[rng.random_range(0..prefixes.len())],
                suffixes[rng.random_range(0..suffixes.len())]
            ),
            sector_id: SECTORS[rng.random_range(0..SECTORS.len())].id,
            business_model,
            country_code: weighted(&mut rng, &countries),
            founding_year: current_year - age,
            values,
        });
    }
    companies
}

/// Product events of a plausible product: `count` events between `start`
/// and `end` (Unix microseconds), from `users` users in sessions, on two
/// apps, with a funnel-shaped mix of types. Ids derive from `prefix`, so
/// seeding the same range twice stores nothing twice.
pub fn demo_events(seed: u64, prefix: &str, count: usize, start: i64, end: i64, users: usize) -> Vec<NewEvent> {
    let mut rng = StdRng::seed_from_u64(seed);
    let types: [(&str, &str, u32); 8] = [
        ("page_view", "Page Viewed", 50),
        ("click", "Button Clicked", 20),
        ("search", "Search Performed", 10),
        ("login", "Signed In", 8),
        ("signup", "Signed Up", 4),
        ("invite", "Teammate Invited", 3),
        ("export", "Report Exported", 3),
        ("checkout", "Plan Purchased", 2),
    ];
    let weights: Vec<(usize, u32)> = types
        .iter()
        .enumerate()
        .map(|(index, (_, _, weight))| (index, *weight))
        .collect();
    let span = (end - start).max(1);
    (0..count)
        .map(|index| {
            let (event_type, event_name, _) = types[weighted(&mut rng, &weights)];
            let user = rng.random_range(0..users.max(1));
            let occurred_at = start + rng.random_range(0..span);
            let plan = if user % 5 == 0 { "pro" } else { "free" };
            NewEvent {
                event_id: format!("{prefix}-{index}"),
                app_id: if user % 3 == 0 {
                    "ios".to_owned()
                } else {
                    "web".to_owned()
                },
                user_id: format!("demo-user-{user}"),
                event_type: event_type.to_owned(),
                event_name: event_name.to_owned(),
                properties_json: serde_json::json!({"plan": plan}).to_string(),
                session_id: format!("demo-session-{user}-{}", occurred_at / 1_800_000_000),
                client_timestamp: Some(occurred_at),
                sent_at: None,
                received_at: occurred_at,
                occurred_at,
                user_agent: "metrix-demo/1".to_owned(),
                ip: String::new(),
            }
        })
        .collect()
}

/// Creates the company of a demo organisation (the dev mesh's demo
/// account) with eight quarters of KPIs and a week of product events, unless
/// it has a company already; returns whether anything was created.
pub async fn seed_account(
    state: &MetricsState,
    organization_id: &str,
    company_name: &str,
) -> Result<bool, MetricsError> {
    if state.store.count_companies(organization_id).await? > 0 {
        return Ok(false);
    }
    let now = now_micros();
    let mut generated = generate(DEFAULT_SEED + 1, 1, now);
    let Some(template) = generated.pop() else {
        return Ok(false);
    };
    let company_id = uuid::Uuid::now_v7().to_string();
    let row = CompanyRow {
        peer_key: peer_key(&state.peer_key_secret, &company_id),
        company_id: company_id.clone(),
        organization_id: organization_id.to_owned(),
        name: company_name.to_owned(),
        sector_id: template.sector_id.to_owned(),
        business_model: template.business_model as i32,
        country_code: template.country_code.to_owned(),
        founding_year: template.founding_year,
        revenue_band_id: String::new(),
        created_at: now,
        updated_at: now,
    };
    state.store.insert_company(&row).await?;
    let values: Vec<NewKpi> = template
        .values
        .into_iter()
        .map(|(metric_id, period, value)| {
            NewKpi::parse(
                company_id.clone(),
                metric_id,
                &period.to_string(),
                value,
                KpiSource::Demo,
                "",
            )
        })
        .collect::<Result<_, _>>()?;
    state
        .store
        .record_kpis(organization_id, RECORDED_BY, now, &values)
        .await?;
    let week = 7 * 86_400_000_000;
    let events = demo_events(DEFAULT_SEED, "demo-week", WEEK_OF_EVENTS, now - week, now, 400);
    for batch in events.chunks(500) {
        crate::ingest::store_and_announce(state, organization_id, batch).await?;
        yield_to_writers().await;
    }
    Ok(true)
}

/// How many demo companies get a week of product events.
const COMPANIES_WITH_EVENTS: usize = 20;

/// Product events of the demo account's past week.
const WEEK_OF_EVENTS: usize = 20_000;

/// Seeds `count` demo companies unless demo data is there already.
pub async fn seed(state: &MetricsState, seed: u64, count: usize) -> Result<DemoSummary, MetricsError> {
    let store = &state.store;
    if store.count_companies("demo-org-000").await? > 0 {
        return Ok(DemoSummary {
            already_seeded: true,
            ..DemoSummary::default()
        });
    }
    let now = now_micros();
    let mut summary = DemoSummary::default();
    for company in generate(seed, count, now) {
        let company_id = uuid::Uuid::now_v7().to_string();
        let row = CompanyRow {
            peer_key: peer_key(&state.peer_key_secret, &company_id),
            company_id: company_id.clone(),
            organization_id: company.organization_id.clone(),
            name: company.name,
            sector_id: company.sector_id.to_owned(),
            business_model: company.business_model as i32,
            country_code: company.country_code.to_owned(),
            founding_year: company.founding_year,
            revenue_band_id: String::new(),
            created_at: now,
            updated_at: now,
        };
        store.insert_company(&row).await?;
        let values: Vec<NewKpi> = company
            .values
            .into_iter()
            .map(|(metric_id, period, value)| {
                NewKpi::parse(
                    company_id.clone(),
                    metric_id,
                    &period.to_string(),
                    value,
                    KpiSource::Demo,
                    "",
                )
            })
            .collect::<Result<_, _>>()?;
        summary.kpi_values += values.len();
        store
            .record_kpis(&company.organization_id, RECORDED_BY, now, &values)
            .await?;
        summary.companies += 1;
        yield_to_writers().await;
        // A week of product events for the first companies, so peers have
        // activity too.
        if summary.companies <= COMPANIES_WITH_EVENTS {
            let week = 7 * 86_400_000_000;
            let events = demo_events(
                seed + summary.companies as u64,
                &company_id,
                2_000,
                now - week,
                now,
                150,
            );
            for batch in events.chunks(500) {
                crate::ingest::store_and_announce(state, &company.organization_id, batch).await?;
                yield_to_writers().await;
            }
            summary.events += events.len();
        }
    }
    // Every slice of every period may have changed.
    let changes = metrix_core::notices::KpiChanges {
        periods: Vec::new(),
        revenue_bands_changed: true,
    };
    if let Err(error) = state
        .pubsub
        .publish(metrix_core::notices::KPI_CHANGES_CHANNEL, &changes.encode())
        .await
    {
        tracing::warn!(error = %metrix_core::error::error_chain(&error), "kpi changes not announced");
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::validation::validate_record;

    /// 2026-11-22T00:00:00Z.
    const NOW: i64 = 1_795_305_600_000_000;

    #[test]
    fn the_history_ends_with_the_last_completed_quarter() {
        let quarters: Vec<String> = completed_quarters(NOW, 8).iter().map(ToString::to_string).collect();
        assert_eq!(quarters.first().map(String::as_str), Some("2024-Q4"));
        assert_eq!(quarters.last().map(String::as_str), Some("2026-Q3"));
        assert_eq!(quarters.len(), 8);
    }

    #[test]
    fn generation_is_deterministic_and_spans_the_taxonomy() {
        let first = generate(7, 300, NOW);
        let second = generate(7, 300, NOW);
        assert_eq!(first.len(), 300);
        assert_eq!(
            first.iter().map(|company| &company.values).collect::<Vec<_>>(),
            second.iter().map(|company| &company.values).collect::<Vec<_>>()
        );
        let sectors: BTreeSet<_> = first.iter().map(|company| company.sector_id).collect();
        assert!(sectors.len() >= 15, "{sectors:?}");
        let bands: BTreeSet<_> = first
            .iter()
            .filter_map(|company| {
                let latest_arr = company.values.iter().rev().find(|(metric, _, _)| *metric == "arr")?.2;
                metrix_core::reference::revenue_band_for(latest_arr).map(|band| band.id)
            })
            .collect();
        assert_eq!(bands.len(), REVENUE_BANDS.len(), "{bands:?}");
    }

    #[test]
    fn every_value_is_valid_and_consistent() {
        for company in generate(11, 120, NOW) {
            let mut ndr_by_period = std::collections::HashMap::new();
            for (metric_id, period, value) in &company.values {
                validate_record(metric_id, &period.to_string(), *value)
                    .unwrap_or_else(|problems| panic!("{metric_id} {period} {value}: {problems:?}"));
                if *metric_id == "ndr" {
                    ndr_by_period.insert(period.to_string(), *value);
                }
            }
            for (metric_id, period, value) in &company.values {
                if *metric_id == "grr" {
                    assert!(*value <= ndr_by_period[&period.to_string()], "GRR never exceeds NDR");
                }
            }
        }
    }
}
