//! RankCompany and CalculateRanking: direction-aware ranks, exclusion of the
//! company itself, tenancy and what-if answers.

use metrix_core::authn::Role;
use metrix_proto::benchmark::v1::{
    CalculateRankingRequest, PercentileRankMethod, Quartile, RankCompanyRequest, RankCompanyResponse, RankingStatus,
};
use tonic::Code;

use crate::helpers::*;
use metrix_core::both_backends;

/// Burn multiples of twelve peers (lower is better).
const BURN: [f64; 12] = [0.8, 1.1, 1.3, 1.5, 1.7, 2.0, 2.2, 2.6, 3.0, 3.5, 4.2, 5.0];

/// Twelve fintech peers' burn multiples in the $1–5M band for 2026-Q2, and
/// a company of `organization` in `sector_id` of that band with 1.2.
fn burn_peers_and_company(app: &TestApp, organization: &str, sector_id: &str) -> String {
    app.peers
        .add_peers("fintech", "arr_1m_5m", "burn_multiple", "2026-Q2", &BURN);
    let company = app.peers.add_company(organization, sector_id, "arr_1m_5m");
    app.peers.set_value(&company, "burn_multiple", "2026-Q2", 1.2);
    company
}

/// RankCompany of `company` in 2026-Q2, called with `token`.
async fn rank_in_q2(app: &TestApp, company: &str, token: &str) -> RankCompanyResponse {
    app.client()
        .rank_company(authorized(
            RankCompanyRequest {
                company_id: company.to_owned(),
                period: "2026-Q2".into(),
                ..Default::default()
            },
            token,
        ))
        .await
        .expect("ranked")
        .into_inner()
}

async fn ranks_are_direction_aware_and_exclude_the_company(backend: Backend) {
    let app = spawn_app(backend).await;
    let organization = new_organization();
    let company = burn_peers_and_company(&app, &organization, "fintech");
    app.peers.set_value(&company, "ndr", "2026-Q2", 120.0);
    let token = app.user(&organization, Role::CompanyUser);
    let response = rank_in_q2(&app, &company, &token).await;
    assert_eq!(response.revenue_band_id, "arr_1m_5m");
    assert_eq!(response.sector_id, "fintech");
    let metrics: Vec<&str> = response
        .rankings
        .iter()
        .map(|ranking| ranking.metric_id.as_str())
        .collect();
    assert_eq!(metrics, ["burn_multiple", "ndr"]);
    let burn = &response.rankings[0];
    assert_eq!(burn.status, RankingStatus::Ranked as i32);
    assert_eq!(burn.percentile_rank_method, PercentileRankMethod::Weak as i32);
    // scipy: percentileofscore(-peers, -1.2, kind="weak") and kind="mean".
    assert_close(burn.percentile_rank, 83.33333333333334);
    assert_close(burn.score, 83.33333333333334);
    assert_close(burn.z_score, 0.9300084438032449);
    // robust: −(1.2 − 2.1) / (3.125 − 1.45)
    assert_close(burn.robust_score, 0.9 / 1.675);
    assert_eq!(burn.quartile, Quartile::Top as i32);
    let peers = burn.peer_statistics.as_ref().expect("peers");
    assert_eq!(peers.n, 12, "the company's own value is not among its peers");
    // NDR has no peers: suppressed, not ranked, no score.
    let ndr = &response.rankings[1];
    assert_eq!(ndr.status, RankingStatus::PeersSuppressed as i32);
    assert!(ndr.score.is_none() && ndr.percentile_rank.is_none());
    let overall = response.overall.expect("overall");
    assert_eq!((overall.ranked_metric_count, overall.metric_count), (1, 2));
    assert_close(overall.score, 83.33333333333334);
    assert_eq!(overall.quartile, Quartile::Top as i32);
}

async fn other_organisations_companies_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let owner = new_organization();
    let company = app.peers.add_company(&owner, "fintech", "arr_1m_5m");
    let stranger = app.user(&new_organization(), Role::Admin);
    for company_id in [company.clone(), uuid::Uuid::now_v7().to_string()] {
        assert_code(
            app.client()
                .rank_company(authorized(
                    RankCompanyRequest {
                        company_id,
                        ..Default::default()
                    },
                    &stranger,
                ))
                .await,
            Code::PermissionDenied,
        );
    }
    assert_code(
        app.client()
            .calculate_ranking(authorized(
                CalculateRankingRequest {
                    values: [("ndr".to_owned(), 110.0)].into(),
                    revenue_band_id: "arr_1m_5m".into(),
                    company_id: company,
                    ..Default::default()
                },
                &stranger,
            ))
            .await,
        Code::PermissionDenied,
    );
}

async fn a_company_without_a_band_must_name_one(backend: Backend) {
    let app = spawn_app(backend).await;
    let organization = new_organization();
    let company = app.peers.add_company(&organization, "fintech", "");
    let token = app.user(&organization, Role::CompanyUser);
    assert_code(
        app.client()
            .rank_company(authorized(
                RankCompanyRequest {
                    company_id: company.clone(),
                    ..Default::default()
                },
                &token,
            ))
            .await,
        Code::FailedPrecondition,
    );
    let status = assert_code(
        app.client()
            .rank_company(authorized(
                RankCompanyRequest {
                    company_id: company,
                    sector_id: "fintech".into(),
                    all_sectors: true,
                    metric_ids: vec!["ndr".into(), "ndr".into()],
                    ..Default::default()
                },
                &token,
            ))
            .await,
        Code::InvalidArgument,
    );
    let mut fields = violated_fields(&status);
    fields.sort();
    assert_eq!(fields, ["metric_ids[1]", "sector_id"]);
}

async fn what_if_rankings_store_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    app.peers
        .add_peers("fintech", "arr_1m_5m", "burn_multiple", "2026-Q2", &BURN);
    let token = app.user(&new_organization(), Role::CompanyUser);
    let request = |value: f64| CalculateRankingRequest {
        values: [("burn_multiple".to_owned(), value)].into(),
        revenue_band_id: "arr_1m_5m".into(),
        sector_id: "fintech".into(),
        period: "2026-Q2".into(),
        ..Default::default()
    };
    let good = app
        .client()
        .calculate_ranking(authorized(request(1.2), &token))
        .await
        .expect("ranked")
        .into_inner();
    assert_close(good.rankings[0].percentile_rank, 83.33333333333334);
    let bad = app
        .client()
        .calculate_ranking(authorized(request(9.0), &token))
        .await
        .expect("ranked")
        .into_inner();
    let worst = &bad.rankings[0];
    assert_close(worst.percentile_rank, 0.0);
    assert_eq!(worst.quartile, Quartile::Bottom as i32);
    assert!(worst.outlier, "9.0 lies beyond the upper fence");
    // Asking again gives the same answer: nothing was stored.
    let again = app
        .client()
        .calculate_ranking(authorized(request(1.2), &token))
        .await
        .expect("ranked")
        .into_inner();
    assert_eq!(again.rankings, good.rankings);

    let status = assert_code(
        app.client()
            .calculate_ranking(authorized(
                CalculateRankingRequest {
                    values: [("nps".to_owned(), 1.0), ("ndr".to_owned(), f64::NAN)].into(),
                    ..Default::default()
                },
                &token,
            ))
            .await,
        Code::InvalidArgument,
    );
    let mut fields = violated_fields(&status);
    fields.sort();
    assert_eq!(fields, ["revenue_band_id", "values[ndr]", "values[nps]"]);
}

async fn a_sector_without_enough_peers_falls_back_to_the_band(backend: Backend) {
    let app = spawn_app(backend).await;
    let organization = new_organization();
    let company = burn_peers_and_company(&app, &organization, "edtech");
    let token = app.user(&organization, Role::CompanyUser);
    let request = |sector_id: &str| RankCompanyRequest {
        company_id: company.clone(),
        period: "2026-Q2".into(),
        sector_id: sector_id.into(),
        ..Default::default()
    };
    let by_default = app
        .client()
        .rank_company(authorized(request(""), &token))
        .await
        .expect("ranked")
        .into_inner();
    assert_eq!(by_default.sector_id, "", "every sector of the band");
    assert_eq!(by_default.rankings[0].status, RankingStatus::Ranked as i32);
    let named = app
        .client()
        .rank_company(authorized(request("edtech"), &token))
        .await
        .expect("ranked")
        .into_inner();
    assert_eq!(named.sector_id, "edtech", "a named sector is kept");
    assert_eq!(named.rankings[0].status, RankingStatus::PeersSuppressed as i32);
}

async fn rankings_follow_kpi_changes(backend: Backend) {
    let app = spawn_app(backend).await;
    let organization = new_organization();
    let company = burn_peers_and_company(&app, &organization, "fintech");
    let token = app.user(&organization, Role::CompanyUser);
    let rank = || async {
        let response = rank_in_q2(&app, &company, &token).await;
        let burn = response.rankings[0].clone();
        (burn.percentile_rank, burn.peer_statistics.expect("peers").n)
    };
    let first = rank().await;
    assert_eq!(first.1, 12);
    assert_eq!(rank().await, first, "a second ranking of unchanged peers agrees");

    // Two better peers arrive and the metrics service announces them.
    app.peers
        .add_peers("fintech", "arr_1m_5m", "burn_multiple", "2026-Q2", &[0.5, 0.6]);
    let mut fresh = None;
    for _ in 0..50 {
        app.announce_kpi_changes("2026-Q2").await;
        let ranked = rank().await;
        if ranked.1 == 14 {
            fresh = Some(ranked);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (percentile_rank, _) = fresh.expect("the change reaches the ranking");
    // scipy: percentileofscore(-peers, -1.2, kind="weak") with 0.5 and 0.6 added.
    assert_close(percentile_rank, 100.0 * 10.0 / 14.0);
}

both_backends!(
    a_sector_without_enough_peers_falls_back_to_the_band,
    rankings_follow_kpi_changes,
    ranks_are_direction_aware_and_exclude_the_company,
    other_organisations_companies_are_refused,
    a_company_without_a_band_must_name_one,
    what_if_rankings_store_nothing,
);
